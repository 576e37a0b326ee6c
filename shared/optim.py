"""Optimizer descriptions: validated, framework-free, hashable.

These only *describe* an optimizer. Each backend builds its own from the description, the way its
ecosystem does: NumPy by hand, torch with `torch.optim`, JAX with optax. Conventions follow torch:

    SGD:   g ← g + wd·p;  v ← μ·v + g;  (nesterov: g ← g + μ·v, else g ← v);  p ← p − lr·g
    Adam:  g ← g + wd·p;  m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;
           p ← p − lr · m̂ / (√v̂ + ε)   with m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ)  (ε after the square root)
    AdamW: p ← p·(1 − lr·wd), then Adam without the wd term in g (decoupled weight decay)
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

import numpy as np


def _check(name: str, value: object, ok: bool, expected: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not ok:
        raise ValueError(f"{name} must be {expected}; got {value!r}")


def _as_floats(opt: Optimizer) -> None:
    """Store every real-valued field as a Python float: numpy scalars (np.float32(0.9)) and
    fractions are accepted, then normalized, so the description serializes to JSON and every
    framework's optimizer takes it (torch refuses a numpy float32 beta)."""
    for f in fields(opt):
        value = getattr(opt, f.name)
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            object.__setattr__(opt, f.name, float(value))


@dataclass(frozen=True)
class Optimizer:
    """Base of the optimizer descriptions."""

    lr: float

    def __post_init__(self) -> None:
        _check(f"{self.name}.lr", self.lr, _real(self.lr) and self.lr > 0, "a finite number > 0")
        _as_floats(self)

    @property
    def name(self) -> str:
        return type(self).__name__

    def describe(self) -> str:
        """E.g. 'SGD(lr=0.1, momentum=0.9)': only the fields that differ from their defaults."""
        parts = [f"lr={self.lr:g}"]
        for f in fields(self)[1:]:
            value = getattr(self, f.name)
            if value != f.default:
                parts.append(f"{f.name}={value:g}" if isinstance(value, float) else f"{f.name}={value}")
        return f"{self.name}({', '.join(parts)})"

    def to_dict(self) -> dict:
        return {"name": self.name, **{f.name: getattr(self, f.name) for f in fields(self)}}

    @staticmethod
    def from_dict(d: dict) -> Optimizer:
        d = dict(d)
        cls = OPTIMIZERS[d.pop("name")]
        return cls(**d)


def _real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum and L2 weight decay."""

    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check("SGD.momentum", self.momentum, _real(self.momentum) and 0 <= self.momentum < 1, "in [0, 1)")
        if not isinstance(self.nesterov, (bool, np.bool_)):
            raise TypeError(f"SGD.nesterov must be True or False; got {self.nesterov!r}")
        object.__setattr__(self, "nesterov", bool(self.nesterov))
        if self.nesterov and self.momentum == 0:
            raise ValueError("SGD.nesterov=True needs a momentum > 0; got momentum=0")
        _check("SGD.weight_decay", self.weight_decay, _real(self.weight_decay) and self.weight_decay >= 0, "≥ 0")


@dataclass(frozen=True)
class Adam(Optimizer):
    """Adam (Kingma & Ba) with torch's conventions: ε added after √v̂; weight_decay is L2 on g."""

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for field in ("beta1", "beta2"):
            value = getattr(self, field)
            _check(f"{self.name}.{field}", value, _real(value) and 0 <= value < 1, "in [0, 1)")
        _check(f"{self.name}.eps", self.eps, _real(self.eps) and self.eps > 0, "a finite number > 0")
        wd = self.weight_decay
        _check(f"{self.name}.weight_decay", wd, _real(wd) and wd >= 0, "≥ 0")


@dataclass(frozen=True)
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): p ← p·(1 − lr·wd) before the step."""

    weight_decay: float = 0.01


OPTIMIZERS = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}


def check_optimizer_fits(opt: Optimizer, dtype: np.dtype) -> Optimizer:
    """Refuse hyperparameters that the training dtype cannot hold: lr=3.5e38 is a valid float but
    overflows float32 (torch.optim then raises a raw RuntimeError), and lr=1e-50 rounds to 0."""
    finfo = np.finfo(dtype)
    largest, smallest = float(finfo.max), float(finfo.smallest_subnormal)  # Python floats: compared exactly
    for f in fields(opt):
        value = getattr(opt, f.name)
        if isinstance(value, bool) or not isinstance(value, float) or value == 0:
            continue
        if abs(value) > largest:
            raise ValueError(
                f"{opt.name}.{f.name}={value:g} overflows {finfo.dtype} (largest finite {largest:.3g}); "
                "use a smaller value or dtype='float64'"
            )
        if abs(value) < smallest:
            raise ValueError(f"{opt.name}.{f.name}={value:g} rounds to 0 in {finfo.dtype}; use a larger value")
    return opt
