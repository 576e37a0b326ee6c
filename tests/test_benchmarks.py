"""The benchmark machinery: FLOP counts, the timing method, target verdicts, and a smoke run of the
pytest-benchmark suite (each benchmark once, untimed). Speed itself is never asserted here."""

import subprocess
import sys
import time

import pytest

from benchmarks.measure import time_runner
from benchmarks.report import Row, evaluate_targets, markdown
from benchmarks.workloads import WORKLOADS


def test_flops_per_step_counts_the_matmuls_that_run():
    w = WORKLOADS["medium"]  # 784→256→256→10, batch 128
    forward = 2 * 128 * (784 * 256 + 256 * 256 + 256 * 10)
    backward = 2 * forward - 2 * 128 * 784 * 256  # dL/dW everywhere, dL/dX everywhere but the input
    assert w.flops_per_step == forward + backward


def test_time_runner_separates_per_step_from_per_call_cost():
    def run(steps):  # 2 ms per call plus 0.5 ms per step
        time.sleep(0.002 + 0.0005 * steps)

    t = time_runner(run, target_s=0.05, repeats=2)
    assert t.per_step_s == pytest.approx(0.0005, rel=0.3)
    assert t.per_call_s == pytest.approx(0.002, abs=0.0015)
    assert t.steps_per_s == pytest.approx(2000, rel=0.3)


def _row(size, backend, variant, steps_per_s, peak_fraction=0.0):
    return Row(size, backend, variant, steps_per_s, 0.0, peak_fraction, 0.0, 0.0, 1)


def test_targets_say_met_missed_and_why():
    rows = [
        _row("xor", "numpy", "trigrad train", 10_000),
        _row("xor", "numpy", "bare loop", 30_000),
        _row("xor", "torch", "trigrad train", 900),
        _row("xor", "torch", "bare loop", 1_000),
        _row("medium", "numpy", "trigrad train", 100, 0.40),
        _row("medium", "numpy", "bare loop", 105, 0.42),
        _row("xor", "jax", "bare lax.scan", 700_000),
    ]
    targets = {t["target"]: t for t in evaluate_targets(rows, {"numpy": 0.5, "torch": 2.0})}
    numpy_xor = targets["train/bare ≤ 1.25 (numpy, xor)"]
    assert not numpy_xor["met"] and numpy_xor["value"] == "3.00×" and "adds 66.7 µs" in numpy_xor["why"]
    assert targets["train/bare ≤ 1.25 (torch, xor)"]["met"]
    peak = targets["≥ 50% of peak (numpy trigrad train, medium)"]
    assert not peak["met"] and "bare loop reaches only 42% too" in peak["why"]
    assert not targets["XOR ≥ 1,000,000 steps/s (jax bare lax.scan)"]["met"]


def test_markdown_report_lists_every_row_and_target():
    rows = [_row("xor", "numpy", "trigrad train", 10_000), _row("xor", "numpy", "bare loop", 30_000)]
    report = {
        "facts": {"cpu": "test cpu", "cpu_count": 2, "python": "3.11", "env": {}},
        "peaks_gflops": {"numpy": 100.0},
        "dispatch_us": {"numpy": 0.5},
        "rows": [r.__dict__ for r in rows],
        "notes": [],
        "targets": evaluate_targets(rows, {"numpy": 0.5}),
    }
    text = markdown(report)
    assert "test cpu" in text and "| xor | " in text and "train/bare ≤ 1.25 (numpy, xor)" in text


def test_pytest_benchmark_suite_runs_once_each():
    pytest.importorskip("pytest_benchmark")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "benchmarks",
            "--benchmark-disable",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout
