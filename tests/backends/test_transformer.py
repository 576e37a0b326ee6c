"""The tiny GPT on all three backends: the contract, each piece's hand-written NumPy backward against
torch autograd and jax.vjp, the whole model pairwise, causality, and training.

Every piece is checked with a *random* upstream gradient, never by backpropagating `out.sum()`: for
softmax and LayerNorm the sum of the outputs is constant (1 per row, and Σ b), so every gradient of
it is 0 and a broken backward would pass.

Deliberate bugs these catch (each tried; the test that fails in brackets):
- attention without the 1/√d_head scale [attention piece, whole-model parity, finite differences];
- the causal mask off by one, hiding the diagonal or showing the next token [attention piece, causality];
- LayerNorm with the unbiased variance (÷ d − 1) [layernorm piece, whole-model parity];
- the embedding gradient assigned (dtok[X] = dx) instead of accumulated [embedding piece with
  repeated tokens, finite differences];
- the tanh-approximate GELU in one backend [whole-model parity, gelu].
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from backends import available_backends, get_backend
from backends.numpy import gpt as nt
from shared.finite_differences import central_differences
from shared.optim import SGD, Adam
from shared.params import gpt_param_shapes, init_params, map_params, named_leaves
from shared.spec import GPTSpec, MLPSpec
from shared.tolerances import FD_STEP, closeness, tolerance
from shared.trajectory import Trajectory, compare
from tests.conftest import backend_or_skip

SMALL = GPTSpec(vocab_size=7, seq_len=6, d_model=8, n_heads=2, n_layers=2, d_ff=12, activation="gelu")
TOL = tolerance("float64", "grads")


def perturbed_params(spec: GPTSpec, seed: int = 0, scale: float = 0.3):
    """init_params plus noise: non-zero biases, gains away from 1 and larger weights, so every term of
    every backward is exercised (GPT-2's init makes biases 0 and gains 1)."""
    params = init_params(spec, seed=seed)
    rng = np.random.default_rng(seed + 100)
    return map_params(lambda a: a + rng.normal(0.0, scale, a.shape), params)


def tokens(spec: GPTSpec, n: int, t: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, spec.vocab_size, (n, t))
    X[0, : min(3, t)] = X[0, 0]  # a repeated token: its embedding gradient must add up
    return X, rng.integers(0, spec.vocab_size, (n, t))


# ---- the contract ----


def test_spec_defaults_and_hashability():
    spec = GPTSpec(vocab_size=11, seq_len=8, d_model=16, n_heads=4, n_layers=2)
    assert spec.d_ff == 64 and spec.activation == "gelu" and spec.d_head == 4
    assert hash(spec) == hash(GPTSpec(11, 8, 16, 4, 2, d_ff=64))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(d_model=10, n_heads=3), ValueError, r"d_model must be divisible by n_heads.*d_model=10, n_heads=3"),
        (dict(vocab_size=0), ValueError, r"vocab_size must be a positive integer; got 0"),
        (dict(seq_len=2.5), TypeError, r"seq_len must be a positive integer; got 2.5"),
        (dict(n_layers=True), TypeError, r"n_layers must be a positive integer; got True"),
        (dict(d_ff=-1), ValueError, r"d_ff must be a positive integer; got -1"),
        (dict(activation="swish"), ValueError, r"activation must be one of 'gelu', 'relu', 'tanh'; got 'swish'"),
    ],
)
def test_bad_specs_name_the_field(kwargs, error, match):
    args = dict(vocab_size=5, seq_len=4, d_model=8, n_heads=2, n_layers=1) | kwargs
    with pytest.raises(error, match=match):
        GPTSpec(**args)


def test_init_params_has_the_contract_shapes_and_is_deterministic():
    spec = GPTSpec(vocab_size=5, seq_len=4, d_model=6, n_heads=3, n_layers=2, d_ff=10)
    p = init_params(spec, seed=3)
    assert p["tok_emb"].shape == (5, 6) and p["pos_emb"].shape == (4, 6)
    assert len(p["blocks"]) == 2 and p["head"]["W"].shape == (6, 5) and p["head"]["b"].shape == (5,)
    block = p["blocks"][1]
    assert set(block) == {"ln1", "attn", "ln2", "mlp"}
    assert {k: v.shape for k, v in block["attn"].items()} == {
        **{f"W{c}": (6, 6) for c in "qkvo"},
        **{f"b{c}": (6,) for c in "qkvo"},
    }
    assert block["mlp"]["W1"].shape == (6, 10) and block["mlp"]["W2"].shape == (10, 6)
    assert np.all(block["ln1"]["g"] == 1) and np.all(block["attn"]["bq"] == 0)
    assert all(a.dtype == np.float64 for _, a in named_leaves(p))
    assert sum(a.size for _, a in named_leaves(p)) == spec.n_params
    again = init_params(spec, seed=3)
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(named_leaves(p), named_leaves(again)))
    assert not np.array_equal(p["tok_emb"], init_params(spec, seed=4)["tok_emb"])
    assert p["blocks"][0]["attn"]["Wo"].std() < p["blocks"][0]["attn"]["Wq"].std()  # residual projections scaled


