"""Parameters in the canonical layout every backend reads and returns.

    params = init_params(spec, seed=0)
    params[l]["W"]   # (fan_in, fan_out)  float64: the canonical layout is (in, out), so X @ W works
    params[l]["b"]   # (fan_out,)

A GPTSpec's params are a nested dict (see gpt_param_shapes for every name and shape):

    params["tok_emb"]                  # (V, d)
    params["blocks"][0]["attn"]["Wq"]  # (d, d), also (in, out)
    params["head"]["W"]                # (d, V)

Everything that walks params without knowing the model (comparisons, optimizers, files) uses
`named_leaves`: the arrays in a fixed order with readable names ('layer0.W', 'blocks[0].attn.Wq').

torch stores Linear weights as (out, in); the torch backend transposes at its border. A params list
in torch's layout is rejected here with a hint, rather than silently transposed.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import numpy as np

from shared.spec import GPTSpec, MLPSpec

Params = list[dict[str, np.ndarray]] | dict
"""An MLP's list of {'W', 'b'} layers, or a GPT's nested dict of arrays."""


def init_params(spec: MLPSpec | GPTSpec, seed: int = 0) -> Params:
    """Initial params as float64 numpy arrays, deterministic per seed.

    MLP: Glorot-uniform weights and zero biases. W ~ U(−a, a) with a = sqrt(6 / (fan_in + fan_out))
    keeps the variance of activations and of gradients roughly constant from layer to layer
    (Glorot & Bengio, 2010).
    GPT: GPT-2's scheme. Every weight and embedding ~ N(0, 0.02²), the two projections that write
    into the residual stream (attn.Wo, mlp.W2) scaled down by 1/√(2·n_layers) so the stream's
    variance does not grow with depth; biases 0, LayerNorm gains 1.
    """
    if not isinstance(spec, (MLPSpec, GPTSpec)):
        raise TypeError(f"spec must be an MLPSpec or a GPTSpec; got {type(spec).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    rng = np.random.default_rng(int(seed))
    if isinstance(spec, GPTSpec):
        return _init_gpt(spec, rng)
    params: Params = []
    for fan_in, fan_out in spec.layer_shapes:
        a = np.sqrt(6.0 / (fan_in + fan_out))
        W = rng.uniform(-a, a, size=(fan_in, fan_out))  # (fan_in, fan_out)
        b = np.zeros(fan_out)  # (fan_out,)
        params.append({"W": W, "b": b})
    return params


def gpt_param_shapes(spec: GPTSpec) -> dict:
    """The shape of every GPT parameter, in the nested structure of the params themselves."""
    d, f, V, T = spec.d_model, spec.d_ff, spec.vocab_size, spec.seq_len
    block = {
        "ln1": {"g": (d,), "b": (d,)},
        "attn": {k: ((d, d) if k[0] == "W" else (d,)) for k in ("Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo")},
        "ln2": {"g": (d,), "b": (d,)},
        "mlp": {"W1": (d, f), "b1": (f,), "W2": (f, d), "b2": (d,)},
    }
    return {
        "tok_emb": (V, d),
        "pos_emb": (T, d),
        "blocks": [block for _ in range(spec.n_layers)],
        "ln_f": {"g": (d,), "b": (d,)},
        "head": {"W": (d, V), "b": (V,)},
    }


def _init_gpt(spec: GPTSpec, rng: np.random.Generator) -> dict:
    residual_scale = 1 / np.sqrt(2 * spec.n_layers)

    def init(path: str, shape: tuple) -> np.ndarray:
        key = path.rsplit(".", 1)[-1]
        if key == "g":
            return np.ones(shape)  # LayerNorm gain
        if key.startswith("b"):
            return np.zeros(shape)  # every bias, LayerNorm's included
        std = 0.02 * (residual_scale if key in ("Wo", "W2") else 1.0)
        return rng.normal(0.0, std, size=shape)

    return _build(gpt_param_shapes(spec), init)


def _build(shapes, make, path: str = ""):
    """A params tree shaped like `shapes`, each leaf make(path, shape), in named_leaves order."""
    if isinstance(shapes, dict):
        return {k: _make_or_recurse(v, make, _join(path, k)) for k, v in shapes.items()}
    return [_make_or_recurse(v, make, f"{path}[{i}]") for i, v in enumerate(shapes)]


def _make_or_recurse(shapes, make, path: str):
    return make(path, shapes) if isinstance(shapes, tuple) else _build(shapes, make, path)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def named_leaves(params: Params) -> list[tuple[str, np.ndarray]]:
    """Every array of a params tree with its name, in a fixed order: an MLP's layers in order, W
    before b ('layer0.W', 'layer0.b', ...); a GPT's in the order of gpt_param_shapes
    ('tok_emb', 'pos_emb', 'blocks[0].ln1.g', ...)."""
    if isinstance(params, list) and all(isinstance(layer, dict) and set(layer) == {"W", "b"} for layer in params):
        return [(f"layer{l}.{k}", layer[k]) for l, layer in enumerate(params) for k in ("W", "b")]
    out: list[tuple[str, np.ndarray]] = []

    def walk(node, path):
        if isinstance(node, dict):
            for k in _ordered_keys(node):
                walk(node[k], _join(path, k))
        elif isinstance(node, (list, tuple)):
            for i, child in enumerate(node):
                walk(child, f"{path}[{i}]")
        else:
            out.append((path, node))

    walk(params, "")
    return out


_KEY_ORDER = ["tok_emb", "pos_emb", "blocks", "ln1", "attn", "ln2", "mlp", "ln_f", "head", "W", "g", "b"]
_KEY_ORDER += ["Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo", "W1", "b1", "W2", "b2"]


def _ordered_keys(node: dict) -> list:
    """Keys in the canonical order whatever order the dict was built in; unknown keys last, sorted."""
    rank = {k: i for i, k in enumerate(_KEY_ORDER)}
    return sorted(node, key=lambda k: (rank.get(k, len(rank)), str(k)))


def tree_leaves(params: Params) -> list[np.ndarray]:
    """The arrays of named_leaves, in the same order, without building the names (training loops call
    this every step). `params` is a checked tree (check_params): an MLP's is a list of {"W", "b"},
    which is all this looks at to tell it from a GPT's dict."""
    if isinstance(params, list):  # an MLP, [{"W", "b"}, ...], read directly (a GPT's params are a dict)
        return [layer[k] for layer in params for k in ("W", "b")]
    return [a for _, a in named_leaves(params)]


