"""Runs that continue exactly: train(spec, traj, ...) picks up the trajectory's params, optimizer state
and place in the minibatch schedule, so 60 steps then 40 equal one run of 100, bit for bit.

Deliberate bugs these catch: Adam's step count or moments reset at the second call (its bias
correction restarts: the first continued update is ~lr·sign(g), not the run's), a momentum buffer
dropped, the minibatch schedule restarted at step 0, torch's buffers handed over without the
(in, out) → (out, in) transpose (the MLP's W are not square), a state lost in Trajectory.save/load."""

import numpy as np
import pytest

from backends import get_backend
from backends.numpy import optim as numpy_optim
from backends.numpy import train as numpy_train
from shared.optim import SGD, Adam, AdamW
from shared.params import named_leaves, tree_leaves
from shared.spec import GPTSpec, MLPSpec
from shared.tolerances import closeness, tolerance
from shared.trajectory import Trajectory, compare
from tests.conftest import backend_or_skip
from tests.helpers import make_problem

SMALL = MLPSpec((3, 6, 5, 2), ("tanh", "gelu"), "mse")  # tests/backends/test_training.py's: JAX compiles are shared
GPT = GPTSpec(vocab_size=7, seq_len=6, d_model=8, n_heads=2, n_layers=2, d_ff=12, activation="gelu")

OPTIMIZERS = [
    SGD(lr=0.05),
    SGD(lr=0.05, momentum=0.9, weight_decay=1e-3),
    SGD(lr=0.05, momentum=0.9, nesterov=True),
    Adam(lr=0.01),
    AdamW(lr=0.01, weight_decay=0.05),
]


def bitwise_equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(tree_leaves(a), tree_leaves(b), strict=True))


def assert_same_run(one, two, what):
    """`two` (a run and its continuation) is `one` (a single call), bit for bit."""
    assert two.steps_run == one.steps_run and two.snapshot_steps.tolist() == one.snapshot_steps.tolist(), what
    assert np.array_equal(two.losses, one.losses) and np.array_equal(two.grad_norms, one.grad_norms), what
    assert bitwise_equal(two.params, one.params), f"{what}: final params differ"
    assert all(bitwise_equal(a, b) for a, b in zip(one.snapshots, two.snapshots, strict=True)), what
    for name in ("velocity", "m", "v"):
        assert (name in one.optimizer_state) == (name in two.optimizer_state), what
        if name in one.optimizer_state:
            assert bitwise_equal(one.optimizer_state[name], two.optimizer_state[name]), f"{what}: {name}"
    assert one.optimizer_state.get("t") == two.optimizer_state.get("t"), what


@pytest.mark.parametrize("batch_size", [None, 8], ids=["full", "minibatch"])
@pytest.mark.parametrize("opt", OPTIMIZERS, ids=[o.describe() for o in OPTIMIZERS])
def test_sixty_steps_then_forty_are_one_run_of_a_hundred(backend_name, dtype, opt, batch_size):
    be = get_backend(backend_name, dtype)
    params, X, y = make_problem(SMALL, n=32, seed=1)
    kw = dict(optimizer=opt, batch_size=batch_size, record_every=20, seed=3)
    one = be.train(SMALL, params, X, y, steps=100, **kw)
    first = be.train(SMALL, params, X, y, steps=60, **kw)
    two = be.train(SMALL, first, X, y, steps=40, **kw)
    assert_same_run(one, two, f"{backend_name} {dtype} {opt.describe()} batch={batch_size}")
    assert [s["steps"] for s in two.meta["segments"]] == [60, 40] and two.meta["steps"] == 100
    assert np.array_equal(two.losses[:60], first.losses)  # the first call's part, kept as it was


GPT_CASES = [  # test_transformer's trajectory cases (their compiles are shared), and one full-batch AdamW
    ("float64", Adam(1e-2), 4),
    ("float32", SGD(0.1, momentum=0.9), 4),
    ("float64", AdamW(1e-2), None),
]


@pytest.mark.parametrize("dtype_, opt, batch_size", GPT_CASES, ids=[f"{c[0]}-{c[1].name}-b{c[2]}" for c in GPT_CASES])
def test_a_gpt_run_continues_exactly(backend_name, dtype_, opt, batch_size):
    from tests.backends.test_transformer import perturbed_params, tokens

    be = get_backend(backend_name, dtype_)
    params, (X, Y) = perturbed_params(GPT, seed=5, scale=0.1), tokens(GPT, 8, 6, seed=5)
    kw = dict(batch_size=batch_size, record_every=10)
    one = be.train(GPT, params, X, Y, opt, steps=30, **kw)
    two = be.train(GPT, be.train(GPT, params, X, Y, opt, steps=18, **kw), X, Y, opt, steps=12, **kw)
    assert_same_run(one, two, f"GPT {backend_name} {dtype_} {opt.describe()}")


