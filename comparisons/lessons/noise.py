"""noise: memorizing the training set is not learning the problem.

Noisy moons, split into train and test halves, with a fraction of the *training* labels flipped (the
test labels stay clean, so test accuracy measures the real problem). Networks of growing hidden width
train on it from several seeds. A network that gets a flipped training point "right" has memorized
noise: the lesson tracks how many flipped labels each width learns and what that does to test
accuracy and test loss, with the spread over seeds.
"""

from __future__ import annotations

import argparse

import numpy as np

from backends import get_backend
from comparisons.core.options import (
    add_seed_options,
    int_range,
    make_parser,
    non_negative_float,
    sample_count,
    seed_range,
    step_count,
)
from comparisons.core.output import note, publish, pyplot
from comparisons.core.plots import band, mean_sd, spread_bars
from comparisons.core.problem import MAX_FLOATS, MAX_SAMPLES, one_installed
from shared.data import Dataset, make_dataset
from shared.optim import Adam
from shared.params import init_params
from shared.spec import MLPSpec
from shared.training import MAX_STEPS

LR = 0.01  # Adam
RECORDS = 20  # evaluate train and test this many times per run (and at the end)
# Bounds that make a typo a usage error rather than a run of days or gigabytes of weights. Each network
# is 2→W→W→1, so its weights grow as W²: at 1024, one network holds 1M weights and its RECORDS + 1
# snapshots 180 MB.
MAX_WIDTH = 1024
MAX_WIDTHS = 20  # one bar group per width in the figure


def flip_fraction(text: str) -> float:
    """An argparse type: the share of training labels to flip, 0 ≤ f < 0.5 (at 0.5 labels are coin tosses)."""
    value = non_negative_float(text)
    if value >= 0.5:
        raise argparse.ArgumentTypeError(f"expected a fraction from 0 to below 0.5, got {text}")
    return value


def width_list(text: str) -> list[int]:
    """An argparse type: comma-separated hidden widths, e.g. 2,8,32: 1 to MAX_WIDTHS of them, each from
    1 to MAX_WIDTH."""
    width = int_range(1, MAX_WIDTH)
    try:
        widths = sorted({width(part) for part in text.split(",") if part.strip()})
    except argparse.ArgumentTypeError:
        widths = []
    if not 1 <= len(widths) <= MAX_WIDTHS:
        raise argparse.ArgumentTypeError(
            f"expected positive integers like 2,8,32, at most {MAX_WIDTHS} of them, each at most {MAX_WIDTH:,}; "
            f"got {text!r}"
        )
    return widths


def weights(width: int) -> int:
    """The parameters of one 2→W→W→1 network."""
    return (2 + 1) * width + (width + 1) * width + (width + 1)


def noisy_split(dataset: str, n: int, noise: float, flip: float, seed: int) -> tuple[Dataset, Dataset, np.ndarray]:
    """(train with flipped labels, clean test, indices of the flipped training points)."""
    data = make_dataset(dataset, n=n, noise=noise, seed=seed, **({"arms": 2} if dataset == "spirals" else {}))
    train, test = data.split(0.5, seed=seed)
    flipped = np.sort(np.random.default_rng(seed).choice(len(train), int(round(flip * len(train))), replace=False))
    y = train.y.copy()
    y[flipped] = 1 - y[flipped]
    return Dataset(train.name, train.X, y, 2), test, flipped


