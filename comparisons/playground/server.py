"""playground: a local page that trains trigrad's MLP live, on every backend at once.

    python -m comparisons playground            # serves http://127.0.0.1:8765/ and opens it
    python -m comparisons playground --dataset spirals --loss softmax_ce --sizes 2,16,16,3

The page (comparisons/playground/page.html: plain HTML, CSS and JavaScript, nothing fetched from the
internet) shows the decision boundary, every hidden unit over the input plane, the train and test loss
of every backend and dtype, and the parity gap between each pair of backends in ε units. This module is
its server: the standard library's ThreadingHTTPServer on 127.0.0.1 only, and these endpoints:

    GET  /                     the page
    GET  /api/options          defaults, choices, installed backends and the bounds below
    POST /api/run              {config} -> a new run at step 0 (400 naming the field if a value is bad)
    POST /api/step             {run, steps?, view?} -> one chunk, streamed as JSON lines (see `step`)
    GET  /api/export.npz       ?run=ID&lane=numpy-float64: the run as a Trajectory file (Trajectory.save)
    GET  /api/config.json      ?run=ID: the run's config, as the page and the command line spell it
    GET  /api/view.json        ?run=ID&lane=LANE: the pictures of another lane, without training

A config uses the command line's option names (`batch_size` for --batch-size) and is validated by the
very parser and `build_problem` that every other command uses, so a bad value is refused with the same
message, before any work. On top come the playground's own bounds (MAX_*): a page request can never
ask for more than a few seconds of work or a few MB of memory.

How a run continues. `Backend.train` starts from the params it is given and returns when it is done, so
a run is a chain of chunks: chunk k is one `train` call of `steps` steps from chunk k−1's final params,
with seed + k for its minibatch order (the same in every backend). Nothing else is re-implemented.
The cost, said plainly: an optimizer's state (momentum, Adam's moments and step count) starts afresh at
each chunk. Full-batch SGD without momentum is exactly one long run; with momentum or Adam, a larger
chunk makes restarts rarer (the loss plot marks every chunk boundary).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import secrets
import sys
import tempfile
import threading
import webbrowser
from collections import OrderedDict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import numpy as np

from backends import BACKENDS, available_backends, get_backend
from backends.numpy.mlp import ACTIVATIONS as NUMPY_ACTIVATIONS
from comparisons.core.options import make_parser, name_list, positive_int
from comparisons.core.problem import OPTIMIZERS, Defaults, build_problem
from shared.data import DATASETS
from shared.params import Params, map_params, named_leaves
from shared.spec import ACTIVATIONS, LOSSES, MLPSpec, spec_to_dict
from shared.tolerances import closeness, gap_in_eps, trajectory_kind, trajectory_tolerance
from shared.trajectory import Trajectory
from shared.validation import DTYPES

PAGE = Path(__file__).with_name("page.html")
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
    "dtypes": ("--dtypes", "dtypes"),
    "backends": ("--backends", "backends"),
}
OPTION_FIELDS = {option: name for name, (option, _) in CONFIG_FIELDS.items()}


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
        action.help = {
            "out": argparse.SUPPRESS,  # the page's export buttons download instead
            "n": f"samples, train and test together (default: {DEFAULTS.n}, at most {MAX_POINTS})",
            "steps": f"steps per chunk, one Backend.train call (default: {DEFAULTS.steps}, at most {MAX_CHUNK_STEPS})",
        }.get(action.dest, action.help)
    g = parser.add_argument_group("the playground")
    g.add_argument("--test-fraction", type=_fraction, default=0.25, help="held-out share (default: 0.25)")
    g.add_argument("--every", type=positive_int, default=5, help="record every this many steps (default: 5)")
    g.add_argument("--resolution", type=_resolution, default=50, help="boundary grid per axis (default: 50)")
    g.add_argument("--dtypes", type=name_list(DTYPES), default=["float64", "float32"], help="default: float64,float32")
    g.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"0 picks a free one (default: {DEFAULT_PORT})")
    g.add_argument("--no-open", action="store_true", help="do not open a browser")
    return parser


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
        if value is None or value == "":
            continue  # the default
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


def setup_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Setup:
    """The playground's bounds, then build_problem (the other commands' checks), then the split."""
    if args.n is not None and args.n > MAX_POINTS:
        parser.error(f"--n {args.n}: the playground takes at most {MAX_POINTS} samples")
    hidden = args.sizes[1:-1]
    if len(hidden) > MAX_HIDDEN_LAYERS:
        parser.error(f"--sizes has {len(hidden)} hidden layers; the playground draws at most {MAX_HIDDEN_LAYERS}")
    if max(args.sizes[1:]) > MAX_WIDTH:
        parser.error(f"--sizes {','.join(map(str, args.sizes))}: the playground takes at most {MAX_WIDTH} per layer")
    if args.steps > MAX_CHUNK_STEPS:
        parser.error(f"--steps {args.steps}: at most {MAX_CHUNK_STEPS} steps per chunk")
    if math.ceil(args.steps / args.every) > MAX_RECORDS:
        parser.error(
            f"--every {args.every} records {math.ceil(args.steps / args.every)} points per chunk of "
            f"--steps {args.steps}; at most {MAX_RECORDS}: raise --every"
        )
    problem = build_problem(parser, args)  # checks dataset, noise, sizes against the data, loss, batch size
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
    here = available_backends()
    backends = [name for name in args.backends if name in here]
    if not backends:
        parser.error(f"--backends {','.join(args.backends)}: none installed here (installed: {', '.join(here)})")
    dtypes = list(dict.fromkeys(args.dtypes))
    X = problem.data.X
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = 0.15 * np.maximum(hi - lo, 1e-3)
    config = {
        "dataset": args.dataset,
        "n": len(problem.data),
        "noise": args.noise,
        "test_fraction": args.test_fraction,
        "sizes": list(spec.sizes),
        "activation": args.activation,
        "loss": args.loss,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "steps": args.steps,
        "every": args.every,
        "resolution": args.resolution,
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


# ---- a run: one chain of chunks per backend and dtype ----


@dataclass
class Lane:
    """One backend in one dtype: its current params and everything its chunks recorded."""

    backend: str
    dtype: str
    params: Params
    losses: list[np.ndarray] = field(default_factory=list)  # per chunk: the loss of every step
    grad_norms: list[np.ndarray] = field(default_factory=list)
    chunk_starts: list[int] = field(default_factory=list)  # the step each chunk started at
    chunk_params: list[Params] = field(default_factory=list)  # the params each chunk started from
    wall_s: float = 0.0
    diverged_at: int | None = None

    @property
    def name(self) -> str:
        return f"{self.backend}-{self.dtype}"

    def trajectory(self, s: Setup) -> Trajectory:
        """The whole run as one Trajectory: losses of every step, a snapshot at each chunk start."""
        empty = np.zeros(0, np.dtype(self.dtype))
        config = s.config
        meta = {
            "backend": self.backend,
            "dtype": self.dtype,
            "device": get_backend(self.backend, self.dtype).device,
            "spec": spec_to_dict(s.spec),
            "optimizer": s.optimizer.to_dict(),
            "batch_size": config["batch_size"],
            "seed": config["seed"],
            "steps": int(sum(map(len, self.losses))),
            "wall_time_s": self.wall_s,
            "playground": {
                "config": config,
                "chunks": "chunk k is one Backend.train call from chunk k-1's final params with seed + k; "
                "the optimizer state restarts at each chunk; snapshots are the params at each chunk start",
            },
        }
        return Trajectory(
            losses=np.concatenate(self.losses) if self.losses else empty,
            grad_norms=np.concatenate(self.grad_norms) if self.grad_norms else empty,
            params=self.params,
            snapshot_steps=np.array(self.chunk_starts, np.int64),
            snapshots=list(self.chunk_params),
            meta=meta,
            diverged_at=self.diverged_at,
        )


@dataclass
class Run:
    id: str
    setup: Setup
    lanes: list[Lane]
    step: int = 0
    chunks: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def lane(self, name: object) -> Lane:
        """The lane called `name` ('numpy-float64'); a ConfigError naming the field `lane` if none is."""
        for lane in self.lanes:
            if lane.name == name:
                return lane
        raise ConfigError("lane", f"lane must be one of {', '.join(x.name for x in self.lanes)}; got {name!r}")


def _floats(a, digits: int | None = None) -> list:
    """An array as nested lists of Python floats (exact for float64 and float32), NaN/inf as None."""
    a = np.asarray(a, np.float64)
    if digits is not None:
        a = np.round(a, digits)
    if np.isfinite(a).all():
        return a.tolist()
    return np.where(np.isfinite(a), a.astype(object), None).tolist()


def _params_json(params: Params) -> list:
    return [
        {"W": np.asarray(layer["W"], np.float64).tolist(), "b": np.asarray(layer["b"], np.float64).tolist()}
        for layer in params
    ]


def _loss(lane: Lane, params: Params, X, y, spec) -> float | None:
    """The backend's own loss of `params` on (X, y); None when it is not finite."""
    try:
        return get_backend(lane.backend, lane.dtype).loss_and_grads(spec, params, X, y)[0]
    except (FloatingPointError, ValueError):
        return None


def tolerance_eps(dtype: str, optimizer: str, params: Params) -> float:
    """The trajectory tolerance, atol + rtol · max|θ|, in the parity gap's units (ε · max|θ|)."""
    tol = trajectory_tolerance(dtype, optimizer)
    scale = max(float(np.abs(np.asarray(x, np.float64)).max()) for _, x in named_leaves(params))
    eps = float(np.finfo(dtype).eps)
    return (tol.atol + tol.rtol * scale) / (eps * scale) if scale > 0 else tol.atol / eps


def _probabilities(logits: np.ndarray, loss: str, n_classes: int) -> np.ndarray:
    """(m, n_classes) class probabilities the picture colours by (display only)."""
    z = logits.astype(np.float64)
    if loss == "softmax_ce":
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return (p / p.sum(axis=1, keepdims=True))[:, :n_classes]
    if z.shape[1] == 1:
        p1 = 1 / (1 + np.exp(-np.clip(z[:, 0], -500, 500))) if loss == "bce" else np.clip(z[:, 0], 0, 1)
        return np.stack([1 - p1, p1], axis=1)
    p = np.clip(z, 0, 1) + 1e-9  # mse on one-hot targets
    return p / p.sum(axis=1, keepdims=True)


def grid_points(extent, resolution: int) -> np.ndarray:
    """(resolution², 2) points over the extent, row by row from the top (y falls), x rising."""
    x0, x1, y0, y1 = extent
    xs = np.linspace(x0, x1, resolution)
    ys = np.linspace(y1, y0, resolution)
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def view(s: Setup, lane: Lane) -> dict:
    """What the pictures need from one lane: the output's class probabilities over a grid, and each
    hidden unit's activation over a coarser one, both computed by that lane's own backend."""
    spec, be = s.spec, get_backend(lane.backend, lane.dtype)
    res = s.config["resolution"]
    probs = _probabilities(be.forward(spec, lane.params, grid_points(s.extent, res)), spec.loss, s.n_classes)
    grid = grid_points(s.extent, HIDDEN_RESOLUTION)
    hidden = []
    for l in range(spec.n_layers - 1):  # a spec cut after hidden layer l: its "logits" are that layer's Z
        cut = MLPSpec(spec.sizes[: l + 2], spec.activations[:l], "mse")
        Z = be.forward(cut, lane.params[: l + 1], grid)  # (m, sizes[l+1])
        A = NUMPY_ACTIVATIONS[spec.activations[l]][0](Z.astype(np.float64))
        hidden.append(_floats(A.T, 4))  # (units, m)
    return {
        "lane": lane.name,
        "resolution": res,
        "probs": _floats(probs.T, 3),  # (classes, res²)
        "hidden_resolution": HIDDEN_RESOLUTION,
        "hidden": hidden,
        "params": _params_json(lane.params),
    }


class Runs:
    """The runs in memory, at most MAX_RUNS, the least recently used dropped first."""

    def __init__(self) -> None:
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._lock = threading.Lock()
        self.training = threading.Lock()  # one chunk trains at a time: the cores are shared

    def new(self, s: Setup) -> Run:
        lanes = [Lane(b, d, map_params(lambda a, d=d: np.asarray(a, d), s.params)) for b, d in s.lanes]
        run = Run(secrets.token_hex(8), s, lanes)
        with self._lock:
            self._runs[run.id] = run
            while len(self._runs) > MAX_RUNS:
                self._runs.popitem(last=False)
        return run

    def get(self, run_id: object) -> Run:
        with self._lock:
            if not isinstance(run_id, str) or run_id not in self._runs:
                raise ConfigError("run", f"no run {run_id!r} (the server keeps the last {MAX_RUNS}): press reset")
            self._runs.move_to_end(run_id)
            return self._runs[run_id]


def describe_run(run: Run) -> dict:
    """The run at step 0: its config, the data, and the first view; what POST /api/run answers."""
    s = run.setup
    first = run.lanes[0]
    return {
        "type": "run",
        "run": run.id,
        "config": s.config,
        "lanes": [lane.name for lane in run.lanes],
        "extent": s.extent,
        "n_classes": s.n_classes,
        "train": {"X": _floats(s.X_train, 5), "y": s.labels_train.tolist()},
        "test": {"X": _floats(s.X_test, 5), "y": s.labels_test.tolist()},
        "start": [
            {
                "lane": lane.name,
                "train_loss": _loss(lane, lane.params, s.X_train, s.y_train, s.spec),
                "test_loss": _loss(lane, lane.params, s.X_test, s.y_test, s.spec),
            }
            for lane in run.lanes
        ],
        "tolerance_kind": {d: trajectory_kind(d, s.config["optimizer"]) for d in s.config["dtypes"]},
        "view": view(s, first),
    }


def step(run: Run, steps: int, view_lane: str | None = None):
    """Train one chunk of `steps` on every lane; yield JSON-ready dicts as they are ready:

    {"type": "lane", ...}    per lane, as soon as it has trained: its recorded steps, train and test
                             loss there, every step's training loss, its final params
    {"type": "parity", ...}  per dtype and pair of backends: the gap in ε at every recorded step,
                             the tolerance line in the same units, and closeness()'s verdict
    {"type": "view", ...}    the pictures of `view_lane` (default: the first lane)
    {"type": "done", ...}    the run's step and chunk count

    The run's state changes only after every lane has trained: a generator closed early (the tab was
    closed) leaves the run as it was."""
    s, spec = run.setup, run.setup.spec
    if run.chunks >= MAX_CHUNKS:
        raise ConfigError("steps", f"this run has reached {MAX_CHUNKS} chunks: press reset to start another")
    every = min(s.config["every"], steps)
    recorded, results = {}, {}
    for lane in run.lanes:
        if lane.diverged_at is not None:
            continue
        traj = get_backend(lane.backend, lane.dtype).train(
            spec,
            lane.params,
            s.X_train,
            s.y_train,
            s.optimizer,
            steps,
            batch_size=s.config["batch_size"],
            seed=s.config["seed"] + run.chunks,
            record_every=every,
            on_nonfinite="stop",
            progress=False,
        )
        points = [*zip(traj.snapshot_steps.tolist(), traj.snapshots), (len(traj), traj.params)]
        if points[-2][0] == points[-1][0]:  # diverged right after a snapshot: the same params twice
            points.pop(-2)
        recorded[lane.name] = points
        results[lane.name] = traj
        yield {
            "type": "lane",
            "lane": lane.name,
            "steps": [run.step + k for k, _ in points],
            "train_loss": [_loss(lane, p, s.X_train, s.y_train, spec) for _, p in points],
            "test_loss": [_loss(lane, p, s.X_test, s.y_test, spec) for _, p in points],
            "losses": _floats(traj.losses),
            "params": _params_json(traj.params),
            "diverged_at": None if traj.diverged_at is None else run.step + traj.diverged_at,
            "wall_s": traj.meta["wall_time_s"],
        }
    for lane in run.lanes:  # every lane trained: commit
        if (traj := results.get(lane.name)) is None:
            continue
        lane.chunk_starts.append(run.step)
        lane.chunk_params.append(lane.params)
        lane.losses.append(traj.losses)
        lane.grad_norms.append(traj.grad_norms)
        lane.params = traj.params
        lane.wall_s += traj.meta["wall_time_s"]
        if traj.diverged_at is not None:
            lane.diverged_at = run.step + traj.diverged_at
    pairs = []
    for dtype in s.config["dtypes"]:
        names = [lane.name for lane in run.lanes if lane.dtype == dtype and lane.name in recorded]
        tol = trajectory_tolerance(dtype, s.config["optimizer"])
        for a, b in itertools.combinations(names, 2):
            common = dict(recorded[b])
            at = [(k, p, common[k]) for k, p in recorded[a] if k in common]
            pairs.append(
                {
                    "a": a.split("-")[0],
                    "b": b.split("-")[0],
                    "dtype": dtype,
                    "steps": [run.step + k for k, _, _ in at],
                    "gap_eps": [gap_in_eps(pa, pb, dtype) for _, pa, pb in at],
                    "tol_eps": [tolerance_eps(dtype, s.config["optimizer"], pa) for _, pa, _ in at],
                    "within": [closeness(pa, pb, tol).ok for _, pa, pb in at],
                }
            )
    yield {"type": "parity", "pairs": pairs}
    lanes = {lane.name: lane for lane in run.lanes}
    yield {"type": "view", **view(s, lanes.get(view_lane or "", run.lanes[0]))}
    run.step += steps if results else 0
    run.chunks += 1 if results else 0
    yield {"type": "done", "step": run.step, "chunks": run.chunks}


# ---- the HTTP server ----


class Handler(BaseHTTPRequestHandler):
    """GET the page, the options and the exports; POST a new run or a chunk. Errors are JSON:
    {"error": message, "field": name} with status 400 (a bad value) or 404/405/413."""

    server: PlaygroundServer
    server_version = "trigrad-playground"

    def log_message(self, format, *args):  # quiet: a page polls many times a second
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj: dict, status: int = 200) -> None:
        self._send(status, json.dumps(obj, allow_nan=False).encode(), "application/json")

    def _error(self, status: int, message: str, field_name: str | None = None) -> None:
        self._json({"error": message, "field": field_name}, status)

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ConfigError("body", f"a request body of {length} bytes; at most {MAX_BODY}")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError("body", f"not JSON: {e}") from None
        if not isinstance(body, dict):
            raise ConfigError("body", f"expected a JSON object; got {type(body).__name__}")
        return body

    def _query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlparse(self.path).query).items()}

    def do_GET(self) -> None:
        path = urlparse(self.path).path
        try:
            if path in ("/", "/index.html"):
                self._send(200, PAGE.read_bytes(), "text/html; charset=utf-8")
            elif path == "/api/options":
                self._json(options())
            elif path == "/api/config.json":
                run = self.server.runs.get(self._query().get("run"))
                body = json.dumps({"config": run.setup.config, "step": run.step, "chunks": run.chunks}, indent=2)
                self._send(
                    200,
                    body.encode(),
                    "application/json",
                    {"Content-Disposition": 'attachment; filename="playground-config.json"'},
                )
            elif path == "/api/export.npz":
                query = self._query()
                run = self.server.runs.get(query.get("run"))
                lane = run.lane(query.get("lane"))
                with run.lock, tempfile.TemporaryDirectory() as folder:
                    data = lane.trajectory(run.setup).save(Path(folder) / "run.npz").read_bytes()
                self._send(
                    200,
                    data,
                    "application/octet-stream",
                    {"Content-Disposition": f'attachment; filename="playground-{lane.name}.npz"'},
                )
            elif path == "/api/view.json":
                query = self._query()
                run = self.server.runs.get(query.get("run"))
                with run.lock, self.server.runs.training:
                    self._json({"type": "view", **view(run.setup, run.lane(query.get("lane")))})
            elif path == "/favicon.ico":
                self._send(204, b"", "image/x-icon")
            else:
                self._error(404, f"no page {path}")
        except ConfigError as e:
            self._error(400, str(e), e.field)
        except Exception as e:  # a bug, not a bad request: say so, keep serving
            self._error(500, f"{type(e).__name__}: {e}")

    def do_POST(self) -> None:
        path = urlparse(self.path).path
        try:
            if path == "/api/run":
                body = self._body()
                run = self.server.runs.new(setup(body.get("config", {})))
                with self.server.runs.training:
                    described = describe_run(run)
                self._json(described)
            elif path == "/api/step":
                body = self._body()
                run = self.server.runs.get(body.get("run"))
                steps = body.get("steps", run.setup.config["steps"])
                if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_CHUNK_STEPS:
                    raise ConfigError(
                        "steps", f"--steps expected an integer from 1 to {MAX_CHUNK_STEPS}; got {steps!r}"
                    )
                self._stream(run, steps, body.get("view"))
            else:
                self._error(404, f"no endpoint {path}")
        except ConfigError as e:
            self._error(400, str(e), e.field)
        except Exception as e:
            self._error(500, f"{type(e).__name__}: {e}")

    def _stream(self, run: Run, steps: int, view_lane: object) -> None:
        """The chunk's results as JSON lines, each sent as soon as it is computed."""
        if not run.lock.acquire(blocking=False):
            return self._error(409, "this run is already training a chunk", "run")
        try:
            with self.server.runs.training:
                chunks = step(run, steps, view_lane if isinstance(view_lane, str) else None)
                first = next(chunks)  # a ConfigError here is still a 400
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                try:
                    for item in itertools.chain([first], chunks):
                        self.wfile.write(json.dumps(item, allow_nan=False).encode() + b"\n")
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):  # the tab was closed: stop, change nothing
                    chunks.close()
                    self.close_connection = True
                except Exception as e:  # after the headers: the error goes down the stream as a line
                    line = {"type": "error", "error": f"{type(e).__name__}: {e}"}
                    self.wfile.write(json.dumps(line).encode() + b"\n")
        finally:
            run.lock.release()


