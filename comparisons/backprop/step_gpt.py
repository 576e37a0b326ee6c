"""step --model gpt: one block of a tiny GPT, forward and back, every intermediate in all three backends.

NumPy's numbers are the ones its forward cached and its backward computed (backends/numpy/gpt.py);
torch's come from the real module (hooks, a TorchFunctionMode for q·kᵀ and P, LayerNorm's saved μ and
rstd); JAX's from jax.vjp of backends/jax/gpt.py's pieces. `collect_gpt` returns them as the same
Quantity rows that comparisons/backprop/step.py prints for the MLP.
"""

from __future__ import annotations

import math

import numpy as np

from comparisons.backprop.step_mlp import Quantity
from comparisons.core.problem import GPTDefaults, Problem
from shared.params import map_params
from shared.spec import LAYERNORM_EPS

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
    cast = map_params(lambda a: np.asarray(a, dtype), params)
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
