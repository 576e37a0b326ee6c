"""The targets the benchmark report holds each measurement to, and why one is missed.

`evaluate_targets` turns the report's rows (and its paired timings, see benchmarks.report
.paired_ratio) into one line per target: the measured value, met or missed, and why — computed
from the numbers, never guessed. The speed targets are measured on `train(..., record_losses=None)`,
which does the work the minimal loops do (they keep no loss either).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from benchmarks.workloads import WORKLOADS, GPTWorkload

BUSY_LOAD = (os.cpu_count() or 1) + 0.5
"""A measurement runs one process on up to every core (its own load ≈ the core count); a 1-minute load
average above that plus 0.5, before or after, means something else was running, and the measurement
is repeated once."""

TARGETS = {
    "interface_ratio": 1.25,  # train (no losses) within 1.25× of the minimal loop's step: ≥ 0.8× its speed
    "peak_fused_jax": 0.70,  # medium/large: fused JAX ≥ 70 % of JAX's matmul peak
    "peak_numpy_torch": 0.50,  # medium: numpy and torch ≥ 50 % of their peak
    "peak_numpy_torch_large": 0.60,  # large: numpy and torch ≥ 60 % of their peak
    "xor_fused_jax_steps": 1_000_000,  # XOR on the fused JAX path ≥ 1,000,000 steps/s
    "gpt_train_vs_bare": 0.8,  # gpt: trigrad's train ≥ 0.8× the bare loop's steps/s, every framework
    "gpt_peak_fused_jax": 0.50,  # gpt: fused JAX ≥ 50 % of JAX's matmul peak
    "numpy_gpt_vs_torch_bare": 0.5,  # gpt: NumPy's train (no losses) within 2× of torch's bare loop
    "numpy_gelu_share": 0.20,  # gpt: NumPy's exact GELU under 20 % of its step
}


@dataclass(frozen=True)
class Row:
    """One measured row of the report: a variant of one backend on one workload."""

    workload: str
    backend: str  # the framework
    variant: str  # TRAIN | TRAIN_NO_LOSSES | "bare loop" | "bare lax.scan" | "torch.compile"
    steps_per_s: float
    gflops: float
    peak_fraction: float
    compile_s: float
    per_call_ms: float  # fixed cost of one call beyond its steps (trigrad: validation, conversion)
    steps_timed: int
    threads: str = "default"  # CPU threads the measurement ran with: trigrad's policy, or the framework's default
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after the measurement
    busy: bool = False  # taken on a busy machine even after a repeat: read with care


TRAIN = "trigrad train"
"""train() as called by default: every step's loss and gradient norm kept."""
TRAIN_NO_LOSSES = "trigrad train, no losses"
"""train(..., record_losses=None): no loss kept, only the final params, like the bare loops. The speed
targets are measured on this one: it does the work the bare loop does."""
BASELINE = {"numpy": "bare loop", "torch": "bare loop", "jax": "bare lax.scan"}
"""The minimal loop each backend's train is held against: JAX's is the fused scan (its Python loop of
jitted steps pays a dispatch per step that trigrad's train does not)."""


def _find(rows: list[Row], size: str, backend: str, variant: str) -> Row | None:
    return next((r for r in rows if (r.workload, r.backend, r.variant) == (size, backend, variant)), None)


def _gpt_step_text(w: GPTWorkload) -> str:
    t, dh = w.spec.seq_len, w.spec.d_head
    return (
        f" On the GPT the matrices are smaller still (per head, attention multiplies {t}×{dh} by {dh}×{t}), "
        "and layer norms, the softmax over n·h·t² scores, GELU and the embedding scatter-add are "
        "memory-bound passes of their own."
    )