def one_run(backend: str, width: int, train: Dataset, test: Dataset, flipped: np.ndarray, steps: int, seed: int):
    be = get_backend(backend)
    spec = MLPSpec((2, width, width, 1), "tanh", "bce")
    every = max(1, steps // RECORDS)
    traj = be.train(
        spec, init_params(spec, seed), train.X, train.targets(spec), Adam(LR), steps, record_every=every,
        on_nonfinite="stop",
    )  # fmt: skip
    at = [*traj.snapshot_steps.tolist(), len(traj)]
    curves = {k: [] for k in ("train_loss", "test_loss", "train_accuracy", "memorized", "test_accuracy")}
    for step in at:
        params = traj.snapshot(step)
        right_train = (be.forward(spec, params, train.X)[:, 0] > 0) == train.y  # (n_train,) vs the noisy labels
        curves["train_loss"].append(be.loss_and_grads(spec, params, train.X, train.targets(spec))[0])
        curves["test_loss"].append(be.loss_and_grads(spec, params, test.X, test.targets(spec))[0])
        curves["train_accuracy"].append(float(right_train.mean()))
        curves["memorized"].append(float(right_train[flipped].mean()) if len(flipped) else 0.0)
        curves["test_accuracy"].append(float(((be.forward(spec, params, test.X)[:, 0] > 0) == test.y).mean()))
    return {"steps": at, "diverged_at": traj.diverged_at, "params": traj.params, **curves}


def run(
    backend: str,
    dataset: str,
    n: int,
    noise: float,
    flip: float,
    widths: list[int],
    steps: int,
    seeds: int,
    first_seed: int = 0,
) -> dict:
    """Every width × seed; a seed sets the data, the split, which labels flip, and the init."""
    runs = {w: [] for w in widths}
    for seed in range(first_seed, first_seed + seeds):
        train, test, flipped = noisy_split(dataset, n, noise, flip, seed)
        for width in widths:
            runs[width].append(
                {"seed": seed, "flipped": flipped, **one_run(backend, width, train, test, flipped, steps, seed)}
            )
    return {
        "widths": widths,
        "runs": runs,
        "n_train": len(train),
        "n_test": len(test),
        "n_flipped": len(flipped),
        "steps": steps,
        "first_seed": first_seed,
    }


QUANTITIES = ("train_accuracy", "memorized", "test_accuracy", "test_loss", "train_loss")


def summary(r: dict) -> dict:
    """Per width, the final value of each quantity and the best test accuracy seen while training:
    (mean, sd) over the seeds that did not diverge; plus the per-seed values."""
    out = {}
    for w in r["widths"]:
        ok = [x for x in r["runs"][w] if x["diverged_at"] is None]
        values = {q: np.array([x[q][-1] for x in ok]) for q in QUANTITIES}
        values["peak_test_accuracy"] = np.array([max(x["test_accuracy"]) for x in ok])
        out[w] = {
            "seeds": len(ok),
            "diverged": [x["seed"] for x in r["runs"][w] if x["diverged_at"] is not None],
            "values": values,
            **{q: (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0) for q, v in values.items() if len(v)},
        }
    return out


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float, bool]:
    """Mean and sd of the per-seed difference a − b, and whether it is clear: the mean at least two
    standard errors from 0 (and at least 3 seeds)."""
    d = a - b
    if len(d) < 2:
        return float(d.mean()) if len(d) else 0.0, 0.0, False
    sd = float(d.std(ddof=1))
    return float(d.mean()), sd, len(d) >= 3 and abs(d.mean()) > 2 * sd / np.sqrt(len(d))


def verdict(stat: tuple[float, float, bool], lower: str, higher: str) -> str:
    return (higher if stat[0] > 0 else lower) if stat[2] else "no clear difference"


def pm(stat: tuple[float, float], fmt: str = ".0%") -> str:
    mean, sd = stat
    if fmt.endswith("%"):
        return f"{mean * 100:.0f} ± {sd * 100:.0f} %"
    return f"{mean:{fmt}} ± {sd:{fmt}}"


