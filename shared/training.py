"""What every backend's training loop shares: the minibatch order and the argument checks.

The batch order is computed here, once, in numpy, from the seed — so NumPy, torch and JAX train on
identical batches, epoch after epoch, and their trajectories can be compared step by step. It is
drawn lazily, a chunk of steps at a time, so a long run never holds its whole schedule in memory.
"""

from __future__ import annotations

import numbers
import os
import sys
from contextlib import nullcontext

import numpy as np

from shared.optim import Optimizer
from shared.params import Params
from shared.spec import spec_to_dict
from shared.trajectory import Trajectory

ON_NONFINITE = ("raise", "stop")

MAX_STEPS = 10**8
"""The most steps one `train` call runs. Every step's loss and gradient norm are kept (2 × 8 bytes
per step in float64, 1.6 GB at this bound), so a typo like steps=10**12 is refused at once rather
than left to exhaust memory."""

MAX_SNAPSHOT_BYTES = 2 * 1024**3
"""The most memory the params snapshots of one run may take (record_every small, steps large)."""


class MinibatchSchedule:
    """Sample indices for every step: each epoch a fresh permutation of the n samples, cut into
    n // batch_size batches; the last, incomplete batch of an epoch is dropped, so every batch has
    the same shape (which JAX's compiled step needs) and every sample is seen once per epoch.

    `rows(start, stop)` returns steps start..stop−1 as a (stop − start, batch_size) array. Epochs are
    drawn in order from one generator seeded by `seed`, and only the epochs a chunk touches are kept."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.per_epoch = n // batch_size
        self._restart()

    def _restart(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._epochs: dict[int, np.ndarray] = {}  # epoch index -> (per_epoch, batch_size), a contiguous run
        self._drawn = 0  # epochs drawn from the generator so far

    def rows(self, start: int, stop: int) -> np.ndarray:
        if not 0 <= start < stop:
            raise ValueError(f"need 0 ≤ start < stop; got start={start}, stop={stop}")
        first, last = start // self.per_epoch, (stop - 1) // self.per_epoch
        if first < self._drawn and first not in self._epochs:  # asked again for a dropped epoch
            self._restart()
        self._epochs = {e: batches for e, batches in self._epochs.items() if e >= first}
        while self._drawn <= last:  # epochs in order from the one generator: the same order every time
            batches = self._rng.permutation(self.n)[: self.per_epoch * self.batch_size]
            if self._drawn >= first:
                self._epochs[self._drawn] = batches.reshape(self.per_epoch, self.batch_size)
            self._drawn += 1
        epochs = np.concatenate([self._epochs[e] for e in range(first, last + 1)])
        offset = first * self.per_epoch
        return epochs[start - offset : stop - offset]  # (stop - start, batch_size)


def minibatch_schedule(n: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """(steps, batch_size) sample indices: the whole MinibatchSchedule of a run, at once."""
    return MinibatchSchedule(n, batch_size, seed).rows(0, steps)


def _int(value: object, arg: str, allow_none: bool = False, minimum: int = 1, maximum: int | None = None):
    """`value` as a Python int (numpy integers included) in [minimum, maximum], or None if allowed."""
    if value is None and allow_none:
        return None
    extra = " or None" if allow_none else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{arg} must be an integer ≥ {minimum}{extra}; got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{arg} must be at most {maximum:,}; got {value:,}")
    return int(value)


def check_train_args(
    n: int,
    n_params: int,
    itemsize: int,
    optimizer,
    steps,
    batch_size,
    seed,
    record_every,
    on_nonfinite,
    record_losses=1,
):
    """Validate train()'s arguments for n samples; return (steps, batch_size, seed, record_every,
    record_losses) as plain Python ints (or None), so they serialize and every framework accepts them."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            "optimizer must be a shared.optim optimizer, e.g. SGD(lr=0.1) or Adam(lr=0.01); "
            f"got {type(optimizer).__name__}"
        )
    steps = _int(steps, "steps", maximum=MAX_STEPS)
    batch_size = _int(batch_size, "batch_size", allow_none=True)
    if batch_size is not None and batch_size > n:
        raise ValueError(f"batch_size must be at most the number of samples ({n}); got {batch_size}")
    seed = _int(seed, "seed", minimum=0)
    record_every = _int(record_every, "record_every", allow_none=True)
    if record_every is not None:
        snapshots = -(-steps // record_every)
        size = snapshots * n_params * itemsize
        if size > MAX_SNAPSHOT_BYTES:
            raise ValueError(
                f"record_every={record_every} would keep {snapshots:,} snapshots of {n_params:,} parameters "
                f"({size / 1024**3:.1f} GiB, more than the {MAX_SNAPSHOT_BYTES / 1024**3:.0f} GiB allowed); "
                "record less often"
            )
    record_losses = _int(record_losses, "record_losses", allow_none=True)
    if not isinstance(on_nonfinite, str) or on_nonfinite not in ON_NONFINITE:
        raise ValueError(f"on_nonfinite must be one of {', '.join(map(repr, ON_NONFINITE))}; got {on_nonfinite!r}")
    return steps, batch_size, seed, record_every, record_losses


# ---- what a run keeps as it goes, and its progress bar (Backend.train uses both) ----


class RunRecord:
    """What a training run keeps as it goes: the kept losses and gradient norms (filled up to `kept`),
    the params snapshots, how many steps ran, and the bad step, if any: (step, quantity, value)."""

    def __init__(self, n_kept: int, dtype: np.dtype, start: int = 0) -> None:
        self.losses, self.grad_norms = np.zeros(n_kept, dtype), np.zeros(n_kept, dtype)
        self.kept, self.done = 0, start  # a continued run counts its steps on from the trajectory's
        self.snapshot_steps: list[int] = []
        self.snapshots: list[Params] = []
        self.diverged: tuple[int, str, float] | None = None

    def keep(self, losses: np.ndarray, norms: np.ndarray, ran: int) -> None:
        self.losses[self.kept : self.kept + len(losses)] = losses
        self.grad_norms[self.kept : self.kept + len(losses)] = norms
        self.kept += len(losses)
        self.done += ran

    def trajectory(self, params: Params, record_losses: int | None, meta: dict, optimizer_state: dict) -> Trajectory:
        return Trajectory(
            losses=self.losses[: self.kept],
            grad_norms=self.grad_norms[: self.kept],
            params=params,
            snapshot_steps=np.array(self.snapshot_steps, np.int64),
            snapshots=self.snapshots,
            diverged_at=self.diverged[0] if self.diverged else None,
            loss_every=record_losses,
            steps_run=self.done,
            meta=meta,
            optimizer_state=optimizer_state,
        )


def recorded_steps(start: int, stop: int, every: int | None) -> range:
    """The offsets i in range(stop − start) of the steps start + i that keep a loss: the multiples
    of `every` (none for None)."""
    if every is None:
        return range(0)
    return range(-start % every, stop - start, every)


class _NoBar:
    def update(self, n: int) -> None:
        pass


def progress_bar(total: int, enabled: bool | None, desc: str):
    """A tqdm bar that appears only after 2 s, on a terminal, outside CI (or when asked for)."""
    if enabled is None:
        enabled = sys.stderr.isatty() and not os.environ.get("CI")
    if not enabled:
        return nullcontext(_NoBar())
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: no bar, no error
        return nullcontext(_NoBar())
    return tqdm(total=total, desc=desc, unit="step", delay=2.0, leave=False, file=sys.stderr)


def run_meta(backend, spec, optimizer, steps: int, rows: int, seed: int, wall_time_s: float) -> dict:
    """What produced a run, for its Trajectory's meta (train adds the batch and recording settings)."""
    mixed = {"precision": "mixed", "compute_dtype": backend.dtype} if backend.precision == "mixed" else {}
    return {
        "backend": backend.name,
        "dtype": backend.param_dtype,  # of the params it holds (float32 master weights in mixed precision)
        **mixed,
        "device": backend.device,
        "threads": backend.threads_for(spec.step_flops(rows)),
        "spec": spec_to_dict(spec),
        "optimizer": optimizer.to_dict(),
        "seed": seed,
        "steps": steps,
        "wall_time_s": wall_time_s,
    }
