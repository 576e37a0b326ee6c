"""learning-rates: too small is slow, too large diverges.

Sweeps the SGD learning rate over four decades on XOR and on moons (MSE, full batch), from several
seeds, and records for each rate and seed how many steps training needs to bring the loss below a
target for good (XOR: MSE 0.01; noisy moons, where no network reaches zero: MSE 0.06) — or that it
never gets there, or that it dips below and leaves again, or that it diverges (the loss becomes
non-finite, or ends above where it began). The finding gives, per rate, the median and range over
the seeds. Diverged runs are marked in the figure, never crashed.
"""

from __future__ import annotations

import argparse

import numpy as np

from backends import get_backend
from comparisons.core.options import add_seed_options, int_range, make_parser, positive_float, seed_range, step_count
from comparisons.core.output import note, publish, pyplot
from comparisons.core.plots import spread_bars
from comparisons.core.problem import one_installed
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


def converged_at(losses: np.ndarray, target: float) -> int | None:
    """The first step from which the loss stays below `target` to the end of the run, or None when the
    last loss is not below it. A run that dips below the target and climbs back has not converged: it
    counts only from the step after its last visit above."""
    above = np.flatnonzero(~(np.asarray(losses) < target))  # (k,) steps at or above the target
    if len(losses) == 0 or (len(above) and above[-1] == len(losses) - 1):
        return None
    return int(above[-1]) + 1 if len(above) else 0


def one_run(be, spec: MLPSpec, X, y, lr: float, steps: int, seed: int, target: float) -> dict:
    traj = be.train(spec, init_params(spec, seed), X, y, SGD(float(lr)), steps, on_nonfinite="stop")
    losses = traj.losses
    diverged = traj.diverged_at is not None or float(losses[-1]) > float(losses[0])
    below = np.flatnonzero(losses < target)
    return {
        "seed": seed,
        "converged_at": None if diverged else converged_at(losses, target),
        "first_below": int(below[0]) if len(below) else None,
        "diverged": diverged,
        "diverged_at": traj.diverged_at,
        "final_loss": float(losses[-1]),
        "losses": losses,
    }


def sweep(backend: str, lrs: np.ndarray, steps: int, seeds: int = 5, first_seed: int = 0) -> dict:
    """{problem: [{"lr": lr, "runs": [one run per seed]}]}; a seed sets the init (and moons' sample)."""
    be = get_backend(backend)
    out = {}
    for name, (data_kwargs, spec) in PROBLEMS.items():
        rates = [{"lr": float(lr), "runs": []} for lr in lrs]
        for seed in range(first_seed, first_seed + seeds):
            data = make_dataset(seed=seed, **data_kwargs)
            X, y = data.X, data.targets(spec)
            for rate in rates:
                rate["runs"].append(one_run(be, spec, X, y, rate["lr"], steps, seed, TARGETS[name]))
        out[name] = rates
    return out


def rate_summary(rate: dict) -> dict:
    """One learning rate over its seeds: how many converged (and the median and range of their steps),
    how many diverged, how many dipped below the target only to leave it, how many never got there."""
    runs = rate["runs"]
    steps = [r["converged_at"] for r in runs if r["converged_at"] is not None]
    left = [r for r in runs if not r["diverged"] and r["converged_at"] is None and r["first_below"] is not None]
    return {
        "lr": rate["lr"],
        "seeds": len(runs),
        "converged": len(steps),
        "steps_median": float(np.median(steps)) if steps else None,
        "steps_min": min(steps, default=None),
        "steps_max": max(steps, default=None),
        "diverged": sum(r["diverged"] for r in runs),
        "left_target": len(left),
        "never_below": sum(not r["diverged"] and r["first_below"] is None for r in runs),
    }


def summary(rates: list[dict]) -> dict:
    """The sweep's edges: the fastest rate at which every seed converges (by median steps), the
    smallest rate at which some seed diverges, the smallest from which every seed of every larger rate
    diverges, and the rates where some seed dips below the target and leaves it again."""
    per = [rate_summary(rate) for rate in rates]
    every = [p for p in per if p["converged"] == p["seeds"]]
    best = min(every, key=lambda p: (p["steps_median"], p["lr"]), default=None)
    all_diverge_from = None
    for p in reversed(per):  # walk down from the largest rate while every seed diverges
        if p["diverged"] != p["seeds"]:
            break
        all_diverge_from = p["lr"]
    return {
        "rates": per,
        "best_lr": best["lr"] if best else None,
        "best_steps_median": best["steps_median"] if best else None,
        "best_steps_range": (best["steps_min"], best["steps_max"]) if best else None,
        "first_diverging_lr": min((p["lr"] for p in per if p["diverged"]), default=None),
        "all_diverge_from": all_diverge_from,
        "left_target": [(p["lr"], p["left_target"]) for p in per if p["left_target"]],
        "none_there": [p["lr"] for p in per if p["converged"] == 0 and p["diverged"] == 0],
    }