@pytest.mark.parametrize(
    "X, Y, error, match",
    [
        (
            np.array([[0, 7]]),
            None,
            ValueError,
            r"X token ids must be in \[0, 7\) \(vocab_size\); got 7 at index \(0, 1\)",
        ),
        (np.array([[0, -1]]), None, ValueError, r"X token ids must be in \[0, 7\).*got -1"),
        (
            np.array([[0.0, 1.0]]),
            None,
            TypeError,
            r"X must hold integer token ids; got dtype float64 \(use X.astype\(int\)\)",
        ),
        (np.zeros((1, 7), int), None, ValueError, r"X has sequences of 7 tokens, longer than seq_len = 6"),
        (np.zeros(3, int), None, ValueError, r"X must be 2-D \(n_sequences, t\); got shape \(3,\).*reshape\(1, -1\)"),
        (np.zeros((0, 3), int), None, ValueError, r"X is empty"),
        (
            np.zeros((2, 3), int),
            np.zeros((2, 2), int),
            ValueError,
            r"Y must have the shape of X, \(2, 3\); got \(2, 2\)",
        ),
        (np.zeros((2, 3), int), np.full((2, 3), 9), ValueError, r"Y token ids must be in \[0, 7\)"),
        (np.zeros((2, 3), int), np.zeros((2, 3)), TypeError, r"Y must hold integer token ids; got dtype float64"),
        (np.zeros((2, 3), int), "none", TypeError, r"Y is required"),
    ],
)
def test_bad_tokens_are_named_on_every_backend(backend_name, X, Y, error, match):
    be = get_backend(backend_name)
    params = init_params(SMALL, seed=0)
    with pytest.raises(error, match=match):
        if Y is None:
            be.forward(SMALL, params, X)
        else:
            be.loss_and_grads(SMALL, params, X, None if isinstance(Y, str) else Y)


def test_params_in_the_wrong_structure_are_named():
    be = get_backend("numpy")
    params = init_params(SMALL, seed=0)
    params["blocks"][1]["attn"]["Wq"] = np.zeros((8, 7))
    with pytest.raises(ValueError, match=r"params\['blocks'\]\[1\]\['attn'\]\['Wq'\] must have shape \(8, 8\)"):
        be.forward(SMALL, params, np.zeros((1, 2), int))
    del params["ln_f"]
    with pytest.raises(ValueError, match=r"params must be a dict with exactly the keys"):
        be.forward(SMALL, params, np.zeros((1, 2), int))


def test_nothing_is_mutated(backend_name):
    params, (X, Y) = perturbed_params(SMALL), tokens(SMALL, 3, 5)
    before = map_params(np.copy, params)
    X0, Y0 = X.copy(), Y.copy()
    be = get_backend(backend_name)
    be.loss_and_grads(SMALL, params, X, Y)
    be.train(SMALL, params, X, Y, Adam(1e-2), steps=3)
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(named_leaves(params), named_leaves(before)))
    assert np.array_equal(X, X0) and np.array_equal(Y, Y0)


# ---- each piece: NumPy's hand-written backward against torch autograd and jax.vjp ----


def _torch_vjp(fn, inputs, dout):
    """Gradients of <fn(*inputs), dout> w.r.t. every float input, by torch autograd (float64)."""
    torch = pytest.importorskip("torch")
    ts = [torch.tensor(a, requires_grad=np.issubdtype(a.dtype, np.floating)) for a in inputs]
    out = fn(*ts)
    out.backward(torch.tensor(dout))
    return [t.grad.numpy() for t in ts if t.requires_grad]


