"""gradcheck: every backend's gradient against central finite differences, tensor by tensor.

The check the test suite anchors everything to (tests/shared/test_gradcheck.py), as a command: for each
parameter tensor, the analytic gradient next to (L(p + h) − L(p − h)) / 2h computed one entry at a
time from the NumPy forward pass in float64, the largest relative error, and a verdict against the
"fd" tolerance of shared/tolerances.py. `--bug NAME` switches on one of the classic mistakes of
`python -m comparisons bugs` in the NumPy backend first (numpy only: the bug lives there).
"""

from __future__ import annotations

import argparse
import textwrap
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from backends import get_backend
from backends.numpy import mlp as numpy_mlp
from comparisons.backprop.bug_catalogue import BUGS, switched_on
from comparisons.core.options import make_parser, positive_float
from comparisons.core.output import save_json
from comparisons.core.problem import XOR, Problem, build_problem, installed
from shared.finite_differences import central_differences
from shared.params import Params
from shared.spec import MLPSpec
from shared.tolerances import FD_STEP, Tolerance, closeness, tolerance

KINK_MARGIN = 100
"""A relu pre-activation closer than KINK_MARGIN·h to 0: the two evaluations straddle the kink, and
the central difference there is an average of the two one-sided slopes (½ for relu), not a derivative."""


# ---- the problem options, without the training ones a command does not use ----


MAX_FD_PARAMS = 20_000
"""Central differences cost two forward passes per parameter: beyond this, a typo rather than a check."""


def check_problem_size(parser: argparse.ArgumentParser, problem: Problem) -> None:
    if problem.spec.n_params > MAX_FD_PARAMS:
        parser.error(
            f"--sizes: {problem.spec.n_params:,} parameters need {2 * problem.spec.n_params:,} forward passes; "
            f"gradcheck takes at most {MAX_FD_PARAMS:,}"
        )


# ---- the check ----


def numpy_loss(spec: MLPSpec, params: Params, X: np.ndarray, y: np.ndarray) -> float:
    """The NumPy backend's loss, looked up at call time (so a switched-on bug's forward is the one used)."""
    loss_forward, _ = numpy_mlp.LOSSES[spec.loss]
    y_hat, _ = numpy_mlp.mlp_forward(spec, params, X)
    return float(loss_forward(y_hat, y))


def finite_differences(spec: MLPSpec, params: Params, X: np.ndarray, y: np.ndarray, h: float = FD_STEP) -> Params:
    """Central differences of the NumPy backend's loss (a switched-on bug's forward included), in float64."""
    X = np.asarray(X, np.float64)
    return central_differences(lambda p: numpy_loss(spec, p, X, y), params, h)


@dataclass(frozen=True)
class TensorCheck:
    backend: str
    name: str  # layer0.W
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float  # max over entries of |analytic − numeric| / max(|analytic|, |numeric|)
    worst: str
    ok: bool


def kink_distance(spec: MLPSpec, params: Params, X: np.ndarray) -> float:
    """How close any relu pre-activation comes to 0 (inf without relu), by the NumPy forward."""
    _, cache = numpy_mlp.mlp_forward(spec, params, np.asarray(X, np.float64))
    hidden = zip(cache[:-1], spec.activations)
    return float(min((np.abs(Z).min() for (_, Z, _), act in hidden if act == "relu"), default=np.inf))


def check(problem: Problem, backends: list[str], h: float = FD_STEP) -> tuple[Params, list[TensorCheck]]:
    """The finite-difference gradient, and each backend's float64 gradient against it, per tensor."""
    spec, params, X, y = problem.spec, problem.params, problem.X, problem.y
    numeric = finite_differences(spec, params, X, y, h)
    tol = tolerance("float64", "fd")
    rows = []
    for name in backends:
        _, grads = get_backend(name, "float64").loss_and_grads(spec, params, X, y)
        for l, (layer, numeric_layer) in enumerate(zip(grads, numeric)):
            for k in ("W", "b"):
                c = closeness(layer[k], numeric_layer[k], tol, names=[f"layer{l}.{k}"])
                rows.append(TensorCheck(name, f"layer{l}.{k}", layer[k].shape, c.max_abs, c.max_rel, c.worst, c.ok))
    return numeric, rows