def _peak_shortfall(rows: list[Row], r: Row, goal: str, pair: dict | None = None) -> str:
    """Why a variant stays below peak, from what the minimal loop of the same framework reaches (and,
    for trigrad, from the paired ratio when the two rows disagree more than it does)."""
    base = _find(rows, r.workload, r.backend, BASELINE[r.backend])
    base = base and _fastest_seen(base, pair)
    w = WORKLOADS.get(r.workload)
    gpt = _gpt_step_text(w) if isinstance(w, GPTWorkload) else ""
    if base is None or r.variant not in (TRAIN, TRAIN_NO_LOSSES):
        return (
            "a training step is more than the peak test's one large square matmul: transposed operands in the "
            "backward, smaller matrices, and memory-bound elementwise passes (activation, loss, update) between "
            "them." + gpt
        )
    if base.peak_fraction >= TARGETS[goal]:
        extra_us = 1e6 / r.steps_per_s - 1e6 / base.steps_per_s
        if pair and r.variant == TRAIN_NO_LOSSES and pair["ratio"] < base.peak_fraction / r.peak_fraction:
            return (
                f"the {base.variant}'s row reached {base.peak_fraction:.0%}, but timed side by side trigrad's step is "
                f"{pair['ratio']:.2f}× the {base.variant}'s: most of the gap between the rows is "
                "the machine's speed drifting between the two measurements."
            )
        return f"the {base.variant} reaches {base.peak_fraction:.0%}: the gap is trigrad's {extra_us:.0f} µs per step."
    return (
        f"the {base.variant} reaches only {base.peak_fraction:.0%} too, so the cost is in the step itself, not in "
        "trigrad: transposed operands in the backward, smaller matrices than the peak test's, and "
        "memory-bound elementwise passes (activation, loss, update) between the matmuls." + gpt
    )


INTERFACE_COSTS = {
    "numpy": "takes its fast path (train.plain_mlp_grads: mlp.py's NumPy calls without its function per layer, "
    "matmul, cache and dicts) but still calls the activation's and the loss's teaching functions through "
    "mlp.py's tables, so that a learner's edit of them reaches train; each is a Python call the bare loop "
    "inlines, and the loss's (σ(z) − y)/n costs what the bare loop's folded constants save. The "
    "optimizer's update is a method call over a list",
    "torch": "calls its nn.Module (a module call per layer and activation) where the bare loop calls F.linear, "
    "and per chunk of steps checks the params and saves a copy to replay from",
    "jax": "runs the update through optax (inject_hyperparams) and calls one compiled chunk per 1000 steps, "
    "checking the params after each",
}


def _step_times(ours: Row, base: Row, pair: dict | None) -> tuple[float, float]:
    """Seconds per step of train (no losses) and of the minimal loop: from the paired measurement
    when there is one (both timed in alternation, on the same threads), else from the two rows."""
    if pair:
        return pair["train_s"], pair["base_s"]
    return 1 / ours.steps_per_s, 1 / base.steps_per_s


def _ratio_target(size: str, backend: str, ours: Row, base: Row, pair: dict | None = None) -> dict:
    """train (no losses) against the minimal loop: time per step, ≤ 1.25× is ≥ 0.8× the speed. From
    the paired measurement when there is one (both timed in alternation, on the same threads), else
    from the two rows."""
    ours_s, base_s = _step_times(ours, base, pair)
    same_threads = pair is not None or ours.threads == base.threads
    ratio = pair["ratio"] if pair else ours_s / base_s
    why = ""
    if ratio > TARGETS["interface_ratio"]:
        relu = backend == "numpy" and "relu" in getattr(WORKLOADS[size].spec, "activations", ())
        why = (
            f"trigrad adds {1e6 * (ours_s - base_s):.1f} µs to a {base.variant} step of {1e6 * base_s:.1f} µs: it "
            f"{INTERFACE_COSTS[backend]}."
            + (
                " Its relu′ selects with np.where (an overflowed gradient then gives 0, not inf·0 = NaN), ~3× "
                "the cost of the bare loop's multiply by a mask."
                if relu
                else ""
            )
            + (" At this size the step is so cheap that the extra work shows." if base_s < 1e-4 else "")
        )
    elif ratio < 0.9 and backend == "jax":
        why = f"faster than the {base.variant}: trigrad's JAX train runs up to 1000 steps per compiled call."
    elif ratio < 0.9:
        why = f"faster than the {base.variant}" + (
            "." if same_threads else f": trigrad ran on {ours.threads} thread(s), the bare loop on the default."
        )
    return {
        "target": f"train, no losses / {base.variant} ≤ {TARGETS['interface_ratio']} ({backend}, {size})",
        "value": f"{ratio:.2f}×",
        "met": ratio <= TARGETS["interface_ratio"],
        "why": why,
    }


