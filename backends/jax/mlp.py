"""JAX MLP: the network as JAX users write it.

Pure functions over a params pytree (a list of {"W", "b"} dicts, the canonical layout itself, so
nothing is transposed). train.py's `jax.value_and_grad` turns the loss into a function that also
returns its gradient: the whole backward that backends/numpy/mlp.py writes by hand. Then read gpt.py
(the tiny GPT), optim.py (optax) and train.py (one step). backend.py is the engine: x64 scoping, the
compiled many-step loop, device placement.

Numerics made explicit:
- float32 matmuls run at full float32 precision (`precision="highest"`); on some accelerators the
  default would be a faster, lower-precision pass.
- The exact GELU gets its derivative written out (`gelu` below): autodiff through x·Φ(x) multiplies
  a huge upstream gradient by x before the Gaussian factor that is exactly 0, and inf·0 = NaN where
  NumPy and torch give 0.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from shared.params import Params
from shared.spec import MLPSpec


@jax.custom_jvp
def gelu(z: jax.Array) -> jax.Array:
    """The exact GELU z·Φ(z), with Φ the standard normal CDF (jax.nn.gelu's default is the tanh
    approximation, which differs by up to ~5e-4)."""
    return jax.nn.gelu(z, approximate=False)


@gelu.defjvp
def _gelu_jvp(primals, tangents):
    """d gelu/dz = Φ(z) + z·φ(z), computed as one factor before it meets the upstream gradient: for
    |z| ≳ 40 the factor is exactly 1 or 0, so a finite z never turns into inf·0 = NaN (z·z may
    overflow to inf, but exp(−inf) is a clean 0). Φ(z) = ½·erfc(−z/√2), as jax.nn.gelu computes it:
    ½(1 + erf(z/√2)) would cancel to exactly 0 for z ≲ −5.5 in float32 (the slope 2.8 % off at −6)."""
    (z,), (dz,) = primals, tangents
    phi = jnp.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # φ(z), the normal density (Python floats:
    # a numpy float64 constant would promote a float32 z)
    slope = 0.5 * jax.lax.erfc(-z / math.sqrt(2)) + z * phi
    return gelu(z), slope * dz


ACTIVATIONS = {
    "identity": lambda z: z,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "gelu": gelu,  # exact erf form with its derivative written out (above); JAX's default is the tanh form
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