def finding(r: dict) -> str:
    s = summary(r)
    widths = [w for w in r["widths"] if s[w]["seeds"]]
    n_seeds = max(s[w]["seeds"] for w in r["widths"])
    head = (
        f"{r['n_train']} training points with {r['n_flipped']} labels flipped, {r['n_test']} clean test points, "
        f"{seed_range(r['first_seed'], n_seeds)} (mean ± sd). "
    )
    if not widths:
        return head + "Every run diverged."
    table = "; ".join(
        f"width {w}: learns {pm(s[w]['memorized'])} of the flipped labels, test accuracy {pm(s[w]['test_accuracy'])} "
        f"(best while training {pm(s[w]['peak_test_accuracy'])}), test loss {pm(s[w]['test_loss'], '.2f')}"
        for w in widths
    )
    text = head + table + "."
    narrow, wide = widths[0], widths[-1]
    if wide != narrow:
        values = {w: s[w]["values"] for w in (narrow, wide)}
        if len(values[wide]["memorized"]) == len(values[narrow]["memorized"]):
            mem = paired(values[wide]["memorized"], values[narrow]["memorized"])
            acc = paired(values[wide]["test_accuracy"], values[narrow]["test_accuracy"])
            loss = paired(values[wide]["test_loss"], values[narrow]["test_loss"])
            text += (
                f" Width {wide} against width {narrow}, seed by seed: it learns {mem[0] * 100:+.0f} ± "
                f"{mem[1] * 100:.0f} points more of the flipped labels "
                f"({verdict(mem, 'clearly fewer', 'clearly more')}), its test accuracy is "
                f"{acc[0] * 100:+.0f} ± {acc[1] * 100:.0f} points"
                f" — {verdict(acc, 'a clear drop', 'a clear gain')}, its test loss {loss[0]:+.2f} ± {loss[1]:.2f}"
                f" ({verdict(loss, 'clearly lower', 'clearly higher')})."
            )
    drops = {w: paired(s[w]["values"]["peak_test_accuracy"], s[w]["values"]["test_accuracy"]) for w in widths}
    text += (
        " From its best test accuracy during training to the end, "
        + ", ".join(
            f"width {w} loses {d[0] * 100:.0f} ± {d[1] * 100:.0f} points" + ("" if d[2] else " (not clearly)")
            for w, d in drops.items()
        )
        + " (the peak is picked on the test set itself, so it flatters; a validation split would pick the stopping "
        "step honestly)."
    )
    diverged = {w: s[w]["diverged"] for w in r["widths"] if s[w]["diverged"]}
    if diverged:
        text += (
            " Diverged: " + "; ".join(f"width {w} seeds {', '.join(map(str, d))}" for w, d in diverged.items()) + "."
        )
    return text


def plot(r: dict, title: str):
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(14, 9), layout="constrained")
    cmap = plt.get_cmap("viridis")
    widths = r["widths"]
    s = summary(r)
    color = {w: cmap(i / max(len(widths) - 1, 1)) for i, w in enumerate(widths)}
    _curve_panels(axes[0, 0], axes[0, 1], r, color)
    _end_panel(axes[1, 0], r, s)
    _loss_panel(axes[1, 1], r, s)
    fig.suptitle(title, fontsize=11)
    return fig


def _curve_panels(ax_test, ax_memorized, r: dict, color: dict) -> None:
    """Test accuracy and the share of flipped labels learned over training: mean ± sd per width."""
    widths = r["widths"]
    panels = [
        (ax_test, "test_accuracy", "test accuracy (clean labels)"),
        (ax_memorized, "memorized", "share of the flipped training labels learned"),
    ]
    for ax, key, label in panels:
        for w in widths:
            ok = [x for x in r["runs"][w] if x["diverged_at"] is None]
            if not ok:
                continue
            curves = np.array([x[key] for x in ok])  # (seeds, records)
            mean, sd = mean_sd(curves)
            band(ax, ok[0]["steps"], mean, mean - sd, mean + sd, color[w], label=f"width {w}", lw=1.8)
        ax.set_xlabel("training step")
        ax.set_ylabel(label)
        ax.set_title(f"{label[0].upper() + label[1:]}: mean ± sd over seeds")
        ax.legend(loc="lower right")


def _end_panel(ax, r: dict, s: dict) -> None:
    """At the end of training, per width: train accuracy, flipped labels learned, test accuracy, its peak."""
    widths = r["widths"]
    x = np.arange(len(widths))
    for k, (key, label, marker) in enumerate(
        [
            ("train_accuracy", "train accuracy (on the noisy labels)", "o"),
            ("memorized", "flipped labels learned", "s"),
            ("test_accuracy", "test accuracy at the end", "D"),
            ("peak_test_accuracy", "best test accuracy while training", "^"),
        ]
    ):
        ok = [w for w in widths if s[w]["seeds"]]
        spread_bars(
            ax,
            [x[widths.index(w)] + (k - 1.5) * 0.08 for w in ok],
            [s[w][key][0] for w in ok],
            sd=[s[w][key][1] for w in ok],
            fmt=marker + "-",
            capsize=4,
            label=label,
        )
    clean = 1 - r["n_flipped"] / r["n_train"]
    ax.axhline(clean, color="0.5", ls=":", lw=1, label=f"{clean:.2f}: train accuracy of a perfect boundary")
    ax.set_xticks(x, [str(w) for w in widths])
    ax.set_xlabel("hidden width (two hidden layers)")
    ax.set_ylabel("at the end of training (mean ± sd)")
    ax.set_title("Wider nets learn the flipped labels; what happens to test accuracy?")
    ax.legend(loc="center right")


