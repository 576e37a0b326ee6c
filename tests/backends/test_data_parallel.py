"""Data parallelism: N workers, each the gradient of its 1/N of the global batch, averaged by an
all-reduce, follow one worker's trajectory on the whole batch (shared/parallel.py and each
backend's parallel.py).

Deliberate bugs these catch (each tried): JAX differentiating replicated params inside shard_map and
then pmean-ing (N times the gradient: invisible under Adam, whose update is scale-free, so the
parity runs use SGD); the ring's reduce-scatter sending the chunk it just received instead of its
own (a wrong sum on every worker); a ring that sums without dividing by N; shards that overlap
(rank·b : rank·b + b with the wrong b); a worker whose gradient is never all-reduced (the replicas
drift apart and rank 0's trajectory is its shard's, not the batch's); gradient accumulation without
its 1/k (NumPy's sum, torch's micro-batch loss) or summing only the last micro-batch.

Every run here starts real worker processes (2, and 4 where it stays fast on 2 cores); every wait
is bounded by the workers' own timeouts and the launcher reaps every process it started.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backends import get_backend
from backends.numpy.backend import NumpyBackend
from backends.numpy.parallel import Ring, ring_pipes
from shared.optim import SGD
from shared.parallel import Replica, WorkerError, ring_bytes, run_workers
from shared.params import init_params
from shared.precision import DynamicLossScale
from shared.spec import GPTSpec, MLPSpec
from shared.tolerances import tolerance, trajectory_tolerance
from shared.trajectory import TrainingDiverged, compare
from tests.conftest import backend_or_skip
from tests.helpers import ctrl_c_reaches_children, make_problem

ROOT = Path(__file__).resolve().parents[2]
SPEC = MLPSpec((3, 6, 5, 2), ("tanh", "gelu"), "mse")
GPT = GPTSpec(vocab_size=7, seq_len=6, d_model=8, n_heads=2, n_layers=1, d_ff=12)
OPT = SGD(lr=0.2, momentum=0.9)  # SGD: a gradient N times too large shows (Adam's update would hide it)


def problem():
    return make_problem(SPEC, n=16, seed=3)


def run(name: str, dtype="float64", workers=1, batch_size: int | None = 8, engine=None, accumulate=1):
    """30 steps of OPT on SPEC, each distinct run trained once per session (the workers take seconds to start)."""
    return _run(name, dtype, workers, batch_size, engine, accumulate)  # positional: one cache entry per run


@functools.cache
def _run(name, dtype, workers, batch_size, engine, accumulate):
    params, X, y = problem()
    kw = dict(batch_size=batch_size, workers=workers, all_reduce=engine, accumulate=accumulate, record_every=10)
    return backend_or_skip(name, dtype).train(SPEC, params, X, y, OPT, steps=30, **kw)


# ---- the split ----


def test_the_shards_are_equal_disjoint_and_cover_the_global_batch():
    batches = np.arange(3 * 12).reshape(3, 12)  # 3 steps' global minibatches of 12 rows
    shards = [Replica(r, 4, "ring").shard(batches) for r in range(4)]
    assert all(s.shape == (3, 3) for s in shards)
    assert np.array_equal(np.concatenate(shards, axis=1), batches)  # in rank order: the global batch
    rows = [Replica(r, 4, "ring").shard_rows(12) for r in range(4)]
    assert [np.arange(12)[s].tolist() for s in rows] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    assert Replica(None, 4, "pmean").shard(batches) is batches  # one process holds every shard (JAX)


def test_ring_bytes_is_2_n_minus_1_chunks():
    assert ring_bytes(100, 1, 8) == 0  # one worker sends nothing
    assert ring_bytes(100, 2, 8) == 2 * 50 * 8  # 2(N − 1)/N · P numbers: here P
    assert ring_bytes(100, 4, 4) == 6 * 25 * 4  # 1.5 P
    assert ring_bytes(10, 4, 8) == 6 * 3 * 8  # chunks of ⌈P / N⌉


# ---- the ring all-reduce by hand ----


def _ring_worker(rank, workers, to_next, from_prev, size, seed):
    ring = Ring(rank, workers, to_next, from_prev, timeout_s=60)
    mine = np.random.default_rng([seed, rank]).standard_normal(size)
    return ring.all_reduce_mean(mine.copy())


@pytest.mark.parametrize("workers, size", [(2, 7), (3, 10), (4, 3), (3, 2)])  # P < N: empty chunks too
def test_the_ring_all_reduce_is_the_mean_on_every_worker(workers, size):
    pipes = ring_pipes(workers)
    got = run_workers(_ring_worker, [(workers, *ends, size, 5) for ends in pipes], name="ring worker")
    expected = np.mean([np.random.default_rng([5, r]).standard_normal(size) for r in range(workers)], axis=0)
    np.testing.assert_allclose(got[0], expected, rtol=1e-15, atol=1e-15)
    assert all(np.array_equal(g, got[0]) for g in got)  # the same bits everywhere: the replicas stay equal


# ---- parity: N workers follow the one-process trajectory ----


@pytest.mark.parametrize("workers", [2, 4])
@pytest.mark.parametrize("batch_size", [8, None], ids=["minibatch", "full-batch"])
def test_workers_follow_the_one_process_trajectory(backend_name, workers, batch_size):
    if batch_size is None and backend_name != "numpy":
        pytest.skip("a full batch reaches torch's and JAX's step as a minibatch does (shared.parallel splits the rows)")
    if workers == 4 and backend_name == "torch":
        pytest.skip("4 torch processes take ~8 s to start on 2 cores (python -m comparisons data-parallel runs them)")
    one, many = run(backend_name, batch_size=batch_size), run(backend_name, workers=workers, batch_size=batch_size)
    result = compare(many, one, trajectory_tolerance("float64", OPT))
    assert result.ok, result.message(f"{backend_name} workers={workers} vs 1, batch={batch_size}")
    assert many.meta["workers"] == workers and many.meta["all_reduce"] == get_backend(backend_name).all_reduces[0]
    assert many.meta["all_reduce_bytes"] == ring_bytes(SPEC.n_params + 1, workers, 8)
    assert len(many.losses) == 30 and len(many.snapshots) == len(one.snapshots)
    assert many.losses[-1] < many.losses[0]  # it trained


def test_one_worker_is_todays_path():
    traj = run("numpy", workers=1)
    assert "workers" not in traj.meta and "launch_wall_time_s" not in traj.meta


def test_data_parallel_trajectories_agree_pairwise(pair):
    a, b = (run(name, workers=2) for name in pair)
    result = compare(a, b, trajectory_tolerance("float64", OPT))
    assert result.ok, result.message(f"{pair[0]} vs {pair[1]}, both with 2 workers")


def test_torch_ddp_and_the_bare_all_reduce_agree():
    ddp, bare = run("torch", workers=2), run("torch", workers=2, engine="all_reduce")  # DDP: torch's first
    assert bare.meta["all_reduce"] == "all_reduce"
    result = compare(ddp, bare, trajectory_tolerance("float64", OPT))
    assert result.ok, result.message("torch DDP vs its all_reduce by hand")


def test_float32_workers_drift_only_by_summation_order():
    """(python -m comparisons data-parallel measures this drift on every backend, every step.)"""
    one, many = run("numpy", "float32"), run("numpy", "float32", workers=2)
    result = compare(many, one, trajectory_tolerance("float32", OPT))
    assert result.ok, result.message("numpy float32, 2 workers vs 1")


def test_the_gpt_trains_data_parallel(backend_name):
    rng = np.random.default_rng(0)
    X, Y = rng.integers(0, GPT.vocab_size, (8, GPT.seq_len)), rng.integers(0, GPT.vocab_size, (8, GPT.seq_len))
    be, params = get_backend(backend_name), init_params(GPT, seed=0)
    one = be.train(GPT, params, X, Y, SGD(0.3), steps=6, batch_size=4)
    many = be.train(GPT, params, X, Y, SGD(0.3), steps=6, batch_size=4, workers=2)
    result = compare(many, one, trajectory_tolerance("float64", "sgd"))
    assert result.ok, result.message(f"{backend_name} GPT, 2 workers vs 1")


def test_a_run_continues_data_parallel():
    params, X, y = problem()
    be = get_backend("numpy")
    first = be.train(SPEC, params, X, y, OPT, steps=12, batch_size=8, workers=2)
    whole = be.train(SPEC, first, X, y, OPT, steps=18, batch_size=8, accumulate=2)  # continued in one process
    result = compare(whole, run("numpy"), trajectory_tolerance("float64", OPT))
    assert result.ok, result.message("12 steps with 2 workers + 18 accumulated vs 30 in one process")
    assert [(s["steps"], s.get("workers"), s.get("accumulate")) for s in whole.meta["segments"]] == [
        (12, 2, None),
        (18, None, 2),
    ]  # each part of the run says how it was trained


# ---- gradient accumulation: k micro-batches, one update ----


@pytest.mark.parametrize("accumulate", [2, 4])
def test_accumulated_micro_batches_follow_the_whole_batch(backend_name, accumulate):
    one, micro = run(backend_name), run(backend_name, accumulate=accumulate)
    result = compare(micro, one, trajectory_tolerance("float64", OPT))
    assert result.ok, result.message(f"{backend_name} accumulate={accumulate} vs one batch of 8")
    assert micro.meta["accumulate"] == accumulate and "accumulate" not in one.meta


def test_accumulate_may_be_a_numpy_integer_and_the_run_saves(tmp_path):
    params, X, y = problem()
    traj = get_backend("numpy").train(SPEC, params, X, y, OPT, steps=3, batch_size=8, accumulate=np.int64(2))
    assert type(traj.meta["accumulate"]) is int
    traj.save(tmp_path / "run.npz")  # meta goes to JSON inside: a numpy integer there would not


def test_mixed_precision_trains_with_workers_and_accumulation():
    """bfloat16 compute, float32 params: each worker's shard in half format, the mean in float32."""
    pytest.importorskip("ml_dtypes")
    params, X, y = problem()
    be = get_backend("numpy", "bfloat16", precision="mixed")
    one = be.train(SPEC, params, X, y, SGD(0.05), steps=20, batch_size=8)  # (OPT's momentum is chaotic in bfloat16)
    both = be.train(SPEC, params, X, y, SGD(0.05), steps=20, batch_size=8, workers=2, accumulate=2)
    assert both.params[0]["W"].dtype == np.float32
    result = compare(both, one, tolerance("bfloat16", "trajectory_mixed"))
    assert result.ok, result.message("numpy bfloat16 mixed, 2 workers × 2 micro-batches vs one process")


