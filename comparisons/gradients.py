"""gradients: where, inside the network, do the backends' gradients differ?

At two points of one training run (NumPy, float64, with --optimizer, --lr, --steps, --batch-size):
the initial params and the params after --steps, every backend computes the gradient on one batch
(the full training set, or the first minibatch with --batch-size) in float32 and float64, at those
same params. For each backend pair and each layer a heatmap shows |grad_a − grad_b| / max|grad|: the
gap at every weight, relative to that layer's largest gradient. In a heatmap, row i is input i of
the layer (W[i, :]) and the last row its bias; column j is output unit j. Names the layer and
parameter with the largest gap.
"""

from __future__ import annotations

import itertools

import numpy as np

from backends import get_backend
from comparisons.common import (
    SPIRALS,
    Problem,
    build_problem,
    installed,
    make_parser,
    publish,
    pyplot,
)
from shared.training import minibatch_schedule

DTYPES = ("float64", "float32")


def one_batch(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    if problem.batch_size is None:
        return problem.X, problem.y
    rows = minibatch_schedule(len(problem.X), problem.batch_size, 1, problem.seed)[0]
    return problem.X[rows], problem.y[rows]


def layer_gaps(grads_a, grads_b) -> list[np.ndarray]:
    """Per layer, (fan_in + 1, fan_out): |ga − gb| / max|g| with W's rows first and b as the last row;
    max|g| is the largest |gradient| in that layer over both backends."""
    gaps = []
    for la, lb in zip(grads_a, grads_b):
        ga = np.vstack([la["W"], la["b"][None, :]]).astype(np.float64)  # (fan_in + 1, fan_out)
        gb = np.vstack([lb["W"], lb["b"][None, :]]).astype(np.float64)
        scale = max(np.abs(ga).max(), np.abs(gb).max())
        gaps.append(np.abs(ga - gb) / scale if scale > 0 else np.zeros_like(ga))
    return gaps


def checkpoints(problem: Problem) -> dict[int, list]:
    """{step: params}: the initial params and those after problem.steps steps of NumPy float64 training
    (or where it stopped, if the loss stopped being finite)."""
    traj = problem.train("numpy", "float64", record_every=problem.steps, on_nonfinite="stop")
    return {0: traj.snapshot(0), len(traj): traj.params}


def gradient_gaps(problem: Problem, backends: list[str], at: dict[int, list] | None = None) -> dict:
    """{(step, dtype, a, b): [per-layer gap arrays]} and, per (step, dtype), where the largest gap is."""
    X, y = one_batch(problem)
    at = checkpoints(problem) if at is None else at
    out: dict = {"gaps": {}, "worst": {}, "n_layers": problem.spec.n_layers, "steps": list(at)}
    for step, params in at.items():
        for dtype in DTYPES:
            grads = {name: get_backend(name, dtype).loss_and_grads(problem.spec, params, X, y)[1] for name in backends}
            worst = (-1.0, "")
            for a, b in itertools.combinations(backends, 2):
                gaps = layer_gaps(grads[a], grads[b])
                out["gaps"][step, dtype, a, b] = gaps
                for l, g in enumerate(gaps):
                    i, j = np.unravel_index(np.argmax(g), g.shape)
                    where = f"layer {l} b[{j}]" if i == g.shape[0] - 1 else f"layer {l} W[{i}, {j}]"
                    if g[i, j] > worst[0]:
                        worst = (float(g[i, j]), f"{where} ({a} vs {b})")
            out["worst"][step, dtype] = worst
    return out


def layer_spread(numbers: dict, step: int, dtype: str) -> np.ndarray:
    """(n_layers,) the largest gap in each layer over every pair, at that step and dtype."""
    pairs = [gaps for (s, d, _, _), gaps in numbers["gaps"].items() if (s, d) == (step, dtype)]
    return np.array([max(gaps[l].max() for gaps in pairs) for l in range(numbers["n_layers"])])


def finding(numbers: dict) -> str:
    parts = []
    eps_ratio = float(np.finfo(np.float32).eps / np.finfo(np.float64).eps)
    for step in numbers["steps"]:
        when = "At initialization" if step == 0 else f"After {step} training steps"
        texts = []
        for dtype in DTYPES:
            if (step, dtype) not in numbers["worst"]:
                continue
            gap, where = numbers["worst"][step, dtype]
            per_layer = layer_spread(numbers, step, dtype)
            if per_layer.min() <= 0:
                layers = "some layer's gradients agree exactly"
            else:
                spread = per_layer.max() / per_layer.min()
                layers = (
                    f"the layers' largest gaps within a factor {spread:.1f} of each other"
                    if spread < 10
                    else f"layer {int(per_layer.argmax())}'s {spread:.0f}× the least affected layer's"
                )
            eps = float(np.finfo(dtype).eps)
            texts.append(f"in {dtype} {gap:.1e} ({gap / eps:.1f} ε) at {where}, {layers}")
        parts.append(
            f"{when}, the largest gradient gap (relative to its layer's largest gradient) is " + "; ".join(texts) + "."
        )
        g32, g64 = (numbers["worst"].get((step, d), (0.0, ""))[0] for d in ("float32", "float64"))
        if g32 and g64:
            ratio = g32 / g64
            how = "about" if 0.1 < ratio / eps_ratio < 10 else "not"
            parts.append(
                f"float32 / float64: {ratio:.0e}, {how} the ratio of the two machine epsilons ({eps_ratio:.0e})."
            )
    return " ".join(parts)


def plot(numbers: dict, problem: Problem):
    from matplotlib.colors import LogNorm

    plt = pyplot()
    rows = list(dict.fromkeys((d, a, b) for (_, d, a, b) in numbers["gaps"]))  # float64 pairs, then float32
    steps, n_layers = numbers["steps"], problem.spec.n_layers
    cols = [(step, l) for step in steps for l in range(n_layers)]
    fig, axes = plt.subplots(
        len(rows),
        len(cols),
        figsize=(2.6 * len(cols) + 1.5, 1.9 * len(rows) + 1.4),
        squeeze=False,
        layout="constrained",
    )
    # In units of each dtype's machine epsilon, so float32 and float64 share one colour scale.
    top = max(float((g / np.finfo(d).eps).max()) for (_, d, _, _), gaps in numbers["gaps"].items() for g in gaps)
    norm = LogNorm(vmin=1e-2, vmax=max(30.0, top))
    for r, (dtype, a, b) in enumerate(rows):
        eps = float(np.finfo(dtype).eps)
        for c, (step, l) in enumerate(cols):
            gap = numbers["gaps"][step, dtype, a, b][l]  # (fan_in + 1, fan_out)
            ax = axes[r, c]
            im = ax.imshow(
                np.clip(gap / eps, 1e-2, None), norm=norm, cmap="magma", aspect="auto", interpolation="nearest"
            )
            ax.axhline(gap.shape[0] - 1.5, color="w", lw=0.8)  # W rows above, the bias row below
            ax.set_xticks([0, gap.shape[1] - 1] if gap.shape[1] > 1 else [0])
            ax.set_yticks([0, gap.shape[0] - 1], ["in 0", "b"])
            ax.tick_params(labelsize=7)
            ax.grid(False)
            if r == 0:
                fan_in, fan_out = gap.shape[0] - 1, gap.shape[1]
                ax.set_title(f"step {step} · layer {l}\n{fan_in} inputs + b ↓, {fan_out} outputs →", fontsize=8)
            if r == len(rows) - 1:
                ax.set_xlabel("output unit", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{a} vs {b}\n{dtype}\ninput (row)", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.6, label="|grad_a − grad_b| / max|grad|, in units of the dtype's ε")
    fig.suptitle(
        f"Gradient gaps per weight at the same params, one batch, at step {' and '.join(map(str, steps))} "
        f"of one NumPy float64 run\n{problem.describe()}",
        fontsize=10,
    )
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(
        "gradients",
        __doc__.split("\n\n")[1],
        SPIRALS,
        epilog="example: python -m comparisons gradients --sizes 2,32,32,3 --activation gelu",
    )
    args = parser.parse_args(argv)
    problem = build_problem(parser, args)
    backends = installed(args.backends)
    if len(backends) < 2:
        parser.error(f"gradients needs at least two installed backends; have {', '.join(backends)}")
    numbers = gradient_gaps(problem, backends)
    text = finding(numbers)
    fig = plot(numbers, problem)
    data = {
        "problem": problem.describe(),
        "worst": {f"step {s} {d}": v for (s, d), v in numbers["worst"].items()},
        "gaps": {f"step {s} {d} {a} {b}": v for (s, d, a, b), v in numbers["gaps"].items()},
    }
    publish(args.out, "gradients", fig, data, text)
    return 0
