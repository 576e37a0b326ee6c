"""JAX backend: the MLP as JAX users write it.

Pure functions over a params pytree (a list of {"W", "b"} dicts, the canonical layout itself, so
nothing is transposed). `jax.value_and_grad` turns the loss function into one that also returns its
gradient; `jax.jit` compiles it with XLA, once per spec (the spec is a static, hashable argument).

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
import optax

from shared.backend import Backend
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


class JaxBackend(Backend):
    """jax.value_and_grad + jax.jit over a params pytree."""

    name = "jax"

    def _forward(self, spec, params, X):
        return forward(spec, params, jnp.asarray(X))

    def _loss_and_grads(self, spec, params, X, y):
        loss, grads = loss_and_grads(params, spec, jnp.asarray(X), jnp.asarray(y))
        return loss, grads
