"""Input checks shared by every backend, run once at the public interface.

Each check raises a ValueError or TypeError that names the argument, says what was expected and what
was given. Nothing is broadcast silently: an MSE target of shape (n,) against an output of shape
(n, 1) would broadcast to (n, n) and train on nonsense, so it is an error here.
"""

from __future__ import annotations

import numpy as np

from shared.params import as_float_array
from shared.spec import GPTSpec, MLPSpec

DTYPES = ("float64", "float32")
"""The formats everything supports: forward, gradients, training, files, every command."""

HALF_DTYPES = ("bfloat16", "float16")
"""The half formats, for the MLP and the GPT on every backend: the forward and gradients, training
with SGD in the pure format (params and buffers in it; shared.precision says why not Adam), and mixed
precision (float32 params, half-format compute) with any optimizer. NumPy holds bfloat16 through
ml_dtypes, which JAX installs."""


PRECISIONS = ("pure", "mixed")
"""pure: everything in the dtype. mixed (a half dtype only): float32 params and optimizer state, the
forward and backward in the half format, the loss in float32, the update in float32."""


MIXED_FORMATS = tuple(f"{d}-mixed" for d in HALF_DTYPES)
"""The half formats in mixed precision: with float64 and float32, the formats that train."""

FORMATS = (*DTYPES, *HALF_DTYPES, *MIXED_FORMATS)
"""Every way to compute, as the commands name it: a dtype, or a half dtype in mixed precision."""


def format_eps(name: str) -> float:
    """The machine epsilon of the dtype a format computes in: the half format's in mixed precision
    (its gradients come back in float32 but were computed in bfloat16 or float16). Looked up when
    asked: bfloat16 needs ml_dtypes, which a numpy-only install does not have."""
    return float(np.finfo(numpy_dtype(split_format(name)[0])).eps)


def param_dtype_of(name: str) -> str:
    """What a format keeps its params in: float32 in mixed precision, else the format's own dtype."""
    dtype, precision = split_format(name)
    return "float32" if precision == "mixed" else dtype


def split_format(name: str) -> tuple[str, str]:
    """'bfloat16-mixed' -> ('bfloat16', 'mixed'); 'float32' -> ('float32', 'pure')."""
    if name not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(map(repr, FORMATS))}; got {name!r}")
    dtype, _, mixed = name.partition("-")
    return dtype, mixed or "pure"


def check_dtype(dtype: object, allowed: tuple[str, ...] = DTYPES + HALF_DTYPES) -> str:
    """The dtype name, one of `allowed` ('float64', 'float32', 'bfloat16', 'float16' by default);
    numpy dtypes are accepted too."""
    if isinstance(dtype, str):
        name = dtype
    elif isinstance(dtype, np.dtype) or (isinstance(dtype, type) and dtype in (np.float32, np.float64, np.float16)):
        name = np.dtype(dtype).name
    else:  # np.dtype(None) would quietly mean float64: refuse it
        name = None
    if name not in allowed:
        raise ValueError(f"dtype must be one of {', '.join(map(repr, allowed))}; got {dtype!r}")
    return name


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of a dtype name: bfloat16 is ml_dtypes.bfloat16 (numpy has none of its own)."""
    if name != "bfloat16":
        return np.dtype(name)
    try:
        import ml_dtypes
    except ImportError:
        raise ImportError(
            "dtype 'bfloat16' needs ml_dtypes, numpy's bfloat16 (pip install ml-dtypes; JAX installs it)"
        ) from None
    return np.dtype(ml_dtypes.bfloat16)


def check_spec(spec: object) -> MLPSpec | GPTSpec:
    if not isinstance(spec, (MLPSpec, GPTSpec)):
        raise TypeError(
            f"spec must be an MLPSpec or a GPTSpec (from shared.spec import ...); got {type(spec).__name__}"
        )
    return spec


def check_tokens(spec: GPTSpec, tokens: object, arg: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Token ids as an int64 (n, t) array with n ≥ 1, 1 ≤ t ≤ seq_len, every id in [0, vocab_size).
    `shape`, when given, is the shape they must have (Y must match X)."""
    try:
        a = np.asarray(tokens)
    except Exception as e:
        raise TypeError(f"{arg} must be an integer array of token ids; could not convert it ({e})") from None
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
        hint = f" (use {arg}.astype(int))" if np.issubdtype(a.dtype, np.floating) else ""
        raise TypeError(f"{arg} must hold integer token ids; got dtype {a.dtype}{hint}")
    if a.ndim != 2:
        extra = f". For one sequence use {arg}.reshape(1, -1)." if a.ndim == 1 else ""
        raise ValueError(f"{arg} must be 2-D (n_sequences, t); got shape {a.shape}{extra}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{arg} must have the shape of X, {shape}; got {a.shape}")
    n, t = a.shape
    if n == 0 or t == 0:
        raise ValueError(f"{arg} is empty (shape {a.shape}); need at least one sequence of at least one token")
    if t > spec.seq_len:
        raise ValueError(f"{arg} has sequences of {t} tokens, longer than seq_len = {spec.seq_len} of the spec")
    bad = (a < 0) | (a >= spec.vocab_size)
    if bad.any():
        i = tuple(int(j) for j in np.argwhere(bad)[0])
        raise ValueError(f"{arg} token ids must be in [0, {spec.vocab_size}) (vocab_size); got {a[i]} at index {i}")
    return a.astype(np.int64, copy=False)


