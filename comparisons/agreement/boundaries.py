"""boundaries: what each backend learned, drawn as decision boundaries side by side.

Trains every backend from the same init on each dataset (XOR, moons, spirals by default) and draws
the predicted class over the plane, with the training points on top. Reports each backend's training
accuracy and the share of the plane where two backends predict different classes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from backends import get_backend
from comparisons.core.options import int_range, make_parser, name_list, non_negative_int, step_count
from comparisons.core.output import BACKEND_COLORS, note, publish, pyplot
from comparisons.core.problem import installed, make_optimizer
from shared.data import make_dataset
from shared.params import init_params
from shared.spec import MLPSpec
from shared.training import MAX_STEPS


@dataclass(frozen=True)
class Preset:
    """A dataset with a network and optimizer that learn it (≥ 99 % training accuracy). Each run's
    wall time is measured and reported: on 2 idle cores a preset trains in 0.1–3 s per backend in
    float32, but torch in float64 and a loaded machine can take ten times that."""

    dataset: str
    kwargs: dict
    spec: MLPSpec
    optimizer: str
    lr: float
    steps: int


PRESETS = {
    "xor": Preset("xor", {}, MLPSpec((2, 4, 1), "tanh", "bce"), "sgd", 0.5, 500),
    "moons": Preset("moons", {"n": 200, "noise": 0.15}, MLPSpec((2, 16, 16, 1), "tanh", "bce"), "adam", 0.01, 1000),
    "circles": Preset("circles", {"n": 200, "noise": 0.08}, MLPSpec((2, 16, 1), "tanh", "bce"), "adam", 0.02, 800),
    "spirals": Preset(
        "spirals",
        {"n": 300, "noise": 0.08, "arms": 3},
        MLPSpec((2, 32, 32, 3), "tanh", "softmax_ce"),
        "adam",
        0.01,
        2000,
    ),
    "blobs": Preset("blobs", {"n": 200, "centers": 3}, MLPSpec((2, 8, 3), "tanh", "softmax_ce"), "adam", 0.02, 500),
}


MAX_RESOLUTION = 1000  # grid points per axis: 1000² = 1e6 predictions per backend and dataset


def percent(x: float) -> str:
    """x as a percentage with as many decimals as it takes never to round to 100 % or 0 % unless it is
    exactly 1 or 0 (0.995 is '99.5%', not '100%'), at most 4."""
    if 0 < x < 0.01:
        return f"{100 * x:.2g}%"  # two significant digits: 0.07 %, not 0.1 %
    for decimals in range(5):
        text = f"{100 * x:.{decimals}f}"
        if (float(text) == 100) == (x == 1) and (float(text) == 0) == (x == 0):
            return f"{text}%"
    return f"{100 * x:.4g}%"


def predict_classes(be, spec: MLPSpec, params, X: np.ndarray) -> np.ndarray:
    logits = be.forward(spec, params, X)  # (n, k)
    return (logits[:, 0] > 0).astype(int) if spec.n_outputs == 1 else logits.argmax(axis=1)


def grid_for(X: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = 0.25 * (hi - lo) + 0.1
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution)
    gx, gy = np.meshgrid(xs, ys)
    return gx, gy, np.column_stack([gx.ravel(), gy.ravel()])


def next_to_boundary(classes: np.ndarray) -> np.ndarray:
    """True where a grid cell or one of its 8 neighbours has a different class."""
    padded = np.pad(classes, 1, mode="edge")
    h, w = classes.shape
    near = np.zeros(classes.shape, bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            near |= padded[1 + di : 1 + di + h, 1 + dj : 1 + dj + w] != classes
    return near


def disagreeing_cells(classes: dict[str, np.ndarray]) -> np.ndarray:
    """True at the grid cells where the backends do not all predict the same class."""
    grids = list(classes.values())
    differ = np.zeros(grids[0].shape, bool) if grids else np.zeros((0, 0), bool)
    for other in grids[1:]:
        differ |= other != grids[0]
    return differ


def boundaries(preset: Preset, backends: list[str], dtype: str, seed: int, steps: int | None, resolution: int) -> dict:
    """Train each backend, then its accuracy on the training points and predicted class on a grid."""
    data = make_dataset(preset.dataset, seed=seed, **preset.kwargs)
    spec, y = preset.spec, data.targets(preset.spec)
    params = init_params(spec, seed=seed)
    gx, gy, grid = grid_for(data.X, resolution)
    out = {
        "data": data,
        "spec": spec,
        "gx": gx,
        "gy": gy,
        "accuracy": {},
        "classes": {},
        "params": {},
        "disagreement": {},
        "seconds": {},
    }
    optimizer = make_optimizer(preset.optimizer, preset.lr)
    for name in backends:
        note(f"{preset.dataset}: training {name} {dtype}")
        be = get_backend(name, dtype)
        traj = be.train(spec, params, data.X, y, optimizer, steps or preset.steps, seed=seed)
        trained = traj.params
        out["seconds"][name] = float(traj.meta["wall_time_s"])
        out["accuracy"][name] = float((predict_classes(be, spec, trained, data.X) == data.y).mean())
        out["classes"][name] = predict_classes(be, spec, trained, grid).reshape(gx.shape)
        out["params"][name] = trained
    out["off_boundary"] = 0  # disagreeing grid points that are not next to either backend's boundary
    for a, b in itertools.combinations(backends, 2):
        differ = out["classes"][a] != out["classes"][b]
        out["disagreement"][f"{a} vs {b}"] = float(differ.mean())
        near = next_to_boundary(out["classes"][a]) | next_to_boundary(out["classes"][b])
        out["off_boundary"] += int((differ & ~near).sum())
    out["differ"] = disagreeing_cells(out["classes"])  # (resolution, resolution)
    out["optimizer"] = optimizer.describe()
    out["steps"] = steps or preset.steps
    return out


def finding(results: dict[str, dict]) -> str:
    parts = []
    for dataset, r in results.items():
        acc = ", ".join(f"{name} {percent(a)}" for name, a in r["accuracy"].items())
        worst = max(r["disagreement"].values(), default=0.0)
        if worst == 0:
            agree = "identical boundaries (no grid point classified differently)"
        else:
            where = (
                "every one of them right next to a boundary"
                if r["off_boundary"] == 0
                else f"{r['off_boundary']} of them away from any boundary"
            )
            agree = f"boundaries that differ on at most {percent(worst)} of the grid, {where}"
        secs = r["seconds"].values()
        took = f"trained in {min(secs):.2g}–{max(secs):.2g} s per backend" if secs else ""
        parts.append(f"{dataset}: training accuracy {acc}; {agree}; {took}.")
    return " ".join(parts) + (
        " Trained from the same init on the same batches, the backends learn the same function; rounding moves a"
        " boundary by a grid cell at most."
        if all(r["off_boundary"] == 0 for r in results.values())
        else ""
    )


def differ_text(differ: np.ndarray) -> str:
    """The caption of a row's ✕ marks: how many grid cells the backends classify differently."""
    if not differ.any():
        return "the backends agree on every grid cell"
    return f"✕: the backends differ on {int(differ.sum())} of {differ.size:,} cells ({percent(float(differ.mean()))})"


