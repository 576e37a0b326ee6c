"""The tolerance policy: every number the parity checks use, in one table, each with its reason.

Two values a, b agree when, elementwise,

    |a − b| ≤ atol + rtol · max(|a|, |b|)

(symmetric, so the order of a pair does not matter). `rtol` covers rounding that scales with the
values; `atol` covers entries near zero, where a relative error means nothing (a gradient that is
1e-17 in one backend and 0 in another agrees perfectly well).

Where the numbers come from — machine epsilon: float64 ε = 2.2e-16, float32 ε = 1.2e-7 (and the half
formats' below the table: bfloat16 ε = 7.8e-3, float16 ε = 9.8e-4).
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

from shared.params import named_leaves
from shared.validation import numpy_dtype, split_format


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

# The half formats: ε = 2⁻⁷ = 7.8e-3 (bfloat16, 8 bits of mantissa) and 2⁻¹⁰ = 9.8e-4 (float16). Every
# backend rounds each elementwise result to the format and accumulates its sums in float32 (NumPy
# explicitly: backends/numpy/mlp.py's matmul, total and mean), so two backends differ by a rounding or
# two of each intermediate. Measured on 3→16→8→k MLPs over 32 samples, every pair of backends agrees
# within rtol ε, atol ε (forward) and rtol 2ε, atol ε/4 (gradients); the table leaves 4× that. Mixed
# precision (float32 params and update, half-format compute) is held to the same forward and gradient
# tolerances, and its trajectories to trajectory_mixed. Training in a pure half format (SGD only:
# shared.precision says why not Adam) is held to trajectory_sgd over a few steps, no more.
for _name, _eps in (("bfloat16", 2.0**-7), ("float16", 2.0**-10)):
    TOLERANCES[(_name, "forward")] = Tolerance(
        4 * _eps, 2 * _eps, f"{_name} ε = {_eps:.2g}: a rounding or two per op; measured pairs need rtol ε, atol ε"
    )
    TOLERANCES[(_name, "trajectory_mixed")] = Tolerance(
        4 * _eps,
        10 * _eps,
        f"~100 mixed-precision steps (SGD, momentum, Adam): float32 params, each step's {_name} gradients "
        "a rounding apart; measured pairs (3→16→8→2, seeds 0–3) end at most 5ε apart",
    )
    TOLERANCES[(_name, "grads")] = Tolerance(
        8 * _eps, 2 * _eps, f"{_name} ε = {_eps:.2g}: longer chains backward; measured pairs need rtol 2ε, atol ε/4"
    )
    TOLERANCES[(_name, "trajectory_sgd")] = Tolerance(
        8 * _eps,
        8 * _eps,
        f"~10 SGD steps in pure {_name} (params and momentum in the format): torch rounds each update once, "
        "NumPy and JAX twice (see backends/*/optim.py); measured pairs (3→16→8→k, 5 cases × 3 seeds, plain, "
        "momentum, Nesterov + wd) need atol = rtol = 0.9ε (bfloat16), 3.2ε (float16). Longer runs separate: "
        "22ε after 20 minibatch steps, 52ε–142ε after 100",
    )


def tolerance(dtype: str, kind: str) -> Tolerance:
    """The tolerance for comparing two `dtype` results of the given kind (see TOLERANCES)."""
    try:
        return TOLERANCES[(dtype, kind)]
    except KeyError:
        known = ", ".join(f"{d}/{k}" for d, k in TOLERANCES)
        raise KeyError(f"no tolerance for dtype={dtype!r}, kind={kind!r}; known: {known}") from None


def trajectory_kind(dtype: str, optimizer) -> str:
    """Which trajectory tolerance two runs of `optimizer` in `dtype` are held to: float64 has one;
    float32 Adam (and AdamW) gets more room than float32 SGD (see TOLERANCES); a mixed-precision
    format ('bfloat16-mixed') has its own, whatever the optimizer."""
    if split_format(dtype)[1] == "mixed":
        return "trajectory_mixed"
    if dtype == "float64":
        return "trajectory"
    name = optimizer if isinstance(optimizer, str) else type(optimizer).__name__.lower()
    return "trajectory_adam" if name.startswith("adam") else "trajectory_sgd"


def trajectory_tolerance(dtype: str, optimizer) -> Tolerance:
    """The tolerance for two whole training runs (an Optimizer, or its name: 'sgd', 'adam', ...), in a
    dtype or a format ('bfloat16-mixed': the half format's trajectory_mixed)."""
    return tolerance(split_format(dtype)[0], trajectory_kind(dtype, optimizer))


def _flat(x) -> np.ndarray:
    """An array, or every array of a params tree (list/dict) in order, as one float64 vector."""
    if isinstance(x, (list, dict)):
        return np.concatenate([np.ravel(v) for _, v in named_leaves(x)]).astype(np.float64)
    return np.ravel(np.asarray(x, np.float64))


def relative_gap(a, b) -> float:
    """max|a − b| / max|b| over every entry: how far a (an array or params tree) ends from b, at b's scale."""
    fa, fb = _flat(a), _flat(b)
    return float(np.abs(fa - fb).max() / np.abs(fb).max())


def gap_in_eps(a, b, dtype: str) -> float:
    """max|a − b| in units of ε·max(|a|, |b|), ε the machine epsilon of `dtype`: how many roundings
    apart two results are at their own scale. a and b are arrays or params trees of the same
    structure; infinities in the same places (a causal mask's −inf) count as equal; a zero gap is 0."""
    a, b = _flat(a), _flat(b)
    if a.shape != b.shape or not np.array_equal(np.isinf(a), np.isinf(b)):
        return float("inf")
    a, b = np.where(np.isinf(a), 0.0, a), np.where(np.isinf(b), 0.0, b)
    diff = float(np.abs(a - b).max(initial=0.0))
    eps = float(np.finfo(numpy_dtype(dtype) if isinstance(dtype, str) else dtype).eps)  # (bfloat16: ml_dtypes')
    scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0))) * eps
    return 0.0 if diff == 0 else (diff / scale if scale > 0 else float("inf"))


