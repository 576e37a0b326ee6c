"""The benchmark report as Markdown (docs/benchmarks.md): the machine, the peaks, every row with the
engine that computed it, what the columns mean, the paired ratios, the targets, the per-phase table
and the findings. Rendering only: benchmarks/report.py measures; nothing here times anything."""

from __future__ import annotations

from benchmarks.targets import BUSY_LOAD, TRAIN, TRAIN_NO_LOSSES
from benchmarks.workloads import QUICK_SKIPS, WORKLOADS, GPTWorkload


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
        f"finding (numpy, gpt): NumPy's exact GELU — scipy.special.ndtr for Φ, one element at a time in float64, over "
        f"n·t·d_ff = {elements:,} pre-activations per layer, in the forward (the backward reads Φ back as A/Z) — "
        f"takes "
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


def rate(steps_per_s: float) -> str:
    """Steps per second to the unit above 100 (31,250), to three digits below (0.672, 12.5)."""
    return f"{steps_per_s:,.0f}" if steps_per_s >= 100 else f"{steps_per_s:.3g}"


def _engines(facts: dict) -> dict[str, str]:
    """Per backend, what computed its rows: the framework's version and its BLAS or compiler kernel."""
    pools = [pool for pool in facts.get("threadpools", []) if pool["internal_api"] in ("openblas", "mkl")]
    blas = next((pool for pool in pools if pool.get("owner") == "numpy"), pools[0] if pools else None)  # not scipy's
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
        owner = f", {pool['owner']}'s" if pool.get("owner") else ""
        version = f", version {pool['version']}" if pool.get("version") else ""
        lines.append(
            f"- {pool['internal_api']} ({pool.get('prefix')}{owner}): {pool['num_threads']} threads, "
            f"kernel {pool.get('architecture') or '-'}{version}"
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
            f"| {r['workload']} | {flops:.2e} | {r['backend']} | {r['variant']} | {rate(r['steps_per_s'])} | "
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
        "The speed targets below are measured on the latter. Both run the same teaching code, except for two "
        "named fast paths, each held bit for bit to the teaching step by tests/backends/test_fast_path.py: "
        "torch's plain SGD (`plain_sgd_step` in backends/torch/train.py: `torch.autograd.grad` and one fused "
        "update instead of torch.optim) and, in train (no losses), NumPy's MLP gradients (`plain_mlp_grads` in "
        "backends/numpy/train.py: mlp.py's operations without its function per piece, cache and dicts). "
        "The *minimal loop* each is held to: the bare loop (NumPy, "
        "torch) or the fused `lax.scan` (JAX).",
        "- what the bare loops leave out, and why they may (benchmarks/bare.py): validation, conversion and "
        "chunking, done once per call, so they cancel out of a per-step time; the loss value, the gradient "
        "norm and the finiteness checks, which train (no losses) skips too; dicts, parameter trees and "
        "optimizer objects (plain lists of arrays); every choice of activation and loss made once, before the "
        "loop. NumPy's computes dL/dz straight from the logits with its constants folded ahead (bce's "
        "(σ(z) − y)/n as scipy's expit(z)·(1/n) − y/n). torch's uses raw tensors, `F.linear`, "
        "`torch.autograd.grad` (no .grad to zero) and "
        "one `torch._foreach_add_` for the update, on one thread like trigrad's. A test holds each loop's "
        "update to trigrad's own SGD, so none can flatter trigrad by doing less.",
        "- columns: *first call s* is the first call's extra time over a steady call of the same length "
        "(JAX's tracing and compiling, torch's lazy initialization, first-touch allocation); *per call ms* "
        "is what a call costs besides its steps (validation and conversion at trigrad's borders), "
        "t(n) − n·(time per step): small, and as noisy as the difference of two timings.",
        "- the ratios to the minimal loop in the targets are paired: train (no losses) and the minimal loop "
        "timed in alternation, round after round, the minimal loop on the threads trigrad's policy chose "
        "(this VM's speed drifts by up to 2× over minutes, so rows measured one after the other can "
        "disagree by more than the difference they are meant to show). Each round gives each its time "
        "per step and their ratio, under one phase of the drift; the table before the targets gives each "
        "one's median time, the median of the rounds' ratios, and their middle half: how far one round's "
        "reading strays.",
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
            "| size | backend | train, no losses µs/step | minimal loop | its µs/step | threads (both) | ratio "
            "| the rounds' middle half (rounds) |",
            "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |",
        ]
        for p in report["paired"]:
            low, high = p["ratio_quartiles"]
            lines.append(
                f"| {p['workload']} | {p['backend']} | {_us(p['train_s'])} | {p['baseline']} | {_us(p['base_s'])} | "
                f"{p['threads']} | {p['ratio']:.2f}× | {low:.2f}–{high:.2f}× ({p['rounds']}) |"
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