def _jax_vjp(fn, inputs, dout):
    """The same gradients by jax.vjp (float64 inside jax.enable_x64)."""
    jax = pytest.importorskip("jax")
    with jax.enable_x64(True):
        floats = [i for i, a in enumerate(inputs) if np.issubdtype(a.dtype, np.floating)]

        def f(*fl):
            args = list(inputs)
            for i, a in zip(floats, fl):
                args[i] = a
            return fn(*args)

        _, vjp = jax.vjp(f, *[jax.numpy.asarray(inputs[i]) for i in floats])
        return [np.asarray(g) for g in vjp(jax.numpy.asarray(dout))]


def _check(name, ours, theirs, who):
    for i, (a, b) in enumerate(zip(ours, theirs)):
        result = closeness(a, b, TOL)
        assert result.ok, result.message(f"{name} gradient {i}: numpy vs {who}")


RNG = np.random.default_rng(7)


def test_embedding_backward_accumulates_repeated_tokens():
    V, T, d = 5, 6, 4
    tok, pos = RNG.normal(size=(V, d)), RNG.normal(size=(T, d))
    X = np.array([[1, 1, 3, 1], [0, 3, 3, 2]])  # token 1 three times in one row
    dx = RNG.normal(size=(2, 4, d))
    ours = nt.embedding_backward(dx, X, V, T)
    assert np.allclose(ours[0][1], dx[0, 0] + dx[0, 1] + dx[0, 3]) and np.all(ours[1][4:] == 0)
    _check("embedding", ours, _torch_vjp(lambda t, p, x: t[x] + p[: x.shape[1]], [tok, pos, X], dx), "torch")
    _check("embedding", ours, _jax_vjp(lambda t, p, x: t[x] + p[: x.shape[1]], [tok, pos, X], dx), "jax")


def test_layernorm_backward_matches_with_a_random_upstream_gradient():
    x, g, b = RNG.normal(size=(2, 3, 5)) * 3 + 1, RNG.normal(size=5), RNG.normal(size=5)
    dy = RNG.normal(size=(2, 3, 5))
    y, cache = nt.layernorm_forward(x, g, b)
    dx, dg, db = nt.layernorm_backward(dy, cache)
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    _check(
        "layernorm",
        (dx, dg, db),
        _torch_vjp(lambda x, g, b: F.layer_norm(x, (5,), g, b, eps=1e-5), [x, g, b], dy),
        "torch",
    )
    from backends.jax import gpt as jt

    _check("layernorm", (dx, dg, db), _jax_vjp(lambda x, g, b: jt.layernorm(x, {"g": g, "b": b}), [x, g, b], dy), "jax")
    torch_y = F.layer_norm(torch.tensor(x), (5,), torch.tensor(g), torch.tensor(b), eps=1e-5).numpy()
    assert closeness(y, torch_y, tolerance("float64", "forward")).ok  # the biased variance, as torch


def _attention_inputs(d=6, h=3, n=2, t=5):
    x = RNG.normal(size=(n, t, d))
    p = {
        k: RNG.normal(size=(d, d)) * 0.5 if k[0] == "W" else RNG.normal(size=d)
        for k in gpt_param_shapes(SMALL)["blocks"][0]["attn"]
    }
    return x, p, h, RNG.normal(size=(n, t, d))


ATTN_KEYS = ["Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo"]


def test_attention_backward_matches_torch_and_jax():
    x, p, h, dy = _attention_inputs()
    y, cache = nt.attention_forward(x, p, h)
    dx, g = nt.attention_backward(dy, cache, p)
    ours = [dx] + [g[k] for k in ATTN_KEYS]
    inputs = [x] + [p[k] for k in ATTN_KEYS]
    torch = pytest.importorskip("torch")
    from backends.torch.gpt import CausalSelfAttention

    def torch_attention(x, *weights):
        module = CausalSelfAttention(GPTSpec(5, 5, 6, 3, 1), torch.float64)
        q = dict(zip(ATTN_KEYS, weights))
        # call the module's forward with our weights swapped in (functional_call keeps autograd on them)
        state = {f"{c}.weight": q[f"W{c}"].T for c in "qkvo"} | {f"{c}.bias": q[f"b{c}"] for c in "qkvo"}
        return torch.func.functional_call(module, state, (x,))

    _check("attention", ours, _torch_vjp(torch_attention, inputs, dy), "torch")
    from backends.jax import gpt as jt

    _check("attention", ours, _jax_vjp(lambda x, *w: jt.attention(x, dict(zip(ATTN_KEYS, w)), h), inputs, dy), "jax")
    assert closeness(
        y, torch_attention(*map(torch.tensor, inputs)).detach().numpy(), tolerance("float64", "forward")
    ).ok


