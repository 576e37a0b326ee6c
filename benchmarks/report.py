"""The benchmark report: every backend and size measured side by side, in one run.

1. each framework's float32 matmul peak (the better of 1024² and 2048²) and its dispatch cost (a 1-element add);
2. for each backend and size, trigrad's `train` as called by default (every loss kept) and with
   record_losses=None: steps/s, achieved GFLOP/s, % of that framework's peak, compile time;
3. the bare loop for the same math (benchmarks/bare.py), and train (no losses) against each backend's
   minimal loop timed paired, in alternation (benchmarks.measure.paired_per_step);
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
from benchmarks.measure import (
    Timing,
    dispatch_us,
    machine_facts,
    numpy_gelu_s,
    paired_per_step,
    peak_matmul_gflops,
    phase_times_us,
    scan_iteration_us,
    time_runner,
)
from benchmarks.targets import BASELINE, TRAIN, TRAIN_NO_LOSSES, Row, evaluate_targets
from benchmarks.workloads import LR, QUICK_SKIPS, WORKLOADS, AnyWorkload, GPTWorkload
from shared.optim import SGD

BUSY_LOAD = (os.cpu_count() or 1) + 0.5
"""A measurement runs one process on up to every core (its own load ≈ the core count); a 1-minute load
average above that plus 0.5, before or after, means something else was running, and the measurement
is repeated once."""


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
        w = WORKLOADS[size]
        try:
            for attempt in range(2):  # a measurement taken while the machine was busy is taken again, once
                before = _load()
                timing: Timing = time_runner(make(w), target_s, repeats=repeats, min_steps=w.min_steps)
                load = (before, _load())
                if max(load) <= BUSY_LOAD:
                    break
                if attempt == 0:
                    progress(
                        f"  [{i}/{len(jobs)}] {size:<6} {name:<5} {variant:<14} busy (load {max(load):.1f}): again"
                    )
        except Exception as e:  # torch.compile needs a working C++ toolchain; say so and go on
            notes.append(f"{name} {variant} on {size} skipped: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
            progress(f"  [{i}/{len(jobs)}] {size:<6} {name:<5} {variant:<14} skipped ({type(e).__name__})")
            continue
        gflops = w.flops_per_step * timing.steps_per_s / 1e9
        row = Row(
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
        rows.append(asdict(row))
        progress(
            f"  [{i}/{len(jobs)}] {size:<6} {name:<5} {variant:<14} {_rate(row.steps_per_s):>12} steps/s "
            f"{row.gflops:8.2f} GFLOP/s ({row.peak_fraction:6.1%} of peak)"
        )
    pairs = []
    for size in sizes:  # the targets' ratios, measured in alternation (see paired_per_step)
        base_row = next((r for r in rows if (r["workload"], r["variant"]) == (size, BASELINE[name])), None)
        if base_row is None or not any((r["workload"], r["variant"]) == (size, TRAIN_NO_LOSSES) for r in rows):
            continue
        w = WORKLOADS[size]
        steps = max(w.min_steps, base_row["steps_timed"] // 4)  # run(n) ≈ a quarter of the rows' target time
        pairs.append(paired_ratio(name, w, steps, rounds=2 if quick or isinstance(w, GPTWorkload) else 5))
        p = pairs[-1]
        progress(
            f"  {size:<6} {name:<5} paired: train, no losses {1e6 * p['train_s']:.1f} µs, "
            f"{BASELINE[name]} {1e6 * p['base_s']:.1f} µs per step (both on {p['threads']} thread(s)): "
            f"{p['train_s'] / p['base_s']:.2f}x"
        )
    extra = {"scan_iteration_us": scan_iteration_us()} if name == "jax" else {}
    if name != "jax" and "xor" in sizes:
        extra["phases_us"] = phase_times_us(name, WORKLOADS["xor"], steps=500 if quick else 3000)
        progress(f"  {name} xor phases: " + ", ".join(f"{k} {v:.1f} µs" for k, v in extra["phases_us"].items()))
    if name == "numpy" and "gpt" in sizes and WORKLOADS["gpt"].spec.activation == "gelu":
        extra["gelu_s_per_step"] = numpy_gelu_s(WORKLOADS["gpt"])
        progress(f"  numpy gpt: exact GELU (forward + backward) {extra['gelu_s_per_step']:.3f} s per step")
    return {
        "peak_gflops": peak,
        "dispatch_us": dispatch,
        "rows": rows,
        "paired": pairs,
        "notes": notes,
        "facts": machine_facts(),
        **extra,
    }


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

    times = paired_per_step(
        {"train": trigrad_runner(w, name, record_losses=None), "base": base_on_trigrads_threads},
        max(steps, w.min_steps),
        rounds,
    )
    return {
        "workload": w.name,
        "backend": name,
        "baseline": BASELINE[name],
        "train_s": times["train"],
        "base_s": times["base"],
        "threads": "default" if threads is None else str(threads),
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
        "targets": evaluate_targets(rows, dispatch, facts.get("jax_scan_iteration_us"), paired),
    }


def _phase_lines(report: dict) -> list[str]:
    """Where a step's time goes on XOR, phase by phase, beside the whole step of trigrad's train and of
    the bare loop (which computes no loss value, no gradient norm and no checks)."""
    phases = report["facts"].get("xor_phases_us")
    if not phases:
        return []
    names = list(next(iter(phases.values())))
    lines = [
        "",
        "Where a training step's time goes on xor (µs per step, each phase timed on its own; bookkeeping = the "
        "gradient norm, the loss as a number and the finiteness checks, which the bare loop does not do):",
        "",
        "| backend | " + " | ".join(names) + " | sum | trigrad train step | train, no losses step | bare loop step |",
        "| --- | " + " | ".join("---:" for _ in names) + " | ---: | ---: | ---: | ---: |",
    ]
    for backend, times in phases.items():
        step = {
            r["variant"]: 1e6 / r["steps_per_s"]
            for r in report["rows"]
            if r["workload"] == "xor" and r["backend"] == backend
        }
        cells = " | ".join(f"{times[k]:.1f}" for k in names)
        train, quiet, bare_step = step.get(TRAIN), step.get(TRAIN_NO_LOSSES), step.get("bare loop")
        fmt = lambda v: f"{v:.1f}" if v else "-"  # noqa: E731
        lines.append(
            f"| {backend} | {cells} | {sum(times.values()):.1f} | {fmt(train)} | {fmt(quiet)} | {fmt(bare_step)} |"
        )
    return lines


def _above_peak(report: dict) -> dict[str, tuple[float, str]]:
    """Per backend, the fastest GFLOP/s any of its rows or paired timings reached above its measured
    peak, and which loop it was."""
    seen = [(r["backend"], r["gflops"], f"{r['variant']} on {r['workload']}") for r in report["rows"]]
    for p in report.get("paired", []):
        flops = WORKLOADS[p["workload"]].flops_per_step
        seen.append((p["backend"], flops / p["train_s"] / 1e9, f"{TRAIN_NO_LOSSES} on {p['workload']} (paired)"))
        seen.append((p["backend"], flops / p["base_s"] / 1e9, f"{p['baseline']} on {p['workload']} (paired)"))
    out: dict[str, tuple[float, str]] = {}
    for backend, gflops, what in seen:
        peak = report["peaks_gflops"].get(backend)
        if peak and gflops > peak and gflops > out.get(backend, (0.0, ""))[0]:
            out[backend] = (gflops, what)
    return out


def _us(seconds: float) -> str:
    """A per-step time in µs with 3 significant digits: 1.40, 23.8, 1,430 (a GPT step: 512,000)."""
    us = 1e6 * seconds
    return f"{us:,.0f}" if us >= 100 else f"{us:.1f}" if us >= 10 else f"{us:.2f}"


def _gpu_note(backends: list[str]) -> str:
    """Whether GPU rows could be measured here. This report measures the CPU; on a machine with a GPU it
    says one is present, and tests/backends/test_devices.py checks the GPU paths there."""
    from backends import available_devices

    gpus = [f"{name} {device}" for name in backends for device in available_devices(name)[1:]]
    if not gpus:
        return "not measured — no GPU on this machine (torch.cuda and jax.devices('gpu') find none)"
    return f"present ({', '.join(gpus)}) but this report measures the CPU only"


def _gelu_finding(report: dict) -> str | None:
    """What NumPy's exact GELU costs on the GPT workload: seconds and share of the measured step."""
    gelu_s = report["facts"].get("numpy_gpt_gelu_s_per_step")
    w = WORKLOADS["gpt"]
    bare_row = next(
        (r for r in report["rows"] if (r["workload"], r["backend"], r["variant"]) == ("gpt", "numpy", "bare loop")),
        None,
    )
    if gelu_s is None or bare_row is None:
        return None
    step_s = 1 / bare_row["steps_per_s"]
    share = gelu_s / step_s
    elements = w.batch * w.spec.seq_len * w.spec.d_ff
    text = (
        f"finding (numpy, gpt): NumPy's exact GELU — scipy.special.ndtr for Φ, vectorized, over "
        f"n·t·d_ff = {elements:,} pre-activations per layer, in the forward and again in the backward — takes "
        f"{gelu_s:.3f} s of the bare loop's {step_s:.3f} s step ({share:.0%})"
    )
    rest = step_s - gelu_s
    peak = report["peaks_gflops"].get("numpy")
    gflops = w.flops_per_step / rest / 1e9 if rest > 0 else float("inf")
    if peak and gflops <= peak:
        text += f"; the rest of the step runs at {gflops:.1f} GFLOP/s ({gflops / peak:.0%} of NumPy's peak)"
    elif peak:  # GELU timed apart from the step: the two disagree by more than the rest of the step
        text += f"; the remaining {max(rest, 0):.3f} s is within the timing noise"
    return text + ". torch and JAX compute erf in compiled vectorized code, fused with the rest of the step."


