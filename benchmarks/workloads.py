"""The benchmark workloads: four network sizes, from overhead-bound to compute-bound.

Every workload is one full-batch SGD training step in float32. FLOPs per step are counted the
usual way for a dense layer: 2·batch·fan_in·fan_out for the forward matmul, twice that for the
backward (dL/dW and dL/dX), so 6 · batch · Σ fan_in·fan_out per step — minus the first layer's
dL/dX, 2 · batch · sizes[0] · sizes[1], which no backend computes (the input is data; it needs no
gradient). Without that correction the medium size would claim 33 % more work than is done, and
"% of peak" could pass 100 %. Activations, losses and the update are left out: they are
O(batch · width), small next to the matmuls on the larger sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.params import init_params
from shared.spec import MLPSpec


@dataclass(frozen=True)
class Workload:
    name: str
    spec: MLPSpec
    batch: int

    @property
    def flops_per_step(self) -> int:
        """Executed matmul FLOPs: 6 · batch · Σ fan_in·fan_out − 2 · batch · sizes[0]·sizes[1]."""
        fan_in, fan_out = self.spec.layer_shapes[0]
        return 6 * self.batch * sum(i * o for i, o in self.spec.layer_shapes) - 2 * self.batch * fan_in * fan_out

    def problem(self, seed: int = 0):
        """(params, X, y): float64 numpy, random inputs and targets of the spec's loss."""
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(self.batch, self.spec.n_features))
        if self.spec.loss == "softmax_ce":
            y = rng.integers(0, self.spec.n_outputs, size=self.batch)
        elif self.spec.loss == "bce":
            y = rng.integers(0, 2, size=(self.batch, 1)).astype(np.float64)
        else:
            y = rng.normal(size=(self.batch, self.spec.n_outputs))
        return init_params(self.spec, seed=seed), X, y


WORKLOADS = {
    "xor": Workload("xor", MLPSpec((2, 4, 1), "tanh", "bce"), 4),
    "small": Workload("small", MLPSpec((2, 16, 16, 1), "tanh", "bce"), 256),
    "medium": Workload("medium", MLPSpec((784, 256, 256, 10), "relu", "softmax_ce"), 128),
    "large": Workload("large", MLPSpec((1024, 1024, 1024, 1024), "relu", "mse"), 512),
}

LR = 1e-3  # small enough that no workload diverges on random data over thousands of steps
