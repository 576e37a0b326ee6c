"""The lazy registry: `import backends` imports no framework; a missing one gives an install hint."""

import subprocess
import sys

import pytest

import backends
from backends import BACKENDS, BackendUnavailable, available_backends, get_backend


def test_importing_backends_imports_neither_torch_nor_jax():
    code = (
        "import sys, backends, shared.spec, shared.params, shared.backend;"
        "backends.available_backends();"
        "print(sorted(m for m in ('torch', 'jax', 'optax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_available_backends_always_includes_numpy():
    assert available_backends()[0] == "numpy"
    assert set(available_backends()) <= set(BACKENDS) == {"numpy", "torch", "jax"}


def test_unknown_backend_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"backend must be one of 'numpy', 'torch', 'jax'; got 'tensorflow'"):
        get_backend("tensorflow")


def test_missing_framework_says_what_to_install(monkeypatch):
    real = backends.importlib.util.find_spec
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda m: None if m == "torch" else real(m))
    assert "torch" not in available_backends()
    with pytest.raises(
        BackendUnavailable, match=r"needs torch, which is not installed.*pip install -c constraints.txt torch"
    ):
        get_backend("torch")


def test_get_backend_returns_the_named_backend_in_its_dtype(backend_name, dtype):
    be = get_backend(backend_name, dtype)
    assert be.name == backend_name and be.dtype == dtype
    assert repr(be).endswith(f"(dtype={dtype!r})")
