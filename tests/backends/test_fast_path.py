"""The engines' named fast paths are the teaching step, bit for bit.

torch's train runs backends/torch/train.py plain_sgd_step (torch.autograd.grad and one fused in-place
update, no torch.optim) for plain SGD. Each test trains twice from the same start, once with the fast
path and once with `fast_path = False` (the teaching train_step: zero_grad, backward, opt.step), and
asks for the same params, losses and gradient norms to the bit. A spy checks that the fast path ran
(else the comparison would pass by comparing the teaching step with itself), and that an optimizer
it does not cover never reaches it.

Caught: an update that forgets the minus sign or the lr, gradients taken from a stale graph, a norm
computed before the step's gradients, a fast path taken for momentum or weight decay (which it would
silently drop).
"""

import numpy as np
import pytest

from backends import available_backends, get_backend
from shared.data import moons
from shared.optim import SGD, Adam
from shared.params import init_params, tree_leaves
from shared.spec import GPTSpec, MLPSpec

pytestmark = pytest.mark.skipif("torch" not in available_backends(), reason="torch is not installed")

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


@pytest.mark.parametrize("optimizer", [SGD(0.3, momentum=0.9), SGD(0.3, weight_decay=0.01), Adam(0.01)], ids=repr)
def test_optimizers_the_fast_path_does_not_cover_take_the_teaching_step(monkeypatch, optimizer):
    calls = _spy(monkeypatch)
    _train(True, "float64", MLP, optimizer)
    assert calls == []


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


def test_a_blowup_stops_at_the_same_step_on_the_fast_path():
    from shared.trajectory import TrainingDiverged

    stopped = []
    for fast in (True, False):
        with pytest.raises(TrainingDiverged) as caught:
            _train(fast, "float32", MLP, SGD(1e30))
        stopped.append(caught.value.trajectory)
    assert len(stopped[0].losses) == len(stopped[1].losses)
    np.testing.assert_array_equal(stopped[0].losses, stopped[1].losses)
