"""Training on all three backends: shared batch order, trajectory parity, divergence, persistence.

Deliberate bugs these catch: a backend that shuffles its own minibatches, a step that records the
loss after the update instead of before, a JAX chunk that keeps training past a NaN, a momentum
buffer reset between chunks."""

import numpy as np
import pytest

from backends import get_backend
from shared.data import xor
from shared.optim import SGD, Adam
from shared.params import init_params
from shared.spec import MLPSpec
from shared.tolerances import tolerance
from shared.training import minibatch_schedule
from shared.trajectory import TrainingDiverged, Trajectory, compare
from tests.conftest import backend_or_skip
from tests.helpers import make_problem

XOR_SPEC = MLPSpec((2, 4, 1), "tanh", "bce")
SMALL = MLPSpec((3, 6, 5, 2), ("tanh", "gelu"), "mse")


def xor_problem():
    data = xor()
    return init_params(XOR_SPEC, seed=0), data.X, data.targets(XOR_SPEC)


# ---- the shared minibatch order ----


def test_minibatch_schedule_is_a_fresh_permutation_every_epoch():
    s = minibatch_schedule(n=10, batch_size=3, steps=7, seed=0)
    assert s.shape == (7, 3)
    for epoch in (s[0:3], s[3:6]):  # 10 // 3 = 3 batches per epoch; one sample left out each epoch
        assert len(set(epoch.ravel())) == 9
    assert not np.array_equal(s[0:3], s[3:6])
    assert np.array_equal(s, minibatch_schedule(10, 3, 7, seed=0))
    assert not np.array_equal(s, minibatch_schedule(10, 3, 7, seed=1))


# ---- trajectory parity ----

CASES = [
    ("float64", SGD(lr=0.05), 400, None, "trajectory"),
    ("float64", SGD(lr=0.05, momentum=0.9), 400, None, "trajectory"),
    ("float64", Adam(lr=0.01), 400, None, "trajectory"),
    ("float64", SGD(lr=0.05, momentum=0.9), 300, 8, "trajectory"),  # minibatches
    ("float64", Adam(lr=0.01), 300, 8, "trajectory"),
    ("float32", SGD(lr=0.2), 100, None, "trajectory_sgd"),
    ("float32", SGD(lr=0.2), 100, 8, "trajectory_sgd"),
    ("float32", Adam(lr=0.01), 50, None, "trajectory_adam"),
    ("float32", Adam(lr=0.01), 50, 8, "trajectory_adam"),
]


@pytest.mark.parametrize(
    "dtype_, opt, steps, batch_size, kind", CASES, ids=[f"{c[0]}-{c[1].describe()}-b{c[3]}" for c in CASES]
)
def test_trajectories_agree_pairwise(pair, dtype_, opt, steps, batch_size, kind):
    params, X, y = make_problem(SMALL, n=32, seed=1)
    a, b = (
        backend_or_skip(name, dtype_).train(
            SMALL, params, X, y, optimizer=opt, steps=steps, batch_size=batch_size, record_every=50
        )
        for name in pair
    )
    assert len(a.losses) == len(b.losses) == steps
    result = compare(a, b, tolerance(dtype_, kind))
    assert result.ok, result.message(f"{pair[0]} vs {pair[1]} {dtype_} {opt.describe()} batch={batch_size}")
    assert a.losses[-1] < a.losses[0]  # it trained


def test_the_same_seed_gives_bit_identical_numpy_trajectories():
    params, X, y = make_problem(SMALL, n=32, seed=1)
    be = get_backend("numpy")
    runs = [be.train(SMALL, params, X, y, optimizer=Adam(lr=0.01), steps=60, batch_size=5, seed=3) for _ in range(2)]
    assert np.array_equal(runs[0].losses, runs[1].losses)
    assert all(np.array_equal(p[k], q[k]) for p, q in zip(runs[0].params, runs[1].params) for k in "Wb")
    other = be.train(SMALL, params, X, y, optimizer=Adam(lr=0.01), steps=60, batch_size=5, seed=4)
    assert not np.array_equal(runs[0].losses, other.losses)


