"""gradients: where, inside the network, do the backends' gradients differ?

At two points of one training run (NumPy, float64, with --optimizer, --lr, --steps, --batch-size):
the initial params and the params after --steps, every backend computes the gradient on one batch
(the full training set, or the first minibatch with --batch-size) in float32 and float64 (--dtype all:
in the half formats and mixed precision too), at those same params. For each backend pair and each
layer a heatmap shows |grad_a − grad_b| / max|grad|: the gap at every weight, relative to that
layer's largest gradient, in units of the format's ε. In a heatmap, row i is input i of
the layer (W[i, :]) and the last row its bias; column j is output unit j. Names the layer and
parameter with the largest gap. With --model gpt (a tiny transformer, dozens of tensors), a dot per
backend pair and named tensor instead: its largest gap in units of the dtype's ε.
"""

from __future__ import annotations

import itertools

import numpy as np

from backends import get_backend
from comparisons.core.options import make_parser
from comparisons.core.output import PAIR_COLORS, publish, pyplot
from comparisons.core.problem import SPIRALS, Problem, build_problem, installed, rounding_noise_tensors
from shared.params import named_leaves
from shared.spec import GPTSpec
from shared.training import minibatch_schedule
from shared.validation import DTYPES, FORMATS, format_eps, split_format


def _grads(problem: Problem, backends: list[str], name: str, params, X, y) -> dict:
    dtype, precision = split_format(name)
    backend = {b: get_backend(b, dtype, precision=precision) for b in backends}
    return {b: be.loss_and_grads(problem.spec, params, X, y)[1] for b, be in backend.items()}


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


def tensor_gaps(grads_a, grads_b) -> dict[str, np.ndarray]:
    """Per named tensor, |ga − gb| / max|g| elementwise, max|g| the tensor's largest |gradient| over
    both backends (a GPT has too many tensors, of too many shapes, for one heatmap each)."""
    gaps = {}
    for (name, ga), (_, gb) in zip(named_leaves(grads_a), named_leaves(grads_b)):
        ga, gb = np.asarray(ga, np.float64), np.asarray(gb, np.float64)
        scale = max(np.abs(ga).max(), np.abs(gb).max())
        gaps[name] = np.abs(ga - gb) / scale if scale > 0 else np.zeros_like(ga)
    return gaps


def checkpoints(problem: Problem) -> dict[int, list]:
    """{step: params}: the initial params and those after problem.steps steps of NumPy float64 training
    (or where it stopped, if the loss stopped being finite)."""
    traj = problem.train("numpy", "float64", record_every=problem.steps, on_nonfinite="stop")
    return {0: traj.snapshot(0), len(traj): traj.params}


def gradient_gaps(
    problem: Problem, backends: list[str], at: dict[int, list] | None = None, dtypes: tuple[str, ...] = DTYPES
) -> dict:
    """{(step, format, a, b): [per-layer gap arrays]} and, per (step, format), where the largest gap is,
    for each format in `dtypes` ('float64', ..., 'bfloat16-mixed')."""
    X, y = one_batch(problem)
    at = checkpoints(problem) if at is None else at
    if isinstance(problem.spec, GPTSpec):
        return gpt_gradient_gaps(problem, backends, at, X, y, list(dtypes))
    out: dict = {"gaps": {}, "worst": {}, "n_layers": problem.spec.n_layers, "steps": list(at), "dtypes": list(dtypes)}
    for step, params in at.items():
        for dtype in dtypes:
            grads = _grads(problem, backends, dtype, params, X, y)
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


def gpt_gradient_gaps(problem: Problem, backends: list[str], at: dict, X, y, dtypes=DTYPES) -> dict:
    """As gradient_gaps, per named tensor: {"gaps": {(step, dtype, a, b): {name: largest gap}}}, the worst
    entry per (step, dtype) outside the tensors whose gradient is rounding noise ({step: {name: ratio}})."""
    out: dict = {"gaps": {}, "worst": {}, "noise": {}, "steps": list(at), "dtypes": list(dtypes)}
    for step, params in at.items():
        noise = out["noise"][step] = rounding_noise_tensors(problem.spec, params, X, y)
        for dtype in dtypes:
            grads = _grads(problem, backends, dtype, params, X, y)
            worst = (-1.0, "")
            for a, b in itertools.combinations(backends, 2):
                gaps = tensor_gaps(grads[a], grads[b])
                out["gaps"][step, dtype, a, b] = {name: float(g.max(initial=0.0)) for name, g in gaps.items()}
                for name, g in gaps.items():
                    if name in noise or g.size == 0 or g.max() <= worst[0]:
                        continue
                    i = np.unravel_index(np.argmax(g), g.shape)
                    worst = (float(g[i]), f"{name}[{', '.join(map(str, i))}] ({a} vs {b})")
            out["worst"][step, dtype] = worst
    return out