def plot(results: dict[str, dict], backends: list[str], dtype: str):
    from matplotlib.colors import ListedColormap

    plt = pyplot()
    fig, axes = plt.subplots(
        len(results),
        len(backends),
        figsize=(3.6 * len(backends), 3.4 * len(results)),
        squeeze=False,
        layout="constrained",
    )
    palette = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860"]
    for row, (dataset, r) in enumerate(results.items()):
        k = r["data"].n_classes
        cmap = ListedColormap(palette[:k])
        for col, name in enumerate(backends):
            ax = axes[row, col]
            ax.contourf(r["gx"], r["gy"], r["classes"][name], levels=np.arange(k + 1) - 0.5, cmap=cmap, alpha=0.3)
            ax.contour(r["gx"], r["gy"], r["classes"][name], levels=np.arange(k) + 0.5, colors="k", linewidths=0.8)
            ax.scatter(
                *r["data"].X.T, c=r["data"].y, cmap=cmap, vmin=-0.5, vmax=k - 0.5, s=14, edgecolors="k", linewidths=0.4
            )
            differ = r["differ"]
            if differ.any():  # the same cells on every panel: where one backend's class is not another's
                ax.scatter(
                    r["gx"][differ], r["gy"][differ], marker="x", s=22, c="k", linewidths=1.2, zorder=4, gid="differ"
                )
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            title = f"{name}: {percent(r['accuracy'][name])} train accuracy"
            ax.set_title(title, color=BACKEND_COLORS[name], fontsize=10)
            if col == 0:
                ax.set_ylabel(
                    f"{dataset}\n{r['spec'].describe()}\n{r['optimizer']}, {r['steps']} steps\n{differ_text(differ)}",
                    fontsize=8,
                )
    fig.suptitle(f"Decision boundaries after training, same init on every backend ({dtype})", fontsize=11)
    return fig


def main(argv: list[str] | None = None) -> int:
    presets = "\n".join(
        f"  {p.dataset:<8} {p.spec.describe()}, {p.optimizer} lr {p.lr:g}, {p.steps} steps" for p in PRESETS.values()
    )
    parser = make_parser(
        "boundaries", __doc__.split("\n\n")[1], None, epilog=f"datasets and the network each one gets:\n{presets}"
    )
    parser.add_argument(
        "--datasets",
        type=name_list(list(PRESETS)),
        default=["xor", "moons", "spirals"],
        help="comma-separated (default: xor,moons,spirals)",
    )
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float32", help="default: float32")
    parser.add_argument(
        "--steps", type=step_count, default=None, help=f"override every preset's step count, at most {MAX_STEPS:,}"
    )
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of data and init (default: 0)")
    parser.add_argument(
        "--resolution",
        type=int_range(10, MAX_RESOLUTION),
        default=200,
        help=f"grid points per axis, 10 to {MAX_RESOLUTION}: {MAX_RESOLUTION}² is 1e6 predictions per backend "
        "and dataset (default: 200)",
    )
    args = parser.parse_args(argv)
    backends = installed(args.backends)
    results = {
        name: boundaries(PRESETS[name], backends, args.dtype, args.seed, args.steps, args.resolution)
        for name in args.datasets
    }
    text = finding(results)
    fig = plot(results, backends, args.dtype)
    numbers = {
        name: {
            "accuracy": r["accuracy"],
            "disagreement": r["disagreement"],
            "off_boundary": r["off_boundary"],
            "spec": r["spec"].describe(),
            "optimizer": r["optimizer"],
            "steps": r["steps"],
            "train_seconds": r["seconds"],
        }
        for name, r in results.items()
    }
    publish(args.out, "boundaries", fig, numbers, text)
    return 0
