"""The problem a command describes: its default settings (XOR, SPIRALS, the GPT's), the `Problem`
(data, spec, initial params, optimizer, steps) built from parsed options, and which backends to run."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from backends import available_backends, get_backend
from comparisons.core.output import note
from shared.data import Dataset, TokenData, make_dataset, strides
from shared.optim import SGD, Adam, AdamW, Optimizer
from shared.params import Params, init_params, named_leaves
from shared.spec import GPT_ACTIVATIONS, GPTSpec, MLPSpec
from shared.trajectory import Trajectory

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

# Bounds that turn a typo (an extra three zeros) into a usage error instead of an allocation of
# gigabytes or a run of days. Every command's problem is a toy: far below each of them.
MAX_SAMPLES = 1_000_000
MAX_WIDTH = 4096  # the benchmarks' largest layer is 1024
MAX_FLOATS = 10**8  # samples × Σ widths: the activations of one forward pass, 800 MB in float64
MAX_LAYERS = 16  # transformer blocks: the comparisons' GPT has 1


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

    def train(self, backend: str, dtype: str = "float64", precision: str = "pure", **kwargs) -> Trajectory:
        """This problem trained on one backend; kwargs go to Backend.train (record_every, ...)."""
        return get_backend(backend, dtype, precision=precision).train(
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


def make_optimizer(name: str, lr: float) -> Optimizer:
    return {
        "sgd": lambda: SGD(lr),
        "momentum": lambda: SGD(lr, momentum=0.9),
        "adam": lambda: Adam(lr),
        "adamw": lambda: AdamW(lr),
    }[name]()


MLP_ONLY = ("dataset", "noise", "sizes", "spec", "loss")


def build_problem(parser: argparse.ArgumentParser, args: argparse.Namespace, data: Dataset | None = None) -> Problem:
    """The Problem the options describe; an option that does not fit is a parser error. `data` (your
    own points, e.g. the playground's CSV) replaces --dataset, --n and --noise."""
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
    if data is None:
        data = _dataset(parser, args)
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


def _dataset(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Dataset:
    """--dataset with --n and --noise (spirals gets one arm per softmax output)."""
    kwargs = {}
    if args.dataset == "spirals":
        kwargs["arms"] = args.sizes[-1] if args.loss == "softmax_ce" and args.sizes[-1] > 2 else 2
    try:
        return make_dataset(args.dataset, n=args.n, noise=args.noise, seed=args.seed, **kwargs)
    except ValueError as e:
        parser.error(f"--dataset {args.dataset} with --n {args.n} --noise {args.noise}: {e}")


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


def single_threaded():
    """One BLAS/OpenMP thread while training, if threadpoolctl is installed: the matrices here are
    tiny (64·10 × 32), and on a busy machine extra BLAS threads make each NumPy step 3–4× slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1)