def check_params(spec: MLPSpec | GPTSpec, params: object, arg: str = "params") -> Params:
    """Validate `params` against `spec`; return them with every leaf a numpy array.

    Raises a ValueError/TypeError that names the layer and key, what was expected and what was given.
    """
    if isinstance(spec, GPTSpec):
        return _check_tree(gpt_param_shapes(spec), params, arg)
    if not isinstance(params, Sequence) or isinstance(params, (str, bytes)):
        raise TypeError(
            f"{arg} must be a list of {{'W': array, 'b': array}} dicts, one per layer; got {type(params).__name__}"
        )
    if len(params) != spec.n_layers:
        raise ValueError(f"{arg} has {len(params)} layers but spec sizes={spec.sizes} has {spec.n_layers}")
    out: Params = []
    for l, (layer, (fan_in, fan_out)) in enumerate(zip(params, spec.layer_shapes)):
        if not isinstance(layer, dict) or set(layer) != {"W", "b"}:
            got = sorted(layer) if isinstance(layer, dict) else type(layer).__name__
            raise ValueError(f"{arg}[{l}] must be a dict with exactly the keys 'W' and 'b'; got {got}")
        W = as_float_array(layer["W"], f"{arg}[{l}]['W']")
        b = as_float_array(layer["b"], f"{arg}[{l}]['b']")
        if W.shape != (fan_in, fan_out):
            hint = ""
            if W.shape == (fan_out, fan_in):
                hint = " This looks like torch's (out, in) layout; the canonical layout is (in, out): pass W.T."
            raise ValueError(
                f"{arg}[{l}]['W'] must have shape (fan_in, fan_out) = {(fan_in, fan_out)}; got {W.shape}.{hint}"
            )
        if b.shape != (fan_out,):
            raise ValueError(f"{arg}[{l}]['b'] must have shape {(fan_out,)}; got {b.shape}")
        out.append({"W": W, "b": b})
    return out


