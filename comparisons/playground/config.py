"""The playground's configuration: its defaults and bounds, and a page's JSON config checked by the
command line's own parser (so a bad value is refused with the same message as on the command line,
before any work), then built into a `Setup` (the problem, the test split, the lanes to train)."""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, replace

import numpy as np

from backends import BACKENDS, available_backends
from comparisons.core.options import make_parser, name_list, positive_int, trainable_formats
from comparisons.core.problem import OPTIMIZERS, Defaults, build_problem, make_optimizer
from comparisons.playground.gpt_mode import GPT_DEFAULTS, TASKS, GPTSetup, add_gpt_options, gpt_setup
from shared.data import DATASETS, from_csv
from shared.params import Params
from shared.spec import ACTIVATIONS, LOSSES, MLPSpec
from shared.validation import DTYPES, HALF_DTYPES, MIXED_FORMATS

LANE_FORMATS = (*DTYPES, *HALF_DTYPES, *MIXED_FORMATS)
"""The formats a lane can train in: a pure half format with SGD only (options.trainable_formats)."""

HOST = "127.0.0.1"  # loopback only: the server runs code for whoever can reach it
DEFAULT_PORT = 8765

DEFAULTS = Defaults(
    dataset="xor",
    n=200,
    noise=0.15,
    sizes=(2, 4, 4, 1),
    activation="tanh",
    loss="bce",
    optimizer="sgd",  # plain full-batch SGD: chunks chain into exactly one long run
    lr=0.3,
    steps=25,  # per chunk: one `train` call per backend and dtype
    batch_size=None,
)

# Bounds on what one page can ask for. A request is refused (400, naming the field) beyond them.
MAX_POINTS = 2000  # samples, train and test together
MAX_HIDDEN_LAYERS = 6
MAX_WIDTH = 16  # units per layer (the page draws every hidden unit)
MAX_CHUNK_STEPS = 1000  # steps of one `train` call
MAX_RECORDS = 100  # points recorded per chunk (steps / every)
MAX_WORK = 4 * 10**8  # steps × samples × params of one chunk per lane: about a second of NumPy
MAX_RESOLUTION = 100  # boundary grid points per axis
HIDDEN_RESOLUTION = 24  # grid points per axis of each hidden unit's picture
MAX_CHUNKS = 1000  # chunks per run (each keeps a params snapshot for the export)
MAX_RUNS = 3  # runs kept in memory; the least recently used is dropped
MAX_BODY = 64 * 1024  # bytes of a request body
MAX_CSV_BYTES = 48 * 1024  # of your own points (2,000 rows of x1,x2,label fit)

CONFIG_FIELDS = {
    # JSON field: (option, help text shown by the page)
    "dataset": ("--dataset", "dataset"),
    "n": ("--n", "samples (train + test)"),
    "noise": ("--noise", "noise"),
    "test_fraction": ("--test-fraction", "share of samples held out for testing"),
    "sizes": ("--sizes", "layer widths, input to output"),
    "activation": ("--activation", "hidden activation"),
    "loss": ("--loss", "loss"),
    "optimizer": ("--optimizer", "optimizer"),
    "lr": ("--lr", "learning rate"),
    "batch_size": ("--batch-size", "minibatch size (empty: full batch)"),
    "seed": ("--seed", "seed of data, init and batches"),
    "steps": ("--steps", "steps per chunk (one train call)"),
    "every": ("--every", "record the losses and the parity gap every this many steps"),
    "resolution": ("--resolution", "boundary grid points per axis"),
    "weight_decay": ("--weight-decay", "weight decay (empty: the optimizer's default)"),
    "target_loss": ("--target-loss", "play stops when the shown lane's train loss reaches this"),
    "csv": ("--csv-text", "your own points: CSV rows x1,x2,label (replaces dataset, n and noise)"),
    "model": ("--model", "the MLP, or the tiny GPT"),
    "task": ("--task", "what the GPT learns: copy, reverse or sort digits, or the corpus's next character"),
    "length": ("--length", "a task's digits, or the corpus's window"),
    "d_model": ("--d-model", "the GPT's width"),
    "heads": ("--heads", "attention heads"),
    "layers": ("--layers", "blocks"),
    "dtypes": ("--dtypes", "dtypes"),
    "backends": ("--backends", "backends"),
}
OPTION_FIELDS = {option: name for name, (option, _) in CONFIG_FIELDS.items()} | {"--csv": "csv"}


