"""What every comparison command shares: its options, the problem they describe, output files.

A command builds an argparse parser with `make_parser`, turns the parsed options into a `Problem`
(dataset, spec, initial params, optimizer) with `build_problem`, and writes its figures and numbers
with `save_figure` / `save_json`. Errors in options go through `parser.error`: a usage line and a
message that names the option, never a traceback.

A command made with `make_parser(..., gpt=True)` also takes `--model gpt`: the problem is then a tiny
GPT (`--gpt V,T,d,h,L[:ACT]`) learning next-token prediction on `strides`, sequences that count up
modulo V by a stride of 1–3 (see `strides`); the MLP-only options (--dataset, --sizes, ...) refuse it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backends import BACKENDS, available_backends, get_backend
from shared.data import DATASETS, Dataset, make_dataset
from shared.optim import SGD, Adam, AdamW, Optimizer
from shared.params import Params, init_params, named_leaves
from shared.spec import ACTIVATIONS, GPT_ACTIVATIONS, LOSSES, GPTSpec, MLPSpec
from shared.training import MAX_STEPS
from shared.trajectory import Trajectory

BACKEND_COLORS = {"numpy": "#1f77b4", "torch": "#d62728", "jax": "#2ca02c"}
"""One colour per backend in every figure (blue numpy, red torch, green jax)."""

PAIR_COLORS = {("numpy", "torch"): "#9467bd", ("numpy", "jax"): "#17becf", ("torch", "jax"): "#ff7f0e"}

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")


@dataclass(frozen=True)
class Defaults:
    """A command's default problem: small enough that a plain call finishes well under a minute."""

    dataset: str = "xor"
    n: int | None = None  # None: the generator's default (xor: the exact 4 points)
    noise: float | None = None
    sizes: tuple[int, ...] = (2, 4, 1)
    activation: str = "tanh"
    loss: str = "bce"
    optimizer: str = "sgd"
    lr: float = 0.5
    steps: int = 500
    batch_size: int | None = None


XOR = Defaults()
SPIRALS = Defaults(
    dataset="spirals",
    n=300,
    noise=0.1,
    sizes=(2, 16, 16, 3),
    loss="softmax_ce",
    optimizer="adam",
    lr=0.01,
    steps=1000,
)


@dataclass(frozen=True)
class GPTDefaults:
    """The default GPT problem: trains in a few seconds per backend and dtype, and learns (the loss
    falls from ln 8 = 2.08 to about 0.13 in 50 Adam steps)."""

    gpt: tuple = (8, 8, 16, 2, 1)  # vocab_size, seq_len, d_model, n_heads, n_layers
    activation: str = "gelu"
    n: int = 32  # sequences
    optimizer: str = "adam"  # SGD on this model spikes and stalls; Adam is how transformers train
    lr: float = 0.01
    steps: int = 50
    batch_size: int | None = None


GPT = GPTDefaults()

MAX_LAYERS = 16  # transformer blocks: the comparisons' GPT has 1


@dataclass(frozen=True)
class TokenData:
    """Token sequences for a GPT: inputs X (n, t) and next-token targets y (n, t), both int64."""

    name: str
    X: np.ndarray
    y: np.ndarray
    vocab_size: int

    def __len__(self) -> int:
        return len(self.X)


def strides(n: int, vocab_size: int, seq_len: int, seed: int = 0) -> TokenData:
    """n sequences that count up modulo V from a random start by a random stride (1, 2 or 3, less
    when V is small): 3 6 1 4 7 2 ... for V = 8. The target at each position is the next token. The
    first target needs the stride, which the model cannot know yet; from the second token on, it can
    read the stride off the previous tokens: attention has something to learn."""
    rng = np.random.default_rng(seed)
    start = rng.integers(0, vocab_size, size=(n, 1))  # (n, 1)
    stride = rng.integers(1, max(2, min(4, vocab_size)), size=(n, 1))  # (n, 1)
    tokens = (start + stride * np.arange(seq_len + 1)) % vocab_size  # (n, t + 1)
    return TokenData("strides", tokens[:, :-1].astype(np.int64), tokens[:, 1:].astype(np.int64), vocab_size)


@dataclass
class Problem:
    data: Dataset | TokenData
    spec: MLPSpec | GPTSpec
    params: Params
    X: np.ndarray
    y: np.ndarray
    optimizer: Optimizer
    steps: int
    seed: int
    batch_size: int | None

    def train(self, backend: str, dtype: str = "float64", **kwargs) -> Trajectory:
        """This problem trained on one backend; kwargs go to Backend.train (record_every, ...)."""
        return get_backend(backend, dtype).train(
            self.spec,
            self.params,
            self.X,
            self.y,
            self.optimizer,
            self.steps,
            batch_size=self.batch_size,
            seed=self.seed,
            **kwargs,
        )

    def describe(self) -> str:
        batch = "full batch" if self.batch_size is None else f"batch {self.batch_size}"
        if isinstance(self.spec, GPTSpec):
            what = f"{len(self.X)} sequences of {self.X.shape[1]} tokens"
        else:
            what = f"n={len(self.X)}"
        return (
            f"{self.data.name} ({what}), {self.spec.describe()}, {self.optimizer.describe()}, "
            f"{self.steps} steps, {batch}, seed {self.seed}"
        )


# ---- option types: each rejects bad values with a message argparse shows next to the usage ----


def _number(convert, ok, expected: str):
    """An argparse type: `convert` the text, then check `ok`; either failure names what was expected."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    return parse


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "an integer ≥ 0")
positive_float = _number(float, lambda v: np.isfinite(v) and v > 0, "a finite number > 0")
non_negative_float = _number(float, lambda v: np.isfinite(v) and v >= 0, "a finite number ≥ 0")


def int_range(low: int, high: int):
    """An argparse type: an integer from `low` to `high`, both included."""
    return _number(int, lambda v: low <= v <= high, f"an integer from {low:,} to {high:,}")


MAX_SEEDS = 1000
"""The most seeds a lesson runs: a typo's extra zeros are a usage error, not a run of hours."""


def add_seed_options(
    parser: argparse.ArgumentParser, default: int, what: str = "seeds", aliases: tuple[str, ...] = ()
) -> None:
    """--seeds N and --first-seed S: a lesson's finding is computed over seeds S … S+N−1, so it can be
    re-checked on seeds it was never tuned on (`--first-seed 100`). `what` says what one seed is;
    `aliases` are older names of --first-seed that keep working (--seed)."""
    parser.add_argument(
        "--seeds",
        type=int_range(1, MAX_SEEDS),
        default=default,
        help=f"how many {what}, 1 to {MAX_SEEDS} (default: {default})",
    )
    parser.add_argument(
        "--first-seed",
        *aliases,
        dest="first_seed",
        type=int_range(0, 2**31 - 1 - MAX_SEEDS),
        default=0,
        help="the first seed; the finding is computed over --first-seed … --first-seed + --seeds − 1 (default: 0)",
    )


def seed_range(first: int, count: int) -> str:
    """'seeds 0–9' or 'seed 3': the seeds a finding was computed over, as its text states them."""
    return f"seed {first}" if count == 1 else f"seeds {first}–{first + count - 1}"


# Bounds that turn a typo (an extra three zeros) into a usage error instead of an allocation of
# gigabytes or a run of days. Every command's problem is a toy: far below each of them.
MAX_SAMPLES = 1_000_000
MAX_WIDTH = 4096  # the benchmarks' largest layer is 1024
MAX_FLOATS = 10**8  # samples × Σ widths: the activations of one forward pass, 800 MB in float64


def positive_int_up_to(maximum: int):
    """An argparse type: a positive integer, at most `maximum`."""

    def parse(text: str) -> int:
        value = positive_int(text)
        if value > maximum:
            raise argparse.ArgumentTypeError(f"expected at most {maximum:,}, got {text}")
        return value

    return parse


step_count = positive_int_up_to(MAX_STEPS)  # shared.training.MAX_STEPS: the most one `train` call runs
sample_count = positive_int_up_to(MAX_SAMPLES)


def layer_sizes(text: str) -> tuple[int, ...]:
    """'2,16,16,1' (or 2x16x16x1) -> (2, 16, 16, 1): at least two widths, each from 1 to MAX_WIDTH."""
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths like 2,16,16,1; got {text!r}") from None
    if len(sizes) < 2:
        raise argparse.ArgumentTypeError(f"expected at least 2 widths like 2,16,1 (input to output); got {text!r}")
    if bad := [size for size in sizes if not 1 <= size <= MAX_WIDTH]:
        raise argparse.ArgumentTypeError(f"every width must be from 1 to {MAX_WIDTH}; got {bad[0]} in {text!r}")
    return sizes


