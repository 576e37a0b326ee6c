"""The thread policy: small work on one CPU thread, large work on the framework's default, and an
explicit `threads=` that always wins. The thresholds themselves are measured (see each backend's
`single_thread_below`); these tests check the mechanism, never a speed."""

import numpy as np
import pytest

from backends import available_backends, get_backend
from shared.data import xor
from shared.optim import SGD
from shared.params import init_params
from shared.spec import MLPSpec

XOR = MLPSpec((2, 4, 1), "tanh", "bce")
LARGE = MLPSpec((1024, 1024, 1024, 1024), "relu", "mse")


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_small_work_gets_one_thread_large_work_the_default(name):
    if name not in available_backends():
        pytest.skip(f"{name} is not installed here")
    be = get_backend(name)
    assert be.threads_for(XOR.step_flops(4)) == 1
    assert be.threads_for(LARGE.step_flops(512)) is None
    assert get_backend(name, threads=2).threads_for(XOR.step_flops(4)) == 2  # asked for: always


def test_jax_leaves_its_threads_alone():
    if "jax" not in available_backends():
        pytest.skip("jax is not installed here")
    assert get_backend("jax").threads_for(1.0) is None


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_bad_thread_counts_are_refused(threads):
    with pytest.raises(ValueError, match=r"threads must be None \(the thread policy decides\) or an integer ≥ 1"):
        get_backend("numpy", threads=threads)


def test_torch_runs_small_work_on_one_thread_and_restores_the_count():
    torch = pytest.importorskip("torch")
    be = get_backend("torch")
    before = torch.get_num_threads()
    with be._limit_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    seen = []
    data = xor()
    original = be._train_steps

    def spy(state, n, batches, record):
        seen.append(torch.get_num_threads())
        return original(state, n, batches, record)

    be._train_steps = spy
    traj = be.train(XOR, init_params(XOR), data.X, data.targets(XOR), SGD(0.1), 3)
    assert seen == [1] and traj.meta["threads"] == 1 and torch.get_num_threads() == before


def test_numpy_limits_blas_threads_where_threadpoolctl_is_installed():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    be = get_backend("numpy")
    with be._limit_threads(1):
        blas = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas)
    out = be.forward(XOR, init_params(XOR), np.zeros((2, 2)))
    assert out.shape == (2, 1)


def test_numpy_finds_the_blas_libraries_once_and_restores_their_threads(monkeypatch):
    """The search for BLAS libraries walks every loaded shared library (milliseconds with torch and
    JAX loaded): the NumPy backend does it once per process, not once per train call."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from backends.numpy import backend as numpy_backend

    uncounted = threadpoolctl.ThreadpoolController

    def blas_threads():
        return [p["num_threads"] for p in uncounted().info() if p["user_api"] == "blas"]

    searches = []

    class Counted(threadpoolctl.ThreadpoolController):
        def __init__(self):
            searches.append(1)
            super().__init__()

    before = blas_threads()
    if set(before) == {1}:
        pytest.skip("BLAS runs one thread here already (one core, or OPENBLAS_NUM_THREADS=1): no limit to see")
    monkeypatch.setattr(threadpoolctl, "ThreadpoolController", Counted)
    numpy_backend.blas_threadpools.cache_clear()
    try:
        be, data = get_backend("numpy"), xor()
        seen = []
        original = be._train_steps
        be._train_steps = lambda *args: seen.append(blas_threads()) or original(*args)
        for _ in range(3):
            be.train(XOR, init_params(XOR), data.X, data.targets(XOR), SGD(0.1), 2)  # XOR: one thread
            assert set(seen[-1]) == {1} and blas_threads() == before
        assert len(searches) == 1
    finally:
        numpy_backend.blas_threadpools.cache_clear()  # the next user searches again, unpatched
