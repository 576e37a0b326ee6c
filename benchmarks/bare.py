"""Bare training loops: the same math as trigrad's `train`, written directly in each framework.

These are the baselines that say what trigrad's interface costs. Each is what an expert would write
for one fixed network with no interface around it: no validation, no recording of losses or
gradient norms, no divergence checks, no chunking — just forward, backward and an SGD update, over
and over, on data already in the framework's own arrays.

Each `make_*` function does its setup (conversion, model building) and returns `run(steps)`, which
trains for `steps` steps and returns only when the work is done (JAX: block_until_ready).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from benchmarks.workloads import LR, Workload

Runner = Callable[[int], None]


def make_numpy(w: Workload) -> Runner:
    """Backprop by hand for tanh/relu hidden layers and bce/softmax_ce/mse, in float32."""
    params, X, y = w.problem()
    Ws = [p["W"].astype(np.float32) for p in params]
    bs = [p["b"].astype(np.float32) for p in params]
    X = X.astype(np.float32)
    y = y if w.spec.loss == "softmax_ce" else y.astype(np.float32)
    act = w.spec.activations[0]
    n = len(X)

    def run(steps: int) -> None:
        for _ in range(steps):
            inputs, outs = [], []
            A = X
            for l in range(len(Ws)):
                inputs.append(A)
                Z = A @ Ws[l] + bs[l]
                A = Z if l == len(Ws) - 1 else (np.tanh(Z) if act == "tanh" else np.maximum(Z, 0))
                outs.append(A)
            if w.spec.loss == "bce":
                dA = (0.5 * (1 + np.tanh(0.5 * A)) - y) / n
            elif w.spec.loss == "softmax_ce":
                e = np.exp(A - A.max(axis=1, keepdims=True))
                dA = e / e.sum(axis=1, keepdims=True)
                dA[np.arange(n), y] -= 1
                dA /= n
            else:
                dA = 2 * (A - y) / A.size
            for l in reversed(range(len(Ws))):
                if l < len(Ws) - 1:
                    dA = dA * (1 - outs[l] ** 2) if act == "tanh" else dA * (outs[l] > 0)
                dW, db = inputs[l].T @ dA, dA.sum(axis=0)
                if l:
                    dA = dA @ Ws[l].T
                Ws[l] -= LR * dW
                bs[l] -= LR * db

    return run


def _torch_parts(w: Workload):
    import torch
    import torch.nn.functional as F
    from torch import nn

    _, X, y = w.problem()
    layers: list[nn.Module] = []
    for l, (fan_in, fan_out) in enumerate(w.spec.layer_shapes):
        layers.append(nn.Linear(fan_in, fan_out))
        if l < w.spec.n_layers - 1:
            layers.append(nn.Tanh() if w.spec.activations[l] == "tanh" else nn.ReLU())
    model = nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = {"bce": F.binary_cross_entropy_with_logits, "softmax_ce": F.cross_entropy, "mse": F.mse_loss}
    X_t = torch.from_numpy(X.astype(np.float32))
    y_t = torch.from_numpy(y if w.spec.loss == "softmax_ce" else y.astype(np.float32))
    return model, opt, loss_fn[w.spec.loss], X_t, y_t


def make_torch(w: Workload) -> Runner:
    """The loop every torch tutorial writes: zero_grad, forward, loss, backward, step."""
    model, opt, loss_fn, X, y = _torch_parts(w)

    def run(steps: int) -> None:
        for _ in range(steps):
            opt.zero_grad()
            loss_fn(model(X), y).backward()
            opt.step()

    return run


def make_torch_compile(w: Workload) -> Runner:
    """The same loop with the whole step (forward, backward, optimizer) under torch.compile."""
    import torch

    model, opt, loss_fn, X, y = _torch_parts(w)

    @torch.compile
    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(X), y).backward()
        opt.step()

    def run(steps: int) -> None:
        for _ in range(steps):
            step()

    return run


def _jax_parts(w: Workload):
    import jax
    import jax.numpy as jnp
    import optax

    params, X, y = w.problem()
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    X_j = jnp.asarray(X, jnp.float32)
    y_j = jnp.asarray(y) if w.spec.loss == "softmax_ce" else jnp.asarray(y, jnp.float32)
    act = jnp.tanh if w.spec.activations[0] == "tanh" else jax.nn.relu

    def loss(params, X, y):
        A = X
        for layer in params[:-1]:
            A = act(A @ layer["W"] + layer["b"])
        z = A @ params[-1]["W"] + params[-1]["b"]
        if w.spec.loss == "bce":
            return optax.sigmoid_binary_cross_entropy(z, y).mean()
        if w.spec.loss == "softmax_ce":
            return optax.softmax_cross_entropy_with_integer_labels(z, y).mean()
        return jnp.mean((z - y) ** 2)

    def step(params, _=None):
        grads = jax.grad(loss)(params, X_j, y_j)
        return jax.tree.map(lambda p, g: p - LR * g, params, grads), None

    return jax, params, step


def make_jax(w: Workload) -> Runner:
    """A jitted step called from a Python loop: one dispatch per step."""
    jax, params, step = _jax_parts(w)
    jitted = jax.jit(lambda p: step(p)[0])
    state = {"params": params}

    def run(steps: int) -> None:
        p = state["params"]
        for _ in range(steps):
            p = jitted(p)
        state["params"] = jax.block_until_ready(p)

    return run


def make_jax_scan(w: Workload) -> Runner:
    """All steps in one compiled call: jax.lax.scan over the step (compiled once per step count)."""
    jax, params, step = _jax_parts(w)
    fused = jax.jit(lambda p, n: jax.lax.scan(step, p, None, length=n)[0], static_argnums=1)
    state = {"params": params}

    def run(steps: int) -> None:
        state["params"] = jax.block_until_ready(fused(state["params"], steps))

    return run