def test_attention_gradient_is_zero_for_future_positions():
    x, p, h, dy = _attention_inputs()
    dy[:, :3] = 0  # only the last two positions carry a gradient ...
    _, cache = nt.attention_forward(x, p, h)
    dx, _ = nt.attention_backward(dy, cache, p)
    dy2 = dy.copy()
    dy2[:, 3] = 0  # ... and position 3's loss can only reach positions ≤ 3
    _, cache = nt.attention_forward(x, p, h)
    dx_last, _ = nt.attention_backward(dy2, cache, p)
    assert np.all(dx_last[:, :4] != 0) and np.all(dx[:, :3] != 0)
    P = cache[4]
    assert np.all(np.triu(np.ones((5, 5)), 1)[None, None] * P == 0)  # no attention to the future


def test_softmax_cross_entropy_backward_is_the_mean_over_every_position():
    logits, Y = RNG.normal(size=(2, 3, 5)) * 2, RNG.integers(0, 5, (2, 3))
    ours = nt.softmax_ce_backward(logits, Y)
    torch = pytest.importorskip("torch")
    from backends.torch import gpt as torch_gpt

    lt = torch.tensor(logits, requires_grad=True)
    loss = torch_gpt.softmax_ce(lt, torch.tensor(Y))
    loss.backward()
    assert abs(loss.item() - nt.softmax_ce_forward(logits, Y)) < 1e-14
    _check("softmax_ce", [ours], [lt.grad.numpy()], "torch")


@pytest.mark.parametrize("activation", ["gelu", "relu", "tanh"])
def test_block_backward_matches_torch(activation):
    spec = GPTSpec(5, 4, 6, 2, 1, d_ff=10, activation=activation)
    params = perturbed_params(spec, seed=2)
    p = params["blocks"][0]
    x, dy = RNG.normal(size=(2, 4, 6)), RNG.normal(size=(2, 4, 6))
    y, cache = nt.block_forward(x, p, spec)
    dx, g = nt.block_backward(dy, cache, p)
    torch = pytest.importorskip("torch")
    from backends.torch.backend import build_model

    model = build_model(spec, params, torch.float64)
    xt = torch.tensor(x, requires_grad=True)
    out = model.blocks[0](xt)
    out.backward(torch.tensor(dy))
    assert closeness(y, out.detach().numpy(), tolerance("float64", "forward")).ok
    _check("block dx", [dx], [xt.grad.numpy()], "torch")
    tensors = model.canonical()
    for name, ours in named_leaves(g):
        tensor, transposed = tensors[f"blocks[0].{name}"]
        theirs = (tensor.grad.T if transposed else tensor.grad).numpy()
        result = closeness(ours, theirs, TOL)
        assert result.ok, result.message(f"block {name}")


def test_numpy_gradients_match_central_finite_differences():
    spec = GPTSpec(5, 4, 4, 2, 1, d_ff=6, activation="gelu")
    params = perturbed_params(spec, seed=1)
    X, Y = tokens(spec, 2, 4, seed=1)
    _, grads = get_backend("numpy").loss_and_grads(spec, params, X, Y)

    def loss(p):
        return nt.softmax_ce_forward(nt.gpt_forward(spec, p, X)[0], Y)

    numeric = central_differences(loss, params, FD_STEP)  # shared/finite_differences.py, as gradcheck's
    result = closeness(grads, numeric, tolerance("float64", "fd"))
    assert result.ok, result.message("numpy GPT vs finite differences")


# ---- the whole model, pairwise ----

CONFIGS = [
    (SMALL, 3, 6),  # t = T
    (SMALL, 2, 1),  # t = 1: attention over a single position
    (GPTSpec(6, 5, 6, 1, 1, activation="relu"), 3, 4),  # one head, t < T
    (GPTSpec(9, 4, 12, 4, 2, d_ff=8, activation="tanh"), 2, 4),
]


