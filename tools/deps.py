"""Print the requirements that pyproject.toml declares for the given extras, one per line.

trigrad runs from its checkout (the repository root is the import root), so `make` installs only the
project's dependencies into .venv, never the project itself: `shared` and `backends` are top-level
names that unrelated packages own on the package index.

    python tools/deps.py all dev     # numpy, torch, jax, ... pytest, hypothesis, ...
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib


def requirements(extras: list[str], pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    name = project["name"]
    optional = project.get("optional-dependencies", {})
    out: list[str] = list(project.get("dependencies", []))
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop(0)
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"tools/deps.py: unknown extra {extra!r}; pyproject.toml has {sorted(optional)}")
        seen.add(extra)
        for req in optional[extra]:
            self_ref = re.fullmatch(rf"{re.escape(name)}\[(.+)\]", req.replace(" ", ""))
            if self_ref:  # "trigrad[torch,jax]" names other extras of this project
                pending.extend(self_ref.group(1).split(","))
            elif req not in out:
                out.append(req)
    return out


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    print("\n".join(requirements(sys.argv[1:], root / "pyproject.toml")))
