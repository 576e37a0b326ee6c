"""attention: what does attention learn? A tiny GPT on reversing digit strings, on every backend.

Trains the same 1-layer GPT from the same initial params on every backend to reverse strings of digits
(or copy or sort them: --task), laid out as `3 1 4 1 5 | 5 1 4 1 3` (shared/data.py, SequenceTask).
To write answer digit i the model must look back at input digit k−1−i: query position k+i attends key
position k−1−i, the anti-diagonal of the attention map. The figure shows every head's attention map on
every backend for one held-out string, the loss curves against the floor that the unpredictable input
digits put under the loss, and the accuracy of each answer digit; the finding measures, over every
held-out string, the share of each head's attention that falls on the key the answer comes from.

The attention probabilities are recomputed from each backend's trained params with the NumPy pieces
(backends/numpy/gpt.py attention_forward), since torch and JAX do not return theirs; the recomputed logits
are checked against each backend's own forward and the largest difference is printed.
"""

from __future__ import annotations

import numpy as np

from backends import get_backend
from backends.numpy import gpt as nt
from comparisons.core.options import (
    add_seed_options,
    int_range,
    make_parser,
    positive_float,
    seed_range,
    step_count,
)
from comparisons.core.output import BACKEND_COLORS, note, publish, pyplot
from comparisons.core.problem import installed, single_threaded
from shared.data import SEQUENCE_TASKS, SequenceTask, sequence_task
from shared.optim import Adam
from shared.params import init_params, map_params
from shared.spec import GPTSpec
from shared.trajectory import TrainingDiverged

N_TEST = 500  # held-out strings (seed + 1) on which accuracy and attention shares are measured
LEARNED = 0.5  # a head "points at the source" when over half its attention from answer queries lands there


def attention_maps(spec: GPTSpec, params: dict, X: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Each layer's attention probabilities P (n, h, t, t), from the NumPy pieces, and the logits."""
    x = nt.embedding_forward(params["tok_emb"], params["pos_emb"], X)  # (n, t, d)
    maps = []
    for p in params["blocks"]:
        h1, _ = nt.layernorm_forward(x, p["ln1"]["g"], p["ln1"]["b"])
        _, cache = nt.attention_forward(h1, p["attn"], spec.n_heads)
        maps.append(cache[4])  # P: (n, h, t, t), query i's weights over keys j ≤ i
        x, _ = nt.block_forward(x, p, spec)
    h, _ = nt.layernorm_forward(x, params["ln_f"]["g"], params["ln_f"]["b"])
    return maps, nt.linear_forward(h, params["head"]["W"], params["head"]["b"])  # (n, t, V)


def source_share(P: np.ndarray, task: SequenceTask) -> np.ndarray:
    """(h,): for each head, the mean over strings and answer queries of the weight that query k+i puts
    on key source[s, i], the input digit that answer i copies (the anti-diagonal for reverse)."""
    n, k = len(task), task.length
    queries = np.arange(k, 2 * k)  # (k,)
    picked = P[np.arange(n)[:, None, None], :, queries[None, :, None], task.source[:, :, None]]  # (n, k, 1, h)
    return picked.reshape(n, k, -1).mean(axis=(0, 1))  # (h,)


def uniform_share(task: SequenceTask) -> float:
    """The share a head that attends evenly to every visible key would put on the source: query k+i
    sees k+i+1 keys."""
    k = task.length
    return float(np.mean(1.0 / (np.arange(k, 2 * k) + 1)))


def run(
    task_name: str = "reverse",
    backends: list[str] | tuple[str, ...] = ("numpy", "torch", "jax"),
    length: int = 5,
    layers: int = 1,
    heads: int = 2,
    d_model: int = 32,
    steps: int = 400,
    lr: float = 3e-3,
    batch_size: int = 64,
    n: int = 2000,
    dtype: str = "float64",
    seed: int = 0,
) -> dict:
    """Train the same spec from the same params on each backend; measure on N_TEST held-out strings."""
    train = sequence_task(task_name, n=n, length=length, seed=seed)
    test = sequence_task(task_name, n=N_TEST, length=length, seed=seed + 1)
    spec = GPTSpec(train.vocab_size, train.seq_len, d_model, heads, layers, activation="relu")
    params = init_params(spec, seed=seed)
    runs = {}
    for name in backends:
        be = get_backend(name, dtype)
        with single_threaded():
            traj = be.train(spec, params, train.X, train.Y, Adam(lr), steps, batch_size=batch_size, seed=seed)
        trained = _as_float64(traj.params)
        maps, logits = attention_maps(spec, trained, test.X)
        own = be.forward(spec, traj.params, test.X)  # (n, t, V): the backend's own forward
        correct = logits[:, test.answer].argmax(-1) == test.Y[:, test.answer]  # (n, k)
        runs[name] = {
            "losses": traj.losses,
            "final_loss": float(traj.losses[-10:].mean()),
            "test_loss": float(nt.softmax_ce_forward(logits, test.Y)),
            "accuracy": float(correct.mean()),
            "accuracy_per_digit": correct.mean(axis=0),  # (k,)
            "strings_right": float(correct.all(axis=1).mean()),
            "share": [source_share(P, test) for P in maps],  # per layer: (h,)
            "maps": maps,
            "params": trained,
            "recompute_gap": float(np.abs(logits - own).max()),
            "seconds": traj.meta.get("wall_time_s"),
        }
    return {
        "task": task_name,
        "spec": spec,
        "train": train,
        "test": test,
        "dtype": dtype,
        "steps": steps,
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "uniform": uniform_share(test),
        "runs": runs,
    }


def over_seeds(r: dict, backend: str, seeds: int, **settings) -> list[dict]:
    """The lesson's claim over seeds: r's own run of `backend` for its seed, then one run per further
    seed on that backend alone. Per seed: the share of answer digits right, the best head's share of
    attention on the source key, and the other heads' shares."""
    rows = []
    for seed in range(r["seed"], r["seed"] + seeds):
        x = r["runs"][backend] if seed == r["seed"] else run(backends=[backend], seed=seed, **settings)["runs"][backend]
        shares = sorted((float(s) for layer in x["share"] for s in layer), reverse=True)
        rows.append({"seed": seed, "accuracy": x["accuracy"], "best": shares[0], "others": shares[1:]})
    return rows


def seeds_finding(rows: list[dict], backend: str, uniform: float) -> str:
    """One sentence: the spread over the seeds of what the single-seed finding states."""
    acc = [100 * x["accuracy"] for x in rows]
    best = [100 * x["best"] for x in rows]
    others = [100 * v for x in rows for v in x["others"]]
    span = seed_range(rows[0]["seed"], len(rows))
    text = (
        f"Over {span} on {backend}: answer digits right {min(acc):.1f}–{max(acc):.1f} %; the best head puts "
        f"{min(best):.0f}–{max(best):.0f} % of its attention on the source key (spread evenly: {100 * uniform:.0f} %)"
    )
    if others:
        text += f"; the other heads {min(others):.0f}–{max(others):.0f} %"
    return text + "."


def _as_float64(params):
    """The trained params in float64 (float32 runs are measured with the float64 NumPy pieces)."""
    return map_params(lambda a: np.asarray(a, np.float64), params)


def best_head(run_: dict) -> tuple[int, int, float]:
    """(layer, head, share) of the head with the largest share of attention on the source."""
    layer, head = max(
        ((l, h) for l, s in enumerate(run_["share"]) for h in range(len(s))), key=lambda lh: run_["share"][lh[0]][lh[1]]
    )
    return layer, head, float(run_["share"][layer][head])


def map_gaps(r: dict) -> dict[str, float]:
    """The largest |ΔP| between the first backend's attention maps and each other's."""
    names = list(r["runs"])
    first = r["runs"][names[0]]["maps"]
    return {
        f"{names[0]} vs {b}": float(max(np.abs(a - c).max() for a, c in zip(first, r["runs"][b]["maps"])))
        for b in names[1:]
    }


def loss_gap(r: dict) -> float | None:
    """The largest difference between the backends' loss curves (None with one backend)."""
    curves = [x["losses"] for x in r["runs"].values()]
    if len(curves) < 2 or len({len(c) for c in curves}) > 1:
        return None
    return float(max(np.abs(c - curves[0]).max() for c in curves[1:]))


WHERE = {"reverse": "the anti-diagonal", "copy": "the diagonal k to the left", "sort": "the sorted digit's key"}


def finding(r: dict) -> str:
    test, k = r["test"], r["test"].length
    floor = test.loss_floor
    lines = [
        f"{r['task'].capitalize()} of {k}-digit strings, {r['spec'].describe()}, Adam {r['lr']:g}, {r['steps']} "
        f"steps of {r['batch_size']}, {r['dtype']}, seed {r['seed']}; measured on {len(test)} held-out strings. "
        f"The loss cannot go below {floor:.3f}: {k - 1} of the {2 * k} positions predict the next random input digit."
    ]
    for name, x in r["runs"].items():
        layer, head, share = best_head(x)
        shares = "; ".join(
            f"layer {l + 1}: " + ", ".join(f"{100 * s:.0f} %" for s in layer_shares)
            for l, layer_shares in enumerate(x["share"])
        )
        lines.append(
            f"{name}: answer digits {100 * x['accuracy']:.1f} % right ({100 * x['strings_right']:.1f} % of strings "
            f"entirely), final loss {x['final_loss']:.3f} (floor + {x['final_loss'] - floor:.3f}); share of attention "
            f"on the source key per head: {shares}; best head L{layer + 1}H{head + 1} {100 * share:.0f} %, against "
            f"{100 * r['uniform']:.0f} % for attention spread evenly."
        )
    if len(r["runs"]) > 1:
        gaps = ", ".join(f"{pair} {gap:.1e}" for pair, gap in map_gaps(r).items())
        lines.append(f"Largest difference between the backends' attention maps: {gaps}.")
    learned = [n for n, x in r["runs"].items() if best_head(x)[2] > LEARNED]
    if learned:
        lines.append(
            f"On {', '.join(learned)} a head puts most of its attention on {WHERE[r['task']]}: the attention "
            "map is the algorithm, read off the weights."
        )
    return "\n".join(lines)


def plot(r: dict):
    plt = pyplot()
    runs, test = r["runs"], r["test"]
    names = list(runs)
    n_layers, n_heads = r["spec"].n_layers, r["spec"].n_heads
    rows = n_layers * n_heads  # one row per (layer, head), one column per backend
    cols = max(len(names), 2)
    fig = plt.figure(figsize=(3.3 * cols + 1.2, 3.2 * rows + 3.4), layout="constrained")
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[1] * rows + [1.0])
    example = 0
    tokens = [test.decode([t]) for t in test.X[example]]
    _map_panels(fig, grid, r, example, tokens)
    bottom = grid[rows, :].subgridspec(1, 2, width_ratios=[1.5, 1])
    _loss_panel(fig.add_subplot(bottom[0]), r)
    _accuracy_panel(fig.add_subplot(bottom[1]), r)
    example_text = " ".join(tokens) + " " + test.decode([test.Y[example, -1]])
    rule = {"reverse": "input digit k−1−i: the anti-diagonal", "copy": "input digit i", "sort": "the i-th smallest"}
    fig.suptitle(
        f"What does attention learn? {r['task'].capitalize()}: {example_text}   (answer digit i reads "
        f"{rule[r['task']]}; green circles)\n"
        f"A held-out string. Attention recomputed with the NumPy pieces from each backend's trained params; "
        f"{r['dtype']}, {r['spec'].describe()}",
        fontsize=10,
    )
    return fig


