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

import numbers
import time
from abc import ABC, abstractmethod
from contextlib import ExitStack, nullcontext
from typing import Any, ClassVar

import numpy as np

from shared.continuation import cast_state, check_continuation, check_same_spec, joined
from shared.optim import Optimizer, check_optimizer_fits
from shared.parallel import DataParallel, check_workers
from shared.params import Params, check_params, map_params, named_leaves, tree_leaves
from shared.precision import DynamicLossScale, ScaleTracker, check_trains, warn_if_gradients_underflow
from shared.spec import GPTSpec, MLPSpec
from shared.training import MinibatchSchedule, RunRecord, check_train_args, progress_bar, recorded_steps, run_meta
from shared.trajectory import TrainingDiverged, Trajectory
from shared.validation import (
    HALF_DTYPES,
    PRECISIONS,
    all_finite,
    cast_array,
    cast_params,
    check_dtype,
    check_spec,
    check_tokens,
    check_X,
    check_y,
    numpy_dtype,
    writable,
)

CHUNK = 1000
"""The most steps per call into the backend (fewer when a snapshot falls sooner): the rhythm of
progress updates and divergence checks (JAX runs each chunk as one compiled loop)."""


class Backend(DataParallel, ABC):
    """One framework's implementation of the MLP, behind the shared numpy interface."""

    name: ClassVar[str]
    """Registry name: 'numpy', 'torch' or 'jax'."""

    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    """The devices this backend can compute on, by the name its framework uses ('cuda', 'gpu')."""

    single_thread_below: ClassVar[float | None] = None
    """The thread policy: below this many matmul FLOPs per step (spec.step_flops), compute on one CPU
    thread; None leaves the framework's threads alone. Each backend's value is measured (see the
    backend), because a second thread only pays once a step's matrices are large enough to split."""

    fast_path: bool = True
    """Whether train may run a backend's named fast path where one applies (torch: plain SGD without
    torch.optim, backends/torch/train.py plain_sgd_step; NumPy: an MLP's gradients in float32/float64
    when no loss is kept, without mlp.py's per-piece calls, backends/numpy/train.py plain_mlp_grads).
    Each is held bit for bit to the teaching step (tests/backends/test_fast_path.py); set False on an
    instance to run the teaching step always."""

    def __init__(
        self, dtype: str = "float64", device: str = "cpu", threads: int | None = None, precision: str = "pure"
    ) -> None:
        self.dtype = check_dtype(dtype)  # what the network computes in
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}; got {precision!r}")
        if precision == "mixed" and self.dtype not in HALF_DTYPES:
            raise ValueError(
                f"precision='mixed' computes in a half format with float32 params: pass dtype='bfloat16' or "
                f"'float16'; got dtype={self.dtype!r}"
            )
        self.precision = precision
        self.compute_np_dtype = numpy_dtype(self.dtype)  # bfloat16: ml_dtypes'; the others numpy's own
        self.param_dtype = "float32" if precision == "mixed" else self.dtype
        """What params, gradients, outputs and optimizer state are kept and returned in: float32 master
        weights in mixed precision, else the compute dtype."""
        self.np_dtype = np.dtype(np.float32) if precision == "mixed" else self.compute_np_dtype
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1
        ):
            raise ValueError(f"threads must be None (the thread policy decides) or an integer ≥ 1; got {threads!r}")
        self.threads = None if threads is None else int(threads)
        if not isinstance(device, str) or device not in self.devices:
            choices = ", ".join(map(repr, self.devices))
            raise ValueError(f"device for the {self.name} backend must be one of {choices}; got {device!r}")
        self.device = device
        if device != "cpu" and not self._device_present():
            raise DeviceUnavailable(
                f"device={device!r}: the {self.name} backend finds no {device} device here "
                f"({self._device_missing_reason()}). Use device='cpu' (the default)."
            )

    def __repr__(self) -> str:
        device = "" if self.device == "cpu" else f", device={self.device!r}"
        mixed = ", precision='mixed'" if self.precision == "mixed" else ""
        return f"{type(self).__name__}(dtype={self.dtype!r}{mixed}{device})"

    def threads_for(self, flops: float) -> int | None:
        """CPU threads for work of `flops` matmul FLOPs per step: `threads` if it was given, else 1
        below `single_thread_below`, else None (the framework's own default)."""
        if self.threads is not None:
            return self.threads
        if self.device == "cpu" and self.single_thread_below is not None and flops < self.single_thread_below:
            return 1
        return None

    def _limit_threads(self, n: int | None):
        """A context that runs the framework on n CPU threads (None: as it is). Backends override."""
        return nullcontext()

    def _compute(self, spec, rows: int):
        """The context every call into the framework runs in: the backend's scope and the thread policy
        for `rows` samples (sequences) of `spec`."""
        stack = ExitStack()
        stack.enter_context(self._scope())
        stack.enter_context(self._limit_threads(self.threads_for(spec.step_flops(rows))))
        return stack

    def _device_present(self) -> bool:
        """Whether self.device (not 'cpu') is there: each backend that offers one asks its framework."""
        return False

    def _device_missing_reason(self) -> str:
        return "no accelerator support"

    # ---- the public interface: validate, cast, call the backend, return numpy ----

    def forward(self, spec: MLPSpec, params: Params, X: np.ndarray) -> np.ndarray:
        """The network's output (logits) for X: numpy (n, sizes[-1]) in this backend's dtype."""
        spec, params, X, _ = self._prepare(spec, params, X)
        with self._compute(spec, len(X)):
            y_hat = writable(self._forward(spec, params, X))
        _check_finite_result(y_hat, "forward output", self)
        return y_hat

    def loss_and_grads(self, spec: MLPSpec, params: Params, X: np.ndarray, y: np.ndarray) -> tuple[float, Params]:
        """The mean loss over the batch (a Python float) and its gradient w.r.t. every parameter,
        in the structure of `params` (canonical (in, out) layout), numpy, this backend's dtype."""
        spec, params, X, y = self._prepare(spec, params, X, y, need_y=True)
        with self._compute(spec, len(X)):
            loss, grads = self._loss_and_grads(spec, params, X, y)
            loss, grads = float(loss), map_params(writable, grads)
        _check_finite_result(np.asarray(loss), "loss", self)
        for name, g in named_leaves(grads):
            _check_finite_result(g, f"gradient of {name}", self)
        return loss, grads

    def attention_maps(self, spec: GPTSpec, params: Params, X: np.ndarray) -> list[np.ndarray]:
        """Every block's attention probabilities P (n, h, t, t) for token ids X, as this framework's
        own forward computes them: row i is query i's weights over the keys j ≤ i (summing to 1), the
        future exactly 0. A GPTSpec only."""
        if not isinstance(check_spec(spec), GPTSpec):
            raise TypeError(f"attention_maps needs a GPTSpec (an MLP has no attention); got {type(spec).__name__}")
        spec, params, X, _ = self._prepare(spec, params, X)
        with self._compute(spec, len(X)):
            maps = [writable(P) for P in self._attention_maps(spec, params, X)]
        for l, P in enumerate(maps):
            _check_finite_result(P, f"attention of block {l}", self)
        return maps

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
        record_losses: int | None = 1,
        loss_scale: DynamicLossScale | None = None,
        workers: int = 1,
        all_reduce: str | None = None,
        accumulate: int = 1,
    ) -> Trajectory:
        """Train from `params` for `steps` updates and return the Trajectory.

        params: the starting params, or a Trajectory to continue: its final params, its optimizer
            state and its place in the minibatch schedule, so that train(traj_60, steps=40) equals one
            run of 100 bit for bit and returns the whole run's Trajectory. The optimizer's
            hyperparameters may change; its type, the spec, dtype, batch_size, seed and record_losses
            may not (see shared.continuation).
        batch_size: None trains on the full batch every step; an integer draws minibatches in an
            order fixed by `seed` (the same in every backend; see shared.training).
        record_every: keep a params snapshot every this many steps (None: only the final params).
        record_losses: keep the loss and the gradient norm every this many steps (steps 0, k, 2k, ...;
            None: none). The steps in between skip both where the framework allows it (backprop starts
            from dL/dy_hat, not from the loss). A blow-up that reaches the params is still caught at the
            same step: each chunk's params are checked and a bad chunk is replayed step by step (a loss
            or norm that overflows while every parameter stays finite is seen only on a kept step).
        on_nonfinite: "raise" a TrainingDiverged at the first step whose loss, gradient norm or
            updated parameters are not finite, or "stop" and return the trajectory up to that step
            with `diverged_at` set. Either way the params returned are the last finite ones: the bad
            step's update is never applied.
        progress: a progress bar on stderr; None shows one on a terminal for runs over ~2 s.
        loss_scale: a shared.precision.DynamicLossScale (mixed precision only): the backward of the
            scaled loss, a step with non-finite unscaled gradients skipped (its grad norm recorded as 0),
            the scale grown and shrunk by the rule; meta["loss_scale"] records it and the skipped steps.
        workers: data parallelism (shared/parallel.py): N replicas, each the gradient of its 1/N of every
            global minibatch (`batch_size` is the global batch, a multiple of N), averaged by an all-reduce
            before every update. meta records "workers", "all_reduce" and the bytes each all-reduce sends.
        all_reduce: how the workers average (the backend's `all_reduces`; None: its first).
        accumulate: gradient accumulation: each step's batch (each worker's shard of it) in this many
            equal micro-batches, one backward each, their gradients averaged before the one update.
        """
        check_trains(self, loss_scale, optimizer)
        prior = params if isinstance(params, Trajectory) else None
        if prior is not None:
            check_same_spec(prior, check_spec(spec))
        spec, params, X, y = self._prepare(spec, params if prior is None else prior.params, X, y, need_y=True)
        n_params, itemsize = spec.n_params, self.np_dtype.itemsize
        steps, batch_size, seed, record_every, record_losses = check_train_args(
            len(X), n_params, itemsize, optimizer, steps, batch_size, seed, record_every, on_nonfinite, record_losses
        )
        optimizer = check_optimizer_fits(optimizer, self.np_dtype)
        if self.dtype == "float16" and loss_scale is None and self._replica is None:
            warn_if_gradients_underflow(self, spec, params, X, y)
        opt_state, start, scaling = self._continue_from(
            prior, spec, optimizer, batch_size, seed, record_losses, loss_scale
        )
        workers, engine, accumulate = check_workers(
            workers, all_reduce, batch_size or len(X), self, loss_scale, accumulate
        )
        if workers > 1 and self._replica is None:  # this process starts the workers; each runs this train
            args = dict(spec=spec, params=params if prior is None else prior, X=X, y=y, optimizer=optimizer)
            args |= dict(steps=steps, batch_size=batch_size, seed=seed, record_every=record_every, progress=progress)
            args |= dict(on_nonfinite=on_nonfinite, record_losses=record_losses, accumulate=accumulate)
            return self._train_replicas(workers, engine, args)
        X, y = self._own_rows(X, y, batch_size)
        schedule = None if batch_size is None else MinibatchSchedule(len(X), batch_size, seed)
        end = start + steps
        run = RunRecord(len(recorded_steps(start, end, record_losses)), self.np_dtype, start)

        start_time = time.perf_counter()
        with self._compute(spec, batch_size or len(X)):
            state = self._train_begin(spec, params, X, y, optimizer, opt_state, scaling, accumulate)
            chunk_times = []  # (steps, seconds) per chunk: the first holds any compile, the rest the steady pace
            with progress_bar(steps, progress, f"{self.name} {self.dtype}") as bar:
                while run.done < end and not run.diverged:
                    began = time.perf_counter()
                    ran = self._train_chunk(state, run, end, schedule, record_every, record_losses)
                    chunk_times.append([ran, time.perf_counter() - began])
                    bar.update(ran)
            final_params, final_state = self._train_params(state), self._train_optimizer_state(state)
        meta = run_meta(self, spec, optimizer, steps, batch_size or len(X), seed, time.perf_counter() - start_time)
        meta |= {"batch_size": batch_size, "record_every": record_every, "record_losses": record_losses}
        meta["chunk_wall_times_s"] = chunk_times
        meta |= self._replica_meta(n_params, itemsize) | ({"accumulate": accumulate} if accumulate > 1 else {})
        if loss_scale is not None:
            meta["loss_scale"] = state["scaling"].record(prior.meta.get("loss_scale") if prior is not None else None)
        traj = run.trajectory(final_params, record_losses, meta, final_state)
        if prior is not None:
            traj = joined(prior, traj)
        if run.diverged and on_nonfinite == "raise":
            hint = f"The learning rate (lr={optimizer.lr:g}) is probably too high. "
            raise TrainingDiverged(
                *run.diverged, trajectory=traj, hint=hint if run.diverged[1] != "gradient norm" else ""
            )
        return traj

    def _continue_from(self, prior, spec, optimizer, batch_size, seed, record_losses, loss_scale):
        """(optimizer state, first step, loss-scale tracker): a fresh start at step 0, or `prior`'s
        state, step and scale, checked to continue exactly (shared.continuation)."""
        opt_state, start, earlier = None, 0, {}
        if prior is not None:
            mode = (self.precision, self.dtype if self.precision == "mixed" else None)
            opt_state = check_continuation(
                prior, spec, optimizer, self.param_dtype, batch_size, seed, record_losses, mode
            )
            opt_state, start = cast_state(opt_state, lambda p: cast_params(p, self.np_dtype)), prior.steps_run
            earlier = prior.meta.get("loss_scale") or {}
        if loss_scale is None:
            return opt_state, start, None
        return opt_state, start, ScaleTracker(loss_scale, earlier.get("scale"), earlier.get("good", 0), start)

    def _train_chunk(self, state, run: RunRecord, steps: int, schedule, record_every, record_losses) -> int:
        """One chunk of the run: a snapshot if one is due, then up to CHUNK steps (ending at the next
        snapshot) in one call into the backend, checked after; a chunk that went wrong is replayed
        step by step, to stop before its first bad step. Returns the steps run."""
        done = run.done
        if record_every and done % record_every == 0:
            run.snapshot_steps.append(done)
            run.snapshots.append(self._train_params(state))
        stop = min(done + CHUNK, steps)  # a chunk: at most CHUNK steps, ending at the next snapshot
        if record_every:
            stop = min(stop, (done // record_every + 1) * record_every)
        batches = None if schedule is None else schedule.rows(done, stop)  # (stop - done, b)
        if self._replica is not None:
            batches = self._replica.shard(batches)  # (stop - done, b / workers): this worker's columns
        record = recorded_steps(done, stop, record_losses)  # the chunk's steps that keep a loss
        saved = self._train_save(state)
        losses, norms = self._train_steps(state, stop - done, batches, record)
        ran = stop - done
        if len(losses) < len(record) or not all_finite(losses, norms, *self._train_flat(state)):
            self._train_restore(state, saved)
            losses, norms, run.diverged = self._find_first_bad_step(state, done, stop, batches)
            ran = len(losses)
            keep = recorded_steps(done, done + ran, record_losses)
            losses, norms = losses[keep.start : keep.stop : keep.step], norms[keep.start : keep.stop : keep.step]
        run.keep(losses, norms, ran)
        return ran

    def _find_first_bad_step(self, state, start: int, stop: int, batches):
        """Replay steps start..stop−1 one at a time from a state restored to `start`, checking the
        loss, the gradient norm and the updated params after each. Stop before the first bad step,
        with its update undone. Returns the losses and norms of the steps that were fine, and
        (step, quantity, value) of the bad one, or None.

        Only a chunk that went wrong is replayed, so the fast path checks the params once per chunk,
        not once per step; and every backend finds the same step by the same rule."""
        losses, norms = np.zeros(stop - start, self.np_dtype), np.zeros(stop - start, self.np_dtype)
        bad = None
        for i in range(stop - start):
            saved = self._train_save(state)
            loss, norm = self._train_steps(state, 1, None if batches is None else batches[i : i + 1], range(1))
            flat = self._train_flat(state)
            if not np.isfinite(loss[0]):
                bad = (start + i, "loss", float(loss[0]))
            elif not np.isfinite(norm[0]):
                bad = (start + i, "gradient norm", float(norm[0]))
            elif not all_finite(*flat):
                first = next(a[~np.isfinite(a)][0] for a in flat if not np.all(np.isfinite(a)))
                bad = (start + i, "parameters", float(first))
            if bad:
                self._train_restore(state, saved)
                return losses[:i], norms[:i], bad
            losses[i], norms[i] = loss[0], norm[0]
        return losses, norms, None  # nothing wrong after all

    # ---- what each backend implements: arrays arrive validated, as numpy in self.dtype ----

    @abstractmethod
    def _forward(self, spec: MLPSpec, params: Params, X: np.ndarray) -> np.ndarray:
        """Logits (n, sizes[-1]) as an array numpy can read."""

    @abstractmethod
    def _loss_and_grads(self, spec: MLPSpec, params: Params, X: np.ndarray, y: np.ndarray) -> tuple[float, Params]:
        """(loss, grads) with grads in the canonical layout; arrays numpy can read."""

    @abstractmethod
    def _attention_maps(self, spec: GPTSpec, params: Params, X: np.ndarray) -> list:
        """Every block's P (n, h, t, t), arrays numpy can read."""

    @abstractmethod
    def _train_begin(
        self, spec, params, X, y, optimizer: Optimizer, opt_state: dict | None, scaling=None, accumulate=1
    ):
        """Convert everything to the backend's own arrays, once, and build its optimizer, fresh or (for
        a continued run) holding `opt_state`, a canonical optimizer state (shared.continuation) in this
        backend's dtype. Returns the training state that `_train_steps` advances."""

    @abstractmethod
    def _train_steps(
        self, state: Any, n: int, batches: np.ndarray | None, record: range
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run n steps; return (loss, gradient global L2 norm) of the steps in `record` (offsets into
        the n steps: range(n) for every step, range(0) for none), as numpy. The other steps need
        neither. `batches` is (n, batch_size) sample indices, or None for full-batch steps. A backend
        may stop early at the first non-finite loss or norm (returning fewer values): `train` then
        replays the chunk."""

    @abstractmethod
    def _train_params(self, state: Any) -> Params:
        """The current params of a training state, canonical layout, numpy, this backend's dtype."""

    @abstractmethod
    def _train_optimizer_state(self, state: Any) -> dict:
        """The optimizer's state now, canonical layout (shared.continuation), numpy, this backend's dtype."""

    @abstractmethod
    def _train_save(self, state: Any) -> Any:
        """What `_train_restore` needs to put the params and optimizer state back as they are now
        (taken once per chunk, so it may copy)."""

    @abstractmethod
    def _train_restore(self, state: Any, saved: Any) -> None:
        """Put back what `_train_save` took (each saved value is restored at most once)."""

    def _train_flat(self, state: Any) -> list[np.ndarray]:
        """The current params as a list of numpy arrays, for the finiteness check after a chunk."""
        return tree_leaves(self._train_params(state))

    def _scope(self):
        """A context every framework call runs inside (JAX uses it for float64; others need none)."""
        return nullcontext()

    # ---- shared plumbing ----

    def _prepare(self, spec, params, X, y=None, need_y: bool = False):
        """Validate everything once at the border, then cast floats to this backend's dtype."""
        spec = check_spec(spec)
        params = check_params(spec, params)
        if isinstance(spec, GPTSpec):  # token ids in, token ids as targets: integers, never cast
            X = check_tokens(spec, X, "X")
            if need_y:
                if y is None:
                    raise TypeError(f"Y is required: the target token ids, shaped like X {X.shape}; got None")
                y = check_tokens(spec, y, "Y", shape=X.shape)
        else:
            X = cast_array(check_X(spec, X), self.np_dtype, "X")
            if need_y:
                y = check_y(spec, y, len(X))
                if y.dtype.kind == "f":
                    y = cast_array(y, self.np_dtype, "y")
        params = cast_params(params, self.np_dtype)
        return spec, params, X, y


class DeviceUnavailable(RuntimeError):
    """A device was asked for (device='cuda' or 'gpu') that the framework cannot see here."""


def _check_finite_result(a: np.ndarray, what: str, backend: Backend) -> None:
    """Inputs were checked finite, so a non-finite result is an overflow: say so, never return NaN."""
    if not np.all(np.isfinite(a)):
        raise FloatingPointError(
            f"{backend!r}: the {what} is not finite although every input was. The values overflowed "
            f"{backend.dtype}; scale down X or the weights (or use dtype='float64')."
        )
