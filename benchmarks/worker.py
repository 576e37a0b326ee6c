"""One framework's measurements, in a process of its own (run by benchmarks.report, not by hand):

python -m benchmarks.worker BACKEND SIZES [--quick]    → JSON on stdout, progress on stderr
"""

from __future__ import annotations

import json
import sys

from benchmarks.report import measure_backend


def main(argv: list[str]) -> int:
    name, sizes = argv[0], argv[1].split(",")
    result = measure_backend(name, sizes, quick="--quick" in argv, progress=lambda m: print(m, file=sys.stderr))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