def _map_panels(fig, grid, r: dict, example: int, tokens: list[str]) -> None:
    """One attention map per backend (column) and layer and head (row), for one held-out string, the
    source key of each answer digit circled."""
    runs, test, k = r["runs"], r["test"], r["test"].length
    names = list(runs)
    n_layers, n_heads = r["spec"].n_layers, r["spec"].n_heads
    rows = n_layers * n_heads
    t = len(tokens)
    src = test.source[example]  # the key each answer digit comes from
    image = None
    map_axes = []
    for col, name in enumerate(names):
        for l in range(n_layers):
            for h in range(n_heads):
                row = l * n_heads + h
                ax = fig.add_subplot(grid[row, col])
                map_axes.append(ax)
                P = runs[name]["maps"][l][example, h]  # (t, t)
                image = ax.imshow(np.where(np.tril(np.ones((t, t))) > 0, P, np.nan), cmap="magma", vmin=0, vmax=1)
                ax.scatter(src, np.arange(k, 2 * k), s=80, facecolors="none", edgecolors="#2ca02c", linewidths=1.6)
                ax.set_xticks(range(t), tokens, fontsize=8)
                ax.set_yticks(range(t), tokens, fontsize=8)
                ax.axhline(k - 0.5, color="#888", lw=0.8)
                ax.text(t - 0.6, k - 0.8, "input ↑  answer ↓", ha="right", va="bottom", fontsize=7, color="#666")
                ax.grid(False)
                share = runs[name]["share"][l][h]
                label = f"layer {l + 1} head {h + 1}" if n_layers > 1 else f"head {h + 1}"
                ax.set_title(f"{name}: {label}\n{100 * share:.0f} % of answer attention on the source", fontsize=9)
                if col == 0:
                    ax.set_ylabel("query (the position reading)", fontsize=8)
                if row == rows - 1:
                    ax.set_xlabel("key (the position read)", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=map_axes, shrink=0.6, label="attention weight (each row sums to 1)")


