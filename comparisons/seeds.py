"""seeds: one architecture, many starting points, different solutions.

Trains the same small network on XOR (2→2→1 tanh by default: the smallest that can solve it) from
many seeds. Runs that classify all four points are successes; the rest got stuck. The successes are
then compared *up to symmetry* — swapping two hidden units, or flipping the signs of a tanh unit's
incoming and outgoing weights, changes no output — to count how many genuinely different solutions
the seeds found.
"""

from __future__ import annotations

import numpy as np

from backends import get_backend
from comparisons.common import (
    layer_sizes,
    make_parser,
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


def canonical(params: Params) -> np.ndarray:
    """A 1-hidden-layer tanh network as a vector that is the same for every symmetric copy of it:
    each hidden unit's sign is flipped so its outgoing weight is ≥ 0 (tanh is odd), then the units are
    sorted. Scaled to unit length, since training longer only makes BCE weights grow."""
    W1, b1, W2, b2 = params[0]["W"], params[0]["b"], params[1]["W"], params[1]["b"]
    units = []
    for j in range(W1.shape[1]):
        sign = 1.0 if W2[j, 0] >= 0 else -1.0
        units.append(np.concatenate([sign * W1[:, j], [sign * b1[j], sign * W2[j, 0]]]))
    units.sort(key=lambda u: tuple(np.round(u, 6)))
    v = np.concatenate([*units, b2])
    return v / np.linalg.norm(v)


def cluster(vectors: list[np.ndarray], tol: float = 0.1) -> list[int]:
    """Greedy clustering: a vector joins the first cluster whose founder is within `tol` (max abs)."""
    founders: list[np.ndarray] = []
    labels = []
    for v in vectors:
        for k, f in enumerate(founders):
            if np.abs(v - f).max() < tol:
                labels.append(k)
                break
        else:
            founders.append(v)
            labels.append(len(founders) - 1)
    return labels


def run(backend: str, spec: MLPSpec, seeds: int, steps: int, lr: float) -> dict:
    data = xor()
    X, y = data.X, data.targets(spec)
    be = get_backend(backend)
    runs = []
    for seed in range(seeds):
        traj = be.train(spec, init_params(spec, seed), X, y, SGD(lr, momentum=0.9), steps)
        predicted = (be.forward(spec, traj.params, X)[:, 0] > 0).astype(int)
        runs.append(
            {
                "seed": seed,
                "solved": bool((predicted == data.y).all()),
                "final_loss": float(traj.losses[-1]),
                "params": traj.params,
            }
        )
    solved = [r for r in runs if r["solved"]]
    labels = cluster([canonical(r["params"]) for r in solved]) if len(spec.sizes) == 3 else list(range(len(solved)))
    for r, label in zip(solved, labels):
        r["solution"] = label
    return {"runs": runs, "n_solutions": len(set(labels)), "X": X, "y": data.y}


def finding(r: dict) -> str:
    runs = r["runs"]
    solved = [x for x in runs if x["solved"]]
    failed = [x for x in runs if not x["solved"]]
    sizes = np.bincount([x["solution"] for x in solved]) if solved else np.array([], int)
    text = (
        f"{len(solved)} of {len(runs)} seeds solve XOR; {len(failed)} get stuck "
        f"(final loss {np.median([x['final_loss'] for x in failed]):.2f} median, against "
        f"{np.median([x['final_loss'] for x in solved]):.3f} for the solved)"
        if failed and solved
        else f"{len(solved)} of {len(runs)} seeds solve XOR"
    )
    if solved:
        text += (
            f". Up to swapping hidden units and flipping signs, the solved runs found {r['n_solutions']} distinct "
            f"solution{'s' if r['n_solutions'] != 1 else ''} (the most common one {sizes.max()} times)"
        )
    return (
        text + ": the same architecture, data and optimizer, and the starting point alone decides where training ends."
    )


def plot(r: dict, backend: str, spec: MLPSpec):
    plt = pyplot()
    runs = r["runs"][:15]
    fig = plt.figure(figsize=(16, 8), layout="constrained")
    grid = fig.add_gridspec(3, 7)
    be = get_backend(backend)
    gx, gy = np.meshgrid(np.linspace(-0.5, 1.5, 80), np.linspace(-0.5, 1.5, 80))
    points = np.column_stack([gx.ravel(), gy.ravel()])
    for i, run in enumerate(runs):
        ax = fig.add_subplot(grid[i // 5, i % 5])
        out = be.forward(spec, run["params"], points)[:, 0].reshape(gx.shape)
        ax.contourf(gx, gy, out > 0, levels=[-0.5, 0.5, 1.5], colors=["#c6dbef", "#fcbba1"])
        ax.scatter(*r["X"].T, c=r["y"], cmap="coolwarm", s=50, edgecolors="k")
        label = f"solution {run['solution'] + 1}" if run["solved"] else "stuck"
        ax.set_title(f"seed {run['seed']}: {label}", fontsize=9, color="k" if run["solved"] else "#b2182b")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    ax = fig.add_subplot(grid[:, 5:])
    solved = [x for x in r["runs"] if x["solved"]]
    counts = np.bincount([x["solution"] for x in solved]) if solved else np.array([])
    bars = [*counts, len(r["runs"]) - len(solved)]
    names = [f"solution {k + 1}" for k in range(len(counts))] + ["stuck"]
    ax.barh(names[::-1], bars[::-1], color=["#b2182b"] + ["#4393c3"] * len(counts))
    ax.set_xlabel("seeds")
    ax.set_title(f"{len(r['runs'])} seeds: distinct solutions (up to symmetry) and failures")
    fig.suptitle(f"XOR {spec.describe()} from different seeds ({backend}); first 15 shown", fontsize=12)
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("seeds", __doc__.split("\n\n")[1], None, one_backend=True)
    parser.add_argument("--seeds", type=positive_int, default=40, help="how many seeds (default: 40)")
    parser.add_argument("--steps", type=positive_int, default=1500, help="steps per run (default: 1500)")
    parser.add_argument("--lr", type=positive_float, default=0.3, help="SGD learning rate, momentum 0.9 (default: 0.3)")
    parser.add_argument("--sizes", type=layer_sizes, default=(2, 2, 1), help="default: 2,2,1")
    args = parser.parse_args(argv)
    if args.sizes[0] != 2 or args.sizes[-1] != 1:
        parser.error(f"--sizes must start with 2 (XOR's inputs) and end with 1 (one logit); got {args.sizes}")
    backend = one_installed(parser, args.backend)
    spec = MLPSpec(args.sizes, "tanh", "bce")
    note(f"training {args.seeds} seeds of {spec.describe()} on {backend}")
    r = run(backend, spec, args.seeds, args.steps, args.lr)
    text = finding(r)
    numbers = {
        "n_solutions": r["n_solutions"],
        "runs": [{k: v for k, v in x.items() if k != "params"} for x in r["runs"]],
    }
    publish(args.out, "seeds", plot(r, backend, spec), numbers, text)
    return 0
