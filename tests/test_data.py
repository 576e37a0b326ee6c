"""The seeded datasets: shapes, labels, determinism, the split, and targets for each loss."""

import numpy as np
import pytest

from shared.data import DATASETS, make_dataset, xor
from shared.spec import MLPSpec


def test_xor_is_the_truth_table():
    d = xor()
    assert d.X.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert d.y.tolist() == [0, 1, 1, 0]
    assert d.y.tolist() == [int(a) ^ int(b) for a, b in d.X]


@pytest.mark.parametrize("name", DATASETS)
def test_every_dataset_is_seeded_and_well_formed(name):
    a = make_dataset(name, n=60, noise=0.1, seed=3)
    b = make_dataset(name, n=60, noise=0.1, seed=3)
    c = make_dataset(name, n=60, noise=0.1, seed=4)
    assert a.X.shape == (60, 2) and a.X.dtype == np.float64 and a.y.shape == (60,)
    assert np.issubdtype(a.y.dtype, np.integer) and set(a.y) == set(range(a.n_classes))
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)


def test_noise_zero_puts_points_exactly_on_the_shapes():
    d = make_dataset("circles", n=50, noise=0.0, factor=0.3)
    radius = np.hypot(*d.X.T)
    assert np.allclose(radius[d.y == 0], 1.0) and np.allclose(radius[d.y == 1], 0.3)
    noisy = make_dataset("xor", n=100, noise=0.0)
    assert set(map(tuple, noisy.X)) <= {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_spirals_and_blobs_take_a_class_count():
    assert make_dataset("spirals", n=90, arms=3).n_classes == 3
    assert make_dataset("blobs", n=90, centers=4).n_classes == 4


def test_split_is_deterministic_disjoint_and_complete():
    d = make_dataset("moons", n=100)
    train, test = d.split(0.25, seed=1)
    assert len(train) == 75 and len(test) == 25
    rows = {tuple(r) for r in np.concatenate([train.X, test.X])}
    assert rows == {tuple(r) for r in d.X}
    again, _ = d.split(0.25, seed=1)
    assert np.array_equal(train.X, again.X)


def test_targets_fit_each_loss():
    d = make_dataset("blobs", n=30, centers=3)
    assert d.targets(MLPSpec((2, 4, 3), "tanh", "softmax_ce")).shape == (30,)
    onehot = d.targets(MLPSpec((2, 4, 3), "tanh", "mse"))
    assert onehot.shape == (30, 3) and np.array_equal(onehot.argmax(1), d.y)
    two = make_dataset("moons", n=10)
    assert two.targets(MLPSpec((2, 4, 1), "tanh", "bce")).shape == (10, 1)
    with pytest.raises(ValueError, match="has 3 classes; one output"):
        d.targets(MLPSpec((2, 4, 1), "tanh", "bce"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="mnist"), "dataset must be one of 'xor', 'moons'"),
        (dict(name="moons", n=0), "n must be an integer ≥ 1; got 0"),
        (dict(name="moons", n=2.5), "n must be an integer ≥ 1; got 2.5"),
        (dict(name="moons", noise=-0.1), "noise must be a finite number ≥ 0; got -0.1"),
        (dict(name="spirals", arms=1), "arms must be an integer ≥ 2; got 1"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_dataset(**kwargs)


def test_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match=r"test_fraction must be in \(0, 1\)"):
        make_dataset("moons", n=10).split(1.5)