@pytest.mark.parametrize("spec, n, t", CONFIGS, ids=[f"{c[0].activation}-h{c[0].n_heads}-t{c[2]}" for c in CONFIGS])
def test_forward_loss_and_grads_agree_pairwise(pair, dtype, spec, n, t):
    params, (X, Y) = perturbed_params(spec, seed=n + t), tokens(spec, n, t, seed=t)
    a, b = (backend_or_skip(name, dtype) for name in pair)
    what = f"{pair[0]} vs {pair[1]} {dtype} {spec.describe()} t={t}"
    out_a, out_b = a.forward(spec, params, X), b.forward(spec, params, X)
    assert out_a.shape == (n, t, spec.vocab_size) and out_a.dtype == np.dtype(dtype)
    result = closeness(out_a, out_b, tolerance(dtype, "forward"))
    assert result.ok, result.message(f"logits, {what}")
    (loss_a, grads_a), (loss_b, grads_b) = a.loss_and_grads(spec, params, X, Y), b.loss_and_grads(spec, params, X, Y)
    assert closeness(loss_a, loss_b, tolerance(dtype, "grads")).ok, (loss_a, loss_b)
    assert all(g.dtype == np.dtype(dtype) for _, g in named_leaves(grads_a))
    result = closeness(grads_a, grads_b, tolerance(dtype, "grads"))
    assert result.ok, result.message(f"grads, {what}")


def test_changing_a_future_token_leaves_earlier_logits_bit_identical(backend_name):
    params, (X, _) = perturbed_params(SMALL), tokens(SMALL, 2, 6)
    be = get_backend(backend_name)
    before = be.forward(SMALL, params, X)
    for i in (5, 3, 1):
        changed = X.copy()
        changed[:, i] = (changed[:, i] + 1) % SMALL.vocab_size
        after = be.forward(SMALL, params, changed)
        assert np.array_equal(before[:, :i], after[:, :i]), f"position < {i} changed"
        assert not np.allclose(before[:, i], after[:, i])  # the changed position itself does change


@pytest.mark.skipif(len(available_backends()) < 2, reason="needs torch or jax beside numpy")
def test_random_configurations_agree(request):
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=5, deadline=None)
    @hypothesis.given(
        heads=st.sampled_from([1, 2, 3]),
        d_head=st.integers(1, 3),
        layers=st.integers(1, 2),
        vocab=st.integers(2, 9),
        T=st.integers(1, 5),
        n=st.integers(1, 3),
        activation=st.sampled_from(["gelu", "relu", "tanh"]),
        seed=st.integers(0, 1000),
        data=st.data(),
    )
    def check(heads, d_head, layers, vocab, T, n, activation, seed, data):
        spec = GPTSpec(
            vocab, T, heads * d_head, heads, layers, d_ff=data.draw(st.integers(1, 8)), activation=activation
        )
        t = data.draw(st.integers(1, T))
        params, (X, Y) = perturbed_params(spec, seed=seed), tokens(spec, n, t, seed=seed)
        results = {name: get_backend(name).loss_and_grads(spec, params, X, Y) for name in available_backends()}
        for a, b in itertools.combinations(results, 2):
            result = closeness(results[a][1], results[b][1], TOL)
            assert result.ok, result.message(f"{a} vs {b}, {spec.describe()}, t={t}")

    check()


# ---- training ----


TRAJECTORY_CASES = [("float64", Adam(1e-2), "trajectory"), ("float32", SGD(0.1, momentum=0.9), "trajectory_sgd")]


@pytest.mark.parametrize("dtype_, opt, kind", TRAJECTORY_CASES, ids=[c[0] for c in TRAJECTORY_CASES])
def test_trajectories_agree_pairwise(pair, dtype_, opt, kind):
    """float64: tens of Adam steps. float32 uses SGD with momentum: see the next test for why Adam
    cannot be held to a float32 tolerance on this model."""
    params, (X, Y) = perturbed_params(SMALL, seed=5, scale=0.1), tokens(SMALL, 8, 6, seed=5)
    a, b = (
        backend_or_skip(name, dtype_).train(SMALL, params, X, Y, opt, steps=30, batch_size=4, record_every=10)
        for name in pair
    )
    result = compare(a, b, tolerance(dtype_, kind))
    assert result.ok, result.message(f"{pair[0]} vs {pair[1]} GPT {dtype_}")
    assert a.losses[-1] < a.losses[0]


