"""The gradient panel's numbers: one unit's forward and backward for one training sample, on every
backend of a lane's dtype, and one link's weight over the run.

The numbers are exactly those of `python -m comparisons step` (its step_mlp functions, not a copy): the
loss is the one sample's, NumPy's values come from its forward cache and backward, torch's from the real
module with retain_grad(), JAX's from jax.vjp of each layer. Every backend computes from the same params
(the lane's, now), so the gap to NumPy is one step's rounding, in units of ε·max|value|.

A unit is (layer, unit): layer l is the l-th Linear (0 is the first hidden layer, n_layers − 1 the
output), unit j its j-th output, whose incoming weights are W[l][:, j].
"""

from __future__ import annotations

import numpy as np

from comparisons.backprop import step_mlp
from comparisons.playground.config import ConfigError, Setup
from shared.tolerances import gap_in_eps
from shared.validation import numpy_dtype, split_format

QUANTITIES = ("z", "a", "dL_da", "f_prime", "dL_dz", "db", "dW", "a_in", "w_in")


def index(query: dict, name: str, count: int, what: str) -> int:
    """query[name] as an integer in [0, count); a ConfigError naming the field otherwise."""
    text = query.get(name)
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise ConfigError(name, f"{name} must be an integer in [0, {count - 1}] ({what}); got {text!r}") from None
    if not 0 <= value < count:
        raise ConfigError(name, f"{name} must be in [0, {count - 1}] ({what}); got {value}")
    return value


def _layers(name: str, spec, params, X, y, dtype: str) -> tuple[float, list[dict]]:
    """One backend's forward and backward of (X, y), layer by layer (step_mlp's, without the update)."""
    if name == "numpy":
        loss, layers, _ = step_mlp.numpy_step(spec, params, X, y, None)
        return loss, layers
    step = step_mlp.torch_step if name == "torch" else step_mlp.jax_step
    return step(spec, params, X, y, None, dtype)


def _unit_values(layers: list[dict], l: int, j: int, last: bool) -> dict:
    """z, a = f(z), dL/da, f′(z) = (dL/dz)/(dL/da) (None where dL/da is 0), dL/dz, and the unit's
    incoming link gradients dL/dW[:, j], bias gradient, inputs and weights."""
    layer = {k: np.asarray(v, np.float64) for k, v in layers[l].items()}
    dA, dZ = float(layer["dA"][0, j]), float(layer["dZ"][0, j])
    return {
        "z": float(layer["Z"][0, j]),
        "a": float(layer["Z" if last else "A"][0, j]),  # the output unit is linear: its a is its logit z
        "dL_da": dA,
        "f_prime": 1.0 if last else (dZ / dA if dA != 0 else None),
        "dL_dz": dZ,
        "db": float(layer["db"][j]),
        "dW": layer["dW"][:, j].tolist(),
        "a_in": layer["A_in"][0].tolist(),
        "w_in": layer["W"][:, j].tolist(),
    }


def _gap(reference, value, dtype: str) -> float | None:
    """gap_in_eps of two numbers or lists; None where either is missing or the gap is infinite (a value
    where NumPy's is exactly 0), which JSON cannot carry."""
    if reference is None or value is None:
        return None
    gap = gap_in_eps(np.asarray(reference), np.asarray(value), dtype)
    return gap if np.isfinite(gap) else None


def inspect_unit(s: Setup, params, lane_format: str, backends: list[str], query: dict) -> dict:
    """GET /api/inspect.json's answer: the unit's numbers on every backend in `backends` from `params`
    (the lane's), for the training sample query['sample'], and each one's gap to NumPy in ε. A mixed
    lane's unit is computed in its half format (its float32 params cast, as its forward and backward
    are), the gaps in that format's ε."""
    spec = s.spec
    dtype = split_format(lane_format)[0]  # what the numbers are computed in
    as_dtype = numpy_dtype(dtype)
    l = index(query, "layer", spec.n_layers, f"a Linear layer of sizes {list(spec.sizes)}; the last is the output")
    j = index(query, "unit", spec.sizes[l + 1], f"a unit of layer {l}")
    i = index(query, "sample", len(s.X_train), "a training sample")
    X = np.asarray(s.X_train[i : i + 1], as_dtype)
    y = s.y_train[i : i + 1] if s.y_train.dtype.kind in "iu" else np.asarray(s.y_train[i : i + 1], as_dtype)
    cast = [{k: np.asarray(v, as_dtype) for k, v in layer.items()} for layer in params]
    last = l == spec.n_layers - 1
    values, losses = {}, {}
    for name in backends:
        losses[name], layers = _layers(name, spec, cast, X, y, dtype)
        values[name] = _unit_values(layers, l, j, last)
    reference = values.get("numpy")
    gaps = {}
    for name, v in values.items():
        if reference is None:
            break
        gaps[name] = {q: _gap(reference[q], v[q], dtype) for q in QUANTITIES}
    activation = "identity (the output is linear)" if last else spec.activations[l]
    return {
        "layer": l,
        "unit": j,
        "sample": i,
        "x": X[0].astype(np.float64).tolist(),
        "target": np.asarray(y[0], np.int64 if y.dtype.kind in "iu" else np.float64).tolist(),
        "activation": activation,
        "dtype": dtype,
        "format": lane_format,
        "loss": losses,
        "values": values,
        "gap_eps": gaps,
        "formulas": {
            "z": "a_in · w_in + b",
            "a": "f(z)" if not last else "z (logit)",
            "dL_da": "dL/dŷ" if last else f"Σₖ W[{l + 1}][{j}, k] · dL/dzₖ (next layer)",
            "f_prime": "f′(z)",
            "dL_dz": "dL/da · f′(z)",
            "db": "dL/dz",
            "dW": "a_in · dL/dz",
        },
    }


def link_history(run, query: dict) -> dict:
    """GET /api/link.json's answer: the weight W[layer][i, j] on every lane, at each chunk start and now,
    and the gradient of the full training loss with respect to it at the lane's current params."""

    s = run.setup
    spec = s.spec
    l = index(query, "layer", spec.n_layers, f"a Linear layer of sizes {list(spec.sizes)}")
    i = index(query, "i", spec.sizes[l], f"an input of layer {l}")
    j = index(query, "j", spec.sizes[l + 1], f"a unit of layer {l}")
    lanes = {}
    for lane in run.lanes:
        history = [*lane.chunk_params, lane.params]
        _, grads = lane.engine.loss_and_grads(spec, lane.params, s.X_train, s.y_train)
        lanes[lane.name] = {
            "steps": [*lane.chunk_starts, lane.run.steps_run if lane.run is not None else 0],
            "values": [float(p[l]["W"][i, j]) for p in history],
            "gradient": float(grads[l]["W"][i, j]),
        }
    return {"layer": l, "i": i, "j": j, "name": f"layer{l}.W[{i}, {j}]", "lanes": lanes}
