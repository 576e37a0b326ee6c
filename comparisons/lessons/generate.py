"""generate: one character-level GPT, trained on each backend, writing text side by side.

Trains the same tiny GPT from the same initial params on Genesis 1–11 (shared/corpus, King James
Version, public domain) on every backend, then samples from each with the same code: NumPy draws every
next character from the softmax of the backend's own `forward` logits, with the same seed. In float64
the backends train the same model, so the samples agree character for character; the finding says
whether they do, and where the first difference is if not.
"""

from __future__ import annotations

import numpy as np

from backends import get_backend
from comparisons.core.options import (
    add_seed_options,
    int_range,
    make_parser,
    non_negative_float,
    positive_float,
    seed_range,
    step_count,
)
from comparisons.core.output import BACKEND_COLORS, note, publish, pyplot
from comparisons.core.problem import installed, single_threaded
from shared.data import CharTokenizer, char_windows, load_corpus
from shared.optim import Adam
from shared.params import init_params
from shared.spec import GPTSpec
from shared.trajectory import TrainingDiverged

PROMPT = "And God said"
FINAL_STEPS = 20
"""The final training loss is the mean of this many last minibatch losses: one minibatch alone is noisy."""


def sample(be, spec: GPTSpec, params, prompt_ids: np.ndarray, length: int, temperatures, seed: int) -> np.ndarray:
    """(len(temperatures), length) tokens after the prompt, one row per temperature, all rows in one
    `forward` call per character. Each next token is drawn from softmax(logits / temperature) of the last
    position (temperature 0: the argmax, greedy). The window slides: at most spec.seq_len tokens in."""
    rng = np.random.default_rng(seed)
    ids = np.tile(prompt_ids, (len(temperatures), 1))  # (rows, prompt)
    for _ in range(length):
        logits = be.forward(spec, params, ids[:, -spec.seq_len :])[:, -1].astype(np.float64)  # (rows, V)
        nxt = []
        for z, temperature in zip(logits, temperatures):
            u = rng.random()  # drawn for every row, so a row's draws do not depend on the others' temperatures
            if temperature == 0:
                nxt.append(int(z.argmax()))
                continue
            p = np.exp((z - z.max()) / temperature)
            nxt.append(min(int(np.searchsorted(np.cumsum(p / p.sum()), u, side="right")), len(p) - 1))
        ids = np.concatenate([ids, np.array(nxt)[:, None]], axis=1)
    return ids[:, len(prompt_ids) :]


def first_difference(texts: list[str]) -> int | None:
    """The first character index at which the texts are not all the same (None if identical)."""
    for i, chars in enumerate(zip(*texts)):
        if len(set(chars)) > 1:
            return i
    return None if len({len(t) for t in texts}) == 1 else min(map(len, texts))


def run(
    backends=("numpy", "torch", "jax"),
    steps: int = 300,
    seq_len: int = 32,
    d_model: int = 48,
    heads: int = 4,
    layers: int = 2,
    lr: float = 3e-3,
    batch_size: int = 32,
    length: int = 120,
    temperature: float = 0.8,
    dtype: str = "float64",
    seed: int = 0,
) -> dict:
    text = load_corpus("genesis")
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text)
    X, Y = char_windows(ids, seq_len, n=4096, seed=seed)  # (4096, t): the training windows
    Xv, Yv = char_windows(ids, seq_len, n=256, seed=seed + 1)  # held-out windows (same text: a fit check)
    spec = GPTSpec(tok.vocab_size, seq_len, d_model, heads, layers, activation="relu")
    params = init_params(spec, seed=seed)
    prompt = tok.encode(PROMPT)
    runs = {}
    for name in backends:
        be = get_backend(name, dtype)
        with single_threaded():
            traj = be.train(spec, params, X, Y, Adam(lr), steps, batch_size=batch_size, seed=seed)
            logits = be.forward(spec, traj.params, Xv)  # (256, t, V)
            greedy, sampled = sample(be, spec, traj.params, prompt, length, (0.0, temperature), seed)
        z = logits - logits.max(-1, keepdims=True)
        log_probs = z - np.log(np.exp(z).sum(-1, keepdims=True))
        runs[name] = {
            "losses": traj.losses,
            "final_loss": float(traj.losses[-FINAL_STEPS:].mean()),
            "window_loss": float(-np.take_along_axis(log_probs, Yv[..., None], -1).mean()),
            "greedy": tok.decode(greedy),
            "sampled": tok.decode(sampled),
            "seconds": traj.meta.get("wall_time_s"),
        }
    return {
        "spec": spec,
        "tokenizer": tok,
        "n_chars": len(text),
        "steps": steps,
        "lr": lr,
        "batch_size": batch_size,
        "temperature": temperature,
        "dtype": dtype,
        "seed": seed,
        "unigram_loss": unigram_loss(ids),
        "runs": runs,
    }


