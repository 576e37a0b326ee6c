"""Data parallelism's shared half: the split of a global minibatch into equal shards, and the
launcher that runs N worker processes and brings back their result, or a clear error.

Every backend trains data-parallel the same way. N replicas start from the same params; each step,
each replica computes the gradient of its shard of the global minibatch; an all-reduce averages the
N gradients (the ring by hand in backends/numpy/parallel.py, torch.distributed in
backends/torch/parallel.py, `pmean` under `shard_map` in backends/jax/parallel.py); every replica
applies the same update to the same params, so they stay identical. The shards are equal, so the
mean of their mean losses is the global batch's mean loss, and the mean of their gradients is the
global batch's gradient: N workers follow one worker's trajectory on the whole batch, up to the
order in which the floating-point sums are added.

NumPy and torch run SPMD, as torchrun does: N processes run the same `Backend.train`, each knowing
its rank (a `Replica`); rank 0 returns the Trajectory. JAX runs one process over N devices.

    traj = get_backend("numpy").train(spec, params, X, y, SGD(lr=0.1), steps=100, batch_size=64, workers=4)
"""

from __future__ import annotations

import multiprocessing as mp
import numbers
import os
import pickle
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import ClassVar

import numpy as np

from shared.trajectory import TrainingDiverged, Trajectory

TIMEOUT_S = 120.0
"""How long a worker waits for another (a message in the ring, a collective) before it declares
that worker stuck and the run ends with an error naming it. Generous: a loaded 2-core machine is slow."""


class WorkerError(RuntimeError):
    """A worker of a data-parallel run crashed, hung, or raised: the message names the worker."""


@dataclass(frozen=True)
class Replica:
    """Where a replica stands in a data-parallel run: its rank among `workers`, and the engine that
    all-reduces its gradients. `rank` is None where one process holds every shard (JAX's devices)."""

    rank: int | None
    workers: int
    engine: str

    def shard(self, batches: np.ndarray | None) -> np.ndarray | None:
        """This replica's columns of a chunk's (steps, B) global minibatch rows: (steps, B / workers)."""
        if batches is None or self.rank is None:
            return batches
        b = batches.shape[1] // self.workers
        return batches[:, self.rank * b : (self.rank + 1) * b]

    def shard_rows(self, n: int) -> slice:
        """This replica's rows of a full batch of n samples (full-batch training)."""
        if self.rank is None:
            return slice(0, n)
        b = n // self.workers
        return slice(self.rank * b, (self.rank + 1) * b)


