"""The playground's GPT mode: the tiny GPT on a sequence task (copy, reverse, sort) or on the corpus,
trained on every backend and dtype like the MLP, with each head's attention map live.

Everything is bounded so one chunk stays within a few seconds on 2 cores: the vocabulary (the task's
digits and separator, or the corpus's characters), the sequence length, the width, heads, layers, the
samples and the steps per chunk. A bad value is the parser's error, naming the option, as in MLP mode.

    attention_view(s, lane, "31415")   # every layer's and head's (t × t) map for that input, and the
                                       # model's prediction at every position
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from shared.data import SEQUENCE_TASKS, CharTokenizer, char_windows, load_corpus, sequence_task
from shared.params import init_params
from shared.spec import GPTSpec

TASKS = (*SEQUENCE_TASKS, "corpus")
N_TEST = 200  # held-out sequences (seed + 1) for the test loss and accuracy; as many training ones for the train's
N_DIGITS = 10  # a sequence task's digits 0–9 (the separator is token 10)

GPT_DEFAULTS = {"n": 1000, "optimizer": "adam", "lr": 0.003, "batch_size": 32, "steps": 25, "every": 5}
"""The settings both models use, as the page sets them when it switches to the GPT: reverse with 4
digits reaches 100 % on held-out strings in about 600 steps (d = 32)."""

# Bounds: one chunk of a request within a few seconds of 2 cores, on every lane
MAX_LENGTH = 8  # a task's digits (its sequences are 2·length tokens) or the corpus's window
MAX_D_MODEL = 64
MAX_HEADS = 4
MAX_LAYERS = 2
MAX_SEQUENCES = 2000
MAX_GPT_WORK = 12 * 10**8  # steps × rows × tokens × params × lanes of one chunk: at most ~4 s on 2 cores


@dataclass
class GPTSetup:
    """A checked GPT config and its data: what a GPT run needs before any training (the fields the
    MLP's Setup has too are named the same, so runs.py trains both alike)."""

    config: dict
    spec: GPTSpec
    params: dict
    optimizer: object
    X_train: np.ndarray  # (n, t) tokens
    y_train: np.ndarray  # (n, t) next tokens
    X_test: np.ndarray
    y_test: np.ndarray
    lanes: list[tuple[str, str]]
    task: object  # the SequenceTask, or the corpus's CharTokenizer
    example: str  # an input to show attention for at first

    def encode(self, text: str) -> tuple[np.ndarray, np.ndarray | None]:
        """An input the learner typed as tokens X (1, t), and the targets Y (1, t) where they are known:
        a task's digits are followed by the separator and the true answer, as in training (teacher
        forcing); corpus characters are the input alone. ValueError saying what does not fit."""
        if isinstance(self.task, CharTokenizer):
            if not 1 <= len(text) <= self.spec.seq_len:
                raise ValueError(f"type 1 to {self.spec.seq_len} characters; got {len(text)}")
            return self.task.encode(text)[None, :], None
        k = self.task.length
        if len(text) != k or any(c not in "0123456789" for c in text):
            raise ValueError(f"type exactly {k} digits 0–9 (the {self.task.name} task's input); got {text!r}")
        digits = np.array([int(c) for c in text])
        answer = {"copy": digits, "reverse": digits[::-1]}.get(self.task.name, np.sort(digits, kind="stable"))
        sequence = np.concatenate([digits, [N_DIGITS], answer]).astype(np.int64)  # 2k + 1 tokens
        return sequence[None, :-1], sequence[None, 1:]

    def examples(self, k: int = 8) -> list[str]:
        """The first k held-out inputs, as the learner would type them (a task's digits, corpus text)."""
        if isinstance(self.task, CharTokenizer):
            return [self.task.decode(x) for x in self.X_test[:k]]
        return ["".join(self.decode(x[: self.task.length])) for x in self.X_test[:k]]

    def decode(self, tokens) -> list[str]:
        """Each token as the page shows it: a digit, | for the separator, or a character."""
        if isinstance(self.task, CharTokenizer):
            return [self.task.decode([t]) for t in tokens]
        return list(self.task.decode(tokens))

    def accuracy(self, logits: np.ndarray, Y: np.ndarray) -> float:
        """A task's answer accuracy (answer positions only), or the corpus's next-character accuracy."""
        if isinstance(self.task, CharTokenizer):
            return float((logits.argmax(-1) == Y).mean())
        answer = self.task.answer
        return float((logits[:, answer].argmax(-1) == Y[:, answer]).mean())


def add_gpt_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("GPT mode (--model gpt)")
    g.add_argument("--model", choices=("mlp", "gpt"), default="mlp", help="the MLP, or the tiny GPT (default: mlp)")
    g.add_argument("--task", choices=TASKS, default="reverse", help="what the GPT learns (default: reverse)")
    g.add_argument(
        "--length",
        type=int,
        default=4,
        help=f"a task's digits or the corpus's window (default 4, at most {MAX_LENGTH})",
    )
    g.add_argument("--d-model", type=int, default=32, help=f"the GPT's width (default: 32, at most {MAX_D_MODEL})")
    g.add_argument("--heads", type=int, default=2, help=f"attention heads (default: 2, at most {MAX_HEADS})")
    g.add_argument("--layers", type=int, default=1, help=f"blocks (default: 1, at most {MAX_LAYERS})")


def _check_bounds(parser, args) -> None:
    for option, value, low, high in (
        ("--length", args.length, 2, MAX_LENGTH),
        ("--d-model", args.d_model, 2, MAX_D_MODEL),
        ("--heads", args.heads, 1, MAX_HEADS),
        ("--layers", args.layers, 1, MAX_LAYERS),
    ):
        if not low <= value <= high:
            parser.error(f"{option} {value}: the playground's GPT takes {low} to {high}")
    if args.d_model % args.heads:
        parser.error(
            f"--d-model {args.d_model} must be a multiple of --heads {args.heads}: each head takes d/h columns"
        )
    if args.n is not None and not 10 <= args.n <= MAX_SEQUENCES:
        parser.error(f"--n {args.n}: the playground's GPT trains on 10 to {MAX_SEQUENCES} sequences")


def _data(args, n: int):
    """(task, X, Y, X_test, Y_test, example): a sequence task's strings, or corpus windows (the first 90 %
    of the text trains, the rest tests)."""
    if args.task == "corpus":
        text = load_corpus("genesis")
        tokenizer = CharTokenizer.from_text(text)
        ids, cut = tokenizer.encode(text), int(0.9 * len(text))
        X, Y = char_windows(ids[:cut], args.length, n, seed=args.seed)
        X_test, Y_test = char_windows(ids[cut:], args.length, N_TEST, seed=args.seed + 1)
        return tokenizer, X, Y, X_test, Y_test, tokenizer.decode(X_test[0])
    train = sequence_task(args.task, n=n, length=args.length, n_digits=N_DIGITS, seed=args.seed)
    test = sequence_task(args.task, n=N_TEST, length=args.length, n_digits=N_DIGITS, seed=args.seed + 1)
    return train, train.X, train.Y, test.X, test.Y, train.decode(test.X[0][: args.length])


def gpt_setup(parser, args, lanes: list[tuple[str, str]], config: dict, optimizer) -> GPTSetup:
    """--model gpt: the spec, the data and the optimizer; the bounds checked first (parser errors)."""
    _check_bounds(parser, args)
    n = args.n if args.n is not None else 1000
    task, X, Y, X_test, Y_test, example = _data(args, n)
    vocab = task.vocab_size
    spec = GPTSpec(vocab, X.shape[1], args.d_model, args.heads, args.layers, d_ff=4 * args.d_model)
    rows = args.batch_size or n
    if args.batch_size is not None and args.batch_size > n:
        parser.error(f"--batch-size {args.batch_size} is larger than the {n} training sequences")
    if (work := args.steps * rows * spec.seq_len * spec.n_params * len(lanes)) > MAX_GPT_WORK:
        parser.error(
            f"--steps {args.steps} × {rows} sequences × {spec.seq_len} tokens × {spec.n_params} params × "
            f"{len(lanes)} lanes is {work:.1e} per chunk, more than {MAX_GPT_WORK:.0e}: fewer steps, a smaller "
            "--batch-size or model, or fewer backends and dtypes"
        )
    config = config | {
        "model": "gpt",
        "task": args.task,
        "n": n,
        "length": args.length,
        "d_model": args.d_model,
        "heads": args.heads,
        "layers": args.layers,
        "vocab_size": vocab,
        "seq_len": spec.seq_len,
    }
    params = init_params(spec, seed=args.seed)
    return GPTSetup(config, spec, params, optimizer, X, Y, X_test, Y_test, lanes, task, example)


def attention_view(s: GPTSetup, lane, text: str | None) -> dict:
    """Every layer's and head's attention map for `text` (default: the setup's example) on `lane`'s
    params, by the lane's own framework, and its prediction (the argmax next token) at every position."""
    text = s.example if text is None else text
    X, Y = s.encode(text)
    be = lane.engine
    maps = be.attention_maps(s.spec, lane.params, X)  # per layer: (1, h, t, t)
    logits = be.forward(s.spec, lane.params, X)[0]  # (t, V)
    answer = [] if Y is None else list(range(s.task.length, s.spec.seq_len))  # where the answer is predicted
    return {
        "lane": lane.name,
        "text": text,
        "tokens": s.decode(X[0]),  # the input, position by position
        "maps": [P[0].astype(np.float64).tolist() for P in maps],  # [layer][head][query][key], exact
        "prediction": s.decode(logits.argmax(-1)),  # the next token the model picks at each position
        "target": None if Y is None else s.decode(Y[0]),
        "answer_positions": answer,
        "correct": None if Y is None else int(sum(logits[i].argmax() == Y[0, i] for i in answer)),
    }
