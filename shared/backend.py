"""The one interface all three backends share (the Keras 3 pattern: same names, idiomatic insides).

`Backend` does everything that is the same in every framework: it validates the spec, params and
data, casts them to the backend's dtype as numpy arrays, calls the backend's own `_forward` /
`_loss_and_grads`, and hands numpy back. A backend file then holds only what differs — which is
exactly what a reader wants to compare.

    be = get_backend("torch", dtype="float32")
    y_hat = be.forward(spec, params, X)                    # numpy (n, sizes[-1])
    loss, grads = be.loss_and_grads(spec, params, X, y)    # float, params-shaped numpy grads
    traj = be.train(spec, params, X, y, optimizer=SGD(lr=0.1), steps=500)   # a Trajectory

Training is split the same way: `train` here validates, computes the minibatch order (shared by all
backends), runs the steps in chunks through the backend's `_train_steps`, records snapshots, shows
progress, and stops on the first non-finite loss or gradient. The backend keeps its own state (its
arrays, its optimizer) for the whole run and converts only at the two ends.
"""

from __future__ import annotations

import os
import sys
import time
from abc import ABC, abstractmethod
from contextlib import nullcontext
from typing import Any, ClassVar

import numpy as np

from shared.optim import Optimizer
from shared.params import Params, check_params, map_params
from shared.spec import MLPSpec, spec_to_dict
from shared.training import check_train_args, minibatch_schedule
from shared.trajectory import TrainingDiverged, Trajectory
from shared.validation import check_dtype, check_spec, check_X, check_y

CHUNK = 1000
"""Steps per call into the backend when nothing is recorded: the rhythm of progress updates and
divergence checks (JAX compiles one `lax.scan` of this length)."""


