"""step: one training step, layer by layer, with the real numbers, in NumPy, torch and JAX side by side.

The forward pass (Z = X·W + b, A = f(Z), the loss), the backward pass (dL/dA, dL/dZ = dL/dA ⊙ f′(Z),
dL/dW = Xᵀ·dL/dZ, dL/db = Σ dL/dZ, dL/dX = dL/dZ·Wᵀ) and the update, every matrix printed. The NumPy
numbers are the ones its forward cached (backends/numpy/mlp.py mlp_forward) and its backward computed from them;
torch's come from the real module with `retain_grad()` on every intermediate; JAX's from `jax.vjp` of
each layer in turn. Beside each quantity: the largest gap to NumPy, in units of ε·max|NumPy|.

With --model gpt, the first block of a tiny GPT instead (default 1 block, d = 8, 2 heads, 2 sequences
of 4 tokens): the embedding, LayerNorm's μ and rstd, q/k/v per head, the masked scores S and P, the
loss, then dL/dlogits, dP, dS, dq/dk/dv, LayerNorm's dx and the embedding gradient. NumPy's from
backends/numpy/gpt.py's caches; torch's from the real module (hooks, a TorchFunctionMode for q·kᵀ and P,
LayerNorm's saved μ and rstd); JAX's from jax.vjp of the pieces, backends/jax/gpt.py's linear/layernorm.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import numpy as np

from backends import get_backend
from backends.numpy import mlp as nb
from backends.numpy import optim as numpy_optim
from comparisons.core.options import make_parser, non_negative_int, output_file
from comparisons.core.problem import XOR, GPTDefaults, Problem, build_problem, installed
from shared.params import Params, tree_leaves
from shared.spec import LAYERNORM_EPS, GPTSpec, MLPSpec
from shared.tolerances import gap_in_eps

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


# ---- the GPT: one block's intermediates (--model gpt) ----

GPT_STEP = GPTDefaults(gpt=(8, 4, 8, 2, 1), n=2)  # one block, two heads, two sequences: fits 100 columns

GPT_ROWS = (  # (section, key, name, formula): the order they are printed
    ("forward", "x", "x", "tok_emb[X] + pos_emb[:t]: the embedding"),
    ("forward", "mu", "μ", "mean of x over d"),
    ("forward", "rstd", "rstd", "1/√(σ² + ε)"),
    ("forward", "h1", "ln1(x)", "(x − μ)·rstd·g + b"),
    ("forward", "q", "q", "ln1(x)·Wq + bq, split into heads"),
    ("forward", "k", "k", "ln1(x)·Wk + bk"),
    ("forward", "v", "v", "ln1(x)·Wv + bv"),
    ("forward", "S", "S", "q·kᵀ/√d_head, −inf above the diagonal"),
    ("forward", "P", "P", "softmax(S): each row sums to 1"),
    ("backward", "dlogits", "dL/dlogits", "(softmax(logits) − onehot(y))/(n·t)"),
    ("backward", "dP", "dP", "dheads·vᵀ"),
    ("backward", "dS", "dS", "P ⊙ (dP − Σ dP⊙P) / √d_head: dL/d(q·kᵀ)"),
    ("backward", "dq", "dq", "dS·k"),
    ("backward", "dk", "dk", "dSᵀ·q"),
    ("backward", "dv", "dv", "Pᵀ·dheads"),
    ("backward", "dx_ln", "LayerNorm's dx", "rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))"),
    ("backward", "dx", "dL/dx", "the residual's dx + LayerNorm's dx"),
    ("backward", "dtok_emb", "dL/dtok_emb", "Σ of dL/dx over every position of a token"),
)


def numpy_gpt_step(spec, params, X, Y) -> tuple[float, dict]:
    """Block 0's intermediates from backends/numpy/gpt.py's caches, and its backward piece by piece."""
    from backends.numpy import gpt as nt  # noqa: PLC0415

    logits, (_, block_caches, lnf_cache, h) = nt.gpt_forward(spec, params, X)
    loss = float(nt.softmax_ce_forward(logits, Y))
    ln1_cache, attn_cache, ln2_cache, mlp_cache = block_caches[0]
    x, mu, rstd, _ = ln1_cache
    h1, q, k, v, P, _, scale = attn_cache
    t = X.shape[1]
    S = np.where(np.triu(np.ones((t, t), bool), k=1), -np.inf, q @ k.transpose(0, 1, 3, 2) * scale)
    out = dict(x=x, mu=mu[..., 0], rstd=rstd[..., 0], h1=h1, q=q, k=k, v=v, S=S, P=P)
    out["dlogits"] = dlogits = nt.softmax_ce_backward(logits, Y)
    dh, _, _ = nt.linear_backward(dlogits, h, params["head"]["W"])
    dx, _, _ = nt.layernorm_backward(dh, lnf_cache)
    for l in reversed(range(1, spec.n_layers)):
        dx, _ = nt.block_backward(dx, block_caches[l], params["blocks"][l])
    p = params["blocks"][0]
    dh2, _ = nt.mlp_backward(dx, mlp_cache, p["mlp"])
    dx = dx + nt.layernorm_backward(dh2, ln2_cache)[0]  # the input of the attention's residual
    dconcat, _, _ = nt.linear_backward(dx, attn_cache[5], p["attn"]["Wo"])
    dheads = nt.split_heads(dconcat, spec.n_heads)  # (n, h, t, dh)
    out["dP"] = dP = dheads @ v.transpose(0, 1, 3, 2)  # (n, h, t, t)
    out["dS"] = dS = nt.softmax_backward(dP, P) * scale
    out["dq"], out["dk"], out["dv"] = dS @ k, dS.transpose(0, 1, 3, 2) @ q, P.transpose(0, 1, 3, 2) @ dheads
    dh1, _ = nt.attention_backward(dx, attn_cache, p["attn"])
    out["dx_ln"], _, _ = nt.layernorm_backward(dh1, ln1_cache)
    out["dx"] = dx + out["dx_ln"]
    out["dtok_emb"], _ = nt.embedding_backward(out["dx"], X, spec.vocab_size, spec.seq_len)
    return loss, out


def torch_gpt_step(spec, params, X, Y, dtype: str) -> tuple[float, dict]:
    """The real module: hooks on block 0, a TorchFunctionMode that keeps q·kᵀ and the softmax's P,
    LayerNorm's μ and rstd from what its grad_fn saved, retain_grad() for every gradient."""
    import torch  # noqa: PLC0415 (optional)
    from torch.overrides import TorchFunctionMode  # noqa: PLC0415

    from backends.torch import backend as tb  # noqa: PLC0415
    from backends.torch import gpt as tt  # noqa: PLC0415

    model = tb.build_model(spec, params, getattr(torch, dtype))
    block, seen = model.blocks[0], {}
    n, t = X.shape

    class Keep(TorchFunctionMode):  # block 0's are the first q·kᵀ of shape (n, h, t, t) and softmax
        def __torch_function__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            if getattr(func, "__name__", "") in ("matmul", "__matmul__") and result.shape == (n, spec.n_heads, t, t):
                seen.setdefault("R", result)
            if func is torch.softmax:
                seen.setdefault("P", result)
            return result

    def keep(name):
        return lambda module, inputs, output: seen.setdefault(name, output)

    hooks = [block.register_forward_pre_hook(lambda m, inputs: seen.setdefault("x", inputs[0]))]
    hooks += [block.ln1.register_forward_hook(keep("h1"))]
    hooks += [getattr(block.attn, c).register_forward_hook(keep(c)) for c in "qkv"]
    with Keep():
        logits = model(tb.to_torch(X))
    for hook in hooks:
        hook.remove()
    for tensor in (logits, *seen.values()):
        tensor.retain_grad()
    loss = tt.softmax_ce(logits, tb.to_torch(Y))
    loss.backward(retain_graph=True)
    saved = seen["h1"].grad_fn  # NativeLayerNormBackward0 saved the mean and rstd it computed
    mu, rstd = saved._saved_result1.detach().numpy()[..., 0], saved._saved_result2.detach().numpy()[..., 0]
    dx = seen["x"].grad.clone()  # read first: the retain_grad hook would add autograd.grad's result below
    (dx_ln,) = torch.autograd.grad(seen["h1"], seen["x"], seen["h1"].grad)  # LayerNorm's path alone
    heads = lambda a: a.reshape(n, t, spec.n_heads, -1).transpose(1, 2).numpy()  # noqa: E731
    future = torch.ones(t, t, dtype=torch.bool).triu(1)
    S = seen["R"].detach() / math.sqrt(spec.d_model // spec.n_heads)
    out = dict(x=seen["x"].detach().numpy(), mu=mu, rstd=rstd, h1=seen["h1"].detach().numpy())
    out.update({c: heads(seen[c].detach()) for c in "qkv"})
    out.update(S=S.masked_fill(future, float("-inf")).numpy(), P=seen["P"].detach().numpy())
    out.update(dlogits=logits.grad.numpy(), dP=seen["P"].grad.numpy(), dS=seen["R"].grad.numpy())
    out.update({f"d{c}": heads(seen[c].grad) for c in "qkv"})
    out.update(dx_ln=dx_ln.numpy(), dx=dx.numpy(), dtok_emb=model.tok_emb.weight.grad.numpy())
    return float(loss.item()), out


def jax_gpt_step(spec, params, X, Y, dtype: str) -> tuple[float, dict]:
    """jax.vjp of the pieces, from the embedding through block 0's attention to the loss, then back."""
    import jax  # noqa: PLC0415 (optional)
    import jax.numpy as jnp  # noqa: PLC0415

    from backends.jax import gpt as jt  # noqa: PLC0415

    with jax.enable_x64(True):
        p = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a, dtype)), params)
        a = p["blocks"][0]["attn"]
        n, t = X.shape
        h, dh = spec.n_heads, spec.d_model // spec.n_heads

        def heads(z):  # (n, t, d) -> (n, h, t, dh)
            return z.reshape(n, t, h, dh).transpose(0, 2, 1, 3)

        def scores_to_p(R):  # raw q·kᵀ -> P
            return jax.nn.softmax(jnp.where(jnp.tril(jnp.ones((t, t), bool)), R / math.sqrt(dh), -jnp.inf), axis=-1)

        def rest(P, v, x):  # P·v, the output projection, the residual, then everything after: logits
            y = jnp.einsum("nhij,nhjd->nhid", P, v, precision="highest").transpose(0, 2, 1, 3).reshape(n, t, -1)
            x = x + jt.linear(y, a["Wo"], a["bo"])
            x = x + jt.mlp(jt.layernorm(x, p["blocks"][0]["ln2"]), p["blocks"][0]["mlp"], spec.activation)
            for block in p["blocks"][1:]:
                x = jt.block(x, block, spec)
            return jt.linear(jt.layernorm(x, p["ln_f"]), p["head"]["W"], p["head"]["b"])

        def ce(logits):
            return -jnp.take_along_axis(jax.nn.log_softmax(logits), jnp.asarray(Y)[..., None], axis=-1).mean()

        x, emb_vjp = jax.vjp(lambda tok: tok[X] + p["pos_emb"][:t], p["tok_emb"])
        h1, ln_vjp = jax.vjp(lambda x: jt.layernorm(x, p["blocks"][0]["ln1"]), x)
        (q, k, v), qkv_vjp = jax.vjp(lambda h1: tuple(heads(jt.linear(h1, a[f"W{c}"], a[f"b{c}"])) for c in "qkv"), h1)
        R, r_vjp = jax.vjp(lambda q, k: jnp.einsum("nhid,nhjd->nhij", q, k, precision="highest"), q, k)
        P, p_vjp = jax.vjp(scores_to_p, R)
        logits, rest_vjp = jax.vjp(rest, P, v, x)
        loss, ce_vjp = jax.vjp(ce, logits)
        (dlogits,) = ce_vjp(jnp.ones_like(loss))
        dP, dv, dx_residual = rest_vjp(dlogits)
        (dS,) = p_vjp(dP)
        dq, dk = r_vjp(dS)
        (dh1,) = qkv_vjp((dq, dk, dv))
        (dx_ln,) = ln_vjp(dh1)
        (dtok,) = emb_vjp(dx_residual + dx_ln)
        mu = x.mean(axis=-1)  # jt.layernorm keeps neither: recomputed here as it computes them
        rstd = jax.lax.rsqrt(jnp.var(x, axis=-1) + LAYERNORM_EPS)
        S = jnp.where(jnp.tril(jnp.ones((t, t), bool)), R / math.sqrt(dh), -jnp.inf)
        out = dict(x=x, mu=mu, rstd=rstd, h1=h1, q=q, k=k, v=v, S=S, P=P, dlogits=dlogits, dP=dP, dS=dS)
        out.update(dq=dq, dk=dk, dv=dv, dx_ln=dx_ln, dx=dx_residual + dx_ln, dtok_emb=dtok)
        return float(loss), {key: np.asarray(value) for key, value in out.items()}


