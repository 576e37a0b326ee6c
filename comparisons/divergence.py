"""divergence: when training on NumPy, torch and JAX drifts apart, is it the framework or the precision?

Trains the same spec from the same init on every backend, in float32 and in float64, and plots per
step the parameter gap between every pair of backends (same dtype), next to each backend's own
float32-vs-float64 drift. If the cross-backend float32 gap sits below the precision drift, the
frameworks are not the problem: float32 is.

The gap plotted is max|θa − θb| / max|θ|: the largest parameter difference relative to the largest
parameter. (An elementwise relative gap spikes whenever one weight crosses zero, which says nothing
about the run; the JSON keeps it too, as max_rel, with the tolerance checks that use it.)
"""

from __future__ import annotations

import itertools

import numpy as np

from comparisons.common import (
    BACKEND_COLORS,
    PAIR_COLORS,
    XOR,
    Problem,
    build_problem,
    installed,
    make_parser,
    note,
    publish,
    pyplot,
)
from comparisons.parity import trajectory_tolerance
from shared.params import flatten
from shared.trajectory import Trajectory, compare

DTYPES = ("float32", "float64")
EPS = {"float32": float(np.finfo(np.float32).eps), "float64": float(np.finfo(np.float64).eps)}
FLOOR = 1e-18  # log axes cannot show an exact 0: gaps of 0 are drawn here


def train_all(problem: Problem, backends: list[str], record_every: int) -> dict[tuple[str, str], Trajectory]:
    """One trajectory per (backend, dtype), all from problem.params, recorded every `record_every` steps."""
    runs = {}
    for dtype in DTYPES:
        for name in backends:
            note(f"training {name} {dtype} ({problem.steps} steps)")
            runs[name, dtype] = problem.train(name, dtype, record_every=record_every, on_nonfinite="stop")
    return runs


def scaled_gaps(a: Trajectory, b: Trajectory, steps: np.ndarray) -> np.ndarray:
    """max|θa − θb| / max(max|θa|, max|θb|) at each of `steps`."""
    gaps = []
    for s in steps:
        pa, pb = flatten(a.snapshot(int(s))).astype(np.float64), flatten(b.snapshot(int(s))).astype(np.float64)
        gaps.append(np.abs(pa - pb).max() / max(np.abs(pa).max(), np.abs(pb).max()))
    return np.array(gaps)


def divergence_numbers(runs: dict[tuple[str, str], Trajectory], problem: Problem) -> dict:
    """Per recorded step: the max relative parameter gap for every backend pair in each dtype, and for
    every backend between its float32 and float64 runs; plus where each pair first exceeds its tolerance."""
    backends = sorted({name for name, _ in runs}, key=list(BACKEND_COLORS).index)
    out: dict = {"pairs": {}, "precision": {}}
    for dtype in DTYPES:
        tol = trajectory_tolerance(dtype, problem)
        for a, b in itertools.combinations(backends, 2):
            c = compare(runs[a, dtype], runs[b, dtype], tol)
            out["pairs"][f"{a} vs {b} {dtype}"] = {
                "pair": [a, b],
                "dtype": dtype,
                "steps": c.steps,
                "gap": scaled_gaps(runs[a, dtype], runs[b, dtype], c.steps),
                "max_rel": c.max_rel,
                "max_abs": c.max_abs,
                "loss_abs": c.loss_abs,
                "first_exceeded": c.first_exceeded,
                "rtol": tol.rtol,
                "atol": tol.atol,
            }
    for name in backends:
        c = compare(runs[name, "float32"], runs[name, "float64"], trajectory_tolerance("float32", problem))
        out["precision"][name] = {
            "steps": c.steps,
            "gap": scaled_gaps(runs[name, "float32"], runs[name, "float64"], c.steps),
            "max_rel": c.max_rel,
            "max_abs": c.max_abs,
            "first_exceeded": c.first_exceeded,
        }
    out["losses"] = {f"{name} {dtype}": t.losses for (name, dtype), t in runs.items()}
    out["diverged_at"] = {f"{name} {dtype}": t.diverged_at for (name, dtype), t in runs.items()}
    return out


def finding(numbers: dict) -> str:
    cross32 = [p["gap"][-1] for p in numbers["pairs"].values() if p["dtype"] == "float32"]
    cross64 = [p["gap"][-1] for p in numbers["pairs"].values() if p["dtype"] == "float64"]
    precision = [p["gap"][-1] for p in numbers["precision"].values()]
    exceeded = {k: p["first_exceeded"] for k, p in numbers["pairs"].items() if p["first_exceeded"] is not None}
    parts = []
    chaotic = bool(cross64) and max(cross64) >= 1e-10
    if cross32 and precision and not chaotic:
        if max(cross32) < 0.5 * min(precision):
            verdict = "the precision, not the framework, accounts for the drift"
        elif min(cross32) > 2 * max(precision):
            verdict = "the backends drift apart more than float32 drifts from float64: here the framework matters"
        else:
            verdict = (
                "the same size. Each backend is a different but equally good float32 rounding of one computation: "
                "the drift is float32's, not any framework's"
            )
        parts.append(
            f"By the last step the float32 backends are up to {max(cross32):.1e} apart (max|Δθ|/max|θ|), and each "
            f"backend's float32 run is {min(precision):.1e}–{max(precision):.1e} from its own float64 run: {verdict}."
        )
    if cross64 and max(cross64) < 1e-10:
        parts.append(f"In float64 the backends end within {max(cross64):.1e} of each other — a few ε: the same math.")
    elif cross64:
        parts.append(
            f"Even in float64 the backends end {max(cross64):.1e} apart: these training dynamics are chaotic. They "
            "amplify a difference of one rounding (1e-16) step after step until the runs are simply different runs, "
            "in float32 and float64 alike — no framework is wrong; the question 'framework or precision?' has no "
            "answer here, because any difference at all grows."
        )
    if exceeded:
        parts.append("Tolerance first exceeded: " + ", ".join(f"{k} at step {s}" for k, s in exceeded.items()) + ".")
    else:
        parts.append("No pair ever left its trajectory tolerance.")
    return " ".join(parts)


