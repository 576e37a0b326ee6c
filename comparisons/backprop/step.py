"""step: one training step, layer by layer, with the real numbers, in NumPy, torch and JAX side by side.

The forward pass (Z = X·W + b, A = f(Z), the loss), the backward pass (dL/dA, dL/dZ = dL/dA ⊙ f′(Z),
dL/dW = Xᵀ·dL/dZ, dL/db = Σ dL/dZ, dL/dX = dL/dZ·Wᵀ) and the update, every matrix printed. The NumPy
numbers are the ones its forward cached (backends/numpy/mlp.py mlp_forward) and its backward computed from them;
torch's come from the real module with `retain_grad()` on every intermediate; JAX's from `jax.vjp` of
each layer in turn. Beside each quantity: the largest gap to NumPy, in units of ε·max|NumPy|.

With --model gpt, the first block of a tiny GPT instead (default 1 block, d = 8, 2 heads, 2 sequences
of 4 tokens): the embedding, LayerNorm's μ and rstd, q/k/v per head, the masked scores S and P, the
loss, then dL/dlogits, dP, dS, dq/dk/dv, LayerNorm's dx and the embedding gradient. NumPy's from
backends/numpy/gpt.py's caches; torch's from the real module (hooks, a TorchFunctionMode for q·kᵀ and P,
LayerNorm's saved μ and rstd); JAX's from jax.vjp of the pieces, backends/jax/gpt.py's linear/layernorm.
"""

from __future__ import annotations

import html

import numpy as np

from comparisons.backprop.step_gpt import GPT_STEP, collect_gpt
from comparisons.backprop.step_mlp import Quantity, collect
from comparisons.core.options import make_parser, non_negative_int, output_file
from comparisons.core.problem import XOR, build_problem, installed
from shared.spec import GPTSpec
from shared.tolerances import gap_in_eps

MAX_SHOWN = 8  # rows and columns of a matrix printed; the rest is "…"
WIDTH = 100


# ---- text ----


def gap_text(gap: float) -> str:
    if gap == 0:
        return "0"
    if gap == float("inf") or gap >= 1e4:
        return f"{gap:.0e}"
    return f"{gap:.2g}"


MAX_BLOCKS = 4  # of a 3-d or 4-d array, the (sequence, head) matrices printed


def matrix_lines(a: np.ndarray, indent: str) -> list[str]:
    """A matrix row by row; an array of more dimensions as its first MAX_BLOCKS matrices, each named."""
    if np.ndim(a) > 2:
        lines, index = [], list(np.ndindex(a.shape[:-2]))
        for i in index[:MAX_BLOCKS]:
            what = ", ".join(f"{axis} {j}" for axis, j in zip(("seq", "head"), i))
            lines += [f"{indent}[{what}]", *matrix_lines(a[i], indent + "  ")]
        if len(index) > MAX_BLOCKS:
            lines.append(f"{indent}… {len(index) - MAX_BLOCKS} more")
        return lines
    a = np.atleast_2d(a)
    rows = list(range(min(len(a), MAX_SHOWN)))
    cols = min(a.shape[1], MAX_SHOWN)
    lines = []
    for i in rows:
        # v + 0.0: IEEE's signed zero −0 (0 times a negative number, as dS at a masked entry) prints as 0
        cells = " ".join(f"{v + 0.0:>10.4g}" for v in a[i, :cols]) + (" …" if a.shape[1] > cols else "")
        lines.append(f"{indent}{cells}")
    if len(a) > len(rows):
        lines.append(f"{indent}… {len(a) - len(rows)} more rows")
    return lines


def loss_name(spec) -> str:
    return "mean cross-entropy over n·t positions" if isinstance(spec, GPTSpec) else f"{spec.loss}(ŷ, y)"


def render(quantities: list[Quantity], losses: dict[str, float], spec, dtype: str, title: str) -> str:
    backends = list(losses)
    others = [b for b in backends if b != "numpy"]
    eps = float(np.finfo(dtype).eps)
    lines = [title, f"gaps to NumPy in ε·max|NumPy| (ε = {eps:.1e}): ≤ a few ε is rounding; ≫ 1 is a difference"]
    if isinstance(spec, GPTSpec):
        lines.append("masked (key j > query i): S = −inf, P = 0 and dS exactly 0: no gradient flows to the future")
    section = layer = None
    for q in quantities:
        if q.section != section:
            section, layer = q.section, None
            lines += ["", f"══ {section.upper()} " + "═" * (WIDTH - 5 - len(section))]
            if section == "backward":
                gaps = "  ".join(f"{o} {gap_text(gap_in_eps(losses['numpy'], losses[o], dtype))}ε" for o in others)
                lines += [
                    f"loss  L = {loss_name(spec)} = {losses['numpy']:.10g}" + (f"     {gaps}" if gaps else ""),
                    "",
                ]
        if q.layer != layer:
            layer = q.layer
            lines.append(f"── {layer}")
        a = q.values["numpy"]
        gaps = "  ".join(f"{o} {gap_text(gap_in_eps(a, q.values[o], dtype))}ε" for o in others)
        head = f"  {q.name} = {q.formula}" if q.formula else f"  {q.name}"
        shape = "×".join(map(str, a.shape))
        left = f"{head}  ({shape})"
        lines.append(f"{left}{' ' * max(2, WIDTH - len(left) - len(gaps))}{gaps}".rstrip())
        lines += matrix_lines(a, "    ")
    return "\n".join(lines)


def html_page(text: str, title: str) -> str:
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>trigrad: {html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;background:#fdfdfd;color:#222}}
pre{{font:13px/1.35 ui-monospace,Menlo,Consolas,monospace;background:#f4f4f4;padding:1em;overflow-x:auto}}</style>
</head><body><h1>{html.escape(title)}</h1><pre>{html.escape(text)}</pre></body></html>
"""


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(
        "step",
        __doc__.split("\n\n")[1],
        XOR,
        training="step",
        gpt=GPT_STEP,
        epilog="examples:\n  python -m comparisons step\n  python -m comparisons step --sample 3 --activation relu\n"
        "  python -m comparisons step --model gpt\n  python -m comparisons step --html step.html",
    )
    parser.add_argument("--sample", type=non_negative_int, help="one sample's step (default: the whole batch)")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="default: float64")
    parser.add_argument("--html", type=output_file, metavar="FILE", help="also write the step as one HTML page")
    args = parser.parse_args(argv)
    gpt = args.model == "gpt" or (args.model is None and args.gpt is not None)
    if gpt:  # GPT_STEP, the command's own small default, fits the screen (problem.GPT trains; this one is read)
        for option in ("optimizer", "lr"):
            if getattr(args, option) is not None:  # the GPT step prints no update: refuse, never ignore
                parser.error(f"--{option}: --model gpt prints the forward and backward pass only, no update")
    problem = build_problem(parser, args)
    n = len(problem.X)
    if args.sample is not None and args.sample >= n:
        parser.error(f"--sample {args.sample}: the dataset has {n} samples (0 to {n - 1})")
    if gpt and (n > 64 or problem.spec.d_model > 64 or problem.spec.seq_len > 64):
        parser.error(f"--gpt/--n: step prints every number; use at most 64 sequences, d ≤ 64 and t ≤ 64 (n={n})")
    if not gpt and (n > 1000 or max(problem.spec.sizes) > 256):
        parser.error(f"--n/--sizes: step prints every number; use at most 1000 samples and widths up to 256 (n={n})")
    backends = installed(args.backends)
    if "numpy" not in backends:
        parser.error("--backends: step compares against NumPy's cache, so it needs numpy")
    X, y = problem.X, problem.y
    which = "the whole batch"
    if args.sample is not None:
        X, y = X[args.sample : args.sample + 1], y[args.sample : args.sample + 1]
        which = f"sample {args.sample} alone"
    if gpt:
        quantities, losses = collect_gpt(problem, X, y, backends, args.dtype)
        what = f"{problem.data.name} data, {len(X)}×{X.shape[1]} tokens"
        title = f"One GPT step, block 0: {problem.spec.describe()}, {what}, {args.dtype}"
    else:
        quantities, losses = collect(problem, X, y, backends, args.dtype)
        title = (
            f"One training step: {problem.data.name}, {problem.spec.describe()}, {problem.optimizer.describe()}, "
            f"{which} (n={len(X)}), {args.dtype}"
        )
    text = render(quantities, losses, problem.spec, args.dtype, title)
    print(text)
    if args.html:
        args.html.write_text(html_page(text, title))
        print(f"\nwrote {args.html}")
    return 0