def test_accumulation_inside_each_worker(backend_name):
    """2 workers, each its 4 rows in 2 micro-batches of 2: still the batch of 8's trajectory."""
    both = run(backend_name, workers=2, accumulate=2)
    result = compare(both, run(backend_name), trajectory_tolerance("float64", OPT))
    assert result.ok, result.message(f"{backend_name} workers=2 × accumulate=2 vs one process")


# ---- bad input ----


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(workers=0), r"workers must be an integer ≥ 1 .* got 0"),
        (dict(workers=2.0), r"workers must be an integer ≥ 1 .* got 2\.0"),
        (dict(workers=True), r"workers must be an integer ≥ 1 .* got True"),
        (dict(workers=3), r"workers=3 must divide the global batch .* batch_size .* is 8"),
        (dict(workers=3, batch_size=None), r"workers=3 must divide .* is 16"),
        (dict(workers=2, all_reduce="nccl"), r"all_reduce for the numpy backend must be one of 'ring'; got 'nccl'"),
        (dict(accumulate=0), r"accumulate must be an integer ≥ 1 \(1: one backward a step\); got 0"),
        (dict(accumulate=3), r"accumulate=3 must divide each worker's 8 rows"),
        (dict(workers=2, accumulate=3), r"accumulate=3 must divide each worker's 4 rows of a step \(8 / workers=2\)"),
    ],
)
def test_bad_workers_are_named(kwargs, match):
    params, X, y = problem()
    with pytest.raises(ValueError, match=match):
        get_backend("numpy").train(SPEC, params, X, y, OPT, steps=2, **({"batch_size": 8} | kwargs))


