"""One NumPy training step, as a learner writes it: gradients by hand, then the optimizer's update.

backend.py runs exactly this step n at a time (with the losses recorded and blow-ups checked);
tests/backends/test_reference_step.py holds it to the same params, bit for bit. When no loss is kept,
an MLP in float32 or float64 takes the engine's fast path, plain_mlp_grads (at the end): the same
operations without mlp.py's structure, held to it bit for bit by tests/backends/test_fast_path.py.
"""

from __future__ import annotations

import numpy as np

from backends.numpy import gpt, mlp
from shared.params import Params, from_leaves, map_params, tree_leaves
from shared.spec import GPTSpec, MLPSpec


def model(spec: MLPSpec | GPTSpec):
    """The module that computes `spec`'s network: mlp.py, or gpt.py for a GPTSpec. Both have
    loss_and_grads(spec, params, X, y); their forwards are mlp_forward and gpt_forward."""
    return gpt if isinstance(spec, GPTSpec) else mlp


def forward(spec: MLPSpec | GPTSpec, params: Params, X: np.ndarray):
    """The network's logits and its cache for the backward, for either model."""
    return gpt.gpt_forward(spec, params, X) if isinstance(spec, GPTSpec) else mlp.mlp_forward(spec, params, X)


def to_half(params: Params, X: np.ndarray, half) -> tuple[Params, np.ndarray]:
    """Mixed precision's first cast: the float32 master params and the data in the half format."""
    return map_params(lambda a: a.astype(half), params), X.astype(half)


def mixed_forward(spec: MLPSpec | GPTSpec, params: Params, X: np.ndarray, half) -> np.ndarray:
    """The logits of the float32 params run in the half format, returned in float32 (a GPT: its
    linear layers in the half format, the rest in float32, gpt.py's rule)."""
    if isinstance(spec, GPTSpec):
        logits, _ = gpt.gpt_forward(spec, gpt.cast_linears(params, half), X)
    else:
        logits, _ = forward(spec, *to_half(params, X, half))
    return logits.astype(np.float32)


def mixed_loss_and_grads(spec: MLPSpec, params: Params, X, y, half, need_loss: bool = True, scale: float = 1.0):
    """Mixed precision by hand: the float32 master params and the data cast to the half format `half`,
    the forward and backward there, the loss and dL/dŷ from the half logits in float32, and every
    gradient cast back to float32 for the update. Each cast is here, where it happens. With a loss
    `scale` S (shared.precision), the backward starts from S·dL/dŷ, so small gradients stay inside the
    half format's range, and the float32 gradients are divided by S again."""
    half_params, half_X = to_half(params, X, half)
    y_hat, cache = mlp.mlp_forward(spec, half_params, half_X)  # (n, k) in the half format
    logits = y_hat.astype(np.float32)  # the loss in float32, from the half logits
    target = y if y.dtype.kind in "iu" else y.astype(np.float32)
    loss_forward, loss_backward = mlp.LOSSES[spec.loss]
    loss = loss_forward(logits, target) if need_loss else None
    dY = (loss_backward(logits, target) * scale).astype(half)  # scaled, then back to the half format for the backward
    grads = mlp.mlp_backward(spec, half_params, cache, dY)
    return loss, map_params(lambda g: g.astype(np.float32) / np.float32(scale), grads)  # float32, unscaled


def mixed_gpt_loss_and_grads(spec: GPTSpec, params: Params, X, Y, half, need_loss: bool = True, scale: float = 1.0):
    """Mixed precision for the GPT, torch.autocast's rule by hand (gpt.py's docstring): the linear
    layers' weights cast to the half format, the forward (linears and attention in the half format,
    the residual stream, embeddings and layer norms in float32), the loss in float32 from the half
    logits, the backward from S·dL/dlogits, and every gradient in float32, divided by S again."""
    half_params = gpt.cast_linears(params, half)
    logits, cache = gpt.gpt_forward(spec, half_params, X)  # (n, t, V) in the half format
    logits = logits.astype(np.float32)  # the loss in float32, from the half logits
    loss = gpt.softmax_ce_forward(logits, Y) if need_loss else None
    grads = gpt.gpt_backward(spec, half_params, cache, gpt.softmax_ce_backward(logits, Y) * np.float32(scale))
    return loss, map_params(lambda g: g.astype(np.float32) / np.float32(scale), grads)  # float32, unscaled


