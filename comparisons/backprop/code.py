"""code: one concept, three implementations, side by side.

Prints how NumPy (by hand), torch and JAX each implement a concept — the linear layer, an activation,
a loss, an optimizer, a training step, and the tiny GPT's embedding, layer norm, softmax, attention
and block — in three aligned columns that fit the terminal (one after
another when it is narrow). The code is read from the backend files themselves, so it is never
stale; no framework is imported to do it. --html FILE writes the same as a page with highlighting.
"""

from __future__ import annotations

import argparse
import ast
import html
import shutil
import textwrap
import unicodedata
from pathlib import Path

from backends import BACKENDS
from comparisons.core.options import backend_list, int_range, output_file
from shared.spec import ACTIVATIONS, LOSSES

BACKENDS_DIR = Path(__file__).resolve().parents[2] / "backends"
MODULES = ("mlp", "optim", "train", "parallel", "backend")
"""Where a symbol is looked for, in each backend's folder (backends/numpy/, ...), first match wins: the
same file names in all three. The GPT's concepts look in gpt.py first."""
GPT_MODULES = ("gpt", *MODULES)

# concept -> (one line for the listing, {backend: [symbols]}). A symbol is a top-level function, class
# or assignment ("mlp"), a method ("TorchBackend._train_steps"), or one entry of a dict ("LOSSES:bce").
CONCEPTS: dict[str, tuple[str, dict[str, list[str]]]] = {
    "linear": (
        "the affine layer Z = X·W + b and its gradients",
        {"numpy": ["linear_forward", "linear_backward"], "torch": ["MLP"], "jax": ["mlp"]},
    ),
    **{
        act: (
            f"the {act} activation and its derivative",
            {
                "numpy": [f"{act}_forward", f"{act}_backward"]
                if act != "gelu"
                else ["_std_normal_cdf", "gelu_forward", "gelu_backward"],
                "torch": [f"ACTIVATIONS:{act}"],
                "jax": [f"ACTIVATIONS:{act}"],
            },
        )
        for act in ACTIVATIONS
    },
    **{
        loss: (
            f"the {loss} loss and its gradient with respect to the logits",
            {
                "numpy": (
                    [f"{loss}_forward", f"{loss}_backward"]
                    if loss != "softmax_ce"
                    else ["_log_softmax", "softmax_ce_forward", "softmax_ce_backward"]
                ),
                "torch": [f"LOSSES:{loss}"],
                "jax": [f"LOSSES:{loss}"],
            },
        )
        for loss in LOSSES
    },
    "backprop": (
        "the whole network's forward pass and its gradient: by hand, autograd, jax.grad",
        {
            "numpy": ["mlp_forward", "mlp_backward", "loss_and_grads"],
            # each column shows the forward it differentiates, as the NumPy one does
            "torch": ["MLP", "build_model", "TorchBackend._loss_and_grads"],
            "jax": ["mlp", "loss_fn", "loss_and_grads"],
        },
    ),
    "sgd": (
        "SGD with momentum and weight decay",
        {"numpy": ["SGDUpdate"], "torch": ["make_optimizer"], "jax": ["make_optimizer"]},
    ),
    "adam": ("Adam and AdamW", {"numpy": ["AdamUpdate"], "torch": ["make_optimizer"], "jax": ["make_optimizer"]}),
    "train_step": (
        "one training step: the loss, every gradient, the optimizer's update (train.py)",
        {"numpy": ["train_step"], "torch": ["loss_fn", "train_step"], "jax": ["loss_fn", "train_step"]},
    ),
    "all_reduce": (
        "data parallelism: every worker's gradient averaged by an all-reduce (parallel.py; train(..., workers=N))",
        {
            "numpy": ["Ring.all_reduce_mean", "Ring._exchange", "mean_over_workers"],
            "torch": ["join", "wrap", "average_gradients"],
            "jax": ["batch_mesh", "value_and_grad"],
        },
    ),
    "accumulate": (
        "gradient accumulation: k micro-batches, one backward each, one update (train(..., accumulate=k))",
        {"numpy": ["accumulated"], "torch": ["accumulate_gradients"], "jax": ["accumulated"]},
    ),
    "engine_loop": (
        "the engine's loop: train_step run n at a time, keeping the recorded losses and norms (backend.py)",
        {
            "numpy": ["NumpyBackend._train_steps"],
            "torch": ["TorchBackend._train_steps"],
            "jax": ["train_chunk", "JaxBackend._train_steps"],
        },
    ),
}

# The tiny GPT's pieces, read from backends/*_transformer.py. torch and JAX compute each piece inside a
# module or function (the softmax inside attention), so their columns show that module or function.
TRANSFORMER_CONCEPTS: dict[str, tuple[str, dict[str, list[str]]]] = {
    "embedding": (
        "GPT: token + position embeddings, and the backward that adds into repeated tokens' rows",
        {
            "numpy": ["embedding_forward", "embedding_backward"],
            "torch": ["GPT.__init__", "GPT.forward"],
            "jax": ["gpt"],
        },
    ),
    "layernorm": (
        "GPT: layer norm (x − μ)·rstd·g + b and its three-term backward",
        {"numpy": ["layernorm_forward", "layernorm_backward"], "torch": ["Block"], "jax": ["layernorm"]},
    ),
    "softmax": (
        "GPT: the attention softmax and its backward P ⊙ (dP − Σ dP⊙P)",
        {
            "numpy": ["softmax_forward", "softmax_backward"],
            "torch": ["CausalSelfAttention.forward"],
            "jax": ["attention_weights"],
        },
    ),
    "attention": (
        "GPT: causal multi-head self-attention, forward and backward",
        {
            "numpy": ["split_heads", "merge_heads", "attention_forward", "attention_backward"],
            "torch": ["CausalSelfAttention"],
            "jax": ["heads", "attention_weights", "attention"],
        },
    ),
    "attention_maps": (
        "GPT: every block's attention probabilities P, as each framework's forward computes them",
        {"numpy": ["attention_maps"], "torch": ["attention_maps"], "jax": ["attention_maps"]},
    ),
    "block": (
        "GPT: the pre-LN block x + attn(ln1(x)), then + mlp(ln2(x)), and its residual backward",
        {"numpy": ["block_forward", "block_backward"], "torch": ["Block"], "jax": ["block"]},
    ),
}
CONCEPTS.update(TRANSFORMER_CONCEPTS)


def locate(backend: str, concept: str, symbol: str) -> Path:
    """The file of `backend`'s folder that defines `symbol` (see MODULES for the order)."""
    for module in GPT_MODULES if concept in TRANSFORMER_CONCEPTS else MODULES:
        path = BACKENDS_DIR / backend / f"{module}.py"
        try:
            extract(path.read_text(), symbol)
        except KeyError:
            continue
        return path
    raise KeyError(f"{symbol!r} is in none of backends/{backend}/{{{', '.join(MODULES)}}}.py")


def source_files(concept: str) -> dict[str, str]:
    """{backend: the files a concept's code is read from, as its column's header says them}."""
    _, symbols = CONCEPTS[concept]
    out = {}
    for backend, names in symbols.items():
        files = list(dict.fromkeys(locate(backend, concept, name).name for name in names))
        out[backend] = f"backends/{backend}/" + " + ".join(files)
    return out


def _span(node: ast.AST) -> tuple[int, int]:
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    return first, node.end_lineno


def extract(source: str, symbol: str) -> str:
    """The source lines of one symbol (see CONCEPTS) in a module's source."""
    tree = ast.parse(source)
    lines = source.splitlines()
    name, _, key = symbol.partition(":")
    outer, _, method = name.partition(".")
    for node in tree.body:
        names = [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else []
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
        if outer not in names:
            continue
        if method:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == method:
                    start, end = _span(item)
                    return textwrap.dedent("\n".join(lines[start - 1 : end]))
            break
        if key:
            for k, v in zip(node.value.keys, node.value.values):
                if isinstance(k, ast.Constant) and k.value == key:
                    return "\n".join(line.strip() for line in lines[k.lineno - 1 : v.end_lineno])
            break
        start, end = _span(node)
        return "\n".join(lines[start - 1 : end])
    raise KeyError(f"{symbol!r} not found")


def concept_code(concept: str) -> dict[str, str]:
    """{backend: source text} for one concept."""
    _, symbols = CONCEPTS[concept]
    out = {}
    for backend, names in symbols.items():
        out[backend] = "\n\n".join(extract(locate(backend, concept, name).read_text(), name) for name in names)
    return out


def display_width(text: str) -> int:
    """Terminal columns of `text`: a combining mark (the ^ over m̂) sits on the letter before it and
    takes no column of its own."""
    return sum(not unicodedata.combining(c) for c in text)


def _fit(text: str, width: int) -> int:
    """The longest prefix text[:i] that takes at most `width` columns, with its combining marks."""
    columns = 0
    for i, c in enumerate(text):
        if not unicodedata.combining(c):
            if columns == width:
                return i
            columns += 1
    return len(text)


# Where a long line may be broken, best first: after a space, after punctuation or an operator, after
# the dot of an attribute; never right after a comment's #. Only when none is found in the last two
# thirds is a name cut in two.
BREAKS = (" ", ",;([{=+-*/%<>|&@:", ".")


def _break(text: str, width: int) -> int:
    """Where the first piece of `text` ends: within `width` columns, at the best break there is."""
    end = _fit(text, width)
    if end == len(text):
        return end
    for chars in BREAKS:
        for i in range(end, max(1, end // 3), -1):  # the piece is text[:i]
            if text[i - 1] in chars and text[i - 2 : i - 1] != "#" and not unicodedata.combining(text[i]):
                return i
    return end


def _wrap(line: str, width: int) -> list[str]:
    """`line` in pieces of at most `width` columns; the continuations indented and marked ↪."""
    if display_width(line) <= width:
        return [line]
    indent = min(len(line) - len(line.lstrip()), width // 2)
    lead = " " * indent + "↪ "
    end = _break(line, width)
    pieces, rest = [line[:end].rstrip()], line[end:].lstrip()
    while rest:
        end = _break(rest, width - len(lead))
        pieces.append(lead + rest[:end].rstrip())
        rest = rest[end:].lstrip()
    return pieces


def _pad(text: str, width: int) -> str:
    return text + " " * (width - display_width(text))


def columns(code: dict[str, str], width: int, files: dict[str, str] | None = None) -> str:
    """Side by side when each column gets ≥ 40 characters, one after another otherwise; each headed by
    its backend and, when given, its files (`files`, from source_files)."""
    files = files or {}
    names = list(code)
    gap = " │ "
    col = (width - len(gap) * (len(names) - 1)) // len(names)
    if col < 40:
        parts = []
        for name in names:
            rule = "─" * min(width, 80)
            text = "\n".join(piece for line in code[name].splitlines() for piece in _wrap(line, width))
            parts.append(f"{rule}\n{name}: {files.get(name, '')}\n{rule}\n{text}")
        return "\n\n".join(parts)
    blocks = [
        [f"{name}: {files.get(name, '')}"[:col].rstrip(" :"), "─" * col]
        + [piece for line in code[name].splitlines() for piece in _wrap(line, col)]
        for name in names
    ]
    height = max(map(len, blocks))
    rows = []
    for i in range(height):
        cells = [_pad(b[i] if i < len(b) else "", col) for b in blocks]
        rows.append(gap.join(cells).rstrip())
    return "\n".join(rows)


def html_page(concept: str, code: dict[str, str]) -> str:
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        formatter = HtmlFormatter(nowrap=False)
        render = lambda text: highlight(text, PythonLexer(), formatter)  # noqa: E731
        style = formatter.get_style_defs(".highlight")
    except ImportError:  # no pygments: plain, escaped code
        render = lambda text: f"<pre>{html.escape(text)}</pre>"  # noqa: E731
        style = ""
    cells = "".join(
        f"<section><h2>{name} <small>{source_files(concept)[name]}</small></h2>{render(text)}</section>"
        for name, text in code.items()
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>trigrad: {html.escape(concept)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; }}
main {{ display: grid; grid-template-columns: repeat({len(code)}, minmax(0, 1fr)); gap: 1rem; }}
section {{ border: 1px solid #ddd; border-radius: 6px; padding: 0 0.8rem; overflow-x: auto; }}
pre {{ font-size: 12px; line-height: 1.35; }}
h2 small {{ color: #888; font-weight: normal; font-size: 0.7em; }}
{style}
</style></head>
<body><h1>{html.escape(concept)}: {html.escape(CONCEPTS[concept][0])}</h1><main>{cells}</main></body></html>
"""


MIN_WIDTH, MAX_WIDTH = 40, 1000  # narrower than one column is unreadable; wider is no terminal


def listing() -> str:
    width = max(map(len, CONCEPTS))
    lines = ["concepts (python -m comparisons code <concept>):"]
    lines += [f"  {name:<{width}}  {summary}" for name, (summary, _) in CONCEPTS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m comparisons code",
        description=__doc__.split("\n\n")[1],
        epilog=listing(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--backends",
        type=backend_list,
        default=list(BACKENDS),
        help="comma-separated columns to show (default: numpy,torch,jax)",
    )
    parser.add_argument("concept", nargs="?", help="what to show; leave out to list the concepts")
    parser.add_argument(
        "--html",
        type=output_file,
        metavar="FILE",
        help="also write the comparison as an HTML page (its folder must exist)",
    )
    parser.add_argument(
        "--width",
        type=int_range(MIN_WIDTH, MAX_WIDTH),
        default=None,
        help=f"characters per line, {MIN_WIDTH} to {MAX_WIDTH} (default: the terminal's)",
    )
    args = parser.parse_args(argv)
    if args.concept is None:
        print(listing())
        return 0
    if args.concept not in CONCEPTS:
        parser.error(f"unknown concept {args.concept!r}; choose from {', '.join(CONCEPTS)}")
    code = {name: text for name, text in concept_code(args.concept).items() if name in args.backends}
    width = args.width or max(MIN_WIDTH, shutil.get_terminal_size((160, 40)).columns)
    print(f"{args.concept}: {CONCEPTS[args.concept][0]}\n")
    print(columns(code, width, source_files(args.concept)))
    if args.html:
        args.html.write_text(html_page(args.concept, code))
        print(f"\nwrote {args.html}")
    return 0
