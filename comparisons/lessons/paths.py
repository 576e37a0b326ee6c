"""paths: what does each hidden unit of an XOR network add to the output?

In a 2→4→1 tanh network the output logit on an input x is exactly
    logit(x) = b₁ + Σⱼ W₁[j] · tanh(W₀[:, j] · x + b₀[j]),
so hidden unit j adds cⱼ(x) = W₁[j] · tanh(zⱼ(x)) — its paths from both inputs, its bias and its
saturation all included. This follows cⱼ on each of the four XOR inputs through training, names what
each unit ends up doing (on which inputs it pushes the output up), and counts over many seeds how
often each role appears and how saturated the units are.
"""

from __future__ import annotations

import numpy as np

from backends import get_backend
from comparisons.core.options import add_seed_options, make_parser, positive_float, seed_range, step_count
from comparisons.core.output import note, publish, pyplot
from comparisons.core.plots import band, mean_sd
from comparisons.core.problem import one_installed
from shared.data import xor
from shared.optim import SGD
from shared.params import Params, init_params
from shared.spec import MLPSpec
from shared.training import MAX_STEPS

SPEC = MLPSpec((2, 4, 1), "tanh", "bce")
INPUTS = ("(0,0)", "(0,1)", "(1,0)", "(1,1)")  # xor().X in this order; targets 0, 1, 1, 0
SATURATED = 2.0  # |z| > 2: tanh(z) is within 4 % of ±1 and its slope below 0.08, so first-order reasoning fails