def test_losses_are_recorded_before_each_update(backend_name):
    spec = MLPSpec((3, 4, 2), "tanh", "mse")
    params, X, y = make_problem(spec)
    be = get_backend(backend_name)
    traj = be.train(spec, params, X, y, optimizer=SGD(lr=0.1), steps=3, record_every=1)
    for s in range(3):
        loss, grads = be.loss_and_grads(spec, traj.snapshot(s), X, y)
        assert traj.losses[s] == pytest.approx(loss, rel=1e-12)
        norm = np.sqrt(sum((g**2).sum() for layer in grads for g in layer.values()))
        assert traj.grad_norms[s] == pytest.approx(norm, rel=1e-12)


def test_xor_is_learned_on_every_backend_with_identical_loss_curves():
    params, X, y = xor_problem()
    runs = {}
    for name in ("numpy", "torch", "jax"):
        be = backend_or_skip(name)
        runs[name] = traj = be.train(XOR_SPEC, params, X, y, optimizer=SGD(lr=0.5, momentum=0.9), steps=500)
        predicted = (be.forward(XOR_SPEC, traj.params, X) > 0).astype(float)
        assert np.array_equal(predicted, y), f"{name} did not learn XOR: predicted {predicted.ravel()}"
        assert traj.losses[-1] < 0.05
    for name, traj in runs.items():
        result = compare(runs["numpy"], traj, tolerance("float64", "trajectory"))
        assert result.ok, result.message(f"numpy vs {name} XOR")


# ---- divergence is reported, never silent ----


def test_a_far_too_high_learning_rate_raises_with_the_step(backend_name):
    params, X, y = make_problem(SMALL, n=16)
    be = get_backend(backend_name)
    with pytest.raises(TrainingDiverged, match=r"diverged at step \d+: the (loss|gradient norm) is (nan|inf)") as info:
        be.train(SMALL, params, X * 100, y * 100, optimizer=SGD(lr=50.0), steps=200)
    err = info.value
    assert 0 < err.step < 200 and err.trajectory.diverged_at == err.step
    assert "(lr=50) is probably too high" in str(err) or err.quantity == "gradient norm"


def test_on_nonfinite_stop_returns_the_run_up_to_the_bad_step(pair):
    """Every backend stops at the same step, with finite last params. (Only the first steps are
    compared closely: a blow-up multiplies any difference, so by the end they agree on little else.)"""
    params, X, y = make_problem(SMALL, n=16)
    runs = [
        get_backend(name).train(
            SMALL, params, X * 100, y * 100, optimizer=SGD(lr=50.0), steps=200, record_every=3, on_nonfinite="stop"
        )
        for name in pair
    ]
    a, b = runs
    assert a.diverged_at is not None and a.diverged_at == b.diverged_at
    assert len(a.losses) == a.diverged_at and np.isfinite(a.losses).all()
    assert all(np.isfinite(layer[k]).all() for run in runs for layer in run.params for k in "Wb")
    assert a.losses[:2] == pytest.approx(b.losses[:2], rel=1e-9)


# ---- record_losses: the loss and norm every k-th step, nothing else changed ----


def _same_params(a, b) -> bool:
    return all(np.array_equal(p[k], q[k]) for p, q in zip(a, b) for k in "Wb")


