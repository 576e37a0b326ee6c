"""The NumPy engine: the Backend that runs mlp.py / gpt.py behind the shared interface.

Nothing here is needed to learn backprop: it is train.py's step run n at a time (the loss and norm
only on the steps that keep them; where none is kept, an MLP's gradients from the fast path,
train.plain_mlp_grads), the BLAS thread policy, and the save/restore hooks that let shared.backend
replay a chunk that blew up.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager, nullcontext
from functools import cache, partial

import numpy as np

from backends.numpy import gpt, optim, parallel, train
from shared.backend import Backend
from shared.params import from_leaves, map_params, tree_leaves
from shared.spec import GPTSpec


@cache
def blas_threadpools():
    """threadpoolctl's controller of the BLAS libraries loaded in this process (numpy's and scipy's
    OpenBLAS), or None without threadpoolctl (BLAS then keeps its threads). Found once: the search
    walks every loaded shared library: 2.3 ms a call with torch and JAX loaded, which every train
    call paid while it called threadpool_limits. numpy and scipy (mlp.py imports scipy.special) have
    loaded their BLAS by the time this runs; one that some other package loads later is not limited."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController().select(user_api="blas")


class NumpyBackend(Backend):
    """Backprop by hand: forward keeps a cache, backward walks it in reverse."""

    name = "numpy"
    single_thread_below = 1e7
    """Measured on 2 quiet cores (float32 SGD, steps/s with 2 BLAS threads ÷ 1): xor 0.99, small (4.5e5
    FLOPs/step) 0.98, medium (1.6e8) 1.6–1.7, large (8.6e9) 1.6: one thread below ~1e7 FLOPs a step."""

    all_reduces = ("ring",)
    _ring: parallel.Ring | None = None  # this worker's place in a data-parallel run's ring

    @contextmanager
    def _replica_group(self, workers):
        yield parallel.ring_pipes(workers)

    def _join(self, replica, comm):
        super()._join(replica, comm)
        self._ring = parallel.Ring(replica.rank, replica.workers, *comm)

    def _leave(self):
        super()._leave()
        self._ring = None

    def _limit_threads(self, n):
        blas = blas_threadpools()
        return nullcontext() if n is None or blas is None else blas.limit(limits=n)

    def _forward(self, spec, params, X):
        if self.precision == "mixed":  # the float32 params cast to the half format, the logits cast back
            return train.mixed_forward(spec, params, X, self.compute_np_dtype)
        logits, _ = train.forward(spec, params, X)
        return logits

    def _loss_and_grads(self, spec, params, X, y):
        return self._model_loss_and_grads(spec)(spec, params, X, y)

    def _model_loss_and_grads(self, spec):
        """The model's loss_and_grads, or train.mixed_loss_and_grads in mixed precision."""
        if self.precision == "mixed":
            mixed = train.mixed_gpt_loss_and_grads if isinstance(spec, GPTSpec) else train.mixed_loss_and_grads
            return partial(mixed, half=self.compute_np_dtype)
        return train.model(spec).loss_and_grads

    def _attention_maps(self, spec, params, X):
        if self.precision == "mixed":  # the maps of the half-format attention, returned in float32
            maps = gpt.attention_maps(spec, gpt.cast_linears(params, self.compute_np_dtype), X)
            return [P.astype(np.float32) for P in maps]
        return gpt.attention_maps(spec, params, X)

    def _train_begin(self, spec, params, X, y, optimizer, opt_state, scaling=None, accumulate=1):
        params = map_params(np.copy, params)  # ours to update in place
        leaves = tree_leaves(params)  # the same arrays, as the flat list the optimizer updates
        opt_state = {k: v if k == "t" else tree_leaves(v) for k, v in (opt_state or {}).items()}  # flat, too
        return dict(
            spec=spec,
            params=params,
            leaves=leaves,
            X=X,
            y=y,
            loss_and_grads=train.accumulated(self._model_loss_and_grads(spec), accumulate),  # (itself at 1)
            accumulate=accumulate,
            scaling=scaling,  # a shared.precision.ScaleTracker, or None
            ring=self._ring,  # data parallel: this worker's ring (parallel.py), else None
            opt=optim.make_optimizer(optimizer, leaves, opt_state),  # looked up now: a switched-on bug can replace it
        )

    def _train_steps(self, state, n, batches, record):
        spec, params, X, y, opt, leaves = (state[k] for k in ("spec", "params", "X", "y", "opt", "leaves"))
        model_loss_and_grads, scaling, ring = state["loss_and_grads"], state["scaling"], state["ring"]
        losses = np.zeros(len(record), self.np_dtype)
        norms = np.zeros(len(record), self.np_dtype)
        kept = 0
        if not record and scaling is None and ring is None:  # no loss kept, no scale, no ring: nothing but the steps
            fast = self._plain_mlp_grads(state)  # train.plain_mlp_grads, where it applies
            with np.errstate(over="ignore", invalid="ignore"):  # a blow-up is caught by Backend.train, after the chunk
                for i in range(n):
                    Xb, yb = (X, y) if batches is None else (X[batches[i]], y[batches[i]])  # (b, ...), (b, ...)
                    if fast:
                        grads = fast(Xb, yb)
                    else:
                        grads = tree_leaves(model_loss_and_grads(spec, params, Xb, yb, need_loss=False)[1])
                    opt.step(leaves, grads)
            return losses, norms
        with np.errstate(over="ignore", invalid="ignore"):  # a blow-up is caught below, step by step
            for i in range(n):
                Xb, yb = (X, y) if batches is None else (X[batches[i]], y[batches[i]])  # (b, ...), (b, ...)
                recorded = i in record  # the loss and the norm only where they are kept
                if scaling is None:
                    loss, grads = model_loss_and_grads(spec, params, Xb, yb, need_loss=recorded)
                    grads, applied = tree_leaves(grads), True
                    if ring is not None:  # data parallel: the mean over every worker's shard
                        loss, grads = parallel.mean_over_workers(ring, loss, grads)
                else:  # loss scaling: a step whose unscaled gradients are not finite is skipped
                    loss, grads = model_loss_and_grads(spec, params, Xb, yb, need_loss=recorded, scale=scaling.scale)
                    grads = tree_leaves(grads)
                    applied = all(np.isfinite(g).all() for g in grads)
                    scaling.after_step(applied)
                if recorded:
                    losses[kept], norms[kept] = loss, train.global_norm(grads) if applied else 0.0
                    kept += 1
                    if not (np.isfinite(losses[kept - 1]) and np.isfinite(norms[kept - 1])):
                        return losses[:kept], norms[:kept]  # diverged: Backend.train finds out why
                if applied:
                    opt.step(leaves, grads)
        return losses, norms

    def _plain_mlp_grads(self, state):
        """The fast path's gradients (train.plain_mlp_grads) for an MLP in float32 or float64, computed
        whole on one batch; None where the teaching loss_and_grads must run: fast_path switched off, a
        GPT, mixed precision or a half format (their casts live in mlp.py), micro-batches."""
        spec, leaves = state["spec"], state["leaves"]
        if not self.fast_path or isinstance(spec, GPTSpec) or self.precision == "mixed" or state["accumulate"] > 1:
            return None
        return train.plain_mlp_grads(spec, leaves) if leaves[0].itemsize >= 4 else None

    def _train_params(self, state):
        return map_params(np.copy, state["params"])

    def _train_optimizer_state(self, state):
        spec = state["spec"]  # the optimizer's flat lists of buffers, back into params trees
        return {k: v if k == "t" else from_leaves(spec, v) for k, v in state["opt"].state().items()}

    def _train_save(self, state):
        return copy.deepcopy((state["params"], state["opt"], state["scaling"]))  # params, buffers, the scale

    def _train_restore(self, state, saved):
        state["params"], state["opt"], state["scaling"] = saved
        state["leaves"] = tree_leaves(state["params"])
