"""divergence: when training on NumPy, torch and JAX drifts apart, is it the framework or the precision?

Trains the same spec from the same init on every backend, in float32 and in float64, and plots per
step the parameter gap between every pair of backends (same dtype), next to each backend's own
float32-vs-float64 drift. If the cross-backend float32 gap sits below the precision drift, the
frameworks are not the problem: float32 is. --dtype all adds mixed precision (bfloat16-mixed,
float16-mixed: float32 params, half-format compute), each format's pairs and its drift from float64
measured the same way. With --model gpt, the same for a tiny transformer.

Two quantities, two panels. The gap, max|θa − θb| / max|θ| (the largest parameter difference
relative to the largest parameter), answers "framework or precision?". The tolerance check the
parity suite applies (shared.trajectory.compare) is elementwise: |a − b| ≤ atol + rtol·max(|a|, |b|)
on every parameter and on the loss; its panel plots the worst ratio |a − b| / (atol + rtol·max(|a|, |b|))
since the previous plotted step, so the tolerance is the line at 1 and a pair's "first step beyond
tolerance" marker sits on the first point of its curve above that line.
"""

from __future__ import annotations

import itertools

import numpy as np

from comparisons.core.options import make_parser, positive_int
from comparisons.core.output import BACKEND_COLORS, PAIR_COLORS, note, publish, pyplot
from comparisons.core.problem import XOR, Problem, build_problem, installed, rounding_noise_tensors
from shared.optim import SGD
from shared.params import flatten, without
from shared.spec import GPTSpec
from shared.tolerances import Tolerance, tolerance, trajectory_tolerance
from shared.trajectory import Trajectory, compare
from shared.validation import HALF_DTYPES, numpy_dtype, split_format

DTYPES = ("float32", "float64")
MIXED = tuple(f"{d}-mixed" for d in HALF_DTYPES)
"""The formats that train besides float32 and float64 (a pure half format does not train yet)."""


def eps_of(name: str) -> float:
    """The machine epsilon of a format's compute dtype (looked up when asked: bfloat16 needs ml_dtypes,
    which a numpy-only install does not have)."""
    return float(np.finfo(numpy_dtype(split_format(name)[0])).eps)


STYLE = {"float32": "-", "float64": "--", "bfloat16-mixed": "-.", "float16-mixed": (0, (5, 1, 1, 1, 1, 1))}
"""The line of each format's pairs and loss curves."""


def format_tolerance(name: str, optimizer) -> Tolerance:
    """The trajectory tolerance a pair of runs in format `name` is held to (mixed: trajectory_mixed)."""
    dtype, precision = split_format(name)
    return tolerance(dtype, "trajectory_mixed") if precision == "mixed" else trajectory_tolerance(dtype, optimizer)


def formats_of(runs: dict) -> list[str]:
    """The formats of `runs`, float32 and float64 first."""
    present = {f for _, f in runs}
    return [f for f in (*DTYPES, *MIXED) if f in present]


FLOOR = 1e-18  # log axes cannot show an exact 0: gaps of 0 are drawn here
RATIO_FLOOR = 1e-9  # tolerance ratios below this (a gap of 0 at step 0) are drawn at the axis bottom


def train_all(
    problem: Problem, backends: list[str], record_every: int, formats: tuple[str, ...] = DTYPES
) -> dict[tuple[str, str], Trajectory]:
    """One trajectory per (backend, format), all from problem.params, recorded every `record_every` steps."""
    runs = {}
    for name_of_format in formats:
        dtype, precision = split_format(name_of_format)
        for name in backends:
            note(f"training {name} {name_of_format} ({problem.steps} steps)")
            runs[name, name_of_format] = problem.train(
                name, dtype, precision, record_every=record_every, on_nonfinite="stop"
            )
    return runs


def scaled_gaps(a: Trajectory, b: Trajectory, steps: np.ndarray) -> np.ndarray:
    """max|θa − θb| / max(max|θa|, max|θb|) at each of `steps`."""
    gaps = []
    for s in steps:
        pa, pb = flatten(a.snapshot(int(s))).astype(np.float64), flatten(b.snapshot(int(s))).astype(np.float64)
        gaps.append(np.abs(pa - pb).max() / max(np.abs(pa).max(), np.abs(pb).max()))
    return np.array(gaps)


