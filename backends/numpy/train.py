"""One NumPy training step, as a learner writes it: gradients by hand, then the optimizer's update.

backend.py runs exactly this step n at a time (with the losses recorded and blow-ups checked);
tests/backends/test_reference_step.py holds it to the same params, bit for bit.
"""

from __future__ import annotations

import numpy as np

from backends.numpy import gpt, mlp
from shared.params import Params, tree_leaves
from shared.spec import GPTSpec, MLPSpec


def model(spec: MLPSpec | GPTSpec):
    """The module that computes `spec`'s network: mlp.py, or gpt.py for a GPTSpec. Both have
    loss_and_grads(spec, params, X, y); their forwards are mlp_forward and gpt_forward."""
    return gpt if isinstance(spec, GPTSpec) else mlp


def forward(spec: MLPSpec | GPTSpec, params: Params, X: np.ndarray):
    """The network's logits and its cache for the backward, for either model."""
    return gpt.gpt_forward(spec, params, X) if isinstance(spec, GPTSpec) else mlp.mlp_forward(spec, params, X)


def global_norm(grads: list[np.ndarray]) -> float:
    """‖g‖ = sqrt(Σ g²) over every parameter (np.vdot(g, g) is Σ g², without a temporary array)."""
    return np.sqrt(sum(np.vdot(g, g) for g in grads))


def train_step(spec: MLPSpec | GPTSpec, params: Params, opt, X: np.ndarray, y: np.ndarray) -> float:
    """One step: the loss and every gradient (backprop, by hand), then the optimizer updates `params`
    in place. `opt` is an optimizer made by optim.make_optimizer(..., tree_leaves(params))."""
    loss, grads = model(spec).loss_and_grads(spec, params, X, y)
    opt.step(tree_leaves(params), tree_leaves(grads))
    return loss
