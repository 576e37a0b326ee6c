"""The engines' named fast paths are the teaching step, bit for bit.

torch's train runs backends/torch/train.py plain_sgd_step (torch.autograd.grad and one fused in-place
update, no torch.optim) for plain SGD. NumPy's runs backends/numpy/train.py plain_mlp_grads (mlp.py's
forward and backward as one function, without its per-piece calls, cache and dicts) for an MLP in
float32 or float64 whose loss nobody keeps. Each test trains twice from the same start, once with the
fast path and once with `fast_path = False` (the teaching step), and asks for the same params, losses
and gradient norms to the bit. A spy checks that the fast path ran (else the comparison would pass by
comparing the teaching step with itself), and that a run it does not cover never reaches it.

Caught: an update that forgets the minus sign or the lr, gradients taken from a stale graph, a norm
computed before the step's gradients, a fast path taken for momentum or weight decay (which it would
silently drop); in NumPy's, a dropped transpose, an activation's backward handed Z for A, gradients
in the wrong order, a fast path taken in a half format (whose sums mlp.py accumulates in float32) or
with a bug switched on in mlp.py (which it would step around).
"""

import numpy as np
import pytest

from backends import available_backends, get_backend
from shared.data import moons
from shared.optim import SGD, Adam
from shared.params import init_params, tree_leaves
from shared.spec import GPTSpec, MLPSpec

needs_torch = pytest.mark.skipif("torch" not in available_backends(), reason="torch is not installed")

MLP = MLPSpec((2, 5, 4, 1), ("tanh", "relu"), "bce")
GPT = GPTSpec(vocab_size=7, seq_len=5, d_model=8, n_heads=2, n_layers=1, d_ff=12)


def _problem(spec):
    if isinstance(spec, GPTSpec):
        rng = np.random.default_rng(3)
        tokens = rng.integers(0, spec.vocab_size, size=(8, spec.seq_len + 1))
        return init_params(spec, seed=3), tokens[:, :-1], tokens[:, 1:]
    data = moons(16, noise=0.2, seed=3)
    X, y = data.X, data.y.reshape(-1, 1).astype(float)
    return init_params(spec, seed=3), X, y


def _spy(monkeypatch):
    """Counts the calls of torch's fast path."""
    from backends.torch import train

    calls = []
    original = train.plain_sgd_step

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(train, "plain_sgd_step", counted)
    return calls


def _train(fast: bool, dtype: str, spec, optimizer, **kwargs):
    be = get_backend("torch", dtype)
    be.fast_path = fast
    params, X, y = _problem(spec)
    return be.train(spec, params, X, y, optimizer, steps=9, **kwargs)


@needs_torch
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("spec", [MLP, GPT], ids=["mlp", "gpt"])
@pytest.mark.parametrize("kwargs", [{}, {"batch_size": 4, "record_losses": 2}, {"record_losses": None}], ids=str)
def test_torch_plain_sgd_fast_path_is_the_teaching_step_bit_for_bit(monkeypatch, dtype, spec, kwargs):
    calls = _spy(monkeypatch)
    fast = _train(True, dtype, spec, SGD(0.3), **kwargs)
    assert len(calls) == 9  # the fast path ran every step
    teaching = _train(False, dtype, spec, SGD(0.3), **kwargs)
    assert len(calls) == 9  # and the teaching run never reached it
    for a, b in zip(tree_leaves(fast.params), tree_leaves(teaching.params)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fast.losses, teaching.losses)
    np.testing.assert_array_equal(fast.grad_norms, teaching.grad_norms)
    assert not np.array_equal(tree_leaves(fast.params)[0], tree_leaves(_problem(spec)[0])[0])  # it trained


