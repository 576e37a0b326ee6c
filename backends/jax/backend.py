"""The JAX engine: the Backend that runs train.py's step behind the shared interface.

Training runs many steps inside one compiled call (`train_chunk`, a `jax.lax.fori_loop` of the step),
so Python and the host see the losses once per chunk rather than once per step; the optimizer's
hyperparameters live in its state, so a new learning rate reuses the compile.

float64 must really be float64. JAX computes in float32 unless x64 is enabled, and the flag is
global, so rather than flip it for the whole process (and change the dtype of the user's own JAX
code), every call into this backend runs inside `jax.enable_x64(True)` (`_scope`, entered by
Backend). A user who turns x64 off does not turn float64 off here, and importing this module
changes nothing outside it. float32 stays float32 inside the scope: the arrays arrive as float32.
"""

from __future__ import annotations

import copy
import os
import time
from contextlib import ExitStack
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from backends.jax import gpt, optim, parallel, train
from shared.backend import CHUNK, Backend
from shared.optim import Optimizer
from shared.parallel import Replica, run_workers

LENGTHS = tuple(10**k for k in range(len(str(CHUNK))))  # (1, 10, 100, 1000)
"""Minibatch rows reach a compiled chunk padded to one of these lengths (its shape is part of the
compile): at most four compiles per (spec, optimizer structure, dtype, batch shape). Full-batch
training compiles once."""


attention_maps = jax.jit(gpt.attention_maps, static_argnums=0)
"""Every block's attention probabilities, compiled once per spec and input shape."""


def compiled_length(n: int) -> int:
    return next(length for length in LENGTHS if length >= n)


def padded_rows(batches: np.ndarray | None, n: int):
    """A chunk's (n, b) minibatch rows padded to a compiled length (rows ≥ n are never used), on the
    device once per chunk; None for full-batch steps."""
    if batches is None:
        return None
    rows = np.zeros((compiled_length(n), batches.shape[1]), batches.dtype)
    rows[:n] = batches
    return jnp.asarray(rows)


@partial(jax.jit, static_argnames=("spec", "structure", "keep", "half", "mesh", "accumulate"))
def train_chunk(
    params,
    opt_state,
    X,
    y,
    batches,
    n,
    first,
    every,
    kept,
    *,
    spec,
    structure: Optimizer,
    keep: str,
    half=None,
    mesh=None,
    accumulate=1,
):
    """n training steps in one compiled call. Steps first, first + every, ... (`kept` of them) also
    compute their loss and gradient norm; the others only their gradient and update. `batches` is
    (≥ n, batch_size) sample indices, or None for full-batch steps. Returns the new params and
    optimizer state, and the kept losses and norms in (CHUNK,) buffers, meaningful up to `kept`
    (None for "none").

    n and the pattern are traced, so every chunk length and every record_losses stride share the
    compile; the loops have traced bounds (lax.fori_loop → a while loop), so no step is padding. The
    static `keep` picks the loop structure, one compile each when used: "none" (no loss kept: the
    bare loop, nothing else per step), "every" (every step's), "strided" (one in `every`). A `mesh`
    makes every step data-parallel over its devices (parallel.py); `accumulate` > 1 sums each step's
    gradient over that many micro-batches (train.accumulated)."""
    dtype = jax.tree.leaves(params)[0].dtype
    tx = optim.make_optimizer(structure, dtype)  # its values come from opt_state
    loss_fn = train.loss_fn if half is None else partial(train.mixed_loss_fn, half=half)  # mixed: float32 params
    value_and_grad = parallel.value_and_grad(loss_fn, mesh, accumulate)  # jax's, or one pmean of it over the mesh
    plain = mesh is None and accumulate == 1
    grad = jax.grad(loss_fn, argnums=1) if plain else lambda *args: value_and_grad(*args)[1]

    def batch(i):
        return (X, y) if batches is None else (X[batches[i]], y[batches[i]])  # (b, ...), (b, ...)

    def step(i, carry):  # a step whose loss nobody keeps: the gradient and the update, nothing else
        params, opt_state = carry
        grads = grad(spec, params, *batch(i))
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def kept_step(j, carry):  # the j-th kept step (step first + j·every), and in "strided" the steps up to the next
        params, opt_state, losses, norms = carry
        i = first + j * every
        loss, grads = value_and_grad(spec, params, *batch(i))
        losses, norms = losses.at[j].set(loss), norms.at[j].set(optax.tree.norm(grads))
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if keep == "strided":
            params, opt_state = jax.lax.fori_loop(i + 1, jnp.minimum(i + every, n), step, (params, opt_state))
        return params, opt_state, losses, norms

    if keep == "none":  # (returning empty buffers would cost a copy of them per call: return none)
        params, opt_state = jax.lax.fori_loop(0, n, step, (params, opt_state))
        return params, opt_state, None, None
    zeros = jnp.zeros(CHUNK, dtype)
    if keep == "strided":
        params, opt_state = jax.lax.fori_loop(0, first, step, (params, opt_state))  # before the first kept step
    params, opt_state, losses, norms = jax.lax.fori_loop(0, kept, kept_step, (params, opt_state, zeros, zeros))
    return params, opt_state, losses, norms