def format_rows(rows: list[TensorCheck], at_kink: bool) -> str:
    header = ("backend", "tensor", "shape", "max |a−n|", "max rel", "worst at", "verdict")
    failed = "at a relu kink?" if at_kink else "WRONG"
    body = [
        (
            r.backend,
            r.name,
            "×".join(map(str, r.shape)),
            f"{r.max_abs:.1e}",
            f"{r.max_rel:.1e}",
            r.worst,
            "ok" if r.ok else failed,
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("─" * w for w in widths)), *(fmt.format(*b) for b in body)]
    return "\n".join(line.rstrip() for line in lines)


def step_reason(h: float, tol: Tolerance) -> str:
    if h == FD_STEP:
        why = tol.reason
    else:
        why = (
            f"the suite uses {FD_STEP:g}: truncation error ~h² ≈ {h * h:.0e} and rounding ~ε/h ≈ {2.2e-16 / h:.0e} "
            "here, so the tolerance below may not fit"
        )
    return f"h = {h:g} ({why})"


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(
        "gradcheck",
        __doc__.split("\n\n")[1],
        XOR,
        training="none",
        epilog="examples:\n  python -m comparisons gradcheck --spec 2,8,8,1:gelu:bce --dataset moons\n"
        "  python -m comparisons gradcheck --bug tanh-prime-from-z",
    )
    parser.add_argument("--bug", choices=list(BUGS), help="switch on one classic bug in the NumPy backend first")
    parser.add_argument(
        "--h",
        type=positive_float,
        default=FD_STEP,
        help=f"the central-difference step (default: {FD_STEP:g}; try 1e-2 or 1e-10 to see why)",
    )
    args = parser.parse_args(argv)
    problem = build_problem(parser, args)
    check_problem_size(parser, problem)
    backends = ["numpy"] if args.bug else installed(args.backends)
    if not backends:
        parser.error("--backends: none of them is installed here")
    tol = tolerance("float64", "fd")
    print_header(problem, args, tol)
    with switched_on(args.bug) if args.bug else nullcontext():
        numeric, rows = check(problem, backends, args.h)
    at_kink = kink_distance(problem.spec, problem.params, problem.X) < KINK_MARGIN * args.h
    print(format_rows(rows, at_kink))
    if at_kink:
        print(
            f"\nA relu pre-activation lies within {KINK_MARGIN}·h of 0: there the central difference averages the "
            "two one-sided slopes (½ for relu) and is no reference. (xor's (0, 0) input meets zero biases "
            "exactly there; try another --dataset or --seed.)"
        )
    numbers = {"problem": problem.describe(), "bug": args.bug, "h": args.h, "rtol": tol.rtol, "atol": tol.atol}
    path = save_json(
        {**numbers, "relu_at_kink": at_kink, "numeric": numeric, "rows": [r.__dict__ for r in rows]},
        args.out,
        "gradcheck",
    )
    print(f"\nwrote {path}\n")
    print(verdict(rows))
    return 1 if any(not r.ok for r in rows) else 0


def print_header(problem: Problem, args, tol: Tolerance) -> None:
    """What is checked, how, and by which rule."""
    print(f"Gradient check on {problem.data.name} (n={len(problem.X)}), {problem.spec.describe()}, seed {args.seed}")
    if args.bug:
        print(f"with the bug {args.bug!r} switched on in the NumPy backend:\n  {BUGS[args.bug].summary}")
    print("central differences (L(p + h) − L(p − h)) / 2h, one entry at a time, NumPy forward, float64;")
    print(textwrap.fill(step_reason(args.h, tol), 100))
    print(f"verdict: ok when |analytic − numeric| ≤ atol + rtol·max(|a|, |n|) everywhere, {tol}\n")


def verdict(rows: list[TensorCheck]) -> str:
    """The last line: how many tensors disagree and the worst, or the largest error when all agree."""
    failed = [r for r in rows if not r.ok]
    if failed:
        worst = max(failed, key=lambda r: r.max_rel)
        return (
            f"{len(failed)} of {len(rows)} tensors disagree with finite differences; the worst is {worst.backend} "
            f"{worst.name} (max relative error {worst.max_rel:.1e} at {worst.worst})."
        )
    worst = max(rows, key=lambda r: r.max_rel)
    return (
        f"All {len(rows)} tensors agree with finite differences; the largest relative error is "
        f"{worst.max_rel:.1e} ({worst.backend} {worst.name})."
    )