def _rate(steps_per_s: float) -> str:
    """Steps per second to the unit above 100 (31,250), to three digits below (0.672, 12.5)."""
    return f"{steps_per_s:,.0f}" if steps_per_s >= 100 else f"{steps_per_s:.3g}"


def _engines(facts: dict) -> dict[str, str]:
    """Per backend, what computed its rows: the framework's version and its BLAS or compiler kernel."""
    blas = next((pool for pool in facts.get("threadpools", []) if pool["internal_api"] in ("openblas", "mkl")), None)
    numpy = f"numpy {facts.get('numpy', '?')}"
    if blas:
        numpy += f", {blas['internal_api']} {blas.get('architecture') or ''}".rstrip()
    out = {"numpy": numpy}
    if "torch" in facts:
        t = facts["torch"]
        out["torch"] = f"torch {t['version']}, {t['blas']}, {t['cpu_capability']}"
    if "jax" in facts:
        out["jax"] = f"jax {facts['jax']['version']}, XLA {', '.join(facts['jax']['devices'])}"
    return out


def markdown(report: dict) -> str:
    """The report as Markdown: the machine, the peaks, every row, what the columns mean, the paired ratios,
    the targets and the findings, in that order."""
    parts = (_header_lines, _peak_lines, _row_lines, _note_lines, _paired_lines, _target_lines)
    return "\n".join(line for part in parts for line in part(report)) + "\n"


