"""weights: every parameter's value over training, one panel per tensor, the backends overlaid.

Trains each backend from the same init, records every parameter at every step, and draws them: one
coloured, labelled line per parameter, the backends on top of each other (solid, dashed, dotted).
The finding says which parameters have settled and which are still moving at the end, which
oscillate, and how far apart the backends' curves ever get.

What the words mean (the finding uses exactly these, and tests/comparisons/test_comparisons.py checks them):
  range     a parameter's max − min over the run
  settled   in the last 10 % of the steps it moved (Σ|Δθ|) less than 0.1 % of its range; its settle
            step is the first step after which it stays within 0.1 % of its range of its final value
  reversal  it turns back after moving at least 2 % of its range one way (smaller wiggles are not
            turns, so rounding noise and tiny jitters never count)
  oscillating   at least 3 reversals: it went back and forth at least twice (one overshoot, or a
            single bump, is not an oscillation)
"""

from __future__ import annotations

import argparse

import numpy as np

from comparisons.core.options import MAX_SEEDS, int_range, make_parser, seed_range
from comparisons.core.output import note, publish, pyplot
from comparisons.core.problem import XOR, build_problem, installed
from shared.params import flatten, param_names
from shared.trajectory import Trajectory

LINESTYLES = {"numpy": "-", "torch": (0, (5, 3)), "jax": (0, (1, 2))}
TAIL = 0.10  # "the end of the run": its last 10 % of steps
SETTLED = 0.001  # settled: moved less than 0.1 % of its range in the tail
SWING = 0.02  # a reversal: turning back after a move of at least 2 % of the range
OSCILLATING = 3  # oscillating: at least this many reversals
LABELLED = 12  # a tensor with at most this many elements gets one legend entry per element


def weight_series(traj: Trajectory) -> np.ndarray:
    """(steps + 1, n_params): every parameter (flatten order) before each step, and the final value."""
    snaps = [traj.snapshot(int(s)) for s in traj.snapshot_steps] + [traj.params]
    return np.stack([flatten(p).astype(np.float64) for p in snaps])


def element_names(spec) -> list[str]:
    """'layer0.W[1,3]', ... in flatten order."""
    names = []
    for name, (fan_in, fan_out) in zip(param_names(spec)[::2], spec.layer_shapes):
        layer = name.split(".")[0]
        names += [f"{layer}.W[{i},{j}]" for i in range(fan_in) for j in range(fan_out)]
        names += [f"{layer}.b[{j}]" for j in range(fan_out)]
    return names


def value_range(series: np.ndarray) -> np.ndarray:
    """(n,) max − min of each parameter over the run; 1e-300 where it never moved."""
    return np.maximum(series.max(axis=0) - series.min(axis=0), 1e-300)


def tail_movement(series: np.ndarray, tail: float = TAIL) -> np.ndarray:
    """(n,) Σ|Δθ| over the last `tail` share of the steps (at least one step), as a share of the range."""
    k = max(1, int(round(tail * (len(series) - 1))))
    return np.abs(np.diff(series[-k - 1 :], axis=0)).sum(axis=0) / value_range(series)


def settle_steps(series: np.ndarray, within: float = SETTLED) -> np.ndarray:
    """Per parameter, the first step after which it stays within `within` × (its range) of its final
    value. Meaningful only for settled parameters (`settled`): a parameter that still drifts reaches
    its final value at the end by definition."""
    final = series[-1]
    outside = np.abs(series - final) > within * value_range(series)  # (steps + 1, n)
    last_outside = np.where(outside.any(axis=0), len(series) - 1 - np.argmax(outside[::-1], axis=0), -1)
    return last_outside + 1


def settled(series: np.ndarray, tail: float = TAIL, within: float = SETTLED) -> np.ndarray:
    """(n,) bool: moved less than `within` of its range in the last `tail` of the steps."""
    return tail_movement(series, tail) < within


