"""Command-line options every comparison command shares: argparse types that reject bad values with
a message naming what was expected, the bounds that turn a typo into a usage error, and `make_parser`,
the common parser (--out, --backends or --backend, and the problem's options).

A command made with `make_parser(..., gpt=True)` also takes `--model gpt`: the problem is then a tiny
GPT (`--gpt V,T,d,h,L[:ACT]`) learning next-token prediction on `shared.data.strides`; the MLP-only
options (--dataset, --sizes, ...) refuse it. Errors go through `parser.error`: a usage line and a
message that names the option, never a traceback.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from backends import BACKENDS
from comparisons.core.output import note
from comparisons.core.problem import GPT, MAX_LAYERS, MAX_SAMPLES, MAX_WIDTH, OPTIMIZERS, Defaults, GPTDefaults
from shared.data import DATASETS
from shared.precision import why_pure_half_cannot_train
from shared.spec import ACTIVATIONS, GPT_ACTIVATIONS, LOSSES
from shared.training import MAX_STEPS
from shared.validation import HALF_DTYPES

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
    _add_output_and_backends(parser, one_backend)
    if defaults is None:
        return parser
    g = parser.add_argument_group("the problem")
    models = _Models(defaults, gpt)
    if gpt:
        _add_gpt_options(parser, g, models.G)
    _add_mlp_options(g, models)
    _add_training_options(parser, g, models, training)
    return parser


class _Models:
    """The MLP's defaults `d` and, with --model, the GPT's `G`: what each option's help states."""

    def __init__(self, d: Defaults, gpt: bool | GPTDefaults) -> None:
        self.d, self.gpt = d, bool(gpt)
        self.G = gpt if isinstance(gpt, GPTDefaults) else GPT

    def default(self, value):
        """The option's default: with --model, None (build_problem fills in the chosen model's)."""
        return None if self.gpt else value

    def both(self, mlp: str, transformer: str) -> str:
        return f"{mlp}; gpt: {transformer}" if self.gpt else mlp


def _add_output_and_backends(parser: argparse.ArgumentParser, one_backend: bool) -> None:
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


def _add_gpt_options(parser: argparse.ArgumentParser, g, G: GPTDefaults) -> None:
    parser.set_defaults(gpt_defaults=G)
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


def _add_mlp_options(g, m: _Models) -> None:
    d, G = m.d, m.G
    dataset = "(mlp only)" if m.gpt else ""
    g.add_argument(
        "--dataset",
        choices=list(DATASETS),
        default=m.default(d.dataset),
        help=f"default: {d.dataset} {dataset}".strip(),
    )
    n_help = m.both("samples (default: the dataset's; xor: its 4 points)", f"sequences (default: {G.n})")
    g.add_argument("--n", type=sample_count, default=m.default(d.n), help=n_help)
    g.add_argument("--noise", type=non_negative_float, default=m.default(d.noise), help="Gaussian noise of the samples")
    g.add_argument(
        "--sizes",
        type=layer_sizes,
        default=m.default(d.sizes),
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
        default=m.default(d.activation),
        help=m.both(f"default: {d.activation}", f"{', '.join(GPT_ACTIVATIONS)} (default: {G.activation})"),
    )
    g.add_argument("--loss", choices=LOSSES, default=m.default(d.loss), help=f"default: {d.loss}")


def _add_training_options(parser: argparse.ArgumentParser, g, m: _Models, training: str) -> None:
    """--optimizer and --lr ("run" and "step"), --steps and --batch-size ("run"), and --seed."""
    d, G = m.d, m.G
    if m.gpt:
        parser.set_defaults(mlp_defaults=d)
    if training != "run":
        parser.set_defaults(steps=1, batch_size=None)
    if training == "none":
        parser.set_defaults(optimizer=d.optimizer, lr=d.lr)
        g.add_argument("--seed", type=non_negative_int, default=0, help="seed of the data and init (default: 0)")
        return
    step_only_gpt = m.gpt and training == "step"  # a GPT's step prints no update
    optimizer_default = (
        f"{d.optimizer}; gpt: none, its step prints no update" if step_only_gpt else m.both(d.optimizer, G.optimizer)
    )
    g.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default=m.default(d.optimizer),
        help=f"sgd, momentum (SGD with 0.9), adam, adamw (default: {optimizer_default})",
    )
    lr_default = f"{d.lr:g}; gpt: none" if step_only_gpt else f"{d.lr:g}{m.both('', f'{G.lr:g}')}"
    g.add_argument("--lr", type=positive_float, default=m.default(d.lr), help=f"learning rate (default: {lr_default})")
    if training == "run":
        g.add_argument(
            "--steps",
            type=step_count,
            default=m.default(d.steps),
            help=f"training steps (default: {m.both(d.steps, G.steps)})",
        )
        g.add_argument(
            "--batch-size", type=positive_int, default=d.batch_size, help="minibatch size (default: full batch)"
        )
    g.add_argument("--seed", type=non_negative_int, default=0, help="seed of the data, init and batches (default: 0)")


def trainable_formats(parser: argparse.ArgumentParser, option: str, formats, optimizer, drop: bool = False) -> list:
    """`formats`, with the pure half formats checked against the optimizer (Adam cannot train one:
    shared.precision.why_pure_half_cannot_train): a usage error naming `option` (as typed: '--dtypes
    float16'), the reason and the formats that do train it; with `drop` (a format list the user did not
    spell out), those formats left out with a note instead."""
    pure = [f for f in formats if f in HALF_DTYPES]
    if not pure or (why := why_pure_half_cannot_train(optimizer)) is None:
        return list(formats)
    cannot = f"{', '.join(pure)} cannot train with {optimizer.describe()}: {why}"
    if not drop:
        mixed = ", ".join(f"{f}-mixed" for f in pure)
        parser.error(f"{option}: {cannot}. Choose {mixed} (float32 params), or --optimizer sgd")
    note(f"{cannot}; left out (the mixed formats train it)")
    return [f for f in formats if f not in HALF_DTYPES]
