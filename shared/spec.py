"""MLPSpec: what network to build, independent of any framework.

One spec drives all three backends. It is a frozen (hashable) dataclass, so JAX can take it as a
static argument to `jit` and every backend can cache what it builds from it.

    spec = MLPSpec(sizes=(2, 4, 1), activation="tanh", loss="bce")

The network is `len(sizes) - 1` affine layers. Every layer but the last is followed by its hidden
activation; the last layer is linear and returns logits (the loss applies sigmoid/softmax itself).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

ACTIVATIONS = ("identity", "tanh", "sigmoid", "relu", "gelu")
"""Hidden activations, the same in every backend. `gelu` is the exact form x·Φ(x) (with erf)."""

LOSSES = ("mse", "bce", "softmax_ce")
"""Losses, each a mean over the batch:
- `mse`: mean over all elements of (y_hat − y)²; y has exactly the output's shape.
- `bce`: binary cross-entropy on logits; y is (n, 1) with values in [0, 1]; output width 1.
- `softmax_ce`: softmax cross-entropy on logits; y is (n,) integer labels in [0, classes).
"""


def _name_error(arg: str, value: object, valid: tuple[str, ...]) -> ValueError:
    return ValueError(f"{arg} must be one of {', '.join(map(repr, valid))}; got {value!r}")


@dataclass(frozen=True)
class MLPSpec:
    """A multi-layer perceptron: layer widths, hidden activation(s), loss."""

    sizes: tuple[int, ...]
    """Widths from input to output, e.g. (2, 4, 1): 2 features, one hidden layer of 4, 1 output."""

    activation: str | tuple[str, ...] = "tanh"
    """One name for every hidden layer, or a sequence with one name per hidden layer."""

    loss: str = "mse"
    """One of LOSSES."""

    def __post_init__(self) -> None:
        # Normalise lists to tuples first, so the spec stays hashable (a static arg to jax.jit).
        sizes = self.sizes
        if isinstance(sizes, np.ndarray) and sizes.ndim == 1:
            sizes = sizes.tolist()
        if not isinstance(sizes, (list, tuple)):  # a set or dict would reorder the layers silently
            raise TypeError(f"sizes must be a list or tuple of layer widths like (2, 4, 1); got {sizes!r}")
        sizes = tuple(sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least 2 entries (input width, output width); got {sizes!r}")
        for i, w in enumerate(sizes):
            if isinstance(w, bool) or not isinstance(w, numbers.Integral):
                raise TypeError(f"sizes[{i}] must be a positive integer; got {w!r} in sizes={sizes!r}")
            if w <= 0:
                raise ValueError(f"sizes[{i}] must be a positive integer; got {w} in sizes={sizes!r}")
        object.__setattr__(self, "sizes", tuple(int(w) for w in sizes))

        n_hidden = len(sizes) - 2
        activation = self.activation
        if isinstance(activation, str):
            names: tuple[str, ...] = (activation,) * n_hidden
        else:
            if not isinstance(activation, (list, tuple)):
                raise TypeError(
                    f"activation must be a name (one of {', '.join(map(repr, ACTIVATIONS))}) or a list of names, "
                    f"one per hidden layer; got {activation!r} ({type(activation).__name__})"
                )
            activation = tuple(activation)
            if len(activation) != n_hidden:
                raise ValueError(
                    f"activation must be one name or {n_hidden} names (one per hidden layer of "
                    f"sizes={sizes!r}); got {len(activation)}: {activation!r}"
                )
            names = activation
        for name in (activation,) if isinstance(activation, str) else names:
            if not isinstance(name, str) or name not in ACTIVATIONS:
                raise _name_error("activation", name, ACTIVATIONS)
        object.__setattr__(self, "activation", activation)
        object.__setattr__(self, "_activations", names)

        if not isinstance(self.loss, str) or self.loss not in LOSSES:  # np.array('mse') == 'mse', but is no str
            raise _name_error("loss", self.loss, LOSSES)
        if self.loss == "bce" and sizes[-1] != 1:
            raise ValueError(
                f"loss='bce' needs one output (sizes[-1] == 1); got sizes={sizes!r}. "
                "For several classes use loss='softmax_ce'."
            )
        if self.loss == "softmax_ce" and sizes[-1] < 2:
            raise ValueError(
                f"loss='softmax_ce' needs at least 2 outputs (one logit per class); got sizes={sizes!r}. "
                "For two classes with one output use loss='bce'."
            )

    @property
    def activations(self) -> tuple[str, ...]:
        """The activation of each hidden layer, one name per hidden layer."""
        return self._activations  # type: ignore[attr-defined]

    @property
    def n_layers(self) -> int:
        """Number of affine layers (weight matrices)."""
        return len(self.sizes) - 1

    @property
    def n_features(self) -> int:
        return self.sizes[0]

    @property
    def n_outputs(self) -> int:
        return self.sizes[-1]

    @property
    def layer_shapes(self) -> tuple[tuple[int, int], ...]:
        """(fan_in, fan_out) of each layer: the canonical weight layout is (in, out)."""
        return tuple(zip(self.sizes[:-1], self.sizes[1:]))

    @property
    def n_params(self) -> int:
        return sum(i * o + o for i, o in self.layer_shapes)

    def step_flops(self, batch: int) -> int:
        """Matmul FLOPs of one training step on `batch` samples: 2·batch·fan_in·fan_out for each forward
        matmul, twice that for its backward (dL/dW and dL/dX), so 6 · batch · Σ fan_in·fan_out — minus
        the first layer's dL/dX, 2 · batch · sizes[0]·sizes[1], which no backend computes (the input
        is data). Activations, the loss and the update, O(batch · width), are left out."""
        fan_in, fan_out = self.layer_shapes[0]
        return 6 * batch * sum(i * o for i, o in self.layer_shapes) - 2 * batch * fan_in * fan_out

    def describe(self) -> str:
        """A short human label, e.g. '2→4→1 tanh, bce'."""
        acts = sorted(set(self.activations))
        act = "/".join(acts) if acts else "linear"
        return f"{'→'.join(map(str, self.sizes))} {act}, {self.loss}"


GPT_ACTIVATIONS = ("gelu", "relu", "tanh")
"""The MLP activation inside a transformer block. `gelu` is exact (erf), as in nanoGPT's nn.GELU()."""

