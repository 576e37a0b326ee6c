"""JAX backend: the MLP as JAX users write it.

Pure functions over a params pytree (a list of {"W", "b"} dicts, the canonical layout itself, so
nothing is transposed). `jax.value_and_grad` turns the loss function into one that also returns its
gradient; `jax.jit` compiles it with XLA, once per spec (the spec is a static, hashable argument).
Training uses optax, and runs many steps inside one compiled call with `jax.lax.fori_loop`, so Python
and the host see the losses once per chunk of steps rather than once per step.

Three numerical settings, made explicit:
- float64 must really be float64. JAX computes in float32 unless x64 is enabled, and the flag is
  global, so rather than flip it for the whole process (and change the dtype of the user's own JAX
  code), every call into this backend runs inside `jax.enable_x64(True)` (`_scope`, entered by
  Backend). A user who turns x64 off does not turn float64 off here, and importing this module
  changes nothing outside it. float32 stays float32 inside the scope: the arrays arrive as float32.
- float32 matmuls run at full float32 precision (`precision="highest"`); on some accelerators the
  default would be a faster, lower-precision pass.
- The exact GELU gets its derivative written out (`gelu` below): autodiff through x·Φ(x) multiplies
  a huge upstream gradient by x before the Gaussian factor that is exactly 0, and inf·0 = NaN where
  NumPy and torch give 0.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from shared.backend import CHUNK, Backend
from shared.optim import SGD, AdamW, Optimizer
from shared.params import Params
from shared.spec import GPTSpec, MLPSpec


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


def model(spec: MLPSpec | GPTSpec, params: Params, X: jax.Array) -> jax.Array:
    """The logits of either model: this file's mlp, or jax_transformer's gpt for a GPTSpec."""
    if isinstance(spec, GPTSpec):
        from backends import jax_transformer  # imported on first use: it builds on this file

        return jax_transformer.gpt(spec, params, X)  # (n, t, V)
    return mlp(spec, params, X)


def loss_fn(params: Params, spec: MLPSpec | GPTSpec, X: jax.Array, y: jax.Array) -> jax.Array:
    """The mean loss: a pure function of params, which is what jax.grad differentiates. (A GPT's
    softmax_ce over (n, t, V) logits and (n, t) targets is the mean over all n·t positions.)"""
    return LOSSES[spec.loss](model(spec, params, X), y)


forward = jax.jit(model, static_argnums=0)
loss_and_grads = jax.jit(jax.value_and_grad(loss_fn), static_argnums=1)


def make_optimizer(opt: Optimizer, dtype=jnp.float64) -> optax.GradientTransformation:
    """The optax transformation that a shared.optim description names (torch's conventions: optax's
    `trace` is torch's momentum buffer, and its Adam adds eps after the square root).

    Built with `optax.inject_hyperparams`: lr, momentum, betas, eps and weight decay live in the
    optimizer *state*, as arrays of the training dtype, instead of being constants compiled into the
    step. A new learning rate then reuses the compiled training chunk (see train_chunk)."""
    hyper = partial(optax.inject_hyperparams, hyperparam_dtype=dtype)
    if isinstance(opt, AdamW):
        return hyper(optax.adamw)(opt.lr, b1=opt.beta1, b2=opt.beta2, eps=opt.eps, weight_decay=opt.weight_decay)
    if isinstance(opt, SGD):
        tx = hyper(optax.sgd, static_args=("nesterov",))(opt.lr, momentum=opt.momentum or None, nesterov=opt.nesterov)
    else:
        tx = hyper(optax.adam)(opt.lr, b1=opt.beta1, b2=opt.beta2, eps=opt.eps)
    # torch-style L2 weight decay: g ← g + wd·p before the optimizer sees g
    return optax.chain(hyper(optax.add_decayed_weights)(opt.weight_decay), tx) if opt.weight_decay else tx


def optimizer_structure(opt: Optimizer) -> Optimizer:
    """What a compiled step depends on, with every value replaced by a stand-in: the optimizer's type,
    whether it has momentum (and Nesterov) or weight decay. The values themselves arrive through the
    optimizer state, so SGD(lr=0.1) and SGD(lr=0.3) share one compiled chunk."""
    if isinstance(opt, SGD):
        return SGD(
            1.0,
            momentum=0.5 if opt.momentum else 0.0,
            nesterov=opt.nesterov,
            weight_decay=float(bool(opt.weight_decay)),
        )
    return type(opt)(1.0, weight_decay=float(bool(opt.weight_decay) or isinstance(opt, AdamW)))


LENGTHS = tuple(10**k for k in range(len(str(CHUNK))))  # (1, 10, 100, 1000)
"""Minibatch rows reach a compiled chunk padded to one of these lengths (its shape is part of the
compile): at most four compiles per (spec, optimizer structure, dtype, batch shape). Full-batch
training compiles once."""


def compiled_length(n: int) -> int:
    return next(length for length in LENGTHS if length >= n)


@partial(jax.jit, static_argnames=("spec", "structure", "keep"))
def train_chunk(params, opt_state, X, y, batches, n, first, every, kept, *, spec, structure: Optimizer, keep: str):
    """n training steps in one compiled call. Steps first, first + every, ... (`kept` of them) also
    compute their loss and gradient norm; the others only their gradient and update. `batches` is
    (≥ n, batch_size) sample indices, or None for full-batch steps. Returns the new params and
    optimizer state, and the kept losses and norms in (CHUNK,) buffers, meaningful up to `kept`
    (None for "none").

    n and the pattern are traced, so every chunk length and every record_losses stride share the
    compile; the loops have traced bounds (lax.fori_loop → a while loop), so no step is padding. The
    static `keep` picks the loop structure, one compile each when used: "none" (no loss kept: the
    bare loop, nothing else per step), "every" (every step's), "strided" (one in `every`)."""
    dtype = jax.tree.leaves(params)[0].dtype
    tx = make_optimizer(structure, dtype)  # its values come from opt_state

    def batch(i):
        return (X, y) if batches is None else (X[batches[i]], y[batches[i]])  # (b, ...), (b, ...)

    def step(i, carry):  # a step whose loss nobody keeps: the gradient and the update, nothing else
        params, opt_state = carry
        grads = jax.grad(loss_fn)(params, spec, *batch(i))
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def kept_step(j, carry):  # the j-th kept step (step first + j·every), and in "strided" the steps up to the next
        params, opt_state, losses, norms = carry
        i = first + j * every
        loss, grads = jax.value_and_grad(loss_fn)(params, spec, *batch(i))
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


class JaxBackend(Backend):
    """jax.value_and_grad + jax.jit over a params pytree."""

    name = "jax"
    devices = ("cpu", "gpu")

    def _forward(self, spec, params, X):
        return forward(spec, params, jnp.asarray(X))

    def _loss_and_grads(self, spec, params, X, y):
        loss, grads = loss_and_grads(params, spec, jnp.asarray(X), jnp.asarray(y))
        return loss, grads

    def _train_begin(self, spec, params, X, y, optimizer):
        params = jax.tree.map(jnp.asarray, params)
        return dict(
            params=params,
            opt_state=make_optimizer(optimizer, self.np_dtype).init(params),  # holds lr, betas, ...
            X=jnp.asarray(X),
            y=jnp.asarray(y),
            static=dict(spec=spec, structure=optimizer_structure(optimizer)),
        )

    def _train_steps(self, state, n, batches, record):
        # The compiled chunk never stops early (that keeps it fast): it runs all n steps even past a
        # NaN, and Backend.train replays the chunk to stop before the bad step.
        rows = None
        if batches is not None:  # padded to a compiled length: rows ≥ n are never used
            rows = np.zeros((compiled_length(n), batches.shape[1]), batches.dtype)
            rows[:n] = batches
            rows = jnp.asarray(rows)  # once per chunk of steps
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

    def _train_params(self, state):
        return jax.tree.map(np.array, state["params"])

    def _train_save(self, state):
        return state["params"], state["opt_state"]  # JAX arrays are immutable: keeping them is enough

    def _train_restore(self, state, saved):
        state["params"], state["opt_state"] = saved

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
