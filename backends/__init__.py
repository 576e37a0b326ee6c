"""The backend registry: one MLP, three implementations, picked by name.

    from backends import get_backend, available_backends
    be = get_backend("jax", dtype="float32")

Frameworks are imported lazily, as einops does it: `import backends` imports neither torch nor jax.
A backend's module is imported the first time `get_backend` asks for it, so an install without them
works, and asking for a framework that is not installed says what to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from shared.backend import Backend, DeviceUnavailable
from shared.validation import check_dtype

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendUnavailable",
    "DeviceUnavailable",
    "available_backends",
    "available_devices",
    "get_backend",
]


@dataclass(frozen=True)
class _Entry:
    module: str  # the backend's module, imported on first use
    cls: str  # its Backend subclass
    needs: tuple[str, ...]  # top-level modules that must be importable
    install: str  # what to tell a user who lacks them


_REGISTRY = {
    "numpy": _Entry("backends.numpy.backend", "NumpyBackend", ("numpy",), "pip install numpy"),
    "torch": _Entry(
        "backends.torch.backend",
        "TorchBackend",
        ("torch",),
        "pip install -c constraints.txt torch   (constraints.txt pins torch==2.13.0, the CPU build)",
    ),
    "jax": _Entry(
        "backends.jax.backend",
        "JaxBackend",
        ("jax", "optax"),
        "pip install -c constraints.txt jax optax",
    ),
}

BACKENDS: tuple[str, ...] = tuple(_REGISTRY)
"""Every backend trigrad knows, installed or not."""


class BackendUnavailable(ImportError):
    """The framework a backend needs is not installed."""


def _missing(name: str) -> list[str]:
    return [m for m in _REGISTRY[name].needs if importlib.util.find_spec(m) is None]


def available_backends() -> list[str]:
    """The backends whose frameworks are installed here (found, not imported)."""
    return [name for name in BACKENDS if not _missing(name)]


def get_backend(
    name: str, dtype: str = "float64", device: str = "cpu", threads: int | None = None, precision: str = "pure"
) -> Backend:
    """The backend called `name` ('numpy' | 'torch' | 'jax'), computing in `dtype` ('float64' |
    'float32' | 'bfloat16' | 'float16') on `device`: 'cpu' everywhere; 'cuda' for torch and 'gpu' for
    JAX where one is present (DeviceUnavailable, naming the device, where not). Arrays still cross the interface
    as numpy: a GPU backend places them on the device once per call or training run.

    `threads`: CPU threads for NumPy's BLAS (through threadpoolctl, when installed) and torch; None
    lets the thread policy choose (one thread for small work, where a second only adds overhead:
    Backend.single_thread_below, measured per backend). JAX's thread pool is fixed at start-up.

    `dtype` may also be 'bfloat16' or 'float16' (the MLP's forward and gradients), and with
    precision='mixed' a half dtype computes the forward and backward while params, gradients and the
    optimizer stay in float32 (training included; see each backend's train.py for where it casts)."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {name!r}")
    dtype = check_dtype(dtype)
    entry = _REGISTRY[name]
    missing = _missing(name)
    if missing:
        raise BackendUnavailable(
            f"the {name!r} backend needs {', '.join(missing)}, which is not installed here. "
            f"Install it with: {entry.install}  — or run `make test`, which sets up .venv with every "
            f"backend. Installed backends: {', '.join(available_backends())}."
        )
    module = importlib.import_module(entry.module)
    return getattr(module, entry.cls)(dtype=dtype, device=device, threads=threads, precision=precision)


def available_devices(name: str) -> list[str]:
    """The devices the installed backend `name` can use here, 'cpu' first (imports its framework)."""
    if name not in available_backends():
        return []
    cls = getattr(importlib.import_module(_REGISTRY[name].module), _REGISTRY[name].cls)
    found = ["cpu"]
    for device in cls.devices[1:]:
        try:
            cls(device=device)
        except DeviceUnavailable:
            continue
        found.append(device)
    return found
