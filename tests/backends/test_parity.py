"""Every pair of backends agrees: forward, loss and gradients, in float64 and float32.

Tolerances come from shared/tolerances.py (one table, each number with its reason). A failure names
the pair, the spec, the parameter and the largest difference.

Deliberate bugs these catch (each tried): torch weights loaded without the (out, in) transpose,
jax.nn.gelu left at its tanh-approximate default, a loss without its 1/n, a float32 backend that
secretly computes in float64.
"""

import math

import numpy as np
import pytest

from shared.params import map_params
from shared.spec import ACTIVATIONS, LOSSES, MLPSpec
from shared.tolerances import closeness, tolerance
from tests.conftest import backend_or_skip
from tests.helpers import make_problem

OUTPUTS = {"mse": 2, "bce": 1, "softmax_ce": 3}
SPECS = [MLPSpec((3, 5, 4, OUTPUTS[loss]), act, loss) for act in ACTIVATIONS for loss in LOSSES]
SPECS += [MLPSpec((3, OUTPUTS[loss]), "tanh", loss) for loss in LOSSES]  # no hidden layer
SPECS += [MLPSpec((4, 6, 5, 4, 3), ("relu", "gelu", "sigmoid"), "softmax_ce")]


def spec_id(spec: MLPSpec) -> str:
    return f"{'-'.join(map(str, spec.sizes))}_{'.'.join(spec.activations) or 'linear'}_{spec.loss}"


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_forward_agrees(pair, dtype, spec):
    a, b = (backend_or_skip(name, dtype) for name in pair)
    params, X, _ = make_problem(spec, n=6)
    result = closeness(a.forward(spec, params, X), b.forward(spec, params, X), tolerance(dtype, "forward"))
    assert result.ok, result.message(f"{pair[0]} vs {pair[1]} forward, {dtype}, {spec.describe()}")


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_loss_and_grads_agree(pair, dtype, spec):
    a, b = (backend_or_skip(name, dtype) for name in pair)
    params, X, y = make_problem(spec, n=6)
    loss_a, grads_a = a.loss_and_grads(spec, params, X, y)
    loss_b, grads_b = b.loss_and_grads(spec, params, X, y)
    tol = tolerance(dtype, "grads")
    result = closeness(loss_a, loss_b, tol, names=["loss"])
    assert result.ok, result.message(f"{pair[0]} vs {pair[1]} loss, {dtype}, {spec.describe()}")
    result = closeness(grads_a, grads_b, tol)
    assert result.ok, result.message(f"{pair[0]} vs {pair[1]} grads, {dtype}, {spec.describe()}")


def test_results_come_back_as_numpy_in_the_dtype_asked_for(backend_name, dtype):
    be = backend_or_skip(backend_name, dtype)
    spec = MLPSpec((3, 4, 2), "tanh", "mse")
    params, X, y = make_problem(spec)
    y_hat = be.forward(spec, params, X)
    loss, grads = be.loss_and_grads(spec, params, X, y)
    assert type(y_hat) is np.ndarray and y_hat.dtype == np.dtype(dtype) and y_hat.shape == (8, 2)
    assert type(loss) is float
    for layer, ref in zip(grads, params):
        for k in ("W", "b"):
            assert type(layer[k]) is np.ndarray and layer[k].dtype == np.dtype(dtype)
            assert layer[k].shape == ref[k].shape


def test_each_backend_really_computes_in_its_dtype(backend_name):
    """float32 must be computed in float32, float64 in float64 — not one cast to the other.

    A float64 computation rounded to float32 at the end is within ½ ulp of the float64 result; a
    genuine float32 computation over 64-term sums strays several ulps. And a genuine float64 result
    matches the NumPy float64 reference to ~1e-15, far below float32's resolution."""
    spec = MLPSpec((64, 64, 64, 1), "tanh", "mse")
    params, X, _ = make_problem(spec, n=32, bias_scale=0.1)
    # Inputs exactly representable in float32, so both dtypes start from the very same numbers.
    X = X.astype(np.float32).astype(np.float64)
    params = map_params(lambda a: a.astype(np.float32).astype(np.float64), params)
    ref64 = backend_or_skip("numpy", "float64").forward(spec, params, X)
    y32 = backend_or_skip(backend_name, "float32").forward(spec, params, X)
    y64 = backend_or_skip(backend_name, "float64").forward(spec, params, X)
    ulps = np.abs(y32.astype(np.float64) - ref64) / np.spacing(np.abs(ref64).astype(np.float32))
    assert ulps.max() > 1.0, f"{backend_name} float32 is within {ulps.max():.2f} ulp of float64: not float32 math"
    assert np.abs(y64 - ref64).max() < 1e-12, f"{backend_name} float64 is not float64 math"


def test_gelu_is_the_exact_erf_form(backend_name, dtype):
    """x·Φ(x) with Φ from erf. The tanh approximation (jax.nn.gelu's default) is off by ~1e-4 near
    |x| ≈ 2 — far outside even the float32 tolerance, so this tells the two apart."""
    be = backend_or_skip(backend_name, dtype)
    spec = MLPSpec((1, 1, 1), "gelu", "mse")
    params = [{"W": np.ones((1, 1)), "b": np.zeros(1)}, {"W": np.ones((1, 1)), "b": np.zeros(1)}]
    x = np.linspace(-4, 4, 33)
    exact = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    tanh_approx = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    assert np.abs(exact - tanh_approx).max() > 1e-4  # the two forms really are distinguishable
    got = be.forward(spec, params, x[:, None])[:, 0]
    result = closeness(got, exact, tolerance(dtype, "forward"))
    assert result.ok, result.message(f"{backend_name} gelu vs exact x·Φ(x), {dtype}")