def _steps(p: dict) -> str:
    lo, hi = p["steps_min"], p["steps_max"]
    return f"median {p['steps_median']:.0f} steps, range {lo}–{hi}" if lo != hi else f"{lo} steps"


def runner_up(rates: list[dict], s: dict) -> tuple[dict, int] | None:
    """The rate with the next-lowest median among those where every seed converges, and on how many
    seeds the fastest rate gets there sooner than it (the seeds are paired: the same inits)."""
    others = [p for p in s["rates"] if p["lr"] != s["best_lr"] and p["converged"] == p["seeds"]]
    if s["best_lr"] is None or not others:
        return None
    second = min(others, key=lambda p: (p["steps_median"], p["lr"]))
    steps = {rate["lr"]: [r["converged_at"] for r in rate["runs"]] for rate in rates}
    sooner = sum(a < b for a, b in zip(steps[s["best_lr"]], steps[second["lr"]]))
    return second, sooner


def finding(results: dict, steps: int, first_seed: int = 0) -> str:
    parts = []
    n_seeds = len(next(iter(results.values()))[0]["runs"])
    for name, rates in results.items():
        s = summary(rates)
        target = f"MSE {TARGETS[name]}"
        if s["best_lr"] is None:
            text = f"{name}: at no learning rate did all {n_seeds} seeds stay below {target} within {steps} steps"
        else:
            best = next(p for p in s["rates"] if p["lr"] == s["best_lr"])
            text = (
                f"{name}: fastest at lr {s['best_lr']:.3g}, where all {n_seeds} seeds stay below {target} "
                f"({_steps(best)})"
            )
            second = runner_up(rates, s)
            if second:
                text += (
                    f", sooner than the runner-up lr {second[0]['lr']:.3g} ({_steps(second[0])}) on {second[1]} of "
                    f"{n_seeds} seeds"
                )
        for p in s["rates"]:  # the rates where only some seeds converge: the spread is the finding
            if 0 < p["converged"] < p["seeds"]:
                text += f"; at lr {p['lr']:.3g} {p['converged']} of {p['seeds']} converge ({_steps(p)})"
        if s["left_target"]:
            text += "; " + ", ".join(
                f"at lr {lr:.3g} {k} of {n_seeds} dip below the target and climb back above it"
                for lr, k in s["left_target"]
            )
            text += " (not counted as converged)"
        if s["first_diverging_lr"] is None:
            text += "; no rate in the sweep diverged"
        else:
            first = next(p for p in s["rates"] if p["lr"] == s["first_diverging_lr"])
            text += f"; from lr {first['lr']:.3g}"
            if s["best_lr"]:
                text += f" ({first['lr'] / s['best_lr']:.0f}× the fastest)"
            text += f" {first['diverged']} of {n_seeds} seeds diverge"
            if s["all_diverge_from"] is not None and s["all_diverge_from"] != first["lr"]:
                text += f", and from lr {s['all_diverge_from']:.3g} every seed does"
            elif s["all_diverge_from"] is not None:
                text += " and so does every seed at every larger rate"
        if s["none_there"]:
            text += f"; at lr ≤ {max(s['none_there']):.3g} no seed gets there in {steps} steps"
        parts.append(text + ".")
    return (
        f"Over {seed_range(first_seed, n_seeds)}, converged meaning below the target from that step to the end: "
        + " ".join(parts)
        + " Each step moves the weights by lr × gradient: too little and the loss creeps down; once a step "
        "overshoots the valley it is meant to descend, every step lands higher than the last."
    )


def marker_rows(steps: int) -> dict[tuple[str, str], float]:
    """Where the rates at which some seed never reached the target are drawn, above the `steps` line:
    one row per problem and outcome, so no problem's marker hides another's at the same learning rate."""
    rows = {}
    for k, outcome in enumerate(("none converged", "diverged")):
        for j, name in enumerate(PROBLEMS):
            rows[name, outcome] = steps * 1.25 ** (1 + j + k * (len(PROBLEMS) + 0.5))
    return rows


def plot(results: dict, steps: int, first_seed: int = 0):
    plt = pyplot()
    fig, axes = plt.subplots(1, 1 + len(results), figsize=(7 + 6 * len(results), 5.2), layout="constrained")
    _steps_panel(axes[0], results, steps, first_seed)
    _curve_panels(plt, axes[1:], results)
    return fig


COLORS = {"xor": "#1f77b4", "moons": "#ff7f0e"}


