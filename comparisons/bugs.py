"""bugs: ten classic backprop bugs, switched on one at a time in the NumPy backend, and what catches them.

Each bug is the one wrong line a learner writes (a dropped transpose, a missing 1/n, tanh′ from Z...).
For each: the parity check against torch and JAX (forward, loss, gradients, params after training),
the finite-difference check, the training loss with and without the bug, and the test in tests/ that
catches it. Without --bug: the summary table; --bug NAME: one bug in detail, with its loss curves.

The switch is a context manager, `switched_on(name)`, that replaces one function of
backends/numpy_backend.py (a module global, an ACTIVATIONS or LOSSES entry, an optimizer method) and
puts the original back in `finally`: no file is edited, and nothing stays switched on after the
`with` block, even when it raises. Only the MLP is affected (numpy_transformer has its own copies).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

import numpy as np

from backends import get_backend
from backends import numpy_backend as nb
from comparisons.common import Problem, installed, make_parser, note, publish, pyplot, step_count
from shared.data import make_dataset
from shared.optim import SGD, Adam, Optimizer
from shared.params import init_params
from shared.spec import MLPSpec
from shared.tolerances import FD_STEP, closeness, tolerance

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
    """Switch on the bug `name` in backends/numpy_backend.py for the body of the `with`; the original
    functions are back afterwards, whatever happens inside. One bug at a time."""
    if name not in BUGS:
        raise ValueError(f"unknown bug {name!r}; expected one of {', '.join(BUGS)}")
    if _active:
        raise RuntimeError(f"the bug {_active[0]!r} is already switched on: one at a time")
    patches = Patches()
    _active.append(name)
    try:
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

    p.setattr(nb.AdamUpdate, "step", step)


def _momentum_not_reset(p: Patches) -> None:
    original = nb.make_optimizer
    leftover: dict[tuple, list[np.ndarray]] = {}  # outlives every training run while the bug is on

    def make_optimizer(opt, params):
        update = original(opt, params)
        if isinstance(update, nb.SGDUpdate) and update.velocity is not None:
            shapes = tuple(w.shape for w in params)
            update.velocity = leftover.setdefault(shapes, update.velocity)  # BUG: the last run's buffer
        return update

    p.setattr(nb, "make_optimizer", make_optimizer)


@dataclass(frozen=True)
class Bug:
    name: str
    summary: str  # one line: what is wrong
    wrong: str  # the buggy line
    right: str  # the line in backends/numpy_backend.py
    install: Callable[[Patches], None]
    spec: MLPSpec  # a network on xor where the bug shows
    optimizer: Optimizer
    caught_by: str  # a test that fails with the bug on (tests/test_watch_backprop.py checks each)
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
            "tests/test_gradcheck.py::test_two_hidden_layers_match_finite_differences[tanh-mse]",
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
            "tests/test_gradcheck.py::test_two_hidden_layers_match_finite_differences[tanh-bce]",
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
            "tests/test_gradcheck.py::test_two_hidden_layers_match_finite_differences[tanh-mse]",
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
            "tests/test_gradcheck.py::test_two_hidden_layers_match_finite_differences[sigmoid-mse]",
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
            "tests/test_watch_backprop.py::test_relu_prime_at_zero_matches_torch_and_jax",
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
            "tests/test_gradcheck.py::test_two_hidden_layers_match_finite_differences[tanh-mse]",
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
            "tests/test_gradcheck.py::test_two_hidden_layers_match_finite_differences[tanh-softmax_ce]",
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
            "tests/test_optim.py::test_two_steps_follow_the_documented_update_rule[numpy-Adam(lr=0.05)]",
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
            "tests/test_watch_backprop.py::test_momentum_buffer_starts_at_zero_in_every_run",
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
            "tests/test_parity.py::test_forward_agrees[numpy-torch-float64-3-5-4-2_gelu.gelu_mse]",
            "Its derivative is right for the function it computes, so finite differences pass: only a "
            "comparison with another implementation of GELU (torch, JAX with approximate=False) finds "
            "the ~5e-4 gap in the forward pass.",
        ),
    ]
}

# ============================================================================ what the checks show


def problem_for(bug: Bug, steps: int, seed: int = 0) -> Problem:
    """xor (the exact 4 points), the bug's network and optimizer, init from `seed`."""
    data = make_dataset("xor", seed=seed)
    params = init_params(bug.spec, seed=seed)
    return Problem(data, bug.spec, params, data.X, data.targets(bug.spec), bug.optimizer, steps, seed, None)


