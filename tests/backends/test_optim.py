"""Optimizer descriptions are validated, and every backend's optimizer follows the documented update
rule: each is checked against two steps computed by hand from the NumPy gradients.

Deliberate bugs these catch: Adam with eps inside the square root, a missing bias correction,
momentum written as v ← μv + (1 − μ)g, weight decay applied after the momentum buffer."""

import numpy as np
import pytest

from backends import get_backend
from backends.numpy import optim as numpy_optim
from shared.optim import SGD, Adam, AdamW, Optimizer
from shared.params import map_params
from shared.spec import MLPSpec
from shared.tolerances import closeness, tolerance
from shared.validation import numpy_dtype
from tests.helpers import make_problem


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: SGD(lr=0), r"SGD.lr must be a finite number > 0; got 0"),
        (lambda: SGD(lr=-0.1), r"SGD.lr must be a finite number > 0; got -0.1"),
        (lambda: SGD(lr=float("nan")), r"SGD.lr must be a finite number > 0; got nan"),
        (lambda: Adam(lr=float("inf")), r"Adam.lr must be a finite number > 0; got inf"),
        (lambda: SGD(lr="0.1"), r"SGD.lr must be a finite number > 0; got '0.1'"),
        (lambda: SGD(lr=0.1, momentum=1.0), r"SGD.momentum must be in \[0, 1\); got 1.0"),
        (lambda: SGD(lr=0.1, momentum=-0.5), r"SGD.momentum must be in \[0, 1\); got -0.5"),
        (lambda: SGD(lr=0.1, nesterov=True), r"nesterov=True needs a momentum > 0"),
        (lambda: SGD(lr=0.1, weight_decay=-1), r"SGD.weight_decay must be ≥ 0; got -1"),
        (lambda: Adam(lr=0.1, beta1=1.0), r"Adam.beta1 must be in \[0, 1\); got 1.0"),
        (lambda: Adam(lr=0.1, beta2=-0.1), r"Adam.beta2 must be in \[0, 1\); got -0.1"),
        (lambda: Adam(lr=0.1, eps=0), r"Adam.eps must be a finite number > 0; got 0"),
        (lambda: AdamW(lr=0.1, eps=-1e-8), r"AdamW.eps must be a finite number > 0"),
    ],
)
def test_invalid_optimizer_settings_name_the_field(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_descriptions_round_trip_and_describe_themselves():
    for opt in [SGD(lr=0.1, momentum=0.9, nesterov=True), Adam(lr=1e-3, weight_decay=0.1), AdamW(lr=0.01)]:
        assert Optimizer.from_dict(opt.to_dict()) == opt
    assert SGD(lr=0.1, momentum=0.9).describe() == "SGD(lr=0.1, momentum=0.9)"
    assert hash(Adam(lr=0.1)) == hash(Adam(lr=0.1))  # a static argument to jax.jit


def two_steps_by_hand(opt: Optimizer, spec, params, X, y):
    """The documented update rules (shared/optim.py), applied twice, with NumPy's float64 gradients."""
    numpy_be = get_backend("numpy")
    p = map_params(np.copy, params)
    state = map_params(np.zeros_like, p), map_params(np.zeros_like, p)  # momentum/m, v
    for t in (1, 2):
        _, grads = numpy_be.loss_and_grads(spec, p, X, y)
        for l in range(len(p)):
            for k in ("W", "b"):
                g, w = grads[l][k], p[l][k]
                if isinstance(opt, SGD):
                    g = g + opt.weight_decay * w
                    v = state[0][l][k] = opt.momentum * state[0][l][k] + g
                    step = (g + opt.momentum * v if opt.nesterov else v) if opt.momentum else g
                    p[l][k] = w - opt.lr * step
                else:
                    if isinstance(opt, AdamW):
                        w = w * (1 - opt.lr * opt.weight_decay)
                    else:
                        g = g + opt.weight_decay * w
                    m = state[0][l][k] = opt.beta1 * state[0][l][k] + (1 - opt.beta1) * g
                    v = state[1][l][k] = opt.beta2 * state[1][l][k] + (1 - opt.beta2) * g**2
                    m_hat, v_hat = m / (1 - opt.beta1**t), v / (1 - opt.beta2**t)
                    p[l][k] = w - opt.lr * m_hat / (np.sqrt(v_hat) + opt.eps)
    return p


@pytest.mark.parametrize(
    "opt",
    [
        SGD(lr=0.3),
        SGD(lr=0.3, momentum=0.9),
        SGD(lr=0.3, momentum=0.8, nesterov=True, weight_decay=0.1),
        Adam(lr=0.05),
        Adam(lr=0.05, beta1=0.5, beta2=0.9, eps=1e-3, weight_decay=0.1),
        AdamW(lr=0.05, weight_decay=0.2),
    ],
    ids=lambda o: o.describe(),
)
def test_two_steps_follow_the_documented_update_rule(backend_name, opt):
    spec = MLPSpec((3, 4, 2), "tanh", "mse")
    params, X, y = make_problem(spec, n=5)
    expected = two_steps_by_hand(opt, spec, params, X, y)
    traj = get_backend(backend_name).train(spec, params, X, y, optimizer=opt, steps=2)
    result = closeness(traj.params, expected, tolerance("float64", "grads"))
    assert result.ok, result.message(f"{backend_name} {opt.describe()} after 2 steps vs by hand")


@pytest.mark.parametrize("dtype_", ["float64", "float32", "float16", "bfloat16"])
def test_numpys_sgd_holds_its_rate_as_numpy_would_use_the_python_float(dtype_):
    """SGD keeps lr, μ and wd as NumPy scalars of the params' dtype, once, where `p -= lr * g` with a
    Python float would convert it at every step: the same number, bit for bit. 0.5 + 2⁻⁹ + 2⁻³⁰ sits
    just above a bfloat16 rounding tie: NumPy converts it through float32 and gets 0.5, where a direct
    cast, bfloat16(x), gets 0.50390625. A momentum that rounds to 0 in float16 still runs the momentum
    branch (its buffer holds g), as the Python float said."""
    if dtype_ == "bfloat16":
        pytest.importorskip("ml_dtypes", reason="bfloat16 needs ml_dtypes (JAX installs it)")
    dt = numpy_dtype(dtype_)
    g = (np.arange(1, 9, dtype=np.float64).reshape(2, 4) / 7).astype(dt)
    for lr in (0.1, 3e-4, 0.5 + 2**-9 + 2**-30):
        want, got = np.ones((2, 4), dt), np.ones((2, 4), dt)
        want -= lr * g
        numpy_optim.SGDUpdate(SGD(lr), [got]).step([got], [g])
        assert got.dtype == dt and np.array_equal(got, want), f"lr={lr!r}"
    tiny = numpy_optim.SGDUpdate(SGD(0.1, momentum=1e-9), [np.ones((2, 4), dt)])
    tiny.step([np.ones((2, 4), dt)], [g])
    assert np.array_equal(tiny.velocity[0], g)