LAYERNORM_EPS = 1e-5
"""LayerNorm's ε in every backend (torch's nn.LayerNorm default; JAX/flax would default to 1e-6)."""


@dataclass(frozen=True)
class GPTSpec:
    """A small decoder-only transformer (GPT-2's shape, without dropout or weight tying).

    x = tok_emb[X] + pos_emb[:t]; n_layers pre-LN blocks x = x + attn(ln1(x)); x = x + mlp(ln2(x));
    logits = ln_f(x)·head.W + head.b; the loss is the mean softmax cross-entropy over all n·t positions.
    Attention splits d_model into n_heads heads of d_model // n_heads consecutive columns, with a causal
    mask (position i attends to positions ≤ i) and scores scaled by 1/√(d_model // n_heads).
    """

    vocab_size: int  # V: token ids are 0 .. V−1
    seq_len: int  # T: the longest sequence (positions 0 .. T−1 have an embedding)
    d_model: int  # d: the width of the residual stream
    n_heads: int  # h: d must be divisible by h
    n_layers: int  # L: transformer blocks
    d_ff: int | None = None  # the MLP's hidden width; None means 4·d, as in GPT-2
    activation: str = "gelu"  # one of GPT_ACTIVATIONS

    def __post_init__(self) -> None:
        for name in ("vocab_size", "seq_len", "d_model", "n_heads", "n_layers", "d_ff"):
            value = getattr(self, name)
            if name == "d_ff" and value is None:
                value = 4 * self.d_model if isinstance(self.d_model, numbers.Integral) else None
                if value is None:
                    continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be a positive integer; got {value!r}")
            if value <= 0:
                raise ValueError(f"{name} must be a positive integer; got {value}")
            object.__setattr__(self, name, int(value))
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model must be divisible by n_heads (each head takes d_model // n_heads columns); "
                f"got d_model={self.d_model}, n_heads={self.n_heads}"
            )
        if not isinstance(self.activation, str) or self.activation not in GPT_ACTIVATIONS:
            raise _name_error("activation", self.activation, GPT_ACTIVATIONS)

    loss = "softmax_ce"  # a class attribute, not a field: the loss is always next-token cross-entropy

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def n_params(self) -> int:
        d, f, V, T = self.d_model, self.d_ff, self.vocab_size, self.seq_len
        block = 2 * d + (4 * d * d + 4 * d) + 2 * d + (d * f + f + f * d + d)
        return V * d + T * d + self.n_layers * block + 2 * d + d * V + V

    def step_flops(self, batch: int, t: int | None = None) -> int:
        """Matmul FLOPs of one training step on `batch` sequences of t tokens (default seq_len), forward
        ×3 for forward + backward (dL/dW and dL/dX of each matmul):
        - dense layers, per position: n_layers · (4·d² for q, k, v, o + 2·d·d_ff for the MLP) + d·V for
          the head → 6 · n · t · (L · (4d² + 2·d·d_ff) + d·V);
        - attention, per layer and sequence: q·kᵀ and P·v, 2·t²·d each over all heads, each with two
          backward matmuls → 12 · n · L · t² · d (computed in full although the mask zeroes half).
        The embedding lookup, layer norms, softmax, GELU, the loss and the update are left out."""
        t = self.seq_len if t is None else t
        d, L = self.d_model, self.n_layers
        dense = 6 * batch * t * (L * (4 * d * d + 2 * d * self.d_ff) + d * self.vocab_size)
        return dense + 12 * batch * L * t * t * d

    def describe(self) -> str:
        return (
            f"GPT V={self.vocab_size} T={self.seq_len} d={self.d_model} h={self.n_heads} "
            f"L={self.n_layers} d_ff={self.d_ff} {self.activation}"
        )


def spec_from_dict(d: dict) -> MLPSpec | GPTSpec:
    """The spec that spec_to_dict wrote (a dict with "model": "gpt" is a GPTSpec)."""
    d = dict(d)
    if d.pop("model", "mlp") == "gpt":
        return GPTSpec(**d)
    return MLPSpec(**d)


def spec_to_dict(spec) -> dict:
    """A JSON-friendly dict; spec_from_dict(d) rebuilds the spec (MLPSpec(**d) for an MLP)."""
    if isinstance(spec, GPTSpec):
        names = ("vocab_size", "seq_len", "d_model", "n_heads", "n_layers", "d_ff", "activation")
        return {"model": "gpt", **{name: getattr(spec, name) for name in names}}
    activation = spec.activation if isinstance(spec.activation, str) else list(spec.activation)
    return {"sizes": list(spec.sizes), "activation": activation, "loss": spec.loss}
