"""NumPy transformer: a tiny GPT with every backward written out by hand.

Read this after mlp.py (the MLP): the same habit, forward and backward side by side, each
backward's docstring stating the gradient it computes. The pieces, in the order the data meets them:

1. embedding            x = tok_emb[X] + pos_emb[:t]         backward *adds* into rows (np.add.at)
2. layer norm           (x − μ)·rstd·g + b                     backward: the three-term formula
3. linear               x·W + b over (n, t, ·) arrays          the MLP's linear layer, batched over t
4. causal attention     softmax(q·kᵀ/√d_head + mask)·v         backward: dL/d(q·kᵀ) = P ⊙ (dP − Σ dP⊙P)/√d_head
5. the MLP inside       act(x·W1 + b1)·W2 + b2                 the activations of mlp.py
6. the block            x + attn(ln1(x)), then + mlp(ln2(x))   a residual passes its gradient through
7. the whole model      blocks, ln_f, head, softmax cross-entropy over all n·t positions

Shapes: n sequences of t tokens; d = d_model, h heads of d_head = d/h columns, V = vocab_size.
Compare with backends/torch/gpt.py (autograd) and backends/jax/gpt.py (jax.grad).

Mixed precision (train.py mixed_gpt_loss_and_grads) follows torch.autocast's rule on the CPU: the
linear layers and the attention's two matmuls compute in the half format, everything else in the
dtype it is handed. cast_linears gives the linears half-format weights; linear_forward casts its
input to the weights' dtype, so the residual stream, the embeddings and the layer norms stay in
float32 (a float32 x plus a half-format branch is float32), and linear_backward casts each gradient
back to the dtype of what it flows into. In float32 and float64 every one of these casts is a no-op.
"""

from __future__ import annotations

import math

import numpy as np

from backends.numpy.mlp import ACTIVATIONS, matmul, total
from shared.spec import LAYERNORM_EPS, GPTSpec

LINEARS = ("Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo", "W1", "b1", "W2", "b2")
"""A block's linear-layer params (attention and MLP); with the head's W and b, what mixed precision
computes in the half format."""


def cast_linears(params: dict, dtype) -> dict:
    """The params with every linear layer's W and b in `dtype` (mixed precision's first cast); the
    embeddings and layer norms as they are."""
    cast = lambda p: {k: v.astype(dtype) if k in LINEARS else v for k, v in p.items()}  # noqa: E731
    blocks = [
        {"attn": cast(p["attn"]), "mlp": cast(p["mlp"]), "ln1": p["ln1"], "ln2": p["ln2"]} for p in params["blocks"]
    ]
    head = {k: v.astype(dtype) for k, v in params["head"].items()}
    return params | {"blocks": blocks, "head": head}


# ============================================================================ 1. embedding


def embedding_forward(tok_emb, pos_emb, X):
    """x = tok_emb[X] + pos_emb[:t]: look up each token's row, add its position's row."""
    t = X.shape[1]
    return tok_emb[X] + pos_emb[:t]  # (n, t, d) + (t, d) -> (n, t, d)


def embedding_backward(dx, X, vocab_size, seq_len):
    """dL/dtok_emb[v] = Σ over every position holding token v of dL/dx there;
    dL/dpos_emb[i] = Σ over the batch of dL/dx at position i (rows ≥ t get no gradient).

    np.add.at accumulates: with `dtok[X] += dx` a token that appears twice would keep only one of
    its two gradients (fancy-index assignment does not add up repeated indices)."""
    n, t, d = dx.shape
    wide = np.promote_types(dx.dtype, np.float32)  # a half format's sums accumulate in float32
    dtok = np.zeros((vocab_size, d), wide)
    np.add.at(dtok, X, dx.astype(wide, copy=False))  # (V, d): repeated tokens add up
    dpos = np.zeros((seq_len, d), wide)
    dpos[:t] = dx.astype(wide, copy=False).sum(axis=0)  # (t, d)
    return dtok.astype(dx.dtype, copy=False), dpos.astype(dx.dtype, copy=False)


# ============================================================================ 2. layer norm


