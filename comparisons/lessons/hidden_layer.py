"""hidden-layer: why XOR needs a hidden layer.

Trains a linear model (2→1, no hidden layer) and a 2→4→1 tanh network on XOR with the same loss, the
same optimizer, the same learning rates and the same seeds. No linear model gets below the loss floor
(MSE 0.25, or BCE ln 2): no straight line puts (0,1) and (1,0) on one side and (0,0) and (1,1) on the
other, so the best line predicts 0.5 everywhere and decides nothing. The hidden layer bends the plane
until a line does separate them. Runs whose loss blows up are shown as diverged.
"""

from __future__ import annotations

import argparse

import numpy as np

from backends import get_backend
from comparisons.core.options import add_seed_options, make_parser, positive_float, seed_range, step_count
from comparisons.core.output import note, publish, pyplot
from comparisons.core.plots import band, spread_bars
from comparisons.core.problem import one_installed
from shared.data import xor
from shared.optim import SGD
from shared.params import init_params
from shared.spec import MLPSpec
from shared.training import MAX_STEPS

FLOORS = {"mse": 0.25, "bce": float(np.log(2))}
"""The least loss any linear model reaches on XOR: it predicts 0.5 (logit 0) on all four points."""
FLOOR_NAMES = {"mse": "0.25", "bce": "ln 2"}
THRESHOLDS = {"mse": 0.5, "bce": 0.0}  # the output at which a prediction switches class
TINY = 1e-32  # losses below this are drawn at it: float64 MSE ends around 1e-31 at best
SOLVED_BELOW = {"mse": 0.01, "bce": 0.05}  # "solved": every point classified and the loss below this
MAX_LRS = 20  # one group of bars per learning rate in the figure


def lr_list(text: str) -> list[float]:
    """An argparse type: comma-separated learning rates, 1 to MAX_LRS of them, each a finite number > 0."""
    try:
        lrs = [positive_float(part) for part in text.split(",") if part.strip()] or positive_float("")
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected learning rates > 0 like 0.05,0.2,0.5; got {text!r}") from None
    if len(lrs) > MAX_LRS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_LRS} learning rates, got {len(lrs)}")
    return lrs


def optimizer_name(momentum: float) -> str:
    return "plain SGD" if not momentum else f"SGD with momentum {momentum:g}"


def models(loss: str) -> dict[str, MLPSpec]:
    return {
        "linear": MLPSpec((2, 1), "identity", loss),
        "hidden": MLPSpec((2, 4, 1), "tanh", loss),
    }


def run(
    backend: str, loss: str, lrs: list[float], seeds: int, steps: int, momentum: float = 0.0, first_seed: int = 0
) -> dict:
    """Every (model, lr, seed) trained the same way. Each run records its final loss, the lowest loss it
    ever reached, how far its outputs end from the decision threshold, and whether it diverged."""
    data = xor()
    be = get_backend(backend)
    runs = []
    for name, spec in models(loss).items():
        X, y = data.X, data.targets(spec)  # (4, 2), (4, 1) in {0, 1}
        for lr in lrs:
            for seed in range(first_seed, first_seed + seeds):
                traj = be.train(
                    spec, init_params(spec, seed), X, y, SGD(lr, momentum=momentum), steps, on_nonfinite="stop"
                )
                diverged = traj.diverged_at is not None or bool(traj.losses[-1] > traj.losses[0])
                out = None if traj.diverged_at is not None else be.forward(spec, traj.params, X)[:, 0]  # (4,)
                runs.append(
                    {
                        "model": name,
                        "lr": lr,
                        "seed": seed,
                        "diverged": diverged,
                        "diverged_at": traj.diverged_at,
                        "final_loss": None if diverged else float(traj.losses[-1]),
                        "min_loss": float(traj.losses.min()) if len(traj.losses) else None,
                        # how far the outputs end from the threshold: near 0, the model decides nothing
                        "margin": None if out is None else float(np.abs(out - THRESHOLDS[loss]).max()),
                        "correct": None if out is None else int(((out > THRESHOLDS[loss]) == data.y).sum()),
                        "losses": traj.losses,
                        "params": traj.params,
                    }
                )
    return {
        "loss": loss,
        "lrs": lrs,
        "seeds": seeds,
        "first_seed": first_seed,
        "steps": steps,
        "momentum": momentum,
        "runs": runs,
        "X": X,
    }


