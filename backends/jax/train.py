"""One JAX training step, as JAX users write it: a pure function, jax.value_and_grad, optax.

The loss is a pure function of the params (argument 1; the spec, argument 0, is static: it fixes the
network's shapes, so jax.jit compiles once per spec). backend.py runs exactly this step n at a time
inside one compiled lax.fori_loop; tests/backends/test_reference_step.py holds it to the same params.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import optax

from backends.jax import gpt, mlp
from shared.params import Params
from shared.spec import GPTSpec, MLPSpec


def model(spec: MLPSpec | GPTSpec, params: Params, X: jax.Array) -> jax.Array:
    """The logits of either model: mlp.mlp, or gpt.gpt for a GPTSpec ((n, t, V))."""
    return gpt.gpt(spec, params, X) if isinstance(spec, GPTSpec) else mlp.mlp(spec, params, X)


def loss_fn(spec: MLPSpec | GPTSpec, params: Params, X: jax.Array, y: jax.Array) -> jax.Array:
    """The mean loss: a pure function of params, which is what jax.grad differentiates. (A GPT's
    softmax_ce over (n, t, V) logits and (n, t) targets is the mean over all n·t positions.)"""
    return mlp.LOSSES[spec.loss](model(spec, params, X), y)


def mixed_loss_fn(spec: MLPSpec | GPTSpec, params: Params, X: jax.Array, y: jax.Array, half: str) -> jax.Array:
    """Mixed precision, written out (JAX has no autocast): the float32 params and the data cast to
    the half format, the forward there, the loss in float32 from the half logits. jax.grad of it with
    respect to the float32 params gives float32 gradients: the casts' own derivative casts them back."""
    logits = model(spec, *to_half(spec, params, X, half))
    return mlp.LOSSES[spec.loss](logits.astype(jnp.float32), y)


def to_half(spec: MLPSpec | GPTSpec, params: Params, X: jax.Array, half: str) -> tuple[Params, jax.Array]:
    """Mixed precision's first cast: the MLP's params and data all in the half format; the GPT's
    linear layers only (gpt.cast_linears: torch.autocast's rule), its token ids as they are."""
    if isinstance(spec, GPTSpec):
        return gpt.cast_linears(params, half), X
    return jax.tree.map(lambda a: a.astype(half), params), X.astype(half)


def accumulated(value_and_grad, k: int):
    """Gradient accumulation: value_and_grad over the batch in k equal micro-batches, one after the
    other under lax.scan (a loop XLA keeps: only one micro-batch's activations alive at a time), the
    losses and gradients summed and divided by k: the whole batch's mean. k = 1: value_and_grad itself."""
    if k == 1:
        return value_and_grad

    def over_micro_batches(spec, params, X, y):
        micro = jax.tree.map(lambda a: a.reshape(k, a.shape[0] // k, *a.shape[1:]), (X, y))  # (k, b / k, ...)
        first = value_and_grad(spec, params, *jax.tree.map(lambda a: a[0], micro))  # the sum starts here

        def add(total, batch):
            return jax.tree.map(jnp.add, total, value_and_grad(spec, params, *batch)), None

        (loss, grads), _ = jax.lax.scan(add, first, jax.tree.map(lambda a: a[1:], micro))
        return loss / k, jax.tree.map(lambda g: g / k, grads)

    return over_micro_batches


forward = jax.jit(model, static_argnums=0)
loss_and_grads = jax.jit(jax.value_and_grad(loss_fn, argnums=1), static_argnums=0)
mixed_loss_and_grads = jax.jit(jax.value_and_grad(mixed_loss_fn, argnums=1), static_argnums=(0, 4))


@partial(jax.jit, static_argnums=(0, 3))
def mixed_forward(spec: MLPSpec | GPTSpec, params: Params, X: jax.Array, half: str) -> jax.Array:
    """The logits of the float32 params run in the half format, returned in float32."""
    return model(spec, *to_half(spec, params, X, half)).astype(jnp.float32)


def train_step(spec, tx: optax.GradientTransformation, params: Params, opt_state, X: jax.Array, y: jax.Array):
    """One step: the loss and its gradient by jax.value_and_grad, then optax's update. Pure: returns the
    new params, the new optimizer state and the loss (jax.jit(train_step, static_argnums=(0, 1)) to
    compile it)."""
    loss, grads = jax.value_and_grad(loss_fn, argnums=1)(spec, params, X, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss
