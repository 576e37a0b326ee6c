"""Central finite differences: the gradient a learner can check any backward against.

    grads = central_differences(lambda p: loss(spec, p, X, y), params, h=FD_STEP)

(L(p + h·eᵢ) − L(p − h·eᵢ)) / 2h, one parameter entry at a time, in float64: two loss evaluations per
entry, so only for small networks. The loss is any function of a params tree (the NumPy backend's,
with or without a switched-on bug); nothing here knows a framework. Its error is truncation
~h²·|L'''| plus rounding ~ε·|L|/h (see shared.tolerances' "fd" tolerance).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from shared.params import Params, map_params, tree_leaves
from shared.tolerances import FD_STEP


def central_differences(loss: Callable[[Params], float], params: Params, h: float = FD_STEP) -> Params:
    """dL/dp for every entry of every array of `params`, shaped like `params`, in float64."""
    work = map_params(lambda a: np.array(a, np.float64), params)  # ours to nudge in place
    grads = map_params(np.zeros_like, work)
    for value, g in zip(tree_leaves(work), tree_leaves(grads)):
        for i in np.ndindex(value.shape):
            original = value[i]
            value[i] = original + h
            up = loss(work)
            value[i] = original - h
            down = loss(work)
            value[i] = original
            g[i] = (up - down) / (2 * h)
    return grads