@dataclass(frozen=True)
class Check:
    quantity: str  # forward, loss, grads, params after N steps
    other: str  # the backend NumPy is compared with
    max_abs: float
    worst: str
    ok: bool


@cache
def _reference(name: str, spec: MLPSpec, optimizer: Optimizer, steps: int, seed: int):
    """A correct backend's forward, loss, grads and trained params on xor (no bug reaches torch or JAX)."""
    data = make_dataset("xor", seed=seed)
    params, y = init_params(spec, seed=seed), data.targets(spec)
    be = get_backend(name, "float64")
    loss, grads = be.loss_and_grads(spec, params, data.X, y)
    trained = be.train(spec, params, data.X, y, optimizer, steps, on_nonfinite="stop").params
    return be.forward(spec, params, data.X), loss, grads, trained


def numpy_results(problem: Problem):
    """NumPy's forward, loss, grads and params after training twice from the same init (the second run
    is the one compared: a bug that leaks state from run to run shows only there), plus the losses."""
    be = get_backend("numpy", "float64")
    spec, params, X, y = problem.spec, problem.params, problem.X, problem.y
    loss, grads = be.loss_and_grads(spec, params, X, y)
    with np.errstate(all="ignore"):
        runs = [be.train(spec, params, X, y, problem.optimizer, problem.steps, on_nonfinite="stop") for _ in range(2)]
    return be.forward(spec, params, X), loss, grads, runs[1].params, runs[1].losses


def parity_checks(problem: Problem, others: list[str], bug: str | None = None) -> tuple[list[Check], np.ndarray]:
    """NumPy (with `bug` switched on, or not) against each of `others`, float64 tolerances; and the
    NumPy losses of the (second) training run."""
    if bug is None:
        mine = numpy_results(problem)
    else:
        with switched_on(bug):
            mine = numpy_results(problem)
    checks = []
    for other in others:
        ref = _reference(other, problem.spec, problem.optimizer, problem.steps, problem.seed)
        for quantity, a, b, kind in [
            ("forward", mine[0], ref[0], "forward"),
            ("loss", mine[1], ref[1], "grads"),
            ("grads", mine[2], ref[2], "grads"),
            (f"params after {problem.steps} steps", mine[3], ref[3], "trajectory"),
        ]:
            c = closeness(a, b, tolerance("float64", kind))
            checks.append(Check(quantity, other, c.max_abs, c.worst, c.ok))
    return checks, mine[4]


def fd_check(problem: Problem, bug: str | None = None):
    """NumPy's gradient (with `bug` on, or not) against central differences of its own forward pass:
    what a learner's own gradient check would say. Returns the Closeness."""
    from comparisons.gradcheck import finite_differences  # noqa: PLC0415 (gradcheck imports this module)

    def run():
        _, grads = get_backend("numpy", "float64").loss_and_grads(problem.spec, problem.params, problem.X, problem.y)
        return closeness(
            grads,
            finite_differences(problem.spec, problem.params, problem.X, problem.y, FD_STEP),
            tolerance("float64", "fd"),
        )

    if bug is None:
        return run()
    with switched_on(bug):
        return run()


def verdict(ok_without: bool, ok_with: bool) -> str:
    """What a check says about a bug. It *catches* the bug only if it passes without it and fails with it;
    one that fails either way (finite differences at a relu kink) *cannot tell*; one that passes with
    the bug on *misses* it."""
    if not ok_without:
        return "cannot tell"
    return "misses" if ok_with else "catches"