class ConfigError(ValueError):
    """A config value that does not fit: `field` is its JSON name, the message names the option."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


def _fraction(text: str) -> float:
    value = float(text)  # ValueError -> argparse's "invalid _fraction value"
    if not 0.05 <= value <= 0.9:
        raise argparse.ArgumentTypeError(f"expected a number from 0.05 to 0.9, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number ≥ 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def _csv_file(path: str) -> str:
    """--csv FILE: the file's text (checked with the config, like the page's)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_CSV_BYTES + 1)
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise argparse.ArgumentTypeError(f"{path} is not UTF-8 text") from None
    if len(text) > MAX_CSV_BYTES:
        raise argparse.ArgumentTypeError(f"{path} is larger than {MAX_CSV_BYTES // 1024} KiB")
    return text


def _activations(text: str) -> str | tuple[str, ...]:
    """--activation tanh (every hidden layer) or tanh,relu (one per hidden layer, in order)."""
    names = [name.strip() for name in text.split(",")]
    for name in names:
        if name not in ACTIVATIONS:
            raise argparse.ArgumentTypeError(f"{name!r} is not one of {', '.join(ACTIVATIONS)}")
    return names[0] if len(names) == 1 else tuple(names)


def _resolution(text: str) -> int:
    value = positive_int(text)
    if not 10 <= value <= MAX_RESOLUTION:
        raise argparse.ArgumentTypeError(f"expected an integer from 10 to {MAX_RESOLUTION}, got {text}")
    return value


def make_playground_parser() -> argparse.ArgumentParser:
    """The common problem options (comparisons.core.options.make_parser) plus the playground's own."""
    parser = make_parser(
        "playground",
        __doc__.split("\n\n")[0].split(": ", 1)[1],
        DEFAULTS,
        epilog="Every option sets the page's starting config (also in its URL). Bounds: "
        f"{MAX_POINTS} samples, {MAX_HIDDEN_LAYERS} hidden layers of at most {MAX_WIDTH} units, "
        f"{MAX_CHUNK_STEPS} steps per chunk.",
    )
    for action in parser._actions:  # the page's meaning of the shared options
        if action.dest == "activation":  # one for every hidden layer, or one per layer
            action.type, action.choices = _activations, None
            action.metavar = "ACT[,ACT...]"
            names = ", ".join(ACTIVATIONS)
            action.help = f"hidden activation, one for all or one per hidden layer: {names} "
            action.help += f"(default: {DEFAULTS.activation})"
        action.help = {
            "out": argparse.SUPPRESS,  # the page's export buttons download instead
            "n": f"samples, train and test together (default: {DEFAULTS.n}, at most {MAX_POINTS})",
            "steps": f"steps per chunk, one Backend.train call (default: {DEFAULTS.steps}, at most {MAX_CHUNK_STEPS})",
        }.get(action.dest, action.help)
    g = parser.add_argument_group("the playground")
    g.add_argument("--test-fraction", type=_fraction, default=0.25, help="held-out share (default: 0.25)")
    g.add_argument("--every", type=positive_int, default=5, help="record every this many steps (default: 5)")
    g.add_argument("--resolution", type=_resolution, default=50, help="boundary grid per axis (default: 50)")
    g.add_argument(
        "--dtypes",
        type=name_list(LANE_FORMATS),
        default=["float64", "float32"],
        help="the formats to train in, one lane per backend each: float64, float32, the pure half formats "
        "(bfloat16, float16: params and momentum in the format; --optimizer sgd only) and mixed precision "
        "(bfloat16-mixed, float16-mixed: float32 params, half-format compute) (default: float64,float32)",
    )
    g.add_argument(
        "--weight-decay",
        type=_non_negative_float,
        default=None,
        help="the optimizer's weight decay (default: its own, 0 for sgd/momentum/adam, 0.01 for adamw)",
    )
    g.add_argument("--target-loss", type=_positive_float, default=None, help="the page's play stops at this train loss")
    g.add_argument(
        "--csv",
        type=_csv_file,
        dest="csv_text",
        metavar="FILE",
        help="your own 2-D points, rows of x1,x2,label (replaces --dataset, --n and --noise)",
    )
    g.add_argument("--csv-text", default=None, help=argparse.SUPPRESS)  # the page's CSV, as text
    add_gpt_options(parser)
    g.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"0 picks a free one (default: {DEFAULT_PORT})")
    g.add_argument("--no-open", action="store_true", help="do not open a browser")
    # what both models use has a default per model: unset here, filled in by fill_mode_defaults
    parser.set_defaults(**dict.fromkeys(MODE_DEFAULTS["mlp"]))
    for action in parser._actions:
        if action.dest in MODE_DEFAULTS["mlp"] and action.help and "(default" in action.help:
            mlp, gpt = MODE_DEFAULTS["mlp"][action.dest], GPT_DEFAULTS[action.dest]
            mlp, gpt = ("full batch" if v is None else v for v in (mlp, gpt))
            action.help = action.help.split("(default")[0] + f"(default: {mlp} for the MLP, {gpt} for the GPT)"
    return parser