class PlaygroundServer(ThreadingHTTPServer):
    daemon_threads = True  # a request still running never holds up Ctrl-C

    def __init__(self, port: int = 0, verbose: bool = False):
        super().__init__((HOST, port), Handler)
        self.runs = Runs()
        self.verbose = verbose

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"


def options() -> dict:
    """What the page needs to draw its controls."""
    d = DEFAULTS
    return {
        "defaults": {
            "dataset": d.dataset,
            "n": d.n,
            "noise": d.noise,
            "test_fraction": 0.25,
            "sizes": list(d.sizes),
            "activation": d.activation,
            "loss": d.loss,
            "optimizer": d.optimizer,
            "lr": d.lr,
            "batch_size": d.batch_size,
            "seed": 0,
            "steps": d.steps,
            "every": 5,
            "resolution": 50,
            "dtypes": ["float64", "float32"],
            "backends": list(BACKENDS),
        },
        "choices": {
            "dataset": list(DATASETS),
            "activation": [a for a in ACTIVATIONS if a != "identity"] + ["identity"],
            "loss": list(LOSSES),
            "optimizer": list(OPTIMIZERS),
            "dtypes": list(DTYPES),
            "backends": list(BACKENDS),
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


def main(argv: list[str]) -> int:
    parser = make_playground_parser()
    args = parser.parse_args(argv)
    s = setup_from_args(parser, args)  # a bad option fails here, before the server starts
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port}: expected 0 to 65535")
    try:
        server = PlaygroundServer(args.port)
    except OSError as e:
        parser.error(f"--port {args.port}: cannot listen on {HOST}:{args.port} ({e.strerror or e}); try --port 0")
    query = {k: ",".join(map(str, v)) if isinstance(v, list) else v for k, v in s.config.items() if v is not None}
    url = f"{server.url}?{urlencode(query)}"
    print(f"trigrad playground at {url}\n(Ctrl-C stops it)", flush=True)
    if not args.no_open:
        threading.Timer(0.3, webbrowser.open, [url]).start()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("\nplayground stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
