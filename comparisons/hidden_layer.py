"""hidden-layer: why XOR needs a hidden layer.

Trains a linear model (2→1, no hidden layer) on XOR with MSE, from several seeds and learning
rates, and a 2→4→1 tanh network from one. No linear model beats 0.25 MSE or 75 % accuracy, however
it is trained: no straight line puts (0,1) and (1,0) on one side and (0,0) and (1,1) on the other.
The hidden layer bends the plane until one does.
"""

from __future__ import annotations

import numpy as np

from backends import get_backend
from comparisons.common import (
    make_parser,
    note,
    one_installed,
    positive_int,
    publish,
    pyplot,
)
from shared.data import xor
from shared.optim import SGD
from shared.params import init_params
from shared.spec import MLPSpec

LINEAR = MLPSpec((2, 1), "identity", "mse")
HIDDEN = MLPSpec((2, 4, 1), "tanh", "mse")
LINEAR_LRS = (0.05, 0.2, 0.5)
LINEAR_BOUND = 0.25  # the least-squares line through XOR predicts 0.5 everywhere: MSE exactly 1/4


def accuracy(be, spec, params, X, y) -> float:
    return float(((be.forward(spec, params, X)[:, 0] > 0.5) == (y[:, 0] > 0.5)).mean())


def run(backend: str, steps: int, seeds: int, hidden_lr: float) -> dict:
    data = xor()
    X, y = data.X, data.targets(LINEAR)  # (4, 2), (4, 1) in {0, 1}
    be = get_backend(backend)
    linear = []
    for seed in range(seeds):
        for lr in LINEAR_LRS:
            traj = be.train(LINEAR, init_params(LINEAR, seed), X, y, SGD(lr), steps)
            linear.append(
                {
                    "seed": seed,
                    "lr": lr,
                    "final_mse": float(traj.losses[-1]),
                    "min_mse": float(traj.losses.min()),
                    "accuracy": accuracy(be, LINEAR, traj.params, X, y),
                    "losses": traj.losses,
                    "params": traj.params,
                }
            )
    traj = be.train(HIDDEN, init_params(HIDDEN, 0), X, y, SGD(hidden_lr, momentum=0.9), steps)
    hidden = {
        "final_mse": float(traj.losses[-1]),
        "accuracy": accuracy(be, HIDDEN, traj.params, X, y),
        "losses": traj.losses,
        "params": traj.params,
    }
    return {"linear": linear, "hidden": hidden, "X": X, "y": y}


def finding(r: dict) -> str:
    best = min(run["min_mse"] for run in r["linear"])
    best_acc = max(run["accuracy"] for run in r["linear"])
    h = r["hidden"]
    return (
        f"Across {len(r['linear'])} linear runs (seeds × learning rates {', '.join(map(str, LINEAR_LRS))}) the lowest "
        f"MSE ever reached is {best:.4f} and the best accuracy {best_acc:.0%}: a linear model stops at the "
        f"least-squares line, which predicts 0.5 for every point (MSE {LINEAR_BOUND}). XOR is not linearly separable. "
        f"With one hidden layer of 4 tanh units the MSE falls to {h['final_mse']:.1e}"
        f"{' (zero to float64 precision)' if h['final_mse'] < 1e-20 else ''} and the accuracy is "
        f"{h['accuracy']:.0%}: the hidden units map the four points to a space where a line does separate them."
    )


def plot(r: dict, backend: str):
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained")
    be = get_backend(backend)
    gx, gy = np.meshgrid(np.linspace(-0.5, 1.5, 200), np.linspace(-0.5, 1.5, 200))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    best_linear = min(r["linear"], key=lambda run: run["final_mse"])
    panels = [
        (
            axes[0],
            LINEAR,
            best_linear["params"],
            f"no hidden layer (2→1): MSE {best_linear['final_mse']:.4f},\noutput ≈ 0.5 everywhere",
        ),
        (axes[1], HIDDEN, r["hidden"]["params"], f"hidden layer (2→4→1 tanh): MSE {r['hidden']['final_mse']:.1e}"),
    ]
    for ax, spec, params, title in panels:
        out = be.forward(spec, params, grid)[:, 0].reshape(gx.shape)
        im = ax.contourf(gx, gy, out, levels=np.linspace(-0.25, 1.25, 13), cmap="RdBu_r", extend="both")
        ax.contour(gx, gy, out, levels=[0.5], colors="k", linewidths=1.5)
        ax.scatter(*r["X"].T, c=r["y"][:, 0], cmap="RdBu_r", vmin=-0.25, vmax=1.25, s=160, edgecolors="k")
        ax.set_title(title)
        ax.set_xlabel("x₁")
        ax.set_ylabel("x₂")
        ax.grid(False)
    fig.colorbar(im, ax=axes[:2].tolist(), shrink=0.8, label="network output (black line: 0.5)")
    ax = axes[2]
    for run in r["linear"]:
        ax.plot(run["losses"], color="#1f77b4", alpha=0.35, lw=1)
    ax.plot([], [], color="#1f77b4", label=f"linear, {len(r['linear'])} runs")
    ax.plot(r["hidden"]["losses"], color="#d62728", lw=2, label="one hidden layer")
    ax.axhline(LINEAR_BOUND, color="k", ls="--", lw=1)
    ax.text(len(r["hidden"]["losses"]) * 0.98, LINEAR_BOUND * 1.3, "0.25: the best any line can do", ha="right")
    ax.set_yscale("log")
    ax.set_ylim(1e-6, 3)
    ax.set_xlabel("training step")
    ax.set_ylabel("MSE (below 1e-6 not shown)")
    ax.set_title("Training loss")
    ax.legend(loc="lower left")
    fig.suptitle(f"XOR needs a hidden layer ({backend} backend)", fontsize=12)
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("hidden-layer", __doc__.split("\n\n")[1], None, one_backend=True)
    parser.add_argument("--steps", type=positive_int, default=1000, help="training steps per run (default: 1000)")
    parser.add_argument("--seeds", type=positive_int, default=5, help="seeds for the linear model (default: 5)")
    parser.add_argument("--lr", type=float, default=0.5, help="hidden network's learning rate (default: 0.5)")
    args = parser.parse_args(argv)
    backend = one_installed(parser, args.backend)
    note(f"training {args.seeds * len(LINEAR_LRS)} linear models and one 2→4→1 network on {backend}")
    r = run(backend, args.steps, args.seeds, args.lr)
    text = finding(r)
    numbers = {
        "hidden": {k: r["hidden"][k] for k in ("final_mse", "accuracy")},
        "linear": [
            {k: v for k, v in run.items() if k in ("seed", "lr", "final_mse", "min_mse", "accuracy")}
            for run in r["linear"]
        ],
    }
    publish(args.out, "hidden-layer", plot(r, backend), numbers, text)
    return 0