def check_X(spec: MLPSpec, X: object) -> np.ndarray:
    """X as a finite (n, sizes[0]) float array with n ≥ 1."""
    X = as_float_array(X, "X")
    if X.ndim != 2:
        raise ValueError(
            f"X must be 2-D (n_samples, {spec.n_features}); got shape {X.shape}"
            + (". For a single sample use X.reshape(1, -1)." if X.ndim == 1 else "")
        )
    if X.shape[0] == 0:
        raise ValueError(f"X is an empty batch (shape {X.shape}); need at least one sample")
    if X.shape[1] != spec.n_features:
        raise ValueError(f"X must have {spec.n_features} features (sizes[0] of spec {spec.sizes}); got shape {X.shape}")
    return X


def check_y(spec: MLPSpec, y: object, n: int) -> np.ndarray:
    """y in the form `spec.loss` needs, for a batch of n samples."""
    if y is None:
        raise TypeError(
            f"y is required: the targets for loss={spec.loss!r}, one per sample of X (len(X) = {n}); got None"
        )
    try:
        y_arr = np.asarray(y)
    except Exception as e:
        raise TypeError(f"y must be a numeric array; could not convert it ({e})") from None
    if y_arr.ndim == 0 or len(y_arr) != n:
        got = "a scalar" if y_arr.ndim == 0 else f"{len(y_arr)} (shape {y_arr.shape})"
        raise ValueError(f"y must have one row per sample of X: len(X) = {n}, len(y) = {got}")

    if spec.loss == "softmax_ce":
        if y_arr.dtype == bool or not np.issubdtype(y_arr.dtype, np.integer):
            raise TypeError(
                f"y for loss='softmax_ce' must hold integer class labels; got dtype {y_arr.dtype}"
                + (" (use y.astype(int))" if np.issubdtype(y_arr.dtype, np.floating) else "")
            )
        if y_arr.shape != (n,):
            raise ValueError(f"y for loss='softmax_ce' must have shape (n,) = ({n},); got {y_arr.shape}")
        bad = (y_arr < 0) | (y_arr >= spec.n_outputs)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"y labels must be in [0, {spec.n_outputs}) for {spec.n_outputs} classes "
                f"(sizes[-1]); got y[{i}] = {y_arr[i]}"
            )
        return y_arr.astype(np.int64)

    y_arr = as_float_array(y_arr, "y")
    want = (n, spec.n_outputs)
    if y_arr.shape != want:
        hint = ""
        if y_arr.shape == (n,) and spec.n_outputs == 1:
            hint = f" A (n,) target against the (n, 1) output would broadcast to ({n}, {n}); use y.reshape(-1, 1)."
        raise ValueError(f"y for loss={spec.loss!r} must have the output's shape {want}; got {y_arr.shape}.{hint}")
    if spec.loss == "bce" and ((y_arr < 0) | (y_arr > 1)).any():
        i = np.argwhere((y_arr < 0) | (y_arr > 1))[0]
        raise ValueError(
            f"y for loss='bce' must be probabilities in [0, 1]; got {y_arr[tuple(i)]} at {tuple(map(int, i))}"
        )
    return y_arr


# ---- casting at the border: into the backend's dtype, an overflow refused by name ----


def cast_params(params, dtype: np.dtype, path: str = "params"):
    """Every array of a params tree cast with cast_array, named as in check_params' messages."""
    if isinstance(params, dict):
        return {k: cast_params(v, dtype, f"{path}[{k!r}]") for k, v in params.items()}
    if isinstance(params, list):
        return [cast_params(v, dtype, f"{path}[{i}]") for i, v in enumerate(params)]
    return cast_array(params, dtype, path)


def cast_array(a: np.ndarray, dtype: np.dtype, arg: str) -> np.ndarray:
    """`a` in `dtype`; a finite value that overflows it (1e39 into float32) is an error naming `arg`."""
    with np.errstate(over="ignore"):
        out = a.astype(dtype, copy=False)
    if out is not a and not np.all(np.isfinite(out)):
        i = tuple(int(j) for j in np.argwhere(~np.isfinite(out))[0])
        raise ValueError(
            f"{arg} has a value that overflows {dtype.name} (largest finite {np.finfo(dtype).max:.3g}): "
            f"{float(a[i])!r} at index {i}. Scale it down or use dtype='float64'."
        )
    return out


def all_finite(*arrays: np.ndarray) -> bool:
    return all(np.all(np.isfinite(a)) for a in arrays)


def writable(a) -> np.ndarray:
    """A numpy array the caller owns and may modify in place, whichever framework made it (JAX's
    arrays come back read-only through np.asarray)."""
    a = np.asarray(a)
    return a if a.flags.writeable else a.copy()
