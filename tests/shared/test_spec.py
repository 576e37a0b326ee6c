"""MLPSpec and init_params: what a valid network description is, and the errors for invalid ones."""

import numpy as np
import pytest

from shared.params import check_params, init_params
from shared.spec import ACTIVATIONS, LOSSES, MLPSpec


def test_spec_normalises_lists_to_hashable_tuples():
    spec = MLPSpec(sizes=[2, 3, 3, 1], activation=["tanh", "relu"], loss="bce")
    assert spec.sizes == (2, 3, 3, 1)
    assert spec.activations == ("tanh", "relu")
    assert hash(spec) == hash(MLPSpec((2, 3, 3, 1), ("tanh", "relu"), "bce"))
    assert spec.layer_shapes == ((2, 3), (3, 3), (3, 1))
    assert spec.n_params == 2 * 3 + 3 + 3 * 3 + 3 + 3 * 1 + 1


def test_one_activation_name_applies_to_every_hidden_layer():
    assert MLPSpec((4, 8, 8, 8, 2), "gelu", "softmax_ce").activations == ("gelu",) * 3
    assert MLPSpec((4, 2), "relu", "mse").activations == ()  # no hidden layer: a linear model


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(sizes=(2,)), ValueError, r"sizes needs at least 2 entries.*\(2,\)"),
        (dict(sizes=()), ValueError, "sizes needs at least 2 entries"),
        (dict(sizes=(2, 0, 1)), ValueError, r"sizes\[1\] must be a positive integer; got 0"),
        (dict(sizes=(2, -3, 1)), ValueError, r"sizes\[1\] must be a positive integer; got -3"),
        (dict(sizes=(2, 2.5, 1)), TypeError, r"sizes\[1\] must be a positive integer; got 2.5"),
        (dict(sizes=(2, True, 1)), TypeError, r"sizes\[1\] must be a positive integer; got True"),
        (dict(sizes="241"), TypeError, "sizes must be a list or tuple"),
        (dict(sizes=(2, 4, 1), activation="swish"), ValueError, r"activation must be one of 'identity'.*got 'swish'"),
        (dict(sizes=(2, 4, 4, 1), activation=("tanh",)), ValueError, r"activation must be one name or 2 names"),
        (
            dict(sizes=(2, 4, 1), loss="hinge"),
            ValueError,
            r"loss must be one of 'mse', 'bce', 'softmax_ce'; got 'hinge'",
        ),
        (dict(sizes=(2, 4, 2), loss="bce"), ValueError, r"loss='bce' needs one output"),
        (dict(sizes=(2, 4, 1), loss="softmax_ce"), ValueError, r"loss='softmax_ce' needs at least 2 outputs"),
    ],
)
def test_invalid_specs_are_rejected_with_a_clear_error(kwargs, error, match):
    with pytest.raises(error, match=match):
        MLPSpec(**kwargs)


def test_every_name_is_accepted():
    for act in ACTIVATIONS:
        for loss in LOSSES:
            MLPSpec((3, 4, 1 if loss != "softmax_ce" else 3), act, loss)


def test_init_params_layout_dtype_and_determinism():
    spec = MLPSpec((3, 5, 2), "tanh", "mse")
    p = init_params(spec, seed=7)
    assert [layer["W"].shape for layer in p] == [(3, 5), (5, 2)]  # canonical (in, out)
    assert [layer["b"].shape for layer in p] == [(5,), (2,)]
    assert all(a.dtype == np.float64 for layer in p for a in layer.values())
    q = init_params(spec, seed=7)
    assert all(np.array_equal(x[k], y[k]) for x, y in zip(p, q) for k in "Wb")
    r = init_params(spec, seed=8)
    assert not np.array_equal(p[0]["W"], r[0]["W"])
    # Glorot-uniform bound sqrt(6 / (fan_in + fan_out))
    assert np.abs(p[0]["W"]).max() <= np.sqrt(6 / 8)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_init_params_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        init_params(MLPSpec((2, 1)), seed=seed)


def test_check_params_catches_torch_layout_with_a_hint():
    spec = MLPSpec((3, 5, 2), "tanh", "mse")
    p = init_params(spec)
    p[0]["W"] = p[0]["W"].T  # (5, 3): torch's (out, in)
    with pytest.raises(
        ValueError, match=r"params\[0\]\['W'\] must have shape .* \(3, 5\); got \(5, 3\).*torch's \(out, in\)"
    ):
        check_params(spec, p)


@pytest.mark.parametrize(
    "mutate, error, match",
    [
        (lambda p: p[:1], ValueError, "params has 1 layers but spec"),
        (lambda p: [p[0], {"W": p[1]["W"]}], ValueError, r"params\[1\] must be a dict with exactly the keys"),
        (
            lambda p: [p[0], {**p[1], "b": np.zeros(3)}],
            ValueError,
            r"params\[1\]\['b'\] must have shape \(2,\); got \(3,\)",
        ),
        (
            lambda p: [p[0], {**p[1], "b": np.array([0.0, np.nan])}],
            ValueError,
            r"params\[1\]\['b'\] must be finite; found nan",
        ),
        (
            lambda p: [p[0], {**p[1], "W": np.full((5, 2), np.inf)}],
            ValueError,
            r"params\[1\]\['W'\] must be finite; found inf",
        ),
        (
            lambda p: [p[0], {**p[1], "W": np.full((5, 2), "a")}],
            TypeError,
            r"params\[1\]\['W'\] must hold real numbers",
        ),
        (lambda p: {"W": 1}, TypeError, "params must be a list"),
    ],
)
def test_check_params_errors_name_layer_and_key(mutate, error, match):
    spec = MLPSpec((3, 5, 2), "tanh", "mse")
    with pytest.raises(error, match=match):
        check_params(spec, mutate(init_params(spec)))
