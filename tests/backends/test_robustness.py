"""Runs and inputs at the edges: updates that overflow, backends that must stop at the same step,
values that overflow only after the cast to float32, numpy scalars, JAX's global x64 flag, and the
arrays each backend hands back.

Deliberate bugs these catch: checking only the loss and gradient after a step (an update that
overflows returns ±inf params as "the last finite ones"); relu′ as dA·[Z > 0] (inf·0 = NaN where
torch and JAX select 0); JAX's exact GELU differentiated through z·Φ(z) (NaN for huge z); the JAX
backend flipping jax_enable_x64 for the whole process, or trusting a flag the user turned off; a
float32 cast without a finiteness check; numpy scalars stored as they came (not JSON-serializable);
JAX's read-only arrays passed through."""

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import scipy.special as scipy_special

from backends import available_backends, get_backend
from backends.numpy import mlp as nb
from shared.data import make_dataset, xor
from shared.optim import SGD, Adam, AdamW
from shared.params import init_params
from shared.spec import MLPSpec
from shared.training import MAX_STEPS, MinibatchSchedule, minibatch_schedule
from shared.trajectory import TrainingDiverged
from tests.conftest import backend_or_skip

XOR_SPEC = MLPSpec((2, 4, 1), "tanh", "bce")
ROOT = Path(__file__).resolve().parents[2]


def _all_finite(params):
    return all(np.isfinite(layer[k]).all() for layer in params for k in ("W", "b"))


# ---- an update that overflows is caught, and rolled back ----


def test_a_huge_learning_rate_never_returns_non_finite_params(backend_name):
    """float32 SGD at lr 3.4e38 on XOR: whatever step it stops at, the params are the last finite
    ones, exactly the params of a run that ends one step before."""
    data, params = xor(), init_params(XOR_SPEC, seed=0)
    y = data.targets(XOR_SPEC)
    be = get_backend(backend_name, "float32")
    traj = be.train(XOR_SPEC, params, data.X, y, SGD(lr=3.4e38), steps=5, on_nonfinite="stop")
    assert _all_finite(traj.params) and np.isfinite(traj.losses).all()
    if traj.diverged_at:
        shorter = be.train(XOR_SPEC, params, data.X, y, SGD(lr=3.4e38), steps=traj.diverged_at)
        for got, want in zip(traj.params, shorter.params):
            assert all(np.array_equal(got[k], want[k]) for k in ("W", "b"))


@pytest.mark.parametrize("dtype, lr", [("float32", 1e36), ("float64", 1e306)])
def test_an_update_that_overflows_the_params_is_caught_and_undone(backend_name, dtype, lr):
    """A finite loss and a finite gradient (≈ −4e3), times an enormous lr: the updated params are
    ±inf. Checking only the loss and gradient would not see it until the next step, and would return
    the ±inf params as "the last finite ones"."""
    spec = MLPSpec((1, 1), loss="mse")  # linear: z = W·x + b
    params, X, y = [{"W": np.ones((1, 1)), "b": np.zeros(1)}], np.ones((2, 1)), np.full((2, 1), 1e3)
    be = get_backend(backend_name, dtype)
    with pytest.raises(TrainingDiverged, match=r"step 0: its update made the parameters non-finite") as info:
        be.train(spec, params, X, y, SGD(lr=lr), steps=3)
    err = info.value
    assert err.quantity == "parameters" and err.trajectory.diverged_at == 0 and len(err.trajectory.losses) == 0
    assert err.trajectory.params[0]["W"][0, 0] == 1.0  # the initial params: the bad update was undone


# ---- the three backends stop at the same step ----


def test_relu_backward_selects_rather_than_multiplies():
    dA, Z = np.array([[np.inf, 2.0, -np.inf]]), np.array([[-1.0, 3.0, 0.0]])
    assert nb.relu_backward(dA, Z, nb.relu_forward(Z)).tolist() == [[0.0, 2.0, 0.0]]


