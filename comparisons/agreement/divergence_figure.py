"""The divergence command's figure: every pair's parameter gap and tolerance ratio per step, each
backend's drift from its own float64 run, and the loss curves (divergence.py computes the numbers)."""

from __future__ import annotations

import numpy as np

from comparisons.core.output import BACKEND_COLORS, PAIR_COLORS, pyplot
from comparisons.core.problem import Problem
from shared.validation import DTYPES, HALF_DTYPES, MIXED_FORMATS, format_eps

STYLE = {
    "float32": "-",
    "float64": "--",
    "bfloat16": (0, (8, 2)),
    "float16": (0, (2, 2)),
    "bfloat16-mixed": "-.",
    "float16-mixed": (0, (5, 1, 1, 1, 1, 1)),
}
"""The line of each format's pairs and loss curves."""
FLOOR = 1e-18  # log axes cannot show an exact 0: gaps of 0 are drawn here
RATIO_FLOOR = 1e-9  # tolerance ratios below this (a gap of 0 at step 0) are drawn at the axis bottom


def level_labels(ax, levels: dict[str, float]):
    """Name horizontal reference lines on a secondary axis at the right, outside the data, where no
    curve can cross the names. Returns that axis."""
    from matplotlib.ticker import NullLocator

    side = ax.secondary_yaxis("right")
    side.set_yticks(list(levels.values()), list(levels))
    side.yaxis.set_minor_locator(NullLocator())
    side.tick_params(labelsize=8, colors="0.35")
    return side


CROSSING_FACE = {
    "float32": "k",
    "float64": "w",
    "bfloat16": "0.35",
    "float16": "0.7",
    "bfloat16-mixed": "0.55",
    "float16-mixed": "0.8",
}
"""The ✕ of a float32 crossing is filled, a float64 one hollow, a half format's grey."""
FORMAT_ORDER = (*DTYPES, *HALF_DTYPES, *MIXED_FORMATS)


def crossings(numbers: dict) -> list[dict]:
    """The steps where pairs first leave their tolerance, one entry per dtype and step, in step order:
    {"dtype", "step", "pairs": the pairs ("a vs b") that first exceed it at that step, "of": how many
    pairs of that dtype were compared}."""
    groups: dict[tuple[str, int], list[str]] = {}
    for p in numbers["pairs"].values():
        if p["first_exceeded"] is not None:
            groups.setdefault((p["dtype"], int(p["first_exceeded"])), []).append(" vs ".join(p["pair"]))
    total = {d: sum(p["dtype"] == d for p in numbers["pairs"].values()) for d in FORMAT_ORDER}
    return [
        {"dtype": dtype, "step": step, "pairs": pairs, "of": total[dtype]}
        for (dtype, step), pairs in sorted(
            groups.items(), key=lambda item: (item[0][1], FORMAT_ORDER.index(item[0][0]))
        )
    ]


def crossing_label(group: dict) -> str:
    """'float32 crosses at step 98 (all 3 pairs)', or which pairs, when not all of them do."""
    n = len(group["pairs"])
    which = f"all {n} pairs" if n == group["of"] and n > 1 else ", ".join(group["pairs"])
    return f"{group['dtype']} crosses at step {group['step']} ({which})"