def collect_gpt(problem: Problem, X, Y, backends: list[str], dtype: str) -> tuple[list[Quantity], dict[str, float]]:
    spec, params = problem.spec, problem.params
    cast = jax_free_cast(params, dtype)
    runs, losses = {}, {}
    losses["numpy"], runs["numpy"] = numpy_gpt_step(spec, cast, X, Y)
    for name in backends:
        if name != "numpy":
            step = torch_gpt_step if name == "torch" else jax_gpt_step
            losses[name], runs[name] = step(spec, params, X, Y, dtype)
    quantities = []
    for section, key, name, formula in GPT_ROWS:
        where = "block 0" if key not in ("x", "dlogits", "dtok_emb") else ("embedding" if key != "dlogits" else "head")
        q = Quantity(section, where, name, formula)
        q.values = {backend: run[key] for backend, run in runs.items()}
        quantities.append(q)
    return quantities, losses


def jax_free_cast(params, dtype: str):
    """The params tree with every array as `dtype` (NumPy computes in the dtype it is given)."""
    if isinstance(params, dict):
        return {k: jax_free_cast(v, dtype) for k, v in params.items()}
    if isinstance(params, list):
        return [jax_free_cast(v, dtype) for v in params]
    return np.asarray(params, dtype)


# ---- text ----


