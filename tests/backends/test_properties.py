"""Property tests: random depths, widths, activations, losses and batch sizes, pairwise gradient parity
in float64. Bounded (small nets, few examples, deadline=None) so the suite stays fast: each example
runs every installed backend once and compares every pair."""

import itertools

import pytest

pytest.importorskip("hypothesis", reason="property tests need hypothesis (pip install hypothesis)")

from hypothesis import assume, given, settings  # noqa: E402

from backends import available_backends, get_backend  # noqa: E402
from shared.tolerances import closeness, tolerance  # noqa: E402
from tests.helpers import make_problem, min_distance_to_kink  # noqa: E402
from tests.strategies import batch_sizes, seeds, specs  # noqa: E402


@pytest.mark.skipif(len(available_backends()) < 2, reason="needs torch or jax beside numpy")
@settings(max_examples=30, deadline=None)
@given(spec=specs(), n=batch_sizes, seed=seeds)
def test_random_networks_have_the_same_gradients_in_every_pair(spec, n, seed):
    params, X, y = make_problem(spec, n=n, seed=seed)
    # At a relu kink the derivative is a convention and a 1e-16 difference in Z flips it: stay away.
    assume(min_distance_to_kink(spec, params, X) > 1e-6)
    results = {name: get_backend(name, "float64").loss_and_grads(spec, params, X, y) for name in available_backends()}
    tol = tolerance("float64", "grads")
    for a, b in itertools.combinations(results, 2):
        (loss_a, grads_a), (loss_b, grads_b) = results[a], results[b]
        what = f"{a} vs {b}, {spec.describe()}, n={n}, seed={seed}"
        result = closeness(loss_a, loss_b, tol, names=["loss"])
        assert result.ok, result.message(f"loss, {what}")
        result = closeness(grads_a, grads_b, tol)
        assert result.ok, result.message(f"grads, {what}")