def contributions(params: Params, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, hidden) cⱼ(x) = W₁[j]·tanh(zⱼ(x)), each hidden unit's exact share of the output logit,
    and (inputs, hidden) the pre-activations zⱼ(x) = W₀[:, j]·x + b₀[j]."""
    z = X @ params[0]["W"] + params[0]["b"]  # (n, 2) @ (2, 4) + (4,) -> (n, 4)
    return np.tanh(z) * params[1]["W"][:, 0], z  # (n, 4) * (4,) -> (n, 4)


def role(c: np.ndarray) -> str:
    """What a unit does, from the signs of its contribution on the four inputs (in INPUTS order)."""
    up = [name for name, v in zip(INPUTS, c) if v > 0]
    down = [name for name, v in zip(INPUTS, c) if v <= 0]
    if not down:
        return "up on all four (a bias)"
    if not up:
        return "down on all four (a bias)"
    if len(up) == 1:
        return f"up only on {up[0]}"
    if len(down) == 1:
        return f"down only on {down[0]}"
    return f"up on {' and '.join(up)}"


def run(backend: str, steps: int, lr: float, seeds: int, first_seed: int = 0) -> dict:
    """Every seed trained alike; the first is followed step by step for the figure."""
    data = xor()
    X, y = data.X, data.targets(SPEC)
    be = get_backend(backend)
    runs = []
    for seed in range(first_seed, first_seed + seeds):
        every = 1 if seed == first_seed else max(1, steps // 50)
        traj = be.train(
            SPEC, init_params(SPEC, seed), X, y, SGD(lr, momentum=0.9), steps, record_every=every, on_nonfinite="stop"
        )
        at = [*traj.snapshot_steps.tolist(), len(traj)]
        if traj.diverged_at is not None:
            runs.append({"seed": seed, "diverged_at": traj.diverged_at, "solved": False})
            continue
        series = [contributions(traj.snapshot(s), X) for s in at]
        c, z = series[-1]
        logit = c.sum(1) + traj.params[1]["b"][0]  # (4,)
        runs.append(
            {
                "seed": seed,
                "diverged_at": None,
                "solved": bool(((logit > 0) == data.y).all()),
                "steps": at,
                "contributions": np.stack([s[0] for s in series]),  # (records, inputs, hidden)
                "saturation": np.array([(np.abs(s[1]) > SATURATED).mean() for s in series]),  # (records,)
                "final": c,
                "z": z,
                "output_bias": float(traj.params[1]["b"][0]),
                "logit": logit,
                "roles": [role(c[:, j]) for j in range(c.shape[1])],
                "losses": traj.losses,
            }
        )
    return {"runs": runs, "steps": steps, "lr": lr}


def role_counts(r: dict) -> dict[str, int]:
    """In how many solved seeds each role appears at least once, most common first."""
    solved = [x for x in r["runs"] if x["solved"]]
    counts: dict[str, int] = {}
    for x in solved:
        for name in set(x["roles"]):
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def strategies(r: dict) -> dict[str, list[dict]]:
    """The solved seeds sorted by how they build XOR: 'xor units' (one unit up only on (0,1), one up
    only on (1,0)), else 'or and nand' (one down only on (0,0), one down only on (1,1)), else 'neither'."""
    out: dict[str, list[dict]] = {"xor units": [], "or and nand": [], "neither": []}
    for x in r["runs"]:
        if not x["solved"]:
            continue
        roles = set(x["roles"])
        if {"up only on (0,1)", "up only on (1,0)"} <= roles:
            out["xor units"].append(x)
        elif {"down only on (0,0)", "down only on (1,1)"} <= roles:
            out["or and nand"].append(x)
        else:
            out["neither"].append(x)
    return out


def finding(r: dict) -> str:
    runs = r["runs"]
    shown = runs[0]
    if shown["diverged_at"] is not None:
        text = f"Seed {shown['seed']} diverged at step {shown['diverged_at']}."
    else:
        units = "; ".join(
            f"h{j + 1} adds {', '.join(f'{v:+.2g}' for v in shown['final'][:, j])} — {shown['roles'][j]}, "
            f"saturated (|z| > {SATURATED:g}) on {int((np.abs(shown['z'][:, j]) > SATURATED).sum())} of 4"
            for j in range(shown["final"].shape[1])
        )
        text = (
            f"Seed {shown['seed']} after {r['steps']} steps, each hidden unit's exact share of the output logit on "
            f"{', '.join(INPUTS)}: {units}; the output bias adds {shown['output_bias']:+.2g}, and the logits are "
            f"{', '.join(f'{v:+.2g}' for v in shown['logit'])}"
            f" ({'every input on the right side' if shown['solved'] else 'not every input on the right side'})."
        )
    ok = [x for x in runs if x["diverged_at"] is None]
    solved = [x for x in ok if x["solved"]]
    if ok:
        sat = np.array([x["saturation"][-1] for x in ok])
        sd = sat.std(ddof=1) if len(ok) > 1 else 0.0
        text += (
            f" Over {seed_range(runs[0]['seed'], len(runs))}, {len(solved)} of {len(runs)} solve XOR; at the end "
            f"{sat.mean():.0%} ± {sd:.0%} "
            f"(mean ± sd) of the 16 unit-input pre-activations are saturated, so a unit's weights alone (a first-order "
            f"'path strength') do not say what it adds."
        )
    if solved:
        counts = role_counts(r)
        common = ", ".join(f"'{name}' in {n}" for name, n in list(counts.items())[:4])
        kinds = strategies(r)
        text += (
            f" Roles, by the number of solved seeds that have one: {common}. How the {len(solved)} solved seeds build "
            f"XOR: {len(kinds['xor units'])} with a unit that pushes up only on (0,1) and one that pushes up only on "
            f"(1,0) (the two cases XOR says yes to); {len(kinds['or and nand'])} as OR and NAND, a unit that pushes "
            f"down only on (0,0) (x₁ or x₂) and one that pushes down only on (1,1) (not both); "
            f"{len(kinds['neither'])} fit neither"
        )
        if kinds["neither"]:
            text += (
                " ("
                + "; ".join(f"seed {x['seed']}: {', '.join(sorted(set(x['roles'])))}" for x in kinds["neither"][:3])
                + ("; …" if len(kinds["neither"]) > 3 else "")
                + ")"
            )
        text += "."
    diverged = [x["seed"] for x in runs if x["diverged_at"] is not None]
    if diverged:
        text += f" Diverged: seed{'s' if len(diverged) > 1 else ''} {', '.join(map(str, diverged))}."
    return text


def plot(r: dict):
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(15, 9.5), layout="constrained")
    colors = plt.get_cmap("tab10")
    shown = r["runs"][0]
    if shown["diverged_at"] is None:
        _shares_panel(axes[0, 0], r, colors)
        _shares_over_training(axes[0, 1], r, colors)
    _saturation_panel(axes[1, 0], r)
    _roles_panel(axes[1, 1], r)
    fig.suptitle(
        f"XOR {SPEC.describe()}, SGD lr {r['lr']:g} momentum 0.9, {r['steps']} steps: what each hidden unit adds",
        fontsize=12,
    )
    return fig


def _shares_panel(ax, r: dict, colors) -> None:
    """The first seed at the end: each unit's share of the logit on each input, the output bias, the total."""
    shown = r["runs"][0]
    hidden = shown["final"].shape[1]
    width = 0.8 / (hidden + 1)
    x = np.arange(len(INPUTS))
    for j in range(hidden):
        ax.bar(
            x + (j - hidden / 2) * width,
            shown["final"][:, j],
            width,
            color=colors(j),
            label=f"h{j + 1}: {shown['roles'][j]}",
        )
    ax.bar(x + (hidden / 2) * width, shown["output_bias"], width, color="0.6", label="output bias b₁")
    ax.scatter(x, shown["logit"], marker="_", s=900, color="k", zorder=3, label="logit = sum of the bars")
    ax.axhline(0, color="k", lw=0.7)
    ax.set_xticks(x, [f"{name}\ntarget {t}" for name, t in zip(INPUTS, xor().y)])
    ax.set_ylabel("added to the output logit")
    ax.set_title(f"Seed {shown['seed']} after {r['steps']} steps: what each unit adds, per input")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), markerscale=0.4)


