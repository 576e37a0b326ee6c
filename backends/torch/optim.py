"""PyTorch optimizers: torch.optim, configured from a shared.optim description.

torch's conventions are trigrad's: SGD momentum is v = μv + g, p −= lr·v; Adam adds eps after
√v̂; AdamW decays the weights decoupled from the gradient. Compare backends/numpy/optim.py, where
the same rules are written out.

In a pure half format (SGD only) torch.optim updates the bfloat16/float16 params in place with
`p.add_(v, alpha=-lr)`: lr is rounded to the format, but p − lr·v is computed in float32 and rounded
once (torch's "opmath" for reduced-precision tensors), where NumPy and JAX round lr·v first. The
momentum buffer's `v.mul_(μ)` keeps μ = 0.9 exact (measured: NumPy and JAX use 0.8984375 in
bfloat16) and rounds the product once. tests/backends/test_half_precision.py holds each framework to
its update rule on one step.
"""

from __future__ import annotations

import torch
from torch import nn

from shared.optim import SGD, AdamW, Optimizer


def make_optimizer(opt: Optimizer, model: nn.Module) -> torch.optim.Optimizer:
    """The torch.optim optimizer that a shared.optim description names (same conventions)."""
    if isinstance(opt, SGD):
        return torch.optim.SGD(
            model.parameters(), lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov, weight_decay=opt.weight_decay
        )
    cls = torch.optim.AdamW if isinstance(opt, AdamW) else torch.optim.Adam
    return cls(model.parameters(), lr=opt.lr, betas=(opt.beta1, opt.beta2), eps=opt.eps, weight_decay=opt.weight_decay)
