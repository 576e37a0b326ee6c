"""JAX optimizers: optax transformations, configured from a shared.optim description.

In a pure half format (SGD only) the injected hyperparameters are arrays of the params' dtype, so lr
and μ are rounded to bfloat16/float16 (0.1 → 0.10009765625), and `optax.apply_updates` adds the
rounded −lr·g to the params: two roundings per update, NumPy's rule; torch rounds once."""

from __future__ import annotations

from functools import partial

import jax.numpy as jnp
import optax

from shared.optim import SGD, AdamW, Optimizer


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