def summary(r: dict, model: str) -> dict:
    """The spread over all of a model's runs that did not diverge."""
    runs = [x for x in r["runs"] if x["model"] == model]
    ok = [x for x in runs if not x["diverged"]]
    final = np.array([x["final_loss"] for x in ok])

    def solved(x: dict) -> bool:
        return not x["diverged"] and x["correct"] == 4 and x["final_loss"] < SOLVED_BELOW[r["loss"]]

    per_lr = [
        {
            "lr": lr,
            "runs": len(at),
            "solved": sum(map(solved, at)),
            "diverged": sum(x["diverged"] for x in at),
            "diverged_seeds": [x["seed"] for x in at if x["diverged"]],
        }
        for lr in r["lrs"]
        for at in [[x for x in runs if x["lr"] == lr]]
    ]
    return {
        "runs": len(runs),
        "diverged": [(x["lr"], x["seed"]) for x in runs if x["diverged"]],
        "final_min": float(final.min()) if len(ok) else None,
        "final_median": float(np.median(final)) if len(ok) else None,
        "final_max": float(final.max()) if len(ok) else None,
        "lowest_ever": float(min(x["min_loss"] for x in ok)) if ok else None,
        "max_margin": float(max(x["margin"] for x in ok)) if ok else None,
        "solved": sum(map(solved, runs)),
        "all_correct": sum(x["correct"] == 4 for x in ok),
        "per_lr": per_lr,
    }


def finding(r: dict) -> str:
    loss, floor = r["loss"], FLOORS[r["loss"]]
    lin, hid = summary(r, "linear"), summary(r, "hidden")
    how = optimizer_name(r["momentum"])
    setup = (
        f"Both models trained alike ({how}, learning rates {', '.join(f'{lr:g}' for lr in r['lrs'])}, "
        f"{seed_range(r['first_seed'], r['seeds'])} each, {r['steps']} steps, {loss.upper()})."
    )

    def diverged(s: dict) -> str:
        """How many runs diverged at each rate where any did: a rate, not one seed's story."""
        if not s["diverged"]:
            return ""
        rates = [p for p in s["per_lr"] if p["diverged"]]
        return (
            " Diverged: "
            + "; ".join(
                f"{p['diverged']} of {p['runs']} at lr {p['lr']:g} (seed{'s' if p['diverged'] > 1 else ''} "
                f"{', '.join(map(str, p['diverged_seeds'][:6]))}{', …' if p['diverged'] > 6 else ''})"
                for p in rates
            )
            + "."
        )

    gap = lin["lowest_ever"] - floor if lin["lowest_ever"] is not None else 0.0
    below = (
        f"none ever got below it by more than rounding (lowest − floor = {gap:+.0e})"
        if gap > -1e-12
        else f"the lowest was {gap:+.1e} below it"
    )
    if lin["final_min"] is None:
        linear = f" Every one of the {lin['runs']} linear runs diverged."
    else:
        linear = (
            f" Linear (2→1), {lin['runs'] - len(lin['diverged'])} runs: every final {loss.upper()} is within "
            f"{max(lin['final_max'] - floor, floor - lin['final_min']):.1e} of the floor {FLOOR_NAMES[loss]} = "
            f"{floor:.4f}, and "
            f"{below}; every output ends within {lin['max_margin']:.1e} of "
            f"{THRESHOLDS[loss]:g}, so which side of {THRESHOLDS[loss]:g} a point lands on is what is left of the "
            f"random start (training shrinks it towards 0), not a decision, and the linear models' accuracy "
            f"means nothing.{diverged(lin)}"
        )
    if hid["final_min"] is None:
        hidden = f" Every one of the {hid['runs']} hidden-layer runs diverged."
    else:
        hidden = (
            f" Hidden layer (2→4→1 tanh): {hid['solved']} of {hid['runs']} runs classify all four points with "
            f"{loss.upper()} below {SOLVED_BELOW[loss]:g} ("
            + ", ".join(f"lr {p['lr']:g}: {p['solved']} of {p['runs']}" for p in hid["per_lr"])
            + f"; final {loss.upper()} of the runs that did not diverge: median {hid['final_median']:.1e}, "
            f"range {hid['final_min']:.1e}–{hid['final_max']:.1e}).{diverged(hid)}"
        )
    return setup + linear + hidden


