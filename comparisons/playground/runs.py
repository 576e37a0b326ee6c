"""A playground run: one lane per backend and dtype, each a chain of `train` chunks, and what the page
is sent after each chunk (losses, pictures, the parity gap in ε)."""

from __future__ import annotations

import itertools
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np

from backends import get_backend
from backends.numpy.mlp import ACTIVATIONS as NUMPY_ACTIVATIONS
from comparisons.playground.config import HIDDEN_RESOLUTION, MAX_CHUNKS, MAX_RUNS, ConfigError, Setup
from comparisons.playground.gpt_mode import N_TEST, GPTSetup, attention_view
from shared.params import Params, map_params, named_leaves
from shared.spec import MLPSpec, spec_to_dict
from shared.tolerances import closeness, gap_in_eps, trajectory_kind, trajectory_tolerance
from shared.trajectory import Trajectory
from shared.validation import format_eps, param_dtype_of, split_format

# ---- a run: one chain of chunks per backend and dtype ----


@dataclass
class Lane:
    """One backend in one dtype: the run so far, one Trajectory that each chunk continues."""

    backend: str
    dtype: str  # the format: 'float64', 'float32', 'bfloat16-mixed' or 'float16-mixed'
    params: Params  # the current params (the start's until the first chunk)
    run: Trajectory | None = None  # the whole run, continued chunk after chunk (its snapshots dropped)
    chunk_starts: list[int] = field(default_factory=list)  # the step each chunk started at
    chunk_params: list[Params] = field(default_factory=list)  # the params each chunk started from

    @property
    def name(self) -> str:
        return f"{self.backend}-{self.dtype}"

    @property
    def engine(self):
        """The lane's backend, in its format (mixed precision: float32 params, half-format compute)."""
        dtype, precision = split_format(self.dtype)
        return get_backend(self.backend, dtype, precision=precision)

    @property
    def diverged_at(self) -> int | None:
        return None if self.run is None else self.run.diverged_at

    def trajectory(self, s: Setup) -> Trajectory:
        """The whole run as one Trajectory: losses of every step, a snapshot at each chunk start, and
        the optimizer state, so `train(spec, Trajectory.load(...), ...)` continues it."""
        playground = {
            "config": s.config,
            "chunks": "chunk k is one Backend.train call continuing the run so far (params, optimizer state, "
            "minibatch schedule): together one run; snapshots are the params at each chunk start",
        }
        if self.run is None:  # no chunk yet: step 0
            empty = np.zeros(0, np.dtype(param_dtype_of(self.dtype)))
            dtype, precision = split_format(self.dtype)  # the params' dtype, as Backend.train's meta has it
            mixed = {"precision": "mixed", "compute_dtype": dtype} if precision == "mixed" else {}
            meta = {"backend": self.backend, "dtype": param_dtype_of(self.dtype), "spec": spec_to_dict(s.spec)}
            meta |= {"steps": 0, **mixed}
            meta |= {"optimizer": s.optimizer.to_dict(), "batch_size": s.config["batch_size"], "seed": s.config["seed"]}
            return Trajectory(empty, empty, self.params, meta=meta | {"playground": playground})
        return replace(
            self.run,
            snapshot_steps=np.array(self.chunk_starts, np.int64),
            snapshots=list(self.chunk_params),
            meta=self.run.meta | {"playground": playground},
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
        return lane.engine.loss_and_grads(spec, params, X, y)[0]
    except (FloatingPointError, ValueError):
        return None


def _train_eval(s) -> tuple[np.ndarray, np.ndarray]:
    """The training samples the shown train loss and accuracy are measured on: all of the MLP's; the
    GPT's first N_TEST sequences (enough for the curve, and a chunk stays within a few seconds)."""
    if isinstance(s, GPTSetup):
        return s.X_train[:N_TEST], s.y_train[:N_TEST]
    return s.X_train, s.y_train


def _accuracies(s, lane: Lane, params) -> tuple[float | None, float | None]:
    """(train, test) accuracy of `params` on `lane`'s backend: the MLP's class accuracy (None for mse),
    the GPT task's answer accuracy or the corpus's next-character accuracy."""
    if isinstance(s, GPTSetup):
        be = lane.engine
        try:
            return tuple(
                s.accuracy(be.forward(s.spec, params, X), Y) for X, Y in (_train_eval(s), (s.X_test, s.y_test))
            )
        except (FloatingPointError, ValueError):
            return None, None
    return (
        _accuracy(lane, params, s.X_train, s.labels_train, s.spec),
        _accuracy(lane, params, s.X_test, s.labels_test, s.spec),
    )


def _accuracy(lane: Lane, params: Params, X, labels, spec) -> float | None:
    """The share of samples whose predicted class (logit > 0 for bce, the largest logit for softmax_ce)
    is their label, by the backend's own forward; None for a regression loss (mse)."""
    if spec.loss == "mse":
        return None
    try:
        logits = lane.engine.forward(spec, params, X)
    except (FloatingPointError, ValueError):
        return None
    predicted = (logits[:, 0] > 0).astype(int) if spec.loss == "bce" else logits.argmax(axis=1)
    return float(np.mean(predicted == labels))


def compute_dtype_of(name: str) -> str:
    """The dtype a format computes in, whose ε the parity gap is counted in (mixed: the half format)."""
    return split_format(name)[0]


def tolerance_eps(dtype: str, optimizer: str, params: Params) -> float:
    """The trajectory tolerance, atol + rtol · max|θ|, in the parity gap's units (ε · max|θ|), ε the
    machine epsilon of the format's compute dtype."""
    tol = trajectory_tolerance(dtype, optimizer)
    scale = max(float(np.abs(np.asarray(x, np.float64)).max()) for _, x in named_leaves(params))
    eps = format_eps(dtype)
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
    hidden unit's activation over a coarser one, both computed by that lane's own backend (a GPT's:
    its attention maps and prediction for the example input)."""
    if isinstance(s, GPTSetup):
        return {"mode": "gpt", **attention_view(s, lane, None)}
    spec, be = s.spec, lane.engine
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
    """The runs in memory, at most `max_runs` (MAX_RUNS), the least recently used dropped first."""

    def __init__(self, max_runs: int = MAX_RUNS) -> None:
        self.max_runs = max_runs
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._lock = threading.Lock()
        self.training = threading.Lock()  # one chunk trains at a time: the cores are shared

    def new(self, s: Setup) -> Run:
        lanes = [Lane(b, d, map_params(lambda a, d=d: np.asarray(a, param_dtype_of(d)), s.params)) for b, d in s.lanes]
        run = Run(secrets.token_hex(8), s, lanes)
        with self._lock:
            self._runs[run.id] = run
            while len(self._runs) > self.max_runs:
                self._runs.popitem(last=False)
        return run

    def get(self, run_id: object) -> Run:
        with self._lock:
            if not isinstance(run_id, str) or run_id not in self._runs:
                raise ConfigError("run", f"no run {run_id!r} (the server keeps the last {self.max_runs}): press reset")
            self._runs.move_to_end(run_id)
            return self._runs[run_id]


def describe_run(run: Run) -> dict:
    """The run at step 0: its config, the data, and the first view; what POST /api/run answers."""
    s = run.setup
    start = []
    for lane in run.lanes:
        train_accuracy, test_accuracy = _accuracies(s, lane, lane.params)
        start.append(
            {
                "lane": lane.name,
                "train_loss": _loss(lane, lane.params, *_train_eval(s), s.spec),
                "test_loss": _loss(lane, lane.params, s.X_test, s.y_test, s.spec),
                "train_accuracy": train_accuracy,
                "test_accuracy": test_accuracy,
            }
        )
    common = {
        "type": "run",
        "run": run.id,
        "config": s.config,
        "lanes": [lane.name for lane in run.lanes],
        "start": start,
        "tolerance_kind": {d: trajectory_kind(d, s.config["optimizer"]) for d in s.config["dtypes"]},
        "view": view(s, run.lanes[0]),
    }
    if isinstance(s, GPTSetup):
        held_out = {"examples": s.examples(), "n_train": len(s.X_train), "n_test": len(s.X_test)}
        return common | {"mode": "gpt", "example": s.example, **held_out}
    return common | {
        "mode": "mlp",
        "extent": s.extent,
        "n_classes": s.n_classes,
        "train": {"X": _floats(s.X_train, 5), "y": s.labels_train.tolist()},
        "test": {"X": _floats(s.X_test, 5), "y": s.labels_test.tolist()},
    }


def _train_lane(s: Setup, lane: Lane, steps: int, every: int) -> Trajectory:
    """One chunk of `lane`: a `train` call that continues the lane's run so far (or starts it)."""
    return lane.engine.train(
        s.spec,
        lane.params if lane.run is None else lane.run,  # the run so far, continued exactly
        s.X_train,
        s.y_train,
        s.optimizer,
        steps,
        batch_size=s.config["batch_size"],
        seed=s.config["seed"],
        record_every=every,
        on_nonfinite="stop",
        progress=False,
    )


def _lane_message(s: Setup, lane: Lane, traj: Trajectory, points: list, chunk_start: int) -> dict:
    """What the page is sent for one lane's chunk (see `step`)."""
    spec = s.spec
    return {
        "type": "lane",
        "lane": lane.name,
        "steps": [k for k, _ in points],
        "train_loss": [_loss(lane, p, *_train_eval(s), spec) for _, p in points],
        "test_loss": [_loss(lane, p, s.X_test, s.y_test, spec) for _, p in points],
        **dict(zip(("train_accuracy", "test_accuracy"), map(list, zip(*(_accuracies(s, lane, p) for _, p in points))))),
        "losses": _floats(traj.losses[chunk_start:]),  # this chunk's
        "params": None if isinstance(s, GPTSetup) else _params_json(traj.params),  # a GPT's are too many to send
        "diverged_at": traj.diverged_at,
        "wall_s": (traj.meta["segments"][-1] if "segments" in traj.meta else traj.meta)["wall_time_s"],
    }


def _parity_pairs(s: Setup, run: Run, recorded: dict) -> list[dict]:
    """Per dtype and pair of lanes: the gap in ε at each step both recorded, the tolerance line in the
    same units, and closeness()'s verdict."""
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
                    "steps": [k for k, _, _ in at],
                    "gap_eps": [gap_in_eps(pa, pb, compute_dtype_of(dtype)) for _, pa, pb in at],
                    "tol_eps": [tolerance_eps(dtype, s.config["optimizer"], pa) for _, pa, _ in at],
                    "within": [closeness(pa, pb, tol).ok for _, pa, pb in at],
                }
            )
    return pairs


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
    s = run.setup
    if run.chunks >= MAX_CHUNKS:
        raise ConfigError("steps", f"this run has reached {MAX_CHUNKS} chunks: press reset to start another")
    every = min(s.config["every"], steps)
    recorded, results = {}, {}
    for lane in run.lanes:
        if lane.diverged_at is not None:
            continue
        traj = results[lane.name] = _train_lane(s, lane, steps, every)
        points = [*zip(traj.snapshot_steps.tolist(), traj.snapshots), (len(traj), traj.params)]
        if len(points) > 1 and points[-2][0] == points[-1][0]:  # diverged right after a snapshot: the same params twice
            points.pop(-2)
        recorded[lane.name] = points
        yield _lane_message(s, lane, traj, points, run.step)
    for lane in run.lanes:  # every lane trained: commit
        if (traj := results.get(lane.name)) is None:
            continue
        lane.chunk_starts.append(run.step)
        lane.chunk_params.append(lane.params)
        # the next chunk needs the params, the optimizer state and the losses, not this chunk's snapshots
        lane.run = replace(traj, snapshot_steps=np.zeros(0, np.int64), snapshots=[])
        lane.params = traj.params
    yield {"type": "parity", "pairs": _parity_pairs(s, run, recorded)}
    lanes = {lane.name: lane for lane in run.lanes}
    yield {"type": "view", **view(s, lanes.get(view_lane or "", run.lanes[0]))}
    run.step += steps if results else 0
    run.chunks += 1 if results else 0
    yield {"type": "done", "step": run.step, "chunks": run.chunks}