def ring_bytes(n_params: int, workers: int, itemsize: int) -> int:
    """The bytes each worker sends per ring all-reduce of n_params numbers: 2(N − 1) chunks of ⌈P / N⌉."""
    return 2 * (workers - 1) * -(-n_params // workers) * itemsize


def replica_main(rank: int, backend, workers: int, engine: str, comm, train_kwargs: dict):
    """One worker of an SPMD run: join the group, run the same `train` as every other rank on this
    rank's shards, leave; rank 0 returns the Trajectory (the replicas' are identical)."""
    backend._join(Replica(rank, workers, engine), comm)
    try:
        progress = train_kwargs.pop("progress")
        progress = progress if rank == 0 else False  # one progress bar: rank 0's
        traj = backend.train(**train_kwargs, progress=progress, workers=workers, all_reduce=engine)
    finally:
        backend._leave()
    return traj if rank == 0 else None


def worker_threads(workers: int) -> dict[str, str]:
    """The environment that gives each of N workers its share of the CPU's cores (at least one)."""
    n = str(max(1, (os.cpu_count() or 1) // workers))
    return {"OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n}


_ONE = {"workers": "one process, no all-reduce", "accumulate": "one backward a step"}


def check_workers(workers, engine, rows: int, backend, loss_scale=None, accumulate=1) -> tuple[int, str, int]:
    """(workers, engine, accumulate) checked: a positive integer that divides the global batch of `rows` samples
    into equal shards, each of which `accumulate` micro-batches divide again, and an engine `backend`
    has (None: its first); no loss scale beside either."""
    for name, value in (("workers", workers), ("accumulate", accumulate)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be an integer ≥ 1 (1: {_ONE[name]}); got {value!r}")
    if (workers > 1 or accumulate > 1) and loss_scale is not None:
        raise ValueError(
            f"loss_scale with workers > 1 or accumulate > 1 is not supported yet (every replica and micro-batch "
            f"would have to agree on each skipped step); got workers={workers}, accumulate={accumulate}: train with "
            "workers=1 and accumulate=1, or without a loss scale"
        )
    if rows % workers:
        raise ValueError(
            f"workers={workers} must divide the global batch into equal shards: batch_size (or, for full-batch "
            f"training, the number of samples) is {rows}, which {workers} does not divide. Pick a batch_size that "
            f"is a multiple of {workers}."
        )
    if (rows // workers) % accumulate:
        raise ValueError(
            f"accumulate={accumulate} must divide each worker's {rows // workers} rows of a step "
            f"({rows} / workers={workers}) into equal micro-batches"
        )
    engines = backend.all_reduces
    if workers > 1 and not engines:
        raise ValueError(
            f"the {backend.name} backend has no data-parallel engine: train with workers=1; got workers={workers}"
        )
    if engine is None:
        engine = engines[0] if engines else None
    if engine not in engines and (workers > 1 or engine is not None):
        raise ValueError(
            f"all_reduce for the {backend.name} backend must be one of {', '.join(map(repr, engines))}; got {engine!r}"
        )
    return int(workers), engine, int(accumulate)


# ---- the launcher: N processes, their results, and nothing left behind ----


@contextmanager
def environment(**variables: str):
    """os.environ with `variables` set while workers start (a spawned process copies it), then restored."""
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_workers(target, per_worker: list[tuple], env: dict[str, str] | None = None, name: str = "worker") -> list:
    """Run target(rank, *per_worker[rank]) in one fresh process per rank and return their results, by rank.

    Processes are spawned (a clean interpreter each: no copied threads or framework state), with `env`
    added to their environment. Whatever goes wrong ends the run with a WorkerError naming the worker:
    an exception in one (its traceback included), a process that dies without a result (its exit code
    or signal). Stuck workers are found by the workers themselves (each waits at most TIMEOUT_S for
    another). On any error, and on Ctrl-C, every worker is stopped before this returns or raises."""
    ctx = mp.get_context("spawn")
    pipes = [ctx.Pipe(duplex=False) for _ in per_worker]  # (read end, write end): a result each
    procs = [
        ctx.Process(target=_worker_main, args=(target, rank, pipes[rank][1], args), name=f"trigrad-{name}-{rank}")
        for rank, args in enumerate(per_worker)
    ]
    try:
        with environment(**(env or {})):
            for p in procs:
                p.start()
        handed = [c for args in per_worker for a in args for c in (a if isinstance(a, tuple) else (a,))]
        handed = [
            c for c in handed if isinstance(c, Connection)
        ]  # (a worker's pipe ends: in its args or a tuple there)
        for conn in [write for _, write in pipes] + handed:
            conn.close()  # the parent keeps no pipe end a worker has: a worker that dies reads as end-of-file
        return _collect(procs, [read for read, _ in pipes], name)
    finally:
        stop(procs)


def _worker_main(target, rank: int, result, args: tuple) -> None:
    """A worker process: run the target and send ("ok", value), or ("error", exception or text, traceback)."""
    try:
        value = target(rank, *args)
        result.send(("ok", value))
    except KeyboardInterrupt:  # Ctrl-C reaches every process of the terminal: the parent reports it
        os._exit(130)
    except BaseException as e:  # noqa: BLE001 (anything a worker raises goes back to the parent)
        tb = traceback.format_exc()
        try:
            payload = pickle.loads(pickle.dumps(e))  # the exception itself, where it survives the trip
        except Exception:  # noqa: BLE001
            payload = f"{type(e).__name__}: {e}"
        result.send(("error", payload, tb))
    finally:
        result.close()


def _collect(procs, reads, name: str) -> list:
    """Every worker's result, or the first failure (with any other worker found dead) as a WorkerError."""
    results, pending = [None] * len(procs), dict(enumerate(reads))
    while pending:
        watched = list(pending.values()) + [procs[r].sentinel for r in pending]
        for ready in wait(watched):
            rank = next((r for r, c in pending.items() if ready in (c, procs[r].sentinel)), None)
            if rank is None:
                continue  # (a worker already handled in this round)
            message = _read(pending[rank])
            if message is None and procs[rank].is_alive():
                continue  # not a message yet (the sentinel fires only at exit)
            del pending[rank]
            if message is None:
                raise WorkerError(
                    f"{name} {rank} {_exit_text(procs[rank])} before sending its result{_others(procs, rank)}. "
                    "Its own error, if it printed one, is above. (A script that trains with workers > 1 "
                    'needs the `if __name__ == "__main__":` guard: each worker imports the script.)'
                )
            if message[0] == "error":
                _, payload, tb = message
                if isinstance(payload, TrainingDiverged):
                    raise payload  # train's own verdict, with its trajectory: as a one-process run raises it
                raise WorkerError(
                    f"{name} {rank} failed: {_text(payload)}{_others(procs, rank)}\n{name} {rank}'s traceback:\n{tb}"
                )
            results[rank] = message[1]
    return results


def _text(payload) -> str:
    """An exception as 'TypeName: message' (a worker's that did not survive pickling is text already)."""
    return payload if isinstance(payload, str) else f"{type(payload).__name__}: {payload}"


def _read(conn):
    """The worker's message, or None when there is none (yet, or ever: a closed pipe)."""
    try:
        return conn.recv() if conn.poll() else None
    except (EOFError, OSError):
        return None


def _exit_text(proc) -> str:
    proc.join(timeout=5)
    code = proc.exitcode
    if code is None:
        return "stopped answering"
    if code < 0:
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _others(procs, rank: int) -> str:
    """Other workers already dead with an error code: often the root cause of this one's failure."""
    dead = [f"{r} ({_exit_text(p)})" for r, p in enumerate(procs) if r != rank and p.exitcode not in (None, 0)]
    return f" (also gone: worker {', '.join(dead)})" if dead else ""


def stop(procs, grace_s: float = 5.0) -> None:
    """Stop every process still running (terminate, then kill) and reap them all: no orphans."""
    procs = [p for p in procs if p.pid is not None]  # (a start that failed left the rest unstarted)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=grace_s)
        if p.is_alive():
            p.kill()
            p.join()


class DataParallel:
    """What the Backend base class knows of data parallelism: how to start the workers of an SPMD run
    (N processes, each one rank of `train`), and the hooks each backend fills to connect its engine."""

    all_reduces: ClassVar[tuple[str, ...]] = ()
    """How this backend's data-parallel workers average their gradients (train's all_reduce), its
    idiom first (shared/parallel.py; the backend's parallel.py)."""

    _replica: Replica | None = None
    """Set inside a data-parallel run: this process's rank and the engine (None: an ordinary run)."""

    def _train_replicas(self, workers: int, engine: str, kwargs: dict) -> Trajectory:
        """Data parallelism, SPMD: `workers` processes each run train(**kwargs) as one rank of the group
        (shared.parallel.replica_main); rank 0's Trajectory comes back. JAX overrides this (one process)."""
        started = time.perf_counter()
        with self._replica_group(workers) as comms:
            per_worker = [(self, workers, engine, comm, kwargs) for comm in comms]
            traj, *_ = run_workers(replica_main, per_worker, env=worker_threads(workers), name=f"{self.name} worker")
        traj.meta["launch_wall_time_s"] = time.perf_counter() - started  # with the workers' start-up
        return traj

    @contextmanager
    def _replica_group(self, workers: int):
        """What each rank needs to reach the others (NumPy: its pipe ends; torch: the rendezvous file)."""
        raise NotImplementedError(f"the {self.name} backend has no data-parallel engine")
        yield

    def _join(self, replica: Replica, comm) -> None:
        """Inside a worker: become `replica` of the group (each backend connects its engine here)."""
        self._replica = replica

    def _leave(self) -> None:
        self._replica = None

    def _own_rows(self, X: np.ndarray, y: np.ndarray, batch_size: int | None):
        """Inside a worker of a full-batch run, its rows of X and y (minibatches are split per chunk)."""
        if self._replica is None or batch_size is not None:
            return X, y
        rows = self._replica.shard_rows(len(X))
        return X[rows], y[rows]

    def _replica_meta(self, n_params: int, itemsize: int) -> dict:
        """What a data-parallel run adds to its Trajectory's meta: the workers, the engine, and the bytes
        a ring all-reduce sends per worker per step (the gradient, and the loss riding along)."""
        if self._replica is None:
            return {}
        replica = self._replica
        sent = ring_bytes(n_params + 1, replica.workers, itemsize)
        return {"workers": replica.workers, "all_reduce": replica.engine, "all_reduce_bytes": sent}