def mark_crossings(ax, groups: list[dict]):
    """One ✕ per crossing, each on its own row just below the tolerance line (above it when the line is
    near the bottom), with a dotted drop line up to the line at its step and its label beside it: rows
    never overlap, however close the steps are. Call after the curves are drawn (it fixes the y limits)."""
    if not groups:
        return
    lo, hi = np.log10(ax.get_ylim())
    ax.set_ylim(10**lo, 10**hi)
    line = -lo / (hi - lo)  # the tolerance line's height, as a share of the axes
    row = 0.075
    below = line - row * len(groups) > 0.02
    for k, g in enumerate(groups):
        height = line - row * (k + 1) if below else line + row * (k + 1)
        y = 10 ** (lo + height * (hi - lo))
        ax.plot([g["step"], g["step"]], [y, 1.0], ":", color="k", lw=0.9, zorder=4)
        ax.plot(g["step"], y, "X", mfc=CROSSING_FACE[g["dtype"]], mec="k", color="k", ms=9, zorder=5)
        ax.annotate(
            crossing_label(g),
            (g["step"], y),
            xytext=(9, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.2", "fc": "w", "ec": "0.6", "alpha": 0.9},
            zorder=6,
        )


def plot(numbers: dict, problem: Problem, dtype_tols: dict):
    from matplotlib.lines import Line2D

    plt = pyplot()
    fig, (ax, ax_tol, ax_loss) = plt.subplots(
        1, 3, figsize=(20, 6.2), gridspec_kw={"width_ratios": [1.25, 1.25, 1]}, layout="constrained"
    )
    _gap_panels(ax, ax_tol, numbers)
    groups = _tolerance_panel(ax_tol, numbers, dtype_tols)
    _loss_panel(ax_loss, numbers)
    handles, _ = ax.get_legend_handles_labels()
    for dtype in sorted({g["dtype"] for g in groups}):
        handles.append(
            Line2D(
                [],
                [],
                ls="",
                marker="X",
                mfc=CROSSING_FACE[dtype],
                mec="k",
                ms=9,
                label=f"{dtype}: first step beyond its tolerance (labelled)",
            )
        )
    fig.legend(handles=handles, loc="outside lower center", ncol=4)
    fig.suptitle(problem.describe(), fontsize=10)
    return fig


def _gap_panels(ax, ax_tol, numbers: dict) -> None:
    """Every pair's parameter gap (left) and tolerance ratio (middle), and each backend's float32 vs float64."""
    for p in numbers["pairs"].values():
        a, b = p["pair"]
        style = STYLE[p["dtype"]]
        label = f"{a} vs {b}, {p['dtype']}"
        ax.plot(p["steps"], np.maximum(p["gap"], FLOOR), ls=style, color=PAIR_COLORS[a, b], lw=1.6, label=label)
        ratio = np.maximum(p["ratio"], RATIO_FLOOR)
        ax_tol.plot(p["steps"], ratio, ls=style, color=PAIR_COLORS[a, b], lw=1.6)
    drift = numbers.get("drift") or {"float32": numbers["precision"]}
    for dtype, per_backend in drift.items():
        for name, p in per_backend.items():
            ax.plot(
                p["steps"],
                np.maximum(p["gap"], FLOOR),
                ":",
                color=BACKEND_COLORS[name],
                lw=2.4 if dtype == "float32" else 1.4,
                label=f"{name}: {dtype} vs its own float64",
            )
    shown = {f: format_eps(f) for f in numbers.get("formats", DTYPES)}
    for eps in shown.values():
        ax.axhline(eps, color="0.55", lw=0.8)
    ax.set_yscale("log")
    level_labels(ax, {f"{dtype} ε": eps for dtype, eps in shown.items()})
    ax.set_xlabel("training step")
    ax.set_ylabel("parameter gap  max|θa − θb| / max|θ|")
    ax.set_title(
        "Framework or precision? The parameter gap\n"
        "solid: float32 pairs, dashed: float64 pairs, dotted: a format vs float64 of one backend"
        + (
            "\n(thin dotted: a half format; pairs in long dashes: bfloat16, short: float16,\n"
            "dash-dot: bfloat16-mixed, dash-dot-dot: float16-mixed)"
            if any(f in MIXED_FORMATS or f in HALF_DTYPES for f in numbers.get("formats", ()))
            else ""
        ),
        fontsize=10,
    )


def _tolerance_panel(ax_tol, numbers: dict, dtype_tols: dict) -> list[dict]:
    """The parity check's axis: the line at 1, each dtype's first crossing labelled. Returns the crossings."""
    ax_tol.axhline(1.0, color="k", lw=1.0)
    each = [f"{d}: rtol {t.rtol:g}, atol {t.atol:g}" for d, t in dtype_tols.items()]
    tols = ";\n".join(", ".join(each[i : i + 2]) for i in range(0, len(each), 2))  # two formats a line
    ax_tol.set_yscale("log")
    level_labels(ax_tol, {"the tolerance": 1.0})
    ax_tol.set_ylim(bottom=RATIO_FLOOR / 2)
    groups = crossings(numbers)
    mark_crossings(ax_tol, groups)
    ax_tol.set_xlabel("training step")
    ax_tol.set_ylabel("worst |a − b| / (atol + rtol·max(|a|, |b|))")
    ax_tol.set_title(
        "The parity check: worst ratio over parameters and loss since the previous point\n"
        f"(above 1 = beyond the trajectory tolerance; {tols})",
        fontsize=10,
    )
    return groups


def _loss_panel(ax_loss, numbers: dict) -> None:
    """Every run's loss curve, ○ where one diverged."""
    for key, losses in numbers["losses"].items():
        name, dtype = key.split()
        ax_loss.plot(
            np.arange(len(losses)),
            losses,
            ls=STYLE[dtype],
            color=BACKEND_COLORS[name],
            lw=1.2,
            alpha=0.8,
            label=key,
        )
        step = numbers.get("diverged_at", {}).get(key)
        if step is not None and step < len(losses):
            ax_loss.plot(step, losses[step], "o", color=BACKEND_COLORS[name], mfc="none", ms=8)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("training step")
    ax_loss.set_ylabel("training loss")
    curves = [np.asarray(v, np.float64) for v in numbers["losses"].values()]
    n = min(map(len, curves))
    spread = max(np.max(np.abs(c[:n] - curves[0][:n]) / np.abs(curves[0][:n]), initial=0.0) for c in curves)
    overlap = "they overlap: the gaps are far below a line's width" if spread < 1e-3 else "where they part, see left"
    if any(v is not None for v in numbers.get("diverged_at", {}).values()):
        overlap += "; ○ where a run diverged"
    ax_loss.set_title(f"Loss curves, all {len(curves)} runs\n({overlap})", fontsize=10)
    ax_loss.legend(loc="upper right")