MODE_DEFAULTS = {
    "mlp": {"n": DEFAULTS.n, "optimizer": DEFAULTS.optimizer, "lr": DEFAULTS.lr}
    | {"batch_size": DEFAULTS.batch_size, "steps": DEFAULTS.steps, "every": 5},
    "gpt": GPT_DEFAULTS,
}
"""The settings both models use, each model's own default (the page switches them with the model)."""


def fill_mode_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Every shared setting left unset gets its model's default (a GPT trains with Adam, not SGD 0.3)."""
    for name, value in MODE_DEFAULTS[args.model].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


# ---- a config: JSON from the page, checked by the command line's own parser ----


def _raise_config_error(message: str):
    """parser.error for configs from the page: raise, naming the field, instead of exiting."""
    for option in re.findall(r"--[a-z][a-z-]*", message):  # the first option the message names
        if option in OPTION_FIELDS:
            raise ConfigError(OPTION_FIELDS[option], message)
    raise ConfigError("config", message)


def config_argv(config: object) -> list[str]:
    """A JSON config as command-line options; values must be strings, numbers or lists of them."""
    if not isinstance(config, dict):
        raise ConfigError("config", f"expected a JSON object of settings; got {type(config).__name__}")
    argv = []
    for name, value in config.items():
        if name not in CONFIG_FIELDS:
            raise ConfigError(name, f"unknown setting {name!r}; expected some of {', '.join(CONFIG_FIELDS)}")
        if value is None or value == "" or (name == "dataset" and value == "csv"):
            continue  # the default (a run on your CSV says dataset "csv": the csv field holds the points)
        if isinstance(value, list) and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
            value = ",".join(map(str, value))
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(name, f"{CONFIG_FIELDS[name][0]} expected a string or a number; got {value!r}")
        argv += [CONFIG_FIELDS[name][0], str(value)]
    return argv


@dataclass
class Setup:
    """A checked config, the data split and the problem: everything a run needs before any training."""

    config: dict  # normalized: every field, defaults filled in, as the command line spells the values
    spec: MLPSpec
    params: Params
    optimizer: object
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    labels_train: np.ndarray
    labels_test: np.ndarray
    n_classes: int
    lanes: list[tuple[str, str]]  # (backend, dtype)
    extent: tuple[float, float, float, float]  # x0, x1, y0, y1 of the pictures


def setup(config: object) -> Setup:
    """Validate a config and build the problem; ConfigError (naming the field) on any bad value."""
    parser = make_playground_parser()
    parser.error = _raise_config_error  # instead of printing the usage and exiting
    args = parser.parse_args(config_argv(config))
    return setup_from_args(parser, args)


