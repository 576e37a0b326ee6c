"""The tolerance policy: every number the parity checks use, in one table, each with its reason.

Two values a, b agree when, elementwise,

    |a − b| ≤ atol + rtol · max(|a|, |b|)

(symmetric, so the order of a pair does not matter). `rtol` covers rounding that scales with the
values; `atol` covers entries near zero, where a relative error means nothing (a gradient that is
1e-17 in one backend and 0 in another agrees perfectly well).

Where the numbers come from — machine epsilon: float64 ε = 2.2e-16, float32 ε = 1.2e-7.
- The three backends do the same arithmetic in different orders (BLAS blocking, XLA fusion, which
  sum runs first), and each reordering of a sum of m terms can move it by ~m·ε relative. The small
  nets in the tests sum at most a few hundred terms, so differences are ~1e-14 in float64 and ~1e-5
  at worst in float32 (a float32 result is typically off by 1e-7..1e-6).
- Training compounds those differences step after step, so trajectory tolerances are looser and
  grow with the number of steps; Adam divides by √v̂ + ε, which amplifies tiny gradient differences
  early in training, so it gets more room than SGD in float32.
- Central finite differences with step h have truncation error ~h²·|f'''| ≈ 1e-12 and rounding error
  ~ε·|f|/h ≈ 1e-10 at h = 1e-6: hence rtol 1e-5 with a 1e-7 floor against float64 analytic gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    reason: str

    def __str__(self) -> str:
        return f"rtol {self.rtol:g} / atol {self.atol:g}"


FD_STEP = 1e-6
"""Central-difference step h for gradient checks in float64: (f(p + h) − f(p − h)) / 2h."""

TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("float64", "forward"): Tolerance(
        1e-9, 1e-11, "different summation order: ~m·ε ≈ 1e-14 for m ≤ a few hundred; 1e-9 leaves room"
    ),
    ("float64", "grads"): Tolerance(
        1e-9, 1e-11, "one backward pass: the same reordering argument as forward, a few more sums"
    ),
    ("float32", "forward"): Tolerance(
        1e-4, 1e-5, "float32 ε = 1.2e-7; reordered sums of up to a few hundred terms stay below ~1e-5"
    ),
    ("float32", "grads"): Tolerance(1e-4, 1e-5, "as forward, plus the cancellation in (σ(z) − y) and softmax − onehot"),
    ("float64", "fd"): Tolerance(
        1e-5, 1e-7, "central differences, h = 1e-6: truncation ~h² ≈ 1e-12, rounding ~ε/h ≈ 1e-10"
    ),
    ("float64", "trajectory"): Tolerance(
        1e-8, 1e-10, "hundreds of steps compound per-step differences of ~1e-15; 1e-8 after 500 steps"
    ),
    ("float32", "trajectory_sgd"): Tolerance(
        1e-4, 1e-5, "~100 float32 SGD steps: per-step rounding of ~1e-7 compounds to ~1e-5"
    ),
    ("float32", "trajectory_adam"): Tolerance(
        1e-3, 1e-4, "~50 float32 Adam steps: early steps divide by √v̂ + ε, magnifying float32 rounding"
    ),
}


def tolerance(dtype: str, kind: str) -> Tolerance:
    """The tolerance for comparing two `dtype` results of the given kind (see TOLERANCES)."""
    try:
        return TOLERANCES[(dtype, kind)]
    except KeyError:
        known = ", ".join(f"{d}/{k}" for d, k in TOLERANCES)
        raise KeyError(f"no tolerance for dtype={dtype!r}, kind={kind!r}; known: {known}") from None


@dataclass(frozen=True)
class Closeness:
    """How far apart two arrays (or params) are, and whether that is within a tolerance."""

    max_abs: float
    max_rel: float  # max over elements of |a − b| / max(|a|, |b|), 0 where both are 0
    worst: str  # where the tolerance is most exceeded (or most nearly), e.g. "layer1.W[2, 0]"
    worst_a: float
    worst_b: float
    ok: bool
    tol: Tolerance

    def message(self, what: str) -> str:
        verdict = "within" if self.ok else "EXCEEDS"
        return (
            f"{what}: max |a−b| = {self.max_abs:.3g}, max rel = {self.max_rel:.3g}; "
            f"worst at {self.worst} (a = {self.worst_a!r}, b = {self.worst_b!r}), {verdict} {self.tol}"
        )


def closeness(a, b, tol: Tolerance, names: list[str] | None = None) -> Closeness:
    """Compare two arrays, or two params lists (then `names` labels the arrays, e.g. 'layer0.W')."""
    if isinstance(a, list):
        parts_a = [np.asarray(layer[k], np.float64) for layer in a for k in ("W", "b")]
        parts_b = [np.asarray(layer[k], np.float64) for layer in b for k in ("W", "b")]
        names = names or [f"layer{l}.{k}" for l in range(len(a)) for k in ("W", "b")]
    else:
        parts_a, parts_b, names = [np.asarray(a, np.float64)], [np.asarray(b, np.float64)], names or [""]
    worst_excess, best = -np.inf, None
    max_abs = max_rel = 0.0
    for name, pa, pb in zip(names, parts_a, parts_b):
        if pa.shape != pb.shape:
            raise ValueError(f"cannot compare {name or 'arrays'}: shapes {pa.shape} and {pb.shape} differ")
        if pa.size == 0:
            continue
        diff = np.abs(pa - pb)
        scale = np.maximum(np.abs(pa), np.abs(pb))
        rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
        excess = diff - (tol.atol + tol.rtol * scale)  # > 0 where the tolerance is exceeded
        i = np.unravel_index(np.argmax(excess), excess.shape)
        max_abs, max_rel = max(max_abs, float(diff.max())), max(max_rel, float(rel.max()))
        if excess[i] > worst_excess:
            worst_excess = float(excess[i])
            index = f"[{', '.join(map(str, i))}]" if pa.ndim else ""
            best = (f"{name}{index}" or "scalar", float(pa[i]), float(pb[i]))
    where, wa, wb = best if best else ("(empty)", 0.0, 0.0)
    return Closeness(max_abs, max_rel, where, wa, wb, bool(worst_excess <= 0), tol)