def seeds_finding(losses: list[tuple[int, float, float]], backend: str, steps: int) -> str:
    """The training and held-out losses over the seeds, as ranges: (seed, final loss, window loss) each."""
    which = seed_range(losses[0][0], len(losses))
    final, window = [x[1] for x in losses], [x[2] for x in losses]
    return (
        f"Over {which} on {backend}, after {steps} steps: training loss {min(final):.2f}–{max(final):.2f} (mean of "
        f"the last {FINAL_STEPS} minibatch losses), held-out windows {min(window):.2f}–{max(window):.2f}."
    )


def unigram_loss(ids: np.ndarray) -> float:
    """The loss of a model that knows only how often each character occurs: the entropy of the text's
    character frequencies, in nats. A model below it has learned something about order."""
    p = np.bincount(ids) / len(ids)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def agreement(r: dict, kind: str) -> tuple[bool, int | None]:
    texts = [x[kind] for x in r["runs"].values()]
    at = first_difference(texts)
    return at is None, at


def finding(r: dict) -> str:
    runs = r["runs"]
    lines = [
        f"Genesis 1–11 ({r['n_chars']:,} characters, {r['spec'].vocab_size} distinct), {r['spec'].describe()}, "
        f"Adam {r['lr']:g}, {r['steps']} steps of {r['batch_size']} windows, {r['dtype']}, seed {r['seed']}, the "
        f"same init on every backend. A model that knew only character frequencies would score "
        f"{r['unigram_loss']:.3f}; uniform guessing ln {r['spec'].vocab_size} = {np.log(r['spec'].vocab_size):.3f}."
    ]
    for name, x in runs.items():
        lines.append(
            f"{name}: final training loss {x['final_loss']:.4f} (mean of the last {FINAL_STEPS} minibatch losses), "
            f"loss on 256 other windows {x['window_loss']:.4f}."
        )
    if len(runs) > 1:
        losses = np.array([x["final_loss"] for x in runs.values()])
        lines.append(f"Final losses differ by at most {np.ptp(losses):.1e}.")
        for kind, what in (("greedy", "Greedy samples"), (
            "sampled",
            f"Samples at temperature {r['temperature']:g} (same seed)",
        )):  # fmt: skip
            same, at = agreement(r, kind)
            lines.append(
                f"{what} are identical on {', '.join(runs)}."
                if same
                else f"{what} first differ at character {at}: the backends trained different models, or their "
                "logits differ enough to tip one draw."
            )
    return "\n".join(lines)


