"""Runs that continue exactly: the optimizer state in one canonical layout, and a Trajectory picked up
where it stopped.

    traj = be.train(spec, params, X, y, optimizer=Adam(lr=0.01), steps=60)
    traj = be.train(spec, traj, X, y, optimizer=Adam(lr=0.001), steps=40)   # 40 more: the same run

The second call starts from traj's final params *and* its optimizer state (momentum buffers, Adam's
moments and step count), at step traj.steps_run of the minibatch schedule, so 60 steps and then 40
equal one run of 100, bit for bit. The hyperparameters may change between calls (a learning-rate
drop); the optimizer's type may not, since its state would mean something else.

The state is kept like the params, in the canonical layout (every buffer params-shaped, weights
(in, out)), so a run started on one backend continues on another:

    {}                                        SGD without momentum: no state
    {"velocity": params-shaped}               SGD with momentum: v in  v ← μ·v + g
                                              (torch: momentum_buffer; optax: TraceState.trace)
    {"t": steps, "m": params-shaped, "v": params-shaped}
                                              Adam / AdamW: the moments and the step count of the bias
                                              correction (torch: exp_avg, exp_avg_sq, step;
                                              optax: ScaleByAdamState mu, nu, count)
"""

from __future__ import annotations

import numbers
from dataclasses import replace

import numpy as np

from shared.optim import SGD, Optimizer
from shared.params import Params, check_params, map_params
from shared.spec import spec_to_dict

BUFFERS = ("velocity", "m", "v")
"""The params-shaped buffers an optimizer state may hold (see the module docstring)."""


def state_buffers(optimizer: Optimizer) -> tuple[str, ...]:
    """The buffers `optimizer`'s state holds: () for plain SGD, ('velocity',) with momentum, ('m', 'v')
    for Adam and AdamW (which also count their steps, 't')."""
    if isinstance(optimizer, SGD):
        return ("velocity",) if optimizer.momentum else ()
    return ("m", "v")


def check_optimizer_state(spec, optimizer: Optimizer, state: object, arg: str = "optimizer_state") -> dict:
    """Validate a canonical optimizer state for `optimizer` on `spec`'s params: the buffers it must hold
    (params-shaped, finite), and 't' (an integer ≥ 0) for Adam. Returns it with numpy leaves. An SGD
    state may lack its velocity (a run that had no momentum so far): the buffer then starts at zero,
    as a fresh one does."""
    if not isinstance(state, dict):
        raise TypeError(
            f"{arg} must be a dict like {{'velocity': params}} or {{'t': 3, 'm': ..., 'v': ...}}; got {state!r}"
        )
    expected = state_buffers(optimizer)
    allowed = set(expected) | ({"t"} if "m" in expected else set())
    if isinstance(optimizer, SGD):
        allowed.add("velocity")  # kept from a run with momentum, unused without it
    unknown = sorted(set(state) - allowed)
    if unknown:
        raise ValueError(f"{arg} has keys {unknown} that {optimizer.name} does not use; it uses {sorted(allowed)}")
    out = {}
    for name in expected:
        if name not in state and name != "velocity":
            raise ValueError(f"{arg} is missing {name!r}, which {optimizer.name} needs")
        if name in state:
            out[name] = check_params(spec, state[name], f"{arg}[{name!r}]")
    if "m" in expected:
        t = state.get("t")
        if isinstance(t, bool) or not isinstance(t, numbers.Integral) or t < 0:
            raise ValueError(f"{arg}['t'] must be the number of steps taken, an integer ≥ 0; got {t!r}")
        out["t"] = int(t)
    return out


def fresh_state(optimizer: Optimizer, params: Params) -> dict:
    """The state a run starts with: zero buffers, t = 0."""
    state = {name: map_params(np.zeros_like, params) for name in state_buffers(optimizer)}
    return state | ({"t": 0} if "m" in state else {})


def cast_state(state: dict, cast) -> dict:
    """`cast` applied to every buffer (t unchanged)."""
    return {k: (v if k == "t" else cast(v)) for k, v in state.items()}