class Backend(ABC):
    """One framework's implementation of the MLP, behind the shared numpy interface."""

    name: ClassVar[str]
    """Registry name: 'numpy', 'torch' or 'jax'."""

    def __init__(self, dtype: str = "float64") -> None:
        self.dtype = check_dtype(dtype)
        self.np_dtype = np.dtype(self.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dtype={self.dtype!r})"

    # ---- the public interface: validate, cast, call the backend, return numpy ----

    def forward(self, spec: MLPSpec, params: Params, X: np.ndarray) -> np.ndarray:
        """The network's output (logits) for X: numpy (n, sizes[-1]) in this backend's dtype."""
        spec, params, X, _ = self._prepare(spec, params, X)
        y_hat = np.asarray(self._forward(spec, params, X))
        _check_finite_result(y_hat, "forward output", self)
        return y_hat

    def loss_and_grads(self, spec: MLPSpec, params: Params, X: np.ndarray, y: np.ndarray) -> tuple[float, Params]:
        """The mean loss over the batch (a Python float) and its gradient w.r.t. every parameter,
        in the structure of `params` (canonical (in, out) layout), numpy, this backend's dtype."""
        spec, params, X, y = self._prepare(spec, params, X, y)
        loss, grads = self._loss_and_grads(spec, params, X, y)
        loss = float(loss)
        grads = map_params(np.asarray, grads)
        _check_finite_result(np.asarray(loss), "loss", self)
        for l, layer in enumerate(grads):
            for k, g in layer.items():
                _check_finite_result(g, f"gradient of layer {l} {k}", self)
        return loss, grads

    def train(
        self,
        spec: MLPSpec,
        params: Params,
        X: np.ndarray,
        y: np.ndarray,
        optimizer: Optimizer,
        steps: int,
        batch_size: int | None = None,
        seed: int = 0,
        record_every: int | None = None,
        on_nonfinite: str = "raise",
        progress: bool | None = None,
    ) -> Trajectory:
        """Train from `params` for `steps` updates and return the Trajectory.

        batch_size: None trains on the full batch every step; an integer draws minibatches in an
            order fixed by `seed` (the same in every backend; see shared.training).
        record_every: keep a params snapshot every this many steps (None: only the final params).
        on_nonfinite: "raise" a TrainingDiverged at the first non-finite loss or gradient norm, or
            "stop" and return the trajectory up to that step with `diverged_at` set.
        progress: a progress bar on stderr; None shows one on a terminal for runs over ~2 s.
        """
        spec, params, X, y = self._prepare(spec, params, X, y)
        check_train_args(len(X), optimizer, steps, batch_size, seed, record_every, on_nonfinite)
        batches = None if batch_size is None else minibatch_schedule(len(X), batch_size, steps, seed)
        losses = np.zeros(steps, self.np_dtype)
        grad_norms = np.zeros(steps, self.np_dtype)
        snapshot_steps: list[int] = []
        snapshots: list[Params] = []
        diverged = None  # (step, quantity, value)

        start_time = time.perf_counter()
        state = self._train_begin(spec, params, X, y, optimizer, batches)
        done, chunk = 0, record_every or CHUNK
        with _progress_bar(steps, progress, f"{self.name} {self.dtype}") as bar:
            while done < steps:
                if record_every:
                    snapshot_steps.append(done)
                    snapshots.append(self._train_params(state))
                stop = min(done + chunk, steps)
                chunk_losses, chunk_norms = self._train_steps(state, done, stop)
                ran = len(chunk_losses)
                losses[done : done + ran] = chunk_losses
                grad_norms[done : done + ran] = chunk_norms
                finite = np.isfinite(chunk_losses) & np.isfinite(chunk_norms)
                if not finite.all():
                    j = int(np.argmin(finite))
                    if not np.isfinite(chunk_losses[j]):
                        quantity, value = "loss", chunk_losses[j]
                    else:
                        quantity, value = "gradient norm", chunk_norms[j]
                    done += j
                    diverged = (done, quantity, float(value))
                    break
                done = stop
                bar.update(ran)
        wall = time.perf_counter() - start_time

        traj = Trajectory(
            losses=losses[:done],
            grad_norms=grad_norms[:done],
            params=self._train_params(state),
            snapshot_steps=np.array(snapshot_steps, np.int64),
            snapshots=snapshots,
            diverged_at=diverged[0] if diverged else None,
            meta={
                "backend": self.name,
                "dtype": self.dtype,
                "spec": spec_to_dict(spec),
                "optimizer": optimizer.to_dict(),
                "seed": seed,
                "steps": steps,
                "batch_size": batch_size,
                "record_every": record_every,
                "wall_time_s": wall,
            },
        )
        if diverged and on_nonfinite == "raise":
            hint = f"The learning rate (lr={optimizer.lr:g}) is probably too high. " if diverged[1] == "loss" else ""
            raise TrainingDiverged(*diverged, trajectory=traj, hint=hint)
        return traj

    # ---- what each backend implements: arrays arrive validated, as numpy in self.dtype ----

    @abstractmethod
    def _forward(self, spec: MLPSpec, params: Params, X: np.ndarray) -> np.ndarray:
        """Logits (n, sizes[-1]) as an array numpy can read."""

    @abstractmethod
    def _loss_and_grads(self, spec: MLPSpec, params: Params, X: np.ndarray, y: np.ndarray) -> tuple[float, Params]:
        """(loss, grads) with grads in the canonical layout; arrays numpy can read."""

    @abstractmethod
    def _train_begin(self, spec, params, X, y, optimizer: Optimizer, batches: np.ndarray | None) -> Any:
        """Convert everything to the backend's own arrays, once, and build its optimizer. Returns the
        training state that `_train_steps` advances. `batches` is (steps, batch_size) sample indices,
        or None for full-batch training."""

    @abstractmethod
    def _train_steps(self, state: Any, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Run steps start..stop−1; return each step's (loss, gradient global L2 norm) as numpy.
        At the first step whose loss or gradient norm is not finite, stop: return the values through
        that step and do not apply its update, so the state holds the last finite params."""

    @abstractmethod
    def _train_params(self, state: Any) -> Params:
        """The current params of a training state, canonical layout, numpy, this backend's dtype."""

    # ---- shared plumbing ----

    def _prepare(self, spec, params, X, y=None):
        """Validate everything once at the border, then cast floats to this backend's dtype."""
        spec = check_spec(spec)
        params = check_params(spec, params)
        X = check_X(spec, X)
        if y is not None:
            y = check_y(spec, y, len(X))
            if y.dtype.kind == "f":
                y = y.astype(self.np_dtype, copy=False)
        params = map_params(lambda a: a.astype(self.np_dtype, copy=False), params)
        return spec, params, X.astype(self.np_dtype, copy=False), y


class _NoBar:
    def update(self, n: int) -> None:
        pass


def _progress_bar(total: int, enabled: bool | None, desc: str):
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


def _check_finite_result(a: np.ndarray, what: str, backend: Backend) -> None:
    """Inputs were checked finite, so a non-finite result is an overflow: say so, never return NaN."""
    if not np.all(np.isfinite(a)):
        raise FloatingPointError(
            f"{backend!r}: the {what} is not finite although every input was. The values overflowed "
            f"{backend.dtype}; scale down X or the weights (or use dtype='float64')."
        )
