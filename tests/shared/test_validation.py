"""Bad input gets a clear error on every backend — never a silent broadcast, never a NaN.

The checks live once in shared/ and run before any framework sees the data; running them through
every backend proves that each backend goes through them."""

import numpy as np
import pytest

from backends import get_backend
from shared.params import init_params
from shared.spec import MLPSpec
from tests.conftest import backend_or_skip

BCE = MLPSpec((2, 3, 1), "tanh", "bce")
MSE = MLPSpec((2, 3, 1), "tanh", "mse")
CE = MLPSpec((2, 3, 3), "relu", "softmax_ce")
X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])


@pytest.mark.parametrize(
    "spec, X_, y, error, match",
    [
        (BCE, X[0], None, ValueError, r"X must be 2-D \(n_samples, 2\); got shape \(2,\).*reshape\(1, -1\)"),
        (BCE, X[None], None, ValueError, r"X must be 2-D"),
        (BCE, np.ones((3, 5)), None, ValueError, r"X must have 2 features \(sizes\[0\].*got shape \(3, 5\)"),
        (BCE, np.ones((0, 2)), None, ValueError, "X is an empty batch"),
        (BCE, np.array([[0.0, np.nan]]), None, ValueError, r"X must be finite; found nan at index \(0, 1\)"),
        (BCE, np.array([[0.0, np.inf]]), None, ValueError, r"X must be finite; found inf"),
        (BCE, np.array([["a", "b"]]), None, TypeError, "X must hold real numbers"),
        (BCE, X, np.ones((2, 1)), ValueError, r"len\(X\) = 3, len\(y\) = 2"),
        (BCE, X, np.ones(3), ValueError, r"must have the output's shape \(3, 1\); got \(3,\).*broadcast to \(3, 3\)"),
        (
            MSE,
            X,
            np.ones(3),
            ValueError,
            r"loss='mse' must have the output's shape \(3, 1\); got \(3,\).*y.reshape\(-1, 1\)",
        ),
        (MSE, X, np.array([[0.0], [np.nan], [1.0]]), ValueError, r"y must be finite; found nan at index \(1, 0\)"),
        (BCE, X, np.array([[0.0], [2.0], [1.0]]), ValueError, r"probabilities in \[0, 1\]; got 2.0"),
        (
            CE,
            X,
            np.array([0.0, 1.0, 2.0]),
            TypeError,
            r"integer class labels; got dtype float64 \(use y.astype\(int\)\)",
        ),
        (CE, X, np.array([0, -1, 2]), ValueError, r"labels must be in \[0, 3\).*y\[1\] = -1"),
        (CE, X, np.array([0, 1, 3]), ValueError, r"labels must be in \[0, 3\).*y\[2\] = 3"),
        (CE, X, np.array([[0], [1], [2]]), ValueError, r"softmax_ce' must have shape \(n,\) = \(3,\); got \(3, 1\)"),
        (CE, X, 1, ValueError, r"len\(y\) = a scalar"),
    ],
)
def test_bad_input_raises_a_clear_error(backend_name, spec, X_, y, error, match):
    be = get_backend(backend_name)
    params = init_params(spec)
    with pytest.raises(error, match=match):
        if y is None:
            be.forward(spec, params, X_)
        else:
            be.loss_and_grads(spec, params, X_, y)


def test_params_of_the_wrong_shape_are_rejected_by_every_backend(backend_name):
    be = get_backend(backend_name)
    params = init_params(BCE)
    params[0]["W"] = params[0]["W"].T
    with pytest.raises(ValueError, match=r"params\[0\]\['W'\].*torch's \(out, in\) layout"):
        be.forward(BCE, params, X)


def test_spec_must_be_an_mlpspec(backend_name):
    with pytest.raises(TypeError, match="spec must be an MLPSpec"):
        get_backend(backend_name).forward((2, 3, 1), init_params(BCE), X)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # numpy's own warning, then ours
def test_overflow_is_an_error_not_a_nan(backend_name):
    """Finite inputs whose float32 result overflows: a FloatingPointError that says so."""
    be = backend_or_skip(backend_name, "float32")
    spec = MLPSpec((2, 1), "identity", "mse")
    params = [{"W": np.full((2, 1), 1e30), "b": np.zeros(1)}]
    with pytest.raises(FloatingPointError, match="overflowed float32"):
        be.loss_and_grads(spec, params, np.full((1, 2), 1e10), np.zeros((1, 1)))


@pytest.mark.parametrize("bad", ["float8", "int32", "double precision", None])
def test_unknown_dtype_lists_the_valid_ones(bad):
    with pytest.raises(ValueError, match=r"dtype must be one of 'float64', 'float32', 'bfloat16', 'float16'"):
        get_backend("numpy", dtype=bad)


def test_a_dtype_outside_the_allowed_ones_is_refused_naming_them():
    """check_dtype against a narrower list (here the full-precision DTYPES) names that list's choices."""
    from shared.validation import DTYPES, check_dtype

    with pytest.raises(ValueError, match="dtype must be one of 'float64', 'float32'; got 'float16'"):
        check_dtype("float16", DTYPES)


def test_params_in_bfloat16_are_accepted_and_keep_their_dtype():
    """ml_dtypes' bfloat16 is not an np.floating, and check_params refused it ("must hold real
    numbers"): the params a pure bfloat16 run returns could not go back in."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    from shared.params import check_params, tree_leaves

    spec = MLPSpec((2, 3, 1), "tanh", "bce")
    half = [{k: v.astype(ml_dtypes.bfloat16) for k, v in layer.items()} for layer in init_params(spec)]
    assert all(a.dtype == ml_dtypes.bfloat16 for a in tree_leaves(check_params(spec, half)))
    half[0]["W"][0, 0] = np.inf
    with pytest.raises(ValueError, match=r"params\[0\]\['W'\] must be finite; found inf at index \(0, 0\)"):
        check_params(spec, half)
