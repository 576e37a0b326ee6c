"""The half formats, bfloat16 and float16, on every backend: the MLP's and the GPT's forward and
gradients, SGD training in the pure format (params and momentum in it; each framework's update
rounding held to its rule), and mixed precision (float32 params and update, the forward and backward
in the half format), trained.

Arrays cross the interface in the format itself (numpy's float16, ml_dtypes' bfloat16). Every pair
of backends agrees within the half formats' tolerances (shared.tolerances: 4ε forward, 8ε gradients,
about 4× what was measured), and NumPy accumulates its sums in float32 as torch and XLA do.

Deliberate bugs these catch: NumPy summing bfloat16 in bfloat16 (test_numpy_sums...), a result that
comes back in float32 or float64 instead of the half format, torch reading ml_dtypes' bfloat16 bits as
something else, a GELU evaluated in float64 and never rounded back."""

import functools

import numpy as np
import pytest

from backends import get_backend
from backends.numpy import mlp as nm
from shared.optim import SGD, Adam, AdamW
from shared.params import init_params, map_params, tree_leaves
from shared.spec import GPTSpec, MLPSpec
from shared.tolerances import closeness, tolerance, trajectory_tolerance
from shared.trajectory import Trajectory, compare
from shared.validation import HALF_DTYPES, numpy_dtype
from tests.conftest import backend_or_skip

pytest.importorskip("ml_dtypes", reason="bfloat16 in numpy needs ml_dtypes (it comes with jax)")

CASES = [
    ("tanh", "mse", 2),
    ("relu", "bce", 1),
    ("sigmoid", "softmax_ce", 3),
    ("gelu", "mse", 2),
    ("gelu", "softmax_ce", 4),
]


def problem(activation: str, loss: str, k: int, seed: int = 0):
    spec = MLPSpec((3, 16, 8, k), activation, loss)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(32, 3))
    if loss == "softmax_ce":
        y = rng.integers(0, k, 32)
    elif loss == "bce":
        y = rng.integers(0, 2, (32, 1)).astype(float)
    else:
        y = rng.normal(size=(32, k))
    return spec, init_params(spec, seed=seed), X, y


@pytest.fixture(params=HALF_DTYPES)
def half(request) -> str:
    return request.param


@pytest.mark.parametrize("activation, loss, k", CASES, ids=[f"{a}-{l}" for a, l, _ in CASES])
def test_every_pair_agrees_in_the_half_formats(pair, half, activation, loss, k):
    spec, params, X, y = problem(activation, loss, k)
    a, b = (backend_or_skip(name, half) for name in pair)
    fa, fb = a.forward(spec, params, X), b.forward(spec, params, X)
    assert fa.dtype == fb.dtype == numpy_dtype(half)  # the format itself, not float32 behind it
    result = closeness(fa, fb, tolerance(half, "forward"))
    assert result.ok, result.message(f"forward, {pair} {half} {spec.describe()}")
    (la, ga), (lb, gb) = a.loss_and_grads(spec, params, X, y), b.loss_and_grads(spec, params, X, y)
    assert all(g.dtype == numpy_dtype(half) for g in tree_leaves(ga) + tree_leaves(gb))
    result = closeness(ga, gb, tolerance(half, "grads"))
    assert result.ok, result.message(f"grads, {pair} {half} {spec.describe()}")
    assert closeness(np.array(la), np.array(lb), tolerance(half, "forward")).ok, (la, lb)


def test_a_half_format_is_close_to_float64_at_its_own_precision(backend_name, half):
    """Precision, not framework: each backend's half result is within its format's tolerance of the
    float64 one, and (it is lossy) not within float32's."""
    spec, params, X, _ = problem("tanh", "mse", 2, seed=3)
    low = get_backend(backend_name, half).forward(spec, params, X).astype(np.float64)
    exact = get_backend("numpy", "float64").forward(spec, params, X)
    assert closeness(low, exact, tolerance(half, "forward")).ok
    assert not closeness(low, exact, tolerance("float32", "forward")).ok


@pytest.mark.parametrize("half_", HALF_DTYPES)
def test_numpy_sums_half_precision_in_float32(half_):
    """matmul, total and mean accumulate in float32 and round once, bit for bit; in float32 and
    float64 they are the plain @, sum and mean."""
    dtype = numpy_dtype(half_)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(8, 4096)).astype(dtype), rng.normal(size=(4096, 3)).astype(dtype)
    got = nm.matmul(a, b)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, (a.astype(np.float32) @ b.astype(np.float32)).astype(dtype))
    np.testing.assert_array_equal(nm.total(a, axis=1), a.astype(np.float32).sum(axis=1).astype(dtype))
    assert nm.mean(a).dtype == dtype and nm.mean(a) == (a.astype(np.float32).sum() / a.size).astype(dtype)
    x = rng.normal(size=(5, 7)).astype(np.float32)
    assert np.array_equal(nm.matmul(x, x.T), x @ x.T) and nm.mean(x) == np.mean(x)


def test_numpys_own_bfloat16_sum_would_lose_what_float32_keeps():
    """Why the casts are written out: ml_dtypes' bfloat16 sum() adds in bfloat16, and 100,000 terms
    drift from the exact sum a thousand times further than one rounding of the float32 sum does."""
    dtype = numpy_dtype("bfloat16")
    a = (np.random.default_rng(1).normal(size=100_000) + 0.5).astype(dtype)
    exact = a.astype(np.float64).sum()
    ours, numpys = abs(float(nm.total(a)) - exact), abs(float(a.sum()) - exact)
    assert ours < numpys / 100, (ours, numpys)
    assert (a[:4, None] @ a[None, :4]).dtype == np.float32 and nm.matmul(a[:4, None], a[None, :4]).dtype == dtype


def test_bfloat16_crosses_to_torch_bit_for_bit():
    pytest.importorskip("torch")
    import torch

    from backends.torch.backend import to_numpy, to_torch

    a = np.array([1.0, -2.5, 3.140625, 1e-3], dtype=numpy_dtype("bfloat16"))
    t = to_torch(a)
    assert t.dtype == torch.bfloat16 and t.tolist() == a.astype(np.float64).tolist()
    back = to_numpy(t * 2)
    assert back.dtype == numpy_dtype("bfloat16") and (back.astype(np.float64) == 2 * a.astype(np.float64)).all()


def test_adam_in_a_pure_half_format_is_refused_with_the_reason(half):
    spec, params, X, y = problem("tanh", "mse", 2)
    for opt in (Adam(0.01), AdamW(0.01)):  # β₂ = 0.999 is 1 in bfloat16, ε = 1e-8 is 0 in float16
        with pytest.raises(ValueError, match=f"{type(opt).__name__} cannot train in pure {half}: its β₂ = 0.999"):
            get_backend("numpy", half).train(spec, params, X, y, opt, steps=1)


# ---- training in a pure half format: SGD, params and buffers in the format


def update_rounded_twice(p, lr, g):
    """p − lr·g as NumPy writes it in the format: lr rounded to it, lr·g rounded, the difference rounded."""
    return p - p.dtype.type(lr) * g


def update_rounded_once(p, lr, g):
    """torch's rule: lr rounded to the format, p − lr·g computed in float32 and rounded once."""
    return (p.astype(np.float32) - np.float32(p.dtype.type(lr)) * g.astype(np.float32)).astype(p.dtype)


