"""What every backend's training loop shares: the minibatch order and the argument checks.

The batch order is computed here, once, in numpy, from the seed — so NumPy, torch and JAX train on
identical batches, epoch after epoch, and their trajectories can be compared step by step.
"""

from __future__ import annotations

import numbers

import numpy as np

from shared.optim import Optimizer

ON_NONFINITE = ("raise", "stop")


def minibatch_schedule(n: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """(steps, batch_size) sample indices: each epoch a fresh permutation of the n samples, cut into
    n // batch_size batches; the last, incomplete batch of an epoch is dropped, so every batch has
    the same shape (which JAX's compiled step needs) and every sample is seen once per epoch."""
    rng = np.random.default_rng(seed)
    per_epoch = n // batch_size
    epochs = -(-steps // per_epoch)  # ceil
    order = [rng.permutation(n)[: per_epoch * batch_size].reshape(per_epoch, batch_size) for _ in range(epochs)]
    return np.concatenate(order)[:steps]  # (steps, batch_size)


def _positive_int(value: object, arg: str, allow_none: bool = False, minimum: int = 1) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        extra = " or None" if allow_none else ""
        raise ValueError(f"{arg} must be an integer ≥ {minimum}{extra}; got {value!r}")


def check_train_args(n: int, optimizer, steps, batch_size, seed, record_every, on_nonfinite) -> None:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            "optimizer must be a shared.optim optimizer, e.g. SGD(lr=0.1) or Adam(lr=0.01); "
            f"got {type(optimizer).__name__}"
        )
    _positive_int(steps, "steps")
    _positive_int(batch_size, "batch_size", allow_none=True)
    if batch_size is not None and batch_size > n:
        raise ValueError(f"batch_size must be at most the number of samples ({n}); got {batch_size}")
    _positive_int(seed, "seed", minimum=0)
    _positive_int(record_every, "record_every", allow_none=True)
    if on_nonfinite not in ON_NONFINITE:
        raise ValueError(f"on_nonfinite must be one of {', '.join(map(repr, ON_NONFINITE))}; got {on_nonfinite!r}")