@needs_torch
@pytest.mark.parametrize("optimizer", [SGD(0.3, momentum=0.9), SGD(0.3, weight_decay=0.01), Adam(0.01)], ids=repr)
def test_optimizers_the_fast_path_does_not_cover_take_the_teaching_step(monkeypatch, optimizer):
    calls = _spy(monkeypatch)
    _train(True, "float64", MLP, optimizer)
    assert calls == []


@needs_torch
@pytest.mark.parametrize("how", ["accumulate", "mixed"])
def test_runs_the_fast_path_does_not_cover_take_the_teaching_step(monkeypatch, how):
    """Plain SGD, but accumulated over micro-batches (each backward adds into .grad) or in mixed
    precision (autocast; the loss scaler needs .grad): the teaching step, never the fast path. (Workers,
    the third case _plain_sgd refuses, train in processes of their own, out of a spy's reach.)"""
    calls = _spy(monkeypatch)
    if how == "accumulate":
        _train(True, "float64", MLP, SGD(0.3), batch_size=8, accumulate=2)
    else:
        pytest.importorskip("ml_dtypes")
        be = get_backend("torch", "bfloat16", precision="mixed")
        params, X, y = _problem(MLP)
        be.train(MLP, params, X, y, SGD(0.3), steps=3)
    assert calls == []


@needs_torch
def test_a_blowup_stops_at_the_same_step_on_the_fast_path():
    from shared.trajectory import TrainingDiverged

    stopped = []
    for fast in (True, False):
        with pytest.raises(TrainingDiverged) as caught:
            _train(fast, "float32", MLP, SGD(1e30))
        stopped.append(caught.value.trajectory)
    assert len(stopped[0].losses) == len(stopped[1].losses)
    np.testing.assert_array_equal(stopped[0].losses, stopped[1].losses)


# ============================================================================ NumPy: train.plain_mlp_grads

NUMPY_SPECS = [  # every activation and loss: tanh's backward reads A, relu's Z, gelu's both; no hidden layer
    MLPSpec((2, 5, 4, 1), ("tanh", "relu"), "bce"),
    MLPSpec((2, 1), (), "bce"),
    MLPSpec((2, 6, 3), ("gelu",), "softmax_ce"),
    MLPSpec((2, 4, 4, 2), ("sigmoid", "identity"), "mse"),
]
NUMPY_RUNS = [(SGD(0.3), None), (SGD(0.1, momentum=0.9, weight_decay=0.01), 4), (Adam(0.01), 4)]


def _numpy_spy(monkeypatch):
    """Counts the steps whose gradients came from NumPy's fast path."""
    from backends.numpy import train

    calls = []
    original = train.plain_mlp_grads

    def counted(spec, leaves):
        grads = original(spec, leaves)
        return lambda X, y: calls.append(1) or grads(X, y)

    monkeypatch.setattr(train, "plain_mlp_grads", counted)
    return calls


def _numpy_train(fast: bool | None, spec, optimizer=None, dtype="float64", precision="pure", **kwargs):
    """9 steps on 16 moons points; fast None leaves the backend's fast_path as it is by default."""
    optimizer = optimizer or SGD(0.3)
    be = get_backend("numpy", dtype, precision=precision)
    if fast is not None:
        be.fast_path = fast
    data = moons(16, noise=0.2, seed=3)
    return be.train(spec, init_params(spec, seed=3), data.X, data.targets(spec), optimizer, steps=9, **kwargs)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("spec", NUMPY_SPECS, ids=lambda s: f"{'-'.join(s.activations)}-{s.loss}")
