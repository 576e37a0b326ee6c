"""The hand-written backprop against central finite differences, in float64.

This is the anchor of the whole suite: the NumPy backend's gradients are checked against the
definition of a derivative, for every activation and every loss. The torch and JAX backends are then
checked against NumPy (test_parity.py), so all three are tied to finite differences.

Deliberate bugs this catches (each tried): a dropped transpose in linear_backward (dX = dZ @ W),
a missing 1/n in a loss backward, mse dividing by n instead of n·k, tanh' written as 1 − Z²,
and the tanh-approximate GELU derivative.
"""

import numpy as np
import pytest

from backends import get_backend
from shared.spec import ACTIVATIONS, LOSSES, MLPSpec
from shared.tolerances import FD_STEP, closeness, tolerance
from tests.helpers import finite_difference_grads, make_problem, min_distance_to_kink

OUTPUTS = {"mse": 2, "bce": 1, "softmax_ce": 3}  # mse with 2 outputs: the mean is over n·k elements


def check_against_finite_differences(spec: MLPSpec, n: int = 5, seed: int = 0) -> None:
    params, X, y = make_problem(spec, n=n, seed=seed)
    assert min_distance_to_kink(spec, params, X) > 100 * FD_STEP, "pick another seed: a relu sits on its kink"
    loss, grads = get_backend("numpy", "float64").loss_and_grads(spec, params, X, y)
    numeric = finite_difference_grads(spec, params, X, y, h=FD_STEP)
    result = closeness(grads, numeric, tolerance("float64", "fd"))
    assert result.ok, result.message(f"numpy backprop vs finite differences, {spec.describe()}")


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_two_hidden_layers_match_finite_differences(activation, loss):
    check_against_finite_differences(MLPSpec((3, 4, 3, OUTPUTS[loss]), activation, loss))


@pytest.mark.parametrize("loss", LOSSES)
def test_linear_model_matches_finite_differences(loss):
    check_against_finite_differences(MLPSpec((3, OUTPUTS[loss]), "tanh", loss))


def test_mixed_activations_match_finite_differences():
    check_against_finite_differences(MLPSpec((2, 5, 4, 3, 2), ("gelu", "relu", "sigmoid"), "softmax_ce"), n=7)


def test_losses_stay_finite_and_exact_for_extreme_logits():
    """The stable forms: log1p(e^−|z|) for BCE and log-sum-exp for softmax never overflow."""
    be = get_backend("numpy")
    spec = MLPSpec((1, 1), "tanh", "bce")
    params = [{"W": np.array([[1.0]]), "b": np.array([0.0])}]
    X = np.array([[800.0], [-800.0]])  # e^800 overflows float64
    loss, grads = be.loss_and_grads(spec, params, X, np.array([[0.0], [1.0]]))
    assert loss == pytest.approx(800.0)  # each sample is 800 nats wrong
    assert np.isfinite(grads[0]["W"]).all()
    spec = MLPSpec((1, 2), "tanh", "softmax_ce")
    params = [{"W": np.array([[1.0, -1.0]]), "b": np.zeros(2)}]
    loss, _ = be.loss_and_grads(spec, params, np.array([[500.0]]), np.array([1]))
    assert loss == pytest.approx(1000.0)


def test_central_differences_of_a_known_function_and_the_params_untouched():
    """L = Σ sin(W) + Σ b³ has dL/dW = cos(W), dL/db = 3b²; a dropped 1/2h or a nudge left in place fails."""
    from shared.finite_differences import central_differences

    rng = np.random.default_rng(0)
    params = [{"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}]
    before = [{k: v.copy() for k, v in layer.items()} for layer in params]
    grads = central_differences(lambda p: float(np.sin(p[0]["W"]).sum() + (p[0]["b"] ** 3).sum()), params, FD_STEP)
    np.testing.assert_allclose(grads[0]["W"], np.cos(params[0]["W"]), rtol=1e-8)
    np.testing.assert_allclose(grads[0]["b"], 3 * params[0]["b"] ** 2, rtol=1e-8)
    assert all(np.array_equal(params[0][k], before[0][k]) for k in "Wb")
