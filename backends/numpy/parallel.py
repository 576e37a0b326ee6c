"""Data parallelism by hand: the ring all-reduce, written out over multiprocessing pipes.

N worker processes stand in a ring: each sends to the next and receives from the previous. To
average a gradient of P numbers, each worker cuts it into N chunks and the ring runs 2(N − 1)
exchanges:

    reduce-scatter (N − 1 exchanges): in exchange s, worker r sends chunk (r − s) mod N on and adds
        the chunk (r − s − 1) mod N it receives into its own. Each chunk travels once around the ring
        gathering every worker's contribution, so afterwards worker r holds chunk (r + 1) mod N
        summed over all N workers.
    all-gather (N − 1 exchanges): in exchange s, worker r sends chunk (r + 1 − s) mod N on and keeps
        the chunk (r − s) mod N it receives. Each finished chunk travels around the ring once more.

Every worker sends 2(N − 1) chunks of P / N numbers: 2(N − 1)/N · P in all, nearly 2P however many
workers there are, which is why the ring is the all-reduce NCCL and gloo use for large gradients.
Every worker ends with the same bits (the all-gather copies the sums), so the replicas stay equal.

backend.py calls `Ring.all_reduce_mean` once per step, between the backward and the optimizer's
update; shared/parallel.py starts the workers.
"""

from __future__ import annotations

import multiprocessing as mp
import threading

import numpy as np

from shared.parallel import TIMEOUT_S, WorkerError


class Ring:
    """Worker `rank`'s place in a ring of `workers`: a pipe end to the next worker, one from the previous."""

    def __init__(self, rank: int, workers: int, to_next, from_prev, timeout_s: float = TIMEOUT_S) -> None:
        self.rank, self.workers = rank, workers
        self.next, self.prev = (rank + 1) % workers, (rank - 1) % workers
        self.to_next, self.from_prev, self.timeout_s = to_next, from_prev, timeout_s

    def all_reduce_mean(self, flat: np.ndarray) -> np.ndarray:
        """The mean over all workers of `flat` (every worker's own (P,) vector), in place; returns it."""
        N, r = self.workers, self.rank
        chunks = np.array_split(flat, N)  # N views into flat: the ring's unit of exchange
        for s in range(N - 1):  # reduce-scatter
            send, receive = (r - s) % N, (r - s - 1) % N
            chunks[receive] += self._exchange(chunks[send])
        for s in range(N - 1):  # all-gather: worker r now holds the sum of chunk (r + 1) % N
            send, receive = (r + 1 - s) % N, (r - s) % N
            chunks[receive][...] = self._exchange(chunks[send])
        flat /= N  # the sum of N mean gradients over equal shards, divided by N: the global batch's mean
        return flat

    def _exchange(self, chunk: np.ndarray) -> np.ndarray:
        """Send `chunk` to the next worker and return the chunk the previous one sent. A pipe blocks its
        sender until the reader has taken a large chunk, so the send runs in a thread while this worker
        receives: every worker sends and receives at once, and each wait is bounded by timeout_s, so a
        stuck neighbour on either side is named rather than waited for."""
        failed = []  # what the sending thread met, if anything
        sending = threading.Thread(target=self._send, args=(chunk, failed), daemon=True)
        sending.start()
        incoming = self._receive(chunk.dtype)
        sending.join(self.timeout_s)
        if sending.is_alive():
            raise WorkerError(
                f"worker {self.rank}: worker {self.next} took nothing for {self.timeout_s:g} s (stuck or crashed)"
            )
        if failed:
            raise failed[0]
        return incoming

    def _send(self, chunk: np.ndarray, failed: list) -> None:
        try:
            self.to_next.send_bytes(np.ascontiguousarray(chunk).tobytes())
        except (BrokenPipeError, EOFError, OSError) as e:
            failed.append(
                WorkerError(f"worker {self.rank}: worker {self.next} is gone (its end of the ring closed: {e})")
            )

    def _receive(self, dtype) -> np.ndarray:
        if not self.from_prev.poll(self.timeout_s):
            raise WorkerError(
                f"worker {self.rank}: worker {self.prev} sent nothing for {self.timeout_s:g} s (stuck or crashed)"
            )
        try:
            return np.frombuffer(self.from_prev.recv_bytes(), dtype)
        except (EOFError, OSError):
            raise WorkerError(f"worker {self.rank}: worker {self.prev} is gone (its end of the ring closed)") from None


def ring_pipes(workers: int) -> list[tuple]:
    """For each rank, its (to_next, from_prev) pipe ends: pipe r carries worker r's chunks to worker r + 1."""
    pipes = [mp.get_context("spawn").Pipe(duplex=False) for _ in range(workers)]  # pipe r: (read end, write end)
    return [(pipes[r][1], pipes[(r - 1) % workers][0]) for r in range(workers)]


def mean_over_workers(ring: Ring, loss, grads: list[np.ndarray]):
    """(loss, grads) averaged over every worker by one all-reduce: the gradients flattened into one
    vector, the loss riding along as its last number (0 on a step that computes none)."""
    flat = np.concatenate([g.ravel() for g in grads] + [np.array([0.0 if loss is None else loss], grads[0].dtype)])
    ring.all_reduce_mean(flat)  # (P + 1,): the same bits on every worker now
    sizes = np.cumsum([g.size for g in grads])[:-1]
    means = [part.reshape(g.shape) for part, g in zip(np.split(flat[:-1], sizes), grads)]
    return (None if loss is None else flat[-1]), means
