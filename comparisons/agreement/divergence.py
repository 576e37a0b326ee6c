"""divergence: when training on NumPy, torch and JAX drifts apart, is it the framework or the precision?

Trains the same spec from the same init on every backend, in float32 and in float64, and plots per
step the parameter gap between every pair of backends (same dtype), next to each backend's own
float32-vs-float64 drift. If the cross-backend float32 gap sits below the precision drift, the
frameworks are not the problem: float32 is. --dtype all adds the half formats, pure (bfloat16,
float16: params and momentum in the format; SGD only) and mixed (bfloat16-mixed, float16-mixed:
float32 params, half-format compute), each format's pairs and its drift from float64 measured the
same way. With --model gpt, the same for a tiny transformer.

Two quantities, two panels. The gap, max|θa − θb| / max|θ| (the largest parameter difference
relative to the largest parameter), answers "framework or precision?". The tolerance check the
parity suite applies (shared.trajectory.compare) is elementwise: |a − b| ≤ atol + rtol·max(|a|, |b|)
on every parameter and on the loss; its panel plots the worst ratio |a − b| / (atol + rtol·max(|a|, |b|))
since the previous plotted step, so the tolerance is the line at 1 and a pair's "first step beyond
tolerance" marker sits on the first point of its curve above that line. The figure is drawn by
divergence_figure.py; this module computes what it shows.
"""

from __future__ import annotations

import itertools

import numpy as np

from comparisons.agreement.divergence_figure import plot
from comparisons.core.options import make_parser, positive_int, trainable_formats
from comparisons.core.output import BACKEND_COLORS, note, publish
from comparisons.core.problem import XOR, Problem, build_problem, installed, rounding_noise_tensors
from shared.optim import SGD
from shared.params import flatten, without
from shared.spec import GPTSpec
from shared.tolerances import Tolerance, trajectory_tolerance
from shared.trajectory import Trajectory, compare
from shared.validation import HALF_DTYPES, MIXED_FORMATS, format_eps, split_format

DTYPES = ("float32", "float64")


def formats_of(runs: dict) -> list[str]:
    """The formats of `runs`, float32 and float64 first."""
    present = {f for _, f in runs}
    return [f for f in (*DTYPES, *HALF_DTYPES, *MIXED_FORMATS) if f in present]


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
        tol = trajectory_tolerance(dtype, problem.optimizer)
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
            c = compare(runs[name, dtype], runs[name, "float64"], trajectory_tolerance(dtype, problem.optimizer))
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
    out["frozen"] = {f"{name} {dtype}": frozen(t) for (name, dtype), t in runs.items() if dtype in HALF_DTYPES}
    return out


def frozen(traj: Trajectory) -> dict | None:
    """How many parameters ended exactly where they were at the snapshot nearest 90 % of the run: in a
    pure half format, a weight whose update lr·g is under half an ulp stops moving."""
    steps = [int(s) for s in traj.snapshot_steps if s < traj.steps_run]
    if not steps:
        return None
    since = min(steps, key=lambda s: abs(s - 0.9 * traj.steps_run))
    before, after = flatten(traj.snapshot(since)), flatten(traj.params)
    return {"since": since, "steps": traj.steps_run, "unchanged": int((before == after).sum()), "of": after.size}


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
        parts += [_format_sentence(numbers, f) for f in numbers.get("formats", ()) if f not in DTYPES]
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


def _format_sentence(numbers: dict, name: str) -> str:
    """A half format's answer (pure or mixed) to "framework or precision?": its pairs' final gap against
    each backend's drift from its own float64 run."""
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
    half, precision = split_format(name)
    what = f"float32 params, {half} compute" if precision == "mixed" else f"params, momentum and compute in {half}"
    text = (
        f"In {name} ({what}; ε = {format_eps(name):.1e}) the backends "
        f"end up to {max(cross):.1e} apart, and each backend's run is {min(drift):.1e}–{max(drift):.1e} from its "
        f"own float64 run: {verdict}."
    )
    losses = numbers.get("losses", {})
    ends = [float(v[-1]) for k, v in losses.items() if k.endswith(f" {name}") and len(v)]
    ref = [float(v[-1]) for k, v in losses.items() if k.endswith(" float64") and len(v)]
    still = [f for k, f in numbers.get("frozen", {}).items() if k.endswith(f" {name}") and f]
    if precision == "pure" and ends and ref and still:
        lo, hi = min(f["unchanged"] for f in still), max(f["unchanged"] for f in still)
        f = still[0]
        text += (
            f" Its final loss is {min(ends):.3g}–{max(ends):.3g} (float64's {max(ref):.3g}), and from step "
            f"{f['since']} to {f['steps']} {lo if lo == hi else f'{lo}–{hi}'} of the {f['of']} parameters did not "
            "change at all: "
            f"where lr·g is under half a {half} ulp of a weight, its update rounds away (mixed precision adds it "
            "to a float32 weight instead)."
        )
    return text


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
        choices=["both", "all", *HALF_DTYPES, *MIXED_FORMATS],
        default="both",
        help="both: float32 and float64 (default); all: the half formats too, pure (bfloat16, float16; SGD "
        "only) and mixed (bfloat16-mixed, float16-mixed); or one of them beside float64, its reference",
    )
    args = parser.parse_args(argv)
    problem = build_problem(parser, args)
    backends = installed(args.backends)
    formats = {"both": DTYPES, "all": (*DTYPES, *HALF_DTYPES, *MIXED_FORMATS)}.get(args.dtype, ("float64", args.dtype))
    formats = tuple(
        trainable_formats(parser, f"--dtype {args.dtype}", formats, problem.optimizer, drop=args.dtype == "all")
    )
    runs = train_all(problem, backends, record_every=max(1, problem.steps // max(args.points, 1)), formats=formats)
    numbers = divergence_numbers(runs, problem)
    tols = {dtype: trajectory_tolerance(dtype, problem.optimizer) for dtype in formats_of(runs)}
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
