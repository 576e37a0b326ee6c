"""Data parallelism, JAX's way: one process, a Mesh of devices, the batch sharded, `pmean` under `shard_map`.

JAX is single-controller: one Python process drives every device. A `Mesh` names the devices'
axis ("batch"); under `jax.shard_map` the function runs once per device on that device's shard of
the batch (in_specs P("batch")) with the params replicated (P()), and `jax.lax.pmean` is the
all-reduce: the mean over the axis, the same on every device, so the update that follows is the
same everywhere. The same code runs on several GPUs; on the CPU, N devices need
XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts, so backend.py starts one
fresh process with it when this one has fewer devices.

backend.py's compiled chunk calls `value_and_grad(loss_fn, mesh)` in place of jax.value_and_grad.
"""

from __future__ import annotations

import os

import jax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from backends.jax import train


def batch_mesh(devices) -> Mesh:
    """A one-axis mesh over `devices`, the axis named "batch": the data-parallel layout."""
    return Mesh(devices, axis_names=("batch",))


def value_and_grad(loss_fn, mesh: Mesh | None, accumulate: int = 1):
    """jax.value_and_grad(loss_fn, argnums=1), data-parallel over `mesh` (None: the plain one): each
    device the loss and gradient of its shard of X and y (in `accumulate` micro-batches: train.accumulated),
    then one mean over the devices."""
    local = train.accumulated(jax.value_and_grad(loss_fn, argnums=1), accumulate)  # (itself when accumulate is 1)
    if mesh is None:
        return local

    def per_device(spec, params, X, y):  # X, y: this device's shard, (b / N, ...)
        # params arrive replicated (the same on every device). Differentiating with respect to a
        # replicated value, shard_map already sums its gradient over the devices (the transpose of
        # "replicate" is psum), and the pmean below would then give N times the mean: a bug Adam
        # hides (its update is scale-free) and SGD shows. pcast marks them per-device first, so
        # each device's gradient is its own shard's, and pmean is the one all-reduce.
        params = jax.lax.pcast(params, "batch", to="varying")
        loss, grads = local(spec, params, X, y)
        return jax.lax.pmean((loss, grads), axis_name="batch")  # the all-reduce: the mean over the devices

    def sharded(spec, params, X, y):
        step = jax.shard_map(
            lambda params, X, y: per_device(spec, params, X, y),
            mesh=mesh,
            in_specs=(P(), P("batch"), P("batch")),  # params replicated, the batch split along its first axis
            out_specs=P(),  # the mean: the same on every device
        )
        return step(params, X, y)

    return sharded


def train_on_devices(rank: int, backend, workers: int, engine: str, kwargs: dict):
    """The fresh process that has N host devices: the same train, now on them (rank is always 0)."""
    found = len(jax.devices("cpu"))
    if found < workers:  # (else train would start yet another process)
        raise RuntimeError(
            f"the JAX process started for workers={workers} sees {found} CPU devices: XLA_FLAGS "
            f"({os.environ.get('XLA_FLAGS', '')!r}) did not take effect"
        )
    return backend.train(**kwargs, workers=workers, all_reduce=engine)