def gap_text(gap: float) -> str:
    if gap == 0:
        return "0"
    if gap == float("inf") or gap >= 1e4:
        return f"{gap:.0e}"
    return f"{gap:.2g}"


MAX_BLOCKS = 4  # of a 3-d or 4-d array, the (sequence, head) matrices printed


def matrix_lines(a: np.ndarray, indent: str) -> list[str]:
    """A matrix row by row; an array of more dimensions as its first MAX_BLOCKS matrices, each named."""
    if np.ndim(a) > 2:
        lines, index = [], list(np.ndindex(a.shape[:-2]))
        for i in index[:MAX_BLOCKS]:
            what = ", ".join(f"{axis} {j}" for axis, j in zip(("seq", "head"), i))
            lines += [f"{indent}[{what}]", *matrix_lines(a[i], indent + "  ")]
        if len(index) > MAX_BLOCKS:
            lines.append(f"{indent}… {len(index) - MAX_BLOCKS} more")
        return lines
    a = np.atleast_2d(a)
    rows = list(range(min(len(a), MAX_SHOWN)))
    cols = min(a.shape[1], MAX_SHOWN)
    lines = []
    for i in rows:
        # v + 0.0: IEEE's signed zero −0 (0 times a negative number, as dS at a masked entry) prints as 0
        cells = " ".join(f"{v + 0.0:>10.4g}" for v in a[i, :cols]) + (" …" if a.shape[1] > cols else "")
        lines.append(f"{indent}{cells}")
    if len(a) > len(rows):
        lines.append(f"{indent}… {len(a) - len(rows)} more rows")
    return lines


