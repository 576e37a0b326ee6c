"""graph: the computation graph each framework builds for one loss evaluation, side by side.

NumPy's tape is what its forward recorded in the cache (the ops in order, with shapes) and the
backward functions that read it in reverse; torch's is the autograd graph behind `loss.grad_fn`
(each node's name, what it saved for backward, the parameters at its leaves); JAX's is
`jax.make_jaxpr` of the loss and of its gradient. Text always, one DOT file always, and an SVG when
graphviz's `dot` is installed (never required).
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from backends.numpy import mlp as nb
from comparisons.core.options import make_parser
from comparisons.core.output import report, save_json
from comparisons.core.problem import XOR, build_problem, installed
from shared.params import named_leaves
from shared.spec import MLPSpec


@dataclass
class Graph:
    """Nodes (id -> label lines) and edges (from id, to id), in the order found. For the figure, each
    node also has a role (forward, backward, param, output) and may have a shorter label."""

    nodes: dict[str, list[str]] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    roles: dict[str, str] = field(default_factory=dict)
    short: dict[str, list[str]] = field(default_factory=dict)

    def kinds(self) -> Counter:
        return Counter(lines[0] for lines in self.nodes.values())


def _dims(shape) -> str:
    return "×".join(map(str, shape)) or "scalar"


def _shape(a) -> str:
    return _dims(np.shape(a))


# ---- NumPy: the tape is the cache ----


def numpy_tape(spec: MLPSpec, params, X, y) -> Graph:
    """The forward ops in order (from mlp_forward's cache), then the backward functions in reverse."""
    y_hat, cache = nb.mlp_forward(spec, params, X)
    g, previous = Graph(), None

    def add(key, lines):
        nonlocal previous
        g.nodes[key] = lines
        g.roles[key] = "backward" if "backward" in lines[0] else "forward"
        g.short[key] = lines[:2]
        if previous:
            g.edges.append((previous, key))
        previous = key

    for l, (A_in, Z, _) in enumerate(cache):
        inp = "X" if l == 0 else f"A{l - 1}"
        add(
            f"np_f{l}",
            ["linear_forward", f"Z{l} = {inp}·W{l} + b{l}", f"{_shape(A_in)} · {_shape(params[l]['W'])} → {_shape(Z)}"],
        )
        if l < spec.n_layers - 1:
            fwd = nb.ACTIVATIONS[spec.activations[l]][0].__name__
            add(f"np_a{l}", [fwd, f"A{l} = f(Z{l})", f"{_shape(Z)}; cache[{l}] = (A_in, Z, A)"])
    loss_forward, loss_backward = nb.LOSSES[spec.loss]
    add("np_loss", [loss_forward.__name__, f"L = {spec.loss}(ŷ, y)", f"{_shape(y_hat)} → scalar"])
    add("np_dloss", [loss_backward.__name__, "dL/dŷ", _shape(y_hat)])
    for l in reversed(range(spec.n_layers)):
        if l < spec.n_layers - 1:
            bwd = nb.ACTIVATIONS[spec.activations[l]][1].__name__
            add(f"np_b{l}", [bwd, f"dL/dZ{l} = dL/dA{l} ⊙ f′(Z{l})", f"reads cache[{l}]: Z, A {_shape(cache[l][1])}"])
        grads = "dW, db" + (", dX" if l > 0 else "")
        add(f"np_lb{l}", ["linear_backward", f"{grads} from dL/dZ{l}", f"reads cache[{l}]: A_in {_shape(cache[l][0])}"])
    return g


# ---- torch: walk loss.grad_fn and next_functions ----


def torch_graph(spec: MLPSpec, params, X, y) -> tuple[Graph, float]:
    import torch  # noqa: PLC0415 (optional)

    from backends.torch import backend as tb  # noqa: PLC0415

    model = tb.build_model(spec, params, torch.float64)
    names = {id(tensor): (name, transposed) for name, (tensor, transposed) in model.canonical().items()}
    loss = tb.mlp.LOSSES[spec.loss](model(tb.to_torch(X)), tb.to_torch(y))
    g, ids, stack = Graph(), {}, [loss.grad_fn]
    while stack:
        fn = stack.pop(0)
        if fn in ids:
            continue
        ids[fn] = key = f"t{len(ids)}"
        lines = [type(fn).__name__]
        g.roles[key] = "backward"
        if hasattr(fn, "variable"):  # AccumulateGrad: a leaf, one of the parameters
            name, transposed = names.get(id(fn.variable), ("?", False))
            stored = _shape(fn.variable) + (" (out, in)" if transposed else "")
            lines.append(f"{name}.grad += …  stored {stored}")
            g.roles[key], g.short[key] = "param", [f"{name}.grad +=", stored]
        for attr in sorted(a for a in dir(fn) if a.startswith("_saved_") and not a.endswith(("sizes", "strides"))):
            value = getattr(fn, attr)
            if isinstance(value, torch.Tensor):
                lines.append(f"saved {attr.removeprefix('_saved_')}: {_shape(value)}")
        g.nodes[key] = lines
        for nxt, _ in fn.next_functions:
            if nxt is not None:
                stack.append(nxt)
    for fn, key in ids.items():
        for nxt, _ in fn.next_functions:
            if nxt is not None:
                g.edges.append((key, ids[nxt]))
    return g, float(loss.item())


# ---- JAX: the jaxpr of the loss and of its gradient ----


def jax_jaxprs(spec: MLPSpec, params, X, y):
    import jax  # noqa: PLC0415 (optional)

    from backends.jax import train as jax_train  # noqa: PLC0415

    with jax.enable_x64(True):
        loss = lambda p: jax_train.loss_fn(spec, p, np.asarray(X), np.asarray(y))  # noqa: E731
        return jax.make_jaxpr(loss)(params), jax.make_jaxpr(jax.grad(loss))(params)


def _is_var(v) -> bool:
    return not hasattr(v, "val")  # a Literal (a constant written into the equation) has .val


def jaxpr_graph(closed, inputs=None, outputs=None, constants=None) -> Graph:
    """The top-level equations of a jaxpr as nodes, an edge wherever one's output is another's input.

    With `inputs` (names of the jaxpr's arguments, e.g. the params), `outputs` (of its results) and
    `constants` (of the arrays it closed over, e.g. X and y), those become nodes too. An equation is
    "backward" when it descends from one that reads only literals: in jax.grad's jaxpr, that is the
    seed dL/dL = 1 (scaled by 1/n for a mean loss)."""
    g, producer, seeded = Graph(), {}, set()
    named = list(zip(constants or [], closed.jaxpr.constvars)) + list(zip(inputs or [], closed.jaxpr.invars))
    for name, v in named:
        key = f"jin{len(producer)}"
        g.nodes[key], g.roles[key] = [name, _dims(v.aval.shape)], "param"
        producer[v] = key
    for i, eqn in enumerate(closed.jaxpr.eqns):
        key = f"j{i}"
        ins = " · ".join(_dims(v.aval.shape) for v in eqn.invars)
        outs = ", ".join(_dims(v.aval.shape) for v in eqn.outvars)
        g.nodes[key] = [eqn.primitive.name, f"{ins} → {outs}"]
        parents = [producer[v] for v in eqn.invars if _is_var(v) and v in producer]
        g.edges += [(parent, key) for parent in parents]
        if not any(_is_var(v) for v in eqn.invars) or any(parent in seeded for parent in parents):
            seeded.add(key)
        g.roles[key] = "backward" if key in seeded else "forward"
        called = eqn.params.get("name")  # a jit-wrapped helper (log_sigmoid, ...): say which
        g.short[key] = [f"{eqn.primitive.name} {called}" if called else eqn.primitive.name, outs]
        for v in eqn.outvars:
            producer[v] = key
    for name, v in zip(outputs or [], closed.jaxpr.outvars):
        key = f"jout{len(g.nodes)}"
        g.nodes[key], g.roles[key] = [name, _dims(v.aval.shape)], "output"
        if _is_var(v) and v in producer:
            g.edges.append((producer[v], key))
    return g


def _which(constant, X, y) -> str:
    """'X' or 'y' for an array a jaxpr closed over, by value."""
    for name, a in (("X", X), ("y", y)):
        if np.shape(constant) == np.shape(a) and np.array_equal(constant, a):
            return name
    return "constant"


# ---- output ----


ROLE_STYLE = {  # the figure's colours: forward blue, backward orange, parameters green
    "forward": 'style="rounded,filled", fillcolor="#dbe9f6"',
    "backward": 'style="rounded,filled", fillcolor="#fde3c8"',
    "param": 'shape=ellipse, style=filled, fillcolor="#d5f0d5"',
    "output": 'shape=ellipse, style=filled, fillcolor="#d5f0d5", penwidth=2',
}
LEGEND = "blue: forward   orange: backward   green: inputs (parameters, data) and gradients"
CLUSTER_TITLES = {
    "numpy": ("NumPy: the tape", "forward ops from the cache, then the backward functions"),
    "torch": ("torch: the autograd graph", "loss.grad_fn → next_functions → AccumulateGrad"),
    "jax": ("JAX: the jaxpr of jax.grad(loss)", "forward and backward as one program"),
}


def _quoted(lines: list[str]) -> str:
    return "\\n".join(t.replace("\\", "\\\\").replace('"', '\\"') for t in lines)


def to_dot(graphs: dict[str, Graph], title: str = "") -> str:
    """One cluster per backend, side by side, each read top to bottom; short labels, coloured by role."""
    lines = [
        "digraph trigrad {",
        "  rankdir=TB; newrank=true; nodesep=0.25; ranksep=0.3;",
        f'  label="{_quoted([title, LEGEND])}";',
        '  labelloc=t; fontname="Helvetica"; fontsize=14;',
        '  node [shape=box, style=rounded, fontname="monospace", fontsize=9, height=0.3, margin="0.08,0.03"];',
        '  edge [arrowsize=0.6, color="#555555"];',
    ]
    for name, g in graphs.items():
        lines.append(f"  subgraph cluster_{name} {{")
        lines.append(f'    label="{_quoted(list(CLUSTER_TITLES.get(name, (name,))))}"; fontsize=12;')
        for key, text in g.nodes.items():
            style = ROLE_STYLE.get(g.roles.get(key, ""), "")
            lines.append(f'    {key} [label="{_quoted(g.short.get(key, text))}"{", " + style if style else ""}];')
        lines += [f"    {a} -> {b};" for a, b in g.edges]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def graph_text(title: str, g: Graph) -> str:
    lines = [title]
    for text in g.nodes.values():
        lines.append(f"  {text[0]:<38} {' · '.join(text[1:])}".rstrip())
    return "\n".join(lines)


def build_graphs(spec, params, X, y, backends: list[str]) -> tuple[dict, list[str], dict]:
    """Each installed backend's graph of one loss evaluation: (graphs, printed texts, numbers for JSON)."""
    graphs, texts, numbers = {}, [], {}
    if "numpy" in backends:
        graphs["numpy"] = numpy_tape(spec, params, X, y)
        texts.append(
            graph_text("NumPy: the tape (forward ops from the cache, then the backward functions)", graphs["numpy"])
        )
    if "torch" in backends:
        graphs["torch"], _ = torch_graph(spec, params, X, y)
        texts.append(graph_text("torch: the autograd graph from loss.grad_fn (what each node saved)", graphs["torch"]))
    if "jax" in backends:
        loss_jaxpr, grad_jaxpr = jax_jaxprs(spec, params, X, y)
        names = [name for name, _ in named_leaves(params)]
        data = [_which(c, X, y) for c in grad_jaxpr.consts]  # the loss closes over X and y
        graphs["jax"] = jaxpr_graph(grad_jaxpr, names, [f"dL/d{name}" for name in names], data)
        texts.append(f"JAX: jax.make_jaxpr of the loss\n{loss_jaxpr}")
        texts.append(graph_text("JAX: jax.make_jaxpr of jax.grad(loss), top-level equations", graphs["jax"]))
        numbers["jaxpr_loss"], numbers["jaxpr_grad"] = str(loss_jaxpr), str(grad_jaxpr)
    return graphs, texts, numbers


def write_graph_files(graphs: dict, title: str, out) -> list:
    """out/graph.dot, and out/graph.svg where Graphviz's dot is installed; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    dot_path = out / "graph.dot"
    dot_path.write_text(to_dot(graphs, title))
    paths = [dot_path]
    if shutil.which("dot"):
        svg = out / "graph.svg"
        done = subprocess.run(["dot", "-Tsvg", str(dot_path), "-o", str(svg)], capture_output=True, text=True)
        paths += [svg] if done.returncode == 0 else []
    return paths


def graph_finding(spec, graphs: dict) -> str:
    """How the three graphs line up, counted from the graphs themselves."""
    L = spec.n_layers
    parts = [
        f"Each of the {L} linear layers is one node in every graph: NumPy's linear_forward "
        "(whose backward is linear_backward)"
    ]
    if "torch" in graphs:
        kinds = graphs["torch"].kinds()
        parts.append(
            f"torch's AddmmBackward0 ({kinds['AddmmBackward0']}, each with a TBackward0 for nn.Linear's "
            f"(out, in) weight), {kinds['AccumulateGrad']} AccumulateGrad leaves, one per parameter"
        )
    if "jax" in graphs:
        n_dot = graphs["jax"].kinds()["dot_general"]
        parts.append(
            f"JAX's dot_general: {L} in the forward and {n_dot - L} in the gradient's jaxpr, a pair (dW and dX) per "
            "layer but the first, whose dX nothing needs"
        )
    return "; ".join(parts) + ". Activations map one to one (tanh_backward ↔ TanhBackward0 ↔ tanh)."


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(
        "graph",
        __doc__.split("\n\n")[1],
        XOR,
        training="none",
        epilog="examples:\n  python -m comparisons graph\n  python -m comparisons graph --spec 2,8,8,1:relu:bce",
    )
    args = parser.parse_args(argv)
    problem = build_problem(parser, args)
    if problem.spec.n_layers > 8:
        parser.error(f"--sizes: {problem.spec.n_layers} layers; graph draws at most 8")
    spec, params, X, y = problem.spec, problem.params, problem.X, problem.y
    graphs, texts, numbers = build_graphs(spec, params, X, y, installed(args.backends))
    if not graphs:
        parser.error("--backends: none of them is installed here")
    numbers = {"problem": f"{problem.data.name}, {spec.describe()}", **numbers}
    what = f"{problem.data.name} (n={len(X)}), {spec.describe()}"
    print(f"Computation graphs of one loss evaluation: {what}\n")
    print("\n\n".join(texts))
    paths = write_graph_files(graphs, f"One loss evaluation and its gradient: {what}", args.out)
    numbers["graphs"] = {name: {"nodes": g.nodes, "edges": g.edges} for name, g in graphs.items()}
    paths.append(save_json(numbers, args.out, "graph"))
    report(paths, textwrap.fill(graph_finding(spec, graphs), 100))
    return 0
