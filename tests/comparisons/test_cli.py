"""The command line: a bad option is refused before any work, with exit code 2 and a last line on stderr
that names the option, and never with a traceback.

BAD_OPTIONS is one table for every command that `python -m comparisons` lists, `python -m benchmarks`
and `python -m benchmarks.worker`. The rows run in one child process (tests/comparisons/cli_rows.py),
each exactly as `python -m` runs it (runpy, `__main__`, its own argv and captured stdout/stderr), so
the imports are paid once, not 90 times. A row that got as far as training or measuring would take
from tens of seconds to minutes and is stopped at ROW_TIMEOUT_S.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from comparisons import COMMANDS
from comparisons.core.options import make_parser, output_file, output_folder

ROOT = Path(__file__).resolve().parents[2]
A_FILE = "README.md"  # an existing file, relative to ROOT: not a folder, and no folder can be made inside it
UNDER_PROC = "/proc/trigrad-out"  # root may write anywhere by permission bits; /proc still takes no files
MISSING = "no-such-folder-for-trigrad/page.html"
ROW_TIMEOUT_S = 30

BAD_OPTIONS = [
    # (command, bad options, the option its message must name)
    ("comparisons tour", ["--out", A_FILE], "--out"),
    ("comparisons tour", ["--loss", "mse", "--lr", "1e6"], "--lr"),  # diverges at step 23: said, not a traceback
    ("comparisons tour", ["--backends", ","], "--backends"),
    ("comparisons parity", ["--out", A_FILE], "--out"),  # used to fail after 45 s of work
    ("comparisons parity", ["--out", UNDER_PROC], "--out"),
    ("comparisons parity", ["--out", f"{A_FILE}/sub"], "--out"),
    ("comparisons parity", ["--sizes", "2,-4,1"], "--sizes"),  # used to run as 2,4,1
    ("comparisons parity", ["--spec", "2,0,1:tanh"], "--spec"),
    ("comparisons parity", ["--steps", "1000000000000"], "--steps"),
    ("comparisons parity", ["--n", "1000000000000", "--dataset", "moons"], "--n"),
    ("comparisons parity", ["--sizes", "2,100000,100000,1"], "--sizes"),
    ("comparisons divergence", ["--points", "-3"], "--points"),
    ("comparisons divergence", ["--out", UNDER_PROC], "--out"),
    ("comparisons divergence", ["--lr", "nan"], "--lr"),
    ("comparisons gradients", ["--batch-size", "0"], "--batch-size"),
    ("comparisons gradients", ["--n", "1000000", "--sizes", "2,4096,3"], "--n"),
    ("comparisons gradients", ["--backends", "numpy,,jax"], "--backends"),
    ("comparisons parity", ["--model", "gpt", "--gpt", "8,8,16,3,1"], "--gpt"),  # 3 heads do not divide d = 16
    ("comparisons parity", ["--model", "gpt", "--sizes", "2,4,1"], "--sizes"),  # an MLP option
    ("comparisons divergence", ["--model", "transformer"], "--model"),
    ("comparisons divergence", ["--gpt", "8,8,16,2,100"], "--gpt"),  # more blocks than MAX_LAYERS
    ("comparisons gradients", ["--model", "gpt", "--n", "1000000", "--gpt", "64,1024,1024,8,4"], "--n"),
    ("comparisons gradients", ["--model", "mlp", "--gpt", "8,8,16,2,1"], "--gpt"),
    ("comparisons gradients", ["--model", "gpt", "--activation", "sigmoid"], "--activation"),
    ("comparisons boundaries", ["--resolution", "1000000"], "--resolution"),  # a 7 TiB grid
    ("comparisons boundaries", ["--datasets", ","], "--datasets"),
    ("comparisons boundaries", ["--out", A_FILE], "--out"),
    ("comparisons weights", ["--sizes", "2,-4,1"], "--sizes"),
    ("comparisons weights", ["--noise", "-1"], "--noise"),
    ("comparisons weights", ["--steps", "0"], "--steps"),
    ("comparisons hidden-layer", ["--lr", "-1"], "--lr"),  # --lr abbreviates --lrs
    ("comparisons hidden-layer", ["--lr", "nan"], "--lr"),
    ("comparisons hidden-layer", ["--out", UNDER_PROC], "--out"),
    ("comparisons learning-rates", ["--max-lr", "inf"], "--max-lr"),
    ("comparisons learning-rates", ["--points", "1"], "--points"),
    ("comparisons seeds", ["--sizes", "2,-4,1"], "--sizes"),
    ("comparisons seeds", ["--out", A_FILE], "--out"),
    ("comparisons noise", ["--seed", "-1"], "--seed"),
    ("comparisons noise", ["--widths", "2,x"], "--widths"),
    ("comparisons paths", ["--lr", "inf"], "--lr"),
    ("comparisons paths", ["--out", f"{A_FILE}/sub"], "--out"),
    ("comparisons boundaries", ["--steps", "1000000000000"], "--steps"),  # more than shared.training.MAX_STEPS
    ("comparisons hidden-layer", ["--steps", "1000000000000"], "--steps"),
    ("comparisons hidden-layer", ["--seeds", "1000000000"], "--seeds"),
    ("comparisons hidden-layer", ["--lrs", ",".join(["0.1"] * 21)], "--lrs"),
    ("comparisons learning-rates", ["--steps", "1000000000000"], "--steps"),
    ("comparisons learning-rates", ["--min-lr", "1e-300", "--max-lr", "1"], "--min-lr"),  # used to warn of overflow
    ("comparisons learning-rates", ["--max-lr", "1e300"], "--max-lr"),
    ("comparisons seeds", ["--steps", "1000000000000"], "--steps"),
    ("comparisons seeds", ["--seeds", "1000000000"], "--seeds"),
    ("comparisons paths", ["--steps", "1000000000000"], "--steps"),
    ("comparisons paths", ["--seeds", "1000000000"], "--seeds"),
    ("comparisons noise", ["--steps", "1000000000000"], "--steps"),
    ("comparisons precision", ["--steps", "0"], "--steps"),
    ("comparisons precision", ["--seeds", "0"], "--seeds"),
    ("comparisons data-parallel", ["--steps", "5000"], "--steps"),  # every step's params are kept
    ("comparisons data-parallel", ["--widths", "16,x"], "--widths"),
    ("comparisons data-parallel", ["--widths", "100000"], "--widths"),
    ("comparisons data-parallel", ["--backends", "numpy,mxnet"], "--backends"),
    ("comparisons noise", ["--n", "1000000000000"], "--n"),  # used to allocate 7 TiB
    ("comparisons noise", ["--seeds", "1000000000"], "--seeds"),
    ("comparisons noise", ["--widths", "2,1000000000"], "--widths"),
    ("comparisons noise", ["--n", "1000000", "--widths", "1024"], "--widths"),  # 2e9 activations per pass
    ("comparisons noise", ["--seeds", "1000", "--widths", "1024"], "--widths"),  # 1e9 weights kept
    ("comparisons code", ["adam", "--width", "0"], "--width"),
    ("comparisons code", ["adam", "--width", "100000"], "--width"),
    ("comparisons code", ["adam", "--html", MISSING], "--html"),
    ("comparisons code", ["adam", "--html", "tests"], "--html"),  # a folder, not a file
    ("comparisons code", ["adam", "--backends", ","], "--backends"),
    ("comparisons attention", ["--task", "shuffle"], "--task"),
    ("comparisons attention", ["--heads", "3"], "--heads"),  # 32 is not divisible by 3
    ("comparisons attention", ["--batch-size", "500", "--n", "100"], "--batch-size"),
    ("comparisons attention", ["--length", "100"], "--length"),
    ("comparisons attention", ["--out", A_FILE], "--out"),
    ("comparisons generate", ["--temperature", "-1"], "--temperature"),
    ("comparisons generate", ["--seq-len", "1"], "--seq-len"),
    ("comparisons generate", ["--steps", "0"], "--steps"),
    ("comparisons generate", ["--backends", ","], "--backends"),
    ("comparisons bugs", ["--bug", "off-by-one"], "--bug"),
    ("comparisons bugs", ["--steps", "1000000"], "--steps"),
    ("comparisons bugs", ["--backends", "numpy"], "--backends"),  # nothing to compare NumPy with
    ("comparisons gradcheck", ["--sizes", "2,200,200,1"], "--sizes"),  # 40,000 params: 80,000 forwards
    ("comparisons gradcheck", ["--h", "0"], "--h"),
    ("comparisons gradcheck", ["--bug", "nope"], "--bug"),
    ("comparisons gradcheck", ["--out", A_FILE], "--out"),
    ("comparisons step", ["--sample", "4"], "--sample"),  # xor has samples 0 to 3
    ("comparisons step", ["--html", "tests"], "--html"),
    ("comparisons step", ["--lr", "0"], "--lr"),
    ("comparisons step", ["--model", "gpt", "--gpt", "8,4,8,3,1"], "--gpt"),  # 3 heads do not divide d = 8
    ("comparisons step", ["--model", "gpt", "--lr", "0.1"], "--lr"),  # the GPT step prints no update
    ("comparisons step", ["--gpt", "8,4,128,2,1"], "--gpt"),  # d = 128: too wide to print
    ("comparisons graph", ["--sizes", "2,4,4,4,4,4,4,4,4,1"], "--sizes"),  # 9 layers: beyond 8
    ("comparisons graph", ["--out", UNDER_PROC], "--out"),
    ("comparisons playground", ["--sizes", "2,64,1"], "--sizes"),  # wider than the page draws
    ("comparisons playground", ["--steps", "100000"], "--steps"),  # one chunk is at most 1000 steps
    ("comparisons playground", ["--every", "1", "--steps", "1000"], "--every"),
    ("comparisons playground", ["--resolution", "100000"], "--resolution"),
    ("comparisons playground", ["--test-fraction", "1"], "--test-fraction"),
    ("comparisons playground", ["--port", "99999"], "--port"),
    ("comparisons playground", ["--dtypes", "float16", "--optimizer", "adam"], "--dtypes"),
    ("benchmarks", ["--out", A_FILE], "--out"),  # used to fail after the full measurement
    ("benchmarks", ["--out", UNDER_PROC], "--out"),
    ("benchmarks", ["--sizes", ","], "--sizes"),
    ("benchmarks", ["--backends", ","], "--backends"),
    ("benchmarks", ["--sizes", "xor,huge"], "--sizes"),
    ("benchmarks.worker", [], "backend"),
    ("benchmarks.worker", ["cuda", "xor"], "backend"),
    ("benchmarks.worker", ["numpy", ","], "sizes"),
]


@pytest.fixture(scope="module")
def results() -> list[dict]:
    """Every row of BAD_OPTIONS run once, in one child process: [{"code", "stdout", "stderr", "seconds"}]."""
    rows = [{"command": command, "options": options} for command, options, _ in BAD_OPTIONS]
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("cli_rows.py")), str(ROW_TIMEOUT_S)],
        cwd=ROOT,
        input=json.dumps(rows),
        capture_output=True,
        text=True,
        timeout=ROW_TIMEOUT_S * 4 + 120,  # only if the runner itself hangs; each row has its own alarm
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_table_covers_every_command():
    commands = {command for command, _, _ in BAD_OPTIONS}
    expected = {f"comparisons {name}" for name in COMMANDS} | {"benchmarks", "benchmarks.worker"}
    assert expected <= commands, f"no bad-option row for {sorted(expected - commands)}"


@pytest.mark.parametrize(
    "row", range(len(BAD_OPTIONS)), ids=[f"{c} {' '.join(o) or '(none)'}" for c, o, _ in BAD_OPTIONS]
)
def test_a_bad_option_is_a_usage_error_that_names_it(row, results):
    command, options, option = BAD_OPTIONS[row]
    done = results[row]
    assert done["code"] != "timeout", f"python -m {command} {' '.join(options)}: still running after {ROW_TIMEOUT_S} s"
    text = done["stdout"] + done["stderr"]
    assert "Traceback" not in text, text[-2000:]
    lines = done["stderr"].strip().splitlines()
    assert done["code"] == 2, f"exit code {done['code']} after {done['seconds']:.1f} s; stderr ends {lines[-3:]}"
    assert option in lines[-1], f"the last line does not name {option}: {lines[-1]!r}"


def test_out_is_checked_without_creating_anything(tmp_path):
    parser = make_parser("test", "", None)
    nested = tmp_path / "new" / "nested"
    assert parser.parse_args(["--out", str(nested)]).out == nested
    assert not (tmp_path / "new").exists()  # created only when a command writes its files


@pytest.mark.parametrize(
    "out, says",
    [
        ("{file}", "is a file"),
        ("{file}/inside", "which is a file"),
        (UNDER_PROC, "under /proc"),
        ("/proc/self", "under /proc"),
    ],
)
def test_out_that_cannot_take_files_is_refused(out, says, tmp_path, capsys):
    existing = tmp_path / "numbers.json"
    existing.write_text("{}")
    with pytest.raises(SystemExit) as exit_info:
        make_parser("test", "", None).parse_args(["--out", out.format(file=existing)])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument --out: {out.format(file=existing)!r}" in last and says in last


def test_out_in_a_folder_that_refuses_files_is_refused(tmp_path, monkeypatch):
    """The folder is tried, not judged by its permission bits (root passes those everywhere): here the
    trial file fails as it would on a read-only mount."""

    def refuse(**kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(argparse.ArgumentTypeError, match="cannot write in .*: Permission denied"):
        output_folder(str(tmp_path / "new"))
    with pytest.raises(argparse.ArgumentTypeError, match="cannot write in .*: Permission denied"):
        output_file(str(tmp_path / "page.html"))


def test_html_file_needs_an_existing_folder_and_is_not_a_folder(tmp_path):
    assert output_file(str(tmp_path / "page.html")) == tmp_path / "page.html"
    with pytest.raises(argparse.ArgumentTypeError, match="does not exist"):
        output_file(str(tmp_path / "missing" / "page.html"))
    with pytest.raises(argparse.ArgumentTypeError, match="is a folder"):
        output_file(str(tmp_path))


def test_a_new_nested_out_folder_is_created_and_filled(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the command draws a figure (pip install matplotlib)")
    from comparisons.lessons import paths

    out = tmp_path / "figures" / "paths"
    assert paths.main(["--seeds", "1", "--steps", "20", "--out", str(out)]) in (0, None)
    assert (out / "paths.png").exists() and (out / "paths.json").exists()
