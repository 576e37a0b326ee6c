"""The half formats, bfloat16 and float16: forward and gradients of the MLP on every backend.

Arrays cross the interface in the format itself (numpy's float16, ml_dtypes' bfloat16). Every pair
of backends agrees within the half formats' tolerances (shared.tolerances: 4ε forward, 8ε gradients,
about 4× what was measured), and NumPy accumulates its sums in float32 as torch and XLA do.

Deliberate bugs these catch: NumPy summing bfloat16 in bfloat16 (test_numpy_sums...), a result that
comes back in float32 or float64 instead of the half format, torch reading ml_dtypes' bfloat16 bits as
something else, a GELU evaluated in float64 and never rounded back."""

import numpy as np
import pytest

from backends import get_backend
from backends.numpy import mlp as nm
from shared.optim import SGD
from shared.params import init_params, tree_leaves
from shared.spec import GPTSpec, MLPSpec
from shared.tolerances import closeness, tolerance
from shared.validation import HALF_DTYPES, numpy_dtype
from tests.conftest import backend_or_skip

pytest.importorskip("ml_dtypes", reason="bfloat16 in numpy needs ml_dtypes (it comes with jax)")

CASES = [
    ("tanh", "mse", 2),
    ("relu", "bce", 1),
    ("sigmoid", "softmax_ce", 3),
    ("gelu", "mse", 2),
    ("gelu", "softmax_ce", 4),
]


def problem(activation: str, loss: str, k: int, seed: int = 0):
    spec = MLPSpec((3, 16, 8, k), activation, loss)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(32, 3))
    if loss == "softmax_ce":
        y = rng.integers(0, k, 32)
    elif loss == "bce":
        y = rng.integers(0, 2, (32, 1)).astype(float)
    else:
        y = rng.normal(size=(32, k))
    return spec, init_params(spec, seed=seed), X, y


@pytest.fixture(params=HALF_DTYPES)
def half(request) -> str:
    return request.param


@pytest.mark.parametrize("activation, loss, k", CASES, ids=[f"{a}-{l}" for a, l, _ in CASES])
def test_every_pair_agrees_in_the_half_formats(pair, half, activation, loss, k):
    spec, params, X, y = problem(activation, loss, k)
    a, b = (backend_or_skip(name, half) for name in pair)
    fa, fb = a.forward(spec, params, X), b.forward(spec, params, X)
    assert fa.dtype == fb.dtype == numpy_dtype(half)  # the format itself, not float32 behind it
    result = closeness(fa, fb, tolerance(half, "forward"))
    assert result.ok, result.message(f"forward, {pair} {half} {spec.describe()}")
    (la, ga), (lb, gb) = a.loss_and_grads(spec, params, X, y), b.loss_and_grads(spec, params, X, y)
    assert all(g.dtype == numpy_dtype(half) for g in tree_leaves(ga) + tree_leaves(gb))
    result = closeness(ga, gb, tolerance(half, "grads"))
    assert result.ok, result.message(f"grads, {pair} {half} {spec.describe()}")
    assert closeness(np.array(la), np.array(lb), tolerance(half, "forward")).ok, (la, lb)


def test_a_half_format_is_close_to_float64_at_its_own_precision(backend_name, half):
    """Precision, not framework: each backend's half result is within its format's tolerance of the
    float64 one, and (it is lossy) not within float32's."""
    spec, params, X, _ = problem("tanh", "mse", 2, seed=3)
    low = get_backend(backend_name, half).forward(spec, params, X).astype(np.float64)
    exact = get_backend("numpy", "float64").forward(spec, params, X)
    assert closeness(low, exact, tolerance(half, "forward")).ok
    assert not closeness(low, exact, tolerance("float32", "forward")).ok


@pytest.mark.parametrize("half_", HALF_DTYPES)
def test_numpy_sums_half_precision_in_float32(half_):
    """matmul, total and mean accumulate in float32 and round once, bit for bit; in float32 and
    float64 they are the plain @, sum and mean."""
    dtype = numpy_dtype(half_)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(8, 4096)).astype(dtype), rng.normal(size=(4096, 3)).astype(dtype)
    got = nm.matmul(a, b)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, (a.astype(np.float32) @ b.astype(np.float32)).astype(dtype))
    np.testing.assert_array_equal(nm.total(a, axis=1), a.astype(np.float32).sum(axis=1).astype(dtype))
    assert nm.mean(a).dtype == dtype and nm.mean(a) == (a.astype(np.float32).sum() / a.size).astype(dtype)
    x = rng.normal(size=(5, 7)).astype(np.float32)
    assert np.array_equal(nm.matmul(x, x.T), x @ x.T) and nm.mean(x) == np.mean(x)


def test_numpys_own_bfloat16_sum_would_lose_what_float32_keeps():
    """Why the casts are written out: ml_dtypes' bfloat16 sum() adds in bfloat16, and 100,000 terms
    drift from the exact sum a thousand times further than one rounding of the float32 sum does."""
    dtype = numpy_dtype("bfloat16")
    a = (np.random.default_rng(1).normal(size=100_000) + 0.5).astype(dtype)
    exact = a.astype(np.float64).sum()
    ours, numpys = abs(float(nm.total(a)) - exact), abs(float(a.sum()) - exact)
    assert ours < numpys / 100, (ours, numpys)
    assert (a[:4, None] @ a[None, :4]).dtype == np.float32 and nm.matmul(a[:4, None], a[None, :4]).dtype == dtype


def test_bfloat16_crosses_to_torch_bit_for_bit():
    pytest.importorskip("torch")
    import torch

    from backends.torch.backend import to_numpy, to_torch

    a = np.array([1.0, -2.5, 3.140625, 1e-3], dtype=numpy_dtype("bfloat16"))
    t = to_torch(a)
    assert t.dtype == torch.bfloat16 and t.tolist() == a.astype(np.float64).tolist()
    back = to_numpy(t * 2)
    assert back.dtype == numpy_dtype("bfloat16") and (back.astype(np.float64) == 2 * a.astype(np.float64)).all()


def test_what_the_half_formats_do_not_do_yet_says_so(half):
    spec, params, X, y = problem("tanh", "mse", 2)
    with pytest.raises(ValueError, match=f"train in {half} is not supported yet.*float32 or float64"):
        get_backend("numpy", half).train(spec, params, X, y, SGD(0.1), steps=1)
    gpt = GPTSpec(5, 4, 8, 2, 1)
    with pytest.raises(ValueError, match=f"the GPT in {half} is not supported yet"):
        get_backend("numpy", half).forward(gpt, init_params(gpt), np.zeros((1, 4), int))


def test_an_unknown_dtype_names_every_choice():
    with pytest.raises(ValueError, match="'float64', 'float32', 'bfloat16', 'float16'; got 'float8'"):
        get_backend("numpy", "float8")