@dataclass(frozen=True)
class Closeness:
    """How far apart two arrays (or params) are, and whether that is within a tolerance.

    A non-finite entry never agrees with anything, itself included: NaN, inf and −inf on either side
    make `ok` False (inf − inf is NaN, and NaN compares False with every bound, so a check written
    as `gap > tol` would silently pass them). `worst` then names the first such entry."""

    max_abs: float  # NaN when a non-finite entry makes the gap undefined
    max_rel: float  # max over elements of |a − b| / max(|a|, |b|), 0 where both are 0
    worst: str  # where the tolerance is most exceeded (or most nearly), e.g. "layer1.W[2, 0]"
    worst_a: float
    worst_b: float
    ok: bool
    tol: Tolerance
    n_nonfinite: int = 0  # entries where either side is NaN or ±inf

    def message(self, what: str) -> str:
        if self.n_nonfinite:
            return (
                f"{what}: {self.n_nonfinite} entries are not finite; first at {self.worst} "
                f"(a = {self.worst_a!r}, b = {self.worst_b!r}), EXCEEDS {self.tol}"
            )
        verdict = "within" if self.ok else "EXCEEDS"
        return (
            f"{what}: max |a−b| = {self.max_abs:.3g}, max rel = {self.max_rel:.3g}; "
            f"worst at {self.worst} (a = {self.worst_a!r}, b = {self.worst_b!r}), {verdict} {self.tol}"
        )


def _parts(a, b) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """Names and float64 arrays of two params lists (or two arrays), after checking that their
    structure matches: same number of layers, same keys, same shapes. Never cut to the shorter."""
    tree_a, tree_b = isinstance(a, (list, dict)), isinstance(b, (list, dict))
    if tree_a != tree_b:
        raise TypeError(
            "cannot compare a params list with an array: pass two params lists or two arrays; "
            f"got {type(a).__name__} and {type(b).__name__}"
        )
    if not tree_a:
        pa, pb = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if pa.shape != pb.shape:
            raise ValueError(f"cannot compare arrays: shapes {pa.shape} and {pb.shape} differ")
        return [""], [pa], [pb]
    if isinstance(a, dict) or isinstance(b, dict):  # a GPT's nested params: compare leaf by leaf, by name
        leaves_a, leaves_b = named_leaves(a), named_leaves(b)
        names_a, names_b = [n for n, _ in leaves_a], [n for n, _ in leaves_b]
        if names_a != names_b:
            only = sorted(set(names_a) ^ set(names_b))
            raise ValueError(f"cannot compare params: their structures differ (e.g. at {', '.join(only[:3])})")
        for (name, x), (_, y) in zip(leaves_a, leaves_b):
            if np.shape(x) != np.shape(y):
                raise ValueError(f"cannot compare params: {name} has shapes {np.shape(x)} and {np.shape(y)}")
        return (
            names_a,
            [np.asarray(x, np.float64) for _, x in leaves_a],
            [np.asarray(y, np.float64) for _, y in leaves_b],
        )
    if len(a) != len(b):
        raise ValueError(f"cannot compare params: {len(a)} layers and {len(b)} layers")
    names, parts_a, parts_b = [], [], []
    for l, (la, lb) in enumerate(zip(a, b)):
        if set(la) != set(lb):
            raise ValueError(f"cannot compare params: layer{l} has keys {sorted(la)} and {sorted(lb)}")
        for k in sorted(la, key=lambda k: (k != "W", k)):  # W before b, as everywhere
            pa, pb = np.asarray(la[k], np.float64), np.asarray(lb[k], np.float64)
            if pa.shape != pb.shape:
                raise ValueError(f"cannot compare params: layer{l}.{k} has shapes {pa.shape} and {pb.shape}")
            names.append(f"layer{l}.{k}")
            parts_a.append(pa)
            parts_b.append(pb)
    return names, parts_a, parts_b


def closeness(a, b, tol: Tolerance, names: list[str] | None = None) -> Closeness:
    """Compare two arrays, or two params lists (then `names` may relabel the arrays, e.g. 'layer0.W').
    Structures must match (ValueError / TypeError naming the mismatch); non-finite entries fail."""
    default_names, parts_a, parts_b = _parts(a, b)
    names = names or default_names
    worst_excess, best = -np.inf, None
    max_abs = max_rel = 0.0
    n_nonfinite, first_nonfinite = 0, None
    for name, pa, pb in zip(names, parts_a, parts_b):
        if pa.size == 0:
            continue
        bad = ~(np.isfinite(pa) & np.isfinite(pb))
        if bad.any():
            n_nonfinite += int(bad.sum())
            if first_nonfinite is None:
                i = tuple(int(j) for j in np.argwhere(bad)[0]) if pa.ndim else ()
                first_nonfinite = (_label(name, i, pa.ndim), float(pa[i]), float(pb[i]))
            continue
        diff = np.abs(pa - pb)
        scale = np.maximum(np.abs(pa), np.abs(pb))
        rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
        excess = diff - (tol.atol + tol.rtol * scale)  # > 0 where the tolerance is exceeded
        i = np.unravel_index(np.argmax(excess), excess.shape)
        max_abs, max_rel = max(max_abs, float(diff.max())), max(max_rel, float(rel.max()))
        if excess[i] > worst_excess:
            worst_excess = float(excess[i])
            best = (_label(name, i, pa.ndim), float(pa[i]), float(pb[i]))
    if first_nonfinite is not None:
        return Closeness(np.nan, np.nan, *first_nonfinite, ok=False, tol=tol, n_nonfinite=n_nonfinite)
    where, wa, wb = best if best else ("(empty)", 0.0, 0.0)
    return Closeness(max_abs, max_rel, where, wa, wb, bool(worst_excess <= 0), tol)


def _label(name: str, index: tuple, ndim: int) -> str:
    """'layer1.W[2, 0]', '[3]' for an unnamed array, 'scalar' for an unnamed 0-d one."""
    index_text = "[" + ", ".join(map(str, index)) + "]" if ndim else ""
    return f"{name}{index_text}" or "scalar"