def tensor_spread(numbers: dict, step: int, dtype: str) -> dict[str, float]:
    """{name: the largest gap in that tensor over every pair}, at that step and dtype."""
    pairs = [gaps for (s, d, _, _), gaps in numbers["gaps"].items() if (s, d) == (step, dtype)]
    return {name: max(gaps[name] for gaps in pairs) for name in pairs[0]}


def gpt_finding(numbers: dict) -> str:
    parts = []
    eps_ratio = float(np.finfo(np.float32).eps / np.finfo(np.float64).eps)
    for step in numbers["steps"]:
        when = "At initialization" if step == 0 else f"After {step} training steps"
        noise = numbers["noise"][step]
        texts = []
        for dtype in numbers.get("dtypes", DTYPES):
            if (step, dtype) not in numbers["worst"]:
                continue
            eps = format_eps(dtype)
            gap, where = numbers["worst"][step, dtype]
            spread = {k: v / eps for k, v in tensor_spread(numbers, step, dtype).items() if k not in noise}
            low = min(spread, key=spread.get)
            texts.append(
                f"in {dtype} {gap:.1e} ({gap / eps:.1f} ε) at {where}; the least, {spread[low]:.1f} ε, in {low}"
            )
        parts.append(
            f"{when}, the largest gradient gap (relative to its tensor's largest gradient) is " + "; ".join(texts) + "."
        )
        parts += _precision_ratio(numbers, step, eps_ratio)
        if noise:
            worst = {name: max(g[name] for (s, _, _, _), g in numbers["gaps"].items() if s == step) for name in noise}
            parts.append(
                "Left out: "
                + ", ".join(f"{name} (gaps up to {worst[name]:.0%} of its own largest gradient)" for name in noise)
                + ", whose float64 gradient is rounding noise ("
                + ", ".join(f"{ratio:.0e}" for ratio in noise.values())
                + " of the model's largest): the loss does not depend on it, so its gap is noise against noise."
            )
    return " ".join(parts)


def gpt_plot(numbers: dict, problem: Problem):
    """One panel per (dtype, step): a row per named tensor, a dot per backend pair at its largest gap
    in ε units; tensors whose gradient is rounding noise greyed."""
    plt = pyplot()
    steps = numbers["steps"]
    names = list(next(iter(numbers["gaps"].values())))
    dtypes = numbers.get("dtypes", DTYPES)
    fig, axes = plt.subplots(
        len(dtypes),
        len(steps),
        figsize=(5.2 * len(steps) + 1, 0.22 * len(names) * len(dtypes) + 2),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    floor = 1e-2  # a gap of exactly 0 is drawn here
    y = np.arange(len(names))
    noise = set().union(*numbers["noise"].values())
    real = [g[name] / format_eps(d) for (_, d, _, _), g in numbers["gaps"].items() for name in names]
    real = [v for v, name in zip(real, names * len(numbers["gaps"])) if name not in noise]
    edge = max(100.0, 10 * max(real, default=1.0))  # noise tensors' gaps (~1/ε) are drawn as ▶ here
    for r, dtype in enumerate(dtypes):
        eps = format_eps(dtype)
        for c, step in enumerate(steps):
            ax = axes[r, c]
            for (s, d, a, b), gaps in numbers["gaps"].items():
                if (s, d) != (step, dtype):
                    continue
                x = np.clip([gaps[name] / eps for name in names], floor, edge)
                off = x >= edge
                ax.plot(x[~off], y[~off], "o", ms=5, color=PAIR_COLORS[a, b], alpha=0.8, label=f"{a} vs {b}")
                ax.plot(x[off], y[off], ">", ms=6, color=PAIR_COLORS[a, b], alpha=0.8)
            ax.set_xscale("log")
            ax.set_xlim(floor / 2, edge * 2)
            ax.tick_params(labelsize=7)
            ax.axvline(1.0, color="0.5", lw=0.8)
            ax.set_title(f"{dtype}, step {step}", fontsize=9)
            if r == len(dtypes) - 1:
                ax.set_xlabel("largest |grad_a − grad_b| / max|grad| of the tensor, in ε")
    for ax in axes[:, 0]:
        ax.set_yticks(y, [f"{n}  (noise) ▶" if n in noise else n for n in names], fontsize=7)
        for label, name in zip(ax.get_yticklabels(), names):
            if name in noise:
                label.set_color("0.6")
    axes[0, 0].invert_yaxis()
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3)
    fig.suptitle(
        f"Gradient gaps per tensor at the same params, one batch, at step {' and '.join(map(str, steps))} "
        f"of one NumPy float64 run\n{problem.describe()}\n"
        "(noise): a tensor whose float64 gradient is rounding noise — the loss does not depend on it; "
        "▶ its gap, ~1/ε, is off the scale",
        fontsize=9,
    )
    return fig


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
        for dtype in numbers.get("dtypes", DTYPES):
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
            texts.append(f"in {dtype} {gap:.1e} ({gap / format_eps(dtype):.1f} ε) at {where}, {layers}")
        parts.append(
            f"{when}, the largest gradient gap (relative to its layer's largest gradient) is " + "; ".join(texts) + "."
        )
        parts += _precision_ratio(numbers, step, eps_ratio)
    return " ".join(parts)


