"""Parameters in the canonical layout every backend reads and returns.

    params = init_params(spec, seed=0)
    params[l]["W"]   # (fan_in, fan_out)  float64: the canonical layout is (in, out), so X @ W works
    params[l]["b"]   # (fan_out,)

torch stores Linear weights as (out, in); the torch backend transposes at its border. A params list
in torch's layout is rejected here with a hint, rather than silently transposed.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import numpy as np

from shared.spec import MLPSpec

Params = list[dict[str, np.ndarray]]


def init_params(spec: MLPSpec, seed: int = 0) -> Params:
    """Glorot-uniform weights and zero biases, as float64 numpy arrays, deterministic per seed.

    W ~ U(−a, a) with a = sqrt(6 / (fan_in + fan_out)) keeps the variance of activations and of
    gradients roughly constant from layer to layer (Glorot & Bengio, 2010).
    """
    if not isinstance(spec, MLPSpec):
        raise TypeError(f"spec must be an MLPSpec; got {type(spec).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    rng = np.random.default_rng(int(seed))
    params: Params = []
    for fan_in, fan_out in spec.layer_shapes:
        a = np.sqrt(6.0 / (fan_in + fan_out))
        W = rng.uniform(-a, a, size=(fan_in, fan_out))  # (fan_in, fan_out)
        b = np.zeros(fan_out)  # (fan_out,)
        params.append({"W": W, "b": b})
    return params


def check_params(spec: MLPSpec, params: object, arg: str = "params") -> Params:
    """Validate `params` against `spec`; return them as a list of dicts of numpy arrays.

    Raises a ValueError/TypeError that names the layer and key, what was expected and what was given.
    """
    if not isinstance(params, Sequence) or isinstance(params, (str, bytes)):
        raise TypeError(
            f"{arg} must be a list of {{'W': array, 'b': array}} dicts, one per layer; got {type(params).__name__}"
        )
    if len(params) != spec.n_layers:
        raise ValueError(f"{arg} has {len(params)} layers but spec sizes={spec.sizes} has {spec.n_layers}")
    out: Params = []
    for l, (layer, (fan_in, fan_out)) in enumerate(zip(params, spec.layer_shapes)):
        if not isinstance(layer, dict) or set(layer) != {"W", "b"}:
            got = sorted(layer) if isinstance(layer, dict) else type(layer).__name__
            raise ValueError(f"{arg}[{l}] must be a dict with exactly the keys 'W' and 'b'; got {got}")
        W = as_float_array(layer["W"], f"{arg}[{l}]['W']")
        b = as_float_array(layer["b"], f"{arg}[{l}]['b']")
        if W.shape != (fan_in, fan_out):
            hint = ""
            if W.shape == (fan_out, fan_in):
                hint = " This looks like torch's (out, in) layout; the canonical layout is (in, out): pass W.T."
            raise ValueError(
                f"{arg}[{l}]['W'] must have shape (fan_in, fan_out) = {(fan_in, fan_out)}; got {W.shape}.{hint}"
            )
        if b.shape != (fan_out,):
            raise ValueError(f"{arg}[{l}]['b'] must have shape {(fan_out,)}; got {b.shape}")
        out.append({"W": W, "b": b})
    return out


def as_float_array(value: object, arg: str) -> np.ndarray:
    """`value` as a finite, real-valued numpy array (dtype kept if floating, else float64)."""
    try:
        a = np.asarray(value)
    except Exception as e:  # ragged lists and the like
        raise TypeError(f"{arg} must be a numeric array; could not convert it ({e})") from None
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise TypeError(f"{arg} must hold real numbers; got dtype {a.dtype}")
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(f"{arg} must be finite; found {a[tuple(bad)]} at index {tuple(int(i) for i in bad)}")
    return a


def map_params(fn: Callable[[np.ndarray], np.ndarray], params: Params) -> Params:
    """Apply `fn` to every array, keeping the list-of-dicts structure."""
    return [{k: fn(v) for k, v in layer.items()} for layer in params]


def flatten(params: Params) -> np.ndarray:
    """All parameters in one vector, layer by layer, W before b (for norms and comparisons)."""
    return np.concatenate([np.ravel(layer[k]) for layer in params for k in ("W", "b")])


def param_names(spec: MLPSpec) -> list[str]:
    """Readable names in `flatten` order of the arrays: ['layer0.W', 'layer0.b', ...]."""
    return [f"layer{l}.{k}" for l in range(spec.n_layers) for k in ("W", "b")]
