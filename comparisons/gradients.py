"""gradients: where, inside the network, do the backends' gradients differ?

For one batch (the full training set, or the first minibatch with --batch-size), computes every
backend's gradient in float32 and float64 and draws, for each backend pair and each layer, a heatmap
of |grad_a − grad_b| / max|grad| — the gap at every weight, relative to that layer's largest
gradient. Each layer's bias is the heatmap's last row. Names the layer and parameter with the
largest gap.
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


def gradient_gaps(problem: Problem, backends: list[str]) -> dict:
    """{dtype: {(a, b): [per-layer gap arrays]}} and where each dtype's largest gap is."""
    X, y = one_batch(problem)
    out: dict = {"gaps": {}, "worst": {}, "n_layers": problem.spec.n_layers}
    for dtype in DTYPES:
        grads = {
            name: get_backend(name, dtype).loss_and_grads(problem.spec, problem.params, X, y)[1] for name in backends
        }
        worst = (-1.0, "")
        for a, b in itertools.combinations(backends, 2):
            gaps = layer_gaps(grads[a], grads[b])
            out["gaps"][dtype, a, b] = gaps
            for l, g in enumerate(gaps):
                i, j = np.unravel_index(np.argmax(g), g.shape)
                where = f"layer {l} b[{j}]" if i == g.shape[0] - 1 else f"layer {l} W[{i}, {j}]"
                if g[i, j] > worst[0]:
                    worst = (float(g[i, j]), f"{where} ({a} vs {b})")
        out["worst"][dtype] = worst
    return out


def finding(numbers: dict) -> str:
    parts = []
    for dtype, (gap, where) in numbers["worst"].items():
        pairs = [gaps for (d, _, _), gaps in numbers["gaps"].items() if d == dtype]
        per_layer = np.array([max(gaps[l].max() for gaps in pairs) for l in range(numbers["n_layers"])])
        spread = per_layer.max() / max(per_layer.min(), 1e-300)
        layers = (
            f"spread over every layer alike (the largest per-layer gaps are within {spread:.0f}× of each other)"
            if spread < 10
            else f"concentrated in layer {int(per_layer.argmax())} ({spread:.0f}× the least affected layer)"
        )
        parts.append(
            f"In {dtype} the largest gradient gap is {gap:.1e} of its layer's largest gradient, at {where}, {layers}."
        )
    g32, g64 = numbers["worst"].get("float32", (0, ""))[0], numbers["worst"].get("float64", (0, ""))[0]
    if g32 and g64:
        ratio, eps_ratio = g32 / max(g64, 1e-300), float(np.finfo(np.float32).eps / np.finfo(np.float64).eps)
        how = (
            "about the ratio of the two machine epsilons"
            if 0.1 < ratio / eps_ratio < 10
            else "not the ratio of the two machine epsilons"
        )
        parts.append(f"The float32 gaps are {ratio:.0e}× the float64 ones, {how} ({eps_ratio:.0e}).")
    return " ".join(parts)


def plot(numbers: dict, problem: Problem):
    from matplotlib.colors import LogNorm

    plt = pyplot()
    keys = list(numbers["gaps"])
    n_layers = problem.spec.n_layers
    fig, axes = plt.subplots(
        len(keys), n_layers, figsize=(3.2 * n_layers + 1.5, 2.1 * len(keys) + 0.8), squeeze=False, layout="constrained"
    )
    # In units of each dtype's machine epsilon, so float32 and float64 share one colour scale.
    norm = LogNorm(vmin=1e-2, vmax=30)
    for row, key in enumerate(keys):
        dtype, a, b = key
        eps = float(np.finfo(dtype).eps)
        for l, gap in enumerate(numbers["gaps"][key]):
            ax = axes[row, l]
            im = ax.imshow(
                np.clip(gap / eps, 1e-2, None), norm=norm, cmap="magma", aspect="auto", interpolation="nearest"
            )
            ax.axhline(gap.shape[0] - 1.5, color="w", lw=0.8)  # W rows above, the bias row below
            ax.set_xticks([])
            ax.set_yticks([gap.shape[0] - 1], ["b"])
            ax.grid(False)
            if row == 0:
                ax.set_title(f"layer {l}: W {gap.shape[0] - 1}×{gap.shape[1]} + b", fontsize=9)
            if l == 0:
                ax.set_ylabel(f"{a} vs {b}\n{dtype}", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.6, label="|grad_a − grad_b| / max|grad|, in units of the dtype's ε")
    fig.suptitle(f"Gradient gaps per weight, one batch\n{problem.describe()}", fontsize=10)
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
        "worst": numbers["worst"],
        "gaps": {" ".join(k): v for k, v in numbers["gaps"].items()},
    }
    publish(args.out, "gradients", fig, data, text)
    return 0