def evaluate_targets(
    rows: list[Row],
    dispatch: dict[str, float],
    scan_us: float | None = None,
    paired: list[dict] | None = None,
    gelu_s: float | None = None,
) -> list[dict]:
    """Each target, the measured value, met or missed, and why (from the numbers, not guessed). The
    speed targets are measured on train(..., record_losses=None), which does the bare loop's work;
    the ratios to the minimal loop come from the paired measurement where there is one. gelu_s: the
    seconds per NumPy GPT step spent in its GELU (measure.numpy_gelu_s), if measured."""
    rows = [r if isinstance(r, Row) else Row(**r) for r in rows]
    pairs = {(p["workload"], p["backend"]): p for p in paired or []}
    out = []
    for size in WORKLOADS:
        gpt = isinstance(WORKLOADS[size], GPTWorkload)
        for backend in ("numpy", "torch", "jax"):
            ours = _find(rows, size, backend, TRAIN_NO_LOSSES)
            base = _find(rows, size, backend, BASELINE[backend])
            if ours and base:
                # the issue states the GPT's as speed: train's steps/s ≥ 0.8 × the minimal loop's
                pair = pairs.get((size, backend))
                target = _gpt_interface_target if gpt else _ratio_target
                out.append(target(size, backend, ours, base, pair))
    for size in [s for s, w in WORKLOADS.items() if isinstance(w, GPTWorkload)]:
        out += _numpy_gpt_targets(rows, size, pairs, gelu_s)
        for variant in (TRAIN_NO_LOSSES, "bare lax.scan"):
            out += _peak_targets(rows, size, "jax", variant, "gpt_peak_fused_jax", pairs.get((size, "jax")))
    for size in ("medium", "large"):
        goals = [
            ("jax", TRAIN_NO_LOSSES, "peak_fused_jax"),
            ("jax", "bare lax.scan", "peak_fused_jax"),
            ("numpy", TRAIN_NO_LOSSES, "peak_numpy_torch" + ("_large" if size == "large" else "")),
            ("torch", TRAIN_NO_LOSSES, "peak_numpy_torch" + ("_large" if size == "large" else "")),
        ]
        for backend, variant, goal in goals:
            out += _peak_targets(rows, size, backend, variant, goal, pairs.get((size, backend)))
    for variant in (TRAIN_NO_LOSSES, "bare lax.scan"):
        r = _find(rows, "xor", "jax", variant)
        if r:
            met = r.steps_per_s >= TARGETS["xor_fused_jax_steps"]
            floor = (
                f"; a one-op lax.scan iteration costs only {scan_us:.3f} µs here, so the loop is not the cost"
                if scan_us
                else ""
            )
            why = (
                ""
                if met
                else (
                    f"{1e6 / r.steps_per_s:.2f} µs per step{floor}. XLA runs the step as a dozen or more tiny "
                    "kernels (the matmuls forward and backward, tanh, the loss gradient, the updates), each with a "
                    "fixed cost on the CPU. 1 µs per step would need far fewer, fused kernels."
                )
            )
            out.append(
                {
                    "target": f"XOR ≥ 1,000,000 steps/s (jax {variant})",
                    "value": f"{r.steps_per_s:,.0f}",
                    "met": met,
                    "why": why,
                }
            )
    return out


def _fastest_seen(r: Row, pair: dict | None) -> Row:
    """The row at the fastest speed measured for it: its own, or the paired measurement's when that
    timed the same loop faster (both keep the fastest of their repeats; the paired one, of more
    rounds, is the less likely to have caught only a slow phase of the machine)."""
    if pair is None:
        return r
    timed = {TRAIN_NO_LOSSES: pair["train_s"], pair["baseline"]: pair["base_s"]}.get(r.variant)
    if timed is None or 1 / timed <= r.steps_per_s or (r.variant != TRAIN_NO_LOSSES and pair["threads"] != r.threads):
        return r
    scale = 1 / timed / r.steps_per_s
    return replace(r, steps_per_s=1 / timed, gflops=r.gflops * scale, peak_fraction=r.peak_fraction * scale)


def _peak_targets(
    rows: list[Row], size: str, backend: str, variant: str, goal: str, pair: dict | None = None
) -> list[dict]:
    r = _find(rows, size, backend, variant)
    if r is None:
        return []
    r = _fastest_seen(r, pair)
    met = r.peak_fraction >= TARGETS[goal]
    return [
        {
            "target": f"≥ {TARGETS[goal]:.0%} of peak ({backend} {variant}, {size})",
            "value": f"{r.peak_fraction:.0%}",
            "met": met,
            "why": "" if met else _peak_shortfall(rows, r, goal, pair),
        }
    ]