def plot(r: dict):
    plt = pyplot()
    runs = r["runs"]
    fig = plt.figure(figsize=(12, 4.6 + 0.3 * len(runs) * 2), layout="constrained")
    grid = fig.add_gridspec(2, 1, height_ratios=[3.4, 0.3 * len(runs) * 2 + 0.3])
    ax = fig.add_subplot(grid[0])
    styles = {"numpy": ("-", 3.0), "torch": ("--", 1.8), "jax": (":", 1.8)}
    for name, x in runs.items():
        ls, lw = styles.get(name, ("-", 1.5))
        steps = np.arange(1, len(x["losses"]) + 1)
        ax.plot(
            steps, x["losses"], color=BACKEND_COLORS[name], ls=ls, lw=lw * 0.6, alpha=0.45, label=f"{name}: each step"
        )
    last = len(x["losses"])
    for name, x in runs.items():  # the number the finding reports, drawn where it is measured
        ax.hlines(x["final_loss"], max(last - FINAL_STEPS, 0) + 1, last, color=BACKEND_COLORS[name], lw=3, zorder=3)
    ax.annotate(
        f"reported: mean of the last {FINAL_STEPS} steps, {x['final_loss']:.2f}",
        (last, x["final_loss"]),
        xytext=(-6, 12),
        textcoords="offset points",
        ha="right",
        fontsize=9,
    )
    ax.axhline(r["unigram_loss"], color="k", ls="--", lw=1)
    ax.text(len(x["losses"]), r["unigram_loss"], "character frequencies only", ha="right", va="bottom", fontsize=9)
    ax.set_xlabel("training step")
    ax.set_ylabel("minibatch loss (nats per character)")
    ax.set_title(f"Training loss from the same init, {r['dtype']} ({r['spec'].describe()})", fontsize=10)
    ax.legend(loc="upper right")
    ax = fig.add_subplot(grid[1])
    ax.axis("off")
    y = 1.0
    step = 1.0 / (2 * len(runs) + 0.5)
    for kind, label in (("greedy", "greedy"), ("sampled", f"T={r['temperature']:g}")):
        for name, x in runs.items():
            shown = (PROMPT + x[kind]).replace("\n", " ⏎ ")[:118]
            ax.text(0, y, f"{name:>5} {label:>6}: {shown}", family="monospace", fontsize=8.5, va="top",
                    color=BACKEND_COLORS[name])  # fmt: skip
            y -= step
    ax.set_title(f'Samples after the prompt "{PROMPT}": the same sampling code and seed, each backend\'s logits')
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("generate", __doc__.split("\n\n")[1], None)
    parser.add_argument("--steps", type=step_count, default=300, help="training steps (default: 300)")
    parser.add_argument("--seq-len", type=int_range(2, 256), default=32, help="context in characters (default: 32)")
    parser.add_argument("--d-model", type=int_range(1, 256), default=48, help="residual width (default: 48)")
    parser.add_argument("--heads", type=int_range(1, 8), default=4, help="attention heads (default: 4)")
    parser.add_argument("--layers", type=int_range(1, 4), default=2, help="transformer blocks (default: 2)")
    parser.add_argument("--lr", type=positive_float, default=3e-3, help="Adam's learning rate (default: 0.003)")
    parser.add_argument("--batch-size", type=int_range(1, 4096), default=32, help="windows per step (default: 32)")
    parser.add_argument("--length", type=int_range(1, 2000), default=120, help="characters to sample (default: 120)")
    parser.add_argument("--temperature", type=non_negative_float, default=0.8, help="0 is greedy (default: 0.8)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="default: float64")
    what = "seeds (init, windows, batches): the first on every backend, each further one on the first backend"
    add_seed_options(parser, 3, what, ("--seed",))
    args = parser.parse_args(argv)
    if args.d_model % args.heads:
        parser.error(f"--d-model {args.d_model} must be divisible by --heads {args.heads}")
    backends = installed(args.backends)
    if not backends:
        parser.error(f"--backends {','.join(args.backends)}: none of them is installed")
    note(f"training a character GPT on Genesis on {', '.join(backends)}")
    settings = (args.steps, args.seq_len, args.d_model, args.heads, args.layers, args.lr, args.batch_size,
                args.length, args.temperature, args.dtype)  # fmt: skip
    try:
        r = run(backends, *settings, args.first_seed)
        losses = [(args.first_seed, r["runs"][backends[0]]["final_loss"], r["runs"][backends[0]]["window_loss"])]
        for seed in range(args.first_seed + 1, args.first_seed + args.seeds):  # the spread, on one backend
            note(f"seed {seed} on {backends[0]}")
            x = run([backends[0]], *settings, seed)["runs"][backends[0]]
            losses.append((seed, x["final_loss"], x["window_loss"]))
    except TrainingDiverged as e:
        parser.error(f"--lr {args.lr:g}: training diverged at step {e.step} ({e.quantity}); try a smaller --lr")
    numbers = {
        "spec": r["spec"].describe(),
        "vocabulary": r["tokenizer"].chars,
        "unigram_loss": r["unigram_loss"],
        "runs": r["runs"],
        "over_seeds": [{"seed": seed, "final_loss": a, "window_loss": b} for seed, a, b in losses],
    }
    publish(args.out, "generate", plot(r), numbers, finding(r) + "\n" + seeds_finding(losses, backends[0], args.steps))
    return 0