@dataclass
class Report:
    bug: Bug
    problem: Problem
    parity: dict[str | None, list[Check]]  # None: without the bug
    fd: dict
    losses: dict

    def parity_ok(self, with_bug: bool) -> bool:
        return all(c.ok for c in self.parity[self.bug.name if with_bug else None])

    def parity_verdict(self) -> str:
        return verdict(self.parity_ok(False), self.parity_ok(True))

    def fd_verdict(self) -> str:
        return verdict(self.fd[None].ok, self.fd[self.bug.name].ok)

    def first_failure(self) -> Check | None:
        return next((c for c in self.parity[self.bug.name] if not c.ok), None)


def examine(bug: Bug, steps: int, others: list[str]) -> Report:
    problem = problem_for(bug, steps)
    parity, fd, losses = {}, {}, {}
    for which in (None, bug.name):
        parity[which], losses[which] = parity_checks(problem, others, which)
        fd[which] = fd_check(problem, which)
    return Report(bug, problem, parity, fd, losses)


# ============================================================================ the command

WIDTH = 100  # the terminal the output must fit


def _final(losses: np.ndarray) -> str:
    return f"{losses[-1]:.3f}" if len(losses) else "–"


def summary_table(reports: list[Report]) -> str:
    header = ("bug", "parity", "first gap", "gradcheck", "final loss", "caught by")
    body = []
    for r in reports:
        fail = r.first_failure()
        diverged = "" if len(r.losses[r.bug.name]) == r.problem.steps else "↯"
        body.append(
            (
                r.bug.name,
                ("ok" if r.parity_ok(False) else "FAIL") + " → " + ("ok" if r.parity_ok(True) else "FAIL"),
                (fail.quantity.split(" after")[0].replace("params", "trained params") if fail else "none"),
                ("ok" if r.fd[None].ok else "FAIL") + " → " + ("ok" if r.fd[r.bug.name].ok else "FAIL"),
                f"{_final(r.losses[None])} → {_final(r.losses[r.bug.name])}{diverged}",
                r.bug.caught_by.split("::")[0].removeprefix("tests/").removesuffix(".py"),
            )
        )
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("─" * w for w in widths)), *(fmt.format(*b) for b in body)]
    return "\n".join(line.rstrip() for line in lines)


