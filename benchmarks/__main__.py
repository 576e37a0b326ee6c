"""python -m benchmarks [--quick] [--out DIR] — training speed per backend, against the machine's limits.

Measures, in one run so every ratio is side by side: each framework's float32 matmul peak and
dispatch cost; trigrad's `train` per backend and size, keeping every loss (the default) and
keeping none, record_losses=None: steps/s, GFLOP/s, % of peak, first-call time; the bare loop for
the same math; train (no losses) against each backend's minimal loop (bare loop, or JAX's
lax.scan), timed paired, in alternation; fused variants (JAX lax.scan, torch.compile). Writes
benchmarks.md, benchmarks.json and two figures to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from backends import BACKENDS, available_backends
from benchmarks.markdown import markdown
from benchmarks.report import run_report
from benchmarks.workloads import QUICK_SKIPS, WORKLOADS, GPTWorkload
from comparisons.core.options import name_list, output_folder

COLORS = {"numpy": "#1f77b4", "torch": "#d62728", "jax": "#2ca02c"}  # as in every trigrad figure
MARKERS = {
    "trigrad train": "o",
    "trigrad train, no losses": "*",
    "bare loop": "s",
    "bare lax.scan": "^",
    "torch.compile": "D",
}
STYLES = {
    "trigrad train": "-",
    "trigrad train, no losses": "-",
    "bare loop": "--",
    "bare lax.scan": ":",
    "torch.compile": "-.",
}
ALPHAS = {
    "trigrad train": 1.0,
    "trigrad train, no losses": 0.8,
    "bare loop": 0.55,
    "bare lax.scan": 0.35,
    "torch.compile": 0.75,
}


LABEL_DECADES = 0.8  # a size's name is about this wide on the FLOPs axis: closer names go on another row
LABEL_GAP_PT = 12  # the least height between two peak labels, in points (their font is 8 pt)


def label_rows(xs: dict[str, float], decades: float = LABEL_DECADES) -> dict[str, int]:
    """A row for each label on a log axis, lowest first: a label goes to the first row where it is at
    least `decades` from the last label placed there (labels taken in x order), so no two collide."""
    rows, last = {}, {}
    for name, x in sorted(xs.items(), key=lambda item: item[1]):
        row = 0
        while row in last and np.log10(x) - np.log10(last[row]) < decades:
            row += 1
        rows[name], last[row] = row, x
    return rows


def dodge_down(ys: dict[str, float], gap: float) -> dict[str, float]:
    """Label heights, highest first: each at its own y, or `gap` below the label above it if that is lower,
    so labels of equal or close values stack instead of printing over each other."""
    placed, previous = {}, np.inf
    for name, y in sorted(ys.items(), key=lambda item: -item[1]):
        previous = placed[name] = min(y, previous - gap)
    return placed


def steps_figure(report: dict):
    """Steps per second against FLOPs per step, one line per backend and variant, and for each backend
    its compute bound: its own matmul peak ÷ FLOPs per step."""
    import matplotlib.pyplot as plt

    rows = report["rows"]
    flops = {name: w.flops_per_step for name, w in WORKLOADS.items()}
    gpts = {name for name in flops if isinstance(WORKLOADS[name], GPTWorkload)}
    fig, ax = plt.subplots(figsize=(11.5, 6), layout="constrained")
    for backend in COLORS:
        for variant in MARKERS:
            mine = [r for r in rows if r["backend"] == backend and r["variant"] == variant]
            # the MLP sizes joined by a line; a GPT is another model, so its point stands alone (larger, hollow)
            pts = sorted((flops[r["workload"]], r["steps_per_s"]) for r in mine if r["workload"] not in gpts)
            if pts:
                x, y = zip(*pts)
                ax.plot(
                    x, y, STYLES[variant], marker=MARKERS[variant], color=COLORS[backend], label=f"{backend} {variant}"
                )
            for r in mine:
                if r["workload"] in gpts:
                    ax.plot(
                        flops[r["workload"]],
                        r["steps_per_s"],
                        MARKERS[variant],
                        ms=10,
                        mfc="none",
                        mew=1.5,
                        color=COLORS[backend],
                        label=None if pts else f"{backend} {variant}",
                    )
    if gpts:
        ax.plot([], [], "o", ms=10, mfc="none", color="0.5", label="hollow, unjoined: the GPT workload")
    _peak_lines(ax, report["peaks_gflops"], flops)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("matmul FLOPs per training step (forward ×3; MLP: less the input's gradient)")
    ax.set_ylabel("training steps per second")
    line = "its backend's peak line" if len(report["peaks_gflops"]) > 1 else "the peak line"
    ax.set_title(f"Overhead-bound (flat, left) to compute-bound (on {line}, right)")
    ax.grid(True, which="both", alpha=0.3)
    fig.legend(fontsize=8, loc="outside right upper")  # beside the axes: over none of the lines
    _size_axis(ax, flops)
    return fig


def _peak_lines(ax, peaks: dict, flops: dict) -> None:
    """Each backend's compute bound, its matmul peak ÷ FLOPs per step, across the figure."""
    x = np.logspace(np.log10(min(flops.values())) - 0.3, np.log10(max(flops.values())) + 0.3, 50)
    for k, (backend, peak) in enumerate(peaks.items()):
        # interleaved dashes: peaks a few % apart draw the same line, and each backend's stays visible
        ax.plot(
            x,
            peak * 1e9 / x,
            ls=(4 * k, (4, 4 * (len(peaks) - 1))) if len(peaks) > 1 else "-",
            color=COLORS.get(backend, "0.5"),
            lw=1.4,
            gid=f"peak {backend}",
            label=f"{backend} compute bound: {peak:.0f} GFLOP/s ÷ FLOPs per step",
        )