DROPS = [(Adam(0.01), Adam(0.001)), (SGD(0.05, momentum=0.9), SGD(0.005, momentum=0.9))]


@pytest.mark.parametrize("before, after", DROPS, ids=["Adam", "momentum"])
def test_the_learning_rate_may_drop_between_calls_as_the_reference_loop_does_it(backend_name, before, after):
    """60 steps at one rate, then 40 at a tenth of it: the NumPy reference step (train.py) in one loop
    whose optimizer gets the new rate at step 60, bit for bit on NumPy and within the trajectory
    tolerance on the others. (NumPy's SGD holds its rate in the params' dtype: a stale copy of the
    first rate would leave the reference loop, and then this test, at 0.05.)"""
    params, X, y = make_problem(SMALL, n=32, seed=1)
    be = get_backend(backend_name)
    run = be.train(SMALL, be.train(SMALL, params, X, y, before, steps=60), X, y, after, steps=40)
    reference = [{k: a.copy() for k, a in layer.items()} for layer in params]
    opt = numpy_optim.make_optimizer(before, tree_leaves(reference))
    for step in range(100):
        if step == 60:
            opt.opt = after  # the same buffers (and Adam's step count), a new rate
        numpy_train.train_step(SMALL, reference, opt, X, y)
    if backend_name == "numpy":
        assert bitwise_equal(run.params, reference)
    else:
        result = closeness(run.params, reference, tolerance("float64", "trajectory"))
        assert result.ok, result.message(f"{backend_name} vs the NumPy reference loop")
    assert [s["optimizer"]["lr"] for s in run.meta["segments"]] == [before.lr, after.lr]
    unchanged = be.train(SMALL, params, X, y, before, steps=100)
    assert not bitwise_equal(unchanged.params, run.params)  # the drop changed the run


@pytest.mark.parametrize("opt", [SGD(0.05, momentum=0.9), Adam(0.01)], ids=["momentum", "Adam"])
def test_a_run_started_on_numpy_continues_on_torch_and_jax(pair, opt):
    """The state crosses frameworks in the canonical layout: NumPy's 60 steps continued for 40 on
    another backend follow one NumPy run of 100 within the float64 trajectory tolerance."""
    params, X, y = make_problem(SMALL, n=32, seed=1)
    a, b = (backend_or_skip(name) for name in pair)
    one = a.train(SMALL, params, X, y, opt, steps=100, batch_size=8, record_every=20)
    two = b.train(
        SMALL,
        a.train(SMALL, params, X, y, opt, steps=60, batch_size=8, record_every=20),
        X,
        y,
        opt,
        steps=40,
        batch_size=8,
        record_every=20,
    )
    result = compare(one, two, tolerance("float64", "trajectory"))
    assert result.ok, result.message(f"{pair[0]} 100 vs {pair[0]} 60 + {pair[1]} 40, {opt.describe()}")
    assert [s["backend"] for s in two.meta["segments"]] == list(pair)


def test_switching_momentum_on_starts_its_buffer_at_zero(backend_name):
    params, X, y = make_problem(SMALL, n=32, seed=1)
    be = get_backend(backend_name)
    plain = be.train(SMALL, params, X, y, SGD(0.05), steps=20)
    assert plain.optimizer_state == {}
    run = be.train(SMALL, plain, X, y, SGD(0.05, momentum=0.9), steps=20)
    reference = get_backend("numpy").train(SMALL, plain.params, X, y, SGD(0.05, momentum=0.9), steps=20)
    result = compare(
        Trajectory(run.losses[20:], run.grad_norms[20:], run.params), reference, tolerance("float64", "trajectory")
    )
    assert result.ok, result.message(f"{backend_name}: momentum switched on at step 20")
    assert set(run.optimizer_state) == {"velocity"}


# ---- the state in files ----


def test_a_saved_trajectory_continues_exactly(tmp_path, backend_name):
    params, X, y = make_problem(SMALL, n=32, seed=1)
    be = get_backend(backend_name, "float32")
    one = be.train(SMALL, params, X, y, Adam(0.01), steps=50, batch_size=8)
    back = Trajectory.load(be.train(SMALL, params, X, y, Adam(0.01), steps=30, batch_size=8).save(tmp_path / "run"))
    assert back.optimizer_state["t"] == 30 and back.optimizer_state["m"][0]["W"].dtype == np.float32
    assert_same_run(one, be.train(SMALL, back, X, y, Adam(0.01), steps=20, batch_size=8), backend_name)