def test_numpy_gelu_backward_is_finite_for_huge_finite_inputs():
    Z = np.array([[-3e26, 3e26, -40.5, 0.5]], np.float32)
    with np.errstate(over="raise", invalid="raise"):  # no overflow inside, not even a warning
        dZ = nb.gelu_backward(np.ones_like(Z), Z, nb.gelu_forward(Z))
    assert dZ.dtype == np.float32 and dZ[0, :3].tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_numpy_gelu_backward_reads_phi_back_except_where_z_is_too_small_to_divide_by(dtype):
    """NumPy's GELU backward takes Φ(Z) = A/Z from the forward's output. At Z = 0 that is 0/0, and for
    a subnormal Z the product A = Z·Φ has lost bits: there the slope must still be Φ(0) = ½, with no
    warning. Catches a threshold that rounds to 0 in the dtype (1e-30 is 0 in float16: NaN at Z = 0)
    and taking A/Z everywhere (slope 0 or 1 at a subnormal Z instead of ½)."""
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    tiny, sub = np.finfo(dtype).tiny, np.finfo(dtype).smallest_subnormal
    Z = np.array([0.0, -0.0, sub, -sub, 3 * sub, tiny, -tiny, 7 * tiny], dtype)
    with np.errstate(divide="raise", invalid="raise", over="raise"):  # (a subnormal Z·Φ may underflow)
        slope = nb.gelu_backward(np.ones_like(Z), Z, nb.gelu_forward(Z))
    assert slope.dtype == Z.dtype and slope.astype(np.float64).tolist() == [0.5] * len(Z)
    # and above the threshold it is the slope Φ(z) + z·φ(z), read back from A/Z to a few ε
    z = np.array([-3.0, -1.0, -0.25, 0.01, 0.5, 2.0, 4.0], dtype)
    slope = nb.gelu_backward(np.ones_like(z), z, nb.gelu_forward(z)).astype(np.float64)
    x = z.astype(np.float64)
    exact = scipy_special.ndtr(x) + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)
    assert np.abs(slope - exact).max() <= 4 * float(np.finfo(dtype).eps)


def test_jax_gelu_gradient_is_finite_where_autodiff_of_x_phi_gives_nan():
    pytest.importorskip("jax")
    import jax
    import jax.numpy as jnp

    from backends.jax import mlp as jax_mlp

    z = jnp.array([-3e26, 3e26, 0.5], jnp.float32)
    _, vjp = jax.vjp(jax_mlp.gelu, z)
    (dz,) = vjp(jnp.full(3, 1e17, jnp.float32))
    assert np.isfinite(np.asarray(dz)).all() and dz.dtype == jnp.float32
    assert np.asarray(dz)[:2].tolist() == [0.0, float(np.float32(1e17))]
    # and it is the exact GELU's derivative everywhere else
    zs = jnp.linspace(-6, 6, 101, dtype=jnp.float32)
    ours = jax.vmap(jax.grad(jax_mlp.gelu))(zs)
    autodiff = jax.vmap(jax.grad(lambda x: jax.nn.gelu(x, approximate=False)))(zs)
    np.testing.assert_allclose(ours, autodiff, rtol=1e-6, atol=1e-7)


DIVERGING = [
    ("gelu", "bce", "float32", 1e3),  # JAX's autodiff GELU gave NaN one step before the others
    ("relu", "softmax_ce", "float32", 1e3),
    ("relu", "bce", "float64", 1e6),
    ("gelu", "mse", "float64", 1e6),
    ("tanh", "mse", "float64", 1e6),
    ("sigmoid", "mse", "float32", 1e6),
]


@pytest.mark.parametrize("activation, loss, dtype, lr", DIVERGING, ids=["-".join(map(str, c)) for c in DIVERGING])
def test_every_backend_stops_at_the_same_step(activation, loss, dtype, lr):
    spec = MLPSpec((2, 8, 8, 3 if loss == "softmax_ce" else 1), activation, loss)
    data = make_dataset("moons", n=64, seed=0)
    params, y = init_params(spec, seed=1), data.targets(spec)
    stops = {}
    for name in available_backends():
        traj = get_backend(name, dtype).train(spec, params, data.X, y, SGD(lr), steps=100, on_nonfinite="stop")
        assert _all_finite(traj.params), name
        stops[name] = traj.diverged_at
    assert None not in stops.values() and len(set(stops.values())) == 1, stops


# ---- JAX's x64 flag: float64 means float64, and the user's own JAX is left alone ----


