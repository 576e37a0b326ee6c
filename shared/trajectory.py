"""Training trajectories: what a run did, step by step, in one object you can save and compare.

traj = be.train(spec, params, X, y, optimizer=Adam(lr=0.01), steps=500, record_every=50)
traj.losses          # (steps,) the loss of the batch each step trained on, before its update
traj.grad_norms      # (steps,) the global L2 norm of that step's gradient
traj.snapshot_steps  # (m,) e.g. [0, 50, ..., 500]: params *before* that step's update
traj.snapshots       # m params lists (none unless record_every is set)
traj.params          # final params (canonical numpy layout, the backend's dtype)
compare(traj_numpy, traj_torch, tolerance("float64", "trajectory")).first_exceeded
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.params import Params
from shared.tolerances import Tolerance, closeness


class TrainingDiverged(FloatingPointError):
    """A loss, gradient norm or parameter stopped being finite. `step` is the first bad step,
    `quantity` which value ('loss', 'gradient norm', or 'parameters' when the step's update
    overflowed them), and `trajectory` the run up to that step, with the last finite params."""

    def __init__(self, step: int, quantity: str, value: float, trajectory: Trajectory, hint: str = ""):
        self.step, self.quantity, self.value, self.trajectory = step, quantity, value, trajectory
        what = (
            f"its update made the parameters non-finite ({value})"
            if quantity == "parameters"
            else f"the {quantity} is {value}"
        )
        super().__init__(
            f"training diverged at step {step}: {what}. {hint}"
            "Pass on_nonfinite='stop' to get the trajectory up to that step instead of this error."
        )


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

    def __len__(self) -> int:
        return len(self.losses)

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
        path = Path(path)
        arrays = {"losses": self.losses, "grad_norms": self.grad_norms, "snapshot_steps": self.snapshot_steps}
        arrays |= _pack("params", self.params)
        for i, snap in enumerate(self.snapshots):
            arrays |= _pack(f"snapshot{i}", snap)
        meta = {**self.meta, "diverged_at": self.diverged_at, "n_layers": len(self.params)}
        np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    @classmethod
    def load(cls, path: str | Path) -> Trajectory:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            n_layers = meta.pop("n_layers")
            steps = z["snapshot_steps"]
            return cls(
                losses=z["losses"],
                grad_norms=z["grad_norms"],
                params=_unpack(z, "params", n_layers),
                snapshot_steps=steps,
                snapshots=[_unpack(z, f"snapshot{i}", n_layers) for i in range(len(steps))],
                diverged_at=meta.pop("diverged_at"),
                meta=meta,
            )


def _pack(prefix: str, params: Params) -> dict[str, np.ndarray]:
    return {f"{prefix}.{l}.{k}": v for l, layer in enumerate(params) for k, v in layer.items()}


def _unpack(z, prefix: str, n_layers: int) -> Params:
    return [{k: z[f"{prefix}.{l}.{k}"] for k in ("W", "b")} for l in range(n_layers)]


@dataclass(frozen=True)
class TrajectoryComparison:
    """Two trajectories side by side: parameter gaps at every step both recorded, loss gaps every step."""

    steps: np.ndarray  # (m,) the steps both trajectories recorded (the final params included)
    max_abs: np.ndarray  # (m,) max |θa − θb| over all parameters at that step
    max_rel: np.ndarray  # (m,) max |θa − θb| / max(|θa|, |θb|)
    loss_abs: np.ndarray  # (steps,) |La − Lb| at every step both ran
    first_exceeded: int | None  # the first step where params or loss differ beyond tol (None: never)
    tol: Tolerance

    @property
    def ok(self) -> bool:
        return self.first_exceeded is None

    def message(self, what: str) -> str:
        worst = int(np.argmax(self.max_rel)) if len(self.max_rel) else 0
        verdict = "within" if self.ok else f"first exceeds {self.tol} at step {self.first_exceeded}"
        return (
            f"{what}: worst parameter gap max rel {self.max_rel.max(initial=0):.3g} "
            f"(abs {self.max_abs.max(initial=0):.3g}) at step {self.steps[worst] if len(self.steps) else '-'}, "
            f"max loss gap {self.loss_abs.max(initial=0):.3g}; {verdict}"
        )


def compare(a: Trajectory, b: Trajectory, tol: Tolerance) -> TrajectoryComparison:
    """Per recorded step, the max abs/rel parameter difference, and the per-step loss difference;
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
    la, lb = a.losses[:n].astype(np.float64), b.losses[:n].astype(np.float64)
    with np.errstate(invalid="ignore"):  # inf − inf is NaN: a gap that is not finite, never within tol
        loss_abs = np.abs(la - lb)
        within = loss_abs <= tol.atol + tol.rtol * np.maximum(np.abs(la), np.abs(lb))
    bad = np.flatnonzero(~(within & np.isfinite(la) & np.isfinite(lb)))  # NaN fails every comparison
    if len(bad) and (first is None or bad[0] < first):
        first = int(bad[0])
    if len(a) != len(b) and first is None:
        first = n  # one stopped (diverged) where the other went on
    return TrajectoryComparison(np.array(steps, np.int64), np.array(max_abs), np.array(max_rel), loss_abs, first, tol)