def spec_shorthand(text: str) -> tuple:
    """'2,4,1:tanh:bce' -> ((2, 4, 1), 'tanh', 'bce'); activation and loss may be left off."""
    parts = text.split(":")
    if len(parts) > 3:
        raise argparse.ArgumentTypeError(f"expected SIZES[:ACTIVATION[:LOSS]] like 2,4,1:tanh:bce; got {text!r}")
    sizes = layer_sizes(parts[0])
    for value, valid, what in zip(parts[1:], (ACTIVATIONS, LOSSES), ("activation", "loss")):
        if value not in valid:
            raise argparse.ArgumentTypeError(f"unknown {what} {value!r} in --spec; expected one of {', '.join(valid)}")
    return (sizes, *parts[1:])


def gpt_shorthand(text: str) -> tuple:
    """'8,8,16,2,1:gelu' -> ((8, 8, 16, 2, 1), 'gelu'): vocab_size, seq_len, d_model, n_heads, n_layers,
    and optionally the MLP activation; each checked here, so a bad --gpt fails before any work."""
    shape = "V,T,d,h,L[:ACT] like 8,8,16,2,1:gelu"
    sizes, _, act = text.partition(":")
    try:
        values = tuple(int(p) for p in sizes.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {shape}; got {text!r}") from None
    if len(values) != 5:
        raise argparse.ArgumentTypeError(f"expected 5 numbers, {shape}; got {text!r}")
    V, T, d, h, L = values
    for name, value, low, high in (
        ("V (vocab_size)", V, 2, MAX_WIDTH),
        ("T (seq_len)", T, 1, MAX_WIDTH),
        ("d (d_model)", d, 1, MAX_WIDTH),
        ("h (n_heads)", h, 1, d),
        ("L (n_layers)", L, 1, MAX_LAYERS),
    ):
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{name} must be from {low} to {high}; got {value} in {text!r}")
    if d % h:
        raise argparse.ArgumentTypeError(f"d = {d} must be divisible by h = {h} (each head takes d/h columns)")
    if act and act not in GPT_ACTIVATIONS:
        raise argparse.ArgumentTypeError(f"unknown activation {act!r}; expected one of {', '.join(GPT_ACTIVATIONS)}")
    return (values, act) if act else (values,)


def name_list(valid):
    """An argparse type for comma-separated names, each one of `valid`."""

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",")]
        if not all(name in valid for name in names):  # an empty entry ("", "a,,b", ",") is not a name
            raise argparse.ArgumentTypeError(f"expected names from {', '.join(valid)}; got {text!r}")
        return names

    return parse


backend_list = name_list(BACKENDS)


def _writable_folder(folder: Path) -> str | None:
    """Why files cannot be written in the existing folder `folder`, or None when they can. Tried, not
    guessed from permission bits: root passes every permission check, and /proc refuses what it allows."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as e:
        return f"cannot write in {str(folder)!r}: {e.strerror or e}"


def output_folder(text: str) -> Path:
    """An argparse type for --out: a folder that exists and takes files, or can be created. Checked at
    parse time, so a bad --out fails in the first second rather than after the work. Nothing is created
    here: the nearest existing folder above is tried instead."""
    path = Path(text)
    if (top := path.resolve().parts[1:2]) in (("proc",), ("sys",)):  # kernel views: writes there mean something else
        raise argparse.ArgumentTypeError(f"{text!r} is under /{top[0]}, which takes no files")
    existing = path
    while not existing.exists():
        if existing.is_symlink():  # a dangling link: creating the folder would fail
            raise argparse.ArgumentTypeError(f"{str(existing)!r} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        where = "is" if existing == path else f"is inside {str(existing)!r}, which is"
        raise argparse.ArgumentTypeError(f"{text!r} {where} a file, not a folder")
    if problem := _writable_folder(existing):
        raise argparse.ArgumentTypeError(problem)
    return path


def output_file(text: str) -> Path:
    """An argparse type for a file to write (code --html): its folder must exist and take files, and
    the path must not be a folder itself."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; expected a file name like page.html")
    folder = path.parent
    if not folder.is_dir():
        missing = "is a file" if folder.exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"the folder {str(folder)!r} of {text!r} {missing}")
    if problem := _writable_folder(folder):
        raise argparse.ArgumentTypeError(problem)
    return path