def _worst_ratio(a: np.ndarray, b: np.ndarray, tol: Tolerance) -> np.ndarray:
    """Elementwise |a − b| / (atol + rtol·max(|a|, |b|)): above 1 exactly where shared.tolerances fails."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b) / (tol.atol + tol.rtol * np.maximum(np.abs(a), np.abs(b)))


def check_ratios(a: Trajectory, b: Trajectory, tol: Tolerance, steps: np.ndarray) -> np.ndarray:
    """At each of `steps` (recorded by both), the worst tolerance ratio of what compare() checks since the
    previous one: every parameter at that step, and the loss at every step after the previous one up to
    this one. A value above 1 means compare() finds the tolerance exceeded there (or in between)."""
    ratios, previous = [], -1
    n = min(len(a), len(b))
    loss = _worst_ratio(a.losses[:n], b.losses[:n], tol)  # (n,)
    for s in steps:
        params = _worst_ratio(flatten(a.snapshot(int(s))), flatten(b.snapshot(int(s))), tol).max()
        since = loss[previous + 1 : min(int(s), n - 1) + 1]  # losses of steps previous+1 .. s
        ratios.append(max(float(params), float(since.max(initial=0.0))))
        previous = int(s)
    return np.array(ratios)


def diverged_at(traj: Trajectory) -> int | None:
    """The step where a run diverged, or None: its first non-finite loss or gradient (training stopped
    there), or, if its last loss is above its first, the step from which the loss stayed above where it
    started (the learning-rates lesson calls that diverging too: the steps overshoot)."""
    if traj.diverged_at is not None:
        return int(traj.diverged_at)
    losses = np.asarray(traj.losses, np.float64)
    if len(losses) < 2 or not losses[-1] > losses[0]:
        return None
    below = np.flatnonzero(losses <= losses[0])  # includes step 0
    return int(below[-1]) + 1


def divergence_numbers(runs: dict[tuple[str, str], Trajectory], problem: Problem) -> dict:
    """Per recorded step: the max relative parameter gap for every backend pair in each format, and for
    every backend between its float32 and float64 runs ("precision"; "drift": each format's, float32's
    and the mixed ones', from float64); plus where each pair first exceeds its tolerance."""
    backends = sorted({name for name, _ in runs}, key=list(BACKEND_COLORS).index)
    formats = formats_of(runs)
    out: dict = {"pairs": {}, "precision": {}, "drift": {}, "formats": formats}
    for dtype in formats:
        tol = format_tolerance(dtype, problem.optimizer)
        for a, b in itertools.combinations(backends, 2):
            c = compare(runs[a, dtype], runs[b, dtype], tol)
            out["pairs"][f"{a} vs {b} {dtype}"] = {
                "pair": [a, b],
                "dtype": dtype,
                "steps": c.steps,
                "gap": scaled_gaps(runs[a, dtype], runs[b, dtype], c.steps),
                "ratio": check_ratios(runs[a, dtype], runs[b, dtype], tol, c.steps),
                "max_rel": c.max_rel,
                "max_abs": c.max_abs,
                "loss_abs": c.loss_abs,
                "first_exceeded": c.first_exceeded,
                "rtol": tol.rtol,
                "atol": tol.atol,
            }
    for dtype in [f for f in formats if f != "float64"] if "float64" in formats else []:
        for name in backends:
            c = compare(runs[name, dtype], runs[name, "float64"], format_tolerance(dtype, problem.optimizer))
            out["drift"].setdefault(dtype, {})[name] = {
                "steps": c.steps,
                "gap": scaled_gaps(runs[name, dtype], runs[name, "float64"], c.steps),
                "max_rel": c.max_rel,
                "max_abs": c.max_abs,
                "first_exceeded": c.first_exceeded,
            }
    out["precision"] = out["drift"].get("float32", {})  # float32 vs float64, the question's own pair
    out["losses"] = {f"{name} {dtype}": t.losses for (name, dtype), t in runs.items()}
    out["diverged_at"] = {f"{name} {dtype}": diverged_at(t) for (name, dtype), t in runs.items()}
    out["nonfinite_at"] = {f"{name} {dtype}": t.diverged_at for (name, dtype), t in runs.items()}
    return out


def _diverged_text(numbers: dict) -> str:
    stopped = {key: step for key, step in numbers["diverged_at"].items() if step is not None}
    if not stopped:
        return ""
    nonfinite = numbers.get("nonfinite_at", {})
    every = "Every run" if len(stopped) == len(numbers["diverged_at"]) else f"{len(stopped)} runs"
    by_step: dict[tuple[int, bool], list[str]] = {}
    for key, step in stopped.items():
        by_step.setdefault((step, nonfinite.get(key) is not None), []).append(key)
    total = len(numbers["diverged_at"])
    where = "; ".join(
        (f"all {total} runs" if len(keys) == total else ", ".join(keys))
        + (f" at step {step} (non-finite: training stopped there)" if bad else f" from step {step}")
        for (step, bad), keys in sorted(by_step.items())
    )
    starts = [float(numbers["losses"][key][0]) for key in stopped]
    ends = [float(numbers["losses"][key][-1]) for key in stopped]
    return (
        f"{every} diverged (the loss rose above its start, {min(starts):.3g}, for good, or stopped being finite): "
        f"{where}; last losses {min(ends):.3g}–{max(ends):.3g}. The comparisons below are of diverged runs: they "
        "say how alike the backends diverge, not how well they train."
    )


def finding(numbers: dict) -> str:
    cross32 = [p["gap"][-1] for p in numbers["pairs"].values() if p["dtype"] == "float32"]
    cross64 = [p["gap"][-1] for p in numbers["pairs"].values() if p["dtype"] == "float64"]
    precision = [p["gap"][-1] for p in numbers["precision"].values()]
    exceeded = {k: p["first_exceeded"] for k, p in numbers["pairs"].items() if p["first_exceeded"] is not None}
    diverged = _diverged_text(numbers) if "diverged_at" in numbers else ""
    parts = [diverged] if diverged else []
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
    if not chaotic:
        parts += [_mixed_sentence(numbers, f) for f in numbers.get("formats", ()) if f in MIXED]
    if cross64 and max(cross64) < 1e-10:
        parts.append(f"In float64 the backends end within {max(cross64):.1e} of each other — a few ε: the same math.")
    elif cross64:
        parts.append(
            f"Even in float64 the backends end {max(cross64):.1e} apart: these training dynamics are chaotic. They "
            "amplify a difference of one rounding (1e-16) step after step until the runs are simply different runs, "
            "in float32 and float64 alike — no framework is wrong; the question 'framework or precision?' has no "
            "answer here, because any difference at all grows."
        )
    worst = {k: float(np.max(p["ratio"], initial=0.0)) for k, p in numbers["pairs"].items() if "ratio" in p}
    stopped = any(v is not None for v in numbers.get("nonfinite_at", {}).values())
    until = " before the runs stopped" if stopped else ""
    if exceeded:
        parts.append(
            "Trajectory tolerance (|Δ| ≤ atol + rtol·max|θ| on every parameter and the loss) first exceeded: "
            + ", ".join(f"{k} at step {s}" for k, s in exceeded.items())
            + f"{until}."
        )
    elif numbers["pairs"]:
        parts.append(
            f"No pair left its trajectory tolerance{until}"
            + (f": the worst check ratio is {max(worst.values()):.2g} of the allowed 1." if worst else ".")
        )
    return " ".join(parts)


def _mixed_sentence(numbers: dict, name: str) -> str:
    """A mixed-precision format's answer to "framework or precision?": its pairs' final gap against each
    backend's drift from its own float64 run."""
    cross = [p["gap"][-1] for p in numbers["pairs"].values() if p["dtype"] == name]
    drift = [p["gap"][-1] for p in numbers["drift"].get(name, {}).values()]
    if not cross or not drift:
        return ""
    if max(cross) < 0.5 * min(drift):
        verdict = "the format, not the framework, sets the drift"
    elif min(cross) > 2 * max(drift):
        verdict = "the backends drift apart more than the format drifts from float64: here the framework matters"
    else:
        verdict = "the same size: each backend is an equally good rounding in this format"
    return (
        f"In {name} (float32 params, {split_format(name)[0]} compute; ε = {eps_of(name):.1e}) the backends end up to "
        f"{max(cross):.1e} apart, and each backend's run is {min(drift):.1e}–{max(drift):.1e} from its own float64 "
        f"run: {verdict}."
    )


def without_noise(runs: dict[tuple[str, str], Trajectory], noise: dict[str, float]) -> dict[str, float]:
    """{dtype: the largest final max|θa − θb| / max|θ| over backend pairs}, leaving out the tensors in
    `noise` (those whose gradient is rounding noise, see core.problem.rounding_noise_tensors)."""
    backends = sorted({name for name, _ in runs}, key=list(BACKEND_COLORS).index)
    out = {}
    for dtype in formats_of(runs):
        gaps = []
        for a, b in itertools.combinations(backends, 2):
            pa = np.concatenate([np.ravel(x) for x in without(runs[a, dtype].params, set(noise)).values()])
            pb = np.concatenate([np.ravel(x) for x in without(runs[b, dtype].params, set(noise)).values()])
            pa, pb = pa.astype(np.float64), pb.astype(np.float64)
            gaps.append(np.abs(pa - pb).max() / max(np.abs(pa).max(), np.abs(pb).max()))
        if gaps:
            out[dtype] = float(max(gaps))
    return out


def noise_text(noise: dict[str, float], gaps: dict[str, float], adam: bool) -> str:
    """A sentence on the tensors whose gradient is rounding noise, with the gaps left without them."""
    if not noise or not gaps:
        return ""
    names = ", ".join(f"{name} ({ratio:.0e} of the largest)" for name, ratio in noise.items())
    ends = " and ".join(f"the {dtype} ones {gap:.1e}" for dtype, gap in gaps.items())
    how = "Adam's m̂ / (√v̂ + ε) turns that noise into steps" if adam else "SGD keeps its steps as small as the noise"
    return (
        f"The loss does not depend on every tensor: the float64 gradient of {names} is rounding noise, and "
        f"{how}, different in each backend. Without {'it' if len(noise) == 1 else 'them'}, the backends end apart "
        f"by (max|Δθ|/max|θ|): {ends}."
    )


def level_labels(ax, levels: dict[str, float]):
    """Name horizontal reference lines on a secondary axis at the right, outside the data, where no
    curve can cross the names. Returns that axis."""
    from matplotlib.ticker import NullLocator

    side = ax.secondary_yaxis("right")
    side.set_yticks(list(levels.values()), list(levels))
    side.yaxis.set_minor_locator(NullLocator())
    side.tick_params(labelsize=8, colors="0.35")
    return side


CROSSING_FACE = {"float32": "k", "float64": "w", "bfloat16-mixed": "0.55", "float16-mixed": "0.8"}
"""The ✕ of a float32 crossing is filled, a float64 one hollow, a mixed format's grey."""
FORMAT_ORDER = (*DTYPES, *MIXED)


def crossings(numbers: dict) -> list[dict]:
    """The steps where pairs first leave their tolerance, one entry per dtype and step, in step order:
    {"dtype", "step", "pairs": the pairs ("a vs b") that first exceed it at that step, "of": how many
    pairs of that dtype were compared}."""
    groups: dict[tuple[str, int], list[str]] = {}
    for p in numbers["pairs"].values():
        if p["first_exceeded"] is not None:
            groups.setdefault((p["dtype"], int(p["first_exceeded"])), []).append(" vs ".join(p["pair"]))
    total = {d: sum(p["dtype"] == d for p in numbers["pairs"].values()) for d in FORMAT_ORDER}
    return [
        {"dtype": dtype, "step": step, "pairs": pairs, "of": total[dtype]}
        for (dtype, step), pairs in sorted(
            groups.items(), key=lambda item: (item[0][1], FORMAT_ORDER.index(item[0][0]))
        )
    ]


def crossing_label(group: dict) -> str:
    """'float32 crosses at step 98 (all 3 pairs)', or which pairs, when not all of them do."""
    n = len(group["pairs"])
    which = f"all {n} pairs" if n == group["of"] and n > 1 else ", ".join(group["pairs"])
    return f"{group['dtype']} crosses at step {group['step']} ({which})"


def mark_crossings(ax, groups: list[dict]):
    """One ✕ per crossing, each on its own row just below the tolerance line (above it when the line is
    near the bottom), with a dotted drop line up to the line at its step and its label beside it: rows
    never overlap, however close the steps are. Call after the curves are drawn (it fixes the y limits)."""
    if not groups:
        return
    lo, hi = np.log10(ax.get_ylim())
    ax.set_ylim(10**lo, 10**hi)
    line = -lo / (hi - lo)  # the tolerance line's height, as a share of the axes
    row = 0.075
    below = line - row * len(groups) > 0.02
    for k, g in enumerate(groups):
        height = line - row * (k + 1) if below else line + row * (k + 1)
        y = 10 ** (lo + height * (hi - lo))
        ax.plot([g["step"], g["step"]], [y, 1.0], ":", color="k", lw=0.9, zorder=4)
        ax.plot(g["step"], y, "X", mfc=CROSSING_FACE[g["dtype"]], mec="k", color="k", ms=9, zorder=5)
        ax.annotate(
            crossing_label(g),
            (g["step"], y),
            xytext=(9, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.2", "fc": "w", "ec": "0.6", "alpha": 0.9},
            zorder=6,
        )


def plot(numbers: dict, problem: Problem, dtype_tols: dict):
    from matplotlib.lines import Line2D

    plt = pyplot()
    fig, (ax, ax_tol, ax_loss) = plt.subplots(
        1, 3, figsize=(20, 6.2), gridspec_kw={"width_ratios": [1.25, 1.25, 1]}, layout="constrained"
    )
    _gap_panels(ax, ax_tol, numbers)
    groups = _tolerance_panel(ax_tol, numbers, dtype_tols)
    _loss_panel(ax_loss, numbers)
    handles, _ = ax.get_legend_handles_labels()
    for dtype in sorted({g["dtype"] for g in groups}):
        handles.append(
            Line2D(
                [],
                [],
                ls="",
                marker="X",
                mfc=CROSSING_FACE[dtype],
                mec="k",
                ms=9,
                label=f"{dtype}: first step beyond its tolerance (labelled)",
            )
        )
    fig.legend(handles=handles, loc="outside lower center", ncol=4)
    fig.suptitle(problem.describe(), fontsize=10)
    return fig


def _gap_panels(ax, ax_tol, numbers: dict) -> None:
    """Every pair's parameter gap (left) and tolerance ratio (middle), and each backend's float32 vs float64."""
    for p in numbers["pairs"].values():
        a, b = p["pair"]
        style = STYLE[p["dtype"]]
        label = f"{a} vs {b}, {p['dtype']}"
        ax.plot(p["steps"], np.maximum(p["gap"], FLOOR), ls=style, color=PAIR_COLORS[a, b], lw=1.6, label=label)
        ratio = np.maximum(p["ratio"], RATIO_FLOOR)
        ax_tol.plot(p["steps"], ratio, ls=style, color=PAIR_COLORS[a, b], lw=1.6)
    drift = numbers.get("drift") or {"float32": numbers["precision"]}
    for dtype, per_backend in drift.items():
        for name, p in per_backend.items():
            ax.plot(
                p["steps"],
                np.maximum(p["gap"], FLOOR),
                ":",
                color=BACKEND_COLORS[name],
                lw=2.4 if dtype == "float32" else 1.4,
                label=f"{name}: {dtype} vs its own float64",
            )
    shown = {f: eps_of(f) for f in numbers.get("formats", DTYPES)}
    for eps in shown.values():
        ax.axhline(eps, color="0.55", lw=0.8)
    ax.set_yscale("log")
    level_labels(ax, {f"{dtype} ε": eps for dtype, eps in shown.items()})
    ax.set_xlabel("training step")
    ax.set_ylabel("parameter gap  max|θa − θb| / max|θ|")
    ax.set_title(
        "Framework or precision? The parameter gap\n"
        "solid: float32 pairs, dashed: float64 pairs, dotted: a format vs float64 of one backend"
        + (
            "\n(thin dotted: mixed; dash-dot: bfloat16-mixed pairs, dash-dot-dot: float16-mixed)"
            if any(f in MIXED for f in numbers.get("formats", ()))
            else ""
        ),
        fontsize=10,
    )


def _tolerance_panel(ax_tol, numbers: dict, dtype_tols: dict) -> list[dict]:
    """The parity check's axis: the line at 1, each dtype's first crossing labelled. Returns the crossings."""
    ax_tol.axhline(1.0, color="k", lw=1.0)
    each = [f"{d}: rtol {t.rtol:g}, atol {t.atol:g}" for d, t in dtype_tols.items()]
    tols = ";\n".join(", ".join(each[i : i + 2]) for i in range(0, len(each), 2))  # two formats a line
    ax_tol.set_yscale("log")
    level_labels(ax_tol, {"the tolerance": 1.0})
    ax_tol.set_ylim(bottom=RATIO_FLOOR / 2)
    groups = crossings(numbers)
    mark_crossings(ax_tol, groups)
    ax_tol.set_xlabel("training step")
    ax_tol.set_ylabel("worst |a − b| / (atol + rtol·max(|a|, |b|))")
    ax_tol.set_title(
        "The parity check: worst ratio over parameters and loss since the previous point\n"
        f"(above 1 = beyond the trajectory tolerance; {tols})",
        fontsize=10,
    )
    return groups


def _loss_panel(ax_loss, numbers: dict) -> None:
    """Every run's loss curve, ○ where one diverged."""
    for key, losses in numbers["losses"].items():
        name, dtype = key.split()
        ax_loss.plot(
            np.arange(len(losses)),
            losses,
            ls=STYLE[dtype],
            color=BACKEND_COLORS[name],
            lw=1.2,
            alpha=0.8,
            label=key,
        )
        step = numbers.get("diverged_at", {}).get(key)
        if step is not None and step < len(losses):
            ax_loss.plot(step, losses[step], "o", color=BACKEND_COLORS[name], mfc="none", ms=8)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("training step")
    ax_loss.set_ylabel("training loss")
    curves = [np.asarray(v, np.float64) for v in numbers["losses"].values()]
    n = min(map(len, curves))
    spread = max(np.max(np.abs(c[:n] - curves[0][:n]) / np.abs(curves[0][:n]), initial=0.0) for c in curves)
    overlap = "they overlap: the gaps are far below a line's width" if spread < 1e-3 else "where they part, see left"
    if any(v is not None for v in numbers.get("diverged_at", {}).values()):
        overlap += "; ○ where a run diverged"
    ax_loss.set_title(f"Loss curves, all {len(curves)} runs\n({overlap})", fontsize=10)
    ax_loss.legend(loc="upper right")


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(
        "divergence",
        __doc__.split("\n\n")[1],
        XOR,
        epilog=(
            "examples:\n  python -m comparisons divergence\n"
            "  python -m comparisons divergence --dataset spirals --n 200 --sizes 2,16,16,3 --loss softmax_ce "
            "--optimizer adam --lr 0.01 --steps 1000\n"
            "  python -m comparisons divergence --model gpt --gpt 8,8,16,2,1 --steps 50"
        ),
        gpt=True,
    )
    parser.add_argument("--points", type=positive_int, default=200, help="recorded steps along the run (default: 200)")
    parser.add_argument(
        "--dtype",
        choices=["both", "all", *MIXED],
        default="both",
        help="both: float32 and float64 (default); all: mixed precision too (bfloat16-mixed, float16-mixed); "
        "or one mixed format beside float64, its reference",
    )
    args = parser.parse_args(argv)
    problem = build_problem(parser, args)
    backends = installed(args.backends)
    formats = {"both": DTYPES, "all": (*DTYPES, *MIXED)}.get(args.dtype, ("float64", args.dtype))
    runs = train_all(problem, backends, record_every=max(1, problem.steps // max(args.points, 1)), formats=formats)
    numbers = divergence_numbers(runs, problem)
    tols = {dtype: format_tolerance(dtype, problem.optimizer) for dtype in formats_of(runs)}
    fig = plot(numbers, problem, tols)
    text = finding(numbers)
    if isinstance(problem.spec, GPTSpec) and len(backends) > 1:
        noise = rounding_noise_tensors(problem.spec, problem.params, problem.X, problem.y)
        numbers["rounding_noise"] = noise
        numbers["gap_without_noise"] = without_noise(runs, noise) if noise else {}
        text = " ".join(
            filter(
                None, [text, noise_text(noise, numbers["gap_without_noise"], not isinstance(problem.optimizer, SGD))]
            )
        )
    publish(args.out, "divergence", fig, {"problem": problem.describe(), **numbers}, text)
    return 0
