"""Bare training loops: the same math as trigrad's `train`, written directly in each framework.

These are the baselines that say what trigrad's interface costs. Each is what an expert would write
for one fixed network with no interface around it: no validation, no recording of losses or
gradient norms, no divergence checks, no chunking — just forward, backward and an SGD update, over
and over, on data already in the framework's own arrays.

Each `make_*` function does its setup (conversion, model building) and returns `run(steps)`, which
trains for `steps` steps and returns only when the work is done (JAX: block_until_ready). For the
GPT workload each `make_*` dispatches to its `*_gpt` sibling below, whose runner also has `loss()`:
the current full-batch loss, for tests (never called while timing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from benchmarks.workloads import LR, AnyWorkload, GPTWorkload, Workload

Runner = Callable[[int], None]


@dataclass(frozen=True)
class GPTRunner:
    """run(steps) like every runner, plus loss(): the full-batch loss at the current params."""

    run: Runner
    loss: Callable[[], float]

    def __call__(self, steps: int) -> None:
        self.run(steps)


def make_numpy(w: AnyWorkload) -> Runner:
    """Backprop by hand for tanh/relu hidden layers and bce/softmax_ce/mse, in float32."""
    if isinstance(w, GPTWorkload):
        return numpy_gpt(w)
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


def make_torch(w: AnyWorkload) -> Runner:
    """The loop every torch tutorial writes: zero_grad, forward, loss, backward, step."""
    if isinstance(w, GPTWorkload):
        return torch_gpt(w)
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

    if isinstance(w, GPTWorkload):
        raise NotImplementedError("torch.compile is measured on the MLP sizes only")

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


def make_jax(w: AnyWorkload) -> Runner:
    """A jitted step called from a Python loop: one dispatch per step."""
    if isinstance(w, GPTWorkload):
        return jax_gpt(w)
    jax, params, step = _jax_parts(w)
    jitted = jax.jit(lambda p: step(p)[0])
    state = {"params": params}

    def run(steps: int) -> None:
        p = state["params"]
        for _ in range(steps):
            p = jitted(p)
        state["params"] = jax.block_until_ready(p)

    return run


def make_jax_scan(w: AnyWorkload) -> Runner:
    """All steps in one compiled call: jax.lax.scan over the step (compiled once per step count)."""
    if isinstance(w, GPTWorkload):
        return jax_gpt(w, scan=True)
    jax, params, step = _jax_parts(w)
    fused = jax.jit(lambda p, n: jax.lax.scan(step, p, None, length=n)[0], static_argnums=1)
    state = {"params": params}

    def run(steps: int) -> None:
        state["params"] = jax.block_until_ready(fused(state["params"], steps))

    return run


# ============================================================================ the tiny GPT
# The model code is the backends' own (backends/{numpy,torch,jax}/gpt.py): the
# bare loops differ from trigrad's `train` only in what surrounds the step — no validation, no
# conversion per call, no loss or gradient norm recorded, no divergence checks, plain SGD in place.


def _sgd_in_place(params, grads, lr: float) -> None:
    """p −= lr · g for every leaf of a params tree (nested dicts and lists of numpy arrays)."""
    for k in params.keys() if isinstance(params, dict) else range(len(params)):
        if isinstance(params[k], np.ndarray):
            params[k] -= lr * grads[k]
        else:
            _sgd_in_place(params[k], grads[k], lr)


def numpy_gpt(w: GPTWorkload, lr: float = LR) -> GPTRunner:
    """backends/numpy/gpt.py loss_and_grads (the hand-written backward) and an in-place SGD update."""
    from backends.numpy import gpt as nt
    from shared.params import map_params

    params, X, Y = w.problem()
    params = map_params(lambda a: a.astype(np.float32), params)

    def run(steps: int) -> None:
        for _ in range(steps):
            _, grads = nt.loss_and_grads(w.spec, params, X, Y)
            _sgd_in_place(params, grads, lr)

    def loss() -> float:
        return float(nt.softmax_ce_forward(nt.gpt_forward(w.spec, params, X)[0], Y))

    return GPTRunner(run, loss)


def torch_gpt(w: GPTWorkload, lr: float = LR) -> GPTRunner:
    """backends/torch/gpt.py GPT and its softmax_ce, torch.autograd.grad, then p −= lr·g under no_grad."""
    import torch

    from backends.torch import gpt as tt
    from shared.params import named_leaves

    params, X, Y = w.problem()
    model = tt.GPT(w.spec, torch.float32)
    tensors = model.canonical()
    with torch.no_grad():  # the same initial weights as every other variant: (in, out) -> torch's (out, in)
        for name, array in named_leaves(params):
            tensor, transposed = tensors[name]
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(array.T if transposed else array)))
    weights = list(model.parameters())
    X_t, Y_t = torch.from_numpy(X), torch.from_numpy(Y)

    def run(steps: int) -> None:
        for _ in range(steps):
            grads = torch.autograd.grad(tt.softmax_ce(model(X_t), Y_t), weights)
            with torch.no_grad():
                for p, g in zip(weights, grads):
                    p.sub_(g, alpha=lr)

    def loss() -> float:
        with torch.no_grad():
            return tt.softmax_ce(model(X_t), Y_t).item()

    return GPTRunner(run, loss)


def jax_gpt(w: GPTWorkload, scan: bool = False, lr: float = LR) -> GPTRunner:
    """backends/jax/gpt.py gpt, jax.grad and an SGD tree_map in one jitted step: called from a Python loop
    (one dispatch per step), or with scan=True all steps in one compiled jax.lax.scan call (compiled
    once per step count)."""
    import jax
    import jax.numpy as jnp
    import optax

    from backends.jax import gpt as jt

    params, X, Y = w.problem()
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    X_j, Y_j = jnp.asarray(X, jnp.int32), jnp.asarray(Y, jnp.int32)

    def loss_of(p):
        return optax.softmax_cross_entropy_with_integer_labels(jt.gpt(w.spec, p, X_j), Y_j).mean()

    def step(p, _=None):
        grads = jax.grad(loss_of)(p)
        return jax.tree.map(lambda a, g: a - lr * g, p, grads), None

    state = {"params": params}
    if scan:
        fused = jax.jit(lambda p, n: jax.lax.scan(step, p, None, length=n)[0], static_argnums=1)

        def run(steps: int) -> None:
            state["params"] = jax.block_until_ready(fused(state["params"], steps))

    else:
        jitted = jax.jit(lambda p: step(p)[0])

        def run(steps: int) -> None:
            p = state["params"]
            for _ in range(steps):
                p = jitted(p)
            state["params"] = jax.block_until_ready(p)

    jitted_loss = jax.jit(loss_of)
    return GPTRunner(run, lambda: float(jitted_loss(state["params"])))
