"""data-parallel: N workers, each with 1/N of every batch, follow one worker with the whole batch.

Noisy moons, an MLP 2→16→16→1 (tanh, BCE), SGD with momentum, a global batch of 64, over several
seeds: trained in one process and with 2 and 4 workers, on every installed backend (NumPy's ring
all-reduce by hand, torch's DistributedDataParallel, JAX's pmean under shard_map), in float64 and in
float32. Measured: each step's distance between the workers' params and the one process's; then,
for growing widths, the bytes one ring all-reduce sends per worker against the measured time per step.
"""

from __future__ import annotations

import os

import numpy as np

from backends import get_backend
from comparisons.core.options import add_seed_options, int_range, make_parser, seed_range
from comparisons.core.output import note, publish, pyplot
from comparisons.core.problem import installed
from shared.data import make_dataset
from shared.optim import SGD
from shared.parallel import ring_bytes
from shared.params import init_params
from shared.spec import MLPSpec
from shared.tolerances import relative_gap

SPEC = MLPSpec((2, 16, 16, 1), "tanh", "bce")
N_SAMPLES, BATCH, LR, MOMENTUM = 256, 64, 0.1, 0.9
WORKERS = (2, 4)
DTYPES = ("float64", "float32")
EPS = {"float64": float(np.finfo(np.float64).eps), "float32": float(np.finfo(np.float32).eps)}
COLORS = {"numpy": "#1f77b4", "torch": "#d62728", "jax": "#2ca02c"}
WIDTHS = (16, 128, 512, 1024)
TIMED_STEPS, CHUNK_STEPS = 80, 10  # timed in chunks of 10 steps: the first left out, the median of the rest
MAX_STEPS = 2000
"""Every step's params are kept (to measure every step's gap): a bound, so a typo is not gigabytes."""


def per_step_gaps(many, one) -> list[float]:
    """The params' distance after every step (snapshots every step, and the final params)."""
    return [relative_gap(a, b) for a, b in zip(many.snapshots, one.snapshots)] + [relative_gap(many.params, one.params)]


def one_seed(backends: list[str], steps: int, seed: int) -> dict:
    """Every backend × dtype: one process, then 2 and 4 workers, from the same data, init and batches."""
    data = make_dataset("moons", n=N_SAMPLES, noise=0.2, seed=seed)
    X, y, params = data.X, data.targets(SPEC), init_params(SPEC, seed=seed)
    out = {"gaps": {}, "final_gap": {}, "final_loss": {}, "exact": {}}
    for backend in backends:
        for dtype in DTYPES:
            be = get_backend(backend, dtype)
            kw = dict(batch_size=BATCH, seed=seed, record_every=1)
            one = be.train(SPEC, params, X, y, SGD(LR, MOMENTUM), steps, **kw)
            out["final_loss"][f"{backend}/{dtype}/1"] = float(np.mean(one.losses[-10:]))
            for n in WORKERS:
                many = be.train(SPEC, params, X, y, SGD(LR, MOMENTUM), steps, workers=n, **kw)
                key = f"{backend}/{dtype}/{n}"
                out["gaps"][key] = per_step_gaps(many, one)
                out["final_gap"][key] = out["gaps"][key][-1]
                out["final_loss"][key] = float(np.mean(many.losses[-10:]))
                out["exact"][key] = bool(np.array_equal(many.losses, one.losses))
    return out


def per_step_ms(traj) -> float:
    """The steady time per step: the median over the run's chunks after the first (which holds JAX's
    compile, DDP's first broadcast, the first touch of every buffer), from meta["chunk_wall_times_s"]."""
    paces = [seconds / steps for steps, seconds in traj.meta["chunk_wall_times_s"][1:]]
    return 1e3 * float(np.median(paces))


