"""weights: every weight's value over training, one panel per layer, the backends overlaid.

Trains each backend from the same init, records every parameter at every step, and draws them: the
lines of the three backends lie on top of each other. The finding says which weights settle fast,
which oscillate on the way (their step direction keeps flipping), and how far apart the backends'
curves ever get.
"""

from __future__ import annotations

import numpy as np

from comparisons.common import (
    BACKEND_COLORS,
    XOR,
    build_problem,
    installed,
    make_parser,
    note,
    publish,
    pyplot,
)
from shared.params import flatten, param_names
from shared.trajectory import Trajectory

LINESTYLES = {"numpy": "-", "torch": "--", "jax": ":"}


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


def settle_steps(series: np.ndarray, within: float = 0.01) -> np.ndarray:
    """Per weight, the first step after which it stays within `within` × (its range over the run)
    of its final value."""
    final = series[-1]
    band = within * (series.max(axis=0) - series.min(axis=0)) + 1e-12
    outside = np.abs(series - final) > band  # (steps + 1, n)
    last_outside = np.where(outside.any(axis=0), len(series) - 1 - np.argmax(outside[::-1], axis=0), -1)
    return last_outside + 1


def direction_flips(series: np.ndarray, min_step: float = 1e-9) -> np.ndarray:
    """Per weight, how often its update changes sign (moves that are smaller than min_step are ignored)."""
    steps = np.diff(series, axis=0)  # (steps, n)
    flips = np.zeros(series.shape[1], int)
    for k in range(series.shape[1]):
        s = steps[:, k]
        signs = np.sign(s[np.abs(s) > min_step])
        flips[k] = int((signs[1:] != signs[:-1]).sum())
    return flips


def weight_numbers(runs: dict[str, Trajectory], spec) -> dict:
    series = {name: weight_series(t) for name, t in runs.items()}
    ref = next(iter(series.values()))
    names = element_names(spec)
    settle, flips = settle_steps(ref), direction_flips(ref)
    scale = np.abs(ref).max()
    gaps = {name: float(np.abs(s - ref).max() / scale) for name, s in series.items()}
    return {"names": names, "series": series, "settle": settle, "flips": flips, "gap": gaps}


def finding(numbers: dict, steps: int) -> str:
    names, settle, flips = numbers["names"], numbers["settle"], numbers["flips"]
    order = np.argsort(settle)
    fast = ", ".join(f"{names[i]} (step {settle[i]})" for i in order[:3])
    slow = ", ".join(f"{names[i]} (step {settle[i]})" for i in order[::-1][:3])
    wobbly = np.argsort(flips)[::-1][:3]
    osc = ", ".join(f"{names[i]} ({flips[i]} reversals)" for i in wobbly if flips[i] > 0)
    gap = max(numbers["gap"].values())
    text = (
        f"Settled first (within 1% of its range of its final value): {fast}. Still moving latest: {slow} "
        f"(of {steps} steps). "
    )
    text += (
        f"Oscillating — the update direction reversed most often: {osc}. "
        if osc
        else "No weight ever reversed direction: every one moved monotonically. "
    )
    text += f"The backends' curves are never more than {gap:.1e} of the largest weight apart."
    return text


def plot(numbers: dict, spec, problem_text: str):
    plt = pyplot()
    n_layers = spec.n_layers
    fig, axes = plt.subplots(1, n_layers, figsize=(5.2 * n_layers, 4.2), squeeze=False, layout="constrained")
    bounds = np.cumsum([0] + [i * o + o for i, o in spec.layer_shapes])
    for name, series in numbers["series"].items():
        steps = np.arange(len(series))
        for l in range(n_layers):
            ax = axes[0, l]
            block = series[:, bounds[l] : bounds[l + 1]]
            lines = ax.plot(steps, block, LINESTYLES.get(name, "-"), color=BACKEND_COLORS[name], lw=1.1, alpha=0.85)
            lines[0].set_label(name)
    for l, (fan_in, fan_out) in enumerate(spec.layer_shapes):
        ax = axes[0, l]
        ax.set_title(f"layer {l}: {fan_in * fan_out} weights + {fan_out} biases")
        ax.set_xlabel("training step")
        ax.axhline(0, color="0.6", lw=0.6)
    axes[0, 0].set_ylabel("parameter value")
    fig.legend(loc="outside lower center", ncol=3, title="backend (the three sets of lines lie on top of each other)")
    fig.suptitle(f"Every parameter during training — {problem_text}", fontsize=10)
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(
        "weights",
        __doc__.split("\n\n")[1],
        XOR,
        epilog="example: python -m comparisons weights --optimizer momentum --lr 0.3",
    )
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="default: float64")
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
    text = finding(numbers, problem.steps)
    fig = plot(numbers, problem.spec, problem.describe())
    data = {
        "problem": problem.describe(),
        "names": numbers["names"],
        "settle_step": numbers["settle"],
        "direction_reversals": numbers["flips"],
        "max_gap": numbers["gap"],
    }
    publish(args.out, "weights", fig, data, text)
    return 0