def reversals(series: np.ndarray, swing: float = SWING) -> np.ndarray:
    """Per parameter, how often it turns back after a move of at least `swing` × its range (a zigzag
    count with hysteresis: a wiggle smaller than that is neither a move nor a turn)."""
    threshold = swing * value_range(series)  # (n,)
    extreme = series[0].copy()  # the furthest point of the current move (its start, before any)
    direction = np.zeros(series.shape[1])  # +1 up, −1 down, 0 no move yet
    count = np.zeros(series.shape[1], int)
    for x in series[1:]:
        start = (direction == 0) & (np.abs(x - extreme) >= threshold)
        direction[start] = np.sign(x - extreme)[start]
        extreme[start] = x[start]
        further = (direction != 0) & ~start & (direction * (x - extreme) > 0)
        extreme[further] = x[further]
        turn = (direction != 0) & ~start & (direction * (extreme - x) >= threshold)
        count[turn] += 1
        direction[turn] *= -1
        extreme[turn] = x[turn]
    return count


def weight_numbers(runs: dict[str, Trajectory], spec) -> dict:
    series = {name: weight_series(t) for name, t in runs.items()}
    ref = next(iter(series.values()))
    scale = np.abs(ref).max()
    n = min(len(s) for s in series.values())  # a run stopped early (diverged) is compared up to its end
    gaps = {name: float(np.abs(s[:n] - ref[:n]).max() / scale) for name, s in series.items()}
    dtypes = {flatten(t.params).dtype.name for t in runs.values()}  # what the backends trained in
    return {
        "dtype": " and ".join(sorted(dtypes)),
        "names": element_names(spec),
        "series": series,
        "reference": next(iter(series)),
        "range": value_range(ref),
        "tail_movement": tail_movement(ref),
        "settled": settled(ref),
        "settle": settle_steps(ref),
        "reversals": reversals(ref),
        "gap": gaps,
        "steps": len(ref) - 1,
    }


def finding(numbers: dict, steps: int) -> str:
    names, steps_run = numbers["names"], numbers["steps"]
    done, settle, moving = numbers["settled"], numbers["settle"], numbers["tail_movement"]
    turns = numbers["reversals"]
    tail_steps = max(1, int(round(TAIL * steps_run)))
    tail_text = f"the last {tail_steps} of {steps_run} steps"
    text = f"All {len(names)} parameters, as {numbers['reference']} trained them. "
    if steps_run < steps:
        text += f"Training stopped at step {steps_run} of {steps} (a non-finite loss). "
    if done.any():
        first = [i for i in np.argsort(settle, kind="stable") if done[i]][:3]
        text += (
            f"{int(done.sum())} settled (moved < {SETTLED:.1%} of their range in {tail_text}); first: "
            + ", ".join(f"{names[i]} (step {settle[i]})" for i in first)
            + ". "
        )
    else:
        i = int(np.argmin(moving))
        text += (
            f"None has settled (moved < {SETTLED:.1%} of its range in {tail_text}): even the stillest, "
            f"{names[i]}, moved {moving[i]:.2%} of its range. "
        )
    if (~done).any():
        busiest = [i for i in np.argsort(-moving, kind="stable") if not done[i]][:3]
        still = f"All {len(names)}" if not done.any() else f"The other {int((~done).sum())}"
        text += (
            f"{still} still move at the end; most (movement in {tail_text}): "
            + ", ".join(f"{names[i]} ({moving[i]:.1%} of its range)" for i in busiest)
            + ". "
        )
    osc = [i for i in np.argsort(-turns, kind="stable") if turns[i] >= OSCILLATING]
    rule = f"≥ {OSCILLATING} reversals of ≥ {SWING:.0%} of the range"
    if osc:
        text += (
            f"{_count(len(osc), 'oscillates', 'oscillate')} ({rule}): "
            + ", ".join(f"{names[i]} ({turns[i]} reversals)" for i in osc[:3])
            + ". "
        )
    elif turns.max() > 0:
        turned = [i for i in np.argsort(-turns, kind="stable") if turns[i] > 0]
        text += (
            f"None oscillates ({rule}); {len(turned)} turned back once or twice: "
            + ", ".join(f"{names[i]} ({turns[i]})" for i in turned[:3])
            + (f" and {len(turned) - 3} more" if len(turned) > 3 else "")
            + ". "
        )
    else:
        text += f"None turned back (no reversal of ≥ {SWING:.0%} of its range): each moved one way. "
    gap = max(numbers["gap"].values())
    others = [name for name in numbers["gap"] if name != numbers["reference"]]
    if others:
        verb = "differs" if len(others) == 1 else "differ"
        text += (
            f"{', '.join(others)} never {verb} from {numbers['reference']} by more than {gap:.1e} of the largest "
            "parameter: the curves lie on top of each other."
        )
    return text