def _loss_panel(ax, r: dict) -> None:
    """The minibatch loss of every backend from the same init, and the floor no model can beat."""
    runs, test = r["runs"], r["test"]
    styles = {"numpy": ("-", 3.0), "torch": ("--", 1.8), "jax": (":", 1.8)}
    for name, x in runs.items():
        steps = np.arange(1, len(x["losses"]) + 1)
        ls, lw = styles.get(name, ("-", 1.5))
        ax.plot(steps, x["losses"], color=BACKEND_COLORS[name], ls=ls, lw=lw, label=name)
    ax.axhline(test.loss_floor, color="k", ls="--", lw=1)
    ax.text(
        len(steps), test.loss_floor, f"floor {test.loss_floor:.3f}: the random input digits\n", ha="right", va="bottom"
    )
    gap = loss_gap(r)
    same = f"; the curves differ by at most {gap:.0e}" if gap is not None else ""
    ax.set_xlabel("training step")
    ax.set_ylabel("minibatch loss (all positions)")
    ax.set_title(f"Loss, from the same init on every backend{same}", fontsize=10)
    ax.legend(loc="upper right")


def _accuracy_panel(ax, r: dict) -> None:
    """Accuracy per answer digit on the held-out strings, per backend, against guessing."""
    runs, test, k = r["runs"], r["test"], r["test"].length
    names = list(runs)
    width = 0.8 / len(names)
    for i, (name, x) in enumerate(runs.items()):
        ax.bar(
            np.arange(k) + (i - (len(names) - 1) / 2) * width,
            100 * x["accuracy_per_digit"],
            width,
            color=BACKEND_COLORS[name],
            label=f"{name}: {100 * x['accuracy']:.1f} %",
        )
    ax.axhline(100 / test.n_digits, color="k", ls=":", lw=1)
    ax.set_xticks(range(k), [f"{i + 1}" for i in range(k)])
    ax.set_xlabel("answer digit")
    ax.set_ylim(0, 105)
    ax.set_ylabel(f"% right, {len(test)} held-out strings")
    ax.set_title("Accuracy per answer digit (dotted: guessing)", fontsize=10)
    # beside the axes, not over them: the bars reach 100 % and the guessing line runs the full width
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), title="all answer digits", fontsize=9, title_fontsize=9)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("attention", __doc__.split("\n\n")[1], None)
    parser.add_argument("--task", choices=SEQUENCE_TASKS, default="reverse", help="default: reverse")
    parser.add_argument("--length", type=int_range(2, 12), default=5, help="digits per string (default: 5)")
    parser.add_argument("--layers", type=int_range(1, 4), default=1, help="transformer blocks (default: 1)")
    parser.add_argument("--heads", type=int_range(1, 8), default=2, help="attention heads (default: 2)")
    parser.add_argument("--d-model", type=int_range(1, 256), default=32, help="residual width (default: 32)")
    parser.add_argument("--steps", type=step_count, default=400, help="training steps (default: 400)")
    parser.add_argument("--lr", type=positive_float, default=3e-3, help="Adam's learning rate (default: 0.003)")
    parser.add_argument("--batch-size", type=int_range(1, 4096), default=64, help="strings per step (default: 64)")
    parser.add_argument("--n", type=int_range(1, 100_000), default=2000, help="training strings (default: 2000)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="default: float64")
    add_seed_options(
        parser, 5, "seeds: the first on every backend (the figure), each further one on the first", ("--seed",)
    )
    args = parser.parse_args(argv)
    if args.d_model % args.heads:
        parser.error(f"--d-model {args.d_model} must be divisible by --heads {args.heads}")
    if args.batch_size > args.n:
        parser.error(f"--batch-size {args.batch_size} is larger than --n {args.n} training strings")
    backends = installed(args.backends)
    if not backends:
        parser.error(f"--backends {','.join(args.backends)}: none of them is installed")
    note(f"training a {args.layers}-layer GPT to {args.task} digit strings on {', '.join(backends)}")
    settings = dict(
        task_name=args.task, length=args.length, layers=args.layers, heads=args.heads, d_model=args.d_model,
        steps=args.steps, lr=args.lr, batch_size=args.batch_size, n=args.n, dtype=args.dtype,
    )  # fmt: skip
    try:
        r = run(backends=backends, seed=args.first_seed, **settings)
        if args.seeds > 1:
            note(f"and {args.seeds - 1} more seeds on {backends[0]}")
        seeds = over_seeds(r, backends[0], args.seeds, **settings)
    except TrainingDiverged as e:
        parser.error(f"--lr {args.lr:g}: training diverged at step {e.step} ({e.quantity}); try a smaller --lr")
    numbers = {
        "task": r["task"],
        "spec": r["spec"].describe(),
        "loss_floor": r["test"].loss_floor,
        "uniform_share": r["uniform"],
        "map_gaps": map_gaps(r) if len(backends) > 1 else {},
        "over_seeds": seeds,
        "runs": {
            name: {key: x[key] for key in x if key not in ("maps", "losses", "params")} | {"losses": x["losses"]}
            for name, x in r["runs"].items()
        },
    }
    publish(
        args.out, "attention", plot(r), numbers, finding(r) + "\n" + seeds_finding(seeds, backends[0], r["uniform"])
    )
    return 0