def test_jax_float64_ignores_the_global_flag_and_leaves_the_users_default_alone():
    pytest.importorskip("jax")
    script = """
import jax, jax.numpy as jnp, numpy as np
from backends import get_backend
from shared.params import init_params
from shared.spec import MLPSpec
spec = MLPSpec((3, 5, 2), "gelu", "mse")
params = init_params(spec, seed=0)
X = np.random.default_rng(0).normal(size=(4, 3))
ref = get_backend("numpy").forward(spec, params, X)
be = get_backend("jax", "float64")
out = be.forward(spec, params, X)
assert jnp.ones(1).dtype == jnp.float32, "using the backend flipped the user's default dtype"
assert out.dtype == np.float64 and np.abs(out - ref).max() < 1e-12, np.abs(out - ref).max()
jax.config.update("jax_enable_x64", False)      # the user turns x64 off: float64 must stay float64
out = be.forward(spec, params, X)
assert out.dtype == np.float64 and np.abs(out - ref).max() < 1e-12, np.abs(out - ref).max()
jax.config.update("jax_enable_x64", True)       # the user turns x64 on: float32 must stay float32
out32 = get_backend("jax", "float32").forward(spec, params, X)
_, grads = get_backend("jax", "float32").loss_and_grads(spec, params, X, np.zeros((4, 2)))
assert out32.dtype == np.float32 and grads[0]["W"].dtype == np.float32
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


# ---- bad inputs that used to end deep or silent ----


@pytest.mark.parametrize("call", ["loss_and_grads", "train"])
def test_y_none_is_refused_by_name(backend_name, call):
    data, params = xor(), init_params(XOR_SPEC, seed=0)
    be = get_backend(backend_name)
    args = (XOR_SPEC, params, data.X, None) + ((SGD(0.1), 2) if call == "train" else ())
    with pytest.raises(TypeError, match=r"y is required: the targets for loss='bce'.*got None"):
        getattr(be, call)(*args)


def test_numpy_scalars_are_normalized_so_runs_save_and_torch_accepts_them(backend_name, tmp_path):
    data, params = xor(), init_params(XOR_SPEC, seed=np.int64(0))
    opt = Adam(lr=np.float32(0.01), beta1=np.float32(0.9), beta2=np.float64(0.99))
    assert type(opt.lr) is float and type(opt.beta1) is float
    traj = get_backend(backend_name).train(
        XOR_SPEC,
        params,
        data.X,
        data.targets(XOR_SPEC),
        opt,
        steps=np.int64(6),
        batch_size=np.int32(2),
        seed=np.uint8(1),
        record_every=np.int16(3),
    )
    assert len(traj.losses) == 6 and type(traj.meta["steps"]) is int and type(traj.meta["record_every"]) is int
    traj.save(tmp_path / "run.npz")
    assert json.loads(json.dumps(traj.meta))["batch_size"] == 2


def test_fractions_become_floats():
    assert SGD(Fraction(1, 10)).lr == 0.1 and type(AdamW(lr=Fraction(1, 2)).lr) is float


def test_an_absurd_number_of_steps_is_refused_at_once():
    data, params = xor(), init_params(XOR_SPEC, seed=0)
    with pytest.raises(ValueError, match=rf"steps must be at most {MAX_STEPS:,}; got 1,000,000,000,000"):
        get_backend("numpy").train(XOR_SPEC, params, data.X, data.targets(XOR_SPEC), SGD(0.1), 10**12, batch_size=2)


def test_snapshots_that_would_not_fit_in_memory_are_refused():
    spec = MLPSpec((100, 1000, 100))
    params = init_params(spec, seed=0)
    X, y = np.zeros((2, 100)), np.zeros((2, 100))
    with pytest.raises(ValueError, match=r"record_every=1 would keep 10,000,000 snapshots .* record less often"):
        get_backend("numpy").train(spec, params, X, y, SGD(0.1), 10**7, record_every=1)


def test_the_schedule_drawn_chunk_by_chunk_is_the_schedule_drawn_at_once():
    whole = minibatch_schedule(10, 3, 100, seed=5)
    schedule = MinibatchSchedule(10, 3, seed=5)
    chunks = [schedule.rows(start, min(start + 7, 100)) for start in range(0, 100, 7)]
    assert np.array_equal(np.concatenate(chunks), whole)
    assert len(schedule._epochs) <= 3  # it keeps only the epochs a chunk touches
    assert np.array_equal(schedule.rows(3, 50), whole[3:50])  # going back draws again from the seed


def test_a_minibatch_run_is_the_same_whether_chunked_or_not(backend_name):
    """Snapshots cut the run into chunks of record_every steps; the batches must not notice."""
    spec = MLPSpec((2, 5, 1), "tanh", "bce")
    data = make_dataset("moons", n=20, seed=0)
    params, y = init_params(spec, seed=0), data.targets(spec)
    be = get_backend(backend_name)
    one = be.train(spec, params, data.X, y, SGD(0.3), steps=23, batch_size=6, seed=4)
    chunked = be.train(spec, params, data.X, y, SGD(0.3), steps=23, batch_size=6, seed=4, record_every=4)
    np.testing.assert_allclose(one.losses, chunked.losses, rtol=1e-12)


@pytest.mark.parametrize(
    "where, match",
    [
        ("X", r"X has a value that overflows float32 \(largest finite 3.4e\+38\): 1e\+39 at index \(1, 0\)"),
        ("W", r"params\[0\]\['W'\] has a value that overflows float32.*1e\+39 at index \(0, 2\)"),
        ("y", r"y has a value that overflows float32.*-1e\+39 at index \(2, 0\)"),
    ],
)
def test_values_that_overflow_only_after_the_cast_are_named(backend_name, where, match):
    spec = MLPSpec((2, 4, 1), "tanh", "mse")
    params, X, y = init_params(spec, seed=0), np.ones((3, 2)), np.zeros((3, 1))
    if where == "X":
        X[1, 0] = 1e39
    elif where == "W":
        params[0]["W"][0, 2] = 1e39
    else:
        y[2, 0] = -1e39
    be = get_backend(backend_name, "float32")
    with pytest.raises(ValueError, match=match):
        be.loss_and_grads(spec, params, X, y)
    with pytest.raises(ValueError, match=match):
        be.train(spec, params, X, y, SGD(0.1), 2)


@pytest.mark.parametrize(
    "opt, match",
    [
        (SGD(lr=3.5e38), r"SGD.lr=3.5e\+38 overflows float32"),
        (SGD(lr=0.1, weight_decay=3.5e38), r"SGD.weight_decay=3.5e\+38 overflows float32"),
        (Adam(lr=1e-50), r"Adam.lr=1e-50 rounds to 0 in float32"),
    ],
)
def test_hyperparameters_the_dtype_cannot_hold_are_refused(backend_name, opt, match):
    data, params = xor(), init_params(XOR_SPEC, seed=0)
    with pytest.raises(ValueError, match=match):
        get_backend(backend_name, "float32").train(
            XOR_SPEC, params, data.X, data.targets(XOR_SPEC), opt, 2, on_nonfinite="stop"
        )


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: MLPSpec((2, 4, 1), activation=None), TypeError, r"activation must be a name .*got None"),
        (lambda: MLPSpec((2, 4, 1), activation=5), TypeError, r"activation must be a name .*got 5"),
        (lambda: MLPSpec((2, 4, 1), activation=np.array("tanh")), TypeError, r"activation must be a name"),
        (lambda: MLPSpec((2, 4, 1), activation=[None]), ValueError, r"activation must be one of .*got None"),
        (lambda: MLPSpec((2, 4, 1), loss=np.array("mse")), ValueError, r"loss must be one of .*got array"),
        (lambda: MLPSpec({2, 4, 1}), TypeError, r"sizes must be a list or tuple .*got \{"),
        (
            lambda: get_backend(["numpy"]),
            ValueError,
            r"backend must be one of 'numpy', 'torch', 'jax'; got \['numpy'\]",
        ),
        (lambda: get_backend("numpy", dtype=np.array("float32")), ValueError, r"dtype must be one of"),
    ],
)
def test_malformed_specs_backends_and_dtypes_get_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_sizes_as_a_numpy_array_still_work():
    assert MLPSpec(np.array([2, 4, 1])).sizes == (2, 4, 1)


# ---- every backend hands back arrays the caller owns ----


def test_returned_arrays_are_writable_on_every_backend(backend_name, dtype):
    data, params = xor(), init_params(XOR_SPEC, seed=0)
    be = backend_or_skip(backend_name, dtype)
    out = be.forward(XOR_SPEC, params, data.X)
    out *= 2
    _, grads = be.loss_and_grads(XOR_SPEC, params, data.X, data.targets(XOR_SPEC))
    grads[0]["W"] *= 0.5
    traj = be.train(XOR_SPEC, params, data.X, data.targets(XOR_SPEC), SGD(0.1), 2)
    traj.params[0]["W"] *= 0.5