# optax keeps its state as a tree of named tuples (the hyperparameters' InjectStatefulHyperparamsState
# around the transformations' own); the canonical state (shared.continuation) needs only the two that
# carry the math: ScaleByAdamState (count, mu, nu) and TraceState (trace, SGD's momentum buffer).


def load_optimizer_state(opt_state, state: dict):
    """`opt_state` (a fresh tx.init) holding a canonical optimizer state, found by the state's names."""
    if "m" in state:
        adam = optax.ScaleByAdamState(
            count=jnp.asarray(state["t"], jnp.int32),
            mu=jax.tree.map(jnp.asarray, state["m"]),
            nu=jax.tree.map(jnp.asarray, state["v"]),
        )
        return optax.tree_utils.tree_set(opt_state, ScaleByAdamState=adam)
    if "velocity" in state:
        trace = optax.TraceState(trace=jax.tree.map(jnp.asarray, state["velocity"]))
        return optax.tree_utils.tree_set(opt_state, TraceState=trace)
    return opt_state  # plain SGD: no state


def read_optimizer_state(opt_state) -> dict:
    """The canonical optimizer state (numpy) of an optax state."""
    found = dict(optax.tree_utils.tree_get_all_with_path(opt_state, "ScaleByAdamState"))
    if found:
        (adam,) = found.values()
        return {"t": int(adam.count), "m": jax.tree.map(np.array, adam.mu), "v": jax.tree.map(np.array, adam.nu)}
    found = dict(optax.tree_utils.tree_get_all_with_path(opt_state, "TraceState"))
    if found:
        (trace,) = found.values()
        return {"velocity": jax.tree.map(np.array, trace.trace)}
    return {}


@partial(jax.jit, static_argnames=("spec", "structure", "half", "rule"))
def scaled_chunk(params, opt_state, X, y, batches, n, scale, good, *, spec, structure: Optimizer, half, rule):
    """n mixed-precision steps with dynamic loss scaling (shared.precision's rule, written out): the
    gradient of S·loss, divided by S in float32; a step whose gradients are not finite keeps the old
    params and optimizer state and halves S. Every step's loss and gradient norm (0 where skipped)
    and whether it was skipped come back in (CHUNK,) buffers, with the final S and good-step count."""
    tx = optim.make_optimizer(structure, jax.tree.leaves(params)[0].dtype)
    loss_fn = partial(train.mixed_loss_fn, half=half)

    def step(i, carry):
        params, opt_state, scale, good, losses, norms, skipped = carry
        Xb, yb = (X, y) if batches is None else (X[batches[i]], y[batches[i]])
        scaled, grads = jax.value_and_grad(lambda p: loss_fn(spec, p, Xb, yb) * scale)(params)
        grads = jax.tree.map(lambda g: g / scale, grads)  # float32, unscaled
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        updates, new_state = tx.update(grads, opt_state, params)
        keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731  (a skipped step changes nothing)
        params = jax.tree.map(keep, optax.apply_updates(params, updates), params)
        opt_state = jax.tree.map(keep, new_state, opt_state)
        losses = losses.at[i].set(scaled / scale)
        norms = norms.at[i].set(jnp.where(finite, optax.tree.norm(grads), 0.0))  # 0 where nothing was applied
        skipped = skipped.at[i].set(~finite)
        good = jnp.where(finite, good + 1, 0)  # the rule: grow after `interval` good steps, shrink on a bad one
        grow = good == rule.interval
        scale = jnp.where(finite, jnp.where(grow, scale * rule.growth, scale), scale * rule.backoff)
        return params, opt_state, scale, jnp.where(grow, 0, good), losses, norms, skipped

    dtype = jax.tree.leaves(params)[0].dtype
    buffers = (jnp.zeros(CHUNK, dtype), jnp.zeros(CHUNK, dtype), jnp.zeros(CHUNK, bool))
    return jax.lax.fori_loop(0, n, step, (params, opt_state, scale, good, *buffers))


