"""Problem builders and a finite-difference gradient, used across the tests."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

import numpy as np

from backends.numpy import mlp as numpy_mlp
from shared.finite_differences import central_differences
from shared.params import Params, init_params
from shared.spec import MLPSpec


def make_problem(spec: MLPSpec, n: int = 8, seed: int = 0, bias_scale: float = 0.5):
    """Random params (Glorot weights, non-zero biases so bias gradients are exercised), X ~ N(0, 1),
    and targets of the form spec.loss expects."""
    rng = np.random.default_rng(seed + 1000)
    params = init_params(spec, seed=seed)
    for layer in params:
        layer["b"] = rng.normal(0.0, bias_scale, size=layer["b"].shape)
    X = rng.normal(size=(n, spec.n_features))
    return params, X, make_targets(spec, n, rng)


def make_targets(spec: MLPSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    if spec.loss == "mse":
        return rng.normal(size=(n, spec.n_outputs))
    if spec.loss == "bce":
        return rng.uniform(0.0, 1.0, size=(n, 1))  # soft labels exercise the y-term fully
    return rng.integers(0, spec.n_outputs, size=n)


def pre_activations(spec: MLPSpec, params: Params, X: np.ndarray) -> list[np.ndarray]:
    """Z of every hidden layer, by the numpy reference."""
    _, cache = numpy_mlp.mlp_forward(spec, params, X)
    return [Z for (_, Z, _) in cache[:-1]]


def min_distance_to_kink(spec: MLPSpec, params: Params, X: np.ndarray) -> float:
    """How close any relu pre-activation comes to 0, where relu has no derivative (inf if no relu)."""
    dists = [np.abs(Z).min() for Z, act in zip(pre_activations(spec, params, X), spec.activations) if act == "relu"]
    return float(min(dists, default=np.inf))


def numpy_loss(spec: MLPSpec, params: Params, X: np.ndarray, y: np.ndarray) -> float:
    loss_forward, _ = numpy_mlp.LOSSES[spec.loss]
    y_hat, _ = numpy_mlp.mlp_forward(spec, params, X)
    return float(loss_forward(y_hat, y))


def finite_difference_grads(spec: MLPSpec, params: Params, X, y, h: float) -> Params:
    """Central differences (L(p + h) − L(p − h)) / 2h of the NumPy loss, by shared.finite_differences."""
    return central_differences(lambda p: numpy_loss(spec, p, X, y), params, h)


@contextmanager
def ctrl_c_reaches_children():
    """Processes started inside get SIGINT at its default, as a terminal's foreground job has it. A test
    runner started in the background by a script without job control (`pytest &`, nohup) ignores
    SIGINT, and a child inherits an ignored signal through exec: a test of what Ctrl-C does would then
    wait in vain for a child that cannot hear it. A handled signal is reset to its default by exec, so
    the children start as from a terminal; this process's own handler is put back after."""
    if threading.current_thread() is not threading.main_thread():  # signal.signal works only there
        yield
        return
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