def _header_lines(report: dict) -> list[str]:
    """The machine and what ran: CPU, BLAS and thread pools, framework versions, environment, FLOPs."""
    facts = report["facts"]
    lines = ["# trigrad benchmark report", ""]
    if report.get("quick"):
        lines.append(f"- a --quick run: short timings, without {' and '.join(QUICK_SKIPS)}; noisier than a full run")
    lines.append(f"- CPU: {facts.get('cpu')} ({facts.get('cpu_count')} logical cores), Python {facts.get('python')}")
    for pool in facts.get("threadpools", []):
        lines.append(
            f"- {pool['internal_api']} ({pool.get('prefix')}): {pool['num_threads']} threads, "
            f"kernel {pool.get('architecture') or '-'}"
        )
    if "torch" in facts:
        t = facts["torch"]
        lines.append(f"- torch {t['version']}: {t['blas']}, {t['threads']} threads, {t['cpu_capability']}")
    if "jax" in facts:
        lines.append(f"- jax {facts['jax']['version']}: {', '.join(facts['jax']['devices'])}")
    env = {k: v for k, v in facts["env"].items() if v}
    lines.append(f"- environment: {', '.join(f'{k}={v}' for k, v in env.items()) or 'no BLAS/thread variables set'}")
    lines.append(
        f"- {facts.get('isolation', '')}; FLOPs per step (matmuls only, forward ×3 for forward + backward), "
        "MLP: 6·batch·Σ fan_in·fan_out minus the first layer's input gradient, which no backend computes"
    )
    if any(isinstance(WORKLOADS.get(r["workload"]), GPTWorkload) for r in report["rows"]):
        w = WORKLOADS["gpt"]
        lines.append(
            f"- gpt: {w.spec.describe()}, batch {w.batch}; FLOPs per step 6·n·t·(L·(4d² + 2·d·d_ff) + d·V) + "
            f"12·n·L·t²·d = {w.flops_per_step:,} (attention's q·kᵀ and P·v counted in full, though the causal "
            "mask zeroes half)"
        )
    return lines


def _peak_lines(report: dict) -> list[str]:
    """Each framework's float32 matmul peak and its dispatch cost."""
    lines = []
    lines += [
        "",
        "| framework | float32 matmul peak (best of 1024², 2048²) | dispatch (1-element add) |",
        "| --- | ---: | ---: |",
    ]
    for name, peak in report["peaks_gflops"].items():
        lines.append(f"| {name} | {peak:.0f} GFLOP/s | {report['dispatch_us'][name]:.2f} µs |")
    return lines


