"""One PyTorch training step, as every torch user writes it.

backend.py runs exactly this step n at a time (recording the kept losses and norms);
tests/backends/test_reference_step.py holds it to the same params, bit for bit.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from backends.torch import gpt, mlp
from shared.spec import GPTSpec, MLPSpec


def loss_fn(spec: MLPSpec | GPTSpec):
    """The loss of an MLPSpec by name; a GPT's is next-token cross-entropy over every position."""
    return gpt.softmax_ce if isinstance(spec, GPTSpec) else mlp.LOSSES[spec.loss]


def accumulate_gradients(forward, loss_fn, X: torch.Tensor, y: torch.Tensor, k: int, autocast, dtype):
    """Gradient accumulation, torch's idiom: k micro-batches, one backward each, and .grad adds them
    up (backward accumulates by design, which is why a step starts with zero_grad). Each micro-batch's
    mean loss is divided by k first, so the sum is the whole batch's mean. Under DDP, no_sync() skips
    the all-reduce on every backward but the last: one all-reduce a step, of the accumulated gradient.
    Returns the batch's loss (detached)."""
    total = torch.zeros((), dtype=dtype, device=X.device)
    for j, (Xm, ym) in enumerate(zip(X.chunk(k), y.chunk(k))):  # (b / k, ...) each
        last = j == k - 1
        with forward.no_sync() if isinstance(forward, DistributedDataParallel) and not last else nullcontext():
            with autocast():  # (nothing, unless mixed precision)
                y_hat = forward(Xm)
            loss = loss_fn(y_hat.to(dtype), ym) / k
            loss.backward()  # adds this micro-batch's share into every .grad
        total += loss.detach()
    return total


def train_step(model: nn.Module, opt: torch.optim.Optimizer, loss, X: torch.Tensor, y: torch.Tensor):
    """zero_grad, forward, loss, backward (autograd fills every .grad), step. Returns the loss tensor."""
    opt.zero_grad()
    value = loss(model(X), y)
    value.backward()
    opt.step()
    return value


def plain_sgd_step(model: nn.Module, loss, weights: list[torch.Tensor], data: list[torch.Tensor], lr: float, X, y):
    """The engine's fast path for plain SGD (no momentum, no weight decay): train_step's step without
    torch.optim. torch.autograd.grad returns the gradients backward() would leave in .grad (so there is
    nothing to zero), and torch._foreach_add_ applies p ← p − lr·g to every weight in one call on
    `data`, the weights' own storage detached from autograd: the update torch.optim.SGD makes with
    param.add_(grad, alpha=−lr), bit for bit (tests/backends/test_fast_path.py). On a network as small
    as XOR's, torch.optim's Python is most of a step. Returns the loss and the gradients."""
    value = loss(model(X), y)
    grads = torch.autograd.grad(value, weights)
    torch._foreach_add_(data, grads, alpha=-lr)
    return value, grads
