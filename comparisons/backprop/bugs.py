"""bugs: ten classic backprop bugs, switched on one at a time in the NumPy backend, and what catches them.

Each bug is the one wrong line a learner writes (a dropped transpose, a missing 1/n, tanh′ from Z...).
For each: the parity check against torch and JAX (forward, loss, gradients, params after training),
the finite-difference check, the training loss with and without the bug, and the test in tests/ that
catches it. Without --bug: the summary table; --bug NAME: one bug in detail, with its loss curves.

The bugs themselves and the switch that turns one on (`switched_on(name)`, a context manager that
puts the original function back even when its block raises) are in comparisons/bug_catalogue.py.
A check counts as catching a bug only if it passes without it and fails with it.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from functools import cache

import numpy as np

from backends import get_backend
from comparisons.backprop.bug_catalogue import BUGS, Bug, switched_on
from comparisons.backprop.gradcheck import finite_differences
from comparisons.core.options import make_parser, step_count
from comparisons.core.output import note, publish, pyplot
from comparisons.core.problem import Problem, installed
from shared.data import make_dataset
from shared.optim import Optimizer
from shared.params import init_params
from shared.spec import MLPSpec
from shared.tolerances import FD_STEP, closeness, tolerance

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
                r.bug.caught_by.split("::")[0].rpartition("/")[2].removesuffix(".py"),
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


def report_numbers(reports: list[Report], steps: int, others: list[str]) -> dict:
    """Everything the command found, per bug, for the JSON beside the figure."""
    return {
        "steps": steps,
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


def one_bug_finding(r: Report, others: list[str]) -> str:
    parity = (
        f"parity with {', '.join(others)} fails first at {r.first_failure().quantity}"
        if r.parity_verdict() == "catches"
        else "parity still holds: the catalogue's check missed it"
    )
    return (
        f"With {r.bug.name} switched on, {parity}; finite differences {'pass' if r.fd[r.bug.name].ok else 'fail'} "
        f"with it and {'pass' if r.fd[None].ok else 'fail'} without it: they {r.fd_verdict()} it."
    )


def summary_finding(reports: list[Report], others: list[str]) -> str:
    slipped = [r.bug.name for r in reports if r.parity_verdict() != "catches"]
    fd = {v: [r.bug.name for r in reports if r.fd_verdict() == v] for v in ("catches", "misses", "cannot tell")}
    return (
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
    reports = []
    for bug in [BUGS[args.bug]] if args.bug else list(BUGS.values()):
        if not args.bug:
            note(f"{bug.name}…")
        reports.append(examine(bug, args.steps, others))
    if args.bug:
        print(detail(reports[0]) + "\n")
        finding, name = one_bug_finding(reports[0], others), f"bugs-{args.bug}"
    else:
        print(f"{len(reports)} classic backprop bugs in the NumPy backend, each against {', '.join(others)} (float64)")
        print("a → b: without the bug → with it; ↯ the run diverged and stopped\n")
        print(summary_table(reports) + "\n")
        finding, name = summary_finding(reports, others), "bugs"
    numbers = report_numbers(reports, args.steps, others)
    publish(args.out, name, loss_figure(reports), numbers, textwrap.fill(finding, WIDTH))
    return 0 if all(r.parity_verdict() == "catches" for r in reports) else 1
