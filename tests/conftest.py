"""Fixtures shared by the suite: backends by name (skipping, with a reason, when a framework is
missing), both dtypes, and every pair of backends."""

from __future__ import annotations

import itertools

import pytest

from backends import BACKENDS, BackendUnavailable, available_backends, get_backend

DTYPES = ("float64", "float32")
PAIRS = list(itertools.combinations(BACKENDS, 2))


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