def loss_name(spec) -> str:
    return "mean cross-entropy over n·t positions" if isinstance(spec, GPTSpec) else f"{spec.loss}(ŷ, y)"


def render(quantities: list[Quantity], losses: dict[str, float], spec, dtype: str, title: str) -> str:
    backends = list(losses)
    others = [b for b in backends if b != "numpy"]
    eps = float(np.finfo(dtype).eps)
    lines = [title, f"gaps to NumPy in ε·max|NumPy| (ε = {eps:.1e}): ≤ a few ε is rounding; ≫ 1 is a difference"]
    if isinstance(spec, GPTSpec):
        lines.append("masked (key j > query i): S = −inf, P = 0 and dS exactly 0: no gradient flows to the future")
    section = layer = None
    for q in quantities:
        if q.section != section:
            section, layer = q.section, None
            lines += ["", f"══ {section.upper()} " + "═" * (WIDTH - 5 - len(section))]
            if section == "backward":
                gaps = "  ".join(f"{o} {gap_text(gap_in_eps(losses['numpy'], losses[o], dtype))}ε" for o in others)
                lines += [
                    f"loss  L = {loss_name(spec)} = {losses['numpy']:.10g}" + (f"     {gaps}" if gaps else ""),
                    "",
                ]
        if q.layer != layer:
            layer = q.layer
            lines.append(f"── {layer}")
        a = q.values["numpy"]
        gaps = "  ".join(f"{o} {gap_text(gap_in_eps(a, q.values[o], dtype))}ε" for o in others)
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
        gpt=GPT_STEP,
        epilog="examples:\n  python -m comparisons step\n  python -m comparisons step --sample 3 --activation relu\n"
        "  python -m comparisons step --model gpt\n  python -m comparisons step --html step.html",
    )
    parser.add_argument("--sample", type=non_negative_int, help="one sample's step (default: the whole batch)")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="default: float64")
    parser.add_argument("--html", type=output_file, metavar="FILE", help="also write the step as one HTML page")
    args = parser.parse_args(argv)
    gpt = args.model == "gpt" or (args.model is None and args.gpt is not None)
    if gpt:  # GPT_STEP, the command's own small default, fits the screen (problem.GPT trains; this one is read)
        for option in ("optimizer", "lr"):
            if getattr(args, option) is not None:  # the GPT step prints no update: refuse, never ignore
                parser.error(f"--{option}: --model gpt prints the forward and backward pass only, no update")
    problem = build_problem(parser, args)
    n = len(problem.X)
    if args.sample is not None and args.sample >= n:
        parser.error(f"--sample {args.sample}: the dataset has {n} samples (0 to {n - 1})")
    if gpt and (n > 64 or problem.spec.d_model > 64 or problem.spec.seq_len > 64):
        parser.error(f"--gpt/--n: step prints every number; use at most 64 sequences, d ≤ 64 and t ≤ 64 (n={n})")
    if not gpt and (n > 1000 or max(problem.spec.sizes) > 256):
        parser.error(f"--n/--sizes: step prints every number; use at most 1000 samples and widths up to 256 (n={n})")
    backends = installed(args.backends)
    if "numpy" not in backends:
        parser.error("--backends: step compares against NumPy's cache, so it needs numpy")
    X, y = problem.X, problem.y
    which = "the whole batch"
    if args.sample is not None:
        X, y = X[args.sample : args.sample + 1], y[args.sample : args.sample + 1]
        which = f"sample {args.sample} alone"
    if gpt:
        quantities, losses = collect_gpt(problem, X, y, backends, args.dtype)
        what = f"{problem.data.name} data, {len(X)}×{X.shape[1]} tokens"
        title = f"One GPT step, block 0: {problem.spec.describe()}, {what}, {args.dtype}"
    else:
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
