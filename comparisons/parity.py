"""parity: how closely every pair of backends agrees, as a table in the terminal.

For each pair and dtype: the forward pass, the loss, the gradients, and the params after training
`--steps` steps from the same init — each with its max |a − b|, max relative gap, the tolerance from
shared/tolerances.py, and whether it holds.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from backends import get_backend
from comparisons.common import XOR, Problem, build_problem, installed, make_parser, note, save_json
from shared.optim import SGD
from shared.tolerances import Tolerance, closeness, tolerance
from shared.trajectory import TrainingDiverged


@dataclass(frozen=True)
class Row:
    dtype: str
    pair: tuple[str, str]
    quantity: str
    max_abs: float
    max_rel: float
    tol: Tolerance
    ok: bool  # elementwise |a − b| ≤ atol + rtol·max(|a|, |b|) everywhere


def trajectory_tolerance(dtype: str, problem: Problem) -> Tolerance:
    if dtype == "float64":
        return tolerance(dtype, "trajectory")
    return tolerance(dtype, "trajectory_sgd" if isinstance(problem.optimizer, SGD) else "trajectory_adam")


def parity_rows(problem: Problem, backends: list[str], dtypes: list[str]) -> list[Row]:
    """Every pair × quantity, with the gap and the tolerance that applies."""
    rows = []
    for dtype in dtypes:
        results = {}
        for name in backends:
            be = get_backend(name, dtype)
            loss, grads = be.loss_and_grads(problem.spec, problem.params, problem.X, problem.y)
            try:
                trained = problem.train(name, dtype).params
            except TrainingDiverged as e:
                note(f"{name} {dtype}: {e}")
                trained = None
            results[name] = (be.forward(problem.spec, problem.params, problem.X), loss, grads, trained)
        for a, b in itertools.combinations(backends, 2):
            ra, rb = results[a], results[b]
            checks = [
                ("forward", ra[0], rb[0], tolerance(dtype, "forward")),
                ("loss", ra[1], rb[1], tolerance(dtype, "grads")),
                ("grads", ra[2], rb[2], tolerance(dtype, "grads")),
            ]
            if ra[3] is not None and rb[3] is not None:
                checks.append(
                    (f"params after {problem.steps} steps", ra[3], rb[3], trajectory_tolerance(dtype, problem))
                )
            for quantity, x, y, tol in checks:
                c = closeness(x, y, tol)
                rows.append(Row(dtype, (a, b), quantity, c.max_abs, c.max_rel, tol, c.ok))
    return rows


def format_table(rows: list[Row]) -> str:
    header = ("dtype", "pair", "quantity", "max |a−b|", "max rel", "tolerance", "result")
    body = [
        (
            r.dtype,
            f"{r.pair[0]} vs {r.pair[1]}",
            r.quantity,
            f"{r.max_abs:.2e}",
            f"{r.max_rel:.2e}",
            f"rtol {r.tol.rtol:.0e} atol {r.tol.atol:.0e}",
            "ok" if r.ok else "FAIL",
        )
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("─" * w for w in widths))]
    previous = None
    for line in body:
        if previous is not None and line[:2] != previous[:2]:
            lines.append("")
        lines.append(fmt.format(*line))
        previous = line
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(
        "parity",
        __doc__.split("\n\n")[1],
        XOR,
        epilog="example: python -m comparisons parity --dtype float32 --spec 2,8,8,1:gelu:bce --dataset moons",
    )
    parser.add_argument("--dtype", choices=["float64", "float32", "both"], default="both", help="default: both")
    args = parser.parse_args(argv)
    problem = build_problem(parser, args)
    backends = installed(args.backends)
    if len(backends) < 2:
        parser.error(f"parity needs at least two installed backends; have {', '.join(backends) or 'none'}")
    dtypes = ["float64", "float32"] if args.dtype == "both" else [args.dtype]
    rows = parity_rows(problem, backends, dtypes)
    print(f"Parity on {problem.describe()}\n")
    print(format_table(rows))
    failed = [r for r in rows if not r.ok]
    path = save_json(
        {
            "problem": problem.describe(),
            "rows": [
                {
                    "dtype": r.dtype,
                    "pair": list(r.pair),
                    "quantity": r.quantity,
                    "max_abs": r.max_abs,
                    "max_rel": r.max_rel,
                    "rtol": r.tol.rtol,
                    "atol": r.tol.atol,
                    "ok": r.ok,
                }
                for r in rows
            ],
        },
        args.out,
        "parity",
    )
    print(f"\nwrote {path}")
    print(
        f"\n{len(rows) - len(failed)} of {len(rows)} comparisons within tolerance"
        + (f"; {len(failed)} beyond it." if failed else ".")
    )
    return 1 if failed else 0
