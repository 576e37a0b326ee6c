"""The engine runs the lesson's step: each backend's training loop (backend.py) must give exactly the
params of its reference `train_step` (train.py) called n times in a plain loop, for the MLP and the
GPT, with SGD + momentum and with Adam (the GPT with Adam), and keep the losses that step computes at the recorded steps.

What this catches: an engine loop that drifted from the step a learner reads (a different update
order, a norm taken after the update, a stride's losses kept at the wrong index, a GPU-only branch
with its own bookkeeping).
"""

from __future__ import annotations

import numpy as np
import pytest

from backends import available_backends, get_backend
from shared.optim import SGD, Adam
from shared.params import init_params, map_params, named_leaves, tree_leaves
from shared.spec import GPTSpec, MLPSpec
from tests.helpers import make_problem

MLP = MLPSpec((3, 5, 4, 2), "tanh", "softmax_ce")
GPT = GPTSpec(vocab_size=6, seq_len=5, d_model=8, n_heads=2, n_layers=1, activation="gelu")
STEPS = 7
RECORD = range(1, STEPS, 3)  # steps 1 and 4: a stride that starts late, so an off-by-one shows
OPTIMIZERS = {"momentum": SGD(0.1, momentum=0.9), "adam": Adam(0.01)}


def _problem(spec):
    if isinstance(spec, GPTSpec):
        rng = np.random.default_rng(0)
        X = rng.integers(0, spec.vocab_size, size=(4, spec.seq_len))
        return init_params(spec, seed=0), X, np.roll(X, -1, axis=1)
    params, X, y = make_problem(spec, n=6)
    return params, X, y


def _reference(backend: str, spec, params, X, y, optimizer):
    """train.py's step, STEPS times, on the threads the engine uses: (params after, every step's loss)."""
    be = get_backend(backend)
    spec, params, X, y = be._prepare(spec, params, X, y, need_y=True)
    with be._compute(spec, len(X)):  # the same thread count: a matmul's sum order depends on it
        return _steps(backend, be, spec, params, X, y, optimizer)


def _steps(backend, be, spec, params, X, y, optimizer):
    if backend == "numpy":
        from backends.numpy import optim, train

        params = map_params(np.copy, params)  # train_step updates in place
        opt = optim.make_optimizer(optimizer, tree_leaves(params))
        losses = [train.train_step(spec, params, opt, X, y) for _ in range(STEPS)]
        return params, losses
    if backend == "torch":
        import torch

        from backends.torch import backend as engine
        from backends.torch import optim, train

        model = engine.build_model(spec, params, getattr(torch, be.dtype))
        opt, loss = optim.make_optimizer(optimizer, model), train.loss_fn(spec)
        X_t, y_t = engine.to_torch(X), engine.to_torch(y)
        losses = [train.train_step(model, opt, loss, X_t, y_t).item() for _ in range(STEPS)]
        return engine.read_params(spec, model), losses
    import jax

    from backends.jax import optim, train

    with jax.enable_x64(True):
        tx = optim.make_optimizer(optimizer, be.np_dtype)
        params = jax.tree.map(jax.numpy.asarray, params)
        state = tx.init(params)
        step = jax.jit(train.train_step, static_argnums=(0, 1))
        losses = []
        for _ in range(STEPS):
            params, state, loss = step(spec, tx, params, state, jax.numpy.asarray(X), jax.numpy.asarray(y))
            losses.append(float(loss))
        return jax.tree.map(np.asarray, params), losses


# The GPT with Adam, as transformers train, on NumPy and torch, whose GPT steps are their own code; JAX's
# engine loop is one train_chunk for either model (the spec is static), checked on the MLP: compiling
# the GPT's chunk alone would take seconds.
CASES = [
    (backend, model, optimizer)
    for backend in ("numpy", "torch", "jax")
    for model, optimizer in (("mlp", "momentum"), ("mlp", "adam"), ("gpt", "adam"))
    if (backend, model) != ("jax", "gpt")
]


@pytest.mark.parametrize("backend, model, optimizer", CASES, ids=["-".join(c) for c in CASES])
def test_the_engine_loop_is_the_reference_step_run_n_times(backend, model, optimizer):
    if backend not in available_backends():
        pytest.skip(f"{backend} is not installed here")
    spec = MLP if model == "mlp" else GPT
    params, X, y = _problem(spec)
    want, losses = _reference(backend, spec, params, X, y, OPTIMIZERS[optimizer])
    be = get_backend(backend)
    traj = be.train(spec, params, X, y, OPTIMIZERS[optimizer], STEPS, record_losses=3)
    # Bit for bit, except JAX: XLA compiles the step inside the fori_loop and the step alone as two
    # programs, and may fuse (a·b + c into one FMA) in one and not the other: last-bit differences.
    tol = 8 * np.finfo(np.float64).eps if backend == "jax" else 0.0
    for (name, a), (_, b) in zip(named_leaves(traj.params), named_leaves(want)):
        scale = max(np.abs(b).max(), 1.0)
        assert np.abs(a - b).max() <= tol * scale, f"{backend} {model} {optimizer}: {name} differs"
    np.testing.assert_allclose(traj.losses, [losses[i] for i in range(0, STEPS, 3)], rtol=tol, atol=0)