def make_parser(
    prog: str,
    description: str,
    defaults: Defaults | None,
    epilog: str = "",
    one_backend: bool = False,
    gpt: bool | GPTDefaults = False,
    training: str = "run",
) -> argparse.ArgumentParser:
    """A parser with --out and --backends (or --backend, for the lessons, which run one), plus the
    problem options when `defaults` is given, and --model/--gpt when `gpt` is (True: the common GPT
    defaults; a GPTDefaults: the command's own). With `gpt`, the options whose default depends on the
    model default to None here; build_problem fills them in from the same defaults the help states.

    `training` says which training options a command offers, so none is offered and silently unused:
    "run" (--optimizer, --lr, --steps, --batch-size), "step" (one full-batch step: --optimizer, --lr),
    or "none" (no update at all); the options left out keep their defaults."""
    if training not in ("run", "step", "none"):
        raise ValueError(f"training must be 'run', 'step' or 'none'; got {training!r}")
    parser = argparse.ArgumentParser(
        prog=f"python -m comparisons {prog}",
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", type=output_folder, default="out", metavar="DIR", help="folder for figures and numbers (default: out/)"
    )
    if one_backend:
        parser.add_argument(
            "--backend", choices=BACKENDS, default="numpy", help="the backend to train with (default: numpy)"
        )
    else:
        parser.add_argument(
            "--backends",
            type=backend_list,
            default=list(BACKENDS),
            help="comma-separated backends to run (default: all installed of numpy,torch,jax)",
        )
    if defaults is None:
        return parser
    d = defaults
    g = parser.add_argument_group("the problem")

    def default(value):  # with --model, build_problem fills in the chosen model's default
        return None if gpt else value

    def both(mlp: str, transformer: str) -> str:
        return f"{mlp}; gpt: {transformer}" if gpt else mlp

    G = gpt if isinstance(gpt, GPTDefaults) else GPT
    if gpt:
        parser.set_defaults(mlp_defaults=d, gpt_defaults=G)
        g.add_argument(
            "--model",
            choices=("mlp", "gpt"),
            default=None,
            help="mlp (default), or gpt: a tiny transformer on next-token prediction (--gpt sets it)",
        )
        shape = ",".join(map(str, G.gpt))
        g.add_argument(
            "--gpt",
            type=gpt_shorthand,
            default=None,
            metavar="V,T,d,h,L[:ACT]",
            help=f"the transformer: vocab, sequence length, width, heads, blocks (default: {shape}:{G.activation})",
        )
    dataset = "(mlp only)" if gpt else ""
    g.add_argument(
        "--dataset", choices=list(DATASETS), default=default(d.dataset), help=f"default: {d.dataset} {dataset}".strip()
    )
    n_help = both("samples (default: the dataset's; xor: its 4 points)", f"sequences (default: {G.n})")
    g.add_argument("--n", type=sample_count, default=default(d.n), help=n_help)
    g.add_argument("--noise", type=non_negative_float, default=default(d.noise), help="Gaussian noise of the samples")
    g.add_argument(
        "--sizes",
        type=layer_sizes,
        default=default(d.sizes),
        help=f"layer widths, input to output (default: {','.join(map(str, d.sizes))})",
    )
    g.add_argument(
        "--spec",
        type=spec_shorthand,
        default=None,
        metavar="SIZES[:ACT[:LOSS]]",
        help="shorthand for --sizes/--activation/--loss, e.g. 2,8,1:relu:bce",
    )
    g.add_argument(
        "--activation",
        choices=ACTIVATIONS,
        default=default(d.activation),
        help=both(f"default: {d.activation}", f"{', '.join(GPT_ACTIVATIONS)} (default: {G.activation})"),
    )
    g.add_argument("--loss", choices=LOSSES, default=default(d.loss), help=f"default: {d.loss}")
    if training != "run":
        parser.set_defaults(steps=1, batch_size=None)
    if training == "none":
        parser.set_defaults(optimizer=d.optimizer, lr=d.lr)
        g.add_argument("--seed", type=non_negative_int, default=0, help="seed of the data and init (default: 0)")
        return parser
    g.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default=default(d.optimizer),
        help="sgd, momentum (SGD with 0.9), adam, adamw (default: "
        + (
            f"{d.optimizer}; gpt: none, its step prints no update"
            if gpt and training == "step"
            else both(d.optimizer, G.optimizer)
        )
        + ")",
    )
    g.add_argument(
        "--lr",
        type=positive_float,
        default=default(d.lr),
        help=f"learning rate (default: {d.lr:g}"
        + ("; gpt: none)" if gpt and training == "step" else f"{both('', f'{G.lr:g}')})"),
    )
    if training == "run":
        g.add_argument(
            "--steps",
            type=step_count,
            default=default(d.steps),
            help=f"training steps (default: {both(d.steps, G.steps)})",
        )
        g.add_argument(
            "--batch-size", type=positive_int, default=d.batch_size, help="minibatch size (default: full batch)"
        )
    g.add_argument("--seed", type=non_negative_int, default=0, help="seed of the data, init and batches (default: 0)")
    return parser