def accumulated(loss_and_grads, k: int):
    """Gradient accumulation: loss_and_grads over the batch in k equal micro-batches, one forward and
    backward each, the gradients summed as they come and divided by k at the end. Each micro-batch's
    loss is its own mean, so the mean of the k is the whole batch's loss and gradient (up to the order
    of the sum), with only 1/k of the activations alive at a time. k = 1: loss_and_grads itself."""
    if k == 1:
        return loss_and_grads

    def over_micro_batches(spec, params, X, y, need_loss=True):
        total_loss, total = 0.0, None
        for Xm, ym in zip(np.split(X, k), np.split(y, k)):  # (b / k, ...) each
            loss, grads = loss_and_grads(spec, params, Xm, ym, need_loss=need_loss)
            grads = tree_leaves(grads)
            total = grads if total is None else [t + g for t, g in zip(total, grads)]
            total_loss = total_loss + loss if need_loss else None
        mean_loss = None if total_loss is None else total_loss / k
        return mean_loss, from_leaves(spec, [t / k for t in total])

    return over_micro_batches


def global_norm(grads: list[np.ndarray]) -> float:
    """‖g‖ = sqrt(Σ g²) over every parameter (np.vdot(g, g) is Σ g², without a temporary array)."""
    return np.sqrt(sum(np.vdot(g, g) for g in grads))


def plain_mlp_grads(spec: MLPSpec, leaves: list[np.ndarray]):
    """The engine's fast path for an MLP in float32 or float64 whose loss nobody keeps: a function
    (X, y) -> the gradients mlp.loss_and_grads(..., need_loss=False) returns, as the flat list
    tree_leaves makes of them ([dW₀, db₀, dW₁, ...]). The same NumPy operations on the same arrays,
    so the same bits (tests/backends/test_fast_path.py); what goes is what makes mlp.py readable: a
    function per piece (linear_forward, matmul, total), the per-layer cache and the gradient dicts.
    On XOR's four points that took train (no losses) from 1.37× the bare loop's time to ~1.2×
    (docs/LEARNINGS.md). `leaves` are the params the
    optimizer updates in place ([W₀, b₀, W₁, ...]), so each call reads their current values. Half
    formats take mlp.py itself: there matmul and total accumulate in float32."""
    Ws, bs = leaves[0::2], leaves[1::2]  # (fan_in, fan_out), (fan_out,) per layer
    hidden = [(W, b, *mlp.ACTIVATIONS[a]) for W, b, a in zip(Ws, bs, spec.activations)]  # all but the output
    loss_backward = mlp.LOSSES[spec.loss][1]

    def grads(X: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        As, Zs = [X], []  # every layer's input, every hidden layer's Z
        for W, b, activation_forward, _ in hidden:
            Zs.append(As[-1] @ W + b)  # (n, fan_out)
            As.append(activation_forward(Zs[-1]))
        dZ = loss_backward(As[-1] @ Ws[-1] + bs[-1], y)  # dL/dŷ, the output layer being linear: (n, k)
        backwards = []  # db, dW from the last layer down
        for l in reversed(range(len(Ws))):
            backwards += [dZ.sum(axis=0), As[l].T @ dZ]  # dL/db, dL/dW
            if l:  # dL/dZ of the layer below, through its activation
                activation_backward = hidden[l - 1][3]
                dZ = activation_backward(dZ @ Ws[l].T, Zs[l - 1], As[l])
        return backwards[::-1]

    return grads


def train_step(spec: MLPSpec | GPTSpec, params: Params, opt, X: np.ndarray, y: np.ndarray) -> float:
    """One step: the loss and every gradient (backprop, by hand), then the optimizer updates `params`
    in place. `opt` is an optimizer made by optim.make_optimizer(..., tree_leaves(params))."""
    loss, grads = model(spec).loss_and_grads(spec, params, X, y)
    opt.step(tree_leaves(params), tree_leaves(grads))
    return loss
