"""NumPy optimizers: the update rules written out, one buffer per parameter array.

Each optimizer updates the parameter arrays in place. They see a flat list of arrays (tree_leaves: the
MLP's W, b layer by layer, or every array of a GPT), so the same rules train both models. Compare
with backends/torch/optim.py (torch.optim) and backends/jax/optim.py (optax): the same conventions.

In a pure half format (SGD only) the params and buffers are bfloat16 or float16, and `p -= lr * g`
rounds three times: NumPy turns the Python lr into the array's dtype (NEP 50: bfloat16's 0.1 is
0.10009765625), rounds lr·g to the format, then p − lr·g. μ = 0.9 becomes 0.8984375 the same way.
JAX rounds the same way (optax's hyperparameters take the params' dtype); torch rounds once.
"""

from __future__ import annotations

import numpy as np

from shared.optim import SGD, Adam, AdamW, Optimizer


class SGDUpdate:
    """g ← g + wd·p;  v ← μ·v + g;  p ← p − lr·(g + μ·v if nesterov else v)   (torch's convention:
    the first step's v is g itself, since v starts at 0)."""

    def __init__(self, opt: SGD, params: list[np.ndarray], velocity: list[np.ndarray] | None = None):
        self.dtype = params[0].dtype
        self.opt = opt  # velocity: the buffers of a run being continued (copied), else zeros
        self.velocity = None
        if opt.momentum:
            self.velocity = [np.zeros_like(p) for p in params] if velocity is None else [v.copy() for v in velocity]

    @property
    def opt(self) -> SGD:
        return self._opt

    @opt.setter
    def opt(self, opt: SGD) -> None:
        """The hyperparameters (a new SGD mid-run, a new rate, takes effect at the next step), and lr, μ
        and wd as the params' dtype holds them: 0 + lr in that dtype is exactly the value NumPy computes
        `p − lr·g` with when lr is a Python float (NEP 50; a bfloat16 goes through float32). So the same
        update bit for bit, with a NumPy scalar of the array's dtype, the cheaper operand at every step
        (on XOR the four updates are a quarter of the step)."""
        self._opt = opt
        in_dtype = lambda x: (np.zeros((), self.dtype) + x)[()]  # noqa: E731
        self.lr, self.mu, self.wd = in_dtype(opt.lr), in_dtype(opt.momentum), in_dtype(opt.weight_decay)

    def state(self) -> dict:
        """The buffers, as the canonical state names them (shared.continuation), copied."""
        return {} if self.velocity is None else {"velocity": [v.copy() for v in self.velocity]}

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        lr, mu, wd = self.lr, self.mu, self.wd
        momentum, decay = self.opt.momentum, self.opt.weight_decay  # on or off as given (μ may round to 0)
        if not (momentum or decay):  # plain SGD: p ← p − lr·g, and nothing to decide per array
            for p, g in zip(params, grads):
                p -= lr * g
            return
        for i, (p, g) in enumerate(zip(params, grads)):
            if decay:
                g = g + wd * p
            if momentum:
                v = self.velocity[i]
                v *= mu
                v += g  # v ← μ·v + g
                g = g + mu * v if self.opt.nesterov else v
            p -= lr * g


class AdamUpdate:
    """m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;  p ← p − lr · m̂ / (√v̂ + ε),
    with the bias corrections m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ) undoing the zero start of m and v.
    Adam: weight decay is L2 (g ← g + wd·p). AdamW: decoupled, p ← p·(1 − lr·wd) first."""

    def __init__(self, opt: Adam, params: list[np.ndarray], m=None, v=None, t: int = 0):
        self.opt = opt  # m, v, t: the state of a run being continued (copied), else zeros and step 0
        self.m = [np.zeros_like(p) for p in params] if m is None else [a.copy() for a in m]
        self.v = [np.zeros_like(p) for p in params] if v is None else [a.copy() for a in v]
        self.t = t

    def state(self) -> dict:
        """The moments and the step count, as the canonical state names them, copied."""
        return {"t": self.t, "m": [a.copy() for a in self.m], "v": [a.copy() for a in self.v]}

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        o = self.opt
        decoupled = isinstance(o, AdamW)
        self.t += 1
        correction1, correction2 = 1 - o.beta1**self.t, 1 - o.beta2**self.t
        for p, g, m, v in zip(params, grads, self.m, self.v):
            if o.weight_decay and decoupled:
                p *= 1 - o.lr * o.weight_decay
            elif o.weight_decay:
                g = g + o.weight_decay * p
            m *= o.beta1
            m += (1 - o.beta1) * g
            v *= o.beta2
            v += (1 - o.beta2) * g * g
            p -= o.lr * (m / correction1) / (np.sqrt(v / correction2) + o.eps)


def make_optimizer(opt: Optimizer, params: list[np.ndarray], state: dict | None = None):
    """The update for `opt`, fresh or holding `state` (the canonical names, each buffer a list of
    arrays like `params`)."""
    state = state or {}
    return SGDUpdate(opt, params, **state) if isinstance(opt, SGD) else AdamUpdate(opt, params, **state)