def _shares_over_training(ax, r: dict, colors) -> None:
    """The same shares over training, one small line per unit and input."""
    shown = r["runs"][0]
    hidden = shown["final"].shape[1]
    series = shown["contributions"]  # (records, inputs, hidden)
    styles = ("-", "--", "-.", ":")
    for j in range(hidden):
        for i, style in enumerate(styles):
            ax.plot(shown["steps"], series[:, i, j], style, color=colors(j), lw=1.3)
    for i, style in enumerate(styles):
        ax.plot([], [], style, color="k", label=f"on {INPUTS[i]}")
    for j in range(hidden):
        ax.plot([], [], color=colors(j), lw=4, label=f"h{j + 1}")
    ax.axhline(0, color="0.6", lw=0.7)
    ax.set_xlabel("training step")
    ax.set_ylabel("W₁[j]·tanh(zⱼ(x))")
    ax.set_title(f"Seed {shown['seed']}: what each unit adds during training")
    ax.legend(fontsize=7, ncol=2, loc="lower left")


def _saturation_panel(ax, r: dict) -> None:
    """The share of unit–input pre-activations with |z| > SATURATED over training: mean ± sd over seeds."""
    ok = [x for x in r["runs"] if x["diverged_at"] is None]
    if ok:
        grid = ok[-1]["steps"]  # every seed records these steps (the first seed records every step)
        sat = np.array([x["saturation"][[x["steps"].index(t) for t in grid]] for x in ok])  # (seeds, records)
        mean, sd = mean_sd(sat)
        label = f"mean over {len(ok)} seeds"
        band(ax, grid, mean, mean - sd, mean + sd, "#1f77b4", label=label, band_label="± sd", alpha=0.25)
        ax.set_ylim(0, 1)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"share of unit-input pairs with |z| > {SATURATED:g}")
        ax.set_title("How saturated the hidden units are")
        ax.legend(loc="lower right")


def _roles_panel(ax, r: dict) -> None:
    """In how many solved seeds each role appears, and how the seeds build XOR."""
    counts = role_counts(r)
    solved = sum(x["solved"] for x in r["runs"])
    if counts:
        names = list(counts)[::-1]
        ax.barh(names, [counts[n] for n in names], color="#4393c3")
        ax.axvline(solved, color="k", ls="--", lw=1, label=f"all {solved} solved seeds")
        ax.set_xlabel("solved seeds with at least one unit in this role")
        kinds = {kind: len(seeds) for kind, seeds in strategies(r).items()}
        ax.set_title(
            f"What the units do, over every solved seed ({seed_range(r['runs'][0]['seed'], len(r['runs']))})\n"
            f"built as: {kinds['xor units']} up-only-(0,1) + up-only-(1,0), {kinds['or and nand']} OR + NAND, "
            f"{kinds['neither']} neither",
            fontsize=10,
        )
        ax.legend(loc="lower right")


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("paths", __doc__.split("\n\n")[1], None, one_backend=True)
    parser.add_argument("--steps", type=step_count, default=500, help=f"at most {MAX_STEPS:,} (default: 500)")
    parser.add_argument("--lr", type=positive_float, default=0.3, help="SGD learning rate, momentum 0.9 (default: 0.3)")
    add_seed_options(parser, 20, "seeds to count roles over (the first is shown in detail)", ("--seed",))
    args = parser.parse_args(argv)
    backend = one_installed(parser, args.backend)
    note(f"training XOR {SPEC.describe()} from {args.seeds} seeds on {backend}")
    r = run(backend, args.steps, args.lr, args.seeds, args.first_seed)
    text = finding(r)
    numbers = {
        "role_counts": role_counts(r),
        "strategies": {kind: [x["seed"] for x in runs] for kind, runs in strategies(r).items()},
        "runs": [
            {
                k: v
                for k, v in x.items()
                if k in ("seed", "diverged_at", "solved", "final", "z", "output_bias", "logit", "roles")
            }
            | ({"final_saturation": x["saturation"][-1]} if "saturation" in x else {})
            for x in r["runs"]
        ],
    }
    publish(args.out, "paths", plot(r), numbers, text)
    return 0
