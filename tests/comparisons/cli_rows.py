"""Run command lines as `python -m` would, one after another in this one process, for test_cli.py.

stdin: a JSON list of {"command": "comparisons tour", "options": [...]}; argv[1]: seconds each row
may run. stdout's last line: a JSON list of {"code", "stdout", "stderr", "seconds"}, one per row, where
code is the exit status `python -m` would return (0, 2, ..., 1 for an uncaught exception, whose
traceback goes to that row's stderr as Python prints it) or "timeout".

Each row runs its module's `__main__` through runpy with its own sys.argv and its own stdout/stderr,
so only the imports are shared between rows: that is the point (one import of torch and JAX, not one
per row).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import runpy
import signal
import sys
import time
import traceback


class RowTimeout(BaseException):
    """Raised by the alarm; a BaseException so that no `except Exception` in a command swallows it."""


def _alarm(signum, frame):
    raise RowTimeout


def run_row(command: str, options: list[str], seconds: int) -> dict:
    module, *args = command.split()
    out, err = io.StringIO(), io.StringIO()
    saved_argv = sys.argv
    sys.argv = [f"python -m {module}", *args, *options]
    start = time.perf_counter()
    signal.alarm(seconds)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as stop:  # what the interpreter does with it, as `python -m` would
                if stop.code is None or isinstance(stop.code, int):
                    code = stop.code or 0
                else:
                    print(stop.code, file=sys.stderr)
                    code = 1
            except RowTimeout:
                code = "timeout"
            except BaseException:  # noqa: BLE001 - an uncaught exception is what the test looks for
                traceback.print_exc()
                code = 1
    finally:
        signal.alarm(0)
        sys.argv = saved_argv
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "seconds": time.perf_counter() - start}


def main() -> int:
    seconds = int(sys.argv[1])
    sys.path[0] = os.getcwd()  # as `python -m` has it: the working folder first, not this file's folder
    signal.signal(signal.SIGALRM, _alarm)
    rows = json.loads(sys.stdin.read())
    results = [run_row(row["command"], row["options"], seconds) for row in rows]
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
