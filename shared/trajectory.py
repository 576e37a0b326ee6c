"""Training trajectories: what a run did, step by step, in one object you can save and compare.

traj = be.train(spec, params, X, y, optimizer=Adam(lr=0.01), steps=500, record_every=50)
traj.losses          # (steps,) the loss of the batch each step trained on, before its update
traj.grad_norms      # (steps,) the global L2 norm of that step's gradient
traj.loss_steps      # (steps,) 0, 1, 2, ...: the step of each loss
                     # (with record_losses=k: ⌈steps/k⌉ of each, at steps 0, k, 2k, ...)
traj.snapshot_steps  # (m,) e.g. [0, 50, ..., 500]: params *before* that step's update
traj.snapshots       # m params lists (none unless record_every is set)
traj.params          # final params (canonical numpy layout, the backend's dtype)
compare(traj_numpy, traj_torch, tolerance("float64", "trajectory")).first_exceeded
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.continuation import BUFFERS
from shared.optim import OPTIMIZERS, Optimizer
from shared.params import Params, as_float_array, check_params, from_leaves, named_leaves, unflatten_named
from shared.spec import GPTSpec, spec_from_dict
from shared.tolerances import Tolerance, closeness
from shared.validation import DTYPES, HALF_DTYPES, check_dtype, numpy_dtype


class TrainingDiverged(FloatingPointError):
    """A loss, gradient norm or parameter stopped being finite. `step` is the first bad step,
    `quantity` which value ('loss', 'gradient norm', or 'parameters' when the step's update
    overflowed them), and `trajectory` the run up to that step, with the last finite params."""

    def __init__(self, step: int, quantity: str, value: float, trajectory: Trajectory, hint: str = ""):
        self.step, self.quantity, self.value, self.trajectory, self.hint = step, quantity, value, trajectory, hint
        what = (
            f"its update made the parameters non-finite ({value})"
            if quantity == "parameters"
            else f"the {quantity} is {value}"
        )
        super().__init__(
            f"training diverged at step {step}: {what}. {hint}"
            "Pass on_nonfinite='stop' to get the trajectory up to that step instead of this error."
        )

    def __reduce__(self):  # pickled whole (a data-parallel worker sends it back to the parent), trajectory included
        return type(self), (self.step, self.quantity, self.value, self.trajectory, self.hint)


@dataclass
class Trajectory:
    losses: np.ndarray
    grad_norms: np.ndarray
    params: Params
    snapshot_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    snapshots: list[Params] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    """What produced it: backend, dtype, spec, optimizer, seed, steps, batch_size, wall_time_s, ..."""
    diverged_at: int | None = None
    """The first step whose loss or gradient was not finite (its update was not applied), or None."""
    loss_every: int | None = 1
    """losses[i] and grad_norms[i] belong to step i · loss_every (train's record_losses); None: no
    losses were recorded."""
    steps_run: int | None = None
    """How many steps ran; None means len(losses), which is only right when loss_every is 1."""
    optimizer_state: dict | None = None
    """The optimizer's state after the last step, in the canonical layout (shared.continuation):
    what `train(spec, traj, ...)` continues from. None: not kept (a file from before it was)."""

    def __post_init__(self) -> None:
        if self.steps_run is None:
            if self.loss_every != 1:
                raise ValueError(f"steps_run is required when loss_every is {self.loss_every!r} (not 1)")
            self.steps_run = len(self.losses)

    def __len__(self) -> int:
        """The number of steps run (not the number of losses kept)."""
        return self.steps_run

    @property
    def loss_steps(self) -> np.ndarray:
        """The step each entry of `losses` and `grad_norms` belongs to: 0, k, 2k, ... for loss_every=k."""
        if self.loss_every is None:
            return np.zeros(0, np.int64)
        return np.arange(0, self.steps_run, self.loss_every, dtype=np.int64)

    def snapshot(self, step: int) -> Params:
        """The recorded params before `step`'s update (the final params for step == len(self))."""
        if step == len(self):
            return self.params
        hits = np.flatnonzero(self.snapshot_steps == step)
        if not len(hits):
            raise KeyError(f"no snapshot at step {step}; recorded: {self.snapshot_steps.tolist()}")
        return self.snapshots[hits[0]]

    # ---- persistence: one .npz, metadata as JSON inside ----

    def save(self, path: str | Path) -> Path:
        """Write the trajectory to `path` (".npz" is added if missing) and return the path written.

        Atomic: the file is written under a temporary name in the same folder, then moved over the
        target with os.replace, so an interrupted save never leaves half a file where a good one was.
        What is saved is validated first, exactly as `load` validates, so no file is written that
        `load` would refuse."""
        path = Path(path)
        path = path if path.suffix == ".npz" else path.with_name(path.name + ".npz")
        arrays = {"losses": self.losses, "grad_norms": self.grad_norms, "snapshot_steps": self.snapshot_steps}
        arrays |= _pack("params", self.params)
        for i, snap in enumerate(self.snapshots):
            arrays |= _pack(f"snapshot{i}", snap)
        state = self.optimizer_state
        for name in BUFFERS if state is not None else ():
            if name in state:
                arrays |= _pack(f"optimizer_state.{name}", state[name])
        n_layers = len(self.params["blocks"]) if isinstance(self.params, dict) else len(self.params)
        meta = {
            **self.meta,
            "diverged_at": self.diverged_at,
            "n_layers": n_layers,
            "loss_every": self.loss_every,
            "steps_run": len(self),
            # which buffers the file holds, and Adam's step count (None: no state kept)
            "optimizer_state": None
            if state is None
            else {"buffers": [b for b in BUFFERS if b in state], **({"t": state["t"]} if "t" in state else {})},
        }
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        if meta.get("dtype") in HALF_DTYPES:  # stored as float32, which holds every half-format value exactly
            half = numpy_dtype(meta["dtype"])
            arrays = {k: v.astype(np.float32) if v.dtype == half else v for k, v in arrays.items()}
        arrays |= {"meta": np.array(json.dumps(meta))}
        _fields(f"trajectory to save as {path}", arrays)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as file:
                np.savez(file, **arrays)
            os.replace(tmp, path)
        except BaseException:  # KeyboardInterrupt included: never leave the temporary behind
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> Trajectory:
        """Read a file written by `save`. Every field is checked (shapes against the spec, dtypes,
        finiteness, lengths, the metadata); anything wrong is a TrajectoryFileError naming the file
        and the field. Pickled objects are never loaded."""
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {}
                for name in z.files:
                    try:
                        arrays[name] = z[name]
                    except ValueError as e:  # an object array: refused, never unpickled
                        raise TrajectoryFileError(f"{path}: {name}: {e}") from None
        except (zipfile.BadZipFile, EOFError, OSError) as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise TrajectoryFileError(f"{path}: not a trajectory file (an .npz archive): {e}") from None
        except ValueError as e:
            if isinstance(e, TrajectoryFileError):
                raise
            raise TrajectoryFileError(f"{path}: not a trajectory file (an .npz archive): {e}") from None
        return cls(**_fields(str(path), arrays))


class TrajectoryFileError(ValueError):
    """A trajectory file that is broken or inconsistent (or a Trajectory that cannot be saved as
    one). The message names the file and the field."""


def _pack(prefix: str, params: Params) -> dict[str, np.ndarray]:
    """Arrays keyed '<prefix>.<name>': an MLP's as 'params.0.W' (the original format), a GPT's as
    'params.blocks[0].attn.Wq'."""
    return {f"{prefix}.{_file_name(name)}": a for name, a in named_leaves(params)}


def _mlp_arg(arg: str, name: str) -> str:
    """'layer0.b' -> "params[0]['b']", as check_params names it."""
    l, k = _file_name(name).split(".")
    return f"{arg}[{l}][{k!r}]"


def _file_name(name: str) -> str:
    match = re.fullmatch(r"layer(\d+)\.(W|b)", name)
    return f"{match[1]}.{match[2]}" if match else name


class _FileReader:
    """A saved trajectory's arrays, read and checked one field at a time; every error names the file
    and the field (TrajectoryFileError)."""

    def __init__(self, source: str, arrays: dict[str, np.ndarray]) -> None:
        self.source, self.arrays = source, arrays
        self.dtype: np.dtype | None = None  # the run's dtype
        self.stored: np.dtype | None = None  # the file's: float32 for a half format (exact), else the dtype
        self.spec = None

    def fail(self, message: str):
        raise TrajectoryFileError(f"{self.source}: {message}")

    def get(self, name: str) -> np.ndarray:
        if name not in self.arrays:
            self.fail(f"{name} is missing")
        return self.arrays[name]

    def checked(self, what, check, *args):
        try:
            return check(*args)
        except (TypeError, ValueError, KeyError) as e:
            self.fail(f"{what}{': ' if what else ''}{e.args[0] if e.args else e}")

    def same_dtype(self, a: np.ndarray, arg: str) -> np.ndarray:
        """`a` checked to be stored as the run's dtype says, and returned in the run's dtype."""
        if a.dtype != self.stored:
            self.fail(f"{arg} must be {self.stored.name} like the run's dtype; got {a.dtype}")
        if self.stored == self.dtype:
            return a
        back = a.astype(self.dtype)
        if not np.array_equal(back.astype(self.stored), a):
            self.fail(
                f"{arg} holds a value that is not a {self.dtype.name} number (a {self.dtype.name} run stores its "
                f"values as float32, exactly)"
            )
        return back

    def meta(self) -> dict:
        """The metadata, with the spec and dtype checked (and kept on self for the arrays)."""
        try:
            meta = json.loads(str(self.get("meta")))
        except json.JSONDecodeError:
            self.fail("meta is not valid JSON")
        if not isinstance(meta, dict):
            self.fail(f"meta must be a JSON object; got {type(meta).__name__}")
        meta = dict(meta)
        for key in ("spec", "dtype", "n_layers", "diverged_at"):
            if key not in meta:
                self.fail(f"{key} is missing (train() writes it into the Trajectory's meta)")
        self.dtype = numpy_dtype(self.checked("", check_dtype, meta["dtype"], DTYPES + HALF_DTYPES))
        self.stored = np.dtype(np.float32) if meta["dtype"] in HALF_DTYPES else self.dtype
        if not isinstance(meta["spec"], dict):
            self.fail(f"spec must be a dict like {{'sizes': [2, 4, 1], ...}}; got {meta['spec']!r}")
        self.spec = self.checked("spec", spec_from_dict, meta["spec"])
        n_layers = meta.pop("n_layers")
        if n_layers != self.spec.n_layers or isinstance(n_layers, bool):
            self.fail(f"n_layers must be the spec's {self.spec.n_layers} layers; got {n_layers!r}")
        if "optimizer" in meta:
            if not isinstance(meta["optimizer"], dict) or meta["optimizer"].get("name") not in OPTIMIZERS:
                self.fail(f"optimizer must name one of {', '.join(OPTIMIZERS)}; got {meta['optimizer']!r}")
            self.checked("optimizer", Optimizer.from_dict, meta["optimizer"])
        return meta

    def losses(self, meta: dict) -> dict:
        """losses, grad_norms, loss_every, steps_run and diverged_at, consistent with each other."""
        losses = self.same_dtype(self.checked("", as_float_array, self.get("losses"), "losses"), "losses")
        if losses.ndim != 1:
            self.fail(f"losses must be 1-D; got shape {losses.shape}")
        every = meta.pop("loss_every", 1)  # files written before record_losses existed: every step
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            self.fail(f"loss_every must be None or an integer ≥ 1; got {every!r}")
        steps_run = meta.pop("steps_run", len(losses))
        if isinstance(steps_run, bool) or not isinstance(steps_run, int) or steps_run < 0:
            self.fail(f"steps_run must be an integer ≥ 0; got {steps_run!r}")
        kept = 0 if every is None else len(range(0, steps_run, every))
        if len(losses) != kept:
            self.fail(f"losses must have {kept} entries ({steps_run} steps, one loss every {every}); got {len(losses)}")
        norms = self.same_dtype(self.checked("", as_float_array, self.get("grad_norms"), "grad_norms"), "grad_norms")
        if norms.shape != losses.shape:
            self.fail(f"grad_norms must have one entry per loss ({len(losses)}); got shape {norms.shape}")
        diverged_at = meta.pop("diverged_at")
        if diverged_at is not None and (
            isinstance(diverged_at, bool) or not isinstance(diverged_at, int) or diverged_at != steps_run
        ):
            self.fail(f"diverged_at must be None or the number of steps run ({steps_run}); got {diverged_at!r}")
        return dict(losses=losses, grad_norms=norms, loss_every=every, steps_run=steps_run, diverged_at=diverged_at)

    def snapshot_steps(self, steps_run: int) -> np.ndarray:
        steps = self.get("snapshot_steps")
        if steps.ndim != 1 or not (steps.size == 0 or steps.dtype.kind in "iu"):
            self.fail(f"snapshot_steps must be a 1-D integer array; got {steps.dtype} of shape {steps.shape}")
        if np.any(np.diff(steps) <= 0):
            self.fail(f"snapshot_steps must increase; got {steps.tolist()}")
        if len(steps) and not 0 <= steps[0] <= steps[-1] <= steps_run:
            self.fail(f"snapshot_steps must lie in [0, {steps_run}]; got {steps.tolist()}")
        return steps.astype(np.int64)

    def params(self, prefix: str, arg: str) -> Params:
        raw = unflatten_named(self.spec, lambda name: self.get(f"{prefix}.{_file_name(name)}"))
        checked_params = self.checked("", check_params, self.spec, raw, arg)
        leaves = [
            self.same_dtype(a, f"{arg}[{name!r}]" if isinstance(self.spec, GPTSpec) else _mlp_arg(arg, name))
            for name, a in named_leaves(checked_params)
        ]
        return from_leaves(self.spec, leaves)

    def optimizer_state(self, meta: dict) -> dict | None:
        """The optimizer state's buffers and step count, checked like the params (None in files written
        before it was kept, which then load but cannot be continued)."""
        described = meta.pop("optimizer_state", None)
        if described is None:
            return None
        if not isinstance(described, dict) or not isinstance(described.get("buffers"), list):
            self.fail(f"optimizer_state must be None or {{'buffers': [...], 't': steps}}; got {described!r}")
        unknown = [b for b in described["buffers"] if b not in BUFFERS]
        if unknown:
            self.fail(f"optimizer_state names buffers {unknown}; known: {list(BUFFERS)}")
        state = {b: self.params(f"optimizer_state.{b}", f"optimizer_state[{b!r}]") for b in described["buffers"]}
        if "t" in described:
            t = described["t"]
            if isinstance(t, bool) or not isinstance(t, int) or t < 0:
                self.fail(f"optimizer_state t must be an integer ≥ 0; got {t!r}")
            state["t"] = t
        return state


def _fields(source: str, arrays: dict[str, np.ndarray]) -> dict:
    """Check a saved trajectory's arrays and metadata against each other; return Trajectory's fields."""
    r = _FileReader(source, arrays)
    meta = r.meta()
    fields = r.losses(meta)
    steps = r.snapshot_steps(fields["steps_run"])
    return dict(
        **fields,
        params=r.params("params", "params"),
        snapshot_steps=steps,
        snapshots=[r.params(f"snapshot{i}", f"snapshots[{i}]") for i in range(len(steps))],
        optimizer_state=r.optimizer_state(meta),
        meta=meta,
    )


@dataclass(frozen=True)
class TrajectoryComparison:
    """Two trajectories side by side: parameter gaps at every step both recorded a snapshot, loss gaps
    at every step both recorded a loss."""

    steps: np.ndarray  # (m,) the steps both trajectories recorded (the final params included)
    max_abs: np.ndarray  # (m,) max |θa − θb| over all parameters at that step
    max_rel: np.ndarray  # (m,) max |θa − θb| / max(|θa|, |θb|)
    loss_abs: np.ndarray  # (k,) |La − Lb| at each of loss_steps
    first_exceeded: int | None  # the first step where params or loss differ beyond tol (None: never)
    tol: Tolerance
    loss_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """(k,) the steps both trajectories recorded a loss for (every step both ran, by default)."""

    @property
    def ok(self) -> bool:
        return self.first_exceeded is None

    def message(self, what: str) -> str:
        worst = int(np.argmax(self.max_rel)) if len(self.max_rel) else 0
        verdict = "within" if self.ok else f"first exceeds {self.tol} at step {self.first_exceeded}"
        return (
            f"{what}: worst parameter gap max rel {self.max_rel.max(initial=0):.3g} "
            f"(abs {self.max_abs.max(initial=0):.3g}) at step {self.steps[worst] if len(self.steps) else '-'}, "
            + (
                f"max loss gap {self.loss_abs.max(initial=0):.3g} over {len(self.loss_steps)} steps"
                if len(self.loss_steps)
                else "no step with a loss kept by both (losses not compared)"
            )
            + f"; {verdict}"
        )


def compare(a: Trajectory, b: Trajectory, tol: Tolerance) -> TrajectoryComparison:
    """Per recorded step, the max abs/rel parameter difference, and the loss difference at every step
    both recorded a loss;
    `first_exceeded` is the first step where either goes beyond `tol`, or where either side is not
    finite (a NaN never agrees). Params of a different structure are a ValueError, not a pass."""
    n = min(len(a), len(b))
    steps = sorted(set(a.snapshot_steps.tolist()) & set(b.snapshot_steps.tolist()))
    if len(a) == len(b):
        steps.append(n)  # the final params
    max_abs, max_rel, first = [], [], None
    for s in steps:
        result = closeness(a.snapshot(s), b.snapshot(s), tol)
        max_abs.append(result.max_abs)
        max_rel.append(result.max_rel)
        if not result.ok and first is None:
            first = s
    loss_steps, ia, ib = np.intersect1d(a.loss_steps, b.loss_steps, assume_unique=True, return_indices=True)
    la, lb = a.losses[ia].astype(np.float64), b.losses[ib].astype(np.float64)
    with np.errstate(invalid="ignore"):  # inf − inf is NaN: a gap that is not finite, never within tol
        loss_abs = np.abs(la - lb)
        within = loss_abs <= tol.atol + tol.rtol * np.maximum(np.abs(la), np.abs(lb))
    bad = np.flatnonzero(~(within & np.isfinite(la) & np.isfinite(lb)))  # NaN fails every comparison
    if len(bad) and (first is None or loss_steps[bad[0]] < first):
        first = int(loss_steps[bad[0]])
    if len(a) != len(b) and first is None:
        first = n  # one stopped (diverged) where the other went on
    return TrajectoryComparison(
        np.array(steps, np.int64), np.array(max_abs), np.array(max_rel), loss_abs, first, tol, loss_steps
    )