def check_same_spec(traj, spec) -> None:
    """The network a continued run trains must be the trajectory's (checked before its params are)."""
    if traj.meta.get("spec") != spec_to_dict(spec):
        raise ValueError(f"spec {spec_to_dict(spec)} does not match the trajectory's spec {traj.meta.get('spec')}")


def check_continuation(
    traj, spec, optimizer: Optimizer, dtype: str, batch_size, seed, record_losses, precision=("pure", None)
) -> dict:
    """Everything `train(spec, traj, ...)` needs to continue `traj` exactly, checked: its state, its
    spec, optimizer type, dtype, batch size, seed and loss stride. Returns its optimizer state.
    Every refusal is a ValueError that names the field and both values, and says what to do."""
    restart = "to start a new run from its params, pass params=traj.params"
    if traj.optimizer_state is None:
        raise ValueError(
            "params: this Trajectory holds no optimizer state (it was saved before trigrad kept one, "
            f"or built by hand), so it cannot continue exactly; {restart}"
        )
    if traj.diverged_at is not None:
        raise ValueError(
            f"params: this Trajectory diverged at step {traj.diverged_at}; continuing would repeat the bad step. "
            "Lower the learning rate and train again (traj.snapshot(step) gives earlier params)"
        )
    meta = traj.meta
    check_same_spec(traj, spec)
    trained = (meta.get("optimizer") or {}).get("name")
    if trained != optimizer.name:
        raise ValueError(
            f"optimizer: the trajectory was trained with {trained}, got {optimizer.name}. Its hyperparameters may "
            f"change, its type may not (the state of one means nothing to the other); {restart}"
        )
    mode, compute = precision  # ("mixed", "bfloat16"), or ("pure", None)
    theirs_mode = (meta.get("precision", "pure"), meta.get("compute_dtype"))
    if (mode, compute) != theirs_mode:
        raise ValueError(
            f"precision={mode!r} (compute in {compute or dtype}) differs from the trajectory's "
            f"precision={theirs_mode[0]!r} (compute in {theirs_mode[1] or meta.get('dtype')}); {restart}"
        )
    for field, value, theirs in (
        ("dtype", dtype, meta.get("dtype")),
        ("batch_size", batch_size, meta.get("batch_size")),
        ("seed", seed, meta.get("seed") if batch_size is not None else seed),  # the seed only orders minibatches
        ("record_losses", record_losses, traj.loss_every),
    ):
        if value != theirs:
            raise ValueError(
                f"{field}={value!r} differs from the trajectory's {field}={theirs!r}: a continued run keeps it "
                f"(so the minibatch order and the kept losses go on as in one run); {restart}"
            )
    state = check_optimizer_state(spec, optimizer, traj.optimizer_state, "traj.optimizer_state")
    if isinstance(optimizer, SGD) and optimizer.momentum and "velocity" not in state:
        state["velocity"] = map_params(np.zeros_like, traj.params)  # momentum switched on: a fresh buffer
    return {k: v for k, v in state.items() if k in state_buffers(optimizer) or k == "t"}


def joined(prior, new):
    """One Trajectory for a run and its continuation: `prior`'s losses, norms and snapshots, then
    `new`'s (whose steps already count on from prior.steps_run); the final params and optimizer state
    are `new`'s. meta["segments"] lists each call's backend, steps, optimizer and wall time."""

    def segment(meta: dict, steps: int) -> dict:
        keys = ("backend", "device", "optimizer", "wall_time_s", "workers", "all_reduce", "accumulate")
        return {"steps": steps, **{k: meta[k] for k in keys if k in meta}}

    segments = prior.meta.get("segments") or [segment(prior.meta, prior.steps_run)]
    ran = new.steps_run - prior.steps_run
    meta = {**new.meta, "steps": prior.steps_run + new.meta["steps"], "segments": [*segments, segment(new.meta, ran)]}
    return replace(
        new,
        losses=np.concatenate([prior.losses, new.losses]),
        grad_norms=np.concatenate([prior.grad_norms, new.grad_norms]),
        snapshot_steps=np.concatenate([prior.snapshot_steps, new.snapshot_steps]).astype(np.int64),
        snapshots=[*prior.snapshots, *new.snapshots],
        meta=meta,
    )