def make_optimizer(name: str, lr: float) -> Optimizer:
    return {
        "sgd": lambda: SGD(lr),
        "momentum": lambda: SGD(lr, momentum=0.9),
        "adam": lambda: Adam(lr),
        "adamw": lambda: AdamW(lr),
    }[name]()


MLP_ONLY = ("dataset", "noise", "sizes", "spec", "loss")


def build_problem(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Problem:
    """The Problem the options describe; an option that does not fit is a parser error."""
    if hasattr(args, "mlp_defaults"):  # a parser made with gpt=True: fill in the chosen model's defaults
        model = args.model or ("gpt" if args.gpt is not None else "mlp")
        if model == "gpt":
            return build_gpt_problem(parser, args)
        if args.gpt is not None:
            parser.error("--gpt describes a transformer: use it with --model gpt, not --model mlp")
        for field in ("dataset", "n", "noise", "sizes", "activation", "loss", "optimizer", "lr", "steps"):
            if getattr(args, field) is None:
                setattr(args, field, getattr(args.mlp_defaults, field))
    if args.spec is not None:  # --spec overrides --sizes/--activation/--loss
        for field, value in zip(("sizes", "activation", "loss"), args.spec):
            setattr(args, field, value)
    kwargs = {}
    if args.dataset == "spirals":
        kwargs["arms"] = args.sizes[-1] if args.loss == "softmax_ce" and args.sizes[-1] > 2 else 2
    try:
        data = make_dataset(args.dataset, n=args.n, noise=args.noise, seed=args.seed, **kwargs)
    except ValueError as e:
        parser.error(f"--dataset {args.dataset} with --n {args.n} --noise {args.noise}: {e}")
    if (floats := len(data) * sum(args.sizes)) > MAX_FLOATS:
        parser.error(
            f"--n {len(data)} samples × --sizes {','.join(map(str, args.sizes))} is {floats:.1e} activations per "
            f"forward pass, more than {MAX_FLOATS:.0e}: use fewer samples or narrower layers"
        )
    if args.sizes[0] != data.X.shape[1]:
        parser.error(
            f"--sizes {','.join(map(str, args.sizes))} starts with {args.sizes[0]} inputs, but dataset "
            f"{args.dataset!r} has {data.X.shape[1]} features: start --sizes with {data.X.shape[1]}"
        )
    try:
        spec = MLPSpec(args.sizes, args.activation, args.loss)
        y = data.targets(spec)
    except ValueError as e:
        parser.error(f"--sizes/--loss do not fit dataset {args.dataset!r}: {e}")
    if args.batch_size is not None and args.batch_size > len(data):
        parser.error(f"--batch-size {args.batch_size} is larger than the dataset ({len(data)} samples)")
    return Problem(
        data,
        spec,
        init_params(spec, seed=args.seed),
        data.X,
        y,
        make_optimizer(args.optimizer, args.lr),
        args.steps,
        args.seed,
        args.batch_size,
    )


def gpt_floats(spec: GPTSpec, n: int) -> int:
    """Floats of one forward pass's activations, about: per position and block the layer norms, q, k,
    v, the attention output and the MLP's hidden layer, plus each head's t × t scores and probabilities."""
    t, d = spec.seq_len, spec.d_model
    per_block = n * t * (8 * d + 2 * spec.d_ff) + 2 * n * spec.n_heads * t * t
    return spec.n_layers * per_block + n * t * (2 * d + spec.vocab_size)


def build_gpt_problem(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Problem:
    """--model gpt: a GPTSpec from --gpt (or the default), `strides` data, the GPT's optimizer defaults."""
    given = [f"--{field}" for field in MLP_ONLY if getattr(args, field) is not None]
    if given:
        parser.error(
            f"{given[0]} is an MLP option; with --model gpt describe the transformer with --gpt V,T,d,h,L[:ACT]"
        )
    G = getattr(args, "gpt_defaults", GPT)  # the command's own GPT defaults (make_parser), the ones its --help states
    sizes, *act = args.gpt if args.gpt is not None else (G.gpt,)
    activation = act[0] if act else args.activation or G.activation
    if activation not in GPT_ACTIVATIONS:
        parser.error(f"--activation {activation}: a GPT's MLP takes one of {', '.join(GPT_ACTIVATIONS)}")
    spec = GPTSpec(*sizes, activation=activation)  # gpt_shorthand has checked every number
    n = args.n if args.n is not None else G.n
    if (floats := gpt_floats(spec, n)) > MAX_FLOATS:
        parser.error(
            f"--n {n} sequences × --gpt {','.join(map(str, sizes))} is {floats:.1e} activations per forward pass, "
            f"more than {MAX_FLOATS:.0e}: use fewer sequences or a smaller transformer"
        )
    if args.batch_size is not None and args.batch_size > n:
        parser.error(f"--batch-size {args.batch_size} is larger than the data ({n} sequences)")
    data = strides(n, spec.vocab_size, spec.seq_len, seed=args.seed)
    optimizer = args.optimizer or G.optimizer
    return Problem(
        data,
        spec,
        init_params(spec, seed=args.seed),
        data.X,
        data.y,
        make_optimizer(optimizer, args.lr if args.lr is not None else G.lr),
        args.steps if args.steps is not None else G.steps,
        args.seed,
        args.batch_size,
    )


NOISE_RATIO = 1e-10
"""A tensor whose largest float64 gradient is below this fraction of the model's largest is taken to
have a gradient of 0 in exact arithmetic: what is left is rounding (float64 ε = 2.2e-16, so ~1e6 ε)."""


def rounding_noise_tensors(spec, params, X, y) -> dict[str, float]:
    """{name: max|g| / max over all tensors of max|g|} for every tensor whose float64 NumPy gradient is
    rounding noise (below NOISE_RATIO of the largest). A GPT's key bias attn.bk is one: it adds the same
    q·bk to every score in a row, which the softmax ignores, so the loss does not depend on it."""
    _, grads = get_backend("numpy", "float64").loss_and_grads(spec, params, X, y)
    largest = {name: float(np.abs(g).max(initial=0.0)) for name, g in named_leaves(grads)}
    top = max(largest.values())
    return {name: v / top for name, v in largest.items() if top > 0 and v < NOISE_RATIO * top}


def one_installed(parser: argparse.ArgumentParser, name: str) -> str:
    """--backend NAME, or a parser error that says how to install it."""
    if name not in available_backends():
        parser.error(
            f"--backend {name}: not installed here (installed: {', '.join(available_backends())}); "
            "`make test` sets up .venv with every backend"
        )
    return name


def installed(requested: list[str]) -> list[str]:
    """The requested backends that are installed; the others are left out with a note on stderr."""
    here = available_backends()
    missing = [name for name in requested if name not in here]
    if missing:
        note(f"left out (not installed): {', '.join(missing)}. `make test` sets up .venv with every backend.")
    return [name for name in requested if name in here]


def note(message: str) -> None:
    print(f"[trigrad] {message}", file=sys.stderr, flush=True)


def pyplot():
    """matplotlib.pyplot on the Agg backend (no screen needed), imported only when plotting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.fontsize": 8,
            "legend.framealpha": 0.85,
        }
    )
    return plt


def save_figure(fig, out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def save_json(obj: dict, out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"cannot write {type(x).__name__} as JSON")


def publish(out: Path, name: str, fig, numbers: dict, finding: str) -> None:
    """Write out/NAME.png and out/NAME.json (the numbers behind the figure, and the finding), then print
    where they went and the finding: how every comparison and lesson ends."""
    report([save_figure(fig, out, name), save_json({"finding": finding, **numbers}, out, name)], finding)


def report(paths: list[Path], finding: str) -> None:
    """Print where the files went and the one-paragraph finding."""
    for path in paths:
        print(f"wrote {path}")
    print()
    print(finding)