def test_adam_turns_float32_rounding_in_the_key_bias_into_full_steps():
    """The key bias bk adds q·bk to every score of a query's row, and softmax ignores a constant
    added to a row: its true gradient is exactly 0. What each backend computes is rounding noise
    (~1e-9 in float32), and Adam divides by √v̂, the noise's own size, so every backend steps bk
    by ±lr in directions set by its own rounding. In float32 the backends part there first."""
    params, (X, Y) = perturbed_params(SMALL, seed=5, scale=0.1), tokens(SMALL, 8, 6, seed=5)
    _, grads = get_backend("numpy").loss_and_grads(SMALL, params, X, Y)
    largest = max(np.abs(g).max() for _, g in named_leaves(grads))
    assert all(np.abs(block["attn"]["bk"]).max() < 1e-13 * largest for block in grads["blocks"])
    a, b = (
        backend_or_skip(name, "float32").train(SMALL, params, X, Y, Adam(1e-2), steps=10, batch_size=4)
        for name in ("numpy", "torch")
    )
    result = closeness(a.params, b.params, tolerance("float32", "trajectory_adam"))
    assert not result.ok and ".attn.bk[" in result.worst, result.message("numpy vs torch, float32 Adam")


def test_a_gpt_trajectory_round_trips_through_a_file(tmp_path):
    params, (X, Y) = perturbed_params(SMALL, seed=5, scale=0.1), tokens(SMALL, 4, 6, seed=5)
    traj = get_backend("numpy", "float32").train(SMALL, params, X, Y, Adam(1e-2), steps=6, record_every=3)
    back = Trajectory.load(traj.save(tmp_path / "gpt"))
    assert back.meta["spec"]["model"] == "gpt" and np.array_equal(back.losses, traj.losses)
    assert compare(traj, back, tolerance("float64", "trajectory")).max_abs.max() == 0


# ---- attention maps: each framework's own P ----


def test_attention_maps_are_each_frameworks_own_and_agree(pair, dtype):
    """Every block's P from each framework's forward: rows sum to 1, the future is exactly 0, and the
    pairs agree within the forward tolerance. Catches a map taken before the mask, one missing the
    1/√d scale, and heads split in a different order."""
    params, (X, _) = perturbed_params(SMALL, seed=2, scale=0.5), tokens(SMALL, 3, 6, seed=2)
    a, b = (backend_or_skip(name, dtype).attention_maps(SMALL, params, X) for name in pair)
    assert len(a) == len(b) == SMALL.n_layers
    t = X.shape[1]
    future = np.triu(np.ones((t, t), bool), k=1)
    for Pa, Pb in zip(a, b):
        assert Pa.shape == (3, SMALL.n_heads, t, t) and Pa.dtype == np.dtype(dtype)
        for P in (Pa, Pb):
            assert (P[..., future] == 0).all()
            np.testing.assert_allclose(P.sum(-1), 1, rtol=0, atol=20 * np.finfo(dtype).eps)
        result = closeness(Pa, Pb, tolerance(dtype, "forward"))
        assert result.ok, result.message(f"attention maps, {pair[0]} vs {pair[1]}")


def test_attention_maps_are_the_ones_the_forward_uses():
    """NumPy's maps, fed back through P·v and the rest of the block by hand, give the forward's logits:
    the maps are not a recomputation that could drift from the model."""
    spec = GPTSpec(vocab_size=5, seq_len=4, d_model=6, n_heads=3, n_layers=1, d_ff=10)
    params, (X, _) = perturbed_params(spec, seed=1, scale=0.5), tokens(spec, 2, 4, seed=1)
    (P,) = get_backend("numpy").attention_maps(spec, params, X)
    p = params["blocks"][0]
    x = nt.embedding_forward(params["tok_emb"], params["pos_emb"], X)
    h1, _ = nt.layernorm_forward(x, p["ln1"]["g"], p["ln1"]["b"])
    v = nt.split_heads(nt.linear_forward(h1, p["attn"]["Wv"], p["attn"]["bv"]), spec.n_heads)
    x = x + nt.linear_forward(nt.merge_heads(P @ v), p["attn"]["Wo"], p["attn"]["bo"])
    h2, _ = nt.layernorm_forward(x, p["ln2"]["g"], p["ln2"]["b"])
    x = x + nt.mlp_forward(h2, p["mlp"], spec.activation)[0]
    h, _ = nt.layernorm_forward(x, params["ln_f"]["g"], params["ln_f"]["b"])
    logits = nt.linear_forward(h, params["head"]["W"], params["head"]["b"])
    np.testing.assert_allclose(logits, get_backend("numpy").forward(spec, params, X), rtol=1e-12, atol=1e-13)


def test_attention_maps_refuse_an_mlp():
    spec = MLPSpec((2, 3, 1), "tanh", "mse")
    with pytest.raises(TypeError, match="attention_maps needs a GPTSpec"):
        get_backend("numpy").attention_maps(spec, init_params(spec), np.zeros((1, 2)))
