"""How the benchmarks time things, and the machine facts every report states.

`time_runner` times a `run(steps)` callable the same way for every backend and variant:
  1. the very first call, run(1), against later 1-step calls: the difference is compile time (JAX
     traces and compiles; torch.compile compiles on its first call);
  2. calibration: n from the 1-step time, refined by one call of run(n), so run(n) takes ~target_s;
  3. the fastest of a few calls of run(n) and of run(2n), each after an untimed warm-up call.
     Per step: (t(2n) − t(n)) / n — fixed per-call costs (validation, conversion at the borders)
     cancel out, and are reported on their own as t(n) − n · per step (see per_step_s for when
     noise makes that difference implausible).
Fastest-of-repeats is the measurement least disturbed by the rest of the machine.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    steps: int  # n: the shorter of the two timed runs (the other is 2n)
    per_step_s: float  # (t(2n) − t(n)) / n: the cost of one more step, fixed costs cancelled out
    per_call_s: float  # t(n) − n · per_step: what a call costs besides its steps (validation, conversion)
    first_call_s: float  # the very first call, 1 step: imports, tracing, compiling, first-touch allocation
    one_step_s: float  # a later 1-step call

    @property
    def steps_per_s(self) -> float:
        return 1.0 / self.per_step_s

    @property
    def compile_s(self) -> float:
        """First call minus a steady call of the same length: tracing, compiling, first-touch allocation."""
        return max(0.0, self.first_call_s - self.one_step_s)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _steady(run: Callable[[int], None], steps: int, repeats: int) -> float:
    """The fastest of `repeats` calls of run(steps), after one untimed call (which compiles that length)."""
    run(steps)
    return min(_timed(lambda: run(steps)) for _ in range(repeats))


def per_step_s(t1: float, t2: float, steps: int) -> float:
    """Seconds per step from t1 = t(run(n)) and t2 = t(run(2n)): (t2 − t1) / n, which cancels what a
    call costs besides its steps. A step costs at most t2 / 2n (no per-call cost at all). Timing
    noise can make the difference implausibly small (a per-call cost above half of t2); then the
    plain rate t2 / 2n is taken, which never claims more speed than was seen. (Clamping to half the
    plain rate instead reported twice the speed: once a 354 GFLOP/s matmul on 2 cores that peak at
    ~200.)"""
    plain = t2 / (2 * steps)
    diff = (t2 - t1) / steps
    return plain if diff < plain / 2 else min(diff, plain)


def time_runner(run: Callable[[int], None], target_s: float, repeats: int = 3, min_steps: int = 4) -> Timing:
    """Time `run(steps)`: per-step cost from two run lengths, n and 2n, with n chosen so that run(n)
    takes about `target_s`; per-call cost is what is left of t(n)."""
    first = _timed(lambda: run(1))
    one = min(_timed(lambda: run(1)) for _ in range(repeats))
    steps = max(min_steps, int(target_s / max(one, 1e-7)))
    took = _steady(run, steps, 1)  # refine: a 1-step call overstates the per-step cost by the per-call cost
    steps = max(min_steps, int(steps * target_s / max(took, 1e-9)))
    if steps >= 1000:  # whole chunks of 1000: trigrad's JAX train then reuses its compiled 1000-step scan
        steps = steps // 1000 * 1000
    t1, t2 = _steady(run, steps, repeats), _steady(run, 2 * steps, repeats)
    per_step = per_step_s(t1, t2, steps)
    return Timing(steps, per_step, max(0.0, t1 - steps * per_step), first, one)


def paired_rounds(runs: dict[str, Callable[[int], None]], steps: int, rounds: int = 5) -> dict[str, list[float]]:
    """Seconds per step of each runner in each round, measured in alternation: every round times
    run(n) and run(2n) of each runner in turn, so a ratio of two runners is taken under the same
    conditions: this VM's speed drifts by up to 2x over minutes, and measuring one runner after the
    other (as time_runner does, a few seconds each) can put them in different phases of that drift.
    Per step as in time_runner, but within each round: (t(2n) − t(n)) / n, fixed costs cancelled."""
    for run in runs.values():  # warm-up: compile both lengths, first-touch allocations
        run(steps)
        run(2 * steps)
    per_round: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            t1, t2 = _timed(lambda run=run: run(steps)), _timed(lambda run=run: run(2 * steps))
            per_round[name].append(per_step_s(t1, t2, steps))
    return per_round


def paired_summary(train: list[float], base: list[float]) -> dict:
    """Two runners' per-round seconds per step (paired_rounds) as the report gives them: each one's
    median, and the median of the rounds' own ratios with the middle half of them. Each round's two
    timings ran under one phase of the VM's drift, so a round's ratio is paired; the two medians can
    come from different rounds, which is why the ratio is not their quotient. (The fastest t(n) and
    fastest t(2n) across rounds, the rule before, paired nothing: on the same two NumPy XOR loops it
    read anywhere from 0.93x to 1.8x, the 5th and 95th percentiles of 300 draws of 5 rounds, and once
    NumPy's small train at 0.81x its bare loop.)"""
    ratios = [t / b for t, b in zip(train, base)]
    quartiles = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
    return {
        "train_s": statistics.median(train),
        "base_s": statistics.median(base),
        "ratio": statistics.median(ratios),
        "ratio_quartiles": [quartiles[0], quartiles[2]],  # the middle half of the rounds' ratios
        "rounds_s": {"train": train, "base": base},  # every round, for a reader who wants to recompute
    }


def peak_matmul_gflops(framework: str, n: int = 1024, target_s: float = 0.3) -> float:
    """float32 n×n @ n×n in `framework`, in GFLOP/s (2n³ flops per product), fastest of 3."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    if framework == "numpy":
        matmul = lambda k: [a @ a for _ in range(k)]  # noqa: E731
    elif framework == "torch":
        import torch

        t = torch.from_numpy(a)
        matmul = lambda k: [t @ t for _ in range(k)]  # noqa: E731
    else:
        import jax
        import jax.numpy as jnp

        j = jnp.asarray(a)
        f = jax.jit(lambda x: x @ x)

        def matmul(k):
            for _ in range(k):
                out = f(j)
            out.block_until_ready()

    timing = time_runner(matmul, target_s)
    return 2 * n**3 * timing.steps_per_s / 1e9


def dispatch_us(framework: str, target_s: float = 0.2) -> float:
    """The cost of the smallest operation, a 1-element add, in µs per call: the floor under any step."""
    import numpy as np

    if framework == "numpy":
        x = np.ones(1, np.float32)
        op = lambda k: [x + x for _ in range(k)]  # noqa: E731
    elif framework == "torch":
        import torch

        x = torch.ones(1)
        op = lambda k: [x + x for _ in range(k)]  # noqa: E731
    else:
        import jax
        import jax.numpy as jnp

        x = jnp.ones(1, jnp.float32)
        f = jax.jit(lambda v: v + v)

        def op(k):
            for _ in range(k):
                out = f(x)
            out.block_until_ready()

    return 1e6 / time_runner(op, target_s).steps_per_s


def machine_facts() -> dict:
    """What ran: CPU, BLAS kernel and threads of each framework, the environment that changes them."""
    facts: dict = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "env": {
            k: os.environ.get(k)
            for k in (
                "OPENBLAS_CORETYPE",
                "OPENBLAS_L2_SIZE",
                "OMP_NUM_THREADS",
                "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS",
                "XLA_FLAGS",
            )
        },
    }
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
        facts["cpu"] = model
    except OSError:
        facts["cpu"] = platform.processor() or None
    import numpy as np

    facts["numpy"] = np.__version__
    if importlib.util.find_spec("torch"):
        import torch

        config = torch.__config__.show()
        facts["torch"] = {
            "version": torch.__version__,
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "blas": "MKL" if "BLAS_INFO=mkl" in config else ("OpenBLAS" if "openblas" in config.lower() else "?"),
            "cpu_capability": next(
                (line.split(":")[1].strip() for line in config.splitlines() if "CPU capability" in line), None
            ),
        }
    if importlib.util.find_spec("jax"):
        import jax

        facts["jax"] = {
            "version": jax.__version__,
            "devices": [str(d) for d in jax.devices()],
            "x64": "on inside trigrad's calls (jax.enable_x64); the process default is "
            + ("on" if jax.config.jax_enable_x64 else "off"),
        }
    if importlib.util.find_spec("threadpoolctl"):
        from threadpoolctl import threadpool_info

        facts["threadpools"] = [
            {k: info.get(k) for k in ("internal_api", "num_threads", "architecture", "version", "prefix")}
            | {"owner": _library_owner(info.get("filepath"))}
            for info in threadpool_info()
        ]
    return facts


def _library_owner(filepath: str | None) -> str | None:
    """The package a wheel's bundled library came with: numpy and scipy each ship an OpenBLAS of
    their own (site-packages/numpy.libs/..., scipy.libs/...); numpy's is the one its matmuls use."""
    if not filepath:
        return None
    folder = os.path.basename(os.path.dirname(filepath))
    return folder.removesuffix(".libs") if folder.endswith(".libs") else None


def scan_iteration_us(target_s: float = 0.2) -> float:
    """JAX only: the cost of one iteration of a one-op lax.scan on this machine, in µs — the floor under
    any fused training step."""
    import jax
    import jax.numpy as jnp

    # sin(c): a body XLA cannot fold away (an empty or affine body would be computed in closed form)
    loop = jax.jit(lambda c, n: jax.lax.scan(lambda c, _: (jnp.sin(c), None), c, None, length=n)[0], static_argnums=1)
    c = jnp.zeros((), jnp.float32)
    n = 100_000
    loop(c, n).block_until_ready()
    start = time.perf_counter()
    loop(c, n).block_until_ready()
    return 1e6 * (time.perf_counter() - start) / n


def numpy_gelu_s(w, repeats: int = 2) -> float:
    """NumPy only: seconds per training step of a GPT workload spent in its exact GELU, gelu_forward and
    gelu_backward on every layer's pre-activations (taken from a forward at the initial params, so
    Φ sees the values it sees in training), fastest of `repeats`. The NumPy backend computes Φ with
    scipy.special.ndtr, vectorized."""
    import numpy as np

    from backends.numpy import gpt as nt
    from backends.numpy.mlp import gelu_backward, gelu_forward
    from shared.params import map_params

    params, X, _ = w.problem()
    params = map_params(lambda a: a.astype(np.float32), params)
    _, (_, block_caches, _, _) = nt.gpt_forward(w.spec, params, X)
    zs = [mlp_cache[1] for (_, _, _, mlp_cache) in block_caches]  # mlp cache: (x, z, a, activation)

    def both() -> None:
        for z in zs:
            a = gelu_forward(z)
            gelu_backward(a, z, a)  # any upstream gradient of z's shape costs the same

    return min(_timed(both) for _ in range(repeats))


PHASES = ("forward", "loss", "backward", "bookkeeping", "update")


def phase_times_us(backend: str, w, steps: int = 2000) -> dict[str, float]:
    """Where one step of trigrad's training loop spends its time on workload `w` (float32, SGD), in µs
    per step, phase by phase: the same calls the backend's `_train_steps` makes, each timed on its own.
    "bookkeeping" is what trigrad adds to a bare step (the gradient norm, the finiteness checks, the
    loss as a Python number, flattening the gradient tree). JAX runs the whole step as one compiled
    program, so it has no phases to time apart: None."""
    if backend == "jax":
        return None
    import numpy as np

    from backends import get_backend

    be = get_backend(backend, "float32")
    spec, params, X, y = be._prepare(w.spec, *w.problem(), need_y=True)
    totals = dict.fromkeys(PHASES, 0.0)
    phased_step = _numpy_phases if backend == "numpy" else _torch_phases
    with be._compute(spec, len(X)):
        for times in phased_step(be, spec, params, X, y, steps):
            for key, dt in zip(PHASES, np.diff(times)):
                totals[key] += dt
    return {key: 1e6 * total / steps for key, total in totals.items()}


def _numpy_phases(be, spec, params, X, y, steps: int):
    """NumPy's step, phase by phase: yields the six clock readings around the five PHASES of each step."""
    import numpy as np

    from backends.numpy import mlp as nb
    from backends.numpy import optim as numpy_optim
    from backends.numpy import train as numpy_train
    from benchmarks.workloads import LR
    from shared.optim import SGD
    from shared.params import tree_leaves

    clock = time.perf_counter
    loss_forward, loss_backward = nb.LOSSES[spec.loss]
    opt = numpy_optim.make_optimizer(SGD(LR), tree_leaves(params))
    for _ in range(steps):
        t0 = clock()
        y_hat, cache = nb.mlp_forward(spec, params, X)
        t1 = clock()
        loss = loss_forward(y_hat, y)
        t2 = clock()
        grads = nb.mlp_backward(spec, params, cache, loss_backward(y_hat, y))
        t3 = clock()
        leaves = tree_leaves(grads)
        ok = np.isfinite(float(loss)) and np.isfinite(numpy_train.global_norm(leaves))
        t4 = clock()
        opt.step(tree_leaves(params), leaves)
        t5 = clock()
        assert ok  # the timed steps train on finite numbers
        yield t0, t1, t2, t3, t4, t5


def _torch_phases(be, spec, params, X, y, steps: int):
    """torch's step (the backend's own module and optimizer), phase by phase, as _numpy_phases."""
    import numpy as np
    import torch

    from benchmarks.workloads import LR
    from shared.optim import SGD

    clock = time.perf_counter
    state = be._train_begin(spec, params, X, y, SGD(LR), None)
    model, weights, opt, loss_fn = (state[k] for k in ("model", "weights", "opt", "loss_fn"))
    Xt, yt = state["X"], state["y"]
    for _ in range(steps):
        t0 = clock()
        opt.zero_grad()
        y_hat = model(Xt)
        t1 = clock()
        loss = loss_fn(y_hat, yt)
        t2 = clock()
        loss.backward()
        t3 = clock()
        norm = torch.nn.utils.get_total_norm([p.grad for p in weights])
        ok = np.isfinite(loss.item()) and np.isfinite(norm.item())
        t4 = clock()
        opt.step()
        t5 = clock()
        assert ok  # the timed steps train on finite numbers
        yield t0, t1, t2, t3, t4, t5