@pytest.mark.parametrize("name, rule", [("numpy", "twice"), ("jax", "twice"), ("torch", "once")])
def test_one_pure_half_sgd_step_rounds_as_its_framework_does(name, rule, half):
    """Each framework's SGD update in the format, from its own gradients at the same params: NumPy
    (NEP 50) and JAX (optax's hyperparameters in the params' dtype) round lr·g before subtracting it;
    torch's add_(alpha=−lr) computes p − lr·g in float32 and rounds once. The two rules differ on this
    data, so a backend that changed rule (an update computed in float32 in NumPy, or JAX's
    hyperparameters left in float32) fails. torch agrees with its rule on all but ~5 in 10⁵ entries
    (measured), each one rounding away: at most one here."""
    spec, params, X, y = problem("tanh", "mse", 2, seed=3)
    be = backend_or_skip(name, half)
    start = map_params(lambda a: a.astype(numpy_dtype(half)), params)
    _, grads = be.loss_and_grads(spec, start, X, y)
    got = tree_leaves(be.train(spec, start, X, y, SGD(0.1), steps=1).params)
    assert all(a.dtype == numpy_dtype(half) for a in got)  # params stay in the format
    want = {
        r: [f(p, 0.1, g) for p, g in zip(tree_leaves(start), tree_leaves(grads))]
        for r, f in (("twice", update_rounded_twice), ("once", update_rounded_once))
    }
    assert sum(int((a != b).sum()) for a, b in zip(want["twice"], want["once"])) >= 3  # the rules differ here
    off = [(a != b) for a, b in zip(got, want[rule])]
    assert sum(int(o.sum()) for o in off) <= (1 if rule == "once" else 0)
    eps = float(np.finfo(numpy_dtype(half)).eps)
    for a, b, o in zip(got, want[rule], off):  # each such entry one rounding away, at its own scale
        a, b = a.astype(np.float64)[o], b.astype(np.float64)[o]
        assert (np.abs(a - b) <= eps * np.maximum(np.abs(a), np.abs(b))).all()


@pytest.mark.parametrize(
    "opt",
    [SGD(0.05, momentum=0.9), SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.01)],
    ids=["momentum", "nesterov-wd"],  # plain SGD's update: test_one_pure_half_sgd_step_rounds_as_its_framework_does
)
def test_pure_half_sgd_trajectories_agree_in_every_pair_for_a_few_steps(pair, half, opt):
    """Ten full-batch SGD steps with everything in the format, every pair within trajectory_sgd
    (8ε; measured: 0.9ε bfloat16, 3.2ε float16). Longer runs separate (shared.tolerances says how far):
    the format's rounding, compounded, not a framework bug."""
    spec, params, X, y = problem("sigmoid", "softmax_ce", 3, seed=1)
    a, b = (backend_or_skip(name, half).train(spec, params, X, y, opt, steps=10, record_every=5) for name in pair)
    assert a.meta["dtype"] == half and all(p.dtype == numpy_dtype(half) for p in tree_leaves(a.params))
    result = compare(a, b, trajectory_tolerance(half, opt))
    assert result.ok, result.message(f"pure {half} {opt.describe()}, {pair}")
    assert a.losses[-1] < a.losses[0]


def test_a_pure_half_run_continues_exactly_and_its_params_go_back_in(backend_name, half):
    """train(traj, steps=4) after 6 steps is one run of 10, bit for bit, in the format (momentum
    buffer included); and the format's own arrays are accepted as params (they were refused: ml_dtypes'
    bfloat16 is not an np.floating)."""
    spec, params, X, y = problem("tanh", "mse", 2, seed=2)
    be = backend_or_skip(backend_name, half)
    opt = SGD(0.05, momentum=0.9)
    whole = be.train(spec, params, X, y, opt, steps=10, batch_size=8)
    first = be.train(spec, params, X, y, opt, steps=6, batch_size=8)
    joined = be.train(spec, first, X, y, opt, steps=4, batch_size=8)
    assert all(np.array_equal(p, q) for p, q in zip(tree_leaves(whole.params), tree_leaves(joined.params)))
    loss, _ = be.loss_and_grads(spec, whole.params, X, y)
    assert np.isfinite(float(loss))


def test_pure_float16_says_when_its_gradients_underflow_and_what_fixes_it():
    spec, params, X, y = problem("tanh", "mse", 2)
    tiny = map_params(lambda a: a * 1e-4, params)  # gradients of ~1e-9: below float16's smallest subnormal
    with pytest.warns(UserWarning, match="underflow to 0 in float16.*precision='mixed'.*DynamicLossScale"):
        get_backend("numpy", "float16").train(spec, tiny, X, y * 1e-4, SGD(0.1), steps=1)


def test_an_unknown_dtype_names_every_choice():
    with pytest.raises(ValueError, match="'float64', 'float32', 'bfloat16', 'float16'; got 'float8'"):
        get_backend("numpy", "float8")


# ---- mixed precision: float32 master weights, half-format compute ----


def get_backend_or_skip(name: str, dtype: str, precision: str):
    from backends import BackendUnavailable

    try:
        return get_backend(name, dtype, precision=precision)
    except BackendUnavailable as e:
        pytest.skip(f"{name} backend not installed: {e}")


def test_mixed_precision_returns_float32_and_computes_in_the_half_format(backend_name, half):
    """Params, gradients and logits come back float32; the numbers are the half format's (the same
    computation as the pure half backend, within its tolerance), not float32's."""
    spec, params, X, y = problem("tanh", "mse", 2, seed=2)
    be = get_backend_or_skip(backend_name, half, "mixed")
    logits = be.forward(spec, params, X)
    loss, grads = be.loss_and_grads(spec, params, X, y)
    assert logits.dtype == np.float32 and all(g.dtype == np.float32 for g in tree_leaves(grads))
    pure = get_backend(backend_name, half).forward(spec, params, X).astype(np.float32)
    assert closeness(logits, pure, tolerance(half, "forward")).ok
    f32 = get_backend(backend_name, "float32").forward(spec, params, X)
    assert not closeness(logits, f32, tolerance("float32", "forward")).ok  # half-format numbers
    assert "precision='mixed'" in repr(be)


def test_mixed_precision_gradients_agree_in_every_pair(pair, half):
    spec, params, X, y = problem("gelu", "softmax_ce", 4, seed=1)
    (la, ga), (lb, gb) = (get_backend_or_skip(name, half, "mixed").loss_and_grads(spec, params, X, y) for name in pair)
    result = closeness(ga, gb, tolerance(half, "grads"))
    assert result.ok, result.message(f"mixed {half} grads, {pair}")


def test_the_mixed_update_is_float32(backend_name, half):
    """One SGD step moves the float32 params by exactly lr·g in float32 (NumPy bit for bit; the others
    within float32's tolerance), g the mixed gradients: a half-format update would round to ~ε."""
    spec, params, X, y = problem("tanh", "mse", 2, seed=4)
    be = get_backend_or_skip(backend_name, half, "mixed")
    _, grads = be.loss_and_grads(spec, params, X, y)
    stepped = be.train(spec, params, X, y, SGD(0.1), steps=1).params
    want = [{k: layer[k].astype(np.float32) - np.float32(0.1) * g[k] for k in "Wb"} for layer, g in zip(params, grads)]
    assert all(a.dtype == np.float32 for a in tree_leaves(stepped))
    if backend_name == "numpy":
        assert all(np.array_equal(a, b) for a, b in zip(tree_leaves(stepped), tree_leaves(want)))
    else:
        assert closeness(stepped, want, tolerance("float32", "trajectory_sgd")).ok


@pytest.mark.parametrize("opt", [SGD(0.05, momentum=0.9), Adam(0.01)], ids=["momentum", "Adam"])
def test_mixed_precision_trajectories_agree_in_every_pair(pair, half, opt):
    spec, params, X, y = problem("tanh", "mse", 2, seed=1)
    a, b = (
        get_backend_or_skip(name, half, "mixed").train(
            spec, params, X, y, opt, steps=100, batch_size=8, record_every=20
        )
        for name in pair
    )
    assert a.meta["dtype"] == "float32" and a.meta["precision"] == "mixed" and a.meta["compute_dtype"] == half
    result = compare(a, b, tolerance(half, "trajectory_mixed"))
    assert result.ok, result.message(f"mixed {half} {opt.describe()}, {pair}")
    assert a.losses[-1] < a.losses[0]


def test_a_mixed_run_continues_only_in_mixed_precision(tmp_path):
    spec, params, X, y = problem("tanh", "mse", 2)
    be = get_backend("numpy", "bfloat16", precision="mixed")
    one = be.train(spec, params, X, y, Adam(0.01), steps=20)
    back = Trajectory.load(be.train(spec, params, X, y, Adam(0.01), steps=12).save(tmp_path / "mixed"))
    two = be.train(spec, back, X, y, Adam(0.01), steps=8)
    assert all(np.array_equal(u, v) for u, v in zip(tree_leaves(one.params), tree_leaves(two.params)))
    with pytest.raises(ValueError, match="precision='pure' .* differs from the trajectory's precision='mixed'"):
        get_backend("numpy", "float32").train(spec, back, X, y, Adam(0.01), steps=8)


