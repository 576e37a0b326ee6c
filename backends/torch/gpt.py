"""PyTorch transformer: the tiny GPT as torch users write it (nanoGPT's shape).

`nn.Embedding`, `nn.LayerNorm`, explicit q/k/v/output `nn.Linear` projections, a masked softmax,
and autograd for the whole backward, which backends/numpy/gpt.py writes out piece by piece. The same
order as there: embedding, layer norm, attention, the MLP, the block, the model and its loss.

At the border, as for the MLP: `nn.Linear` stores weights as (out, in), the canonical layout is
(in, out), so `GPT.canonical()` says which tensor is which canonical array and whether it is
transposed; backend.py converts with it, once per call or run.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from backends.torch.mlp import ACTIVATIONS  # the same activations as the MLP (GELU: exact, nanoGPT's)
from shared.spec import LAYERNORM_EPS, GPTSpec


class CausalSelfAttention(nn.Module):
    """softmax(q·kᵀ/√d_head + causal mask)·v over h heads, then the output projection."""

    def __init__(self, spec: GPTSpec, dtype: torch.dtype) -> None:
        super().__init__()
        d = spec.d_model
        self.n_heads = spec.n_heads
        self.q, self.k, self.v = (nn.Linear(d, d, dtype=dtype) for _ in range(3))
        self.o = nn.Linear(d, d, dtype=dtype)
        self.keep_weights: list = []  # functions called with P on every forward (see attention_maps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        h, dh = self.n_heads, d // self.n_heads
        # head j takes columns j·dh … (j+1)·dh − 1: view splits the last axis exactly that way
        q = self.q(x).view(n, t, h, dh).transpose(1, 2)  # (n, h, t, dh)
        k = self.k(x).view(n, t, h, dh).transpose(1, 2)  # (n, h, t, dh)
        v = self.v(x).view(n, t, h, dh).transpose(1, 2)  # (n, h, t, dh)
        S = q @ k.transpose(-2, -1) / math.sqrt(dh)  # (n, h, t, t)
        future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)  # key j > query i; the diagonal stays
        P = torch.softmax(S.masked_fill(future, float("-inf")), dim=-1)  # (n, h, t, t)
        for keep in self.keep_weights:  # attention_maps' callbacks (none while training)
            keep(P)
        y = (P @ v).transpose(1, 2).reshape(n, t, d)  # heads side by side again: (n, t, d)
        # (torch's fused F.scaled_dot_product_attention(q, k, v, is_causal=True) computes the same
        # softmax(S)·v; it is written out here so it reads like the other two backends.)
        return self.o(y)


class MLP(nn.Module):
    def __init__(self, spec: GPTSpec, dtype: torch.dtype) -> None:
        super().__init__()
        self.fc = nn.Linear(spec.d_model, spec.d_ff, dtype=dtype)
        self.act = ACTIVATIONS[spec.activation]()
        self.proj = nn.Linear(spec.d_ff, spec.d_model, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.fc(x)))  # (n, t, d)


class Block(nn.Module):
    """Pre-LN: x + attn(ln1(x)), then + mlp(ln2(x))."""

    def __init__(self, spec: GPTSpec, dtype: torch.dtype) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(spec.d_model, eps=LAYERNORM_EPS, dtype=dtype)
        self.attn = CausalSelfAttention(spec, dtype)
        self.ln2 = nn.LayerNorm(spec.d_model, eps=LAYERNORM_EPS, dtype=dtype)
        self.mlp = MLP(spec, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Token and position embeddings, n_layers blocks, a final LayerNorm, the head: logits (n, t, V)."""

    def __init__(self, spec: GPTSpec, dtype: torch.dtype) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(spec.vocab_size, spec.d_model, dtype=dtype)
        self.pos_emb = nn.Embedding(spec.seq_len, spec.d_model, dtype=dtype)
        self.blocks = nn.ModuleList(Block(spec, dtype) for _ in range(spec.n_layers))
        self.ln_f = nn.LayerNorm(spec.d_model, eps=LAYERNORM_EPS, dtype=dtype)
        self.head = nn.Linear(spec.d_model, spec.vocab_size, dtype=dtype)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        t = X.shape[1]
        x = self.tok_emb(X) + self.pos_emb(torch.arange(t, device=X.device))  # (n, t, d)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))  # (n, t, V)

    def canonical(self) -> dict[str, tuple[torch.Tensor, bool]]:
        """Canonical name -> (this module's tensor, whether it is stored transposed)."""
        out: dict[str, tuple[torch.Tensor, bool]] = {
            "tok_emb": (self.tok_emb.weight, False),
            "pos_emb": (self.pos_emb.weight, False),
        }
        for l, block in enumerate(self.blocks):
            b = f"blocks[{l}]"
            for ln in ("ln1", "ln2"):
                norm = getattr(block, ln)
                out[f"{b}.{ln}.g"], out[f"{b}.{ln}.b"] = (norm.weight, False), (norm.bias, False)
            for proj in ("q", "k", "v", "o"):
                linear = getattr(block.attn, proj)
                out[f"{b}.attn.W{proj}"], out[f"{b}.attn.b{proj}"] = (linear.weight, True), (linear.bias, False)
            for i, linear in ((1, block.mlp.fc), (2, block.mlp.proj)):
                out[f"{b}.mlp.W{i}"], out[f"{b}.mlp.b{i}"] = (linear.weight, True), (linear.bias, False)
        out["ln_f.g"], out["ln_f.b"] = (self.ln_f.weight, False), (self.ln_f.bias, False)
        out["head.W"], out["head.b"] = (self.head.weight, True), (self.head.bias, False)
        return out


def attention_maps(model: GPT, X: torch.Tensor) -> list[torch.Tensor]:
    """Every block's attention probabilities (n, h, t, t), kept as the model's forward computes them
    (P is not a module's output, so a forward hook cannot see it: each attention calls back with it)."""
    maps: list[torch.Tensor] = []
    for block in model.blocks:
        block.attn.keep_weights.append(lambda P: maps.append(P.detach()))
    try:
        with torch.no_grad():
            model(X)
    finally:
        for block in model.blocks:
            block.attn.keep_weights.clear()
    return maps


def softmax_ce(logits: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Mean softmax cross-entropy over all n·t positions (F.cross_entropy wants (N, V) and (N,))."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), Y.reshape(-1))
