"""PyTorch MLP: the network as torch users write it.

An `nn.Module` built from the spec and the losses from `torch.nn.functional`: autograd records the
forward pass and runs the chain rule that backends/numpy/mlp.py writes by hand. Then read gpt.py
(the tiny GPT), optim.py (torch.optim) and train.py (one step: zero_grad, forward, loss, backward,
step). backend.py is the engine: the border conversions, threads, TF32, the loop run n at a time.

The one thing to watch at the border: `nn.Linear` stores its weight as (out, in) and computes
X @ weight.T, while trigrad's canonical layout is W: (in, out). So W is transposed on the way in
and the gradient on the way out — in backend.py, and nowhere else.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shared.spec import MLPSpec

ACTIVATIONS = {
    "identity": nn.Identity,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "gelu": lambda: nn.GELU(approximate="none"),  # exact erf form; "tanh" would be the approximation
}

LOSSES = {
    "mse": F.mse_loss,  # mean over all elements
    "bce": F.binary_cross_entropy_with_logits,  # stable on logits; mean over the batch
    "softmax_ce": F.cross_entropy,  # log-softmax + NLL on integer labels; mean over the batch
}


class MLP(nn.Module):
    """Linear → activation → … → Linear (logits), from an MLPSpec."""

    def __init__(self, spec: MLPSpec, dtype: torch.dtype) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for l, (fan_in, fan_out) in enumerate(spec.layer_shapes):
            layers.append(nn.Linear(fan_in, fan_out, dtype=dtype))
            if l < spec.n_layers - 1:
                layers.append(ACTIVATIONS[spec.activations[l]]())
        self.net = nn.Sequential(*layers)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.net(X)  # (n, sizes[-1]) logits

    def linears(self) -> list[nn.Linear]:
        return [m for m in self.net if isinstance(m, nn.Linear)]

    def canonical(self) -> dict[str, tuple[torch.Tensor, bool]]:
        """Canonical name -> (this module's tensor, whether it is stored transposed): each Linear's
        weight is (out, in), the canonical W is (in, out)."""
        out = {}
        for l, linear in enumerate(self.linears()):
            out[f"layer{l}.W"], out[f"layer{l}.b"] = (linear.weight, True), (linear.bias, False)
        return out
