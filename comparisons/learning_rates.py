"""learning-rates: too small is slow, too large diverges.

Sweeps the SGD learning rate over four decades on XOR and on moons (MSE, full batch) and records,
for each rate, how many steps training needs to bring the loss below a target (XOR: MSE 0.01; noisy
moons, where no network reaches zero: MSE 0.06) — or that it never gets there, or that it diverges
(the loss becomes non-finite, or ends above where it began). Diverged runs are marked in the
figure, never crashed.
"""

from __future__ import annotations

import argparse

import numpy as np

from backends import get_backend
from comparisons.common import int_range, make_parser, note, one_installed, positive_float, publish, pyplot, step_count
from shared.data import make_dataset
from shared.optim import SGD
from shared.params import init_params
from shared.spec import MLPSpec
from shared.training import MAX_STEPS

PROBLEMS = {
    "xor": (dict(name="xor"), MLPSpec((2, 4, 1), "tanh", "mse")),
    "moons": (dict(name="moons", n=200, noise=0.15), MLPSpec((2, 16, 1), "tanh", "mse")),
}
TARGETS = {"xor": 0.01, "moons": 0.06}  # "converged": the training MSE is below this
MAX_POINTS = 40  # one loss curve and one legend entry per rate: more cannot be told apart
LR_RANGE = (1e-8, 1e4)  # below, SGD on these problems does not move in any step count; above, it diverges at once


def learning_rate(text: str) -> float:
    """An argparse type for --min-lr/--max-lr: a number within LR_RANGE."""
    low, high = LR_RANGE
    value = positive_float(text)
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"expected a learning rate from {low:g} to {high:g}, got {text}")
    return value


def sweep(backend: str, lrs: np.ndarray, steps: int, seed: int = 0) -> dict:
    be = get_backend(backend)
    out = {}
    for name, (data_kwargs, spec) in PROBLEMS.items():
        data = make_dataset(seed=seed, **data_kwargs)
        X, y = data.X, data.targets(spec)
        runs = []
        for lr in lrs:
            traj = be.train(spec, init_params(spec, seed), X, y, SGD(float(lr)), steps, on_nonfinite="stop")
            start = float(traj.losses[0])
            below = np.flatnonzero(traj.losses < TARGETS[name])
            diverged = traj.diverged_at is not None or float(traj.losses[-1]) > start
            runs.append(
                {
                    "lr": float(lr),
                    "converged_at": int(below[0]) if len(below) and not diverged else None,
                    "diverged": diverged,
                    "diverged_at": traj.diverged_at,
                    "final_loss": float(traj.losses[-1]),
                    "losses": traj.losses,
                }
            )
        out[name] = runs
    return out


def summary(runs: list[dict]) -> dict:
    converged = [r for r in runs if r["converged_at"] is not None]
    best = min(converged, key=lambda r: r["converged_at"], default=None)
    diverging = [r["lr"] for r in runs if r["diverged"]]
    return {
        "best_lr": best["lr"] if best else None,
        "best_steps": best["converged_at"] if best else None,
        "first_diverging_lr": min(diverging) if diverging else None,
        "slowest_converging_lr": min((r["lr"] for r in converged), default=None),
    }


def finding(results: dict, steps: int) -> str:
    parts = []
    for name, runs in results.items():
        s = summary(runs)
        if s["best_lr"] is None:
            parts.append(f"{name}: no learning rate reached MSE {TARGETS[name]} in {steps} steps.")
            continue
        text = f"{name}: fastest at lr {s['best_lr']:.3g} ({s['best_steps']} steps to MSE {TARGETS[name]})"
        if s["first_diverging_lr"] is not None:
            ratio = s["first_diverging_lr"] / s["best_lr"]
            text += f"; from lr {s['first_diverging_lr']:.3g} — {ratio:.0f}× the best — training diverges"
        else:
            text += "; no rate in the sweep diverged"
        slow = [r["lr"] for r in runs if r["converged_at"] is None and not r["diverged"] and r["lr"] < s["best_lr"]]
        if slow:
            text += f"; at lr ≤ {max(slow):.3g} it is still short of that after {steps} steps"
        parts.append(text + ".")
    return " ".join(parts) + (
        " Each step moves the weights by lr × gradient: too little and the loss creeps down; once a step overshoots "
        "the valley it is meant to descend, every step lands higher than the last."
    )


def marker_rows(steps: int) -> dict[tuple[str, str], float]:
    """Where the runs that never reached the target are drawn, above the `steps` line: one row per
    problem and outcome, so no problem's marker hides another's at the same learning rate."""
    rows = {}
    for k, outcome in enumerate(("not yet", "diverged")):
        for j, name in enumerate(PROBLEMS):
            rows[name, outcome] = steps * 1.25 ** (1 + j + k * (len(PROBLEMS) + 0.5))
    return rows


