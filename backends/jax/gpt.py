"""JAX transformer: the tiny GPT as pure functions over the params pytree.

The params are the canonical nested dict itself, so nothing is transposed; `jax.value_and_grad` of
the loss (in train.py) is the whole backward that backends/numpy/gpt.py writes out by hand.
The same order as there: embedding, layer norm, attention, the MLP, the block, the model.

Numerics made explicit, as in mlp.py: matmuls at precision="highest"; the exact GELU (JAX's
default is the tanh approximation); LayerNorm's ε = 1e-5 (torch's default, not flax's 1e-6); the
causal mask as −inf, exactly as NumPy and torch (a large finite negative is the other common choice).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from backends.jax.mlp import ACTIVATIONS
from shared.spec import LAYERNORM_EPS, GPTSpec

LINEARS = ("Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo", "W1", "b1", "W2", "b2")


def cast_linears(params: dict, dtype) -> dict:
    """Mixed precision's first cast, torch.autocast's rule written out (JAX has no autocast): every
    linear layer's W and b (a block's, and the head's) in the half format; embeddings and layer norms
    as they are. linear() then casts its input to the weights' dtype, so the linears and the attention
    compute in the half format while the residual stream stays float32; jax.grad casts each gradient
    back. In float32 and float64 nothing is cast."""
    cast = lambda p: {k: v.astype(dtype) if k in LINEARS else v for k, v in p.items()}  # noqa: E731
    blocks = [
        {"attn": cast(p["attn"]), "mlp": cast(p["mlp"]), "ln1": p["ln1"], "ln2": p["ln2"]} for p in params["blocks"]
    ]
    return params | {"blocks": blocks, "head": jax.tree.map(lambda a: a.astype(dtype), params["head"])}


def linear(x: jax.Array, W: jax.Array, b: jax.Array) -> jax.Array:
    """x·W + b over the last axis, at full precision, in the weights' dtype (x is cast to it)."""
    return jnp.matmul(x.astype(W.dtype), W, precision="highest") + b


def layernorm(x: jax.Array, p: dict) -> jax.Array:
    """g·(x − μ)/√(σ² + ε) + b over the last axis, with the biased variance (jnp.var's default). In a
    half format the statistics and x̂ are computed in float32 and x̂ is rounded to the format (flax's
    LayerNorm keeps its statistics in float32 too). In float16 itself, autodiff of rsqrt forms
    −½(σ² + ε)^(−3/2), which for a residual stream at init (σ² ≈ 4e-4) is ~1e5, past float16's 65504:
    every gradient below the last block came back NaN."""
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mu = x32.mean(axis=-1, keepdims=True)
    var = jnp.var(x32, axis=-1, keepdims=True)
    return ((x32 - mu) * jax.lax.rsqrt(var + LAYERNORM_EPS)).astype(x.dtype) * p["g"] + p["b"]


def heads(z: jax.Array, n_heads: int) -> jax.Array:
    """(n, t, d) -> (n, h, t, dh): head j takes columns j·dh … (j+1)·dh − 1."""
    n, t, d = z.shape
    return z.reshape(n, t, n_heads, d // n_heads).transpose(0, 2, 1, 3)


def attention_weights(x: jax.Array, p: dict, n_heads: int) -> jax.Array:
    """P = softmax(q·kᵀ/√d_head, future masked to −inf): (n, h, t, t), each query's weights over keys."""
    t, dh = x.shape[1], x.shape[2] // n_heads
    q, k = (heads(linear(x, p[f"W{c}"], p[f"b{c}"]), n_heads) for c in "qk")
    S = jnp.einsum("nhid,nhjd->nhij", q, k, precision="highest") / math.sqrt(dh)  # (n, h, t, t)
    causal = jnp.tril(jnp.ones((t, t), bool))  # query i sees keys j ≤ i; the diagonal always
    return jax.nn.softmax(jnp.where(causal, S, -jnp.inf), axis=-1)


def attention(x: jax.Array, p: dict, n_heads: int) -> jax.Array:
    """Causal multi-head self-attention: P·v over the heads (P from attention_weights), then ·Wo + bo."""
    n, t, d = x.shape
    P = attention_weights(x, p, n_heads)  # (n, h, t, t)
    v = heads(linear(x, p["Wv"], p["bv"]), n_heads)  # (n, h, t, dh)
    y = jnp.einsum("nhij,nhjd->nhid", P, v, precision="highest")  # (n, h, t, dh)
    return linear(y.transpose(0, 2, 1, 3).reshape(n, t, d), p["Wo"], p["bo"])  # heads side by side


def mlp(x: jax.Array, p: dict, activation: str) -> jax.Array:
    return linear(ACTIVATIONS[activation](linear(x, p["W1"], p["b1"])), p["W2"], p["b2"])


def block(x: jax.Array, p: dict, spec: GPTSpec) -> jax.Array:
    """Pre-LN: x + attn(ln1(x)), then + mlp(ln2(x))."""
    x = x + attention(layernorm(x, p["ln1"]), p["attn"], spec.n_heads)
    return x + mlp(layernorm(x, p["ln2"]), p["mlp"], spec.activation)


def gpt(spec: GPTSpec, params: dict, X: jax.Array) -> jax.Array:
    """Logits (n, t, V) for token ids X (n, t)."""
    t = X.shape[1]
    x = params["tok_emb"][X] + params["pos_emb"][:t]  # (n, t, d)
    for p in params["blocks"]:
        x = block(x, p, spec)
    return linear(layernorm(x, params["ln_f"]), params["head"]["W"], params["head"]["b"])  # (n, t, V)


def attention_maps(spec: GPTSpec, params: dict, X: jax.Array) -> list[jax.Array]:
    """Every block's attention probabilities (n, h, t, t): a pure function has no cache to read, so the
    blocks run again, keeping attention_weights of each block's ln1(x) on the way."""
    t = X.shape[1]
    x = params["tok_emb"][X] + params["pos_emb"][:t]  # (n, t, d)
    maps = []
    for p in params["blocks"]:
        maps.append(attention_weights(layernorm(x, p["ln1"]), p["attn"], spec.n_heads))
        x = block(x, p, spec)
    return maps