def test_mixed_precision_needs_a_half_format_and_a_known_precision():
    with pytest.raises(ValueError, match="precision='mixed' computes in a half format.*got dtype='float32'"):
        get_backend("numpy", "float32", precision="mixed")
    with pytest.raises(ValueError, match="precision must be one of 'pure', 'mixed'; got 'amp'"):
        get_backend("numpy", "bfloat16", precision="amp")


# ---- dynamic loss scaling (float16) ----


def test_the_loss_scale_rule_grows_after_good_steps_and_backs_off_on_overflow():
    from shared.precision import DynamicLossScale, ScaleTracker

    rule = DynamicLossScale(init=8.0, growth=2.0, backoff=0.5, interval=3)
    assert rule.update(8.0, 0, True) == (8.0, 1) and rule.update(8.0, 2, True) == (16.0, 0)
    assert rule.update(8.0, 2, False) == (4.0, 0)
    tracker = ScaleTracker(rule, step=10)
    for finite in (True, False, True, True, True):
        tracker.after_step(finite)
    assert (tracker.scale, tracker.good, tracker.skipped, tracker.step) == (8.0, 0, [11], 15)
    for bad in (dict(init=0.0), dict(growth=1.0), dict(backoff=1.0), dict(interval=0)):
        with pytest.raises(ValueError, match="DynamicLossScale"):
            DynamicLossScale(**bad)


def test_loss_scaling_skips_the_same_steps_on_every_backend():
    """A scale of 2^22 overflows float16's backward (65504 is its largest number): the first steps are
    skipped, halving the scale each time, until it fits; every backend skips the same ones, leaves the
    params exactly as they were across each, records a 0 norm there, and ends at the same scale."""
    from shared.precision import DynamicLossScale

    spec, params, X, y = problem("tanh", "mse", 2, seed=1)
    rule = DynamicLossScale(init=2.0**22, interval=1000)
    runs = {}
    for name in ("numpy", "torch", "jax"):
        be = get_backend_or_skip(name, "float16", "mixed")
        runs[name] = be.train(spec, params, X, y, Adam(0.01), steps=30, batch_size=8, loss_scale=rule, record_every=1)
    for name, traj in runs.items():
        scale = traj.meta["loss_scale"]
        assert scale["skipped"] == [0, 1, 2, 3, 4, 5] and scale["scale"] == 2.0**16, (name, scale)
        for s in scale["skipped"]:
            assert traj.grad_norms[s] == 0 and all(
                np.array_equal(a, b) for a, b in zip(tree_leaves(traj.snapshot(s)), tree_leaves(traj.snapshot(s + 1)))
            )
        assert not np.array_equal(tree_leaves(traj.snapshot(6))[0], tree_leaves(traj.snapshot(7))[0])  # then it trains
    first = runs["numpy"]
    for name, traj in runs.items():
        result = compare(first, traj, tolerance("float16", "trajectory_mixed"))
        assert result.ok, result.message(f"loss-scaled float16, numpy vs {name}")


def test_a_loss_scaled_run_continues_from_its_scale():
    from shared.precision import DynamicLossScale

    spec, params, X, y = problem("tanh", "mse", 2, seed=1)
    rule = DynamicLossScale(init=2.0**20, interval=4)
    be = get_backend("numpy", "float16", precision="mixed")
    one = be.train(spec, params, X, y, Adam(0.01), steps=24, batch_size=8, loss_scale=rule)
    two = be.train(
        spec,
        be.train(spec, params, X, y, Adam(0.01), steps=10, batch_size=8, loss_scale=rule),
        X,
        y,
        Adam(0.01),
        steps=14,
        batch_size=8,
        loss_scale=rule,
    )
    assert two.meta["loss_scale"] == one.meta["loss_scale"]  # the same skips, scale and count
    assert all(np.array_equal(a, b) for a, b in zip(tree_leaves(one.params), tree_leaves(two.params)))


