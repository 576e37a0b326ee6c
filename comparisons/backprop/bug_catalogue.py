"""The bug catalogue: ten classic backprop bugs, each the one wrong line a learner writes, and the
switch that turns one on in the NumPy backend.

`switched_on(name)` is a context manager that replaces one function of backends/numpy/mlp.py (or optim.py) (a
module global, an ACTIVATIONS or LOSSES entry, an optimizer method) and puts the original back in
`finally`: no file is edited, and nothing stays switched on after the `with` block, even when it
raises. While a bug is on, the NumPy engine's fast path (train.plain_mlp_grads, which calls mlp.py's
activations and losses but not linear_*, matmul, total or mlp_forward/backward) is off, on every
NumPy backend whatever its fast_path, so train runs the bug too. The GPT's NumPy blocks look
activations up in the same ACTIVATIONS table, so an activation bug reaches them too; the catalogue's
networks are all MLPs.

This module holds data and the switch only; `python -m comparisons bugs` (comparisons/bugs.py) runs
the checks on each bug, and `python -m comparisons gradcheck --bug NAME` one gradient check.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from backends.numpy import mlp as nb
from backends.numpy import optim as nopt
from backends.numpy.backend import NumpyBackend
from shared.optim import SGD, Adam, Optimizer
from shared.spec import MLPSpec

# ============================================================================ the switch


class Patches:
    """Replacements made while a bug is on, undone in reverse order by `restore`."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def setattr(self, owner, name: str, value) -> None:
        old = getattr(owner, name)
        self._undo.append(lambda: setattr(owner, name, old))
        setattr(owner, name, value)

    def setitem(self, table: dict, key: str, value) -> None:
        old = table[key]
        self._undo.append(lambda: table.__setitem__(key, old))
        table[key] = value

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()


_active: list[str] = []  # the bug switched on now, if any


@contextmanager
def switched_on(name: str) -> Iterator[Bug]:
    """Switch on the bug `name` in backends/numpy/mlp.py (or optim.py) for the body of the `with`; the original
    functions are back afterwards, whatever happens inside. One bug at a time."""
    if name not in BUGS:
        raise ValueError(f"unknown bug {name!r}; expected one of {', '.join(BUGS)}")
    if _active:
        raise RuntimeError(f"the bug {_active[0]!r} is already switched on: one at a time")
    patches = Patches()
    _active.append(name)
    try:
        # The fast path steps around linear_*, matmul and mlp_*: off for every instance, whatever its fast_path.
        patches.setattr(NumpyBackend, "_plain_mlp_grads", lambda self, state: None)
        BUGS[name].install(patches)
        yield BUGS[name]
    finally:
        patches.restore()
        _active.clear()


# ============================================================================ the bugs, each one wrong line


def _dropped_transpose(p: Patches) -> None:
    def linear_backward(dZ, X, W, need_dX=True):
        dX = dZ @ W if need_dX else None  # BUG: W instead of W.T (the shapes fit: W is square)
        return dX, X.T @ dZ, dZ.sum(axis=0)

    p.setattr(nb, "linear_backward", linear_backward)


def _db_mean(p: Patches) -> None:
    def linear_backward(dZ, X, W, need_dX=True):
        dX = dZ @ W.T if need_dX else None
        return dX, X.T @ dZ, dZ.mean(axis=0)  # BUG: the bias is added to every row: its gradient is the sum

    p.setattr(nb, "linear_backward", linear_backward)


def _missing_1_over_n(p: Patches) -> None:
    def bce_backward(z, y):
        return nb.sigmoid_forward(z) - y  # BUG: the loss is a mean, so its gradient divides by n

    p.setitem(nb.LOSSES, "bce", (nb.bce_forward, bce_backward))


def _softmax_no_onehot(p: Patches) -> None:
    def softmax_ce_backward(z, y):
        return np.exp(nb._log_softmax(z)) / len(z)  # BUG: softmax(z) without subtracting onehot(y)

    p.setitem(nb.LOSSES, "softmax_ce", (nb.softmax_ce_forward, softmax_ce_backward))


def _tanh_prime_from_z(p: Patches) -> None:
    def tanh_backward(dA, Z, A):
        return dA * (1 - Z * Z)  # BUG: tanh′(Z) = 1 − tanh²Z = 1 − A², not 1 − Z²

    p.setitem(nb.ACTIVATIONS, "tanh", (nb.tanh_forward, tanh_backward))


def _sigmoid_prime_from_z(p: Patches) -> None:
    def sigmoid_backward(dA, Z, A):
        return dA * Z * (1 - Z)  # BUG: σ′(Z) = σ(Z)(1 − σ(Z)) = A(1 − A), not Z(1 − Z)

    p.setitem(nb.ACTIVATIONS, "sigmoid", (nb.sigmoid_forward, sigmoid_backward))