def _row_lines(report: dict) -> list[str]:
    """One line per measurement: size, backend, variant, speed, % of peak, threads, engine, load."""
    facts = report["facts"]
    lines = []
    lines += [
        "",
        "| size | FLOPs/step | backend | variant | steps/s | GFLOP/s | % of peak | first call s | per call ms "
        "| threads | engine | load before/after |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    engines = _engines(facts)
    for r in report["rows"]:
        flops = WORKLOADS[r["workload"]].flops_per_step
        load = r.get("load", (0.0, 0.0))
        busy = " **busy**" if r.get("busy") else ""
        lines.append(
            f"| {r['workload']} | {flops:.2e} | {r['backend']} | {r['variant']} | {_rate(r['steps_per_s'])} | "
            f"{r['gflops']:.2f} | {r['peak_fraction']:.1%} | {r['compile_s']:.2f} | {r['per_call_ms']:.2f} | "
            f"{r.get('threads', 'default')} | {engines.get(r['backend'], '-')} | {load[0]:.1f} / {load[1]:.1f}{busy} |"
        )
    return lines


def _note_lines(report: dict) -> list[str]:
    """What the variants, the columns, the pairing and the thread policy mean."""
    facts = report["facts"]
    lines = []
    lines += [
        "",
        f"- variants: *{TRAIN}* is `train(...)` as called by default, keeping every step's loss and gradient "
        f"norm; *{TRAIN_NO_LOSSES}* is `train(..., record_losses=None)`, which keeps only the final params, "
        "like the bare loops (`record_losses=k` keeps every k-th step's, for a stride's worth of that cost). "
        "The speed targets below are measured on the latter. Both run the same teaching code. The *minimal "
        "loop* each is held to: the bare loop (NumPy, torch) or the fused `lax.scan` (JAX).",
        "- columns: *first call s* is the first call's extra time over a steady call of the same length "
        "(JAX's tracing and compiling, torch's lazy initialization, first-touch allocation); *per call ms* "
        "is what a call costs besides its steps (validation and conversion at trigrad's borders), "
        "t(n) − n·(time per step): small, and as noisy as the difference of two timings.",
        "- the ratios to the minimal loop in the targets are paired: train (no losses) and the minimal loop "
        "timed in alternation, each keeping its fastest, the minimal loop on the threads trigrad's policy "
        "chose (this VM's speed drifts by up to 2× over minutes, so rows measured one after the other can "
        "disagree by more than the difference they are meant to show); the table before the targets gives both.",
        f"- threads: trigrad's thread policy runs torch and NumPy below 1e7 matmul FLOPs per step on "
        f"one thread (measured; `get_backend(..., threads=n)` overrides it); the bare loops use each "
        f"framework's default. A row marked busy was taken with a 1-minute load average above {BUSY_LOAD} "
        "(something else running) even after one repeat.",
        f"- GPU: {facts.get('gpu', 'not measured')}.",
    ]
    return lines


def _paired_lines(report: dict) -> list[str]:
    """train (no losses) against its minimal loop, timed paired."""
    lines = []
    if report.get("paired"):
        lines += [
            "",
            "| size | backend | train, no losses µs/step | minimal loop | its µs/step | threads (both) | ratio |",
            "| --- | --- | ---: | --- | ---: | ---: | ---: |",
        ]
        for p in report["paired"]:
            lines.append(
                f"| {p['workload']} | {p['backend']} | {_us(p['train_s'])} | {p['baseline']} | {_us(p['base_s'])} | "
                f"{p['threads']} | {p['train_s'] / p['base_s']:.2f}× |"
            )
    return lines


def _target_lines(report: dict) -> list[str]:
    """The speed targets, the per-phase table, the notes and findings."""
    lines = []
    lines += ["", "| target | measured | met | why missed |", "| --- | ---: | :---: | --- |"]
    for t in report["targets"]:
        lines.append(f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} | {t['why']} |")
    lines += _phase_lines(report)
    for backend, (gflops, what) in _above_peak(report).items():
        lines.append(
            f"\n- note: {backend}'s {what} ran at {gflops:.0f} GFLOP/s, "
            f"{gflops / report['peaks_gflops'][backend]:.0%} of the {report['peaks_gflops'][backend]:.0f} GFLOP/s "
            "its peak test measured: the peak test (square matmuls, fastest of a few calls) undershoots what the "
            "framework can reach by that much, so read its % of peak as a lower bound on the step's efficiency."
        )
    finding = _gelu_finding(report)
    if finding:
        lines.append(f"\n- {finding}")
    for n in report["notes"]:
        lines.append(f"\n- note: {n}")
    return lines
