"""paths: which input→hidden→output paths carry the XOR solution?

In a 2→4→1 network every input reaches the output along 4 paths, one through each hidden unit.
A path's strength is the product of the two weights along it, W₀[i, j] · W₁[j, 0]: how strongly
input i drives the output through hidden unit j (to first order, where tanh is near linear). This
follows all 8 path strengths through training and ranks them at the end.
"""

from __future__ import annotations

import numpy as np

from backends import get_backend
from comparisons.common import (
    make_parser,
    non_negative_int,
    note,
    one_installed,
    positive_float,
    positive_int,
    publish,
    pyplot,
)
from shared.data import xor
from shared.optim import SGD
from shared.params import Params, init_params
from shared.spec import MLPSpec

SPEC = MLPSpec((2, 4, 1), "tanh", "bce")


def path_strengths(params: Params) -> np.ndarray:
    """(inputs, hidden): W₀[i, j] · W₁[j, 0], the strength of path input i → hidden j → output."""
    return params[0]["W"] * params[1]["W"][:, 0][None, :]  # (2, 4) * (1, 4) -> (2, 4)


def run(backend: str, steps: int, lr: float, seed: int) -> dict:
    data = xor()
    traj = get_backend(backend).train(
        SPEC, init_params(SPEC, seed), data.X, data.targets(SPEC), SGD(lr, momentum=0.9), steps, record_every=1
    )
    series = np.stack([path_strengths(traj.snapshot(s)) for s in range(steps + 1)])  # (steps + 1, 2, 4)
    return {"series": series, "losses": traj.losses}


def ranking(final: np.ndarray) -> list[tuple[str, float, float]]:
    """Paths by |strength| at the end: (name, strength, share of Σ|strength|)."""
    total = np.abs(final).sum()
    order = np.argsort(-np.abs(final), axis=None)
    return [
        (f"x{i + 1}→h{j + 1}→y", float(final[i, j]), float(abs(final[i, j]) / total))
        for i, j in (np.unravel_index(k, final.shape) for k in order)
    ]


def finding(r: dict) -> str:
    ranked = ranking(r["series"][-1])
    top = ranked[:4]
    share = sum(s for _, _, s in top)
    units = sorted({name.split("→")[1] for name, _, _ in top})
    text = (
        f"The four strongest paths — {', '.join(f'{n} ({v:+.1f})' for n, v, _ in top)} — carry {share:.0%} of the "
        f"total path strength, through hidden unit{'s' if len(units) > 1 else ''} {', '.join(units)}."
    )
    for unit in units:
        paths = [(n, v) for n, v, _ in ranked if n.split("→")[1] == unit]
        if len(paths) == 2:
            same = np.sign(paths[0][1]) == np.sign(paths[1][1])
            text += (
                f" Through {unit} the two inputs push the output {'the same way' if same else 'in opposite ways'}"
                f" ({paths[0][1]:+.1f}, {paths[1][1]:+.1f})."
            )
    start, end = np.abs(r["series"][0]).max(), np.abs(r["series"][-1]).max()
    text += f" At the start no path was stronger than {start:.2f}; by the end the strongest is {end:.1f}."
    return text


def plot(r: dict):
    plt = pyplot()
    fig, (ax, ax2, ax3) = plt.subplots(
        1, 3, figsize=(17, 4.8), layout="constrained", gridspec_kw={"width_ratios": [2, 1.2, 1.2]}
    )
    series = r["series"]
    colors = plt.get_cmap("tab10")
    for j in range(series.shape[2]):
        for i, style in zip(range(series.shape[1]), ("-", "--")):
            ax.plot(series[:, i, j], style, color=colors(j), lw=1.6, label=f"x{i + 1}→h{j + 1}→y")
    ax.axhline(0, color="0.6", lw=0.7)
    ax.set_xlabel("training step")
    ax.set_ylabel("path strength W₀[i, j] · W₁[j]")
    ax.set_title("Path strengths during training (colour: hidden unit; solid x₁, dashed x₂)")
    ax.legend(fontsize=7, ncol=2)
    ranked = ranking(series[-1])
    ax2.barh(
        [n for n, _, _ in ranked][::-1],
        [v for _, v, _ in ranked][::-1],
        color=[colors(int(n.split("→")[1][1:]) - 1) for n, _, _ in ranked][::-1],
    )
    ax2.axvline(0, color="k", lw=0.7)
    ax2.set_title("At the end, strongest first")
    ax2.set_xlabel("path strength")
    ax3.plot(r["losses"], color="k")
    ax3.set_yscale("log")
    ax3.set_xlabel("training step")
    ax3.set_ylabel("BCE loss")
    ax3.set_title("Loss")
    fig.suptitle(f"XOR {SPEC.describe()}: which paths carry the solution?", fontsize=12)
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("paths", __doc__.split("\n\n")[1], None, one_backend=True)
    parser.add_argument("--steps", type=positive_int, default=500, help="default: 500")
    parser.add_argument("--lr", type=positive_float, default=0.3, help="SGD learning rate, momentum 0.9 (default: 0.3)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="default: 0")
    args = parser.parse_args(argv)
    backend = one_installed(parser, args.backend)
    note(f"training XOR {SPEC.describe()} on {backend}, recording every step")
    r = run(backend, args.steps, args.lr, args.seed)
    text = finding(r)
    publish(args.out, "paths", plot(r), {"ranking": ranking(r["series"][-1]), "series": r["series"]}, text)
    return 0