def _gpt_interface_target(size: str, backend: str, ours: Row, base: Row, pair: dict | None = None) -> dict:
    """train (no losses) against the minimal loop on a GPT, as a speed ratio (≥ 0.8 is met); from the
    paired measurement when there is one."""
    ours_s, base_s = _step_times(ours, base, pair)
    speed = 1 / pair["ratio"] if pair else base_s / ours_s
    met = speed >= TARGETS["gpt_train_vs_bare"]
    why = ""
    if not met:
        why = (
            f"trigrad's step takes {1e3 * (ours_s - base_s):.1f} ms more than the {base.variant}'s "
            f"{1e3 * base_s:.1f} ms. The model code is the same; trigrad also "
            + {
                "numpy": "flattens the gradient tree every step and updates through shared.optim's SGD",
                "torch": "steps torch.optim.SGD and checks the params after every chunk of steps",
                "jax": "updates through optax's SGD and checks the params after every chunk of steps",
            }[backend]
            + "."
        )
    elif speed > 1 / 0.9:
        why = f"faster than the {base.variant}."
    return {
        "target": f"train, no losses ≥ {TARGETS['gpt_train_vs_bare']}× {base.variant} steps/s ({backend}, {size})",
        "value": f"{speed:.2f}×",
        "met": met,
        "why": why,
    }


def _numpy_gpt_targets(rows: list[Row], size: str, pairs: dict, gelu_s: float | None) -> list[dict]:
    """The teaching backend against a library: NumPy's GPT train (no losses) within 2× of torch's bare
    loop (rows of two processes, each at the fastest speed measured for it), and its exact GELU under
    20 % of the step (of the bare loop's step, which runs the same gpt.py)."""
    out = []
    ours, torch_bare = _find(rows, size, "numpy", TRAIN_NO_LOSSES), _find(rows, size, "torch", "bare loop")
    if ours and torch_bare:
        ours, torch_bare = (
            _fastest_seen(ours, pairs.get((size, "numpy"))),
            _fastest_seen(torch_bare, pairs.get((size, "torch"))),
        )
        speed = ours.steps_per_s / torch_bare.steps_per_s
        met = speed >= TARGETS["numpy_gpt_vs_torch_bare"]
        why = (
            ""
            if met
            else (
                f"NumPy's step takes {1e3 / ours.steps_per_s:.1f} ms where torch's bare loop takes "
                f"{1e3 / torch_bare.steps_per_s:.1f} ms: NumPy runs each elementwise pass (GELU, softmax, layer "
                "norm, their backwards) as a separate sweep over memory, and its exact Φ (scipy's ndtr) one element "
                "at a time; torch's are vectorized and fused kernels."
            )
        )
        out.append(
            {
                "target": f"NumPy train, no losses ≥ {TARGETS['numpy_gpt_vs_torch_bare']}× torch's bare loop "
                f"steps/s ({size})",
                "value": f"{speed:.2f}×",
                "met": met,
                "why": why,
            }
        )
    bare = _find(rows, size, "numpy", "bare loop")
    if gelu_s is not None and bare:
        w = WORKLOADS[size]
        share = gelu_s * _fastest_seen(bare, pairs.get((size, "numpy"))).steps_per_s
        met = share < TARGETS["numpy_gelu_share"]
        per_element = gelu_s / (w.spec.n_layers * w.batch * w.spec.seq_len * w.spec.d_ff)
        why = (
            ""
            if met
            else (
                f"{1e9 * per_element:.1f} ns per pre-activation, forward and backward: scipy's ndtr evaluates Φ "
                "one element at a time in float64 (the backward already reuses it, Φ = A/Z), where np.exp runs in "
                "SIMD at well under 1 ns. Under 20 % would need an exact erf vectorized from NumPy's own SIMD "
                "primitives, a special-function library of its own, not teaching code."
            )
        )
        out.append(
            {
                "target": f"NumPy's exact GELU < {TARGETS['numpy_gelu_share']:.0%} of its step ({size})",
                "value": f"{share:.0%}",
                "met": met,
                "why": why,
            }
        )
    return out