@pytest.mark.parametrize("dtype_", ["float64", "float32"])
def test_record_losses_keeps_every_kth_loss_and_changes_nothing_else(backend_name, dtype_):
    """Bit for bit: the kept losses and norms are those of record_losses=1 at steps 0, k, 2k, ...,
    and the params (snapshots, final) are identical, since skipping a loss value changes no gradient.
    Chunks of record_every=10 steps do not line up with k=4, so a backend that counts the stride from
    each chunk's start (instead of from step 0) keeps the wrong steps; a step that forgets its
    update when nothing is kept, or a JAX loop that runs a step too many or too few, changes the
    params."""
    params, X, y = make_problem(SMALL, n=16)
    be = get_backend(backend_name, dtype_)
    args = dict(optimizer=Adam(lr=0.01), steps=37, batch_size=5, seed=3, record_every=10)
    every = be.train(SMALL, params, X, y, **args)
    for k in (4, 1000, None):
        some = be.train(SMALL, params, X, y, **args, record_losses=k)
        kept = np.arange(0, 37, k) if k else np.arange(0)
        assert len(some) == 37 and some.loss_steps.tolist() == kept.tolist()
        assert np.array_equal(some.losses, every.losses[kept]), f"record_losses={k}"
        assert np.array_equal(some.grad_norms, every.grad_norms[kept]), f"record_losses={k}"
        assert _same_params(some.params, every.params), f"record_losses={k}"
        assert all(_same_params(s, e) for s, e in zip(some.snapshots, every.snapshots))
        assert some.meta["record_losses"] == k


def test_record_losses_stops_a_blowup_at_the_same_step(backend_name):
    """The steps that keep no loss are not checked one by one; the params after each chunk are, and
    a chunk that went wrong is replayed step by step: the run stops where record_losses=1 stops,
    with the same last finite params."""
    params, X, y = make_problem(SMALL, n=16)
    be = get_backend(backend_name)
    args = dict(optimizer=SGD(lr=50.0), steps=200, on_nonfinite="stop")
    every = be.train(SMALL, params, X * 100, y * 100, **args)
    assert every.diverged_at is not None
    for k in (3, None):
        some = be.train(SMALL, params, X * 100, y * 100, **args, record_losses=k)
        assert some.diverged_at == every.diverged_at == len(some), f"record_losses={k}"
        kept = np.arange(0, len(some), k) if k else np.arange(0)
        assert np.array_equal(some.losses, every.losses[kept])
        assert _same_params(some.params, every.params)


def test_snapshots_further_apart_than_a_chunk(backend_name):
    """record_every beyond the 1000-step chunk: chunks stay ≤ 1000 steps and the snapshots land on
    the multiples. (A chunk of record_every steps overflowed JAX's 1000-entry loss buffer: every chunk
    was replayed step by step, and with minibatches no compiled length fitted.)"""
    params, X, y = make_problem(SMALL, n=8)
    args = dict(optimizer=SGD(lr=0.05), steps=3100, batch_size=4, seed=1, record_every=1500)
    traj = get_backend(backend_name).train(SMALL, params, X, y, **args)
    assert traj.snapshot_steps.tolist() == [0, 1500, 3000] and len(traj.losses) == 3100
    reference = get_backend("numpy").train(SMALL, params, X, y, **args)
    result = compare(reference, traj, tolerance("float64", "trajectory"))
    assert result.ok, result.message(f"numpy vs {backend_name}")


def test_a_stride_longer_than_the_run_keeps_step_0(backend_name):
    params, X, y = make_problem(SMALL, n=8)
    traj = get_backend(backend_name).train(SMALL, params, X, y, optimizer=SGD(lr=0.1), steps=5, record_losses=2**40)
    assert traj.loss_steps.tolist() == [0] and len(traj) == 5


def test_compare_uses_the_steps_both_kept_a_loss_for():
    params, X, y = make_problem(SMALL, n=8)
    be = get_backend("numpy")
    a = be.train(SMALL, params, X, y, optimizer=SGD(lr=0.1), steps=30)
    b = be.train(SMALL, params, X, y, optimizer=SGD(lr=0.1 * (1 + 1e-6)), steps=30, record_losses=7)
    result = compare(a, b, tolerance("float64", "trajectory"))
    assert result.loss_steps.tolist() == [0, 7, 14, 21, 28] and result.first_exceeded == 7
    none = be.train(SMALL, params, X, y, optimizer=SGD(lr=0.1), steps=30, record_losses=None)
    no_losses = compare(b, none, tolerance("float64", "trajectory"))
    assert no_losses.loss_steps.size == 0
    assert "no step with a loss kept by both (losses not compared)" in no_losses.message("b vs none")
    assert "max loss gap 0 over 5 steps" in compare(b, b, tolerance("float64", "trajectory")).message("b vs b")