@pytest.mark.parametrize("kwargs", [dict(workers=2), dict(accumulate=2)])
def test_loss_scaling_with_workers_or_accumulation_is_refused(kwargs):
    params, X, y = problem()
    be = get_backend("numpy", "float16", precision="mixed")
    with pytest.raises(ValueError, match=r"loss_scale with workers > 1 or accumulate > 1 is not supported"):
        be.train(SPEC, params, X, y, OPT, steps=2, batch_size=8, loss_scale=DynamicLossScale(), **kwargs)


# ---- robustness: a worker that crashes, hangs, diverges, or is interrupted ----


class CrashingNumpy(NumpyBackend):
    """Worker 1 dies (os._exit) in its first chunk: no exception, no result, as a segfault would."""

    def _train_steps(self, state, n, batches, record):
        if self._replica.rank == 1:
            os._exit(7)
        return super()._train_steps(state, n, batches, record)


class HangingNumpy(NumpyBackend):
    """Worker `stuck` never sends (a deadlock, a stuck device); every ring waits 2 s before giving up."""

    def __init__(self, stuck: int):
        super().__init__()
        self.stuck = stuck

    def _join(self, replica, comm):
        super()._join(replica, comm)
        self._ring.timeout_s = 2.0

    def _train_steps(self, state, n, batches, record):
        if self._replica.rank == self.stuck:
            time.sleep(600)
        return super()._train_steps(state, n, batches, record)


