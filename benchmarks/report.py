"""The benchmark report: every backend and size measured side by side, in one run.

1. each framework's float32 matmul peak (the better of 1024² and 2048²) and its dispatch cost (a 1-element add);
2. for each backend and size, trigrad's `train` as called by default (every loss kept) and with
   record_losses=None: steps/s, achieved GFLOP/s, % of that framework's peak, compile time;
3. the bare loop for the same math (benchmarks/bare.py), and train (no losses) against each backend's
   minimal loop timed paired, in alternation (benchmarks.measure.paired_rounds);
4. fused variants: JAX with lax.scan over all steps in one call; torch.compile (full run only);
5. where a step's time goes on XOR, phase by phase; on the GPT workload, the share of a NumPy step
   spent in its exact GELU (scipy.special.ndtr for Φ).

Measuring and rendering are here; the targets each number is held to are in benchmarks.targets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict

from backends import available_backends, get_backend
from benchmarks import bare
from benchmarks.markdown import rate
from benchmarks.measure import (
    Timing,
    dispatch_us,
    machine_facts,
    numpy_gelu_s,
    paired_rounds,
    paired_summary,
    peak_matmul_gflops,
    phase_times_us,
    scan_iteration_us,
    time_runner,
)
from benchmarks.targets import BASELINE, BUSY_LOAD, TRAIN, TRAIN_NO_LOSSES, Row, evaluate_targets
from benchmarks.workloads import LR, QUICK_SKIPS, WORKLOADS, AnyWorkload, GPTWorkload
from shared.optim import SGD

# Rounds of the paired timing, by (quick, GPT). Each round of an MLP size takes ~0.6 s (a quarter of
# a row's target time, four calls): eleven give a median and a spread worth reading on a VM whose
# speed drifts. A NumPy GPT round takes seconds: three.
PAIRED_ROUNDS = {(False, False): 11, (False, True): 3, (True, False): 2, (True, True): 2}


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def trigrad_runner(w: AnyWorkload, backend: str, record_losses: int | None = 1):
    """The user's call: be.train(...) on numpy data, validation and conversion included."""
    be = get_backend(backend, "float32")
    params, X, y = w.problem()
    return lambda steps: be.train(w.spec, params, X, y, optimizer=SGD(LR), steps=steps, record_losses=record_losses)


def _trigrad_variants(backend: str):
    return [
        (TRAIN, lambda w: trigrad_runner(w, backend)),
        (TRAIN_NO_LOSSES, lambda w: trigrad_runner(w, backend, record_losses=None)),
    ]


VARIANTS = {
    "numpy": [*_trigrad_variants("numpy"), ("bare loop", bare.make_numpy)],
    "torch": [*_trigrad_variants("torch"), ("bare loop", bare.make_torch)],
    "jax": [*_trigrad_variants("jax"), ("bare loop", bare.make_jax), ("bare lax.scan", bare.make_jax_scan)],
}
TORCH_COMPILE_SIZES = ("xor", "medium")  # torch.compile takes ~20 s per size on 2 cores: two sizes only