# ---- the Trajectory object ----


def test_trajectory_records_what_produced_it_and_round_trips(tmp_path):
    params, X, y = make_problem(SMALL, n=16)
    traj = get_backend("numpy", "float32").train(
        SMALL, params, X, y, optimizer=Adam(lr=0.01), steps=20, batch_size=4, seed=2, record_every=5
    )
    assert traj.snapshot_steps.tolist() == [0, 5, 10, 15] and len(traj.snapshots) == 4
    assert traj.meta["backend"] == "numpy" and traj.meta["dtype"] == "float32"
    assert traj.meta["optimizer"] == {
        "name": "Adam",
        "lr": 0.01,
        "beta1": 0.9,
        "beta2": 0.999,
        "eps": 1e-8,
        "weight_decay": 0.0,
    }
    assert traj.meta["spec"]["sizes"] == [3, 6, 5, 2] and traj.meta["wall_time_s"] > 0
    assert traj.losses.dtype == np.float32 and traj.params[0]["W"].dtype == np.float32
    back = Trajectory.load(traj.save(tmp_path / "run"))
    assert back.meta == traj.meta and back.diverged_at is None
    assert np.array_equal(back.losses, traj.losses) and np.array_equal(back.grad_norms, traj.grad_norms)
    assert np.array_equal(back.snapshot_steps, traj.snapshot_steps)
    for s in [*traj.snapshot_steps, len(traj)]:
        assert all(np.array_equal(p[k], q[k]) for p, q in zip(back.snapshot(s), traj.snapshot(s)) for k in "Wb")


def test_without_record_every_only_the_final_params_are_kept():
    params, X, y = make_problem(SMALL, n=8)
    traj = get_backend("numpy").train(SMALL, params, X, y, optimizer=SGD(lr=0.1), steps=10)
    assert traj.snapshots == [] and len(traj.snapshot_steps) == 0


def test_compare_finds_the_first_step_that_differs():
    params, X, y = make_problem(SMALL, n=8)
    be = get_backend("numpy")
    a = be.train(SMALL, params, X, y, optimizer=SGD(lr=0.1), steps=30, record_every=10)
    b = be.train(SMALL, params, X, y, optimizer=SGD(lr=0.1 * (1 + 1e-6)), steps=30, record_every=10)
    tight = compare(a, b, tolerance("float64", "trajectory"))
    assert not tight.ok and tight.first_exceeded == 1  # step 0's loss is identical; step 1's is not
    assert tight.steps.tolist() == [0, 10, 20, 30] and tight.max_rel[0] == 0 and tight.max_rel[-1] > 1e-8
    assert compare(a, a, tolerance("float64", "trajectory")).ok


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(optimizer="sgd"), TypeError, "optimizer must be a shared.optim optimizer"),
        (dict(steps=0), ValueError, "steps must be an integer ≥ 1; got 0"),
        (dict(steps=2.5), ValueError, "steps must be an integer ≥ 1; got 2.5"),
        (dict(batch_size=0), ValueError, "batch_size must be an integer ≥ 1 or None; got 0"),
        (dict(batch_size=9), ValueError, r"batch_size must be at most the number of samples \(8\); got 9"),
        (dict(seed=-1), ValueError, "seed must be an integer ≥ 0; got -1"),
        (dict(record_every=0), ValueError, "record_every must be an integer ≥ 1 or None; got 0"),
        (dict(record_losses=0), ValueError, "record_losses must be an integer ≥ 1 or None; got 0"),
        (dict(record_losses=2.0), ValueError, "record_losses must be an integer ≥ 1 or None; got 2.0"),
        (dict(on_nonfinite="ignore"), ValueError, "on_nonfinite must be one of 'raise', 'stop'; got 'ignore'"),
    ],
)
def test_bad_training_arguments_are_named(kwargs, error, match):
    params, X, y = make_problem(SMALL, n=8)
    args = dict(optimizer=SGD(lr=0.1), steps=5) | kwargs
    with pytest.raises(error, match=match):
        get_backend("numpy").train(SMALL, params, X, y, **args)