def _check_bounds(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The playground's own bounds on what one request may ask for (before any work)."""
    if args.n is not None and args.n > MAX_POINTS:
        parser.error(f"--n {args.n}: the playground takes at most {MAX_POINTS} samples")
    hidden = args.sizes[1:-1]
    if len(hidden) > MAX_HIDDEN_LAYERS:
        parser.error(f"--sizes has {len(hidden)} hidden layers; the playground draws at most {MAX_HIDDEN_LAYERS}")
    if isinstance(args.activation, tuple) and len(args.activation) != len(hidden):
        parser.error(
            f"--activation {','.join(args.activation)} names {len(args.activation)} activations for "
            f"{len(hidden)} hidden layers: give one for all of them, or one per hidden layer"
        )
    if max(args.sizes[1:]) > MAX_WIDTH:
        parser.error(f"--sizes {','.join(map(str, args.sizes))}: the playground takes at most {MAX_WIDTH} per layer")


def _check_chunk(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Bounds on one chunk, in either mode."""
    if args.steps > MAX_CHUNK_STEPS:
        parser.error(f"--steps {args.steps}: at most {MAX_CHUNK_STEPS} steps per chunk")
    if math.ceil(args.steps / args.every) > MAX_RECORDS:
        parser.error(
            f"--every {args.every} records {math.ceil(args.steps / args.every)} points per chunk of "
            f"--steps {args.steps}; at most {MAX_RECORDS}: raise --every"
        )


def _lanes(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The installed backends asked for, and the dtypes, in order."""
    here = available_backends()
    backends = [name for name in args.backends if name in here]
    if not backends:
        parser.error(f"--backends {','.join(args.backends)}: none installed here (installed: {', '.join(here)})")
    return backends, list(dict.fromkeys(args.dtypes))


def _with_weight_decay(parser: argparse.ArgumentParser, args: argparse.Namespace, optimizer):
    if args.weight_decay is None:
        return optimizer
    try:
        return replace(optimizer, weight_decay=args.weight_decay)
    except ValueError as e:
        parser.error(f"--weight-decay {args.weight_decay}: {e}")


def setup_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Setup | GPTSetup:
    """The playground's bounds, then build_problem (the other commands' checks), then the split; with
    --model gpt, gpt_mode.gpt_setup instead."""
    fill_mode_defaults(args)
    _check_chunk(parser, args)
    backends, dtypes = _lanes(parser, args)
    if args.model == "gpt":
        optimizer = _with_weight_decay(parser, args, make_optimizer(args.optimizer, args.lr))
        trainable_formats(parser, f"--dtypes {','.join(dtypes)}", dtypes, optimizer)
        common = {k: getattr(args, k) for k in ("optimizer", "lr", "batch_size", "seed", "steps", "every")}
        common |= {"weight_decay": optimizer.weight_decay, "target_loss": args.target_loss}
        common |= {"dtypes": dtypes, "backends": backends}
        return gpt_setup(parser, args, [(b, d) for d in dtypes for b in backends], common, optimizer)
    return _mlp_setup(parser, args, backends, dtypes)


def _mlp_setup(parser: argparse.ArgumentParser, args: argparse.Namespace, backends: list, dtypes: list) -> Setup:
    """The MLP's problem: the bounds, your CSV or a generated dataset, the split, the work per chunk."""
    _check_bounds(parser, args)
    own = None  # your own points, from --csv or the page
    if args.csv_text is not None:
        try:
            own = from_csv(args.csv_text, max_rows=MAX_POINTS)
        except ValueError as e:
            parser.error(f"--csv: {e}")
        args.dataset = "csv"
    problem = build_problem(parser, args, own)  # checks dataset, noise, sizes against the data, loss, batch size
    problem = replace(problem, optimizer=_with_weight_decay(parser, args, problem.optimizer))
    trainable_formats(parser, f"--dtypes {','.join(dtypes)}", dtypes, problem.optimizer)
    try:
        train, test = problem.data.split(args.test_fraction, seed=args.seed)
    except ValueError as e:
        parser.error(f"--test-fraction {args.test_fraction} of {len(problem.data)} samples: {e}")
    if args.batch_size is not None and args.batch_size > len(train):
        parser.error(f"--batch-size {args.batch_size} is larger than the training split ({len(train)} samples)")
    spec = problem.spec
    if (work := args.steps * len(train) * spec.n_params) > MAX_WORK:
        parser.error(
            f"--steps {args.steps} × {len(train)} samples × {spec.n_params} params is {work:.1e} per "
            f"chunk, more than {MAX_WORK:.0e}: fewer steps, samples or units"
        )
    X = problem.data.X
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = 0.15 * np.maximum(hi - lo, 1e-3)
    config = {
        "model": "mlp",
        "dataset": args.dataset,
        "n": len(problem.data),
        "noise": args.noise,
        "test_fraction": args.test_fraction,
        "sizes": list(spec.sizes),
        "activation": list(args.activation) if isinstance(args.activation, tuple) else args.activation,
        "loss": args.loss,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "steps": args.steps,
        "every": args.every,
        "resolution": args.resolution,
        "weight_decay": problem.optimizer.weight_decay,
        "target_loss": args.target_loss,
        "csv": args.csv_text,
        "dtypes": dtypes,
        "backends": backends,
    }
    return Setup(
        config,
        spec,
        problem.params,
        problem.optimizer,
        train.X,
        train.targets(spec),
        test.X,
        test.targets(spec),
        train.y,
        test.y,
        problem.data.n_classes,
        [(b, d) for d in dtypes for b in backends],
        (float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1])),
    )


def options() -> dict:
    """What the page needs to draw its controls; the defaults are the parser's own (nothing typed twice)."""
    parser = make_playground_parser()
    args = vars(fill_mode_defaults(parser.parse_args([])))
    defaults = {}
    for name, (option, _) in CONFIG_FIELDS.items():
        value = args[parser._option_string_actions[option].dest]
        defaults[name] = list(value) if isinstance(value, tuple) else value
    return {
        "defaults": defaults,
        "mode_defaults": MODE_DEFAULTS,
        "choices": {
            "dataset": list(DATASETS),
            "activation": [a for a in ACTIVATIONS if a != "identity"] + ["identity"],
            "loss": list(LOSSES),
            "optimizer": list(OPTIMIZERS),
            "dtypes": list(LANE_FORMATS),
            "backends": list(BACKENDS),
            "model": ["mlp", "gpt"],
            "task": list(TASKS),
        },
        "installed": available_backends(),
        "fields": {name: {"option": option, "help": text} for name, (option, text) in CONFIG_FIELDS.items()},
        "limits": {
            "points": MAX_POINTS,
            "hidden_layers": MAX_HIDDEN_LAYERS,
            "width": MAX_WIDTH,
            "chunk_steps": MAX_CHUNK_STEPS,
            "resolution": MAX_RESOLUTION,
            "chunks": MAX_CHUNKS,
        },
    }
