"""Small seeded 2-D datasets for the lessons, as numpy arrays.

Every generator takes `n` (samples), `noise` (standard deviation of Gaussian jitter) and `seed`, and
returns a `Dataset` with X (n, 2) float64 and y (n,) integer class labels. `Dataset.targets(spec)`
turns the labels into what a loss expects: (n, 1) floats for bce, (n,) labels for softmax_ce,
(n, k) one-hot (or (n, 1) floats for one output) for mse.

    data = make_dataset("spirals", n=300, noise=0.1, arms=3, seed=0)
    train, test = data.split(test_fraction=0.25, seed=0)
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from shared.spec import MLPSpec


@dataclass(frozen=True)
class Dataset:
    name: str
    X: np.ndarray  # (n, 2) float64
    y: np.ndarray  # (n,) int64 class labels
    n_classes: int

    def __len__(self) -> int:
        return len(self.X)

    def targets(self, spec: MLPSpec) -> np.ndarray:
        """The labels in the form spec.loss expects (see the module docstring)."""
        if spec.loss == "softmax_ce":
            if spec.n_outputs < self.n_classes:
                raise ValueError(
                    f"dataset {self.name!r} has {self.n_classes} classes but the spec has only "
                    f"{spec.n_outputs} outputs (sizes[-1])"
                )
            return self.y
        if spec.n_outputs == 1:
            if self.n_classes > 2:
                raise ValueError(
                    f"dataset {self.name!r} has {self.n_classes} classes; one output (loss={spec.loss!r}) "
                    "only fits two. Use loss='softmax_ce' with one output per class."
                )
            return self.y[:, None].astype(np.float64)  # (n, 1)
        if spec.n_outputs != self.n_classes:
            raise ValueError(
                f"dataset {self.name!r} has {self.n_classes} classes; mse with several outputs needs "
                f"one per class (sizes[-1] = {self.n_classes}), got {spec.n_outputs}"
            )
        return np.eye(self.n_classes)[self.y]  # (n, k) one-hot

    def split(self, test_fraction: float = 0.25, seed: int = 0) -> tuple[Dataset, Dataset]:
        """A deterministic shuffled (train, test) split."""
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction!r}")
        n_test = int(round(len(self) * test_fraction))
        if not 0 < n_test < len(self):
            raise ValueError(f"test_fraction={test_fraction} of {len(self)} samples leaves an empty split")
        order = np.random.default_rng(seed).permutation(len(self))
        test, train = order[:n_test], order[n_test:]
        return (
            Dataset(self.name, self.X[train], self.y[train], self.n_classes),
            Dataset(self.name, self.X[test], self.y[test], self.n_classes),
        )


def xor(n: int | None = None, noise: float = 0.0, seed: int = 0) -> Dataset:
    """The four corners of the unit square, labelled x₁ XOR x₂. With n, n points sampled from the
    corners with Gaussian noise; without, exactly the 4 points (the classic truth table)."""
    corners = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    labels = np.array([0, 1, 1, 0])
    if n is None:
        return Dataset("xor", corners, labels, 2)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, 4, size=n)
    return Dataset("xor", corners[pick] + rng.normal(0, noise, size=(n, 2)), labels[pick], 2)


def moons(n: int = 200, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Two interleaving half circles."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    t = rng.uniform(0, np.pi, size=n)
    X = np.where(
        y[:, None] == 0,
        np.stack([np.cos(t), np.sin(t)], axis=1),
        np.stack([1 - np.cos(t), 0.5 - np.sin(t)], axis=1),
    )
    return Dataset("moons", X + rng.normal(0, noise, size=(n, 2)), y, 2)


def circles(n: int = 200, noise: float = 0.05, factor: float = 0.5, seed: int = 0) -> Dataset:
    """A small circle (class 1) inside a large one (class 0); `factor` is the radius ratio."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    t = rng.uniform(0, 2 * np.pi, size=n)
    r = np.where(y == 1, factor, 1.0)
    X = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    return Dataset("circles", X + rng.normal(0, noise, size=(n, 2)), y, 2)


def spirals(n: int = 300, noise: float = 0.1, arms: int = 2, seed: int = 0) -> Dataset:
    """`arms` interleaved spiral arms, one class each (the classic hard case for a small MLP)."""
    _check_count(arms, "arms", minimum=2)
    rng = np.random.default_rng(seed)
    y = np.arange(n) % arms
    t = rng.uniform(0.0, 1.0, size=n)  # position along the arm, centre to rim
    angle = 3 * np.pi * t + 2 * np.pi * y / arms
    X = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    return Dataset(f"spirals{arms}", X + rng.normal(0, noise * t[:, None] + 1e-12, size=(n, 2)), y, arms)


def blobs(n: int = 200, noise: float = 0.5, centers: int = 3, seed: int = 0) -> Dataset:
    """`centers` Gaussian clusters placed evenly on a circle of radius 2."""
    _check_count(centers, "centers", minimum=2)
    rng = np.random.default_rng(seed)
    y = np.arange(n) % centers
    angle = 2 * np.pi * np.arange(centers) / centers
    means = 2 * np.stack([np.cos(angle), np.sin(angle)], axis=1)  # (centers, 2)
    return Dataset("blobs", means[y] + rng.normal(0, noise, size=(n, 2)), y, centers)


DATASETS = {"xor": xor, "moons": moons, "circles": circles, "spirals": spirals, "blobs": blobs}


def make_dataset(name: str, n: int | None = None, noise: float | None = None, seed: int = 0, **kwargs) -> Dataset:
    """A dataset by name, validating n and noise. `n=None`/`noise=None` take the generator's default
    (for xor: the exact 4-point truth table)."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(map(repr, DATASETS))}; got {name!r}")
    if n is not None:
        _check_count(n, "n", minimum=1)
    if noise is not None and not (isinstance(noise, numbers.Real) and np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number ≥ 0; got {noise!r}")
    args = {k: v for k, v in dict(n=n, noise=noise).items() if v is not None}
    return DATASETS[name](seed=seed, **args, **kwargs)


def _check_count(value: object, arg: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{arg} must be an integer ≥ {minimum}; got {value!r}")