def layernorm_forward(x, g, b, eps=LAYERNORM_EPS):
    """y = g·(x − μ)/√(σ² + ε) + b over the last axis, σ² the biased variance (divide by d, not d − 1).
    The cache is (x, μ, rstd, g) with rstd = 1/√(σ² + ε): μ and rstd are the only statistics kept, and
    the backward recomputes x̂ = (x − μ)·rstd from x rather than storing a second (n, t, d) array.
    In a half format the statistics (and x̂) are computed in float32, x̂ then rounded to the format:
    torch's CPU kernel and JAX's layernorm (gpt.py there) keep the statistics in float32 too. σ² of a
    residual stream at init (~4e-4) has few digits left in bfloat16, and 1/√σ² cubed, which JAX's
    autodiff forms, overflows float16."""
    x32 = x.astype(np.promote_types(x.dtype, np.float32), copy=False)  # (n, t, d): float32 for a half x, else x
    mu = x32.mean(axis=-1, keepdims=True)  # (n, t, 1)
    var = ((x32 - mu) ** 2).mean(axis=-1, keepdims=True)  # (n, t, 1), biased
    rstd = 1.0 / np.sqrt(var + eps)  # (n, t, 1)
    y = ((x32 - mu) * rstd).astype(x.dtype, copy=False) * g + b  # (n, t, d)
    return y, (x, mu, rstd, g)


def layernorm_backward(dy, cache):
    """With x̂ = (x − μ)·rstd and dx̂ = dy·g:

    dL/dg = Σ dy·x̂,   dL/db = Σ dy          (summed over every position)
    dL/dx = rstd · (dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))   (means over the last axis)

    The three terms: the direct path, the path through μ (every x moves the mean), and the path
    through σ (every x moves the spread). In a half format, all of it in float32 (μ and rstd already
    are), each gradient rounded once to its own dtype."""
    x, mu, rstd, g = cache
    wide = mu.dtype  # float32 for a half format, else the dtype itself
    dy32, g32 = dy.astype(wide, copy=False), g.astype(wide, copy=False)
    xhat = (x.astype(wide, copy=False) - mu) * rstd  # (n, t, d)
    dg = (dy32 * xhat).reshape(-1, x.shape[-1]).sum(axis=0)  # (d,)
    db = dy32.reshape(-1, x.shape[-1]).sum(axis=0)  # (d,)
    dxhat = dy32 * g32  # (n, t, d)
    dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    return dx.astype(dy.dtype, copy=False), dg.astype(g.dtype, copy=False), db.astype(g.dtype, copy=False)


# ============================================================================ 3. linear (batched over positions)


def linear_forward(x, W, b):
    """z = x·W + b for every position: (n, t, fan_in) @ (fan_in, fan_out) + (fan_out,), computed in
    the weights' dtype (mixed precision: x is cast to the half format here)."""
    return matmul(x.astype(W.dtype, copy=False), W) + b  # (n, t, fan_out)


def linear_backward(dz, x, W):
    """dL/dx = dz·Wᵀ;  dL/dW = Σ over every (sequence, position) of xᵀ·dz;  dL/db = Σ dz.
    In the weights' dtype, like the forward: dz is cast to it on the way in and dL/dx back to x's
    dtype on the way out (mixed precision: the gradient of a cast is the cast back)."""
    fan_in, fan_out = W.shape
    dz, xw = dz.astype(W.dtype, copy=False), x.astype(W.dtype, copy=False)
    dx = matmul(dz, W.T).astype(x.dtype, copy=False)  # (n, t, fan_in)
    dW = matmul(xw.reshape(-1, fan_in).T, dz.reshape(-1, fan_out))  # (fan_in, n·t) @ (n·t, fan_out)
    db = total(dz.reshape(-1, fan_out), axis=0)  # (fan_out,)
    return dx, dW, db


# ============================================================================ 4. causal self-attention


def softmax_forward(S):
    """P = softmax(S) over the last axis, max subtracted first so exp never overflows."""
    e = np.exp(S - S.max(axis=-1, keepdims=True))
    return e / total(e, axis=-1, keepdims=True)


def softmax_backward(dP, P):
    """dL/dS = P ⊙ (dP − Σⱼ dPⱼ·Pⱼ): the Jacobian of softmax is diag(P) − P·Pᵀ, applied row by row.
    Where P is 0 (a masked position), dS is 0 too: no gradient flows to the future."""
    return P * (dP - total(dP * P, axis=-1, keepdims=True))