def _relu_prime_at_0(p: Patches) -> None:
    def relu_backward(dA, Z, A):
        return np.where(Z >= 0, dA, 0)  # BUG: Z ≥ 0 passes the gradient at Z = 0, where torch and JAX give 0

    p.setitem(nb.ACTIVATIONS, "relu", (nb.relu_forward, relu_backward))


def _approximate_gelu(p: Patches) -> None:
    c = math.sqrt(2 / math.pi)

    def gelu_forward(Z):  # BUG: the tanh approximation (jax.nn.gelu's default), not the exact Z·Φ(Z)
        return 0.5 * Z * (1 + np.tanh(c * (Z + 0.044715 * Z**3)))

    def gelu_backward(dA, Z, A):  # the right derivative of the wrong function
        t = np.tanh(c * (Z + 0.044715 * Z**3))
        return dA * (0.5 * (1 + t) + 0.5 * Z * (1 - t * t) * c * (1 + 3 * 0.044715 * Z * Z))

    p.setitem(nb.ACTIVATIONS, "gelu", (gelu_forward, gelu_backward))


def _adam_no_bias_correction(p: Patches) -> None:
    def step(self, params, grads):
        o = self.opt
        self.t += 1
        for w, g, m, v in zip(params, grads, self.m, self.v):
            m *= o.beta1
            m += (1 - o.beta1) * g
            v *= o.beta2
            v += (1 - o.beta2) * g * g
            w -= o.lr * m / (np.sqrt(v) + o.eps)  # BUG: m and v, not m̂ = m/(1−β₁ᵗ) and v̂ = v/(1−β₂ᵗ)

    p.setattr(nopt.AdamUpdate, "step", step)


def _momentum_not_reset(p: Patches) -> None:
    original = nopt.make_optimizer
    leftover: dict[tuple, list[np.ndarray]] = {}  # outlives every training run while the bug is on

    def make_optimizer(opt, params, state=None):
        update = original(opt, params, state)
        if isinstance(update, nopt.SGDUpdate) and update.velocity is not None:
            shapes = tuple(w.shape for w in params)
            update.velocity = leftover.setdefault(shapes, update.velocity)  # BUG: the last run's buffer
        return update

    p.setattr(nopt, "make_optimizer", make_optimizer)


@dataclass(frozen=True)
class Bug:
    name: str
    summary: str  # one line: what is wrong
    wrong: str  # the buggy line
    right: str  # the line in backends/numpy/mlp.py (or optim.py)
    install: Callable[[Patches], None]
    spec: MLPSpec  # a network on xor where the bug shows
    optimizer: Optimizer
    caught_by: str  # a test that fails with the bug on (tests/comparisons/test_watch_backprop.py checks each)
    lesson: str  # what the checks show, and why


