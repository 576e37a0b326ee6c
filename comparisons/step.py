"""step: one training step, layer by layer, with the real numbers, in NumPy, torch and JAX side by side.

The forward pass (Z = X·W + b, A = f(Z), the loss), the backward pass (dL/dA, dL/dZ = dL/dA ⊙ f′(Z),
dL/dW = Xᵀ·dL/dZ, dL/db = Σ dL/dZ, dL/dX = dL/dZ·Wᵀ) and the update, every matrix printed. The NumPy
numbers are the ones its forward cached (numpy_backend.mlp_forward) and its backward computed from them;
torch's come from the real module with `retain_grad()` on every intermediate; JAX's from `jax.vjp` of
each layer in turn. Beside each quantity: the largest gap to NumPy, in units of ε·max|NumPy|.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np

from backends import get_backend
from backends import numpy_backend as nb
from comparisons.common import XOR, Problem, build_problem, installed, make_parser, non_negative_int, output_file
from shared.params import Params, tree_leaves
from shared.spec import MLPSpec

MAX_SHOWN = 8  # rows and columns of a matrix printed; the rest is "…"
WIDTH = 100


@dataclass
class Quantity:
    """One named array of the step, as each backend computed it."""

    section: str  # forward, backward, update
    layer: str  # "layer 0", "loss", ...
    name: str  # Z, dL/dW, ...
    formula: str  # "X·W + b"
    values: dict[str, np.ndarray] = field(default_factory=dict)  # backend -> array


KEYS = ("A_in", "W", "b", "Z", "A", "dA", "dZ", "dW", "db", "dX", "W_new", "b_new")


# ---- NumPy: the cache of its forward, and its backward one function at a time ----


def numpy_step(spec: MLPSpec, params: Params, X, y, optimizer) -> tuple[float, list[dict], np.ndarray]:
    """Per layer {A_in, W, b, Z, A, dA, dZ, dW, db, dX, W_new, b_new}, the loss, and dL/dŷ."""
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
    new = [{"W": p["W"].copy(), "b": p["b"].copy()} for p in params]
    update = nb.make_optimizer(optimizer, tree_leaves(new))
    update.step(tree_leaves(new), [g for layer in layers for g in (layer["dW"], layer["db"])])
    for layer, p in zip(layers, new):
        layer["W_new"], layer["b_new"] = p["W"], p["b"]
    return loss, layers, dY


# ---- torch: the real module, every intermediate kept with retain_grad() ----


def torch_step(spec: MLPSpec, params: Params, X, y, optimizer, dtype: str) -> tuple[float, list[dict]]:
    import torch  # noqa: PLC0415 (torch is optional)

    from backends import torch_backend as tb  # noqa: PLC0415

    model = tb.build_model(spec, params, getattr(torch, dtype))
    outputs = []  # every module's output, in order: Linear, activation, Linear, ...
    hooks = [m.register_forward_hook(lambda m, i, o: outputs.append(o)) for m in model.net]
    X_t = tb.to_torch(X).clone().requires_grad_(True)
    y_hat = model(X_t)
    for h in hooks:
        h.remove()
    for o in outputs:
        o.retain_grad()  # non-leaf tensors drop their .grad unless asked to keep it
    loss = tb.LOSSES[spec.loss](y_hat, tb.to_torch(y))
    loss.backward()
    linears = model.linears()
    layers, i, A_in = [], 0, X_t
    for l, linear in enumerate(linears):
        Z = outputs[i]
        A = outputs[i + 1] if l < spec.n_layers - 1 else Z
        i += 2
        layers.append(
            dict(
                A_in=A_in.detach().numpy(),
                W=linear.weight.detach().T.numpy(),
                b=linear.bias.detach().numpy(),
                Z=Z.detach().numpy(),
                A=A.detach().numpy(),
                dA=A.grad.numpy(),
                dZ=Z.grad.numpy(),
                dW=linear.weight.grad.T.numpy(),
                db=linear.bias.grad.numpy(),
                dX=A_in.grad.numpy(),
            )
        )
        A_in = A
    new = get_backend("torch", dtype).train(spec, params, X, y, optimizer, steps=1).params
    for layer, p in zip(layers, new):
        layer["W_new"], layer["b_new"] = p["W"], p["b"]
    return float(loss.item()), layers


# ---- JAX: jax.vjp of the loss and of each layer, from the output back ----


def jax_step(spec: MLPSpec, params: Params, X, y, optimizer, dtype: str) -> tuple[float, list[dict]]:
    import jax  # noqa: PLC0415 (jax is optional)
    import jax.numpy as jnp  # noqa: PLC0415

    from backends import jax_backend as jb  # noqa: PLC0415

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


# ---- text ----


def eps_gap(a: np.ndarray, b: np.ndarray, dtype: str) -> float:
    """max |a − b| in units of ε·max|a| (ε of `dtype`): how many roundings apart at the scale of a."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    diff = float(np.abs(a - b).max(initial=0.0))
    scale = float(np.abs(a).max(initial=0.0)) * float(np.finfo(dtype).eps)
    return 0.0 if diff == 0 else (diff / scale if scale > 0 else float("inf"))


