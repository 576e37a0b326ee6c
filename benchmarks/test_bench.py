"""pytest-benchmark suite: one training step per backend × size (full batch, SGD, float32).

    pytest benchmarks --benchmark-only        # measure (tox -e bench)
    pytest benchmarks --benchmark-disable     # smoke run: each benchmark once, no timing (make test)

`test_first_step` times building the training state and its first step (JAX: tracing and compiling
the step) separately from `test_step`, the steady state. Each step is the backend's own training
step (`_train_steps` for one step), so the numbers exclude the per-call validation and conversion
that `train` does once per run.
"""

from __future__ import annotations

import numpy as np
import pytest

from backends import BACKENDS, available_backends, get_backend
from benchmarks.workloads import LR, WORKLOADS
from shared.optim import SGD

CASES = [(b, s) for s in WORKLOADS for b in BACKENDS]


def _begin(backend: str, size: str):
    if backend not in available_backends():
        pytest.skip(f"{backend} is not installed")
    be = get_backend(backend, "float32")
    w = WORKLOADS[size]
    spec, params, X, y = be._prepare(w.spec, *w.problem(), need_y=True)  # validated and cast, as train() does
    return be, lambda: be._train_begin(spec, params, X, y, SGD(LR), None)


@pytest.mark.parametrize("backend, size", CASES, ids=[f"{b}-{s}" for b, s in CASES])
def test_first_step(benchmark, backend, size):
    be, begin = _begin(backend, size)

    def first():
        with be._scope():
            state = begin()
            return be._train_steps(state, 1, None, range(1))

    losses, _ = benchmark.pedantic(first, rounds=1, iterations=1)
    assert np.isfinite(losses).all()


@pytest.mark.parametrize("backend, size", CASES, ids=[f"{b}-{s}" for b, s in CASES])
def test_step(benchmark, backend, size):
    be, begin = _begin(backend, size)
    with be._scope():  # JAX computes inside jax.enable_x64, as Backend.train runs it
        state = begin()
        be._train_steps(state, 1, None, range(1))  # warm: the first step is test_first_step's business
        losses, _ = benchmark(be._train_steps, state, 1, None, range(1))
    assert np.isfinite(losses).all()
