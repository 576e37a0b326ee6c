"""PyTorch backend: the MLP as torch users write it.

An `nn.Module` built from the spec, the loss from `torch.nn.functional`, and `loss.backward()`:
autograd records the forward pass and runs the chain rule that numpy_backend.py writes by hand.
Training is the loop every torch user knows: zero_grad, forward, loss, backward, optimizer.step(),
with `torch.optim.SGD` / `Adam` / `AdamW`.

The one thing to watch at the border: `nn.Linear` stores its weight as (out, in) and computes
X @ weight.T, while trigrad's canonical layout is W: (in, out). So W is transposed on the way in
and the gradient on the way out — here, and nowhere else.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backends import torch_transformer
from shared.backend import Backend
from shared.optim import SGD, AdamW, Optimizer
from shared.params import Params, named_leaves, unflatten_named
from shared.spec import GPTSpec, MLPSpec

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


def to_torch(a: np.ndarray, device: str = "cpu") -> torch.Tensor:
    """numpy -> torch: on the CPU without a copy (the tensor shares the array's memory and dtype),
    on a GPU one transfer."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t if device == "cpu" else t.to(device)


def build_model(spec: MLPSpec | GPTSpec, params: Params, dtype: torch.dtype, device: str = "cpu") -> nn.Module:
    """The module for `spec` (an MLP, or torch_transformer's GPT) holding `params`, each weight
    converted from the canonical (in, out) to torch's (out, in), then moved to `device`."""
    model = torch_transformer.GPT(spec, dtype) if isinstance(spec, GPTSpec) else MLP(spec, dtype)
    with torch.no_grad():
        tensors = model.canonical()
        for name, array in named_leaves(params):
            tensor, transposed = tensors[name]
            tensor.copy_(to_torch(array.T if transposed else array))  # (in, out) -> (out, in)
    return model.to(device)


def read_params(spec: MLPSpec | GPTSpec, model: nn.Module) -> Params:
    """The model's weights in the canonical (in, out) layout, as numpy."""
    tensors = model.canonical()
    return unflatten_named(spec, lambda name: _to_numpy(*tensors[name], grad=False))


def read_grads(spec: MLPSpec | GPTSpec, model: nn.Module) -> Params:
    """The .grad of every weight in the canonical (in, out) layout, as numpy."""
    tensors = model.canonical()
    return unflatten_named(spec, lambda name: _to_numpy(*tensors[name], grad=True))


def _to_numpy(tensor: torch.Tensor, transposed: bool, grad: bool) -> np.ndarray:
    t = tensor.grad if grad else tensor.detach()
    return (t.T if transposed else t).cpu().numpy().copy()  # .cpu() is a no-op on the CPU


def make_optimizer(opt: Optimizer, model: nn.Module) -> torch.optim.Optimizer:
    """The torch.optim optimizer that a shared.optim description names (same conventions)."""
    if isinstance(opt, SGD):
        return torch.optim.SGD(
            model.parameters(), lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov, weight_decay=opt.weight_decay
        )
    cls = torch.optim.AdamW if isinstance(opt, AdamW) else torch.optim.Adam
    return cls(model.parameters(), lr=opt.lr, betas=(opt.beta1, opt.beta2), eps=opt.eps, weight_decay=opt.weight_decay)


def _loss_fn(spec):
    """The loss of an MLPSpec by name; a GPT's is next-token cross-entropy over every position."""
    return torch_transformer.loss if isinstance(spec, GPTSpec) else LOSSES[spec.loss]


class TorchBackend(Backend):
    """Autograd: build the module, compute the loss, call loss.backward(), read .grad."""

    name = "torch"
    devices = ("cpu", "cuda")
    single_thread_below = 1e7
    """Measured on 2 cores (float32 SGD, steps/s with 2 intra-op threads ÷ 1): xor 0.81–0.99, small
    (4.5e5 FLOPs/step) 1.00, medium (1.6e8) 0.98–1.10, large (8.6e9) 1.4–1.7; on a busy machine two
    threads spinning at a barrier made XOR 8× slower. One thread below ~1e7 FLOPs per step."""

    def __init__(self, dtype: str = "float64", device: str = "cpu", threads: int | None = None) -> None:
        super().__init__(dtype, device, threads)
        self.torch_dtype = getattr(torch, self.dtype)

    @contextmanager
    def _limit_threads(self, n):
        """torch.set_num_threads(n) for the call, the previous count restored after."""
        before = torch.get_num_threads()
        if n is not None and n != before:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    def _device_present(self) -> bool:
        return torch.cuda.is_available()

    def _device_missing_reason(self) -> str:
        build = " — this torch is a CPU-only build" if torch.version.cuda is None else ""
        return f"torch.cuda.is_available() is False{build}"

    @contextmanager
    def _scope(self):
        """On a GPU, TF32 is switched off for the call and restored after: float32 must mean float32
        (TF32 matmuls keep 10 mantissa bits, and would fail the float32 parity tolerances)."""
        if self.device == "cpu":
            yield
            return
        saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved

    def _forward(self, spec, params, X):
        model = build_model(spec, params, self.torch_dtype, self.device)
        with torch.no_grad():
            return model(to_torch(X, self.device)).cpu().numpy()  # (n, sizes[-1]), or (n, t, V) for a GPT

    def _loss_and_grads(self, spec, params, X, y):
        model = build_model(spec, params, self.torch_dtype, self.device)
        y_hat = model(to_torch(X, self.device))  # (n, k), or (n, t, V)
        loss = _loss_fn(spec)(y_hat, to_torch(y, self.device))
        loss.backward()  # autograd fills every parameter's .grad
        return loss.item(), read_grads(spec, model)

    def _train_begin(self, spec, params, X, y, optimizer):
        model = build_model(spec, params, self.torch_dtype, self.device)
        return dict(
            spec=spec,
            model=model,
            weights=list(model.parameters()),  # listed once: model.parameters() walks the module tree
            opt=make_optimizer(optimizer, model),
            loss_fn=_loss_fn(spec),
            X=to_torch(X, self.device),  # placed once for the whole run
            y=to_torch(y, self.device),
        )

    def _train_steps(self, state, n, batches, record):
        model, weights, opt, loss_fn = (state[k] for k in ("model", "weights", "opt", "loss_fn"))
        X, y = state["X"], state["y"]
        batches = None if batches is None else to_torch(batches, self.device)  # once per chunk of steps
        if self.device != "cpu":
            return self._gpu_steps(state, n, batches, record)
        losses = np.zeros(len(record), self.np_dtype)
        norms = np.zeros(len(record), self.np_dtype)
        kept = 0
        for i in range(n):
            Xb, yb = (X, y) if batches is None else (X[batches[i]], y[batches[i]])  # (b, d), (b, ...)
            opt.zero_grad()
            loss = loss_fn(model(Xb), yb)
            loss.backward()
            if i in record:  # the norm and the two .item() only where they are kept
                norm = torch.nn.utils.get_total_norm([w.grad for w in weights])
                losses[kept], norms[kept] = loss.item(), norm.item()  # on the CPU, .item() costs no sync
                kept += 1
                if not (np.isfinite(losses[kept - 1]) and np.isfinite(norms[kept - 1])):
                    return losses[:kept], norms[:kept]  # diverged: Backend.train finds out why
            opt.step()
        return losses, norms

    def _gpu_steps(self, state, n, batches, record):
        """The same loop on a GPU, without a .item() per step (each would wait for the GPU): the losses
        and norms stay on the device and come back once, at the end of the chunk. A blow-up is then
        found by Backend.train's check of the chunk, which replays it step by step."""
        model, weights, opt, loss_fn = (state[k] for k in ("model", "weights", "opt", "loss_fn"))
        X, y = state["X"], state["y"]
        losses = torch.zeros(len(record), dtype=self.torch_dtype, device=self.device)
        norms = torch.zeros(len(record), dtype=self.torch_dtype, device=self.device)
        kept = 0
        for i in range(n):
            Xb, yb = (X, y) if batches is None else (X[batches[i]], y[batches[i]])
            opt.zero_grad()
            loss = loss_fn(model(Xb), yb)
            loss.backward()
            if i in record:
                losses[kept], norms[kept] = loss.detach(), torch.nn.utils.get_total_norm([w.grad for w in weights])
                kept += 1
            opt.step()
        return losses.cpu().numpy(), norms.cpu().numpy()

    def _train_params(self, state):
        return read_params(state["spec"], state["model"])

    def _train_save(self, state):
        return copy.deepcopy((state["model"].state_dict(), state["opt"].state_dict()))

    def _train_restore(self, state, saved):
        model_state, opt_state = saved
        state["model"].load_state_dict(model_state)  # copies into the same tensors the optimizer holds
        state["opt"].load_state_dict(opt_state)