def as_float_array(value: object, arg: str) -> np.ndarray:
    """`value` as a finite, real-valued numpy array (dtype kept if floating, else float64)."""
    try:
        a = np.asarray(value)
    except Exception as e:  # ragged lists and the like
        raise TypeError(f"{arg} must be a numeric array; could not convert it ({e})") from None
    floating = np.issubdtype(a.dtype, np.floating) or a.dtype.name == "bfloat16"  # (ml_dtypes' is not np.floating)
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or floating):
        raise TypeError(f"{arg} must hold real numbers; got dtype {a.dtype}")
    if not floating:
        a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(f"{arg} must be finite; found {a[tuple(bad)]} at index {tuple(int(i) for i in bad)}")
    return a


def _check_tree(shapes, value: object, arg: str):
    """`value` against the nested structure of `shapes` (dicts, lists, shape tuples)."""
    if isinstance(shapes, tuple):
        a = as_float_array(value, arg)
        if a.shape != shapes:
            hint = ""
            if len(shapes) == 2 and a.shape == shapes[::-1] and shapes[0] != shapes[1]:
                hint = " This looks like torch's (out, in) layout; the canonical layout is (in, out): pass W.T."
            raise ValueError(f"{arg} must have shape {shapes}; got {a.shape}.{hint}")
        return a
    if isinstance(shapes, dict):
        if not isinstance(value, dict) or set(value) != set(shapes):
            got = sorted(map(str, value)) if isinstance(value, dict) else type(value).__name__
            raise ValueError(f"{arg} must be a dict with exactly the keys {sorted(shapes)}; got {got}")
        return {k: _check_tree(shapes[k], value[k], f"{arg}[{k!r}]") for k in shapes}
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)) or len(value) != len(shapes):
        got = f"{len(value)} entries" if isinstance(value, Sequence) else type(value).__name__
        raise ValueError(f"{arg} must be a list of {len(shapes)} entries (one per block); got {got}")
    return [_check_tree(s, v, f"{arg}[{i}]") for i, (s, v) in enumerate(zip(shapes, value))]


def map_params(fn: Callable[[np.ndarray], np.ndarray], params: Params) -> Params:
    """Apply `fn` to every array, keeping the structure (an MLP's list of dicts, a GPT's nested dict)."""
    if isinstance(params, dict):
        return {k: map_params(fn, v) if isinstance(v, (dict, list)) else fn(v) for k, v in params.items()}
    if isinstance(params, list):
        return [map_params(fn, v) if isinstance(v, (dict, list)) else fn(v) for v in params]
    return fn(params)


def flatten(params: Params) -> np.ndarray:
    """All parameters in one vector, in named_leaves order (for norms and comparisons)."""
    return np.concatenate([np.ravel(a) for a in tree_leaves(params)])


def unflatten_named(spec: MLPSpec | GPTSpec, get: Callable[[str], np.ndarray]) -> Params:
    """The params tree of `spec` with each leaf get(name), names as in named_leaves."""
    if isinstance(spec, GPTSpec):
        return _build(gpt_param_shapes(spec), lambda path, shape: get(path))
    return [{k: get(f"layer{l}.{k}") for k in ("W", "b")} for l in range(spec.n_layers)]


def from_leaves(spec: MLPSpec | GPTSpec, leaves: Sequence[np.ndarray]) -> Params:
    """The params tree of `spec` from its arrays in tree_leaves order (the inverse of tree_leaves)."""
    named = dict(zip(param_names(spec), leaves, strict=True))
    return unflatten_named(spec, named.__getitem__)


def param_names(spec: MLPSpec | GPTSpec) -> list[str]:
    """Readable names in `flatten` order of the arrays: ['layer0.W', 'layer0.b', ...]."""
    if isinstance(spec, GPTSpec):
        return [name for name, _ in named_leaves(_build(gpt_param_shapes(spec), lambda p, s: None))]
    return [f"layer{l}.{k}" for l in range(spec.n_layers) for k in ("W", "b")]


def without(params: Params, names: set[str]) -> dict[str, np.ndarray]:
    """A flat {name: array} of params without the tensors in `names` (closeness compares it by name)."""
    return {name: a for name, a in named_leaves(params) if name not in names}
