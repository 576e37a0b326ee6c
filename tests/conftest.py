"""Fixtures shared by the suite: backends by name (skipping, with a reason, when a framework is
missing), both dtypes, and every pair of backends."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile

import pytest

from backends import BACKENDS, BackendUnavailable, available_backends, get_backend

DTYPES = ("float64", "float32")
PAIRS = list(itertools.combinations(BACKENDS, 2))


JAX_CACHE_SETTINGS = {  # every compile is kept: most of the suite's take 0.1-3 s, and its programs are small
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
}


def pytest_configure(config):
    """One JAX compilation cache for the whole session: both xdist workers and every process a test
    starts (a command, a data-parallel JAX process) inherit it through the environment, so a program
    one of them compiled is read back by the others, not compiled again. A cache hit is the same XLA
    executable, so no result changes. XLA compiles are about half of the suite's CPU time; most of the
    ~1,300 programs are compiled once anyway, so the cache saves the duplicates only (measured:
    361.6 -> 343.6 s for the suite on 2 cores). JAX reads the settings when it is imported (never
    here: a numpy-only install has none). A cache the caller set up is left alone; the session's own
    is removed at its end."""
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:  # the caller's, or (in an xdist worker) the controller's
        return
    config.trigrad_jax_cache = tempfile.mkdtemp(prefix="trigrad-jax-cache-")
    os.environ.update(JAX_CACHE_SETTINGS, JAX_COMPILATION_CACHE_DIR=config.trigrad_jax_cache)


def pytest_unconfigure(config):
    folder = getattr(config, "trigrad_jax_cache", None)
    if folder:
        for name in [*JAX_CACHE_SETTINGS, "JAX_COMPILATION_CACHE_DIR"]:
            os.environ.pop(name, None)
        shutil.rmtree(folder, ignore_errors=True)


def backend_or_skip(name: str, dtype: str = "float64"):
    """get_backend, or skip the test with the install hint when the framework is not installed."""
    try:
        return get_backend(name, dtype)
    except BackendUnavailable as e:
        pytest.skip(f"{name} backend not installed: {e}")


@pytest.fixture(params=BACKENDS)
def backend_name(request) -> str:
    if request.param not in available_backends():
        pytest.skip(f"{request.param} is not installed here (numpy-only install?)")
    return request.param


@pytest.fixture(params=DTYPES)
def dtype(request) -> str:
    return request.param


@pytest.fixture(params=PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def pair(request) -> tuple[str, str]:
    for name in request.param:
        if name not in available_backends():
            pytest.skip(f"{name} is not installed here (numpy-only install?)")
    return request.param