def timing(backends: list[str], widths: tuple[int, ...], steps: int) -> dict:
    """Time per step in one process and with 2 workers, for 2→h→h→1 at each width h, float32, no loss
    kept (the step and its all-reduce, nothing else); and the bytes each ring all-reduce sends."""
    data = make_dataset("moons", n=N_SAMPLES, noise=0.2, seed=0)
    rows = []
    for h in widths:
        spec = MLPSpec((2, h, h, 1), "tanh", "bce")
        X, y, params = data.X, data.targets(spec), init_params(spec, seed=0)
        for backend in backends:
            be = get_backend(backend, "float32")
            row = {"backend": backend, "width": h, "n_params": spec.n_params}
            for n in (1, 2):
                kw = dict(batch_size=BATCH, workers=n, record_losses=None, record_every=CHUNK_STEPS)
                traj = be.train(spec, params, X, y, SGD(LR, MOMENTUM), steps, **kw)
                row[f"ms_per_step_{n}"] = per_step_ms(traj)
            row["ring_bytes"] = ring_bytes(spec.n_params + 1, 2, 4)
            rows.append(row)
            note(f"  width {h}, {backend}: {row['ms_per_step_1']:.2f} ms/step alone, {row['ms_per_step_2']:.2f} with 2")
    return {"rows": rows, "timed_steps": steps, "cpu_count": os.cpu_count()}


def run(backends: list[str], steps: int, seeds: int, first_seed: int, widths=WIDTHS) -> dict:
    per_seed = []
    for seed in range(first_seed, first_seed + seeds):
        note(
            f"seed {seed}: {len(backends)} backends × {len(DTYPES)} dtypes × 1, {', '.join(map(str, WORKERS))} workers"
        )
        per_seed.append(one_seed(backends, steps, seed))
    note(f"timing: widths {', '.join(map(str, widths))}, 1 and 2 workers, {TIMED_STEPS} steps each")
    times = (
        timing(backends, widths, TIMED_STEPS) if widths else {"rows": [], "timed_steps": 0, "cpu_count": os.cpu_count()}
    )
    return {"backends": backends, "steps": steps, "seeds": seeds, "first_seed": first_seed, "runs": per_seed, **times}


def summary(r: dict) -> dict:
    """Per dtype, over seeds, backends and worker counts: the largest and median final gap, in units
    of the dtype's ε too, and how many runs kept bit-identical losses."""
    out = {}
    for dtype in DTYPES:
        keys = [f"{b}/{dtype}/{n}" for b in r["backends"] for n in WORKERS]
        gaps = [s["final_gap"][k] for s in r["runs"] for k in keys]
        worst_step = [max(s["gaps"][k]) for s in r["runs"] for k in keys]
        out[dtype] = {
            "final_max": float(max(gaps)),
            "final_median": float(np.median(gaps)),
            "any_step_max": float(max(worst_step)),
            "any_step_max_eps": float(max(worst_step) / EPS[dtype]),
            "exact_runs": int(sum(s["exact"][k] for s in r["runs"] for k in keys)),
            "runs": len(gaps),
            "loss_gap_max": float(
                max(
                    abs(s["final_loss"][k] - s["final_loss"][k.rsplit("/", 1)[0] + "/1"])
                    for s in r["runs"]
                    for k in keys
                )
            ),
        }
    return out


def finding(r: dict) -> str:
    s = summary(r)
    f64, f32 = s["float64"], s["float32"]
    text = (
        f"Over {seed_range(r['first_seed'], r['seeds'])} on {', '.join(r['backends'])}, {r['steps']} SGD steps with "
        f"{' and '.join(map(str, WORKERS))} workers followed one process's trajectory: at no step were the params "
        f"more than {f64['any_step_max']:.1e} apart in float64 ({f64['any_step_max_eps']:.0f} ε) or "
        f"{f32['any_step_max']:.1e} in float32 ({f32['any_step_max_eps']:.0f} ε), relative to their size; "
        f"{f64['exact_runs']} of {f64['runs']} float64 runs and {f32['exact_runs']} of {f32['runs']} float32 runs "
        "kept bit-identical losses. The gap is the order of the floating-point sum (each worker sums its shard, "
        "the all-reduce sums the workers), so it scales with the format's ε"
    )
    ratio = f32["any_step_max"] / f64["any_step_max"] if f64["any_step_max"] > 0 else float("inf")
    text += f": float32's largest gap is {ratio:.1e}× float64's (ε32/ε64 = {EPS['float32'] / EPS['float64']:.1e})."
    if r["rows"]:
        h = max(row["width"] for row in r["rows"])
        widest = [row for row in r["rows"] if row["width"] == h]
        speed = ", ".join(f"{row['backend']} {row['ms_per_step_1'] / row['ms_per_step_2']:.2f}×" for row in widest)
        faster = [row["backend"] for row in r["rows"] if row["ms_per_step_2"] < row["ms_per_step_1"]]
        text += (
            f" Time: at width {h} one ring all-reduce sends {widest[0]['ring_bytes'] / 1e6:.2f} MB per worker per "
            f"step, and 2 workers run at {speed} the speed of one process (on {r['cpu_count']} cores, the workers "
            "sharing them; the start-up and first chunk left out). "
            + (
                f"Two workers were faster only for {', '.join(sorted(set(faster)))}: there halving each worker's batch "
                "saved more than the all-reduce cost."
                if faster
                else "Two workers were slower at every width measured: on one machine the workers share its cores, "
                "so halving each one's batch saves little and the all-reduce is pure cost. (It pays where each "
                "worker has its own device and a step's compute dwarfs the bytes it sends: not measured here.)"
            )
        )
    return text


