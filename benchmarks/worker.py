"""One framework's measurements, in a process of its own (run by benchmarks.report, not by hand):

python -m benchmarks.worker BACKEND SIZES [--quick]    → JSON on stdout, progress on stderr
"""

from __future__ import annotations

import argparse
import json
import sys

from backends import BACKENDS
from benchmarks.report import measure_backend
from benchmarks.workloads import WORKLOADS
from comparisons.core.options import name_list


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.worker",
        description="One framework's measurements as JSON on stdout; python -m benchmarks runs it for each.",
    )
    parser.add_argument("backend", choices=BACKENDS, help="the framework to measure")
    parser.add_argument("sizes", type=name_list(list(WORKLOADS)), help=f"comma-separated from {', '.join(WORKLOADS)}")
    parser.add_argument("--quick", action="store_true", help="short timings")
    args = parser.parse_args(argv)
    result = measure_backend(args.backend, args.sizes, quick=args.quick, progress=lambda m: print(m, file=sys.stderr))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