def test_progress_bar_only_on_a_terminal_and_never_in_ci(monkeypatch):
    from shared import training

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(training.sys.stderr, "isatty", lambda: True, raising=False)
    pytest.importorskip("tqdm")
    with training.progress_bar(10, None, "test") as bar:
        assert not isinstance(bar, training._NoBar) and bar.delay == 2.0  # a tqdm bar, shown after 2 s
    monkeypatch.setenv("CI", "true")
    with training.progress_bar(10, None, "test") as bar:
        assert isinstance(bar, training._NoBar)
    with training.progress_bar(10, False, "test") as bar:
        assert isinstance(bar, training._NoBar)


# ---- JAX compiles a training chunk once per model, not once per run ----


def test_a_learning_rate_sweep_compiles_one_training_chunk():
    """Hyperparameters live in the optimizer state (optax.inject_hyperparams) and the number of steps
    and the record_losses stride are traced arguments, so 8 learning rates, any step counts and
    record_every values all reuse one compiled chunk; every stride shares a second, and
    record_losses=None a third. A static optimizer compiled once per lr: the learning-rates lesson
    did 26 compiles, ~13 s, for ~0.1 s of compute."""
    pytest.importorskip("jax")
    from backends.jax import backend as jax_backend

    spec = MLPSpec((2, 3, 1), "sigmoid", "mse")  # a spec no other test trains: its compiles are ours
    data = xor()
    params, y = init_params(spec, seed=0), data.targets(spec)
    be = get_backend("jax")
    before = jax_backend.train_chunk._cache_size()
    for i, lr in enumerate([0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.3, 2.1]):
        be.train(spec, params, data.X, y, SGD(lr, momentum=0.5), steps=300 + i, record_every=150 + i)
    be.train(spec, params, data.X, y, SGD(0.1, momentum=0.9), steps=7)  # any other length: the same compile
    assert jax_backend.train_chunk._cache_size() - before == 1
    for stride in (3, 10, 250):  # every stride: one more compile between them
        be.train(spec, params, data.X, y, SGD(0.1, momentum=0.9), steps=500 + stride, record_losses=stride)
    assert jax_backend.train_chunk._cache_size() - before == 2
    be.train(spec, params, data.X, y, SGD(0.1, momentum=0.9), steps=70, record_losses=None)
    assert jax_backend.train_chunk._cache_size() - before == 3
    be.train(spec, params, data.X, y, Adam(0.1), steps=7)  # another optimizer type: a new compile
    assert jax_backend.train_chunk._cache_size() - before == 4


def test_meta_times_each_chunk(backend_name):
    """meta["chunk_wall_times_s"]: [steps, seconds] per chunk (a chunk ends at each snapshot), which
    the data-parallel lesson reads to leave the first chunk (JAX's compile) out of a step's time."""
    params, X, y = xor_problem()
    traj = get_backend(backend_name).train(XOR_SPEC, params, X, y, SGD(0.1), steps=25, record_every=10)
    chunks = traj.meta["chunk_wall_times_s"]
    assert [steps for steps, _ in chunks] == [10, 10, 5]
    assert all(seconds > 0 for _, seconds in chunks) and sum(s for _, s in chunks) <= traj.meta["wall_time_s"]