def plot(r: dict, title: str):
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.2), layout="constrained")
    for ax, dtype in zip(axes[:2], DTYPES):
        for backend in r["backends"]:
            for n, style in zip(WORKERS, ("-", "--")):
                gaps = np.array([s["gaps"][f"{backend}/{dtype}/{n}"] for s in r["runs"]])  # (seeds, steps + 1)
                gaps = np.maximum(gaps, EPS[dtype] / 100)  # exact zeros drawn on the floor
                ax.plot(np.max(gaps, 0), style, color=COLORS.get(backend), lw=1.3, label=f"{backend}, {n} workers")
        ax.axhline(EPS[dtype], color="#777777", lw=0.8, ls=":")
        ax.text(0, EPS[dtype] * 1.3, f"{dtype} ε", color="#555555", fontsize=8)
        ax.set_yscale("log")
        ax.set(xlabel="training step", ylabel="max|θ_N − θ_1| / max|θ_1| (max over seeds)")
        ax.set_title(f"{dtype}: N workers vs one process, every step (floor: exactly equal)")
        ax.legend(fontsize=7, loc="lower right")
    ax = axes[2]
    for backend in r["backends"]:
        rows = [row for row in r["rows"] if row["backend"] == backend]
        if not rows:
            continue
        x = [row["ring_bytes"] for row in rows]
        ax.plot(
            x, [row["ms_per_step_2"] for row in rows], "o-", color=COLORS.get(backend), label=f"{backend}, 2 workers"
        )
        ax.plot(
            x, [row["ms_per_step_1"] for row in rows], "s:", color=COLORS.get(backend), label=f"{backend}, one process"
        )
        for row in rows:
            ax.annotate(f"h={row['width']}", (row["ring_bytes"], row["ms_per_step_2"]), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="bytes one ring all-reduce sends per worker per step", ylabel="ms per step (float32)")
    ax.set_title(f"Time per step against the all-reduce's bytes ({r['cpu_count']} cores)")
    if r["rows"]:
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    return fig


_width = int_range(1, 2048)


def _widths(text: str) -> tuple[int, ...]:
    """--widths: hidden widths to time, "16,128,512"; "0" skips the timing."""
    if text.strip() == "0":
        return ()
    return tuple(_width(part) for part in text.split(","))


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("data-parallel", __doc__.split("\n\n")[1], None)
    parser.add_argument(
        "--steps", type=int_range(1, MAX_STEPS), default=100, help=f"SGD steps per run, 1 to {MAX_STEPS} (default: 100)"
    )
    add_seed_options(parser, 3, "seeds (each sets the data, the init and the batches)")
    parser.add_argument(
        "--widths",
        type=_widths,
        default=WIDTHS,
        help=f"hidden widths timed, comma-separated, 1 to 2048; 0: no timing (default: {','.join(map(str, WIDTHS))})",
    )
    args = parser.parse_args(argv)
    backends = installed(args.backends)
    r = run(backends, args.steps, args.seeds, args.first_seed, args.widths)
    text = finding(r)
    title = (
        f"Data parallelism on moons, 2→16→16→1 tanh, SGD {LR} momentum {MOMENTUM}, global batch {BATCH}: "
        f"{seed_range(args.first_seed, args.seeds)}"
    )
    numbers = {"summary": summary(r), "backends": backends, "steps": args.steps, "workers": list(WORKERS)}
    numbers |= {"runs": r["runs"], "timing": r["rows"], "cpu_count": r["cpu_count"]}
    publish(args.out, "data-parallel", plot(r, title), numbers, text)
    return 0
