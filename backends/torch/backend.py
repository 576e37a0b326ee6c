"""The PyTorch engine: the Backend that runs mlp.py / gpt.py behind the shared interface.

The border (numpy in, numpy out, each weight transposed between the canonical (in, out) and
nn.Linear's (out, in), once per call or run), the thread policy, TF32 switched off on a GPU, and the
training loop: train.py's step run n at a time, keeping the loss and gradient norm of the steps
that record them as tensors, so a GPU is never waited on inside the loop.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from backends.torch import gpt, mlp, optim, parallel, train
from shared.backend import Backend
from shared.optim import SGD
from shared.params import Params, named_leaves, unflatten_named
from shared.spec import GPTSpec, MLPSpec
from shared.validation import numpy_dtype


def to_torch(a: np.ndarray, device: str = "cpu") -> torch.Tensor:
    """numpy -> torch: on the CPU without a copy (the tensor shares the array's memory and dtype),
    on a GPU one transfer. A bfloat16 array (ml_dtypes') is read as its 16 bits and viewed as torch's
    bfloat16: the same bits, since both are the top half of a float32."""
    a = np.ascontiguousarray(a)
    t = torch.from_numpy(a.view(np.int16)).view(torch.bfloat16) if a.dtype.name == "bfloat16" else torch.from_numpy(a)
    return t if device == "cpu" else t.to(device)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """torch -> numpy (from any device), bfloat16 as ml_dtypes' bfloat16 by the same 16-bit view."""
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(numpy_dtype("bfloat16"))
    return t.numpy()


def build_model(spec: MLPSpec | GPTSpec, params: Params, dtype: torch.dtype, device: str = "cpu") -> nn.Module:
    """The module for `spec` (mlp.MLP, or gpt.GPT) holding `params`, each weight
    converted from the canonical (in, out) to torch's (out, in), then moved to `device`."""
    model = gpt.GPT(spec, dtype) if isinstance(spec, GPTSpec) else mlp.MLP(spec, dtype)
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


def grad_scaler(scaling, device: str) -> torch.amp.GradScaler:
    """torch's GradScaler with trigrad's loss-scale rule (shared.precision), from the run's scale and
    good-step count (a continued run picks them up)."""
    rule = scaling.rule
    scaler = torch.amp.GradScaler(
        device,
        init_scale=scaling.scale,
        growth_factor=rule.growth,
        backoff_factor=rule.backoff,
        growth_interval=rule.interval,
    )
    state = scaler.state_dict()
    scaler.load_state_dict(state | {"scale": scaling.scale, "_growth_tracker": scaling.good})
    return scaler


# torch.optim keeps its state per parameter tensor, under its own names; the canonical state
# (shared.continuation) keeps params-shaped buffers in the (in, out) layout.
_TORCH_NAMES = {"velocity": "momentum_buffer", "m": "exp_avg", "v": "exp_avg_sq"}


def load_optimizer_state(opt: torch.optim.Optimizer, model: nn.Module, state: dict, device: str = "cpu") -> None:
    """Put a canonical optimizer state into `opt` (built on `model`): each buffer transposed to the
    tensor's (out, in) where needed, Adam's step count as the float tensor torch.optim keeps."""
    buffers = {ours: dict(named_leaves(state[ours])) for ours in _TORCH_NAMES if ours in state}
    for name, (tensor, transposed) in model.canonical().items():
        per_tensor = {}
        for ours, arrays in buffers.items():
            array = arrays[name].T if transposed else arrays[name]  # (in, out) -> (out, in)
            per_tensor[_TORCH_NAMES[ours]] = to_torch(array, device).clone()
        if "t" in state:
            per_tensor["step"] = torch.tensor(float(state["t"]), dtype=torch.float32)
        opt.state[tensor] = per_tensor


def read_optimizer_state(spec: MLPSpec | GPTSpec, opt: torch.optim.Optimizer, model: nn.Module) -> dict:
    """The optimizer's state in the canonical layout, numpy. A momentum buffer torch has not made yet
    (no step taken) reads as zeros, which is what it starts from."""
    tensors = model.canonical()
    per_tensor = {name: opt.state.get(tensor, {}) for name, (tensor, _) in tensors.items()}
    if isinstance(opt, torch.optim.SGD):
        buffers = ["velocity"] if opt.param_groups[0]["momentum"] else []
    else:  # Adam, AdamW
        buffers = ["m", "v"]
    state = {}
    for ours in buffers:

        def get(name, ours=ours):
            tensor, transposed = tensors[name]
            value = per_tensor[name].get(_TORCH_NAMES[ours])
            value = torch.zeros_like(tensor) if value is None else value.detach()
            return to_numpy(value.T if transposed else value).copy()  # (out, in) -> (in, out)

        state[ours] = unflatten_named(spec, get)
    if buffers == ["m", "v"]:
        steps = [int(s["step"]) for s in per_tensor.values() if "step" in s]
        state["t"] = steps[0] if steps else 0
    return state


def _to_numpy(tensor: torch.Tensor, transposed: bool, grad: bool) -> np.ndarray:
    t = tensor.grad if grad else tensor.detach()
    return to_numpy(t.T if transposed else t).copy()


class TorchBackend(Backend):
    """Autograd: build the module, compute the loss, call loss.backward(), read .grad."""

    name = "torch"
    devices = ("cpu", "cuda")
    single_thread_below = 1e7
    """Measured on 2 cores (float32 SGD, steps/s with 2 intra-op threads ÷ 1): xor 0.81–0.99, small
    (4.5e5 FLOPs/step) 1.00, medium (1.6e8) 0.98–1.10, large (8.6e9) 1.4–1.7; on a busy machine two
    threads spinning at a barrier made XOR 8× slower. One thread below ~1e7 FLOPs per step."""

    def __init__(
        self, dtype: str = "float64", device: str = "cpu", threads: int | None = None, precision: str = "pure"
    ) -> None:
        super().__init__(dtype, device, threads, precision)
        self.torch_dtype = getattr(torch, self.param_dtype)  # the module's params: float32 in mixed precision

    all_reduces = ("ddp", "all_reduce")

    @contextmanager
    def _replica_group(self, workers):
        if self.device == "cuda" and torch.cuda.device_count() < workers:
            raise ValueError(
                f"workers={workers} on cuda needs one GPU per worker; torch sees {torch.cuda.device_count()}"
            )
        with tempfile.TemporaryDirectory(prefix="trigrad-torch-") as folder:  # the rendezvous file, removed after
            yield [str(Path(folder) / "rendezvous")] * workers

    def _join(self, replica, comm):
        super()._join(replica, comm)
        parallel.join(replica.rank, replica.workers, comm, self.device)

    def _leave(self):
        super()._leave()
        parallel.leave()

    def _autocast(self):
        """Mixed precision, torch's way: torch.autocast runs the linear layers in the half format (and
        what follows them on their half outputs) while the params stay float32; outside it, nothing."""
        if self.precision == "mixed":
            return torch.autocast(device_type=self.device, dtype=getattr(torch, self.dtype))
        return contextlib.nullcontext()

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
        with torch.no_grad(), self._autocast():
            y_hat = model(to_torch(X, self.device))  # (n, sizes[-1]), or (n, t, V) for a GPT
        return to_numpy(y_hat.to(self.torch_dtype))  # mixed: the half logits in float32

    def _loss_and_grads(self, spec, params, X, y):
        model = build_model(spec, params, self.torch_dtype, self.device)
        with self._autocast():
            y_hat = model(to_torch(X, self.device))  # (n, k), or (n, t, V)
        loss = train.loss_fn(spec)(y_hat.to(self.torch_dtype), to_torch(y, self.device))  # mixed: in float32
        loss.backward()  # autograd fills every parameter's .grad
        return loss.item(), read_grads(spec, model)

    def _attention_maps(self, spec, params, X):
        model = build_model(spec, params, self.torch_dtype, self.device)
        # mixed: the half-format maps, returned in float32 (on a GPU autocast runs softmax in float32,
        # so there P is float32's softmax of half-format scores; on the CPU it stays in the half format)
        with torch.no_grad(), self._autocast():
            maps = gpt.attention_maps(model, to_torch(X, self.device))
        return [to_numpy(P.to(self.torch_dtype)) for P in maps]  # (n, h, t, t) each

    def _train_begin(self, spec, params, X, y, optimizer, opt_state, scaling=None, accumulate=1):
        model = build_model(spec, params, self.torch_dtype, self.device)
        opt = optim.make_optimizer(optimizer, model)
        if opt_state is not None:
            load_optimizer_state(opt, model, opt_state, self.device)
        return dict(
            scaling=scaling,  # the run's ScaleTracker (bookkeeping), or None
            scaler=None if scaling is None else grad_scaler(scaling, self.device),  # torch's own loss scaling
            spec=spec,
            model=model,
            forward=model if self._replica is None else parallel.wrap(model, self._replica.engine),  # DDP or the module
            average=self._replica is not None and self._replica.engine == "all_reduce",  # the all-reduce by hand
            weights=list(model.parameters()),  # listed once: model.parameters() walks the module tree
            opt=opt,
            plain_sgd=self._plain_sgd(optimizer, scaling, accumulate),  # the fast path's lr, or None
            loss_fn=train.loss_fn(spec),
            accumulate=accumulate,  # micro-batches per step (train.accumulate_gradients)
            X=to_torch(X, self.device),  # placed once for the whole run
            y=to_torch(y, self.device),
        )

    def _plain_sgd(self, optimizer, scaling, accumulate) -> float | None:
        """The learning rate where train.plain_sgd_step may run the step: SGD without momentum or weight
        decay, in one process, one batch at a time, in the pure format; else None (the teaching step)."""
        if not self.fast_path or not isinstance(optimizer, SGD) or optimizer.momentum or optimizer.weight_decay:
            return None
        if scaling is not None or accumulate > 1 or self._replica is not None or self.precision == "mixed":
            return None
        return optimizer.lr

    def _train_steps(self, state, n, batches, record):
        """train.train_step n times, the loss and gradient norm of the kept steps held as tensors between
        backward and step: no .item() inside the loop (on a GPU each would wait for the device), one
        transfer per chunk. A blow-up is found by Backend.train's check of the chunk, which replays it
        step by step; one loop for every device. Plain SGD takes the fast path (_plain_sgd_steps)."""
        if state["plain_sgd"] is not None:
            return self._plain_sgd_steps(state, n, batches, record)
        forward, weights, opt, loss_fn, scaler = (state[k] for k in ("forward", "weights", "opt", "loss_fn", "scaler"))
        X, y = state["X"], state["y"]
        batches = None if batches is None else to_torch(batches, self.device)  # once per chunk of steps
        losses, norms = [], []
        for i in range(n):
            Xb, yb = (X, y) if batches is None else (X[batches[i]], y[batches[i]])  # (b, d), (b, ...)
            opt.zero_grad()
            if state["accumulate"] > 1:  # k micro-batches, their gradients summed in .grad
                k = state["accumulate"]
                loss = train.accumulate_gradients(forward, loss_fn, Xb, yb, k, self._autocast, self.torch_dtype)
            else:
                with self._autocast():  # (nothing, unless mixed precision)
                    y_hat = forward(Xb)  # the module (or DDP around it)
                loss = loss_fn(y_hat.to(self.torch_dtype), yb)  # mixed: the loss in float32
            if scaler is None:
                if state["accumulate"] == 1:
                    loss.backward()  # (DDP: the gradients averaged over the workers as it runs)
                if state["average"]:
                    parallel.average_gradients(weights)
            else:  # GradScaler: backward of S·loss, the gradients divided by S again before the norm
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
            if i in record:  # the norm only where it is kept
                losses.append(loss.detach() if self._replica is None else parallel.mean_over_workers(loss))
                norms.append(torch.nn.utils.get_total_norm([w.grad for w in weights]))
            if scaler is None:
                opt.step()
            else:  # step() skips a step whose gradients are not finite; update() applies the rule
                before = scaler.get_scale()
                scaler.step(opt)
                scaler.update()
                applied = scaler.get_scale() >= before  # the scale only shrinks after a skipped step
                state["scaling"].after_step(applied)
                if i in record and not applied:
                    norms[-1] = torch.zeros_like(norms[-1])  # nothing was applied: recorded as 0
        if not losses:
            return np.zeros(0, self.np_dtype), np.zeros(0, self.np_dtype)
        return to_numpy(torch.stack(losses)), to_numpy(torch.stack(norms))

    def _plain_sgd_steps(self, state, n, batches, record):
        """_train_steps on the fast path (train.plain_sgd_step): the same steps, recorded the same way."""
        model, weights, loss_fn, lr = state["model"], state["weights"], state["loss_fn"], state["plain_sgd"]
        data = [w.detach() for w in weights]  # the same storage, outside autograd
        X, y = state["X"], state["y"]
        batches = None if batches is None else to_torch(batches, self.device)
        losses, norms = [], []
        for i in range(n):
            Xb, yb = (X, y) if batches is None else (X[batches[i]], y[batches[i]])  # (b, d), (b, ...)
            loss, grads = train.plain_sgd_step(model, loss_fn, weights, data, lr, Xb, yb)
            if i in record:
                losses.append(loss.detach())
                norms.append(torch.nn.utils.get_total_norm(grads))
        if not losses:
            return np.zeros(0, self.np_dtype), np.zeros(0, self.np_dtype)
        return to_numpy(torch.stack(losses)), to_numpy(torch.stack(norms))

    def _train_params(self, state):
        return read_params(state["spec"], state["model"])

    def _train_optimizer_state(self, state):
        return read_optimizer_state(state["spec"], state["opt"], state["model"])

    def _train_save(self, state):
        scaler = state["scaler"]
        return copy.deepcopy(
            (
                state["model"].state_dict(),
                state["opt"].state_dict(),
                None if scaler is None else scaler.state_dict(),
                state["scaling"],
            )
        )

    def _train_restore(self, state, saved):
        model_state, opt_state, scaler_state, scaling = saved
        state["model"].load_state_dict(model_state)  # copies into the same tensors the optimizer holds
        state["opt"].load_state_dict(opt_state)
        if scaler_state is not None:
            state["scaler"].load_state_dict(scaler_state)
        state["scaling"] = scaling