def _precision_ratio(numbers: dict, step: int, eps_ratio: float) -> list[str]:
    """The sentence comparing the float32 and float64 gaps at `step` with the ratio of the two machine
    epsilons (none when either dtype was not run or its gap is 0)."""
    g32, g64 = (numbers["worst"].get((step, d), (0.0, ""))[0] for d in ("float32", "float64"))
    if not (g32 and g64):
        return []
    ratio = g32 / g64
    how = "about" if 0.1 < ratio / eps_ratio < 10 else "not"
    return [f"float32 / float64: {ratio:.0e}, {how} the ratio of the two machine epsilons ({eps_ratio:.0e})."]


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
    top = max(float((g / format_eps(d)).max()) for (_, d, _, _), gaps in numbers["gaps"].items() for g in gaps)
    norm = LogNorm(vmin=1e-2, vmax=max(30.0, top))
    for r, (dtype, a, b) in enumerate(rows):
        eps = format_eps(dtype)
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
    fig.colorbar(im, ax=axes, shrink=0.6, label="|grad_a − grad_b| / max|grad|, in units of the format's ε")
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
        epilog=(
            "examples:\n  python -m comparisons gradients --sizes 2,32,32,3 --activation gelu\n"
            "  python -m comparisons gradients --model gpt --gpt 8,8,16,2,1 --steps 50"
        ),
        gpt=True,
    )
    parser.add_argument(
        "--dtype",
        choices=[*FORMATS, "both", "all"],
        default="both",
        help="one format, both (float64 and float32) or all (the half formats and mixed precision too, "
        "each gap in units of the format's own ε); default: both",
    )
    args = parser.parse_args(argv)
    problem = build_problem(parser, args)
    backends = installed(args.backends)
    if len(backends) < 2:
        parser.error(f"gradients needs at least two installed backends; have {', '.join(backends)}")
    dtypes = {"both": list(DTYPES), "all": list(FORMATS)}.get(args.dtype, [args.dtype])
    numbers = gradient_gaps(problem, backends, dtypes=tuple(dtypes))
    gpt = isinstance(problem.spec, GPTSpec)
    text = gpt_finding(numbers) if gpt else finding(numbers)
    fig = gpt_plot(numbers, problem) if gpt else plot(numbers, problem)
    data = {
        "problem": problem.describe(),
        "worst": {f"step {s} {d}": v for (s, d), v in numbers["worst"].items()},
        "gaps": {f"step {s} {d} {a} {b}": v for (s, d, a, b), v in numbers["gaps"].items()},
    }
    if gpt:
        data["rounding_noise"] = {f"step {s}": v for s, v in numbers["noise"].items()}
    publish(args.out, "gradients", fig, data, text)
    return 0