def test_loss_scaling_needs_mixed_precision():
    from shared.precision import DynamicLossScale

    spec, params, X, y = problem("tanh", "mse", 2)
    with pytest.raises(ValueError, match="use precision='mixed'"):
        get_backend("numpy", "float32").train(spec, params, X, y, SGD(0.1), steps=1, loss_scale=DynamicLossScale())


def test_float16_without_loss_scaling_says_when_gradients_underflow():
    """Inputs of 1e-5 make some first-layer gradients ~3e-8, below float16's smallest subnormal (6e-8):
    they flush to 0, and train says so, naming the cure; a run whose gradients fit says nothing."""
    import warnings

    from shared.precision import DynamicLossScale

    spec, params, X, y = problem("tanh", "mse", 2, seed=1)
    be = get_backend("numpy", "float16", precision="mixed")
    with pytest.warns(UserWarning, match=r"5 of 218 gradient entries underflow to 0 in float16.*DynamicLossScale"):
        be.train(spec, params, X * 1e-5, y, SGD(0.1), steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        be.train(spec, params, X, y, SGD(0.1), steps=1)
        be.train(spec, params, X * 1e-5, y, SGD(0.1), steps=1, loss_scale=DynamicLossScale())  # scaled: fits
        get_backend("numpy", "bfloat16", precision="mixed").train(spec, params, X * 1e-5, y, SGD(0.1), steps=1)


# ---- the GPT in mixed precision: torch.autocast's rule, in all three ----

GPT = GPTSpec(vocab_size=7, seq_len=6, d_model=8, n_heads=2, n_layers=2, d_ff=12)


def gpt_problem(activation: str = "gelu", seed: int = 0):
    from dataclasses import replace

    spec = replace(GPT, activation=activation)
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, spec.vocab_size, size=(4, spec.seq_len + 1))
    params = init_params(spec, seed=seed)
    for p in params["blocks"]:  # init_params zeros the biases and ones the gains: move them, so they count
        for part in ("attn", "mlp", "ln1", "ln2"):
            for k, v in p[part].items():
                p[part][k] = v + 0.1 * rng.normal(size=v.shape)
    return spec, params, tokens[:, :-1], tokens[:, 1:]


@functools.cache
def gpt_results(name: str, half: str, precision: str, activation: str = "gelu"):
    """One backend's GPT logits, loss and gradients on gpt_problem (pure: the params in the format),
    computed once per test process and shared by the two pairs that backend is in (JAX's compiles are
    most of these tests' time)."""
    spec, params, X, Y = gpt_problem(activation)
    if precision == "pure":
        params = map_params(lambda a: a.astype(numpy_dtype(half)), params)
    be = get_backend_or_skip(name, half, precision)
    return (be.forward(spec, params, X), *be.loss_and_grads(spec, params, X, Y))


@functools.cache
def gpt_trained(name: str, half: str, precision: str) -> Trajectory:
    """Ten full-batch steps on gpt_problem: SGD(0.1) in mixed precision (seed 1), SGD with momentum in
    the pure format (seed 0); once per process, as gpt_results."""
    if precision == "mixed":
        spec, params, X, Y = gpt_problem(seed=1)
        opt = SGD(0.1)
    else:
        spec, params, X, Y = gpt_problem()
        opt = SGD(0.1, momentum=0.9)
    return get_backend_or_skip(name, half, precision).train(spec, params, X, Y, opt, steps=10, record_every=5)


@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_the_gpt_in_mixed_precision_agrees_in_every_pair(pair, half, activation):
    """Logits, loss and every gradient within the half format's tolerances (4ε, 8ε), float32 out."""
    (fa, la, ga), (fb, lb, gb) = (gpt_results(name, half, "mixed", activation) for name in pair)
    assert fa.dtype == fb.dtype == np.float32
    result = closeness(fa, fb, tolerance(half, "forward"))
    assert result.ok, result.message(f"mixed {half} GPT logits, {pair}")
    assert all(g.dtype == np.float32 for g in tree_leaves(ga) + tree_leaves(gb))
    assert abs(la - lb) <= 8 * float(np.finfo(numpy_dtype(half)).eps) * abs(lb)
    result = closeness(ga, gb, tolerance(half, "grads"))
    assert result.ok, result.message(f"mixed {half} GPT grads, {pair}")