def test_an_older_file_loads_but_says_why_it_cannot_continue(tmp_path):
    params, X, y = make_problem(SMALL, n=32, seed=1)
    be = get_backend("numpy")
    traj = be.train(SMALL, params, X, y, SGD(0.05, momentum=0.9), steps=5)
    traj.optimizer_state = None  # as a file written before the state was kept
    old = Trajectory.load(traj.save(tmp_path / "old"))
    assert old.optimizer_state is None and np.array_equal(old.losses, traj.losses)
    with pytest.raises(ValueError, match="holds no optimizer state.*params=traj.params"):
        be.train(SMALL, old, X, y, SGD(0.05, momentum=0.9), steps=5)


def test_a_file_with_a_broken_state_is_refused_naming_the_field(tmp_path):
    from shared.trajectory import TrajectoryFileError

    params, X, y = make_problem(SMALL, n=32, seed=1)
    path = get_backend("numpy").train(SMALL, params, X, y, Adam(0.01), steps=5).save(tmp_path / "run")
    with np.load(path) as z:
        arrays = dict(z)
    arrays["optimizer_state.m.0.W"] = arrays["optimizer_state.m.0.W"][:, :2]
    np.savez(tmp_path / "broken.npz", **arrays)
    with pytest.raises(TrajectoryFileError, match=r"optimizer_state\['m'\]\[0\]\['W'\] must have shape"):
        Trajectory.load(tmp_path / "broken.npz")


# ---- what cannot continue, and the errors that say so ----


def _run(steps=10, **kw):
    params, X, y = make_problem(SMALL, n=32, seed=1)
    kw = dict(optimizer=Adam(0.01), batch_size=8, seed=0) | kw
    return get_backend("numpy").train(SMALL, params, X, y, steps=steps, **kw), X, y


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(optimizer=AdamW(0.01)), "optimizer: the trajectory was trained with Adam, got AdamW"),
        (dict(batch_size=4), "batch_size=4 differs from the trajectory's batch_size=8"),
        (dict(seed=1), "seed=1 differs from the trajectory's seed=0"),
        (dict(record_losses=5), "record_losses=5 differs from the trajectory's record_losses=1"),
    ],
)
def test_what_a_continued_run_may_not_change(change, message):
    traj, X, y = _run()
    kw = dict(optimizer=Adam(0.01), batch_size=8, seed=0) | change
    with pytest.raises(ValueError, match=message):
        get_backend("numpy").train(SMALL, traj, X, y, steps=5, **kw)


def test_a_different_dtype_spec_or_a_diverged_run_cannot_continue():
    traj, X, y = _run()
    with pytest.raises(ValueError, match="dtype='float32' differs from the trajectory's dtype='float64'"):
        get_backend("numpy", "float32").train(SMALL, traj, X, y, Adam(0.01), steps=5, batch_size=8)
    other = MLPSpec((3, 6, 5, 2), "tanh", "mse")
    with pytest.raises(ValueError, match="spec .* does not match the trajectory's spec"):
        get_backend("numpy").train(other, traj, X, y, Adam(0.01), steps=5, batch_size=8)
    diverged, X, y = _run(optimizer=SGD(1e30), on_nonfinite="stop")
    assert diverged.diverged_at is not None
    with pytest.raises(ValueError, match=f"diverged at step {diverged.diverged_at}"):
        get_backend("numpy").train(SMALL, diverged, X, y, SGD(1e30), steps=5, batch_size=8)


def test_a_seed_without_minibatches_may_change():
    """Full-batch training never draws an order, so the seed means nothing there and is not held."""
    params, X, y = make_problem(SMALL, n=32, seed=1)
    be = get_backend("numpy")
    traj = be.train(SMALL, params, X, y, SGD(0.05), steps=5, seed=0)
    assert be.train(SMALL, traj, X, y, SGD(0.05), steps=5, seed=7).steps_run == 10


def test_the_canonical_state_has_the_params_layout(backend_name):
    params, X, y = make_problem(SMALL, n=32, seed=1)
    state = get_backend(backend_name).train(SMALL, params, X, y, Adam(0.01), steps=3).optimizer_state
    assert set(state) == {"t", "m", "v"} and state["t"] == 3
    for name in ("m", "v"):
        assert [(n, a.shape) for n, a in named_leaves(state[name])] == [(n, a.shape) for n, a in named_leaves(params)]
    assert all((a >= 0).all() for a in tree_leaves(state["v"]))  # second moments