def gap_text(gap: float) -> str:
    if gap == 0:
        return "0"
    if gap == float("inf") or gap >= 1e4:
        return f"{gap:.0e}"
    return f"{gap:.2g}"


def matrix_lines(a: np.ndarray, indent: str) -> list[str]:
    a = np.atleast_2d(a)
    rows = list(range(min(len(a), MAX_SHOWN)))
    cols = min(a.shape[1], MAX_SHOWN)
    lines = []
    for i in rows:
        cells = " ".join(f"{v:>10.4g}" for v in a[i, :cols]) + (" …" if a.shape[1] > cols else "")
        lines.append(f"{indent}{cells}")
    if len(a) > len(rows):
        lines.append(f"{indent}… {len(a) - len(rows)} more rows")
    return lines


def render(quantities: list[Quantity], losses: dict[str, float], spec: MLPSpec, dtype: str, title: str) -> str:
    backends = list(losses)
    others = [b for b in backends if b != "numpy"]
    eps = float(np.finfo(dtype).eps)
    lines = [title, f"gaps to NumPy in ε·max|NumPy| (ε = {eps:.1e}): ≤ a few ε is rounding; ≫ 1 is a difference"]
    section = layer = None
    for q in quantities:
        if q.section != section:
            section, layer = q.section, None
            lines += ["", f"══ {section.upper()} " + "═" * (WIDTH - 5 - len(section))]
            if section == "backward":
                gaps = "  ".join(f"{o} {gap_text(eps_gap(losses['numpy'], losses[o], dtype))}ε" for o in others)
                lines += [
                    f"loss  L = {spec.loss}(ŷ, y) = {losses['numpy']:.10g}" + (f"     {gaps}" if gaps else ""),
                    "",
                ]
        if q.layer != layer:
            layer = q.layer
            lines.append(f"── {layer}")
        a = q.values["numpy"]
        gaps = "  ".join(f"{o} {gap_text(eps_gap(a, q.values[o], dtype))}ε" for o in others)
        head = f"  {q.name} = {q.formula}" if q.formula else f"  {q.name}"
        shape = "×".join(map(str, a.shape))
        left = f"{head}  ({shape})"
        lines.append(f"{left}{' ' * max(2, WIDTH - len(left) - len(gaps))}{gaps}".rstrip())
        lines += matrix_lines(a, "    ")
    return "\n".join(lines)


def html_page(text: str, title: str) -> str:
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>trigrad: {html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;background:#fdfdfd;color:#222}}
pre{{font:13px/1.35 ui-monospace,Menlo,Consolas,monospace;background:#f4f4f4;padding:1em;overflow-x:auto}}</style>
</head><body><h1>{html.escape(title)}</h1><pre>{html.escape(text)}</pre></body></html>
"""


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(
        "step",
        __doc__.split("\n\n")[1],
        XOR,
        training="step",
        epilog="examples:\n  python -m comparisons step\n  python -m comparisons step --sample 3 --activation relu\n"
        "  python -m comparisons step --html step.html",
    )
    parser.add_argument("--sample", type=non_negative_int, help="one sample's step (default: the whole batch)")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="default: float64")
    parser.add_argument("--html", type=output_file, metavar="FILE", help="also write the step as one HTML page")
    args = parser.parse_args(argv)
    problem = build_problem(parser, args)
    n = len(problem.X)
    if args.sample is not None and args.sample >= n:
        parser.error(f"--sample {args.sample}: the dataset has {n} samples (0 to {n - 1})")
    if n > 1000 or max(problem.spec.sizes) > 256:
        parser.error(f"--n/--sizes: step prints every number; use at most 1000 samples and widths up to 256 (n={n})")
    backends = installed(args.backends)
    if "numpy" not in backends:
        parser.error("--backends: step compares against NumPy's cache, so it needs numpy")
    X, y = problem.X, problem.y
    which = "the whole batch"
    if args.sample is not None:
        X, y = X[args.sample : args.sample + 1], y[args.sample : args.sample + 1]
        which = f"sample {args.sample} alone"
    quantities, losses = collect(problem, X, y, backends, args.dtype)
    title = (
        f"One training step: {problem.data.name}, {problem.spec.describe()}, {problem.optimizer.describe()}, "
        f"{which} (n={len(X)}), {args.dtype}"
    )
    text = render(quantities, losses, problem.spec, args.dtype, title)
    print(text)
    if args.html:
        args.html.write_text(html_page(text, title))
        print(f"\nwrote {args.html}")
    return 0
