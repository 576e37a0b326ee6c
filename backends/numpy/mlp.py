"""NumPy MLP: backpropagation written out by hand.

Read this file first, top to bottom. Every building block keeps its forward and its backward side by side,
and each backward's docstring states the gradient it computes — the chain rule, one piece at a time:

0. where low precision sums  matmul, total, mean: in float32, rounded once (bfloat16, float16)
1. the linear layer          Z = X·W + b
2. the activations           A = f(Z)
3. the losses                L = loss(y_hat, y)
4. the whole network         forward: layer after layer; backward: the same layers in reverse
5. loss and gradients        forward, the loss, then backward from dL/dy_hat to every weight

Shapes: n is the batch size; fan_in/fan_out are a layer's input/output widths. Imports numpy, and
scipy.special for the two functions NumPy lacks: the sigmoid σ (expit) and Φ, the normal CDF inside GELU.
Then gpt.py (the tiny GPT, built from these pieces), optim.py (the update rules) and train.py (one
training step). backend.py is the engine that runs them fast; nothing in it is needed to learn.
Compare with backends/torch/mlp.py (autograd does step 4's backward) and backends/jax/mlp.py (jax.grad).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.special

from shared.params import Params
from shared.spec import MLPSpec

# ============================================================================ 0. where low precision accumulates
# In bfloat16 and float16 every sum of many terms (a matrix product, a sum over the batch, a mean) is
# accumulated in float32 and rounded to the half format once, as torch's and XLA's CPU kernels do.
# NumPy's float16 already sums in float32; ml_dtypes' bfloat16 does not: its sum() adds in bfloat16
# (100,000 terms drift by ~5·10⁴ where float32 stays within ~40), and its matmul returns float32,
# which would leave the rest of the network in float32. In float32 and float64 these are exactly the
# plain @, sum and mean.


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b; in a half format, the products summed in float32, the result rounded once."""
    if a.itemsize >= 4:
        return a @ b
    return (a.astype(np.float32) @ b.astype(np.float32)).astype(a.dtype)


def total(a: np.ndarray, axis=None, keepdims: bool = False) -> np.ndarray:
    """Σ a over `axis`; in a half format accumulated in float32 and rounded once."""
    if a.itemsize >= 4:
        return a.sum(axis=axis, keepdims=keepdims)
    return a.astype(np.float32).sum(axis=axis, keepdims=keepdims).astype(a.dtype)


def mean(a: np.ndarray) -> np.ndarray:
    """The mean of every entry; in a half format accumulated and divided in float32, rounded once."""
    if a.itemsize >= 4:
        return np.mean(a)
    return (a.astype(np.float32).sum() / a.size).astype(a.dtype)


# ============================================================================ 1. linear layer