def detail(r: Report) -> str:
    b = r.bug
    lines = [
        f"{b.name}: {b.summary}",
        f"  wrong: {b.wrong}",
        f"  right: {b.right}",
        f"  on:    xor, {b.spec.describe()}, {b.optimizer.describe()}, {r.problem.steps} steps",
        "",
        "parity, NumPy with the bug against the others (float64 tolerances):",
    ]
    for c in r.parity[b.name]:
        mark = "ok  " if c.ok else "FAIL"
        lines.append(f"  {mark}  {c.quantity:<24} vs {c.other:<6} max |a−b| {c.max_abs:.1e}  worst at {c.worst}")
    for which, label in ((None, "without the bug"), (b.name, "with the bug")):
        c = r.fd[which]
        verdict = "ok" if c.ok else "FAIL"
        lines.append(
            f"gradcheck {label:<16} {verdict:<4}  max rel {c.max_rel:.1e} at {c.worst} "
            f"(analytic {c.worst_a:.4g}, numeric {c.worst_b:.4g})"
        )
    for which, label in ((None, "without the bug"), (b.name, "with the bug")):
        losses = r.losses[which]
        shown = ", ".join(f"{losses[i]:.3f}" for i in sorted({0, len(losses) // 4, len(losses) // 2, len(losses) - 1}))
        lines.append(f"loss {label:<21} {shown}  (steps 0, ¼, ½, last of {len(losses)})")
    lines += ["", "caught by:", f"  {b.caught_by}", "", *textwrap.wrap(b.lesson, WIDTH)]
    return "\n".join(lines)


def loss_figure(reports: list[Report]):
    plt = pyplot()
    cols = min(len(reports), 5)
    rows = math.ceil(len(reports) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat[len(reports) :]:
        ax.set_visible(False)
    for ax, r in zip(axes.flat, reports):
        ax.plot(r.losses[None], color="#1f77b4", label="without the bug")
        ax.plot(r.losses[r.bug.name], color="#d62728", linestyle="--", label="with the bug")
        ax.set_title(r.bug.name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("training loss", fontsize=8)
    axes.flat[0].legend()
    fig.suptitle("NumPy training loss with and without each bug (xor, the second of two runs)")
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(
        "bugs",
        __doc__.split("\n\n")[1],
        None,
        epilog="examples:\n  python -m comparisons bugs\n  python -m comparisons bugs --bug tanh-prime-from-z",
    )
    parser.add_argument("--bug", choices=list(BUGS), help="one bug in detail (default: the summary of all)")
    parser.add_argument("--steps", type=step_count, default=300, help="training steps per run (default: 300)")
    args = parser.parse_args(argv)
    if args.steps > 100_000:
        parser.error(f"--steps {args.steps}: the catalogue trains 20 runs; use at most 100,000")
    others = [name for name in installed(args.backends) if name != "numpy"]
    if not others:
        parser.error("--backends: bugs compares NumPy with torch or JAX, and neither is installed or requested")
    chosen = [BUGS[args.bug]] if args.bug else list(BUGS.values())
    reports = []
    for bug in chosen:
        if not args.bug:
            note(f"{bug.name}…")
        reports.append(examine(bug, args.steps, others))
    numbers = {
        "steps": args.steps,
        "against": others,
        "bugs": [
            {
                "name": r.bug.name,
                "summary": r.bug.summary,
                "spec": r.bug.spec.describe(),
                "optimizer": r.bug.optimizer.describe(),
                "caught_by": r.bug.caught_by,
                "parity_without": r.parity_ok(False),
                "parity_with": r.parity_ok(True),
                "checks": [c.__dict__ for c in r.parity[r.bug.name]],
                "fd_without": {"ok": r.fd[None].ok, "max_rel": r.fd[None].max_rel},
                "fd_with": {"ok": r.fd[r.bug.name].ok, "max_rel": r.fd[r.bug.name].max_rel},
                "parity_verdict": r.parity_verdict(),
                "fd_verdict": r.fd_verdict(),
                "losses_without": r.losses[None],
                "losses_with": r.losses[r.bug.name],
            }
            for r in reports
        ],
    }
    slipped = [r.bug.name for r in reports if r.parity_verdict() != "catches"]
    if args.bug:
        print(detail(reports[0]) + "\n")
        finding = (
            f"With {args.bug} switched on, "
            + (
                f"parity with {', '.join(others)} fails first at {reports[0].first_failure().quantity}"
                if not slipped
                else "parity still holds: the catalogue's check missed it"
            )
            + f"; finite differences {'pass' if reports[0].fd[args.bug].ok else 'fail'} with it and "
            + f"{'pass' if reports[0].fd[None].ok else 'fail'} without it: they {reports[0].fd_verdict()} it."
        )
        name = f"bugs-{args.bug}"
    else:
        print(f"{len(reports)} classic backprop bugs in the NumPy backend, each against {', '.join(others)} (float64)")
        print("a → b: without the bug → with it; ↯ the run diverged and stopped\n")
        print(summary_table(reports) + "\n")
        fd = {v: [r.bug.name for r in reports if r.fd_verdict() == v] for v in ("catches", "misses", "cannot tell")}
        finding = (
            f"A check catches a bug only if it passes without it and fails with it. Parity against "
            f"{', '.join(others)} catches {len(reports) - len(slipped)} of {len(reports)} bugs"
            + (f" (not {', '.join(slipped)})" if slipped else "")
            + f"; finite differences catch {len(fd['catches'])}, miss {', '.join(fd['misses']) or 'none'}"
            + (
                f", and cannot tell for {', '.join(fd['cannot tell'])}: they fail with and without it (at a kink "
                "they see the average slope, not the derivative either side)"
                if fd["cannot tell"]
                else ""
            )
            + ". An optimizer bug or a wrong-but-consistent forward leaves the gradient check passing. "
            "`--bug NAME` for one in detail."
        )
        name = "bugs"
    publish(args.out, name, loss_figure(reports), numbers, textwrap.fill(finding, WIDTH))
    return 1 if slipped else 0