WIDE = MLPSpec((3, 128, 128, 2), "tanh", "mse")  # 17,282 params: each worker's chunk (69 kB) overfills a pipe


@pytest.mark.parametrize(
    "backend, spec, match",
    [
        (CrashingNumpy(), SPEC, r"worker 1"),
        (HangingNumpy(stuck=1), SPEC, r"worker 0: worker 1 sent nothing for 2 s"),
        (
            HangingNumpy(stuck=0),
            WIDE,
            r"worker 1: worker 0 (sent|took) nothing for 2 s",
        ),  # its neighbour blocked mid-send
    ],
    ids=["crash", "hang", "hang-with-chunks-larger-than-a-pipe"],
)
def test_a_broken_worker_ends_the_run_with_its_name_and_no_orphans(backend, spec, match):
    params, X, y = make_problem(spec, n=16, seed=3)
    started = time.monotonic()
    with pytest.raises(WorkerError, match=match):
        backend.train(spec, params, X, y, OPT, steps=5, batch_size=8, workers=2)
    assert time.monotonic() - started < 60  # bounded: the timeout, not the sleeping worker
    assert mp.active_children() == []  # every worker reaped


def test_a_divergence_in_the_workers_raises_as_in_one_process():
    params, X, y = problem()
    with pytest.raises(TrainingDiverged) as caught:
        get_backend("numpy").train(SPEC, params, X, y, SGD(lr=1e6), steps=50, batch_size=8, workers=2)
    assert caught.value.trajectory.steps_run == caught.value.step  # the run up to the bad step comes back
    assert mp.active_children() == []


class SignallingNumpy(NumpyBackend):
    """Each worker touches $TRIGRAD_TEST_STARTED.<rank> when it starts training: the event a test waits on."""

    def _train_steps(self, state, n, batches, record):
        Path(f"{os.environ['TRIGRAD_TEST_STARTED']}.{self._replica.rank}").touch()
        return super()._train_steps(state, n, batches, record)


INTERRUPTED = """
from shared.optim import SGD
from tests.backends.test_data_parallel import SPEC, SignallingNumpy, problem

if __name__ == "__main__":
    params, X, y = problem()
    SignallingNumpy().train(SPEC, params, X, y, SGD(0.01), steps=10**7, batch_size=8, workers=2)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="process groups and SIGINT are POSIX")
def test_ctrl_c_stops_every_worker(tmp_path):
    script = tmp_path / "train_forever.py"
    script.write_text(INTERRUPTED)
    started = tmp_path / "started"
    env = os.environ | {"PYTHONPATH": str(ROOT), "TRIGRAD_TEST_STARTED": str(started)}
    with ctrl_c_reaches_children():
        proc = subprocess.Popen(
            [sys.executable, str(script)], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120  # generous: two fresh interpreters on a loaded 2-core machine
        while not all(Path(f"{started}.{r}").exists() for r in (0, 1)) and time.monotonic() < deadline:
            assert proc.poll() is None, f"the run ended before it was interrupted:\n{proc.stderr.read()}"
            time.sleep(0.05)
        assert proc.poll() is None, "the workers did not start training within 120 s"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, err
    deadline = time.monotonic() + 30
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _group_alive(proc.pid), "a worker outlived Ctrl-C"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the sockets from /proc (Linux)")
def test_torch_workers_hold_sockets_on_the_loopback_interface_only(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from tests.backends.socket_probe import SocketReportingTorch, is_loopback, other_interface

    monkeypatch.setenv("TRIGRAD_TEST_SOCKETS", str(tmp_path / "sockets"))  # the spawned workers inherit it
    other = other_interface()  # (eth0 here: the deliberate bug, the user's choice kept, binds there)
    if other is not None:  # an environment asking gloo for another interface: still the loopback
        monkeypatch.setenv("GLOO_SOCKET_IFNAME", other)
    params, X, y = problem()
    SocketReportingTorch().train(SPEC, params, X, y, OPT, steps=2, batch_size=8, workers=2)
    for rank in (0, 1):
        sockets = [line.split() for line in (tmp_path / f"sockets.{rank}").read_text().split("\n") if line]
        assert sockets, f"worker {rank} holds no TCP socket: gloo's connections were not seen"
        outside = [address for address, _ in sockets if not is_loopback(address)]
        assert not outside, f"worker {rank} has sockets bound beyond the loopback interface: {outside}"
