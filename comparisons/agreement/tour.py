"""tour: the `make demo` walk through trigrad, in well under a minute.

XOR, 2→4→1, from one init on every installed backend: train it, print the parity table in float64
and float32, draw where the backends drift apart and the boundaries they learned, and say what each
figure shows.
"""

from __future__ import annotations

import time

import numpy as np

from backends import get_backend
from comparisons.agreement import boundaries, divergence, divergence_figure, parity
from comparisons.core.options import make_parser
from comparisons.core.output import save_figure, save_json
from comparisons.core.problem import XOR, build_problem, installed
from shared.tolerances import trajectory_tolerance
from shared.trajectory import TrainingDiverged


def heading(text: str) -> None:
    print(f"\n── {text} " + "─" * max(0, 74 - len(text)))


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("tour", __doc__.split("\n\n")[1], XOR)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    problem = build_problem(parser, args)
    backends = installed(args.backends)
    print("trigrad: one network, written three times — hand-written NumPy backprop, PyTorch autograd, JAX grad.")
    print(f"Installed backends: {', '.join(backends)}.  Problem: {problem.describe()}.")
    train_every_backend(parser, args, problem, backends)
    paths = parity_and_divergence(args, problem, backends) if len(backends) >= 2 else []
    paths += decision_boundaries(args, backends)
    heading("Figures")
    for path in paths:
        print(f"  {path}")
    print(
        f"\nDone in {time.perf_counter() - start:.0f} s. Next: `python -m comparisons` lists every comparison and"
        " lesson; `make test` runs the parity suite; read backends/numpy/mlp.py top to bottom."
    )
    return 0


def train_every_backend(parser, args, problem, backends: list[str]) -> None:
    """1. XOR on every backend from the same weights: the losses, the predictions, the time."""
    heading("1. Train XOR on every backend, from the same initial weights")
    learned = []
    for name in backends:
        be = get_backend(name, "float64")
        try:
            traj = problem.train(name, "float64")
        except TrainingDiverged as e:  # nothing after this is worth drawing: say where, and stop
            what = "its parameters" if e.quantity == "parameters" else f"its {e.quantity}"
            parser.error(
                f"--lr {args.lr:g}: training diverged on {name} at step {e.step} ({what} became {e.value}); "
                "try a smaller --lr"
            )
        predicted = boundaries.predict_classes(be, problem.spec, traj.params, problem.X)
        if np.array_equal(predicted, problem.data.y):
            learned.append(name)
        shown = problem.X[:4] if len(problem.X) <= 4 else problem.X[:0]
        points = "  ".join(f"{x[0]:g}{x[1]:g}→{c}" for x, c in zip(shown, predicted))
        print(
            f"  {name:<6} loss {traj.losses[0]:.4f} → {traj.losses[-1]:.6f}   {points}   "
            f"({traj.meta['wall_time_s']:.2f} s)"
        )
    missed = [name for name in backends if name not in learned]
    if missed:
        print(f"  Every training point right: {', '.join(learned) or 'none'}; not: {', '.join(missed)}.")
    else:
        print("  Every backend classifies every training point right.")
    print("  (Times include first-call costs: importing torch.optim, compiling JAX. See python -m benchmarks.)")


def parity_and_divergence(args, problem, backends: list[str]) -> list:
    """2. The parity table; 3. the divergence figure. Returns the files written."""
    paths = []
    heading("2. Parity: how close is close? (tolerances in shared/tolerances.py)")
    rows = parity.parity_rows(problem, backends, ["float64", "float32"])
    print(parity.format_table(rows))
    failed = sum(not r.ok for r in rows)
    print(
        f"  {len(rows) - failed} of {len(rows)} comparisons within tolerance. float64 gaps are a few ε (1e-16);"
        " float32 gaps a few float32 ε (1e-7)."
    )

    heading("3. Divergence: framework or precision?")
    runs = divergence.train_all(problem, backends, record_every=max(1, problem.steps // 200))
    numbers = divergence.divergence_numbers(runs, problem)
    tols = {d: trajectory_tolerance(d, problem.optimizer) for d in divergence.DTYPES}
    text = divergence.finding(numbers)
    paths.append(save_figure(divergence_figure.plot(numbers, problem, tols), args.out, "divergence"))
    paths.append(save_json({"problem": problem.describe(), "finding": text, **numbers}, args.out, "divergence"))
    print(f"  {text}")
    return paths


def decision_boundaries(args, backends: list[str]) -> list:
    """4. Decision boundaries of every backend on XOR and moons. Returns the files written."""
    paths = []
    heading("4. Decision boundaries: do they learn the same function?")
    results = {
        name: boundaries.boundaries(boundaries.PRESETS[name], backends, "float32", args.seed, None, 150)
        for name in ("xor", "moons")
    }
    text = boundaries.finding(results)
    paths.append(save_figure(boundaries.plot(results, backends, "float32"), args.out, "boundaries"))
    print(f"  {text}")

    return paths
