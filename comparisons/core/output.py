"""What every command writes: the house colours, figures (matplotlib on Agg, imported only to plot),
the numbers behind them as JSON, and the printed one-paragraph finding."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

BACKEND_COLORS = {"numpy": "#1f77b4", "torch": "#d62728", "jax": "#2ca02c"}
"""One colour per backend in every figure (blue numpy, red torch, green jax)."""

PAIR_COLORS = {("numpy", "torch"): "#9467bd", ("numpy", "jax"): "#17becf", ("torch", "jax"): "#ff7f0e"}


def note(message: str) -> None:
    print(f"[trigrad] {message}", file=sys.stderr, flush=True)


def pyplot():
    """matplotlib.pyplot on the Agg backend (no screen needed), imported only when plotting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.fontsize": 8,
            "legend.framealpha": 0.85,
        }
    )
    return plt


def save_figure(fig, out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def save_json(obj: dict, out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"cannot write {type(x).__name__} as JSON")


def publish(out: Path, name: str, fig, numbers: dict, finding: str) -> None:
    """Write out/NAME.png and out/NAME.json (the numbers behind the figure, and the finding), then print
    where they went and the finding: how every comparison and lesson ends."""
    report([save_figure(fig, out, name), save_json({"finding": finding, **numbers}, out, name)], finding)


def report(paths: list[Path], finding: str) -> None:
    """Print where the files went and the one-paragraph finding."""
    for path in paths:
        print(f"wrote {path}")
    print()
    print(finding)