def test_the_gpt_in_a_pure_half_format_agrees_in_every_pair(pair, half, activation="gelu"):
    """Everything in the format, params included: logits, loss and every gradient within 4ε and 8ε, and
    each result in the format itself (GELU, the harder activation; relu's path is the mixed GPT's and
    the MLP's). Layer norm's statistics are float32 in all three (torch's CPU
    kernel, and written out in NumPy's and JAX's gpt.py); before JAX's were, its float16 backward was
    NaN, and NumPy's bfloat16 mean summed in bfloat16."""
    (fa, la, ga), (fb, lb, gb) = (gpt_results(name, half, "pure", activation) for name in pair)
    assert fa.dtype == fb.dtype == numpy_dtype(half)
    result = closeness(fa, fb, tolerance(half, "forward"))
    assert result.ok, result.message(f"pure {half} GPT logits, {pair}")
    assert all(g.dtype == numpy_dtype(half) for g in tree_leaves(ga) + tree_leaves(gb))
    assert abs(float(la) - float(lb)) <= 8 * float(np.finfo(numpy_dtype(half)).eps) * abs(float(lb))
    result = closeness(ga, gb, tolerance(half, "grads"))
    assert result.ok, result.message(f"pure {half} GPT grads, {pair}")


def test_layer_norm_keeps_its_statistics_in_float32_in_a_half_format(backend_name, half):
    """At GPT-2's init the residual stream's variance is ~4e-4 (embeddings of std 0.02): JAX's
    autodiff of rsqrt(σ² + ε) then forms −½(σ² + ε)^(−3/2) ≈ 1e5, past float16's 65504, and every
    gradient below the last block was NaN. With float32 statistics each backend's gradients are finite
    and within the half format's 8ε of its own float64 gradients (relative to the largest)."""
    spec = GPTSpec(vocab_size=11, seq_len=6, d_model=16, n_heads=2, n_layers=2)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 11, (4, 6))
    params = init_params(spec, seed=0)  # as init_params makes them: gains 1, biases 0, std 0.02
    _, grads = backend_or_skip(backend_name, half).loss_and_grads(spec, params, X, np.roll(X, -1, axis=1))
    _, ref = get_backend(backend_name, "float64").loss_and_grads(spec, params, X, np.roll(X, -1, axis=1))
    got = np.concatenate([np.asarray(g, np.float64).ravel() for g in tree_leaves(grads)])
    want = np.concatenate([g.ravel() for g in tree_leaves(ref)])
    assert np.isfinite(got).all()
    assert np.abs(got - want).max() <= 8 * float(np.finfo(numpy_dtype(half)).eps) * np.abs(want).max()
    if backend_name == "numpy":  # the statistics themselves: float32, while y stays in the format
        from backends.numpy import gpt as ngpt

        x = rng.normal(0, 0.02, (4, 6, 16)).astype(numpy_dtype(half))
        y, (_, mu, rstd, _) = ngpt.layernorm_forward(x, np.ones(16, x.dtype), np.zeros(16, x.dtype))
        assert mu.dtype == rstd.dtype == np.float32 and y.dtype == x.dtype


def test_the_gpt_trains_in_a_pure_half_format_alike_in_every_pair(pair, half):
    """Ten full-batch SGD steps with momentum, params and buffers in the format: every pair within
    trajectory_sgd (measured 0.6ε bfloat16, 1.0ε float16); 20 steps part further (19ε, float16 plain
    SGD), as for the MLP."""
    a, b = (gpt_trained(name, half, "pure") for name in pair)
    assert all(p.dtype == numpy_dtype(half) for p in tree_leaves(a.params))
    result = compare(a, b, trajectory_tolerance(half, SGD(0.1, momentum=0.9)))
    assert result.ok, result.message(f"pure {half} GPT, {pair}")
    assert a.losses[-1] < a.losses[0]