TANH = MLPSpec((2, 4, 1), "tanh", "bce")
BUGS: dict[str, Bug] = {
    b.name: b
    for b in [
        Bug(
            "dropped-transpose",
            "linear_backward's dL/dX = dZ·W instead of dZ·Wᵀ",
            "dX = dZ @ W",
            "dX = dZ @ W.T",
            _dropped_transpose,
            MLPSpec((2, 3, 3, 3), "tanh", "softmax_ce"),
            SGD(0.5),
            "tests/shared/test_gradcheck.py::test_two_hidden_layers_match_finite_differences[tanh-mse]",
            "Square layers let it run (a non-square W raises a shape error: the lucky case). The last layer's "
            "gradients are right, every earlier one is wrong: the error enters where dL/dX flows back.",
        ),
        Bug(
            "missing-1-over-n",
            "bce_backward returns σ(z) − y without the 1/n of the mean",
            "return sigmoid_forward(z) - y",
            "return (sigmoid_forward(z) - y) / len(z)",
            _missing_1_over_n,
            TANH,
            SGD(0.5),
            "tests/shared/test_gradcheck.py::test_two_hidden_layers_match_finite_differences[tanh-bce]",
            "Every gradient is exactly n times too large (n = 4 on xor): the same as an n-times larger "
            "learning rate, so training may even look better, until a larger batch makes it diverge.",
        ),
        Bug(
            "tanh-prime-from-z",
            "tanh′ written as 1 − Z² instead of 1 − A² (A = tanh Z)",
            "return dA * (1 - Z * Z)",
            "return dA * (1 - A * A)",
            _tanh_prime_from_z,
            TANH,
            SGD(0.5),
            "tests/shared/test_gradcheck.py::test_two_hidden_layers_match_finite_differences[tanh-mse]",
            "Close to right for small Z (1 − Z² ≈ 1 − tanh²Z near 0) and wrong in sign for |Z| > 1: the "
            "hidden-layer gradients drift from the truth as the weights grow.",
        ),
        Bug(
            "sigmoid-prime-from-z",
            "σ′ computed from Z, Z(1 − Z), instead of from A = σ(Z)",
            "return dA * Z * (1 - Z)",
            "return dA * A * (1 - A)",
            _sigmoid_prime_from_z,
            MLPSpec((2, 4, 1), "sigmoid", "bce"),
            SGD(0.5),
            "tests/shared/test_gradcheck.py::test_two_hidden_layers_match_finite_differences[sigmoid-mse]",
            "Z(1 − Z) is 0 at Z = 0, where σ′ is largest (¼), and negative for Z > 1: the hidden layer "
            "gets no gradient at init (xor's zero biases and the (0, 0) input) and the wrong one later.",
        ),
        Bug(
            "relu-prime-at-0",
            "relu′(0) taken as 1 (Z ≥ 0) instead of 0 (Z > 0)",
            "np.where(Z >= 0, dA, 0)",
            "np.where(Z > 0, dA, 0)",
            _relu_prime_at_0,
            MLPSpec((2, 4, 1), "relu", "bce"),
            SGD(0.5),
            "tests/comparisons/test_watch_backprop.py::test_relu_prime_at_zero_matches_torch_and_jax",
            "Invisible unless some Z is exactly 0, and then only a comparison with torch/JAX finds it: "
            "finite differences at a kink give ½, so they disagree with both conventions (xor's (0, 0) "
            "input with zero biases sits there). No test in the parity suite puts a Z at exactly 0.",
        ),
        Bug(
            "db-mean",
            "linear_backward's dL/db as a mean over the batch instead of a sum",
            "db = dZ.mean(axis=0)",
            "db = dZ.sum(axis=0)",
            _db_mean,
            TANH,
            SGD(0.5),
            "tests/shared/test_gradcheck.py::test_two_hidden_layers_match_finite_differences[tanh-mse]",
            "Only the biases are wrong, n times too small (the 1/n is already in dL/dZ): the weights "
            "are right, so a check that looks only at dW misses it.",
        ),
        Bug(
            "softmax-no-onehot",
            "softmax cross-entropy's gradient softmax(z)/n without subtracting the one-hot label",
            "return np.exp(_log_softmax(z)) / len(z)",
            "dz[np.arange(len(z)), y] -= 1",
            _softmax_no_onehot,
            MLPSpec((2, 4, 2), "tanh", "softmax_ce"),
            SGD(0.5),
            "tests/shared/test_gradcheck.py::test_two_hidden_layers_match_finite_differences[tanh-softmax_ce]",
            "The gradient no longer depends on the labels: training pushes every logit down alike and "
            "learns nothing (the loss stays near ln 2 on two classes).",
        ),
        Bug(
            "adam-no-bias-correction",
            "Adam's update from m and v instead of the bias-corrected m̂ and v̂",
            "p -= lr * m / (np.sqrt(v) + eps)",
            "p -= lr * (m / correction1) / (np.sqrt(v / correction2) + eps)",
            _adam_no_bias_correction,
            TANH,
            Adam(0.05),
            "tests/backends/test_optim.py::test_two_steps_follow_the_documented_update_rule[numpy-Adam(lr=0.05)]",
            "The gradients are right, so parity of the gradients and finite differences both pass: only "
            "the trained params differ. The first step is √(1−β₂)/(1−β₁) ≈ 0.32 of Adam's.",
        ),
        Bug(
            "momentum-not-reset",
            "SGD's momentum buffer kept from the previous training run instead of starting at 0",
            "velocity = leftover[shapes]",
            "velocity = [np.zeros_like(p) for p in params]",
            _momentum_not_reset,
            TANH,
            SGD(0.1, momentum=0.9),
            "tests/comparisons/test_watch_backprop.py::test_momentum_buffer_starts_at_zero_in_every_run",
            "The first run is right; the second starts with the first one's velocity. Gradients and "
            "finite differences are fine, and a test that trains once passes: only training twice finds it.",
        ),
        Bug(
            "approximate-gelu",
            "GELU's tanh approximation (jax.nn.gelu's default) instead of the exact Z·Φ(Z)",
            "0.5·Z·(1 + tanh(√(2/π)(Z + 0.044715 Z³)))",
            "Z * _std_normal_cdf(Z)",
            _approximate_gelu,
            MLPSpec((2, 4, 1), "gelu", "bce"),
            SGD(0.5),
            "tests/backends/test_parity.py::test_forward_agrees[numpy-torch-float64-3-5-4-2_gelu.gelu_mse]",
            "Its derivative is right for the function it computes, so finite differences pass: only a "
            "comparison with another implementation of GELU (torch, JAX with approximate=False) finds "
            "the ~5e-4 gap in the forward pass.",
        ),
    ]
}