def split_heads(x, n_heads):
    """(n, t, d) -> (n, h, t, d_head): head j takes columns j·d_head … (j+1)·d_head − 1."""
    n, t, d = x.shape
    return x.reshape(n, t, n_heads, d // n_heads).transpose(0, 2, 1, 3)


def merge_heads(x):
    """(n, h, t, d_head) -> (n, t, d): the heads' columns side by side, in head order."""
    n, h, t, dh = x.shape
    return x.transpose(0, 2, 1, 3).reshape(n, t, h * dh)


def attention_forward(x, p, n_heads):
    """y = concat over heads of softmax(q·kᵀ/√d_head + mask)·v, then ·Wo + bo.

    The causal mask sets scores of future positions (key j > query i) to −inf before the softmax, so
    their weight is exactly 0. A row with every entry −inf would be NaN, but the diagonal (a position
    attending to itself) is never masked, so every row keeps at least one finite score."""
    q = split_heads(linear_forward(x, p["Wq"], p["bq"]), n_heads)  # (n, h, t, dh)
    k = split_heads(linear_forward(x, p["Wk"], p["bk"]), n_heads)  # (n, h, t, dh)
    v = split_heads(linear_forward(x, p["Wv"], p["bv"]), n_heads)  # (n, h, t, dh)
    t, dh = x.shape[1], q.shape[-1]
    scale = 1.0 / math.sqrt(dh)
    S = matmul(q, k.transpose(0, 1, 3, 2)) * scale  # (n, h, t, t): query i's score for key j
    future = np.triu(np.ones((t, t), bool), k=1)  # (t, t): True where j > i
    S = np.where(future, np.array(-np.inf, S.dtype), S)  # (−inf in S's dtype: a bare -np.inf makes bfloat16 float32)
    P = softmax_forward(S)  # (n, h, t, t), each row sums to 1 over keys j ≤ i
    heads = matmul(P, v)  # (n, h, t, dh)
    concat = merge_heads(heads)  # (n, t, d)
    y = linear_forward(concat, p["Wo"], p["bo"])  # (n, t, d)
    return y, (x, q, k, v, P, concat, scale)


def attention_backward(dy, cache, p):
    """Backward through the output projection, the heads, the softmax and the three projections:

    dconcat = dy·Woᵀ;   per head: dP = dheads·vᵀ,  dv = Pᵀ·dheads
    dS = P ⊙ (dP − Σ dP⊙P) · scale   the softmax backward, times the forward's 1/√d_head again:
                                     dS is dL/d(q·kᵀ), the gradient of the unscaled scores
    dq = dS·k,   dk = dSᵀ·q;   then each of q, k, v back through its own linear layer into dx."""
    x, q, k, v, P, concat, scale = cache
    n_heads = q.shape[1]
    g = {}
    dconcat, g["Wo"], g["bo"] = linear_backward(dy, concat, p["Wo"])  # (n, t, d)
    dheads = split_heads(dconcat, n_heads)  # (n, h, t, dh)
    dP = matmul(dheads, v.transpose(0, 1, 3, 2))  # (n, h, t, t)
    dv = matmul(P.transpose(0, 1, 3, 2), dheads)  # (n, h, t, dh)
    dS = softmax_backward(dP, P) * scale  # (n, h, t, t): dL/d(q·kᵀ), 0 at masked positions
    dq = matmul(dS, k)  # (n, h, t, dh)
    dk = matmul(dS.transpose(0, 1, 3, 2), q)  # (n, h, t, dh)
    dx = np.zeros_like(x)
    for name, d in (("q", dq), ("k", dk), ("v", dv)):
        dx_part, g[f"W{name}"], g[f"b{name}"] = linear_backward(merge_heads(d), x, p[f"W{name}"])
        dx += dx_part  # x feeds all three projections: their gradients add
    return dx, g


# ============================================================================ 5. the MLP inside a block


def mlp_forward(x, p, activation):
    """y = act(x·W1 + b1)·W2 + b2, position by position."""
    act_forward, _ = ACTIVATIONS[activation]
    z = linear_forward(x, p["W1"], p["b1"])  # (n, t, d_ff)
    a = act_forward(z)  # (n, t, d_ff)
    y = linear_forward(a, p["W2"], p["b2"])  # (n, t, d)
    return y, (x, z, a, activation)


def mlp_backward(dy, cache, p):
    """Back through W2, the activation (dz = da·act′(z), as in the MLP backend), then W1."""
    x, z, a, activation = cache
    _, act_backward = ACTIVATIONS[activation]
    g = {}
    da, g["W2"], g["b2"] = linear_backward(dy, a, p["W2"])  # (n, t, d_ff)
    dz = act_backward(da, z, a)  # (n, t, d_ff)
    dx, g["W1"], g["b1"] = linear_backward(dz, x, p["W1"])  # (n, t, d)
    return dx, g


# ============================================================================ 6. the block


def block_forward(x, p, spec: GPTSpec):
    """Pre-LN: x = x + attn(ln1(x)); x = x + mlp(ln2(x))."""
    h1, ln1_cache = layernorm_forward(x, p["ln1"]["g"], p["ln1"]["b"])
    a, attn_cache = attention_forward(h1, p["attn"], spec.n_heads)
    x = x + a  # (n, t, d): the residual stream
    h2, ln2_cache = layernorm_forward(x, p["ln2"]["g"], p["ln2"]["b"])
    m, mlp_cache = mlp_forward(h2, p["mlp"], spec.activation)
    return x + m, (ln1_cache, attn_cache, ln2_cache, mlp_cache)


def block_backward(dx, cache, p):
    """A residual x + f(x) passes dx straight through and adds what f sends back: dx + f′ᵀ·dx."""
    ln1_cache, attn_cache, ln2_cache, mlp_cache = cache
    g = {}
    dh2, g["mlp"] = mlp_backward(dx, mlp_cache, p["mlp"])
    dx_ln2, dg, db = layernorm_backward(dh2, ln2_cache)
    g["ln2"] = {"g": dg, "b": db}
    dx = dx + dx_ln2  # through the second residual
    dh1, g["attn"] = attention_backward(dx, attn_cache, p["attn"])
    dx_ln1, dg, db = layernorm_backward(dh1, ln1_cache)
    g["ln1"] = {"g": dg, "b": db}
    return dx + dx_ln1, g  # through the first residual


# ============================================================================ 7. the whole model and its loss


def gpt_forward(spec: GPTSpec, params: dict, X: np.ndarray):
    """Logits (n, t, V) for token ids X (n, t), and the cache for the backward."""
    x = embedding_forward(params["tok_emb"], params["pos_emb"], X)  # (n, t, d)
    block_caches = []
    for p in params["blocks"]:
        x, cache = block_forward(x, p, spec)
        block_caches.append(cache)
    h, lnf_cache = layernorm_forward(x, params["ln_f"]["g"], params["ln_f"]["b"])
    logits = linear_forward(h, params["head"]["W"], params["head"]["b"])  # (n, t, V)
    return logits, (X, block_caches, lnf_cache, h)


def attention_maps(spec: GPTSpec, params: dict, X: np.ndarray) -> list[np.ndarray]:
    """Every block's attention probabilities P (n, h, t, t): read from the forward's own cache."""
    _, (_, block_caches, _, _) = gpt_forward(spec, params, X)
    return [cache[1][4] for cache in block_caches]  # (ln1, attn, ln2, mlp) caches; attn's P is its 5th


def softmax_ce_forward(logits, Y):
    """L = mean over all n·t positions of −log softmax(logits)[Y] (log-sum-exp, stably)."""
    z = logits - logits.max(axis=-1, keepdims=True)  # (n, t, V), every entry ≤ 0
    log_probs = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return -np.take_along_axis(log_probs, Y[..., None], axis=-1).mean()


def softmax_ce_backward(logits, Y):
    """dL/dlogits = (softmax(logits) − onehot(Y)) / (n·t): the mean is over every position."""
    dlogits = softmax_forward(logits)  # (n, t, V)
    np.put_along_axis(dlogits, Y[..., None], np.take_along_axis(dlogits, Y[..., None], axis=-1) - 1, axis=-1)
    return dlogits / Y.size


def gpt_backward(spec: GPTSpec, params: dict, cache, dlogits):
    """The chain rule from the logits back to the embeddings, block after block in reverse."""
    X, block_caches, lnf_cache, h = cache
    grads: dict = {"blocks": [None] * spec.n_layers}
    dh, dW, db = linear_backward(dlogits, h, params["head"]["W"])
    grads["head"] = {"W": dW, "b": db}
    dx, dg, db = layernorm_backward(dh, lnf_cache)
    grads["ln_f"] = {"g": dg, "b": db}
    for l in reversed(range(spec.n_layers)):
        dx, grads["blocks"][l] = block_backward(dx, block_caches[l], params["blocks"][l])
    grads["tok_emb"], grads["pos_emb"] = embedding_backward(dx, X, spec.vocab_size, spec.seq_len)
    return grads


def loss_and_grads(spec: GPTSpec, params: dict, X: np.ndarray, Y: np.ndarray, need_loss: bool = True):
    """Forward, the loss, then backprop from dL/dlogits back to every parameter. need_loss=False
    skips the loss value (returned as None): backprop starts from dL/dlogits, which does not need it."""
    logits, cache = gpt_forward(spec, params, X)
    loss = softmax_ce_forward(logits, Y) if need_loss else None
    return loss, gpt_backward(spec, params, cache, softmax_ce_backward(logits, Y))