def plot(results: dict, steps: int):
    plt = pyplot()
    fig, axes = plt.subplots(1, 1 + len(results), figsize=(6 + 5 * len(results), 4.8), layout="constrained")
    ax = axes[0]
    colors = {"xor": "#1f77b4", "moons": "#ff7f0e"}
    rows = marker_rows(steps)
    for name, runs in results.items():
        lrs = [r["lr"] for r in runs if r["converged_at"] is not None]
        ax.plot(
            lrs,
            [max(r["converged_at"], 1) for r in runs if r["converged_at"] is not None],
            "o-",
            color=colors[name],
            label=f"{name}: steps to converge",
        )
        div = [r["lr"] for r in runs if r["diverged"]]
        ax.plot(
            div,
            [rows[name, "diverged"]] * len(div),
            "X",
            color=colors[name],
            ms=10,
            mec="k",
            label=f"{name}: diverged" if div else None,
        )
        slow = [r["lr"] for r in runs if r["converged_at"] is None and not r["diverged"]]
        ax.plot(
            slow,
            [rows[name, "not yet"]] * len(slow),
            "o",
            mfc="none",
            color=colors[name],
            label=f"{name}: not yet in {steps} steps" if slow else None,
        )
    for outcome in ("not yet", "diverged"):
        y = np.sqrt(np.prod([rows[name, outcome] for name in PROBLEMS]))  # between the problems' rows
        ax.text(1.0, y, f" {outcome}", transform=ax.get_yaxis_transform(), va="center", fontsize=8, color="0.3")
    ax.axhline(steps, color="0.6", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("steps until MSE < target (" + ", ".join(f"{k} {v}" for k, v in TARGETS.items()) + ")")
    ax.set_title("Too small is slow, too large diverges")
    ax.legend(fontsize=8)
    for ax, (name, runs) in zip(axes[1:], results.items()):
        cmap = plt.get_cmap("viridis")
        floor = min(float(np.min(r["losses"])) for r in runs)
        for i, r in enumerate(runs):
            losses = np.minimum(np.asarray(r["losses"], float), 1e3)  # a blow-up is drawn up to the axis edge
            style = "--" if r["diverged"] else "-"
            ax.plot(
                np.arange(len(losses)),
                losses,
                style,
                color=cmap(i / max(len(runs) - 1, 1)),
                lw=1.2,
                label=f"lr {r['lr']:.3g}" + (" (diverged)" if r["diverged"] else ""),
            )
        ax.set_yscale("log")
        ax.set_ylim(max(floor / 2, 1e-12), 1e3)
        ax.axhline(TARGETS[name], color="k", lw=0.8, ls=":")
        ax.set_xlabel("training step")
        ax.set_ylabel("MSE (cut at 1e3)")
        ax.set_title(f"{name}: loss curves (dashed: diverged; dotted: the target)")
        ax.legend(fontsize=6, ncol=2)
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("learning-rates", __doc__.split("\n\n")[1], None, one_backend=True)
    parser.add_argument(
        "--steps", type=step_count, default=1000, help=f"steps per run, at most {MAX_STEPS:,} (default: 1000)"
    )
    parser.add_argument(
        "--points",
        type=int_range(2, MAX_POINTS),
        default=13,
        help=f"learning rates in the sweep, 2 to {MAX_POINTS} (default: 13)",
    )
    span = f"{LR_RANGE[0]:g} to {LR_RANGE[1]:g}"
    parser.add_argument("--min-lr", type=learning_rate, default=0.01, help=f"{span} (default: 0.01)")
    parser.add_argument("--max-lr", type=learning_rate, default=100.0, help=f"{span} (default: 100)")
    args = parser.parse_args(argv)
    if not 0 < args.min_lr < args.max_lr:
        parser.error(f"need 0 < --min-lr < --max-lr; got {args.min_lr} and {args.max_lr}")
    backend = one_installed(parser, args.backend)
    lrs = np.geomspace(args.min_lr, args.max_lr, args.points)
    note(f"sweeping {len(lrs)} learning rates × {len(PROBLEMS)} problems on {backend}")
    results = sweep(backend, lrs, args.steps)
    text = finding(results, args.steps)
    numbers = {
        name: {"summary": summary(runs), "runs": [{k: v for k, v in r.items() if k != "losses"} for r in runs]}
        for name, runs in results.items()
    }
    publish(args.out, "learning-rates", plot(results, args.steps), numbers, text)
    return 0