@pytest.mark.parametrize("optimizer, batch_size", NUMPY_RUNS, ids=["sgd-full", "momentum-decay-b4", "adam-b4"])
def test_numpy_mlp_fast_path_is_the_teaching_step_bit_for_bit(monkeypatch, dtype, spec, optimizer, batch_size):
    calls = _numpy_spy(monkeypatch)
    fast = _numpy_train(True, spec, optimizer, dtype, batch_size=batch_size, record_losses=None)
    assert len(calls) == 9  # every step's gradients came from the fast path
    teaching = _numpy_train(False, spec, optimizer, dtype, batch_size=batch_size, record_losses=None)
    assert len(calls) == 9  # and the teaching run never reached it
    for a, b in zip(tree_leaves(fast.params), tree_leaves(teaching.params), strict=True):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_array_equal(a, b, err_msg="train.plain_mlp_grads no longer computes what mlp.py does")
    start = tree_leaves(init_params(spec, seed=3))
    assert all(not np.array_equal(a, b) for a, b in zip(tree_leaves(fast.params), start))  # every array trained


@pytest.mark.parametrize(
    "how",
    [
        {"record_losses": 1},  # a loss kept: the teaching loop, which computes it
        {"dtype": "float16", "optimizer": SGD(0.05)},  # a pure half format: mlp.py's float32 sums
        {"dtype": "bfloat16", "precision": "mixed"},
        {"accumulate": 2, "batch_size": 8},
    ],
    ids=["losses-kept", "float16", "bfloat16-mixed", "accumulate"],
)
def test_numpy_runs_the_fast_path_does_not_cover_take_the_teaching_step(monkeypatch, how):
    if how.get("dtype") in ("float16", "bfloat16"):
        pytest.importorskip("ml_dtypes")
    calls = _numpy_spy(monkeypatch)
    how = {"record_losses": None} | how
    traj = _numpy_train(True, NUMPY_SPECS[0], **how)
    assert calls == [] and len(traj.params) == 3


def test_numpy_blowup_on_the_fast_path_stops_where_the_teaching_step_does(monkeypatch):
    """A chunk that blew up is replayed from its saved params (new arrays): the fast path, built per
    chunk, reads those and stops at the same step, with the same last finite params."""
    from shared.trajectory import TrainingDiverged

    calls = _numpy_spy(monkeypatch)
    stopped = []
    for fast in (True, False):
        with pytest.raises(TrainingDiverged) as caught:
            _numpy_train(fast, NUMPY_SPECS[-1], SGD(1e6), "float32", record_losses=None)  # mse, a linear path
        stopped.append(caught.value.trajectory)
    assert calls
    assert len(stopped[0].losses) == len(stopped[1].losses)
    for a, b in zip(tree_leaves(stopped[0].params), tree_leaves(stopped[1].params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_numpy_gpt_takes_the_teaching_step(monkeypatch):
    calls = _numpy_spy(monkeypatch)
    params, X, y = _problem(GPT)
    get_backend("numpy").train(GPT, params, X, y, SGD(0.3), steps=2, record_losses=None)
    assert calls == []


def test_a_bug_switched_on_in_mlp_py_is_not_stepped_around(monkeypatch):
    """comparisons' backprop bugs live in mlp.py's functions, which the fast path does not call: with
    one switched on, train takes the teaching step, and the bug shows in what it trains."""
    from comparisons.backprop.bug_catalogue import switched_on

    calls = _numpy_spy(monkeypatch)
    spec = MLPSpec((2, 3, 3, 3), "tanh", "softmax_ce")  # square above the first layer: the dropped transpose runs
    healthy = _numpy_train(None, spec, record_losses=None)
    assert len(calls) == 9
    with switched_on("dropped-transpose"):
        buggy = _numpy_train(None, spec, record_losses=None)
        assert len(calls) == 9
        asked = _numpy_train(True, spec, record_losses=None)  # an instance that asks for the fast path
    assert len(calls) == 9 and np.array_equal(tree_leaves(asked.params)[0], tree_leaves(buggy.params)[0])
    assert not np.array_equal(tree_leaves(buggy.params)[0], tree_leaves(healthy.params)[0])
    after = _numpy_train(None, spec, record_losses=None)  # switched off: the fast path again, as before
    assert len(calls) == 18 and np.array_equal(tree_leaves(after.params)[0], tree_leaves(healthy.params)[0])
