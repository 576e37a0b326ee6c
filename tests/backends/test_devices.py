"""The device option: get_backend("torch", device="cuda"), get_backend("jax", device="gpu").

On a machine with a GPU, every accelerator device that is present is checked against the NumPy
backend on the CPU, in both dtypes, for the MLP and the GPT: forward, gradients and a training run.
float32 must mean float32 there: TF32 matmuls (10 mantissa bits) would fail the float32 tolerance,
which is how these tests catch TF32 left on. Where no GPU is present (CI), they skip with a reason,
and the errors for asking for one are tested instead.
"""

import numpy as np
import pytest

from backends import BACKENDS, DeviceUnavailable, available_backends, available_devices, get_backend
from shared.data import xor
from shared.optim import SGD, Adam
from shared.params import init_params
from shared.spec import GPTSpec, MLPSpec
from shared.tolerances import closeness, tolerance
from shared.trajectory import compare
from tests.helpers import make_problem

ACCELERATORS = [("torch", "cuda"), ("jax", "gpu")]
SPEC = MLPSpec((3, 16, 8, 2), ("tanh", "gelu"), "mse")
GPT = GPTSpec(vocab_size=7, seq_len=6, d_model=8, n_heads=2, n_layers=1)


@pytest.fixture(params=ACCELERATORS, ids=[f"{b}-{d}" for b, d in ACCELERATORS])
def accelerator(request):
    name, device = request.param
    if name not in available_backends():
        pytest.skip(f"{name} is not installed here")
    if device not in available_devices(name):
        pytest.skip(f"no {device} device for {name} on this machine (CI has no GPU); checked where one exists")
    return name, device


def test_cpu_is_the_default_and_is_always_there():
    for name in available_backends():
        assert get_backend(name).device == "cpu" and available_devices(name)[0] == "cpu"


@pytest.mark.parametrize(
    "name, device, error, match",
    [
        ("numpy", "cuda", ValueError, r"device for the numpy backend must be one of 'cpu'; got 'cuda'"),
        ("torch", "gpu", ValueError, r"device for the torch backend must be one of 'cpu', 'cuda'; got 'gpu'"),
        ("jax", "cuda", ValueError, r"device for the jax backend must be one of 'cpu', 'gpu'; got 'cuda'"),
        ("torch", 0, ValueError, r"must be one of 'cpu', 'cuda'; got 0"),
    ],
)
def test_an_unknown_device_name_is_refused(name, device, error, match):
    if name not in available_backends():
        pytest.skip(f"{name} is not installed here")
    with pytest.raises(error, match=match):
        get_backend(name, device=device)


@pytest.mark.parametrize("name, device", ACCELERATORS)
def test_asking_for_a_missing_gpu_names_the_device(name, device):
    if name not in available_backends():
        pytest.skip(f"{name} is not installed here")
    if device in available_devices(name):
        pytest.skip(f"this machine has a {device} device for {name}")
    with pytest.raises(DeviceUnavailable, match=rf"device='{device}': the {name} backend finds no {device} device"):
        get_backend(name, device=device)


def test_available_devices_of_an_unknown_or_missing_backend_is_empty():
    assert all(isinstance(available_devices(name), list) for name in BACKENDS)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_mlp_on_a_gpu_agrees_with_numpy_on_the_cpu(accelerator, dtype):
    name, device = accelerator
    params, X, y = make_problem(SPEC, n=64)
    gpu, cpu = get_backend(name, dtype, device), get_backend("numpy", dtype)
    out = gpu.forward(SPEC, params, X)
    assert isinstance(out, np.ndarray) and out.dtype == np.dtype(dtype)
    result = closeness(out, cpu.forward(SPEC, params, X), tolerance(dtype, "forward"))
    assert result.ok, result.message(f"{name} on {device} vs numpy, forward {dtype}")
    (la, ga), (lb, gb) = gpu.loss_and_grads(SPEC, params, X, y), cpu.loss_and_grads(SPEC, params, X, y)
    assert closeness(la, lb, tolerance(dtype, "grads")).ok, (la, lb)
    result = closeness(ga, gb, tolerance(dtype, "grads"))
    assert result.ok, result.message(f"{name} on {device} vs numpy, grads {dtype}")


def test_a_training_run_on_a_gpu_agrees_with_numpy(accelerator):
    name, device = accelerator
    data = xor()
    spec = MLPSpec((2, 4, 1), "tanh", "bce")
    params, y = init_params(spec, seed=0), data.targets(spec)
    a = get_backend(name, "float64", device).train(
        spec, params, data.X, y, SGD(0.5, momentum=0.9), 300, record_every=100
    )
    b = get_backend("numpy").train(spec, params, data.X, y, SGD(0.5, momentum=0.9), 300, record_every=100)
    result = compare(a, b, tolerance("float64", "trajectory"))
    assert result.ok, result.message(f"{name} on {device} vs numpy")
    assert a.meta["device"] == device


def test_the_gpt_on_a_gpu_agrees_with_numpy(accelerator):
    name, device = accelerator
    rng = np.random.default_rng(0)
    params = init_params(GPT, seed=0)
    X, Y = rng.integers(0, 7, (3, 6)), rng.integers(0, 7, (3, 6))
    gpu, cpu = get_backend(name, "float32", device), get_backend("numpy", "float32")
    result = closeness(
        gpu.loss_and_grads(GPT, params, X, Y)[1],
        cpu.loss_and_grads(GPT, params, X, Y)[1],
        tolerance("float32", "grads"),
    )
    assert result.ok, result.message(f"GPT {name} on {device} vs numpy, grads float32")
    traj = gpu.train(GPT, params, X, Y, Adam(1e-2), steps=20)
    assert traj.losses[-1] < traj.losses[0]


def test_data_parallel_on_gpus_follows_one_gpu(accelerator):
    """torch: one process per GPU, NCCL; JAX: one process, a Mesh over the GPUs (backends/*/parallel.py)."""
    name, device = accelerator
    if _count(name) < 2:
        pytest.skip(f"data parallelism on {device} needs 2 {device} devices; this machine has {_count(name)}")
    params, X, y = make_problem(SPEC, n=32)
    be = get_backend(name, "float64", device)
    one = be.train(SPEC, params, X, y, SGD(0.1, momentum=0.9), 20, batch_size=16)
    two = be.train(SPEC, params, X, y, SGD(0.1, momentum=0.9), 20, batch_size=16, workers=2)
    result = compare(two, one, tolerance("float64", "trajectory"))
    assert result.ok, result.message(f"{name} on 2 {device} devices vs one")


def _count(name: str) -> int:
    if name == "torch":
        import torch

        return torch.cuda.device_count()
    import jax

    try:
        return len(jax.devices("gpu"))
    except RuntimeError:
        return 0
