"""The one interface all three backends share (the Keras 3 pattern: same names, idiomatic insides).

`Backend` does everything that is the same in every framework: it validates the spec, params and
data, casts them to the backend's dtype as numpy arrays, calls the backend's own `_forward` /
`_loss_and_grads`, and hands numpy back. A backend file then holds only what differs — which is
exactly what a reader wants to compare.

    be = get_backend("torch", dtype="float32")
    y_hat = be.forward(spec, params, X)                    # numpy (n, sizes[-1])
    loss, grads = be.loss_and_grads(spec, params, X, y)    # float, params-shaped numpy grads
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from shared.params import Params, check_params, map_params
from shared.spec import MLPSpec
from shared.validation import check_dtype, check_spec, check_X, check_y


class Backend(ABC):
    """One framework's implementation of the MLP, behind the shared numpy interface."""

    name: ClassVar[str]
    """Registry name: 'numpy', 'torch' or 'jax'."""

    def __init__(self, dtype: str = "float64") -> None:
        self.dtype = check_dtype(dtype)
        self.np_dtype = np.dtype(self.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dtype={self.dtype!r})"

    # ---- the public interface: validate, cast, call the backend, return numpy ----

    def forward(self, spec: MLPSpec, params: Params, X: np.ndarray) -> np.ndarray:
        """The network's output (logits) for X: numpy (n, sizes[-1]) in this backend's dtype."""
        spec, params, X, _ = self._prepare(spec, params, X)
        y_hat = np.asarray(self._forward(spec, params, X))
        _check_finite_result(y_hat, "forward output", self)
        return y_hat

    def loss_and_grads(
        self, spec: MLPSpec, params: Params, X: np.ndarray, y: np.ndarray
    ) -> tuple[float, Params]:
        """The mean loss over the batch (a Python float) and its gradient w.r.t. every parameter,
        in the structure of `params` (canonical (in, out) layout), numpy, this backend's dtype."""
        spec, params, X, y = self._prepare(spec, params, X, y)
        loss, grads = self._loss_and_grads(spec, params, X, y)
        loss = float(loss)
        grads = map_params(np.asarray, grads)
        _check_finite_result(np.asarray(loss), "loss", self)
        for l, layer in enumerate(grads):
            for k, g in layer.items():
                _check_finite_result(g, f"gradient of layer {l} {k}", self)
        return loss, grads

    # ---- what each backend implements: arrays arrive validated, as numpy in self.dtype ----

    @abstractmethod
    def _forward(self, spec: MLPSpec, params: Params, X: np.ndarray) -> np.ndarray:
        """Logits (n, sizes[-1]) as an array numpy can read."""

    @abstractmethod
    def _loss_and_grads(
        self, spec: MLPSpec, params: Params, X: np.ndarray, y: np.ndarray
    ) -> tuple[float, Params]:
        """(loss, grads) with grads in the canonical layout; arrays numpy can read."""

    # ---- shared plumbing ----

    def _prepare(self, spec, params, X, y=None):
        """Validate everything once at the border, then cast floats to this backend's dtype."""
        spec = check_spec(spec)
        params = check_params(spec, params)
        X = check_X(spec, X)
        if y is not None:
            y = check_y(spec, y, len(X))
            if y.dtype.kind == "f":
                y = y.astype(self.np_dtype, copy=False)
        params = map_params(lambda a: a.astype(self.np_dtype, copy=False), params)
        return spec, params, X.astype(self.np_dtype, copy=False), y


def _check_finite_result(a: np.ndarray, what: str, backend: Backend) -> None:
    """Inputs were checked finite, so a non-finite result is an overflow: say so, never return NaN."""
    if not np.all(np.isfinite(a)):
        raise FloatingPointError(
            f"{backend!r}: the {what} is not finite although every input was. The values overflowed "
            f"{backend.dtype}; scale down X or the weights (or use dtype='float64')."
        )
