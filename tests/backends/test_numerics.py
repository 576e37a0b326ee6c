"""The activations in their tails: relative accuracy where the values are tiny, not only near 0.

An error that is invisible next to 1 can be 100 % of a value like σ(−20) = 2e-9. Each test compares
a backend's activation, through its public forward pass or its ACTIVATIONS table, with a reference
computed from Python's math module in float64, and prints the worst error in units of the dtype's ε.

Where the function itself is ill-conditioned (Φ(z) for very negative z: rounding z by ½ ε moves Φ by
κ·ε/2, with κ = |z|·φ(z)/Φ(z) ≈ z²), no implementation can do better than its condition number, so the
tolerance grows with κ: the test asks for backward stability, the exact value at a z within a few ε.

Deliberate bugs these catch: σ(z) as ½(1 + tanh(z/2)) (2e-4 off at z = −10 in float32, exactly 0
below z ≈ −18 where σ is 2e-9); Φ(z) as ½(1 + erf(z/√2)), in NumPy's GELU and its derivative and in
JAX's hand-written GELU derivative (1.8 % off at z = −8 in float64, 0 below z ≈ −8.3).

Findings they document: torch's float32 GELU is ½(1 + erf) too, exactly 0 from z ≈ −5.5 (true value
−6e-9 at z = −6) and 1e-6 off at z ≈ −3.5, but never more than a few ε in absolute terms, which is
what a layer of O(1) activations sees.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from backends.numpy import mlp as nb
from shared.spec import MLPSpec
from tests.conftest import backend_or_skip

# ---- tolerances, in units of the dtype's ε (relative error), each with its reason ----

SIGMOID_EPS = {
    # exp, one addition and one division, each rounded once; the float64 reference is exact at float32's scale
    "float32": 2,
    # the same three roundings, and the float64 reference (math.exp) makes as many of its own
    "float64": 4,
}
CONDITIONED_EPS = 4
"""Where the result is ill-conditioned, the allowed error is CONDITIONED_EPS·(1 + κ)·ε: each rounding of
z on the way (z/√2 inside erfc, z² inside exp), in ours and in the reference, moves the result by up to
κ·ε/2, and a few such roundings add up. Measured: at most 1.5·(1 + κ)·ε (NumPy's Φ, float64),
3.2·(1 + κ)·ε (JAX's GELU derivative, float32)."""
PHI_FLOAT32_EPS = 1
"""NumPy's float32 Φ: scipy's float32 loop runs its float64 kernel and rounds once (measured ½ ε)."""
TORCH_GELU_ABS_EPS = {"float32": 16, "float64": 2}
"""torch's GELU, absolute error in ε: measured 8.5 ε (float32, its vectorized erf near z = −3.5) and
1.05 ε (float64). 16 ε = 1.9e-6 is still 5× inside the float32 parity atol of 1e-5."""


def one_unit_net(activation: str):
    """x ↦ 1·f(1·x + 0) + 0: the net's output is the activation itself, with no rounding added."""
    spec = MLPSpec((1, 1, 1), activation, "mse")
    params = [{"W": np.ones((1, 1)), "b": np.zeros(1)}, {"W": np.ones((1, 1)), "b": np.zeros(1)}]
    return spec, params


def grid(lo: float, hi: float, num: int) -> np.ndarray:
    """Evenly spaced points that are exact in float32 and float64 alike (so both dtypes see the same z)."""
    return np.linspace(lo, hi, num).astype(np.float32).astype(np.float64)


def worst(got: np.ndarray, ref: np.ndarray, z: np.ndarray, dtype: str) -> tuple[float, float]:
    """The largest relative error |got − ref| / |ref| in units of ε, and the z where it is."""
    rel = np.abs(np.asarray(got, np.float64) - ref) / np.abs(ref) / np.finfo(dtype).eps
    i = int(np.argmax(rel))
    return float(rel[i]), float(z[i])


# ---- sigmoid ----


def sigmoid_reference(z: float) -> float:
    """σ(z) in float64 without cancellation: e = e^−|z| ≤ 1, then 1/(1 + e) or e/(1 + e)."""
    e = math.exp(-abs(z))
    return 1 / (1 + e) if z >= 0 else e / (1 + e)


def test_sigmoid_is_accurate_in_both_tails(backend_name, dtype):
    """σ over z ∈ [−80, 80], within a few ε of relative error everywhere: σ(−80) = 1.8e-35 is still a
    normal number in float32 (the smallest is 1.2e-38), so there is no excuse for 0 there. The
    ½(1 + tanh(z/2)) form computes 1 + (a number near −1), and the difference keeps only the absolute
    precision of 1: it is 2e-4 off at z = −10 in float32 and exactly 0 below z ≈ −18."""
    spec, params = one_unit_net("sigmoid")
    z = grid(-80, 80, 3201)
    got = backend_or_skip(backend_name, dtype).forward(spec, params, z[:, None])[:, 0]
    assert got.dtype == np.dtype(dtype)
    ref = np.array([sigmoid_reference(v) for v in z])
    err, where = worst(got, ref, z, dtype)
    assert err <= SIGMOID_EPS[dtype], f"{backend_name} {dtype} σ is {err:.3g} ε off at z = {where:g}"


# ---- GELU and Φ ----


def density(z: float) -> float:
    """φ(z), the standard normal density."""
    return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def cdf_reference(z: float) -> float:
    """Φ(z) = ½·erfc(−z/√2): erfc(x) for large x is tiny but computed without cancellation."""
    return 0.5 * math.erfc(-z / math.sqrt(2))


def cdf_condition(z: float) -> float:
    """κ = |z·Φ′(z)/Φ(z)| = |z|·φ(z)/Φ(z): the relative change of Φ per relative change of z (≈ z² as z → −∞)."""
    return abs(z) * density(z) / cdf_reference(z)


def slope_reference(z: float) -> float:
    """d gelu/dz = Φ(z) + z·φ(z)."""
    return cdf_reference(z) + z * density(z)


def slope_condition(z: float) -> float:
    """κ of the slope s(z) = Φ(z) + z·φ(z): |z·s′(z)/s(z)| with s′(z) = φ(z)(2 − z²) (∞ where s = 0)."""
    s = slope_reference(z)
    return abs(z * density(z) * (2 - z * z) / s) if s else math.inf


def within_condition(got, ref, kappa, z, dtype: str, what: str) -> None:
    """Every |got − ref| / |ref| ≤ CONDITIONED_EPS·(1 + κ)·ε; the message names the worst point."""
    err = np.abs(np.asarray(got, np.float64) - ref) / np.abs(ref) / np.finfo(dtype).eps  # in ε
    allowed = CONDITIONED_EPS * (1 + kappa)
    i = int(np.argmax(err / allowed))
    assert err[i] <= allowed[i], (
        f"{what} is {err[i]:.3g} ε off at z = {z[i]:g} (κ = {kappa[i]:.3g}: {allowed[i]:.3g} allowed)"
    )


# the float64 grid reaches Φ's subnormal range (Φ(−38) = 3e-316); float32's normal range ends near z = −13
CDF_GRIDS = {"float64": (-38.0, 8.0), "float32": (-14.0, 8.0)}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_numpy_normal_cdf_is_accurate_in_both_tails(dtype):
    """NumPy's Φ (used by its GELU and GELU′) against ½·erfc(−z/√2) from math, in the dtype itself.
    ½(1 + erf(z/√2)) adds 1 to a number near −1 and keeps only the absolute precision of 1: 1.8 %
    off at z = −8 in float64, exactly 0 below z ≈ −8.3 (Φ(−8.3) = 5e-17)."""
    lo, hi = CDF_GRIDS[dtype]
    rng = np.random.default_rng(0)
    z = np.concatenate([grid(lo, hi, 4601), rng.uniform(lo, hi, 2000)]).astype(dtype)
    got = nb._std_normal_cdf(z)
    assert got.dtype == np.dtype(dtype)  # computed in the dtype, not in float64 and cast
    ref = np.array([cdf_reference(float(v)) for v in z])
    normal = ref >= np.finfo(dtype).tiny  # relative error means something only for normal numbers
    if dtype == "float32":
        err, where = worst(got[normal], ref[normal], z[normal], dtype)
        assert err <= PHI_FLOAT32_EPS, f"float32 Φ is {err:.3g} ε off at z = {where:g}"
    else:
        kappa = np.array([cdf_condition(float(v)) for v in z[normal]])
        within_condition(got[normal], ref[normal], kappa, z[normal], dtype, "float64 Φ")
    # below the smallest normal number: subnormals carry fewer digits, but the value is still ≈ Φ
    assert np.abs(got[~normal] - ref[~normal]).max(initial=0) <= np.finfo(dtype).tiny


# JAX on CPU flushes subnormal intermediates to 0, which costs digits once Φ nears float32's 1.2e-38
GELU_GRIDS = {"float64": (-37.0, 8.0), "float32": (-12.0, 8.0)}


@pytest.mark.parametrize("name", ["numpy", "jax"])
def test_gelu_is_accurate_in_its_negative_tail(name, dtype):
    """GELU z·Φ(z) through the public forward pass, down to z = −37 (float64) or −12 (float32), and
    at z = −8 and −10 exactly, where Φ from ½(1 + erf) was 1.8 % and 100 % off in float64. torch is
    not here: its GELU is that ½(1 + erf) form (see the next test)."""
    spec, params = one_unit_net("gelu")
    lo, hi = GELU_GRIDS[dtype]
    z = np.concatenate([[-8.0, -10.0], grid(lo, hi, 3601)])
    got = backend_or_skip(name, dtype).forward(spec, params, z[:, None])[:, 0]
    nonzero = z != 0
    z, got = z[nonzero], got[nonzero]
    ref = np.array([v * cdf_reference(v) for v in z])
    kappa = np.array([1 + cdf_condition(v) for v in z])  # gelu′·z/gelu = 1 + z·φ/Φ
    within_condition(got, ref, kappa, z, dtype, f"{name} {dtype} GELU")


def gelu_slopes(name: str, z: np.ndarray) -> np.ndarray:
    """d gelu/dz at every z, from the backend's own GELU derivative (its ACTIVATIONS table)."""
    if name == "numpy":
        _, gelu_backward = nb.ACTIVATIONS["gelu"]
        return gelu_backward(np.ones_like(z), z, nb.ACTIVATIONS["gelu"][0](z))
    jax = pytest.importorskip("jax")
    from backends.jax import mlp as jax_mlp

    with jax.enable_x64(True):
        return np.asarray(jax.vmap(jax.grad(jax_mlp.ACTIVATIONS["gelu"]))(jax.numpy.asarray(z)))


@pytest.mark.parametrize("name", ["numpy", "jax"])
def test_gelu_derivative_is_accurate_in_its_negative_tail(name, dtype):
    """Φ(z) + z·φ(z), each backend's own written-out derivative. Φ from ½(1 + erf(z/√2)) is 0 in
    float32 from z ≈ −5.5, so the slope was z·φ(z) alone: 2.8 % off at z = −6."""
    lo, hi = GELU_GRIDS[dtype]
    z = grid(lo, hi, 3801).astype(dtype)
    got = gelu_slopes(name, z)
    assert got.dtype == np.dtype(dtype)
    ref = np.array([slope_reference(float(v)) for v in z])
    kappa = np.array([slope_condition(float(v)) for v in z])
    within_condition(got, ref, kappa, z, dtype, f"{name} {dtype} GELU′")


def test_torch_gelu_tail_is_zero_but_its_absolute_error_is_a_few_eps(dtype):
    """A finding, not a bug: torch's exact GELU (nn.GELU(), F.gelu) computes Φ as ½(1 + erf(z/√2)),
    the cancelling form, and we keep torch's own GELU rather than rewrite it. Where Φ(z) falls below
    half an ε, 1 + erf rounds to exactly 0: from z ≈ −5.5 in float32 (true GELU(−6) = −5.9e-9) and
    z ≈ −8.3 in float64 (GELU(−8) is 1.8 % off, GELU(−10) = −7.6e-23 is 0). Relative to the value
    that is 100 % wrong; relative to the O(1) activations around it, it is below a few ε, far inside
    the float32 parity tolerance (atol 1e-5): training cannot tell. (Measured on an x86 CPU: the
    largest absolute error is 1.0e-6 = 8.5 ε at z ≈ −3.5 in float32, from torch's vectorized erf, not
    from the tail; 1.05 ε in float64.) If this fails because torch's tail became accurate, the finding
    has changed: say so where it is written down (docs/LEARNINGS.md)."""
    pytest.importorskip("torch")
    spec, params = one_unit_net("gelu")
    z = np.concatenate([[-6.0, -8.0, -9.0, -10.0], grid(-40, 4, 8801)])
    got = backend_or_skip("torch", dtype).forward(spec, params, z[:, None])[:, 0].astype(np.float64)
    ref = np.array([v * cdf_reference(v) for v in z])
    zero_from = {"float32": -6.0, "float64": -9.0}[dtype]
    assert ref[list(z).index(zero_from)] != 0  # the true value there is a normal number
    assert (got[z <= zero_from] == 0).all(), f"torch's {dtype} GELU is no longer 0 for every z ≤ {zero_from:g}"
    if dtype == "float64":
        at_8 = got[1] / ref[1] - 1  # z = −8
        assert abs(at_8) > 1e-3, f"torch's float64 GELU(−8) is only {at_8:.1e} off"
    abs_err = np.abs(got - ref).max() / np.finfo(dtype).eps
    assert abs_err <= TORCH_GELU_ABS_EPS[dtype], f"torch {dtype} GELU is {abs_err:.3g} ε off (absolute)"