COLORS = {"linear": "#1f77b4", "hidden": "#d62728"}


def plot(r: dict, backend: str):
    plt = pyplot()
    fig = plt.figure(figsize=(15, 9), layout="constrained")
    grid = fig.add_gridspec(2, 2)
    ok = {m: [x for x in r["runs"] if x["model"] == m and not x["diverged"]] for m in models(r["loss"])}
    _median_boundaries(fig, [fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])], r, ok, backend)
    _loss_curves(fig.add_subplot(grid[1, 0]), r, ok)
    _final_losses(fig.add_subplot(grid[1, 1]), r)
    fig.suptitle(
        f"XOR needs a hidden layer ({backend}, {optimizer_name(r['momentum'])}, both models trained alike)", fontsize=12
    )
    return fig


def _median_boundaries(fig, top: list, r: dict, ok: dict, backend: str) -> None:
    """Each model's median run: its output over the input plane, the threshold line, the four points."""
    be = get_backend(backend)
    specs, loss = models(r["loss"]), r["loss"]
    gx, gy = np.meshgrid(np.linspace(-0.5, 1.5, 200), np.linspace(-0.5, 1.5, 200))
    points = np.column_stack([gx.ravel(), gy.ravel()])
    threshold = THRESHOLDS[loss]
    # colour bins centred on the threshold, so that no bin edge sits on it: a model whose outputs are all
    # within rounding of the threshold is drawn in one colour, not split by noise
    half = 0.125 if loss == "mse" else 1.0
    levels = threshold + half * np.arange(-6.5, 7)  # (14,)
    im = None
    for ax, model in zip(top, specs):
        if not ok[model]:
            ax.set_title(f"{model}: every run diverged")
            continue
        shown = sorted(ok[model], key=lambda x: x["final_loss"])[len(ok[model]) // 2]  # the median run
        out = be.forward(specs[model], shown["params"], points)[:, 0].reshape(gx.shape)
        im = ax.contourf(gx, gy, out, levels=levels, cmap="RdBu_r", extend="both")
        if out.min() < threshold - 1e-3 and out.max() > threshold + 1e-3:  # a real boundary, not rounding
            ax.contour(gx, gy, out, levels=[threshold], colors="k", linewidths=1.5)
        ax.scatter(*r["X"].T, c=np.where(xor().y == 1, "#b2182b", "#2166ac"), s=160, edgecolors="k")
        kind = "no hidden layer (2→1)" if model == "linear" else "hidden layer (2→4→1 tanh)"
        detail = (
            f"output {threshold:g} ± {shown['margin']:.0e} everywhere on the data: no decision"
            if model == "linear"
            else f"{shown['correct']}/4 points right"
        )
        ax.set_title(
            f"{kind}, median run (lr {shown['lr']:g}, seed {shown['seed']}):\n"
            f"{loss.upper()} {shown['final_loss']:.2g}, {detail}",
            fontsize=10,
        )
        ax.set_xlabel("x₁")
        ax.set_ylabel("x₂")
        ax.grid(False)
    if im is not None:
        what = "output" if loss == "mse" else "output logit"
        fig.colorbar(
            im,
            ax=top,
            shrink=0.8,
            ticks=threshold + 2 * half * np.arange(-3, 4),
            label=f"network {what} (black line: {threshold:g})",
        )


def _loss_curves(ax, r: dict, ok: dict) -> None:
    """The training loss of every run that did not diverge: median and min–max band per model."""
    specs, loss, floor = models(r["loss"]), r["loss"], FLOORS[r["loss"]]
    colors = COLORS
    steps = np.arange(1, r["steps"] + 1)
    for model in specs:
        curves = [x["losses"] for x in ok[model]]
        if not curves:
            continue
        curves = np.maximum(np.stack(curves), TINY)  # (runs, steps)
        median, label = np.median(curves, 0), f"{model}: median, band min–max"
        band(ax, steps, median, curves.min(0), curves.max(0), colors[model], label=label)
    ax.axhline(floor, color="k", ls="--", lw=1)
    # just above the floor line at the right edge (the linear median lies on it); clipped, so a flat run's narrow
    # axis keeps its size
    ax.annotate(
        f"{FLOOR_NAMES[loss]}: the best any line can do",
        xy=(1, floor),
        xycoords=ax.get_yaxis_transform(),
        xytext=(-4, 4),
        textcoords="offset points",
        ha="right",
        va="bottom",
        fontsize=9,
        annotation_clip=True,
        clip_on=True,
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"training {loss.upper()} (< {TINY:g} drawn at {TINY:g})")
    shown = ", ".join(f"{m} {len(ok[m])} of {len(r['lrs']) * r['seeds']}" for m in specs)
    ax.set_title(f"Training loss of every run that did not diverge ({shown})", fontsize=10)
    if any(ok.values()):
        ax.legend(loc="lower left")


def _final_losses(ax, r: dict) -> None:
    """Final loss per learning rate: median and min–max over the seeds, diverged runs counted in the ticks."""
    specs, loss, floor = models(r["loss"]), r["loss"], FLOORS[r["loss"]]
    colors = COLORS
    x = np.arange(len(r["lrs"]))
    ticks = [f"lr {lr:g}" for lr in r["lrs"]]
    for k, model in enumerate(specs):
        for i, lr in enumerate(r["lrs"]):
            runs = [v for v in r["runs"] if v["model"] == model and v["lr"] == lr]
            final = np.maximum([v["final_loss"] for v in runs if not v["diverged"]], TINY)
            n_div = sum(v["diverged"] for v in runs)
            if len(final):
                spread_bars(
                    ax,
                    [i + (k - 0.5) * 0.3],
                    [np.median(final)],
                    [final.min()],
                    [final.max()],
                    fmt="o",
                    color=colors[model],
                    capsize=4,
                    label=model if i == 0 else None,
                )
            if n_div:
                ticks[i] += f"\n{model}: {n_div} of {len(runs)} diverged"
    ax.axhline(floor, color="k", ls="--", lw=1, label=f"floor {FLOOR_NAMES[loss]}")
    ax.set_yscale("log")
    ax.set_xticks(x, ticks)
    ax.set_ylabel(f"final {loss.upper()} (< {TINY:g} drawn at {TINY:g})")
    ax.set_title(f"Final loss per learning rate: median, bar min–max over {r['seeds']} seeds")
    ax.legend(loc="lower left")


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("hidden-layer", __doc__.split("\n\n")[1], None, one_backend=True)
    parser.add_argument(
        "--loss", choices=list(FLOORS), default="mse", help="mse (floor 0.25) or bce (ln 2); default mse"
    )
    parser.add_argument(
        "--lrs",
        type=lr_list,
        default=[0.05, 0.2, 0.5],
        help=f"learning rates, both models, at most {MAX_LRS} (default: 0.05,0.2,0.5)",
    )
    parser.add_argument("--momentum", action="store_true", help="SGD with momentum 0.9 for both (default: plain SGD)")
    add_seed_options(parser, 30, "seeds per learning rate")
    parser.add_argument(
        "--steps", type=step_count, default=1000, help=f"training steps per run, at most {MAX_STEPS:,} (default: 1000)"
    )
    args = parser.parse_args(argv)
    backend = one_installed(parser, args.backend)
    n = args.seeds * len(args.lrs)
    note(f"training {n} linear models and {n} 2→4→1 networks on {backend}")
    r = run(backend, args.loss, args.lrs, args.seeds, args.steps, 0.9 if args.momentum else 0.0, args.first_seed)
    text = finding(r)
    numbers = {
        "linear": summary(r, "linear"),
        "hidden": summary(r, "hidden"),
        "runs": [{k: v for k, v in x.items() if k not in ("losses", "params")} for x in r["runs"]],
    }
    publish(args.out, "hidden-layer", plot(r, backend), numbers, text)
    return 0
