"""noise: memorizing the training set is not learning the problem.

Noisy moons (or spirals), split into train and test halves. Trains networks of growing hidden width
and tracks the loss on both halves during training. A small network cannot even fit the training
set; a wide one fits it ever better while its test loss turns back up — it is learning the noise.
"""

from __future__ import annotations

import numpy as np

from backends import get_backend
from comparisons.common import (
    make_parser,
    non_negative_float,
    note,
    one_installed,
    positive_int,
    publish,
    pyplot,
)
from shared.data import make_dataset
from shared.optim import Adam
from shared.params import init_params
from shared.spec import MLPSpec


def run(backend: str, dataset: str, n: int, noise: float, widths: list[int], steps: int, seed: int) -> dict:
    data = make_dataset(dataset, n=n, noise=noise, seed=seed, **({"arms": 2} if dataset == "spirals" else {}))
    train, test = data.split(0.5, seed=seed)
    be = get_backend(backend)
    record = max(1, steps // 100)
    out = {"widths": widths, "record_every": record, "runs": {}}
    for width in widths:
        spec = MLPSpec((2, width, width, 1), "tanh", "bce")
        traj = be.train(
            spec, init_params(spec, seed), train.X, train.targets(spec), Adam(0.01), steps, record_every=record
        )
        snapshot_steps = [*traj.snapshot_steps.tolist(), steps]
        test_loss = [be.loss_and_grads(spec, traj.snapshot(s), test.X, test.targets(spec))[0] for s in snapshot_steps]
        train_loss = [
            be.loss_and_grads(spec, traj.snapshot(s), train.X, train.targets(spec))[0] for s in snapshot_steps
        ]
        final = traj.params
        accuracy = {
            name: float(((be.forward(spec, final, part.X)[:, 0] > 0) == part.y).mean())
            for name, part in (("train", train), ("test", test))
        }
        out["runs"][width] = {
            "steps": snapshot_steps,
            "train_loss": train_loss,
            "test_loss": test_loss,
            "accuracy": accuracy,
        }
    out["n_train"], out["n_test"] = len(train), len(test)
    return out


def finding(r: dict) -> str:
    runs = r["runs"]
    final = {w: (x["train_loss"][-1], x["test_loss"][-1]) for w, x in runs.items()}
    table = "; ".join(
        f"width {w}: train {final[w][0]:.3f} / test {final[w][1]:.3f} (test accuracy {runs[w]['accuracy']['test']:.0%})"
        for w in sorted(runs)
    )
    best_w = min(final, key=lambda w: final[w][1])
    text = f"Final BCE loss — {table}. The lowest test loss is at width {best_w}."
    widest = max(runs)
    wide = runs[widest]
    i = int(np.argmin(wide["test_loss"]))
    if i < len(wide["steps"]) - 1 and wide["test_loss"][-1] > 1.05 * wide["test_loss"][i]:
        text += (
            f" The widest network's test loss was lowest at step {wide['steps'][i]} ({wide['test_loss'][i]:.3f}) and "
            f"rose to {wide['test_loss'][-1]:.3f} while its train loss kept falling to {wide['train_loss'][-1]:.3f}: "
            "from there on it memorizes the noise in its training half, growing confident on points it would "
            "otherwise get wrong — the test loss punishes that even where the accuracy barely moves."
        )
    else:
        text += " The widest network's test loss never turned back up in this run."
    return text


def plot(r: dict, title: str):
    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 5), layout="constrained")
    cmap = plt.get_cmap("viridis")
    widths = r["widths"]
    for i, w in enumerate(widths):
        x = r["runs"][w]
        c = cmap(i / max(len(widths) - 1, 1))
        ax.plot(x["steps"], x["train_loss"], "-", color=c, lw=1.3, label=f"width {w}")
        ax.plot(x["steps"], x["test_loss"], "--", color=c, lw=1.3)
    ax.plot([], [], "k-", label="train")
    ax.plot([], [], "k--", label="test")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("BCE loss")
    ax.set_title("Train (solid) and test (dashed) loss during training")
    ax.legend(fontsize=8, ncol=2)
    ax2.plot(widths, [r["runs"][w]["train_loss"][-1] for w in widths], "o-", label="train")
    ax2.plot(widths, [r["runs"][w]["test_loss"][-1] for w in widths], "s--", label="test")
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("hidden width (two hidden layers)")
    ax2.set_ylabel("final loss")
    ax2.set_title("After training: wider fits the training set better — and the test set?")
    ax2.legend()
    fig.suptitle(title, fontsize=11)
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("noise", __doc__.split("\n\n")[1], None, one_backend=True)
    parser.add_argument("--dataset", choices=["moons", "spirals", "circles"], default="moons", help="default: moons")
    parser.add_argument("--n", type=positive_int, default=100, help="samples, split half/half (default: 100)")
    parser.add_argument("--noise", type=non_negative_float, default=0.3, help="default: 0.3")
    parser.add_argument("--widths", default="2,8,32,128", help="hidden widths to compare (default: 2,8,32,128)")
    parser.add_argument("--steps", type=positive_int, default=2000, help="Adam steps (default: 2000)")
    parser.add_argument("--seed", type=int, default=0, help="default: 0")
    args = parser.parse_args(argv)
    try:
        widths = sorted({int(w) for w in args.widths.split(",") if w.strip()})
    except ValueError:
        parser.error(f"--widths: expected positive integers like 2,8,32; got {args.widths!r}")
    if not widths or min(widths) < 1:
        parser.error(f"--widths: expected positive integers like 2,8,32; got {args.widths!r}")
    if args.n < 4:
        parser.error(f"--n {args.n} is too few to split into train and test")
    backend = one_installed(parser, args.backend)
    note(f"training widths {widths} on noisy {args.dataset} ({backend})")
    r = run(backend, args.dataset, args.n, args.noise, widths, args.steps, args.seed)
    text = finding(r)
    title = f"Noisy {args.dataset} (n={args.n}, noise {args.noise:g}), {r['n_train']} train / {r['n_test']} test points"
    publish(args.out, "noise", plot(r, title), {"runs": {str(w): x for w, x in r["runs"].items()}}, text)
    return 0
