"""Bare training loops: the same math as trigrad's `train`, written directly in each framework.

These are the baselines that say what trigrad's interface costs, so each is the fewest calls its
framework needs for one fixed network: every choice (the activation, the loss, its gradient) made
once, before the loop, and inside it only forward, backward and an SGD update, on data already in
the framework's own arrays. What each leaves out, and why it may:
- validation, conversion, chunking, snapshots: done once per call by trigrad, so they cancel out
  of a per-step time ((t(2n) − t(n)) / n, benchmarks.measure);
- the loss value, the gradient norm and the finiteness checks: train(..., record_losses=None),
  which the targets hold to these loops, does not compute them either;
- dicts, parameter trees and optimizer objects: plain lists of arrays (NumPy, JAX) or tensors (torch);
- torch's nn.Module, zero_grad and torch.optim: raw tensors, torch.autograd.grad and one fused
  in-place update (torch._foreach_add_), with no .grad to clear;
- NumPy's loss function: dL/dz is computed directly from the logits, with the factors folded ahead
  (bce's (σ(z) − y)/n as scipy's expit(z)·(1/n) − y/n, both constants computed before the loop).

Each `make_*` function does its setup (conversion, model building) and returns a runner: `run(steps)`
trains for `steps` steps and returns only when the work is done (JAX: block_until_ready), and
`params()` reads the current weights back as numpy, in trigrad's canonical layout (a test holds every
loop to trigrad's own SGD, so a loop that does less work than train cannot flatter it). For the GPT
workload each `make_*` dispatches to its `*_gpt` sibling below, whose runner has `loss()`: the current
full-batch loss, for tests (never called while timing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.special

from benchmarks.workloads import LR, AnyWorkload, GPTWorkload, Workload

Runner = Callable[[int], None]


@dataclass(frozen=True)
class MLPRunner:
    """run(steps) like every runner, plus params(): the current weights, [{"W": (in, out), "b"}, ...]."""

    run: Runner
    params: Callable[[], list[dict[str, np.ndarray]]]

    def __call__(self, steps: int) -> None:
        self.run(steps)


@dataclass(frozen=True)
class GPTRunner:
    """run(steps) like every runner, plus loss(): the full-batch loss at the current params."""

    run: Runner
    loss: Callable[[], float]

    def __call__(self, steps: int) -> None:
        self.run(steps)


def _numpy_output_grad(spec, y: np.ndarray, n: int) -> Callable[[np.ndarray], np.ndarray]:
    """dL/dz as a function of the logits z (float32), every constant computed here, once."""
    loss = spec.loss
    if loss == "bce":  # (σ(z) − y)/n = σ(z)·(1/n) − y/n: three calls (½·tanh(z/2) + ½ − y takes four)
        inv_n, y_n = np.float32(1 / n), (y / n).astype(np.float32)
        return lambda z: scipy.special.expit(z) * inv_n - y_n
    if loss == "softmax_ce":  # (softmax(z) − onehot(y))/n
        onehot_n = (np.eye(spec.n_outputs, dtype=np.float32)[y] / n).astype(np.float32)

        def softmax_ce_grad(z):
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return e * (np.float32(1 / n) / e.sum(axis=1, keepdims=True)) - onehot_n

        return softmax_ce_grad
    two_over_size, y32 = np.float32(2 / y.size), y.astype(np.float32)  # mse: 2(z − y)/(n·k)
    return lambda z: (z - y32) * two_over_size


def make_numpy(w: AnyWorkload) -> MLPRunner | GPTRunner:
    """Backprop by hand in float32: lists of arrays, the activation and dL/dz chosen before the loop."""
    if isinstance(w, GPTWorkload):
        return numpy_gpt(w)
    params, X, y = w.problem()
    Ws = [p["W"].astype(np.float32) for p in params]
    bs = [p["b"].astype(np.float32) for p in params]
    X = X.astype(np.float32)
    output_grad = _numpy_output_grad(w.spec, y, len(X))
    lr = np.float32(LR)
    tanh = w.spec.activations[0] == "tanh"  # every hidden layer has the same activation in these workloads
    assert set(w.spec.activations) == {w.spec.activations[0]} and w.spec.activations[0] in ("tanh", "relu")
    hidden = list(zip(Ws[:-1], bs[:-1]))
    W_out, b_out = Ws[-1], bs[-1]
    layers = list(reversed(range(1, len(Ws))))

    def run(steps: int) -> None:
        for _ in range(steps):
            As = [X]  # the input of every layer
            for W, b in hidden:
                Z = As[-1] @ W + b
                As.append(np.tanh(Z) if tanh else np.maximum(Z, 0))
            dZ = output_grad(As[-1] @ W_out + b_out)
            for l in layers:  # the last layer down to the second: their input's gradient is needed
                A = As[l]
                dA = dZ @ Ws[l].T
                Ws[l] -= lr * (A.T @ dZ)
                bs[l] -= lr * dZ.sum(axis=0)
                dZ = dA * (1 - A * A) if tanh else dA * (A > 0)  # f'(Z) from the activation's output
            Ws[0] -= lr * (X.T @ dZ)
            bs[0] -= lr * dZ.sum(axis=0)

    return MLPRunner(run, lambda: [{"W": W.copy(), "b": b.copy()} for W, b in zip(Ws, bs)])


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


def make_torch(w: AnyWorkload) -> MLPRunner | GPTRunner:
    """Raw tensors in torch's (out, in) layout, F.linear, the loss from torch.nn.functional,
    torch.autograd.grad (no .grad to zero), and one fused in-place update of every weight."""
    if isinstance(w, GPTWorkload):
        return torch_gpt(w)
    import torch
    import torch.nn.functional as F

    params, X, y = w.problem()
    leaves = []  # W (out, in), b of each layer, in order: what autograd differentiates
    for p in params:
        leaves += [torch.tensor(p["W"].T, dtype=torch.float32, requires_grad=True)]
        leaves += [torch.tensor(p["b"], dtype=torch.float32, requires_grad=True)]
    data = [t.detach() for t in leaves]  # the same storage, outside autograd: updated in place
    hidden, (W_out, b_out) = list(zip(leaves[:-2:2], leaves[1:-2:2])), leaves[-2:]
    act = torch.tanh if w.spec.activations[0] == "tanh" else torch.relu
    assert set(w.spec.activations) == {w.spec.activations[0]} and w.spec.activations[0] in ("tanh", "relu")
    loss_fn = {"bce": F.binary_cross_entropy_with_logits, "softmax_ce": F.cross_entropy, "mse": F.mse_loss}
    loss_fn = loss_fn[w.spec.loss]
    X_t = torch.from_numpy(X.astype(np.float32))
    y_t = torch.from_numpy(y if w.spec.loss == "softmax_ce" else y.astype(np.float32))

    def run(steps: int) -> None:
        for _ in range(steps):
            A = X_t
            for W, b in hidden:
                A = act(F.linear(A, W, b))
            grads = torch.autograd.grad(loss_fn(F.linear(A, W_out, b_out), y_t), leaves)
            torch._foreach_add_(data, grads, alpha=-LR)  # p −= lr·g, every weight in one call

    def read() -> list[dict[str, np.ndarray]]:
        return [{"W": W.numpy().T.copy(), "b": b.numpy().copy()} for W, b in zip(data[::2], data[1::2])]

    return MLPRunner(run, read)


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


def _jax_params(state) -> Callable[[], list[dict[str, np.ndarray]]]:
    return lambda: [{k: np.asarray(v) for k, v in layer.items()} for layer in state["params"]]


def make_jax(w: AnyWorkload) -> MLPRunner | GPTRunner:
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

    return MLPRunner(run, _jax_params(state))


def make_jax_scan(w: AnyWorkload) -> MLPRunner | GPTRunner:
    """All steps in one compiled call: jax.lax.scan over the step (compiled once per step count)."""
    if isinstance(w, GPTWorkload):
        return jax_gpt(w, scan=True)
    jax, params, step = _jax_parts(w)
    fused = jax.jit(lambda p, n: jax.lax.scan(step, p, None, length=n)[0], static_argnums=1)
    state = {"params": params}

    def run(steps: int) -> None:
        state["params"] = jax.block_until_ready(fused(state["params"], steps))

    return MLPRunner(run, _jax_params(state))


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
            _, grads = nt.loss_and_grads(w.spec, params, X, Y, need_loss=False)  # no loss value, like train's
            _sgd_in_place(params, grads, lr)

    def loss() -> float:
        return float(nt.softmax_ce_forward(nt.gpt_forward(w.spec, params, X)[0], Y))

    return GPTRunner(run, loss)


def torch_gpt(w: GPTWorkload, lr: float = LR) -> GPTRunner:
    """backends/torch/gpt.py GPT and its softmax_ce, torch.autograd.grad, then one fused p −= lr·g."""
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
    data = [p.detach() for p in weights]  # the same storage, outside autograd: updated in place
    X_t, Y_t = torch.from_numpy(X), torch.from_numpy(Y)

    def run(steps: int) -> None:
        for _ in range(steps):
            grads = torch.autograd.grad(tt.softmax_ce(model(X_t), Y_t), weights)
            torch._foreach_add_(data, grads, alpha=-lr)  # p −= lr·g, every weight in one call

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
