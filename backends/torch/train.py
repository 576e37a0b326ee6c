"""One PyTorch training step, as every torch user writes it.

backend.py runs exactly this step n at a time (recording the kept losses and norms);
tests/backends/test_reference_step.py holds it to the same params, bit for bit.
"""

from __future__ import annotations

import torch
from torch import nn

from backends.torch import gpt, mlp
from shared.spec import GPTSpec, MLPSpec


def loss_fn(spec: MLPSpec | GPTSpec):
    """The loss of an MLPSpec by name; a GPT's is next-token cross-entropy over every position."""
    return gpt.softmax_ce if isinstance(spec, GPTSpec) else mlp.LOSSES[spec.loss]


def train_step(model: nn.Module, opt: torch.optim.Optimizer, loss, X: torch.Tensor, y: torch.Tensor):
    """zero_grad, forward, loss, backward (autograd fills every .grad), step. Returns the loss tensor."""
    opt.zero_grad()
    value = loss(model(X), y)
    value.backward()
    opt.step()
    return value