def linear_forward(X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Z = X·W + b."""
    return matmul(X, W) + b  # (n, fan_in) @ (fan_in, fan_out) + (fan_out,) -> (n, fan_out)


def linear_backward(dZ: np.ndarray, X: np.ndarray, W: np.ndarray, need_dX: bool = True):
    """Given dL/dZ, return (dL/dX, dL/dW, dL/db):

    dL/dX = dL/dZ · Wᵀ        each input feeds every output through W
    dL/dW = Xᵀ · dL/dZ        summed over the batch by the matrix product
    dL/db = Σₙ dL/dZ          the bias is added to every row

    The first layer's input is the data, which needs no gradient: need_dX=False skips that matmul
    (torch and JAX skip it too, since nothing asks for it).
    """
    dX = matmul(dZ, W.T) if need_dX else None  # (n, fan_out) @ (fan_out, fan_in) -> (n, fan_in)
    dW = matmul(X.T, dZ)  # (fan_in, n) @ (n, fan_out)      -> (fan_in, fan_out)
    db = total(dZ, axis=0)  # (n, fan_out)                  -> (fan_out,)
    return dX, dW, db


# ============================================================================ 2. activations
# forward(Z) -> A;  backward(dA, Z, A) -> dZ = dA · f'(Z), elementwise. Every array is (..., width), any
# leading shape: (n, width) in the MLP, (n, t, d_ff) in the GPT's MLP (gpt.py).


def identity_forward(Z):
    """A = Z."""
    return Z


def identity_backward(dA, Z, A):
    """dL/dZ = dL/dA."""
    return dA


def tanh_forward(Z):
    """A = tanh(Z)."""
    return np.tanh(Z)


def tanh_backward(dA, Z, A):
    """dL/dZ = dL/dA · (1 − tanh²Z) = dA · (1 − A²): the forward output is all we need."""
    return dA * (1 - A * A)


def sigmoid_forward(Z):
    """A = σ(Z) = 1 / (1 + e^−Z): scipy's expit, NumPy having no sigmoid of its own. It computes this
    very formula, one element at a time in compiled code, within about 2 ε of the true σ in both tails
    (tests/backends/test_numerics.py). For very negative Z, e^−Z overflows to inf and 1/(1 + inf) is a
    clean 0, no NaN; in float32 that happens below Z ≈ −88.7, where σ is already subnormal (below
    1.2e-38), so only σ's last, subnormal stretch reads 0. The tempting ½(1 + tanh(Z/2)) would
    avoid the overflow but not the cancellation: 1 + tanh adds 1 to a number near −1, so in float32 it
    is 2e-4 off at Z = −10 and exactly 0 below Z ≈ −18, where σ is 2e-9. One call where the same
    formula in NumPy's own functions (stable: e = e^−|Z|, then 1/(1 + e) or e/(1 + e)) takes seven:
    on a small network the sigmoid was a sixth of the training step."""
    A = scipy.special.expit(Z)
    return A if Z.itemsize >= 4 else A.astype(Z.dtype)  # (a half format comes back as float64)


def sigmoid_backward(dA, Z, A):
    """dL/dZ = dL/dA · σ(Z)(1 − σ(Z)) = dA · A(1 − A)."""
    return dA * A * (1 - A)


def relu_forward(Z):
    """A = max(Z, 0)."""
    return np.maximum(Z, 0)


def relu_backward(dA, Z, A):
    """dL/dZ = dL/dA · [Z > 0]. At exactly Z = 0 we take the derivative as 0, as torch and JAX do.
    Selected with a mask rather than multiplied by it: where dA overflowed to inf and Z ≤ 0, the
    product would be inf·0 = NaN, and torch and JAX (which select too) give 0."""
    return np.where(Z > 0, dA, 0)


def _std_normal_cdf(Z):
    """Φ(Z), the standard normal CDF, in Z's dtype: scipy's ndtr, which is ½·erfc(−Z/√2) computed in
    float64 (its float32 loop rounds once at the end). Not ½(1 + erf(Z/√2)): for negative Z that adds
    1 to a number near −1 and keeps only the absolute precision of 1, so it is 1.8 % off at Z = −8 in
    float64 and exactly 0 below Z ≈ −8.3 (−5.5 in float32), where erfc's small value is exact."""
    return scipy.special.ndtr(Z).astype(Z.dtype, copy=False)  # (a half format comes back as float64)


def gelu_forward(Z):
    """A = Z·Φ(Z), the exact GELU (torch's default). Not the tanh approximation, which is
    jax.nn.gelu's default and differs by up to ~5e-4."""
    return Z * _std_normal_cdf(Z)


def gelu_backward(dA, Z, A):
    """dL/dZ = dL/dA · (Φ(Z) + Z·φ(Z)), with φ(Z) = e^(−Z²/2) / √(2π) the normal density.
    Φ(Z) is read back from the forward's output, Φ = A/Z, as tanh's backward reads 1 − A²: the erf
    is most of GELU's cost, and the forward already paid for it. Below 8× the dtype's smallest normal
    number (|Z| < 8·tiny), Φ(Z) is ½ to every digit the dtype holds, while A/Z would be 0/0 or lose
    the bits of a subnormal A: there we take ½. (Above it, A = Z·Φ is normal wherever |Z| ≤ 1.)
    φ is evaluated at Z clipped to ±40, where it is already exactly 0 in both dtypes: Z² cannot
    overflow, and Z·φ(Z) is a clean 0 for any finite Z."""
    tiny = np.finfo(Z.dtype).tiny  # the smallest normal number, in Z's dtype
    Phi = np.divide(A, Z, out=np.full_like(Z, 0.5), where=np.abs(Z) >= 8 * tiny)  # Φ(Z), shaped like Z
    Zc = np.clip(Z, -40, 40).astype(Z.dtype, copy=False)  # (ml_dtypes' clip of a bfloat16 returns float32)
    phi = np.exp(-0.5 * Zc * Zc) / math.sqrt(2 * math.pi)
    return dA * (Phi + Z * phi)


ACTIVATIONS = {
    "identity": (identity_forward, identity_backward),
    "tanh": (tanh_forward, tanh_backward),
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "relu": (relu_forward, relu_backward),
    "gelu": (gelu_forward, gelu_backward),
}

# ============================================================================ 3. losses
# forward(y_hat, y) -> L, the mean over the batch;  backward(y_hat, y) -> dL/dy_hat, shaped like y_hat.
# y_hat is always the logits (n, k); the losses apply sigmoid / softmax themselves, stably.


def mse_forward(y_hat, y):
    """L = mean over all n·k elements of (y_hat − y)²."""
    return mean((y_hat - y) ** 2)


def mse_backward(y_hat, y):
    """dL/dy_hat = 2(y_hat − y) / (n·k): the mean divides by every element, not only by n."""
    return 2 * (y_hat - y) / y_hat.size


def bce_forward(z, y):
    """L = mean of −y·log σ(z) − (1 − y)·log(1 − σ(z)), written in the stable form
    max(z, 0) − z·y + log(1 + e^−|z|), which never takes the log of 0 nor overflows exp."""
    return mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))