def _steps_panel(ax, results: dict, steps: int, first_seed: int) -> None:
    """Steps to converge against the learning rate: median and range over the seeds, per problem, with
    the rates where some seed diverged or none converged marked in their own rows above."""
    rows = marker_rows(steps)
    n_seeds = len(next(iter(results.values()))[0]["runs"])
    for j, (name, rates) in enumerate(results.items()):
        per = summary(rates)["rates"]
        _converged_bars(ax, name, [p for p in per if p["converged"]], shift=1.03 ** (j - 0.5))
        _outcome_rows(ax, name, per, rows)
    for outcome in ("none converged", "diverged"):
        y = np.sqrt(np.prod([rows[name, outcome] for name in PROBLEMS]))  # between the problems' rows
        ax.text(1.0, y, f" {outcome}", transform=ax.get_yaxis_transform(), va="center", fontsize=8, color="0.3")
    ax.axhline(steps, color="0.6", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(
        "steps until the MSE stays below the target (" + ", ".join(f"{k} {v}" for k, v in TARGETS.items()) + ")"
    )
    ax.set_title(f"Too small is slow, too large diverges ({seed_range(first_seed, n_seeds)}; k/n: seeds)", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)


def _converged_bars(ax, name: str, ok: list[dict], shift: float) -> None:
    """The rates where some seed converged: median steps and range, k/n where not every seed did.
    `shift` sets the problems' bars side by side, not on top of each other."""
    spread_bars(
        ax,
        [p["lr"] * shift for p in ok],
        [max(p["steps_median"], 1) for p in ok],
        [max(p["steps_min"], 1) for p in ok],
        [max(p["steps_max"], 1) for p in ok],
        fmt="o-",
        color=COLORS[name],
        capsize=3,
        label=f"{name}: steps to converge, median and range over the seeds that did",
    )
    for p in ok:
        if p["converged"] < p["seeds"]:
            ax.annotate(
                f"{p['converged']}/{p['seeds']}",
                (p["lr"] * shift, max(p["steps_median"], 1)),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=7,
                color=COLORS[name],
            )


def _outcome_rows(ax, name: str, per: list[dict], rows: dict) -> None:
    """The rates where some seed diverged (✕, k/n) or none converged (○), each in its own row."""
    for outcome, which in (
        ("diverged", [p for p in per if p["diverged"]]),
        ("none converged", [p for p in per if not p["converged"] and not p["diverged"]]),
    ):
        ax.plot(
            [p["lr"] for p in which],
            [rows[name, outcome]] * len(which),
            "X" if outcome == "diverged" else "o",
            color=COLORS[name],
            ms=10 if outcome == "diverged" else 7,
            mec="k" if outcome == "diverged" else COLORS[name],
            mfc=COLORS[name] if outcome == "diverged" else "none",
            label=f"{name}: {outcome}" if which else None,
        )
        for p in which:
            if outcome == "diverged" and p["diverged"] < p["seeds"]:
                ax.annotate(
                    f"{p['diverged']}/{p['seeds']}",
                    (p["lr"], rows[name, outcome]),
                    xytext=(0, 7),
                    textcoords="offset points",
                    ha="center",
                    fontsize=7,
                )


def _curve_panels(plt, axes, results: dict) -> None:
    """Per problem, the loss curve of the first seed at every rate, each rate its own colour."""
    palette = [*plt.get_cmap("tab20").colors[::2], *plt.get_cmap("tab20").colors[1::2]]  # neighbours unlike
    for ax, (name, rates) in zip(axes, results.items()):
        shown = [rate["runs"][0] for rate in rates]  # one seed per rate: the first
        floor = min(float(np.min(r["losses"])) for r in shown)
        for i, (rate, r) in enumerate(zip(rates, shown)):
            losses = np.minimum(np.asarray(r["losses"], float), 1e3)  # a blow-up is drawn up to the axis edge
            ax.plot(
                np.arange(len(losses)),
                losses,
                "--" if r["diverged"] else "-",
                color=palette[i % len(palette)],
                lw=1.3,
                label=f"lr {rate['lr']:.3g}" + (" (diverged)" if r["diverged"] else ""),
            )
        ax.set_yscale("log")
        ax.set_ylim(max(floor / 2, 1e-12), 2e3)
        ax.axhline(TARGETS[name], color="k", lw=0.8, ls=":")
        ax.set_xlabel("training step")
        ax.set_ylabel("MSE (cut at 1e3)")
        ax.set_title(
            f"{name}, seed {shown[0]['seed']}: loss curves (dashed: diverged; dotted: the target)", fontsize=10
        )
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))


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
    add_seed_options(parser, 5, "seeds per rate (each sets the init and moons' sample)")
    args = parser.parse_args(argv)
    if not 0 < args.min_lr < args.max_lr:
        parser.error(f"need 0 < --min-lr < --max-lr; got {args.min_lr} and {args.max_lr}")
    backend = one_installed(parser, args.backend)
    lrs = np.geomspace(args.min_lr, args.max_lr, args.points)
    note(f"sweeping {len(lrs)} learning rates × {len(PROBLEMS)} problems × {args.seeds} seeds on {backend}")
    results = sweep(backend, lrs, args.steps, args.seeds, args.first_seed)
    text = finding(results, args.steps, args.first_seed)
    numbers = {
        name: {
            "summary": summary(rates),
            "runs": [
                {"lr": rate["lr"], **{k: v for k, v in r.items() if k != "losses"}}
                for rate in rates
                for r in rate["runs"]
            ],
        }
        for name, rates in results.items()
    }
    publish(args.out, "learning-rates", plot(results, args.steps, args.first_seed), numbers, text)
    return 0
