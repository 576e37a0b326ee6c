"""The activations in their tails: relative accuracy where the values are tiny, not only near 0.

An error that is invisible next to 1 can be 100 % of a value like σ(−20) = 2e-9. Each test compares
a backend's activation, through its public forward pass or its ACTIVATIONS table, with a reference
computed from Python's math module in float64, and prints the worst error in units of the dtype's ε.

Deliberate bugs these catch: σ(z) as ½(1 + tanh(z/2)) (2e-4 off at z = −10 in float32, exactly 0
below z ≈ −18 where σ is 2e-9).
"""

from __future__ import annotations

import math

import numpy as np

from shared.spec import MLPSpec

from .conftest import backend_or_skip

# ---- tolerances, in units of the dtype's ε (relative error), each with its reason ----

SIGMOID_EPS = {
    # exp, one addition and one division, each rounded once; the float64 reference is exact at float32's scale
    "float32": 2,
    # the same three roundings, and the float64 reference (math.exp) makes as many of its own
    "float64": 4,
}


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
