"""The benchmark workloads: four MLP sizes, from overhead-bound to compute-bound, and a tiny GPT.

Every workload is one full-batch SGD training step in float32. Each has the same interface — name,
spec, batch, label, flops_per_step, problem() — so the report treats them alike.

MLP FLOPs per step are counted the usual way for a dense layer: 2·batch·fan_in·fan_out for the
forward matmul, twice that for the backward (dL/dW and dL/dX), so 6 · batch · Σ fan_in·fan_out per
step — minus the first layer's dL/dX, 2 · batch · sizes[0] · sizes[1], which no backend computes (the
input is data; it needs no gradient). Without that correction the medium size would claim 33 % more
work than is done, and "% of peak" could pass 100 %. Activations, losses and the update are left
out: they are O(batch · width), small next to the matmuls on the larger sizes.

GPT FLOPs per step: see GPTWorkload.flops_per_step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.params import init_params
from shared.spec import GPTSpec, MLPSpec


@dataclass(frozen=True)
class Workload:
    """An MLP trained full-batch on random inputs and targets of its loss."""

    name: str
    spec: MLPSpec
    batch: int

    min_steps = 4  # the fewest steps a timed call runs (benchmarks.measure.time_runner)

    @property
    def label(self) -> str:
        """The network in a few characters, for figure ticks: 784→256→256→10."""
        return "→".join(map(str, self.spec.sizes))

    @property
    def flops_per_step(self) -> int:
        """Executed matmul FLOPs: 6 · batch · Σ fan_in·fan_out − 2 · batch · sizes[0]·sizes[1]
        (MLPSpec.step_flops, which the backends' thread policy uses too)."""
        return self.spec.step_flops(self.batch)

    def problem(self, seed: int = 0):
        """(params, X, y): float64 numpy, random inputs and targets of the spec's loss."""
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(self.batch, self.spec.n_features))
        if self.spec.loss == "softmax_ce":
            y = rng.integers(0, self.spec.n_outputs, size=self.batch)
        elif self.spec.loss == "bce":
            y = rng.integers(0, 2, size=(self.batch, 1)).astype(np.float64)
        else:
            y = rng.normal(size=(self.batch, self.spec.n_outputs))
        return init_params(self.spec, seed=seed), X, y


@dataclass(frozen=True)
class GPTWorkload:
    """A tiny GPT trained full-batch on `batch` sequences of `spec.seq_len` tokens (next-token loss)."""

    name: str
    spec: GPTSpec
    batch: int

    min_steps = 2  # a NumPy step takes ~0.15 s: two steps per timed call suffice

    @property
    def label(self) -> str:
        s = self.spec
        return f"GPT d={s.d_model} L={s.n_layers}\nT={s.seq_len} V={s.vocab_size}"

    @property
    def flops_per_step(self) -> int:
        """Executed matmul FLOPs, forward ×3 for forward + backward (dL/dW and dL/dX of each matmul):

        n = batch, t = seq_len, d = d_model, d_ff, V = vocab_size, L = n_layers.
        - dense layers, per position: L · (4·d² for q, k, v, o + 2·d·d_ff for the MLP) + d·V for the
          head; 2 FLOPs per multiply-add, ×3 → 6 · n · t · (L · (4d² + 2·d·d_ff) + d·V).
          Every dL/dX is computed: the first layers' inputs are ln1(embedding), whose gradient reaches
          the embedding tables (unlike the MLP's input, which is data).
        - attention, per layer and sequence: q·kᵀ (t×d_head by d_head×t per head, 2·t²·d over all
          heads) and P·v (2·t²·d); each has two backward matmuls (dq, dk; dP, dv) → 3 · 4·t²·d, so
          12 · n · L · t² · d. Computed in full although the causal mask zeroes half of P.
        Left out: the embedding lookup and its scatter-add, layer norms, softmax, GELU, the loss and
        the update — O(n·t·(d + d_ff + V) + n·h·t²) elementwise work, no matmul.

        For V=64, T=64, d=128, d_ff=512, L=2, n=32: 4,932,501,504 + 402,653,184 = 5,335,154,688."""
        return self.spec.step_flops(self.batch)  # the formula above, kept once in shared/spec.py

    def problem(self, seed: int = 0):
        """(params, X, Y): float64 params, int64 token ids (batch, seq_len) and their next tokens.

        Each sequence counts through the vocabulary with its own start and stride (mod V): X is the
        sequence, Y the same shifted by one. The next token follows from the two before it, so the
        loss can fall well below log V — a task with something to learn, not noise."""
        rng = np.random.default_rng(seed)
        V, t = self.spec.vocab_size, self.spec.seq_len
        start = rng.integers(0, V, size=(self.batch, 1))
        stride = rng.integers(1, V, size=(self.batch, 1))
        tokens = (start + stride * np.arange(t + 1)) % V  # (batch, t + 1)
        return init_params(self.spec, seed=seed), tokens[:, :-1].copy(), tokens[:, 1:].copy()


AnyWorkload = Workload | GPTWorkload

WORKLOADS: dict[str, AnyWorkload] = {
    "xor": Workload("xor", MLPSpec((2, 4, 1), "tanh", "bce"), 4),
    "small": Workload("small", MLPSpec((2, 16, 16, 1), "tanh", "bce"), 256),
    "medium": Workload("medium", MLPSpec((784, 256, 256, 10), "relu", "softmax_ce"), 128),
    "large": Workload("large", MLPSpec((1024, 1024, 1024, 1024), "relu", "mse"), 512),
    "gpt": GPTWorkload("gpt", GPTSpec(vocab_size=64, seq_len=64, d_model=128, n_heads=4, n_layers=2), 32),
}
QUICK_SKIPS = ("large", "gpt")  # --quick leaves these out: their steps take too long for a minute's run

LR = 1e-3  # small enough that no workload diverges on random data over thousands of steps