def _tensor_blocks(spec) -> list[tuple[str, int, int, tuple[int, int] | tuple[int]]]:
    """(title, start, stop, shape) of every tensor in flatten order: layer l's W, then its b."""
    blocks, start = [], 0
    for l, (fan_in, fan_out) in enumerate(spec.layer_shapes):
        blocks.append((f"layer{l}.W", start, start + fan_in * fan_out, (fan_in, fan_out)))
        start += fan_in * fan_out
        blocks.append((f"layer{l}.b", start, start + fan_out, (fan_out,)))
        start += fan_out
    return blocks


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def plot(numbers: dict, spec, problem_text: str):
    from matplotlib.lines import Line2D

    plt = pyplot()
    n_layers = spec.n_layers
    fig, axes = plt.subplots(
        n_layers,
        2,
        figsize=(13, 3.4 * n_layers + 1.0),
        squeeze=False,
        layout="constrained",
        gridspec_kw={"width_ratios": [1.4, 1]},
    )
    done, settle, turns = numbers["settled"], numbers["settle"], numbers["reversals"]
    osc = turns >= OSCILLATING
    busiest = set(np.argsort(-np.where(done, -np.inf, numbers["tail_movement"]))[:3]) - set(np.flatnonzero(done))
    named = set(np.flatnonzero(osc)) | busiest | {i for i in np.argsort(settle) if done[i]}
    colors = plt.get_cmap("tab20").colors
    for panel, block in enumerate(_tensor_blocks(spec)):
        last_row, first_col = panel // 2 == n_layers - 1, panel % 2 == 0
        _tensor_panel(axes[panel // 2, panel % 2], numbers, block, named, colors, last_row, first_col)
    backends = [
        Line2D([], [], color="k", ls=LINESTYLES.get(name, "-"), lw=1.4, label=name) for name in numbers["series"]
    ]
    if done.any():
        backends.append(Line2D([], [], ls="", marker="o", color="0.6", mec="k", label="settle step"))
    fig.legend(
        handles=backends,
        loc="outside lower center",
        ncol=len(backends),
        title="line style: backend (they lie on top of each other); colour: parameter",
    )
    fig.suptitle(f"Every parameter during training, {numbers['dtype']} — {problem_text}", fontsize=10)
    return fig


def _tensor_panel(ax, numbers: dict, block, named: set, colors, last_row: bool, first_col: bool) -> None:
    """One weight matrix or bias vector: every element over training on every backend; the few worth
    naming in colour, with when they settled and how often they turned back, the others grey."""
    title, start, stop, shape = block
    names, done, settle, turns = numbers["names"], numbers["settled"], numbers["settle"], numbers["reversals"]
    osc = turns >= OSCILLATING
    few = stop - start <= LABELLED
    for k, i in enumerate(range(start, stop)):
        shown = few or i in named
        color = colors[(2 * k) % 20 if stop - start <= 10 else k % 20] if shown else "0.75"
        for name, series in numbers["series"].items():
            ax.plot(
                np.arange(len(series)),
                series[:, i],
                ls=LINESTYLES.get(name, "-"),
                color=color,
                lw=1.5 if name == numbers["reference"] else 1.1,
                zorder=3 if shown else 1,
            )
        if shown:
            short = names[i].split(".", 1)[1]
            notes = []
            if done[i]:
                notes.append(f"settled @{settle[i]}")
                ref = numbers["series"][numbers["reference"]]
                ax.plot(settle[i], ref[settle[i], i], "o", color=color, mec="k", ms=6, zorder=4)
            if turns[i]:
                notes.append(_count(int(turns[i]), "reversal", "reversals") + (" (oscillates)" if osc[i] else ""))
            ax.plot([], [], color=color, lw=2, label=short + (f"  {', '.join(notes)}" if notes else ""))
    hidden = (stop - start) - sum(1 for i in range(start, stop) if few or i in named)
    if hidden:
        ax.plot([], [], color="0.75", lw=2, label=f"{hidden} others (grey)")
    kind = "weights" if shape == () or len(shape) == 2 else "biases"
    size = _count(stop - start, kind[:-1] if kind == "weights" else "bias", kind)
    layout = f" (W[i,j]: input i → unit j, {shape[0]}×{shape[1]})" if len(shape) == 2 else ""
    ax.set_title(f"{title}: {size}{layout}", fontsize=10)
    ax.axhline(0, color="0.6", lw=0.6)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    if last_row:
        ax.set_xlabel("training step")
    if first_col:
        ax.set_ylabel("parameter value")


def seed_counts(parser, args, backend: str, seeds: int) -> list[dict]:
    """The finding's counts over seeds --seed … --seed + seeds − 1 on one backend: how many parameters
    settled, oscillate, turned back, and how little the stillest moved in the last steps."""
    rows = []
    for seed in range(args.seed, args.seed + seeds):
        problem = build_problem(parser, argparse.Namespace(**{**vars(args), "seed": seed}))
        series = weight_series(problem.train(backend, args.dtype, record_every=1, on_nonfinite="stop"))
        turns = reversals(series)
        rows.append(
            {
                "seed": seed,
                "settled": int(settled(series).sum()),
                "oscillating": int((turns >= OSCILLATING).sum()),
                "turned_back": int(((turns > 0) & (turns < OSCILLATING)).sum()),
                "stillest_moved": float(tail_movement(series).min()),
            }
        )
    return rows


def seeds_finding(rows: list[dict], backend: str, n_params: int) -> str:
    def span(key: str, fmt: str = "d") -> str:
        lo, hi = min(r[key] for r in rows), max(r[key] for r in rows)
        return f"{lo:{fmt}}" if lo == hi else f"{lo:{fmt}}–{hi:{fmt}}"

    which = seed_range(rows[0]["seed"], len(rows))
    return (
        f"Over {which} on {backend}, of the {n_params} parameters: {span('settled')} settled, "
        f"{span('oscillating')} oscillate, {span('turned_back')} turned back once or twice; the stillest moved "
        f"{span('stillest_moved', '.2%')} of its range in the last {TAIL:.0%} of the steps."
    )


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(
        "weights",
        __doc__.split("\n\n")[1],
        XOR,
        epilog="example: python -m comparisons weights --optimizer momentum --lr 0.3",
    )
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="default: float64")
    parser.add_argument(
        "--seeds",
        type=int_range(1, MAX_SEEDS),
        default=5,
        help=f"seeds --seed … --seed + N − 1 to count over on the first backend, 1 to {MAX_SEEDS} (default: 5)",
    )
    args = parser.parse_args(argv)
    problem = build_problem(parser, args)
    if problem.spec.n_params > 2000:
        parser.error(f"weights draws every parameter; {problem.spec.n_params} are too many to read (max 2000)")
    backends = installed(args.backends)
    runs = {}
    for name in backends:
        note(f"training {name} {args.dtype}")
        runs[name] = problem.train(name, args.dtype, record_every=1, on_nonfinite="stop")
    numbers = weight_numbers(runs, problem.spec)
    if args.seeds > 1:
        note(f"and the counts over {args.seeds} seeds on {backends[0]}")
    counts = seed_counts(parser, args, backends[0], args.seeds)
    text = finding(numbers, problem.steps) + " " + seeds_finding(counts, backends[0], problem.spec.n_params)
    fig = plot(numbers, problem.spec, problem.describe())
    data = {
        "problem": problem.describe(),
        "dtype": numbers["dtype"],
        "definitions": __doc__.split("\n\n")[2],
        "names": numbers["names"],
        "range": numbers["range"],
        "tail_movement": numbers["tail_movement"],
        "settled": numbers["settled"],
        "settle_step": numbers["settle"],
        "reversals": numbers["reversals"],
        "max_gap": numbers["gap"],
        "over_seeds": counts,
    }
    publish(args.out, "weights", fig, data, text)
    return 0
