"""Dynamic loss scaling: float16's gradients, kept out of the underflow.

float16's smallest normal number is 6.1e-5 (subnormals go down to 6e-8), and late in training many
gradients are smaller: in float16 they flush to 0 and the run stops learning without a word. So the
loss is multiplied by a scale S before the backward (every gradient grows by S, into float16's
range), and the float32 gradients are divided by S again before the update. One rule, the same in
all three backends (torch's GradScaler's, which NumPy and JAX write out):

    a step whose unscaled gradients are all finite:   update;     after `interval` such steps in a row, S ← S·growth
    a step with an inf or NaN (the scale overflowed): skip it;    S ← S·backoff, and the count starts again

    be = get_backend("torch", "float16", precision="mixed")
    traj = be.train(spec, params, X, y, Adam(1e-3), steps=500, loss_scale=DynamicLossScale())
    traj.meta["loss_scale"]   # the rule, the final scale, the steps that were skipped
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from shared.optim import Adam
from shared.params import tree_leaves
from shared.validation import HALF_DTYPES


@dataclass(frozen=True)
class DynamicLossScale:
    """The dynamic loss-scaling rule (see the module docstring). Powers of two keep the scaling exact."""

    init: float = 2.0**15
    growth: float = 2.0
    backoff: float = 0.5
    interval: int = 100

    def __post_init__(self) -> None:
        for name, value, ok, expected in (
            ("init", self.init, self.init > 0, "> 0"),
            ("growth", self.growth, self.growth > 1, "> 1"),
            ("backoff", self.backoff, 0 < self.backoff < 1, "in (0, 1)"),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok:
                raise ValueError(f"DynamicLossScale.{name} must be a finite number {expected}; got {value!r}")
        if isinstance(self.interval, bool) or not isinstance(self.interval, int) or self.interval < 1:
            raise ValueError(f"DynamicLossScale.interval must be an integer ≥ 1; got {self.interval!r}")

    def update(self, scale: float, good: int, finite: bool) -> tuple[float, int]:
        """(scale, good steps in a row) after a step whose unscaled gradients were `finite` or not."""
        if not finite:
            return scale * self.backoff, 0
        good += 1
        return (scale * self.growth, 0) if good == self.interval else (scale, good)

    def to_dict(self) -> dict:
        return asdict(self)


class ScaleTracker:
    """A run's loss scale as it goes: the scale and the good steps in a row (the rule's state), the
    step count, and the steps that were skipped. Every backend applies DynamicLossScale's rule in its
    own step (torch: GradScaler) and reports each step here, so the run records them alike."""

    def __init__(self, rule: DynamicLossScale, scale: float | None = None, good: int = 0, step: int = 0) -> None:
        self.rule = rule
        self.scale = float(rule.init if scale is None else scale)
        self.good, self.step = good, step
        self.skipped: list[int] = []

    def after_step(self, finite: bool) -> None:
        if not finite:
            self.skipped.append(self.step)
        self.scale, self.good = self.rule.update(self.scale, self.good, finite)
        self.step += 1

    def record(self, prior: dict | None = None) -> dict:
        """What the Trajectory keeps: the rule, the scale and count to continue from, every skipped step
        (a continued run's after the earlier run's)."""
        skipped = [*(prior or {}).get("skipped", []), *self.skipped]
        return {**self.rule.to_dict(), "scale": self.scale, "good": self.good, "skipped": skipped}


LOSS_SCALE_FIX = "train with loss_scale=shared.precision.DynamicLossScale()"
PURE_FIX = (
    "loss scaling needs float32 params to unscale into: train in mixed precision, "
    "get_backend(name, 'float16', precision='mixed'), with loss_scale=shared.precision.DynamicLossScale()"
)


def underflow_message(low: list, full: list, fix: str = LOSS_SCALE_FIX) -> str | None:
    """What to say when half-format gradients `low` are exactly 0 where the float32 ones `full` are
    not (they flushed below the format's range, and training would learn nothing from them), or None."""
    pairs = [(np.asarray(a), np.asarray(b)) for a, b in zip(low, full)]
    flushed = [b[(a == 0) & (b != 0)] for a, b in pairs]  # what float32 has and the half format lost
    lost = sum(f.size for f in flushed)
    if not lost:
        return None
    total, largest = sum(b.size for _, b in pairs), max(float(np.abs(f).max()) for f in flushed if f.size)
    return (
        f"{lost} of {total} gradient entries underflow to 0 in float16 (in float32 they are as large as "
        f"{largest:.1e}): {fix}"
    )


def warn_if_gradients_underflow(backend, spec, params, X, y) -> None:
    """float16 without loss scaling: warn (at the caller of train) when gradients that float32 sees
    are exactly 0 in float16, from one backward of each on the first batch."""
    with backend._compute(spec, len(X)):
        _, low = backend._loss_and_grads(spec, params, X, y)
    _, full = type(backend)("float32", backend.device).loss_and_grads(spec, params, X, y)
    fix = PURE_FIX if backend.precision == "pure" else LOSS_SCALE_FIX
    if message := underflow_message(tree_leaves(low), tree_leaves(full), fix):
        warnings.warn(message, UserWarning, stacklevel=3)


def why_pure_half_cannot_train(optimizer) -> str | None:
    """Why `optimizer` cannot train in a pure half format (every parameter and buffer in it), or None.
    SGD can, with or without momentum (each framework rounds its update its own way: see each
    backend's optim.py). Adam cannot: β₂ = 0.999 rounds to 1 in bfloat16, where optax's injected
    hyperparameters take the params' dtype, so its bias correction 1 − β₂ᵗ is 0 and JAX's first step
    divides by it (NaN); in float16 its ε = 1e-8 rounds to 0. That is what mixed precision is for."""
    adam = optimizer in ("adam", "adamw") if isinstance(optimizer, str) else isinstance(optimizer, Adam)
    if adam:
        return (
            "its β₂ = 0.999 rounds to 1 in bfloat16 (the bias correction 1 − β₂ᵗ becomes 0) and its "
            "ε = 1e-8 to 0 in float16"
        )
    return None


def check_trains(backend, loss_scale, optimizer=None) -> None:
    """What `backend` cannot train (Adam in a pure half format), and a loss scale where it means nothing,
    refused by name."""
    if backend.dtype in HALF_DTYPES and backend.precision == "pure" and (why := why_pure_half_cannot_train(optimizer)):
        raise ValueError(
            f"{type(optimizer).__name__} cannot train in pure {backend.dtype}: {why}. Train it in mixed "
            f"precision, get_backend(name, {backend.dtype!r}, precision='mixed') (float32 params and "
            "optimizer state), or use SGD (with or without momentum) in the pure format"
        )
    if loss_scale is not None and (not isinstance(loss_scale, DynamicLossScale) or backend.precision != "mixed"):
        raise ValueError(
            "loss_scale must be a shared.precision.DynamicLossScale, and it scales a half-format backward: "
            f"use precision='mixed'; got {loss_scale!r} on {backend!r}"
        )
