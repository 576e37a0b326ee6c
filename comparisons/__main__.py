"""python -m comparisons [<command> [options]] — run without a command to list them."""

from __future__ import annotations

import importlib
import sys

from comparisons import COMMANDS, GROUPS


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: python -m comparisons <command> [options]     (python -m comparisons <command> --help)",
    ]
    for group, commands in GROUPS.items():  # as the folders are: comparisons/<group>/
        lines += ["", f"{group}/:"]
        lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in commands.items()]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"python -m comparisons: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
