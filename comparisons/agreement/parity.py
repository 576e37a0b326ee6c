"""parity: how closely every pair of backends agrees, as a table in the terminal.

For each pair and dtype: the forward pass, the loss, the gradients, and the params after training
`--steps` steps from the same init — each with its max |a − b|, max relative gap, the tolerance from
shared/tolerances.py, whether it holds, and where the gap is nearest to (or furthest beyond) it.
With --model gpt the same for a tiny transformer, compared tensor by tensor by name. --dtype all adds
the half formats, pure (bfloat16, float16: forward, loss, gradients, and trained when the optimizer
is SGD, held to their trajectory_sgd) and mixed (bfloat16-mixed, float16-mixed: float32 params,
half-format compute, trained too).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from backends import get_backend
from comparisons.core.options import make_parser
from comparisons.core.output import note, save_json
from comparisons.core.problem import XOR, Problem, build_problem, installed, rounding_noise_tensors
from shared.params import without
from shared.precision import why_pure_half_cannot_train
from shared.spec import GPTSpec
from shared.tolerances import Tolerance, closeness, tolerance, trajectory_tolerance
from shared.trajectory import TrainingDiverged
from shared.validation import DTYPES, FORMATS, HALF_DTYPES, split_format


@dataclass(frozen=True)
class Row:
    dtype: str
    pair: tuple[str, str]
    quantity: str
    max_abs: float
    max_rel: float
    tol: Tolerance
    ok: bool  # elementwise |a − b| ≤ atol + rtol·max(|a|, |b|) everywhere
    worst: str = ""  # the entry nearest to (or furthest beyond) the tolerance, e.g. 'layer1.W[2, 0]'


def parity_rows(problem: Problem, backends: list[str], dtypes: list[str], exclude: tuple[str, ...] = ()) -> list[Row]:
    """Every pair × quantity, with the gap and the tolerance that applies, for each format in `dtypes`
    ('float64', ..., 'bfloat16-mixed'). With `exclude` (tensor names), the trained params are compared a
    second time without those tensors. A format that cannot train the optimizer (Adam in a pure half
    format) is compared as far as it goes, with a note saying why."""
    rows = []
    for name in dtypes:
        dtype, precision = split_format(name)
        why = why_pure_half_cannot_train(problem.optimizer) if dtype in HALF_DTYPES and precision == "pure" else None
        trains = why is None
        if not trains:
            note(
                f"{name}: {problem.optimizer.describe()} cannot train in a pure half format ({why}); forward, "
                "loss and grads only (mixed precision trains it)"
            )
        results = {}
        for backend in backends:
            be = get_backend(backend, dtype, precision=precision)
            loss, grads = be.loss_and_grads(problem.spec, problem.params, problem.X, problem.y)
            trained = None
            try:
                trained = problem.train(backend, dtype, precision).params if trains else None
            except TrainingDiverged as e:
                note(f"{backend} {name}: {e}")
            results[backend] = (be.forward(problem.spec, problem.params, problem.X), loss, grads, trained)
        if trains:
            trajectory = trajectory_tolerance(name, problem.optimizer)
        for a, b in itertools.combinations(backends, 2):
            ra, rb = results[a], results[b]
            checks = [
                ("forward", ra[0], rb[0], tolerance(dtype, "forward")),
                ("loss", ra[1], rb[1], tolerance(dtype, "grads")),
                ("grads", ra[2], rb[2], tolerance(dtype, "grads")),
            ]
            if ra[3] is not None and rb[3] is not None:
                quantity = f"params after {problem.steps} steps"
                checks.append((quantity, ra[3], rb[3], trajectory))
                if exclude:
                    names = set(exclude)
                    short = ", ".join(sorted({n.rsplit(".", 1)[-1] for n in names}))
                    checks.append((f"  … without {short}", without(ra[3], names), without(rb[3], names), trajectory))
            for quantity, x, y, tol in checks:
                c = closeness(x, y, tol)
                rows.append(Row(name, (a, b), quantity, c.max_abs, c.max_rel, tol, c.ok, c.worst))
    return rows


def format_table(rows: list[Row]) -> str:
    header = ("dtype", "pair", "quantity", "max |a−b|", "max rel", "tolerance", "result", "worst at")
    body = [
        (
            r.dtype,
            f"{r.pair[0]} vs {r.pair[1]}",
            r.quantity,
            f"{r.max_abs:.2e}",
            f"{r.max_rel:.2e}",
            f"rtol {r.tol.rtol:.0e} atol {r.tol.atol:.0e}",
            "ok" if r.ok else "FAIL",
            r.worst,
        )
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header).rstrip(), fmt.format(*("─" * w for w in widths))]
    previous = None
    for line in body:
        if previous is not None and line[:2] != previous[:2]:
            lines.append("")
        lines.append(fmt.format(*line).rstrip())
        previous = line
    return "\n".join(lines)


def _tensor(worst: str) -> str:
    """'blocks[0].attn.bk[3]' -> 'blocks[0].attn.bk': the tensor of a closeness() location."""
    return worst[: worst.rindex("[")] if worst.endswith("]") else worst


def noise_note(rows: list[Row], noise: dict[str, float]) -> str:
    """Why failed rows whose worst entry lies in a tensor with a rounding-noise gradient fail, and how
    the same quantity compares without those tensors (the '… without' rows that follow them)."""
    failed = [r for r in rows if not r.ok and _tensor(r.worst) in noise]
    if not failed:
        return ""
    after = [rows[rows.index(r) + 1] for r in failed if rows.index(r) + 1 < len(rows)]
    after = [r for r in after if r.quantity.lstrip().startswith("… without")]
    rest = ""
    if after:
        held = sum(r.ok for r in after)
        worst = max(after, key=lambda r: r.max_abs)
        rest = (
            f" Without {'it' if len(noise) == 1 else 'them'}, {held} of those {len(after)} comparisons hold "
            f"(largest gap {worst.max_abs:.1e}, {worst.dtype} {worst.pair[0]} vs {worst.pair[1]} at {worst.worst})."
        )
    names = sorted({_tensor(r.worst) for r in failed})
    sizes = ", ".join(f"{name}: {noise[name]:.0e}" for name in names)
    bk = (
        " The key bias attn.bk adds the same q·bk to every score in a row, which the softmax ignores."
        if any(name.endswith("attn.bk") for name in names)
        else ""
    )
    return (
        f"{len(failed)} of the rows beyond tolerance are worst at {', '.join(names)}, whose float64 gradient is "
        f"rounding noise (largest entry × the model's largest gradient, {sizes}): the loss does not depend "
        f"on it in exact arithmetic.{bk} Each backend rounds that 0 differently, and an optimizer that divides "
        "by the gradient's own size (Adam: m̂ / (√v̂ + ε)) turns the noise into steps in each backend's own "
        "direction; SGD would keep them as small as the noise." + rest
    )


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(
        "parity",
        __doc__.split("\n\n")[1],
        XOR,
        epilog=(
            "examples:\n  python -m comparisons parity --dtype float32 --spec 2,8,8,1:gelu:bce --dataset moons\n"
            "  python -m comparisons parity --model gpt --gpt 8,8,16,2,1:gelu --steps 50"
        ),
        gpt=True,
    )
    parser.add_argument(
        "--dtype",
        choices=[*FORMATS, "both", "all"],
        default="both",
        help="one format, both (float64 and float32) or all (the half formats and mixed precision too); default: both",
    )
    args = parser.parse_args(argv)
    problem = build_problem(parser, args)
    backends = installed(args.backends)
    if len(backends) < 2:
        parser.error(f"parity needs at least two installed backends; have {', '.join(backends) or 'none'}")
    dtypes = {"both": list(DTYPES), "all": list(FORMATS)}.get(args.dtype, [args.dtype])
    noise = {}
    if isinstance(problem.spec, GPTSpec):  # tensors the loss does not depend on: compared again without them
        noise = rounding_noise_tensors(problem.spec, problem.params, problem.X, problem.y)
    rows = parity_rows(problem, backends, dtypes, exclude=tuple(noise))
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
                    "worst": r.worst,
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
    if failed and noise:
        if text := noise_note(rows, noise):
            print(f"\n{text}")
    return 1 if failed else 0