def measure_backend(name: str, sizes: list[str], quick: bool, progress=print) -> dict:
    """Everything measured for one framework: its peak, its dispatch cost, and every variant × size."""
    target_s, repeats = (0.05, 2) if quick else (0.4, 3)
    # the better of two sizes (full run): a single size can hit a shape the library handles less well
    peak = max(
        peak_matmul_gflops(name, n, target_s=0.2 if quick else 0.3) for n in ((1024,) if quick else (1024, 2048))
    )
    dispatch = dispatch_us(name, target_s=target_s / 2)
    progress(f"{name}: matmul peak {peak:.0f} GFLOP/s, dispatch {dispatch:.2f} µs")
    jobs = [(size, variant, make) for size in sizes for variant, make in VARIANTS[name]]
    if not quick and name == "torch":
        jobs += [(size, "torch.compile", bare.make_torch_compile) for size in sizes if size in TORCH_COMPILE_SIZES]
    rows, notes = [], []
    for i, (size, variant, make) in enumerate(jobs, 1):
        where = f"  [{i}/{len(jobs)}] {size:<6} {name:<5} {variant:<14}"
        try:
            timing, load = _timed_quietly(
                make(WORKLOADS[size]), target_s, repeats, WORKLOADS[size].min_steps, where, progress
            )
        except Exception as e:  # torch.compile needs a working C++ toolchain; say so and go on
            notes.append(f"{name} {variant} on {size} skipped: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
            progress(f"{where} skipped ({type(e).__name__})")
            continue
        row = _row(name, size, variant, timing, load, peak)
        rows.append(asdict(row))
        progress(
            f"{where} {rate(row.steps_per_s):>12} steps/s {row.gflops:8.2f} GFLOP/s ({row.peak_fraction:6.1%} of peak)"
        )
    return {
        "peak_gflops": peak,
        "dispatch_us": dispatch,
        "rows": rows,
        "paired": _paired_ratios(name, sizes, rows, quick, progress),
        "notes": notes,
        "facts": machine_facts(),
        **_extra_measurements(name, sizes, quick, progress),
    }


def _timed_quietly(runner, target_s: float, repeats: int, min_steps: int, where: str, progress):
    """time_runner, taken again once if the machine was busy (load above BUSY_LOAD) while it ran.
    Returns the Timing and the load (before, after)."""
    for attempt in range(2):
        before = _load()
        timing: Timing = time_runner(runner, target_s, repeats=repeats, min_steps=min_steps)
        load = (before, _load())
        if max(load) <= BUSY_LOAD:
            break
        if attempt == 0:
            progress(f"{where} busy (load {max(load):.1f}): again")
    return timing, load


def _row(name: str, size: str, variant: str, timing: Timing, load: tuple, peak: float) -> Row:
    w = WORKLOADS[size]
    gflops = w.flops_per_step * timing.steps_per_s / 1e9
    return Row(
        size,
        name,
        variant,
        timing.steps_per_s,
        gflops,
        gflops / peak,
        timing.compile_s,
        1e3 * timing.per_call_s,
        timing.steps,
        _threads(name, variant, w),
        load,
        max(load) > BUSY_LOAD,
    )


def _paired_ratios(name: str, sizes: list[str], rows: list[dict], quick: bool, progress) -> list[dict]:
    """The targets' ratios (train, no losses ÷ the baseline loop), measured in alternation (see
    paired_rounds), for each size that has both rows."""
    pairs = []
    for size in sizes:
        base_row = next((r for r in rows if (r["workload"], r["variant"]) == (size, BASELINE[name])), None)
        if base_row is None or not any((r["workload"], r["variant"]) == (size, TRAIN_NO_LOSSES) for r in rows):
            continue
        w = WORKLOADS[size]
        steps = max(w.min_steps, base_row["steps_timed"] // 4)  # run(n) ≈ a quarter of the rows' target time
        pairs.append(paired_ratio(name, w, steps, rounds=PAIRED_ROUNDS[quick, isinstance(w, GPTWorkload)]))
        p = pairs[-1]
        progress(
            f"  {size:<6} {name:<5} paired: train, no losses {1e6 * p['train_s']:.1f} µs, "
            f"{BASELINE[name]} {1e6 * p['base_s']:.1f} µs per step (both on {p['threads']} thread(s)): "
            f"{p['ratio']:.2f}x (rounds' middle half {p['ratio_quartiles'][0]:.2f}-{p['ratio_quartiles'][1]:.2f}x)"
        )
    return pairs


def _extra_measurements(name: str, sizes: list[str], quick: bool, progress) -> dict:
    """JAX's scan iteration; the XOR step's phases (NumPy, torch); the NumPy GPT's exact GELU."""
    extra = {"scan_iteration_us": scan_iteration_us()} if name == "jax" else {}
    if name != "jax" and "xor" in sizes:
        extra["phases_us"] = phase_times_us(name, WORKLOADS["xor"], steps=500 if quick else 3000)
        progress(f"  {name} xor phases: " + ", ".join(f"{k} {v:.1f} µs" for k, v in extra["phases_us"].items()))
    if name == "numpy" and "gpt" in sizes and WORKLOADS["gpt"].spec.activation == "gelu":
        extra["gelu_s_per_step"] = numpy_gelu_s(WORKLOADS["gpt"])
        progress(f"  numpy gpt: exact GELU (forward + backward) {extra['gelu_s_per_step']:.3f} s per step")
    return extra


def paired_ratio(name: str, w: AnyWorkload, steps: int, rounds: int) -> dict:
    """train(..., record_losses=None) against the backend's minimal loop, timed in alternation, the
    minimal loop on the threads trigrad's thread policy gives the workload: like for like, so the ratio
    is what trigrad's interface costs (the rows above give the bare loop on the framework's default)."""
    be = get_backend(name, "float32")
    threads = be.threads_for(w.flops_per_step)
    base = dict(VARIANTS[name])[BASELINE[name]](w)

    def base_on_trigrads_threads(steps: int) -> None:
        with be._limit_threads(threads):
            base(steps)

    times = paired_rounds(
        {"train": trigrad_runner(w, name, record_losses=None), "base": base_on_trigrads_threads},
        max(steps, w.min_steps),
        rounds,
    )
    return {
        "workload": w.name,
        "backend": name,
        "baseline": BASELINE[name],
        "threads": "default" if threads is None else str(threads),
        "rounds": rounds,
        **paired_summary(times["train"], times["base"]),
    }


def _threads(name: str, variant: str, w: AnyWorkload) -> str:
    """The CPU threads a row ran with: trigrad's thread policy for its own train, the framework's
    default for the bare loops (what a user who writes the loop by hand gets)."""
    if variant in (TRAIN, TRAIN_NO_LOSSES):
        n = get_backend(name, "float32").threads_for(w.flops_per_step)
        if n is not None:
            return str(n)
    return "default"


def run_report(quick: bool, backends: list[str] | None = None, sizes: list[str] | None = None, progress=print) -> dict:
    """Measure every backend, each in a fresh process of its own, one after the other.

    Separate processes keep the frameworks' thread pools from competing: torch's OpenMP threads spin
    for a while after each parallel region, and on 2 cores that alone can halve numpy's BLAS speed."""
    backends = [b for b in (backends or available_backends()) if b in available_backends()]
    sizes = sizes or ([s for s in WORKLOADS if s not in QUICK_SKIPS] if quick else list(WORKLOADS))
    peaks, dispatch, rows, paired, notes, facts = {}, {}, [], [], [], {}
    for name in backends:
        cmd = [sys.executable, "-m", "benchmarks.worker", name, ",".join(sizes)] + (["--quick"] if quick else [])
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)  # progress goes to stderr
        result = json.loads(done.stdout)
        peaks[name], dispatch[name] = result["peak_gflops"], result["dispatch_us"]
        rows += result["rows"]
        paired += result.get("paired", [])
        notes += result["notes"]
        facts |= result["facts"]
        if "scan_iteration_us" in result:
            facts["jax_scan_iteration_us"] = result["scan_iteration_us"]
        if "phases_us" in result:
            facts.setdefault("xor_phases_us", {})[name] = result["phases_us"]
        if "gelu_s_per_step" in result:
            facts["numpy_gpt_gelu_s_per_step"] = result["gelu_s_per_step"]
    facts["isolation"] = "each framework measured in its own process"
    facts["gpu"] = _gpu_note(backends)
    return {
        "quick": quick,
        "facts": facts,
        "peaks_gflops": peaks,
        "dispatch_us": dispatch,
        "rows": rows,
        "paired": paired,
        "notes": notes,
        "targets": evaluate_targets(
            rows, dispatch, facts.get("jax_scan_iteration_us"), paired, facts.get("numpy_gpt_gelu_s_per_step")
        ),
    }


def _gpu_note(backends: list[str]) -> str:
    """Whether GPU rows could be measured here. This report measures the CPU; on a machine with a GPU it
    says one is present, and tests/backends/test_devices.py checks the GPU paths there."""
    from backends import available_devices

    gpus = [f"{name} {device}" for name in backends for device in available_devices(name)[1:]]
    if not gpus:
        return "not measured — no GPU on this machine (torch.cuda and jax.devices('gpu') find none)"
    return f"present ({', '.join(gpus)}) but this report measures the CPU only"