def plot(numbers: dict, problem: Problem, dtype_tols: dict):
    plt = pyplot()
    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(14, 5.6), gridspec_kw={"width_ratios": [1.6, 1]})
    exceeded = False
    for p in numbers["pairs"].values():
        a, b = p["pair"]
        style = "-" if p["dtype"] == "float32" else "--"
        ax.plot(
            p["steps"],
            np.maximum(p["gap"], FLOOR),
            style,
            color=PAIR_COLORS[a, b],
            lw=1.6,
            label=f"{a} vs {b}, {p['dtype']}",
        )
        if p["first_exceeded"] is not None:
            i = min(np.searchsorted(p["steps"], p["first_exceeded"]), len(p["steps"]) - 1)
            ax.plot(
                p["steps"][i],
                max(p["gap"][i], FLOOR),
                "X",
                color=PAIR_COLORS[a, b],
                ms=10,
                mec="k",
            )
            exceeded = True
    for name, p in numbers["precision"].items():
        ax.plot(
            p["steps"],
            np.maximum(p["gap"], FLOOR),
            ":",
            color=BACKEND_COLORS[name],
            lw=2.4,
            label=f"{name}: float32 vs its own float64",
        )
    right = ax.get_yaxis_transform()
    for dtype, eps in EPS.items():
        ax.axhline(eps, color="0.55", lw=0.8)
        ax.text(0.995, eps, f"{dtype} ε", transform=right, ha="right", va="bottom", fontsize=8, color="0.35")
    for dtype, tol in dtype_tols.items():
        ax.axhline(tol.rtol, color="k", lw=0.9, ls=(0, (6, 3)))
        ax.text(
            0.995,
            tol.rtol,
            f"{dtype} trajectory tolerance (rtol {tol.rtol:g})",
            transform=right,
            ha="right",
            va="bottom",
            fontsize=8,
        )
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("parameter gap  max|θa − θb| / max|θ|")
    ax.set_title(
        "Where the backends drift apart — solid: float32 pairs, dashed: float64 pairs,\n"
        "dotted: each backend's float32 run against its own float64 run"
    )
    if exceeded:
        ax.plot([], [], "X", color="0.7", mec="k", ms=9, label="first step beyond its tolerance")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3)
    for key, losses in numbers["losses"].items():
        name, dtype = key.split()
        ax_loss.plot(
            np.arange(len(losses)),
            losses,
            "-" if dtype == "float32" else "--",
            color=BACKEND_COLORS[name],
            lw=1.2,
            alpha=0.8,
            label=key,
        )
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("training step")
    ax_loss.set_ylabel("training loss")
    curves = [np.asarray(v, np.float64) for v in numbers["losses"].values()]
    n = min(map(len, curves))
    spread = max(np.max(np.abs(c[:n] - curves[0][:n]) / np.abs(curves[0][:n])) for c in curves)
    overlap = "they overlap: the gaps are far below a line's width" if spread < 1e-3 else "where they part, see left"
    ax_loss.set_title(f"Loss curves, all {len(curves)} runs\n({overlap})")
    ax_loss.legend(loc="upper right")
    fig.suptitle(problem.describe(), fontsize=10)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(
        "divergence",
        __doc__.split("\n\n")[1],
        XOR,
        epilog=(
            "examples:\n  python -m comparisons divergence\n"
            "  python -m comparisons divergence --dataset spirals --n 200 --sizes 2,16,16,3 --loss softmax_ce "
            "--optimizer adam --lr 0.01 --steps 1000"
        ),
    )
    parser.add_argument("--points", type=int, default=200, help="recorded steps along the run (default: 200)")
    args = parser.parse_args(argv)
    problem = build_problem(parser, args)
    backends = installed(args.backends)
    runs = train_all(problem, backends, record_every=max(1, problem.steps // max(args.points, 1)))
    numbers = divergence_numbers(runs, problem)
    tols = {dtype: trajectory_tolerance(dtype, problem) for dtype in DTYPES}
    fig = plot(numbers, problem, tols)
    text = finding(numbers)
    publish(args.out, "divergence", fig, {"problem": problem.describe(), **numbers}, text)
    return 0