def bce_backward(z, y):
    """dL/dz = (σ(z) − y) / n: the sigmoid and the log cancel into this neat difference."""
    return (sigmoid_forward(z) - y) / len(z)


def _log_softmax(z):
    """log softmax(z) by log-sum-exp: subtract the row max before exp, so nothing overflows."""
    z_max = z.max(axis=1, keepdims=True)  # (n, 1)
    shifted = z - z_max  # (n, k), every entry ≤ 0
    return shifted - np.log(total(np.exp(shifted), axis=1, keepdims=True))  # (n, k)


def softmax_ce_forward(z, y):
    """L = mean over the batch of −log softmax(z)[y]: the log-probability of the true class."""
    return -mean(_log_softmax(z)[np.arange(len(z)), y])


def softmax_ce_backward(z, y):
    """dL/dz = (softmax(z) − onehot(y)) / n."""
    dz = np.exp(_log_softmax(z))  # (n, k), softmax probabilities
    dz[np.arange(len(z)), y] -= 1
    return dz / len(z)


LOSSES = {
    "mse": (mse_forward, mse_backward),
    "bce": (bce_forward, bce_backward),
    "softmax_ce": (softmax_ce_forward, softmax_ce_backward),
}

# ============================================================================ 4. the network


def mlp_forward(spec: MLPSpec, params: Params, X: np.ndarray):
    """Run the layers in order. Returns the logits and, for backward, each layer's (input, Z, A)."""
    cache = []
    A = X  # (n, sizes[0])
    last = spec.n_layers - 1  # the output layer
    for l, layer in enumerate(params):
        Z = linear_forward(A, layer["W"], layer["b"])  # (n, sizes[l+1])
        A_in = A
        if l < last:  # hidden layer: activation; the output layer stays linear
            activation_forward, _ = ACTIVATIONS[spec.activations[l]]
            A = activation_forward(Z)  # (n, sizes[l+1])
        else:
            A = Z
        cache.append((A_in, Z, A))
    return A, cache  # A: (n, sizes[-1]) logits


def mlp_backward(spec: MLPSpec, params: Params, cache, dY: np.ndarray) -> Params:
    """The chain rule, from the loss back to the first layer: for each layer in reverse,
    dL/dZ = activation_backward(dL/dA), then linear_backward gives dL/dW, dL/db and dL/d(input),
    which is the next (earlier) layer's dL/dA."""
    grads: Params = [{} for _ in params]
    dA = dY  # (n, sizes[-1])
    last = spec.n_layers - 1  # the output layer
    for l in reversed(range(spec.n_layers)):
        A_in, Z, A = cache[l]
        if l < last:
            _, activation_backward = ACTIVATIONS[spec.activations[l]]
            dZ = activation_backward(dA, Z, A)  # (n, sizes[l+1])
        else:
            dZ = dA
        dA, grads[l]["W"], grads[l]["b"] = linear_backward(dZ, A_in, params[l]["W"], need_dX=l > 0)
    return grads


# ============================================================================ 5. loss and gradients


def loss_and_grads(spec: MLPSpec, params: Params, X: np.ndarray, y: np.ndarray, need_loss: bool = True):
    """Forward, loss, then backprop from dL/dy_hat back to every weight. need_loss=False skips the
    loss value (returned as None): backprop starts from dL/dy_hat, which does not need it, so a
    training step whose loss nobody records saves that work."""
    loss_forward, loss_backward = LOSSES[spec.loss]
    y_hat, cache = mlp_forward(spec, params, X)  # (n, k)
    loss = loss_forward(y_hat, y) if need_loss else None
    dY = loss_backward(y_hat, y)  # (n, k): dL/dy_hat, where backprop starts
    return loss, mlp_backward(spec, params, cache, dY)