def _size_axis(ax, flops: dict) -> None:
    """The sizes named on an axis at the top, outside the data; names too close for one row (gpt beside
    large) go a row higher."""
    from matplotlib.ticker import NullLocator

    sizes = ax.secondary_xaxis("top")
    rows_of = label_rows(flops)
    sizes.set_xticks(list(flops.values()), list(flops))
    sizes.xaxis.set_minor_locator(NullLocator())
    sizes.tick_params(labelsize=9, colors="0.3")
    for tick, name in zip(sizes.xaxis.get_major_ticks(), flops):
        tick.set_pad(tick.get_pad() + 11 * rows_of[name])  # 11 pt: one row of 9 pt names


def gflops_figure(report: dict):
    """Achieved GFLOP/s per size, one bar per backend and variant, against each backend's matmul peak."""
    import matplotlib.pyplot as plt

    rows = report["rows"]
    sizes = [s for s in WORKLOADS if s != "xor" and any(r["workload"] == s for r in rows)]
    bars = [(b, v) for b in COLORS for v in MARKERS if any(r["backend"] == b and r["variant"] == v for r in rows)]
    fig, ax = plt.subplots(figsize=(11.5, 5.5), layout="constrained")
    width = 0.8 / max(len(bars), 1)
    tallest = 0.0
    for i, (backend, variant) in enumerate(bars):
        vals = [
            next(
                (r["gflops"] for r in rows if (r["workload"], r["backend"], r["variant"]) == (s, backend, variant)), 0.0
            )
            for s in sizes
        ]
        tallest = max(tallest, *vals)
        ax.bar(
            np.arange(len(sizes)) + (i - len(bars) / 2 + 0.5) * width,
            vals,
            width,
            color=COLORS[backend],
            alpha=ALPHAS[variant],
            hatch={"torch.compile": "//"}.get(variant, ""),
            edgecolor="k",
            lw=0.4,
            label=f"{backend} {variant}",
        )
    peaks = report["peaks_gflops"]
    for backend, peak in peaks.items():
        ax.axhline(peak, color=COLORS[backend], ls="--", lw=1)
    ax.set_xticks(
        range(len(sizes)),
        [f"{s}\n{WORKLOADS[s].label}\nbatch {WORKLOADS[s].batch}" for s in sizes],
    )
    ax.set_ylabel("achieved GFLOP/s (float32)")
    ax.set_title("Achieved training throughput against each framework's own matmul peak")
    fig.legend(fontsize=8, loc="outside right upper")  # beside the axes: no bar hides behind it
    ax.set_ylim(0, 1.1 * max([tallest, *peaks.values()], default=1.0))
    fig.draw_without_rendering()  # the axes' final height, to turn the labels' least gap into data units
    gap = LABEL_GAP_PT * fig.dpi / 72 * np.diff(ax.get_ylim())[0] / ax.get_window_extent().height
    for backend, y in dodge_down(peaks, gap).items():  # right of the axes, where their lines end: over no bar
        ax.text(
            1.01,
            y,
            f"{backend} matmul peak {peaks[backend]:.0f}",
            transform=ax.get_yaxis_transform(),
            color=COLORS[backend],
            ha="left",
            va="center",
            fontsize=8,
            gid=f"peak {backend}",
        )
    return fig


def plot(report: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for name, figure in [("steps_vs_flops", steps_figure), ("gflops_vs_peak", gflops_figure)]:
        fig = figure(report)
        paths.append(out / f"{name}.png")
        fig.savefig(paths[-1])
        plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="sizes: " + "; ".join(f"{n} {w.spec.describe()} batch {w.batch}" for n, w in WORKLOADS.items()),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"short timings, all sizes but {'/'.join(QUICK_SKIPS)} (under a minute); noisier numbers",
    )
    # checked before measuring: a bad --out must not cost the whole run
    parser.add_argument(
        "--out", type=output_folder, default="out/benchmarks", metavar="DIR", help="default: out/benchmarks/"
    )
    parser.add_argument(
        "--backends",
        type=name_list(BACKENDS),
        default=list(BACKENDS),
        help="comma-separated (default: all installed)",
    )
    parser.add_argument(
        "--sizes",
        type=name_list(list(WORKLOADS)),
        default=None,
        help=f"comma-separated from {', '.join(WORKLOADS)} (default: all; --quick: all but {', '.join(QUICK_SKIPS)})",
    )
    args = parser.parse_args(argv)
    if not any(name in available_backends() for name in args.backends):
        parser.error(
            f"--backends {','.join(args.backends)}: none installed (installed: {', '.join(available_backends())})"
        )
    start = time.perf_counter()
    report = run_report(args.quick, args.backends, args.sizes, progress=lambda m: print(m, file=sys.stderr, flush=True))
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    (args.out / "benchmarks.md").write_text(text)
    (args.out / "benchmarks.json").write_text(json.dumps(report, indent=2) + "\n")
    paths = [args.out / "benchmarks.md", args.out / "benchmarks.json"]
    try:
        paths += plot(report, args.out)
    except ImportError:
        print("matplotlib is not installed: no figures (pip install matplotlib)", file=sys.stderr)
    print(text)
    for p in paths:
        print(f"wrote {p}")
    print(f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
