"""The checkers themselves: a comparison must never pass on NaN, inf or mismatched structure.

Deliberate bugs these catch: `closeness` computing |a − b| and letting NaN through the `max` (NaN
compares False with everything, so a NaN never "exceeds" a tolerance), `compare` testing
`gap > tol` instead of `not gap <= tol`, and either one zipping two params lists of different
lengths (zip stops at the shorter one, so a missing layer is never looked at)."""

import numpy as np
import pytest

from shared.params import init_params
from shared.spec import MLPSpec
from shared.tolerances import closeness, tolerance
from shared.trajectory import Trajectory, compare

TOL = tolerance("float64", "forward")
SPEC = MLPSpec((2, 3, 1), "tanh", "bce")


def _params(seed=0):
    return init_params(SPEC, seed=seed)


@pytest.mark.parametrize(
    "bad, where",
    [
        (np.nan, "nan"),
        (np.inf, "inf"),
        (-np.inf, "-inf"),
    ],
)
def test_a_non_finite_entry_on_one_side_fails_and_is_named(bad, where):
    good = np.array([[0.5, 1.0], [2.0, 3.0]])
    other = good.copy()
    other[1, 0] = bad
    for a, b in ((good, other), (other, good)):
        result = closeness(a, b, TOL)
        assert not result.ok
        assert result.worst == "[1, 0]"
        assert result.n_nonfinite == 1
        assert where in result.message("x") and "not finite" in result.message("x")


def test_all_nan_against_good_values_fails():
    good = np.ones(5)
    result = closeness(good, np.full(5, np.nan), TOL)
    assert not result.ok and result.n_nonfinite == 5
    assert np.isnan(result.max_abs)  # never a reassuring 0


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_non_finite_on_both_sides_fails_even_when_equal(value):
    a = np.array([1.0, value])
    result = closeness(a, a.copy(), TOL)
    assert not result.ok and result.worst == "[1]"


def test_finite_equal_arrays_still_pass():
    a = np.array([1.0, -2.0, 0.0])
    result = closeness(a, a.copy(), TOL)
    assert result.ok and result.max_abs == 0 and result.n_nonfinite == 0


def test_params_with_a_nan_in_the_last_layer_fail_with_its_name():
    a, b = _params(), _params()
    b[1]["b"][0] = np.nan
    result = closeness(a, b, TOL)
    assert not result.ok and result.worst == "layer1.b[0]"


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda p: p[:1], r"2 layers.*1 layer"),
        (lambda p: p + [{"W": np.ones((1, 1)), "b": np.ones(1)}], r"2 layers.*3 layers"),
        (lambda p: [p[0], {"W": p[1]["W"]}], r"layer1.*keys"),
        (lambda p: [p[0], {"W": p[1]["W"][:2], "b": p[1]["b"]}], r"layer1.W.*shapes \(3, 1\) and \(2, 1\)"),
    ],
)
def test_a_mismatch_of_structure_or_shape_is_an_error_naming_it(mutate, match):
    with pytest.raises(ValueError, match=match):
        closeness(_params(), mutate(_params()), TOL)


def test_an_array_against_a_params_list_is_an_error():
    with pytest.raises(TypeError, match="params list"):
        closeness(_params(), np.ones(3), TOL)


def test_a_scalar_against_an_array_is_a_shape_error():
    with pytest.raises(ValueError, match=r"shapes \(\) and \(1,\)"):
        closeness(1.0, np.ones(1), TOL)


# ---- trajectories ----


def _traj(losses, params=None):
    losses = np.asarray(losses, float)
    return Trajectory(losses=losses, grad_norms=np.ones_like(losses), params=params or _params())


def test_compare_fails_on_a_nan_loss_on_one_side():
    a, b = _traj([1.0, 0.9, 0.8]), _traj([1.0, np.nan, 0.8])
    for x, y in ((a, b), (b, a)):
        result = compare(x, y, TOL)
        assert not result.ok and result.first_exceeded == 1


def test_compare_fails_on_infinite_losses_on_both_sides():
    a, b = _traj([1.0, np.inf]), _traj([1.0, np.inf])
    assert compare(a, b, TOL).first_exceeded == 1


def test_compare_fails_on_non_finite_final_params():
    bad = _params()
    bad[0]["W"][0, 0] = np.inf
    result = compare(_traj([1.0, 0.9]), _traj([1.0, 0.9], bad), TOL)
    assert not result.ok and result.first_exceeded == 2


def test_compare_refuses_params_of_a_different_structure():
    other = init_params(MLPSpec((2, 3, 3, 1)), seed=0)
    with pytest.raises(ValueError, match=r"2 layers.*3 layers"):
        compare(_traj([1.0]), _traj([1.0], other), TOL)


def test_compare_of_identical_finite_runs_passes():
    assert compare(_traj([1.0, 0.5]), _traj([1.0, 0.5]), TOL).ok