class JaxBackend(Backend):
    """jax.value_and_grad + jax.jit over a params pytree."""

    name = "jax"
    devices = ("cpu", "gpu")
    all_reduces = ("pmean",)
    _mesh = None  # a data-parallel run's devices (parallel.batch_mesh), else None

    def _train_replicas(self, workers, engine, kwargs):
        """One process drives N devices: here if this process has them, else in one fresh process
        started with N host devices (XLA reads the flag only when JAX starts)."""
        found = jax.devices(self.device)
        if len(found) >= workers:
            self._replica, self._mesh = Replica(None, workers, engine), parallel.batch_mesh(found[:workers])
            try:
                return self.train(**kwargs, workers=workers, all_reduce=engine)
            finally:
                self._replica = self._mesh = None
        if self.device != "cpu":
            raise ValueError(f"workers={workers} needs {workers} {self.device} devices; JAX sees {len(found)}")
        flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={workers}".strip()
        started = time.perf_counter()
        (traj,) = run_workers(
            parallel.train_on_devices,
            [(self, workers, engine, kwargs)],
            env={"XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"},
            name="jax process",
        )
        traj.meta["launch_wall_time_s"] = time.perf_counter() - started
        return traj

    def _forward(self, spec, params, X):
        if self.precision == "mixed":
            return train.mixed_forward(spec, params, jnp.asarray(X), self.dtype)
        return train.forward(spec, params, jnp.asarray(X))

    def _loss_and_grads(self, spec, params, X, y):
        if self.precision == "mixed":
            return train.mixed_loss_and_grads(spec, params, jnp.asarray(X), jnp.asarray(y), self.dtype)
        loss, grads = train.loss_and_grads(spec, params, jnp.asarray(X), jnp.asarray(y))
        return loss, grads

    def _attention_maps(self, spec, params, X):
        if self.precision == "mixed":  # the maps of the half-format attention, returned in float32
            maps = attention_maps(spec, gpt.cast_linears(params, self.compute_np_dtype), jnp.asarray(X))
            return [P.astype(jnp.float32) for P in maps]
        return attention_maps(spec, params, jnp.asarray(X))

    def _train_begin(self, spec, params, X, y, optimizer, opt_state, scaling=None, accumulate=1):
        params = jax.tree.map(jnp.asarray, params)
        state = optim.make_optimizer(optimizer, self.np_dtype).init(params)  # holds lr, betas, ...
        return dict(
            params=params,
            opt_state=state if opt_state is None else load_optimizer_state(state, opt_state),
            X=jnp.asarray(X),
            y=jnp.asarray(y),
            scaling=scaling,  # the run's ScaleTracker, or None
            static=dict(
                spec=spec,
                structure=optim.optimizer_structure(optimizer),
                half=self.dtype if self.precision == "mixed" else None,
                mesh=self._mesh,
                accumulate=accumulate,
            ),
        )

    def _train_steps(self, state, n, batches, record):
        if state["scaling"] is not None:
            return self._scaled_steps(state, n, batches, record)
        # The compiled chunk never stops early (that keeps it fast): it runs all n steps even past a
        # NaN, and Backend.train replays the chunk to stop before the bad step.
        rows = padded_rows(batches, n)
        keep = "none" if not record else "every" if len(record) == n else "strided"
        # (a stride beyond the chunk keeps at most one step of it: the same loop, and it fits in int32)
        counts = (np.int32(n), np.int32(record.start), np.int32(min(record.step, n)), np.int32(len(record)))
        params, opt_state, losses, norms = train_chunk(
            state["params"], state["opt_state"], state["X"], state["y"], rows, *counts, keep=keep, **state["static"]
        )
        state.update(params=params, opt_state=opt_state)
        if not record:
            return np.zeros(0, self.np_dtype), np.zeros(0, self.np_dtype)
        return np.asarray(losses)[: len(record)], np.asarray(norms)[: len(record)]  # one trip to the host

    def _scaled_steps(self, state, n, batches, record):
        """Loss-scaled steps: one compiled loop keeping every step's loss and norm, the kept ones picked
        after; the tracker then follows the device's rule step by step."""
        rows = padded_rows(batches, n)
        tracker, static = state["scaling"], state["static"]
        out = scaled_chunk(
            state["params"],
            state["opt_state"],
            state["X"],
            state["y"],
            rows,
            np.int32(n),
            jnp.asarray(tracker.scale, jnp.float32),
            jnp.asarray(tracker.good, jnp.int32),
            spec=static["spec"],
            structure=static["structure"],
            half=static["half"],
            rule=tracker.rule,
        )
        params, opt_state, _, _, losses, norms, skipped = out
        state.update(params=params, opt_state=opt_state)
        for bad in np.asarray(skipped)[:n]:
            tracker.after_step(not bad)
        keep = np.array(record, dtype=np.int64)
        return np.asarray(losses)[keep], np.asarray(norms)[keep]

    def _train_params(self, state):
        return jax.tree.map(np.array, state["params"])

    def _train_optimizer_state(self, state):
        return read_optimizer_state(state["opt_state"])

    def _train_save(self, state):  # JAX arrays are immutable: keeping them is enough (the tracker: a copy)
        return state["params"], state["opt_state"], copy.deepcopy(state["scaling"])

    def _train_restore(self, state, saved):
        state["params"], state["opt_state"], state["scaling"] = saved

    def _scope(self):
        """float64 on (see the module docstring) and, on a GPU, every new array placed there."""
        stack = ExitStack()
        stack.enter_context(jax.enable_x64(True))
        if self.device != "cpu":
            stack.enter_context(jax.default_device(jax.devices(self.device)[0]))
        return stack

    def _device_present(self) -> bool:
        try:
            return bool(jax.devices(self.device))
        except RuntimeError:  # JAX raises when no backend of that platform is installed
            return False

    def _device_missing_reason(self) -> str:
        return f"jax.devices({self.device!r}) finds none; this jaxlib sees {[d.platform for d in jax.devices()]}"
