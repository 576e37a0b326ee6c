"""step (the MLP): one training step's every quantity in NumPy, torch and JAX, layer by layer.

NumPy's numbers are the ones its forward cached and its backward computed (backends/numpy/mlp.py);
torch's come from the real module with `retain_grad()` on every intermediate; JAX's from `jax.vjp` of
each layer in turn. `collect` returns them as Quantity rows, which comparisons/backprop/step.py prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backends import get_backend
from backends.numpy import mlp as nb
from backends.numpy import optim as numpy_optim
from comparisons.core.problem import Problem
from shared.params import Params, tree_leaves
from shared.spec import MLPSpec


@dataclass
class Quantity:
    """One named array of the step, as each backend computed it."""

    section: str  # forward, backward, update
    layer: str  # "layer 0", "loss", ...
    name: str  # Z, dL/dW, ...
    formula: str  # "X·W + b"
    values: dict[str, np.ndarray] = field(default_factory=dict)  # backend -> array


# ---- NumPy: the cache of its forward, and its backward one function at a time ----


def numpy_step(spec: MLPSpec, params: Params, X, y, optimizer) -> tuple[float, list[dict], np.ndarray]:
    """Per layer {A_in, W, b, Z, A, dA, dZ, dW, db, dX, W_new, b_new}, the loss, and dL/dŷ (optimizer
    None: the forward and backward only, no W_new and b_new)."""
    loss_forward, loss_backward = nb.LOSSES[spec.loss]
    y_hat, cache = nb.mlp_forward(spec, params, X)  # cache[l] = (A_in, Z, A)
    loss = float(loss_forward(y_hat, y))
    layers = [dict(A_in=A_in, W=p["W"], b=p["b"], Z=Z, A=A) for (A_in, Z, A), p in zip(cache, params)]
    dY = loss_backward(y_hat, y)  # (n, k) dL/dŷ
    dA = dY
    for l in reversed(range(spec.n_layers)):
        layer = layers[l]
        layer["dA"] = dA
        if l < spec.n_layers - 1:
            _, activation_backward = nb.ACTIVATIONS[spec.activations[l]]
            layer["dZ"] = activation_backward(dA, layer["Z"], layer["A"])
        else:
            layer["dZ"] = dA  # the output layer is linear
        layer["dX"], layer["dW"], layer["db"] = nb.linear_backward(layer["dZ"], layer["A_in"], layer["W"])
        dA = layer["dX"]
    if optimizer is None:
        return loss, layers, dY
    new = [{"W": p["W"].copy(), "b": p["b"].copy()} for p in params]
    update = numpy_optim.make_optimizer(optimizer, tree_leaves(new))
    update.step(tree_leaves(new), [g for layer in layers for g in (layer["dW"], layer["db"])])
    for layer, p in zip(layers, new):
        layer["W_new"], layer["b_new"] = p["W"], p["b"]
    return loss, layers, dY


# ---- torch: the real module, every intermediate kept with retain_grad() ----


def torch_step(spec: MLPSpec, params: Params, X, y, optimizer, dtype: str) -> tuple[float, list[dict]]:
    import torch  # noqa: PLC0415 (torch is optional)

    from backends.torch import backend as tb  # noqa: PLC0415

    model = tb.build_model(spec, params, getattr(torch, dtype))
    outputs = []  # every module's output, in order: Linear, activation, Linear, ...
    hooks = [m.register_forward_hook(lambda m, i, o: outputs.append(o)) for m in model.net]
    X_t = tb.to_torch(X).clone().requires_grad_(True)
    y_hat = model(X_t)
    for h in hooks:
        h.remove()
    for o in outputs:
        o.retain_grad()  # non-leaf tensors drop their .grad unless asked to keep it
    loss = tb.mlp.LOSSES[spec.loss](y_hat, tb.to_torch(y))
    loss.backward()
    linears = model.linears()
    layers, i, A_in = [], 0, X_t
    for l, linear in enumerate(linears):
        Z = outputs[i]
        A = outputs[i + 1] if l < spec.n_layers - 1 else Z
        i += 2
        numpy = tb.to_numpy  # (bfloat16 too, as ml_dtypes' bfloat16)
        layers.append(
            dict(
                A_in=numpy(A_in),
                W=numpy(linear.weight.T),
                b=numpy(linear.bias),
                Z=numpy(Z),
                A=numpy(A),
                dA=numpy(A.grad),
                dZ=numpy(Z.grad),
                dW=numpy(linear.weight.grad.T),
                db=numpy(linear.bias.grad),
                dX=numpy(A_in.grad),
            )
        )
        A_in = A
    if optimizer is None:  # the forward and backward only
        return float(loss.item()), layers
    new = get_backend("torch", dtype).train(spec, params, X, y, optimizer, steps=1).params
    for layer, p in zip(layers, new):
        layer["W_new"], layer["b_new"] = p["W"], p["b"]
    return float(loss.item()), layers


# ---- JAX: jax.vjp of the loss and of each layer, from the output back ----


def jax_step(spec: MLPSpec, params: Params, X, y, optimizer, dtype: str) -> tuple[float, list[dict]]:
    import jax  # noqa: PLC0415 (jax is optional)
    import jax.numpy as jnp  # noqa: PLC0415

    from backends.jax import mlp as jb  # noqa: PLC0415

    with jax.enable_x64(True):
        cast = lambda a: jnp.asarray(np.asarray(a, dtype))  # noqa: E731
        layers, A = [], cast(X)
        for l, p in enumerate(params):
            W, b = cast(p["W"]), cast(p["b"])
            Z, linear_vjp = jax.vjp(lambda A_in, W, b: jnp.matmul(A_in, W, precision="highest") + b, A, W, b)
            if l < spec.n_layers - 1:
                A_out, activation_vjp = jax.vjp(jb.ACTIVATIONS[spec.activations[l]], Z)
            else:
                A_out, activation_vjp = Z, lambda dA: (dA,)
            layers.append(dict(A_in=A, W=W, b=b, Z=Z, A=A_out, vjps=(linear_vjp, activation_vjp)))
            A = A_out
        loss, loss_vjp = jax.vjp(lambda z: jb.LOSSES[spec.loss](z, jnp.asarray(y)), A)
        (dA,) = loss_vjp(jnp.ones_like(loss))  # dL/dŷ
        for layer in reversed(layers):
            linear_vjp, activation_vjp = layer.pop("vjps")
            layer["dA"] = dA
            (layer["dZ"],) = activation_vjp(dA)
            layer["dX"], layer["dW"], layer["db"] = linear_vjp(layer["dZ"])
            dA = layer["dX"]
        layers = [{k: np.asarray(v) for k, v in layer.items()} for layer in layers]
        loss = float(loss)
    if optimizer is None:  # the forward and backward only
        return loss, layers
    new = get_backend("jax", dtype).train(spec, params, X, y, optimizer, steps=1).params
    for layer, p in zip(layers, new):
        layer["W_new"], layer["b_new"] = p["W"], p["b"]
    return loss, layers


# ---- the step, as a list of quantities ----


def activation_formula(name: str) -> tuple[str, str]:
    return {
        "identity": ("Z", "1"),
        "tanh": ("tanh(Z)", "1 − A²"),
        "sigmoid": ("σ(Z)", "A(1 − A)"),
        "relu": ("max(Z, 0)", "[Z > 0]"),
        "gelu": ("Z·Φ(Z)", "Φ(Z) + Z·φ(Z)"),
    }[name]


LOSS_GRADIENT = {"mse": "2(ŷ − y)/(n·k)", "bce": "(σ(ŷ) − y)/n", "softmax_ce": "(softmax(ŷ) − onehot(y))/n"}


def collect(problem: Problem, X, y, backends: list[str], dtype: str) -> tuple[list[Quantity], dict[str, float]]:
    spec, params, opt = problem.spec, problem.params, problem.optimizer
    runs, losses = {}, {}
    cast = [{k: np.asarray(v, dtype) for k, v in layer.items()} for layer in params]
    Xd = np.asarray(X, dtype)
    yd = y if spec.loss == "softmax_ce" else np.asarray(y, dtype)
    losses["numpy"], runs["numpy"], _ = numpy_step(spec, cast, Xd, yd, opt)
    for name in backends:
        if name != "numpy":
            step = torch_step if name == "torch" else jax_step
            losses[name], runs[name] = step(spec, params, Xd, yd, opt, dtype)
    n_layers = spec.n_layers
    quantities = []

    def add(section, layer, name, formula, key, l):
        q = Quantity(section, layer, name, formula)
        for backend, layers in runs.items():
            q.values[backend] = np.asarray(layers[l][key])
        quantities.append(q)

    for l in range(n_layers):
        where = f"layer {l}" + (" (output: logits)" if l == n_layers - 1 else "")
        inp = "X" if l == 0 else "A"
        if l == 0:  # a later layer's input is the A printed just above
            add("forward", where, "X", "the input", "A_in", l)
        add("forward", where, "W", "weights (in, out)", "W", l)
        add("forward", where, "b", "bias", "b", l)
        add("forward", where, "Z", f"{inp}·W + b", "Z", l)
        if l < n_layers - 1:
            add("forward", where, "A", f"f(Z) = {activation_formula(spec.activations[l])[0]}", "A", l)
    for l in reversed(range(n_layers)):
        where = f"layer {l}"
        inp = "X" if l == 0 else "A"
        if l == n_layers - 1:
            add("backward", where, "dL/dŷ", f"{spec.loss}′ = {LOSS_GRADIENT[spec.loss]}", "dA", l)
            add("backward", where, "dL/dZ", "dL/dŷ (the output layer is linear)", "dZ", l)
        else:
            add("backward", where, "dL/dA", f"layer {l + 1}'s dL/dX", "dA", l)
            f_prime = activation_formula(spec.activations[l])[1]
            add("backward", where, "dL/dZ", f"dL/dA ⊙ f′(Z), f′ = {f_prime}", "dZ", l)
        add("backward", where, "dL/dW", f"{inp}ᵀ·dL/dZ", "dW", l)
        add("backward", where, "dL/db", "Σₙ dL/dZ", "db", l)
        add("backward", where, f"dL/d{inp}", "dL/dZ·Wᵀ" + (" (the data's: nothing uses it)" if l == 0 else ""), "dX", l)
    for l in range(n_layers):
        add("update", f"layer {l}", "W", update_rule(opt, "W"), "W_new", l)
        add("update", f"layer {l}", "b", update_rule(opt, "b"), "b_new", l)
    return quantities, losses


def update_rule(opt, p: str) -> str:
    from shared.optim import SGD  # noqa: PLC0415

    if isinstance(opt, SGD) and not opt.momentum and not opt.weight_decay:
        return f"{p} − lr·dL/d{p}, lr = {opt.lr:g}"
    return f"{opt.describe()}, first step"
