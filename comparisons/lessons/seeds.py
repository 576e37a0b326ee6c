"""seeds: one architecture, many starting points, different solutions.

Trains small XOR networks (2→2→1 and 2→4→1 tanh by default) from many seeds. Runs that classify all
four points are successes; the rest got stuck. The successes are then compared *up to symmetry* —
swapping two hidden units, or flipping the signs of a tanh unit's incoming and outgoing weights,
changes no output — and grouped: two solutions are the same if they are closer than a threshold.
How many solutions there are depends on that threshold, so the lesson shows the count for every
threshold, how far one solution still moves while it trains (below that, "different" means nothing),
and whether a clear gap separates the groups.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from backends import get_backend
from comparisons.core.options import add_seed_options, layer_sizes, make_parser, positive_float, seed_range, step_count
from comparisons.core.output import note, publish, pyplot
from comparisons.core.problem import one_installed
from shared.data import xor
from shared.optim import SGD
from shared.params import Params, init_params
from shared.spec import MLPSpec
from shared.training import MAX_STEPS

MAX_HIDDEN = 6  # solutions are matched over every permutation of the hidden units: 6! = 720 is still quick
CLEAR_GAP = 3.0
"""A grouping is clear when the nearest-neighbour distance between groups is at least this many times
the largest one inside a group (and inside a group no more than a solution's own drift)."""
THRESHOLDS = np.logspace(-3, 0.3, 67)  # (67,) thresholds for the sensitivity curve, 0.001 … 2


def units(params: Params) -> tuple[np.ndarray, np.ndarray]:
    """A 1-hidden-layer tanh network as (hidden, 4) rows [w_x1, w_x2, b, w_out] and the output bias,
    each unit's sign flipped so w_out ≥ 0 (tanh is odd: −w_out·tanh(−z) = w_out·tanh(z)), all scaled to
    unit length, since training longer only makes BCE weights grow."""
    W1, b1, W2, b2 = params[0]["W"], params[0]["b"], params[1]["W"], params[1]["b"]
    sign = np.where(W2[:, 0] >= 0, 1.0, -1.0)  # (hidden,)
    U = np.column_stack([W1.T * sign[:, None], b1 * sign, W2[:, 0] * sign])  # (hidden, 4)
    scale = max(np.abs(U).max(), np.abs(b2).max()) or 1.0  # so that squaring huge weights cannot overflow
    U, b2 = U / scale, b2 / scale
    norm = np.sqrt((U**2).sum() + (b2**2).sum())
    return U / norm, b2 / norm


def distance(a: Params, b: Params) -> float:
    """The largest weight difference between two unit-length solutions, minimized over every way of
    matching their hidden units (signs already fixed by `units`): 0 for symmetric copies."""
    (Ua, ba), (Ub, bb) = units(a), units(b)
    perms = np.array(list(itertools.permutations(range(len(Ua)))))  # (h!, h)
    per_perm = np.abs(Ua[None] - Ub[perms]).max(axis=(1, 2))  # (h!,)
    return float(max(per_perm.min(), np.abs(ba - bb).max()))


def nearest_links(D: np.ndarray) -> np.ndarray:
    """The n−1 edges of the minimum spanning tree of distance matrix D (Prim), sorted. Grouping
    solutions that are closer than t (and chaining) gives 1 + #(links ≥ t) groups."""
    n = len(D)
    if n < 2:
        return np.zeros(0)
    inside = np.zeros(n, bool)
    inside[0] = True
    best = D[0].copy()  # (n,) distance of each point to the tree
    links = []
    for _ in range(n - 1):
        j = int(np.argmin(np.where(inside, np.inf, best)))
        links.append(best[j])
        inside[j] = True
        best = np.minimum(best, D[j])
    return np.sort(np.array(links))


def count_groups(links: np.ndarray, threshold: float) -> int:
    return 1 + int((links >= threshold).sum())


def groups(D: np.ndarray, threshold: float) -> list[int]:
    """Group label per solution: connected components of 'closer than threshold', in order of first seed."""
    labels = [-1] * len(D)
    for start in range(len(D)):
        if labels[start] >= 0:
            continue
        label, todo = max(labels) + 1, [start]
        while todo:
            i = todo.pop()
            if labels[i] < 0:
                labels[i] = label
                todo += [j for j in np.flatnonzero(D[i] < threshold) if labels[j] < 0]
    return labels


def unit_patterns(params: Params, X: np.ndarray) -> tuple:
    """A threshold-free fingerprint: for each hidden unit (sign-fixed as in `units`), on which of the
    four inputs its pre-activation is positive; sorted, so it ignores the order of the units."""
    U, _ = units(params)
    z = X @ U[:, :2].T + U[:, 2]  # (4, hidden)
    return tuple(sorted(tuple(int(v) for v in (z[:, j] > 0)) for j in range(len(U))))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval for a success rate k/n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (0.0 if k == 0 else float(centre - half)), (1.0 if k == n else float(centre + half))


def run(backend: str, spec: MLPSpec, seeds: int, steps: int, lr: float, first_seed: int = 0) -> dict:
    data = xor()
    X, y = data.X, data.targets(spec)
    be = get_backend(backend)
    runs = []
    half = max(1, steps // 2)
    for seed in range(first_seed, first_seed + seeds):
        traj = be.train(
            spec, init_params(spec, seed), X, y, SGD(lr, momentum=0.9), steps, record_every=half, on_nonfinite="stop"
        )
        if traj.diverged_at is not None:  # shown as diverged; its weights are not finite
            runs.append({"seed": seed, "solved": False, "diverged": True, "final_loss": None, "params": traj.params})
            continue
        predicted = (be.forward(spec, traj.params, X)[:, 0] > 0).astype(int)
        runs.append(
            {
                "seed": seed,
                "solved": bool((predicted == data.y).all()),
                "diverged": False,
                "final_loss": float(traj.losses[-1]),
                "params": traj.params,
                # how far this solution still moved in the second half of training
                "drift": distance(traj.snapshot(half), traj.params) if steps > 1 else 0.0,
            }
        )
    solved = [r for r in runs if r["solved"]]
    D = np.zeros((len(solved), len(solved)))  # (solved, solved) distances up to symmetry
    for i, j in itertools.combinations(range(len(solved)), 2):
        D[i, j] = D[j, i] = distance(solved[i]["params"], solved[j]["params"])
    out = {"spec": spec, "runs": runs, "D": D, "links": nearest_links(D), "X": X, "y": data.y, "steps": steps}
    out["drift"] = max((r["drift"] for r in solved), default=0.0)
    out["patterns"] = len({unit_patterns(r["params"], X) for r in solved})
    out |= clear_gap(out["links"], out["drift"])
    labels = groups(D, out["group_threshold"])
    for r, label in zip(solved, labels):
        r["group"] = label
    out["diameters"] = diameters(D, labels)
    return out


def diameters(D: np.ndarray, labels: list[int]) -> list[float]:
    """Each group's diameter: the largest distance between two of its solutions (0 for one alone). Not
    the longest nearest-neighbour link inside it, which is shorter: a chain of close neighbours can
    stretch further end to end."""
    labels_ = np.asarray(labels)
    return [float(D[np.ix_(labels_ == g, labels_ == g)].max()) for g in range(max(labels, default=-1) + 1)]


def clear_gap(links: np.ndarray, drift: float) -> dict:
    """The widest jump between consecutive nearest-neighbour links at or above the drift scale: the
    threshold range where the number of groups does not change. Clear if the jump is ≥ CLEAR_GAP×."""
    edges = np.concatenate([[drift], links[links > drift]])  # (m,)
    if len(edges) < 2:  # every link is within drift: all solutions are one
        return {"clear": True, "gap": (drift, np.inf), "group_threshold": 2 * drift or 1e-3, "groups": 1}
    ratios = edges[1:] / np.maximum(edges[:-1], 1e-12)
    k = int(np.argmax(ratios))
    low, high = float(edges[k]), float(edges[k + 1])
    threshold = float(np.sqrt(low * high))
    return {
        "clear": bool(ratios[k] >= CLEAR_GAP),
        "gap": (low, high),
        "group_threshold": threshold,
        "groups": count_groups(links, threshold),
    }


def finding(results: list[dict]) -> str:
    parts = []
    for r in results:
        runs, arch = r["runs"], "→".join(map(str, r["spec"].sizes))
        solved = [x for x in runs if x["solved"]]
        failed = [x for x in runs if not x["solved"] and not x["diverged"]]
        diverged = [x["seed"] for x in runs if x["diverged"]]
        lo, hi = wilson(len(solved), len(runs))
        rate = (
            f"{seed_range(runs[0]['seed'], len(runs))}; {len(solved) / len(runs):.0%}, 95% interval {lo:.0%}–{hi:.0%}"
        )
        text = f"{arch}: {len(solved)} of {len(runs)} seeds solve XOR ({rate})"
        if failed and solved:
            text += (
                f"; the {len(failed)} stuck end at loss {np.median([x['final_loss'] for x in failed]):.2f} median "
                f"against {np.median([x['final_loss'] for x in solved]):.3f} for the solved"
            )
        if diverged:
            text += (
                f"; {len(diverged)} diverged (seed{'s' if len(diverged) > 1 else ''} {', '.join(map(str, diverged))})"
            )
        if len(solved) < 2:
            parts.append(text + ".")
            continue
        links, drift = r["links"], r["drift"]
        low, high = r["gap"]
        within = float(links[links <= low].max(initial=0.0))
        text += (
            f". Up to symmetry, a solution still moves up to {drift:.3f} in the last half of training, so closer "
            f"than that two solutions cannot be told apart"
        )
        if r["clear"] and r["groups"] == len(solved):
            text += (
                f"; every solved run is a solution of its own: the closest two are {high:.3f} apart, "
                f"{high / max(low, 1e-12):.1f}× that drift"
            )
        elif r["clear"]:
            size = " and ".join(f"{d:.3f}" for d in r["diameters"])
            text += (
                f"; the solutions fall into {r['groups']} group{'s' if r['groups'] > 1 else ''}: inside a group a "
                f"chain of steps of at most {within:.3f} joins every solution, and the groups' diameters (each one's "
                f"two furthest solutions) are {size}; the groups are {high:.3f} apart — {r['groups']} for every "
                f"threshold from {low:.3f} to {high:.3f}"
            )
        else:
            text += (
                f"; no gap separates them: the nearest-neighbour distances spread from {links.min():.3f} to "
                f"{links.max():.3f} (widest jump only {high / max(low, 1e-12):.1f}×, {low:.3f} → {high:.3f}), so the "
                f"count of 'distinct' solutions is set by the threshold: {count_groups(links, max(drift, 1e-3))} at "
                f"{max(drift, 1e-3):.3f}, {count_groups(links, 0.1)} at 0.1, {count_groups(links, 0.3)} at 0.3"
            )
        text += (
            f". Counted without a threshold, by which inputs each hidden unit is positive on, the solved runs show "
            f"{r['patterns']} distinct pattern{'s' if r['patterns'] != 1 else ''}."
        )
        parts.append(text)
    return (
        " ".join(parts)
        + " Same architecture, data and optimizer: the starting point alone decides where training ends."
    )


def plot(results: list[dict], backend: str, lr: float):
    plt = pyplot()
    fig = plt.figure(figsize=(16, 9), layout="constrained")
    grid = fig.add_gridspec(2, 4, height_ratios=[1, 1.5])
    be = get_backend(backend)
    colors = plt.get_cmap("tab10")

    pictures = _shown_runs(results)
    for i, (r, x, title) in enumerate(pictures[:4]):
        _boundary(fig.add_subplot(grid[0, i]), be, r, x, title)
    _count_panel(fig.add_subplot(grid[1, :2]), results, colors)
    _links_panel(fig.add_subplot(grid[1, 2:]), results, colors)
    rates = []
    for r in results:
        k, n = sum(x["solved"] for x in r["runs"]), len(r["runs"])
        lo, hi = wilson(k, n)
        rates.append(f"{'→'.join(map(str, r['spec'].sizes))}: {k}/{n} solved (95% interval {lo:.0%}–{hi:.0%})")
    fig.suptitle(
        f"XOR from different seeds ({backend}, SGD lr {lr:g}, momentum 0.9, {results[0]['steps']} steps) — "
        + "; ".join(rates),
        fontsize=11,
    )
    return fig


def _shown_runs(results: list[dict]) -> list[tuple[dict, dict, str]]:
    """For each architecture in turn, one solution from each of its largest groups and a stuck run:
    (result, run, title)."""
    shown = []  # (result, run, title)
    for r in results:
        arch = "→".join(map(str, r["spec"].sizes))
        by_group: dict[int, list] = {}
        for x in r["runs"]:
            if x["solved"]:
                by_group.setdefault(x["group"], []).append(x)
        if not r["clear"] and by_group:  # groups at an arbitrary threshold mean nothing: show one solution
            x = min((g[0] for g in by_group.values()), key=lambda x: x["seed"])
            shown.append((r, x, f"{arch} seed {x['seed']}: solved (no clear groups)"))
            by_group = {}
        for g in sorted(by_group.values(), key=len, reverse=True)[:3]:
            shown.append(
                (r, g[0], f"{arch} seed {g[0]['seed']}: group {g[0]['group'] + 1} of {len(by_group)} ({len(g)} seeds)")
            )
        stuck = [x for x in r["runs"] if not x["solved"] and not x["diverged"]]
        if stuck:
            shown.append((r, stuck[0], f"{arch} seed {stuck[0]['seed']}: stuck ({len(stuck)} seeds)"))
    return shown


def _boundary(ax, be, r: dict, x: dict, title: str) -> None:
    """One run's decision regions over the input plane, with the four XOR points."""
    gx, gy = np.meshgrid(np.linspace(-0.5, 1.5, 80), np.linspace(-0.5, 1.5, 80))
    points = np.column_stack([gx.ravel(), gy.ravel()])
    out = be.forward(r["spec"], x["params"], points)[:, 0].reshape(gx.shape)
    ax.contourf(gx, gy, out > 0, levels=[-0.5, 0.5, 1.5], colors=["#c6dbef", "#fcbba1"])
    ax.scatter(*r["X"].T, c=np.where(r["y"] == 1, "#b2182b", "#2166ac"), s=50, edgecolors="k")
    ax.set_title(title, fontsize=9, color="k" if x["solved"] else "#b2182b")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def _count_panel(ax, results: list[dict], colors) -> None:
    """How many distinct solutions at every threshold, with the drift and any clear gap."""
    for k, r in enumerate(results):
        if len(r["links"]) < 1:
            continue
        arch = "→".join(map(str, r["spec"].sizes))
        counts = [count_groups(r["links"], t) for t in THRESHOLDS]
        ax.step(THRESHOLDS, counts, where="post", color=colors(k), lw=2, label=f"{arch} ({len(r['D'])} solved runs)")
        ax.axvline(r["drift"], color=colors(k), ls=":", lw=1.5)
        if r["clear"]:
            ax.axvspan(*r["gap"], color=colors(k), alpha=0.12, lw=0)
    ax.plot([], [], "k:", label="how far a solution drifts in its last half of training")
    ax.fill_between([], [], color="0.8", label="shaded: a clear gap, the count is the same for any threshold in it")
    if any(len(r["links"]) for r in results):
        ax.set_xscale("log")
        ax.set_yscale("log")
        top = max(len(r["links"]) + 1 for r in results)
        ticks = [t for t in (1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 500, 1000) if t <= top]
        ax.set_yticks(ticks, [str(t) for t in ticks])  # counts read as counts, not as powers of ten
        ax.minorticks_off()
    else:
        ax.text(0.5, 0.5, "fewer than two solved runs: nothing to compare", transform=ax.transAxes, ha="center")
    ax.set_xlabel("threshold: largest weight difference (unit-length weights, best match of units)")
    ax.set_ylabel("distinct solutions")
    ax.set_title("How many solutions? It depends on the threshold — unless a gap separates them")
    ax.legend(loc="lower left")


def _links_panel(ax, results: list[dict], colors) -> None:
    """The minimum spanning tree's links, shortest first: where groups merge."""
    for k, r in enumerate(results):
        links = r["links"]
        if not len(links):
            continue
        arch = "→".join(map(str, r["spec"].sizes))
        ax.plot(np.arange(1, len(links) + 1), links, "o-", ms=3, color=colors(k), label=arch)
        ax.axhline(r["drift"], color=colors(k), ls=":", lw=1.5)
    if any(len(r["links"]) for r in results):
        ax.set_yscale("log")
        ax.legend(loc="upper left")
    ax.set_xlabel("nearest-neighbour link, shortest first")
    ax.set_ylabel("link length = the threshold at which two groups merge")
    ax.set_title("Where groups merge: the links of the minimum spanning tree (dotted: drift)")


def one_hidden_layer(text: str) -> tuple[int, ...]:
    """An argparse type: layer widths 2,H,1 with 1 ≤ H ≤ MAX_HIDDEN (XOR in, one logit out)."""
    sizes = layer_sizes(text)
    if len(sizes) != 3 or sizes[0] != 2 or sizes[2] != 1 or sizes[1] > MAX_HIDDEN:
        raise argparse.ArgumentTypeError(f"expected 2,H,1 with H from 1 to {MAX_HIDDEN} (like 2,4,1); got {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("seeds", __doc__.split("\n\n")[1], None, one_backend=True)
    parser.add_argument(
        "--sizes",
        type=one_hidden_layer,
        nargs="+",
        default=[(2, 2, 1), (2, 4, 1)],
        help=f"one or more 2,H,1 networks, H ≤ {MAX_HIDDEN} (default: 2,2,1 2,4,1)",
    )
    add_seed_options(parser, 40, "seeds for each network")
    parser.add_argument(
        "--steps", type=step_count, default=1500, help=f"steps per run, at most {MAX_STEPS:,} (default: 1500)"
    )
    parser.add_argument("--lr", type=positive_float, default=0.3, help="SGD learning rate, momentum 0.9 (default: 0.3)")
    args = parser.parse_args(argv)
    backend = one_installed(parser, args.backend)
    specs = [MLPSpec(sizes, "tanh", "bce") for sizes in dict.fromkeys(args.sizes)]
    note(f"training {args.seeds} seeds of {', '.join(s.describe() for s in specs)} on {backend}")
    results = [run(backend, spec, args.seeds, args.steps, args.lr, args.first_seed) for spec in specs]
    text = finding(results)
    numbers = {
        "architectures": [
            {
                "sizes": r["spec"].sizes,
                "drift": r["drift"],
                "nearest_links": r["links"],
                "clear_gap": r["clear"],
                "gap": r["gap"],
                "groups_in_gap": r["groups"],
                "group_diameters": r["diameters"],
                "counts_by_threshold": {f"{t:.4g}": count_groups(r["links"], t) for t in THRESHOLDS},
                "unit_patterns": r["patterns"],
                "runs": [{k: v for k, v in x.items() if k != "params"} for x in r["runs"]],
            }
            for r in results
        ]
    }
    publish(args.out, "seeds", plot(results, backend, args.lr), numbers, text)
    return 0
