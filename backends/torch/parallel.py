"""Data parallelism, torch's way: torch.distributed with the gloo backend, and DistributedDataParallel.

Each worker process joins one process group (`join`): gloo on the CPU (on GPUs the same code runs
with NCCL), its rendezvous a file every rank opens, so nothing listens for it, and gloo's own
connections on the loopback interface only. Then two ways to average the gradients, the same math:

- "ddp": `DistributedDataParallel(module)`, as torch users write it. Its hooks all-reduce the
  gradients in buckets while the backward is still running, overlapping communication with compute,
  and divide by the number of workers.
- "all_reduce": what DDP does, by hand: after `loss.backward()`, `dist.all_reduce(w.grad)` (a sum)
  for every parameter, then `w.grad /= workers`.

backend.py calls these between the backward and `opt.step()`; shared/parallel.py starts the workers.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from shared.parallel import TIMEOUT_S


def loopback() -> str:
    """The name of the loopback interface ('lo' on Linux, 'lo0' on macOS), for gloo to bind to."""
    names = [name for _, name in socket.if_nameindex()]
    found = next((n for n in ("lo", "lo0") if n in names), None)
    if found is None:
        raise RuntimeError(f"no loopback interface ('lo' or 'lo0') for gloo to bind to; interfaces: {names}")
    return found


def join(rank: int, workers: int, rendezvous: str, device: str = "cpu", timeout_s: float = TIMEOUT_S) -> None:
    """Join the group as `rank` of `workers`: every rank opens the same rendezvous file; a collective
    that waits longer than timeout_s for another rank raises. On the CPU the engine is gloo; on CUDA
    it is NCCL, and rank r computes on GPU r (so "cuda" means this rank's own GPU from here on)."""
    os.environ["GLOO_SOCKET_IFNAME"] = loopback()  # gloo's sockets on 127.0.0.1 only, whatever the environment says
    if device == "cuda":
        torch.cuda.set_device(rank)
    engine = "nccl" if device == "cuda" else "gloo"
    timeout = timedelta(seconds=timeout_s)
    dist.init_process_group(engine, init_method=f"file://{rendezvous}", rank=rank, world_size=workers, timeout=timeout)


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: nn.Module, engine: str) -> nn.Module:
    """What the training loop calls for its forward: DDP around the module ("ddp"), or the module itself."""
    return DistributedDataParallel(module) if engine == "ddp" else module


def average_gradients(weights: list[torch.Tensor]) -> None:
    """The all-reduce by hand ("all_reduce"): each .grad summed over the workers, then divided by their number."""
    for w in weights:
        dist.all_reduce(w.grad, op=dist.ReduceOp.SUM)
        w.grad /= dist.get_world_size()


def mean_over_workers(loss: torch.Tensor) -> torch.Tensor:
    """The global batch's loss: the mean of every worker's shard loss (a recorded step only)."""
    loss = loss.detach().clone()
    dist.all_reduce(loss, op=dist.ReduceOp.SUM)
    return loss / dist.get_world_size()