def test_the_mixed_gpt_computes_in_the_half_format_near_float64(backend_name, half):
    """Half-format numbers (beyond float32's tolerance of the float32 run), within the half format's
    tolerance of float64's: the casts are where they should be, not everywhere or nowhere."""
    spec, params, X, Y = gpt_problem()
    mixed = get_backend_or_skip(backend_name, half, "mixed").forward(spec, params, X)
    f32 = get_backend(backend_name, "float32").forward(spec, params, X)
    f64 = get_backend(backend_name, "float64").forward(spec, params, X)
    assert not closeness(mixed, f32, tolerance("float32", "forward")).ok
    assert closeness(mixed, f64, tolerance(half, "forward")).ok


def test_numpys_mixed_gpt_keeps_the_residual_stream_in_float32(half):
    """torch.autocast's rule, by hand: the linears and the attention in the half format (q, P, the
    MLP's hidden activations), the embeddings, the residual stream and the layer norms in float32."""
    from backends.numpy import gpt as ng

    spec, params, X, _ = gpt_problem()
    half_params = ng.cast_linears(map_params(lambda a: a.astype(np.float32), params), numpy_dtype(half))
    logits, (_, blocks, lnf, h) = ng.gpt_forward(spec, half_params, X)
    ln1, attn, ln2, mlp = blocks[0]
    assert logits.dtype == numpy_dtype(half) and h.dtype == np.float32  # the head is a linear; ln_f is not
    assert ln1[0].dtype == ln2[0].dtype == np.float32  # the residual stream x, into each layer norm
    x, q, k, v, P, concat, _ = attn
    assert x.dtype == np.float32 and q.dtype == P.dtype == concat.dtype == numpy_dtype(half)
    assert mlp[1].dtype == mlp[2].dtype == numpy_dtype(half)  # z = x·W1 + b1 and act(z)
    assert half_params["tok_emb"].dtype == half_params["blocks"][0]["ln1"]["g"].dtype == np.float32


def test_mixed_precision_gpt_trajectories_agree_in_every_pair(pair, half):
    """Ten full-batch SGD steps, every pair within trajectory_mixed. Not Adam: the GPT's attn.bk has a
    true gradient of 0, and Adam turns each backend's rounding noise there into full steps (as in
    float32: test_transformer.py). Not longer runs: measured over 20 minibatch steps (seed 1, lr 0.1),
    every backend drifts 0.6–6 % (of max|θ|) from its own float64 run and the pairs end as far apart,
    the half format's per-step rounding grown by training, not a framework's difference."""
    a, b = (gpt_trained(name, half, "mixed") for name in pair)
    assert a.meta["precision"] == "mixed" and all(p.dtype == np.float32 for p in tree_leaves(a.params))
    result = compare(a, b, tolerance(half, "trajectory_mixed"))
    assert result.ok, result.message(f"mixed {half} GPT, {pair}")
    assert a.losses[-1] < a.losses[0]


def test_the_mixed_gpt_trains_loss_scaled_in_float16_skipping_the_same_steps():
    """float16 GPT with dynamic loss scaling from 2^24: every backend skips the same first steps (the
    scaled backward overflows float16) and then trains, its params float32."""
    from shared.precision import DynamicLossScale

    spec, params, X, Y = gpt_problem(seed=2)
    rule = DynamicLossScale(init=2.0**24, interval=1000)
    runs = {}
    for name in ("numpy", "torch", "jax"):
        be = get_backend_or_skip(name, "float16", "mixed")
        runs[name] = be.train(spec, params, X, Y, SGD(0.1), steps=12, loss_scale=rule, record_every=1)
    skipped = {name: traj.meta["loss_scale"]["skipped"] for name, traj in runs.items()}
    assert len(set(map(tuple, skipped.values()))) == 1, skipped
    assert skipped["numpy"] == list(range(len(skipped["numpy"]))) and skipped["numpy"], skipped  # the first ones
    for name, traj in runs.items():
        first_applied = len(skipped[name])
        assert all(np.array_equal(a, b) for a, b in zip(tree_leaves(traj.snapshot(0)), tree_leaves(traj.snapshot(1))))
        assert not np.array_equal(tree_leaves(traj.params)[0], tree_leaves(traj.snapshot(first_applied))[0]), name
