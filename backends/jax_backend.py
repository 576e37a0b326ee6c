"""JAX backend: the MLP as JAX users write it.

Pure functions over a params pytree (a list of {"W", "b"} dicts, the canonical layout itself, so
nothing is transposed). `jax.value_and_grad` turns the loss function into one that also returns its
gradient; `jax.jit` compiles it with XLA, once per spec (the spec is a static, hashable argument).
Training uses optax, and runs many steps inside one compiled call with `jax.lax.scan`, so Python and
the host see the losses once per chunk of steps rather than once per step.

Two numerical settings, made explicit:
- float64 must really be float64. JAX computes in float32 unless x64 is enabled, so this module
  enables it when it is imported (for the whole process: the flag is global in JAX).
- float32 matmuls run at full float32 precision (`precision="highest"`); on some accelerators the
  default would be a faster, lower-precision pass.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from shared.backend import Backend
from shared.optim import SGD, AdamW, Optimizer
from shared.params import Params
from shared.spec import MLPSpec

jax.config.update("jax_enable_x64", True)

ACTIVATIONS = {
    "identity": lambda z: z,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "gelu": partial(jax.nn.gelu, approximate=False),  # exact erf form; JAX's default is the tanh approximation
}

LOSSES = {
    "mse": lambda y_hat, y: jnp.mean((y_hat - y) ** 2),  # mean over all elements
    "bce": lambda z, y: optax.sigmoid_binary_cross_entropy(z, y).mean(),  # stable on logits
    "softmax_ce": lambda z, y: optax.softmax_cross_entropy_with_integer_labels(z, y).mean(),
}


def mlp(spec: MLPSpec, params: Params, X: jax.Array) -> jax.Array:
    """Logits (n, sizes[-1]): affine layers with the hidden activations in between."""
    A = X  # (n, sizes[0])
    for layer, activation in zip(params[:-1], spec.activations):
        A = ACTIVATIONS[activation](jnp.matmul(A, layer["W"], precision="highest") + layer["b"])
    last = params[-1]
    return jnp.matmul(A, last["W"], precision="highest") + last["b"]  # (n, sizes[-1])


def loss_fn(params: Params, spec: MLPSpec, X: jax.Array, y: jax.Array) -> jax.Array:
    """The mean loss: a pure function of params, which is what jax.grad differentiates."""
    return LOSSES[spec.loss](mlp(spec, params, X), y)


forward = jax.jit(mlp, static_argnums=0)
loss_and_grads = jax.jit(jax.value_and_grad(loss_fn), static_argnums=1)


def make_optimizer(opt: Optimizer) -> optax.GradientTransformation:
    """The optax transformation that a shared.optim description names (torch's conventions: optax's
    `trace` is torch's momentum buffer, and its Adam adds eps after the square root)."""
    if isinstance(opt, AdamW):
        return optax.adamw(opt.lr, b1=opt.beta1, b2=opt.beta2, eps=opt.eps, weight_decay=opt.weight_decay)
    if isinstance(opt, SGD):
        tx = optax.sgd(opt.lr, momentum=opt.momentum or None, nesterov=opt.nesterov)
    else:
        tx = optax.adam(opt.lr, b1=opt.beta1, b2=opt.beta2, eps=opt.eps)
    # torch-style L2 weight decay: g ← g + wd·p before the optimizer sees g
    return optax.chain(optax.add_decayed_weights(opt.weight_decay), tx) if opt.weight_decay else tx


@partial(jax.jit, static_argnames=("spec", "optimizer", "length"))
def train_chunk(params, opt_state, X, y, batches, *, spec: MLPSpec, optimizer: Optimizer, length: int):
    """`length` training steps in one compiled call. `batches` is (length, batch_size) sample indices,
    or None for full-batch steps. Returns the new params and optimizer state, and each step's loss
    and gradient norm, (length,) each."""
    tx = make_optimizer(optimizer)

    def step(carry, batch):
        params, opt_state = carry
        Xb, yb = (X, y) if batch is None else (X[batch], y[batch])  # (b, d), (b, ...)
        loss, grads = jax.value_and_grad(loss_fn)(params, spec, Xb, yb)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), (loss, optax.tree.norm(grads))

    (params, opt_state), (losses, norms) = jax.lax.scan(step, (params, opt_state), batches, length=length)
    return params, opt_state, losses, norms


class JaxBackend(Backend):
    """jax.value_and_grad + jax.jit over a params pytree."""

    name = "jax"

    def _forward(self, spec, params, X):
        return forward(spec, params, jnp.asarray(X))

    def _loss_and_grads(self, spec, params, X, y):
        loss, grads = loss_and_grads(params, spec, jnp.asarray(X), jnp.asarray(y))
        return loss, grads

    def _train_begin(self, spec, params, X, y, optimizer, batches):
        params = jax.tree.map(jnp.asarray, params)
        return dict(
            params=params,
            opt_state=make_optimizer(optimizer).init(params),
            X=jnp.asarray(X),
            y=jnp.asarray(y),
            batches=None if batches is None else jnp.asarray(batches),
            static=dict(spec=spec, optimizer=optimizer),
        )

    def _train_steps(self, state, start, stop):
        batches = state["batches"]
        params, opt_state, losses, norms = train_chunk(
            state["params"],
            state["opt_state"],
            state["X"],
            state["y"],
            None if batches is None else batches[start:stop],
            length=stop - start,
            **state["static"],
        )
        losses, norms = np.asarray(losses), np.asarray(norms)  # the chunk's one trip to the host
        finite = np.isfinite(losses) & np.isfinite(norms)
        if not finite.all():
            # Diverged inside the chunk. The compiled chunk never branches per step (that keeps it
            # fast), so replay the steps before the bad one, one at a time, from the chunk's start.
            bad = int(np.argmin(finite))
            params, opt_state = state["params"], state["opt_state"]
            for t in range(start, start + bad):
                params, opt_state, _, _ = train_chunk(
                    params,
                    opt_state,
                    state["X"],
                    state["y"],
                    None if batches is None else batches[t : t + 1],
                    length=1,
                    **state["static"],
                )
            losses, norms = losses[: bad + 1], norms[: bad + 1]
        state.update(params=params, opt_state=opt_state)
        return losses, norms

    def _train_params(self, state):
        return [{k: np.array(v) for k, v in layer.items()} for layer in state["params"]]