def _loss_panel(ax, r: dict, s: dict) -> None:
    """The train and test loss at the end, per width."""
    widths = r["widths"]
    x = np.arange(len(widths))
    for key, label, marker in [
        ("train_loss", "train loss (noisy labels)", "o"),
        ("test_loss", "test loss (clean)", "s"),
    ]:
        ok = [w for w in widths if s[w]["seeds"]]
        spread_bars(
            ax,
            [x[widths.index(w)] for w in ok],
            [s[w][key][0] for w in ok],
            sd=[s[w][key][1] for w in ok],
            fmt=marker + "-",
            capsize=4,
            label=label,
        )
    ax.set_xticks(x, [str(w) for w in widths])
    ax.set_xlabel("hidden width (two hidden layers)")
    ax.set_ylabel("BCE loss at the end (mean ± sd)")
    ax.set_title("Loss: confident answers on memorized noise cost on the test set")
    ax.legend(loc="upper left")


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("noise", __doc__.split("\n\n")[1], None, one_backend=True)
    parser.add_argument("--dataset", choices=["moons", "spirals", "circles"], default="moons", help="default: moons")
    parser.add_argument(
        "--n", type=sample_count, default=200, help=f"samples, split half/half, 8 to {MAX_SAMPLES:,} (default: 200)"
    )
    parser.add_argument(
        "--noise", type=non_negative_float, default=0.2, help="Gaussian noise of the points (default: 0.2)"
    )
    parser.add_argument(
        "--flip", type=flip_fraction, default=0.2, help="share of training labels flipped, 0 to <0.5 (default: 0.2)"
    )
    parser.add_argument(
        "--widths",
        type=width_list,
        default=[2, 8, 32, 64],
        help=f"hidden widths W of 2→W→W→1 networks, up to {MAX_WIDTHS} of them, each 1 to {MAX_WIDTH} "
        "(default: 2,8,32,64)",
    )
    parser.add_argument(
        "--steps", type=step_count, default=2000, help=f"Adam steps, lr 0.01, at most {MAX_STEPS:,} (default: 2000)"
    )
    add_seed_options(parser, 10, "seeds per width (each sets the data, the split, the flips and the init)", ("--seed",))
    args = parser.parse_args(argv)
    if args.n < 8:
        parser.error(f"--n {args.n} is too few to split into train and test halves (at least 8)")
    if (floats := args.n * (3 + 2 * max(args.widths))) > MAX_FLOATS:
        parser.error(
            f"--n {args.n} samples × --widths {max(args.widths)} is {floats:.1e} activations per forward pass, "
            f"more than {MAX_FLOATS:.0e}: use fewer samples or narrower --widths"
        )
    if (kept := args.seeds * sum(map(weights, args.widths))) > MAX_FLOATS:
        parser.error(
            f"--seeds {args.seeds} × --widths {','.join(map(str, args.widths))} keep {kept:.1e} trained weights, "
            f"more than {MAX_FLOATS:.0e}: use fewer seeds or narrower --widths"
        )
    backend = one_installed(parser, args.backend)
    note(f"training widths {args.widths} × {args.seeds} seeds on noisy {args.dataset} ({backend})")
    r = run(backend, args.dataset, args.n, args.noise, args.flip, args.widths, args.steps, args.seeds, args.first_seed)
    text = finding(r)
    title = (
        f"Noisy {args.dataset} (n={args.n}, noise {args.noise:g}): {r['n_train']} train points, {r['n_flipped']} of "
        f"their labels flipped; {r['n_test']} clean test points; Adam lr {LR:g}, {args.steps} steps, {args.seeds} seeds"
    )
    s = summary(r)
    numbers = {
        "widths": {
            str(w): {k: v for k, v in s[w].items() if k != "values"} | {"per_seed": s[w]["values"]} for w in r["widths"]
        }
    }
    publish(args.out, "noise", plot(r, title), numbers, text)
    return 0
