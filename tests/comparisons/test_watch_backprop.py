"""See backprop happen: the bug switch, gradcheck, step and graph commands, each checked against numbers
computed another way.

The bug switch is tested first, because everything else trusts it: it must put every original function
back, after an exception too, so that get_backend("numpy") is unchanged afterwards.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends import available_backends, get_backend
from backends.numpy import mlp as nb
from backends.numpy import optim as numpy_optim
from comparisons.backprop import bug_catalogue, bugs, gradcheck
from shared.optim import SGD
from shared.params import init_params
from shared.spec import MLPSpec
from shared.tolerances import FD_STEP, closeness, gap_in_eps, tolerance
from tests.helpers import finite_difference_grads, make_problem

ROOT = Path(__file__).resolve().parents[2]
OTHERS = [name for name in available_backends() if name != "numpy"]
needs_another = pytest.mark.skipif(not OTHERS, reason="parity needs torch or jax installed")


def _numpy_surface():
    """Everything a bug may replace, by identity."""
    return (
        dict(vars(nb)),
        dict(nb.ACTIVATIONS),
        dict(nb.LOSSES),
        dict(vars(numpy_optim)),
        numpy_optim.AdamUpdate.step,
        numpy_optim.SGDUpdate.step,
    )


def _numpy_results():
    spec = MLPSpec((3, 4, 3, 2), "tanh", "softmax_ce")
    params, X, y = make_problem(spec, n=5)
    be = get_backend("numpy")
    loss, grads = be.loss_and_grads(spec, params, X, y)
    trained = be.train(spec, params, X, y, SGD(0.1, momentum=0.9), steps=3).params
    return be.forward(spec, params, X), loss, grads, trained


# ---------------------------------------------------------------- the switch


@pytest.mark.parametrize("name", list(bugs.BUGS))
def test_every_bug_is_switched_off_after_its_block_even_after_an_exception(name):
    before, results = _numpy_surface(), _numpy_results()
    with bugs.switched_on(name):
        assert _numpy_surface() != before, f"{name} replaced nothing"
    assert _numpy_surface() == before
    with pytest.raises(ZeroDivisionError):
        with bugs.switched_on(name):
            raise ZeroDivisionError
    assert _numpy_surface() == before
    for a, b in zip(_numpy_results(), results):
        assert closeness(a, b, tolerance("float64", "forward")).max_abs == 0  # bit for bit


def test_one_bug_at_a_time_and_only_known_names():
    with bugs.switched_on("db-mean"):
        with pytest.raises(RuntimeError, match="already switched on"):
            with bugs.switched_on("tanh-prime-from-z"):
                pass
        assert nb.ACTIVATIONS["tanh"][1] is nb.tanh_backward  # the refused switch changed nothing
    with pytest.raises(ValueError, match="unknown bug"):
        with bugs.switched_on("off-by-one"):
            pass
    assert not bug_catalogue._active


@needs_another
@pytest.mark.parametrize("name", list(bugs.BUGS))
def test_each_bug_fails_parity_and_its_absence_passes(name):
    problem = bugs.problem_for(bugs.BUGS[name], steps=20)
    clean, _ = bugs.parity_checks(problem, OTHERS[:1])
    assert all(c.ok for c in clean), [c for c in clean if not c.ok]
    broken, _ = bugs.parity_checks(problem, OTHERS[:1], name)
    assert not all(c.ok for c in broken), f"{name} passed parity against {OTHERS[0]}"


def test_the_gradient_check_catches_exactly_the_gradient_bugs():
    """Finite differences of the NumPy forward catch a wrong backward, not an optimizer bug nor a
    consistent-but-wrong forward (the approximate GELU); at a relu kink they fail without the bug too."""
    for bug in bugs.BUGS.values():
        problem = bugs.problem_for(bug, steps=1)
        expect_clean = bug.name != "relu-prime-at-0"
        expect_caught = bug.name not in ("adam-no-bias-correction", "momentum-not-reset", "approximate-gelu")
        assert bugs.fd_check(problem).ok == expect_clean, bug.name
        assert bugs.fd_check(problem, bug.name).ok != expect_caught, bug.name


def test_each_bug_is_caught_by_the_test_it_names():
    """Run every bug's named test with the bug switched on, in one fresh interpreter: each must fail."""
    if set(OTHERS) != {"torch", "jax"}:
        pytest.skip("the named tests compare against torch and JAX; both must be installed")
    script = (
        "import sys, pytest\n"
        "from comparisons.backprop.bugs import BUGS, switched_on\n"
        "missed = []\n"
        "for bug in BUGS.values():\n"
        "    with switched_on(bug.name):\n"
        "        rc = pytest.main([bug.caught_by, '-q', '-x', '-p', 'no:cacheprovider', '--no-header', '-rN'])\n"
        "    if rc != pytest.ExitCode.TESTS_FAILED:\n"
        "        missed.append((bug.name, int(rc)))\n"
        "print('MISSED', missed)\n"
        "sys.exit(1 if missed else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_relu_prime_at_zero_matches_torch_and_jax():
    """relu′(0) = 0 in all three: xor's (0, 0) input with zero biases puts every hidden Z at exactly 0."""
    if not OTHERS:
        pytest.skip("needs torch or jax")
    spec = MLPSpec((2, 4, 1), "relu", "bce")
    params = init_params(spec, seed=0)
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([[0.0], [1.0], [1.0], [0.0]])
    _, cache = nb.mlp_forward(spec, params, X)
    assert (cache[0][1][0] == 0).all()  # the first sample's hidden Z is exactly 0
    _, mine = get_backend("numpy").loss_and_grads(spec, params, X, y)
    for other in OTHERS:
        _, theirs = get_backend(other).loss_and_grads(spec, params, X, y)
        result = closeness(mine, theirs, tolerance("float64", "grads"))
        assert result.ok, result.message(f"numpy vs {other}, relu at its kink")


def test_momentum_buffer_starts_at_zero_in_every_run():
    spec = MLPSpec((2, 4, 1), "tanh", "bce")
    params, X, y = make_problem(spec, n=4)
    be = get_backend("numpy")
    first, second = (be.train(spec, params, X, y, SGD(0.1, momentum=0.9), steps=5).params for _ in range(2))
    assert closeness(first, second, tolerance("float64", "grads")).max_abs == 0


# ---------------------------------------------------------------- gradcheck


def test_finite_differences_are_the_ones_the_tests_use():
    spec = MLPSpec((3, 4, 2), "gelu", "mse")
    params, X, y = make_problem(spec, n=5)
    mine = gradcheck.finite_differences(spec, params, X, y, FD_STEP)
    theirs = finite_difference_grads(spec, params, X, y, FD_STEP)
    assert closeness(mine, theirs, tolerance("float64", "forward")).max_abs == 0
    for layer in params:  # nothing shifted is left behind
        assert all(np.isfinite(v).all() for v in layer.values())
    assert closeness(params, make_problem(spec, n=5)[0], tolerance("float64", "forward")).max_abs == 0


def test_gradcheck_passes_on_every_backend_and_fails_with_a_bug(tmp_path, capsys):
    args = ["--dataset", "moons", "--n", "6", "--spec", "2,3,1:sigmoid:bce", "--out", str(tmp_path)]
    assert gradcheck.main(args) == 0
    out = capsys.readouterr().out
    for name in available_backends():
        assert f"\n{name} " in out
    assert "h = 1e-06" in out and "truncation" in out and "All " in out
    assert gradcheck.main([*args, "--bug", "sigmoid-prime-from-z"]) == 1
    out = capsys.readouterr().out
    assert "WRONG" in out and "sigmoid-prime-from-z" in out
    assert (tmp_path / "gradcheck.json").exists()
    assert nb.ACTIVATIONS["sigmoid"][1] is nb.sigmoid_backward


def test_gradcheck_says_when_a_relu_sits_on_its_kink(tmp_path, capsys):
    assert gradcheck.main(["--activation", "relu", "--backends", "numpy", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "at a relu kink?" in out and "within 100·h of 0" in out


# ---------------------------------------------------------------- bugs


@needs_another
def test_bugs_command_one_bug_and_the_summary(tmp_path, capsys):
    assert bugs.main(["--bug", "db-mean", "--steps", "10", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "FAIL  grads" in out and "caught by:" in out
    assert (tmp_path / "bugs-db-mean.png").exists() and (tmp_path / "bugs-db-mean.json").exists()
    # the summary against one other backend (each JAX spec and optimizer is a compile: seconds)
    assert bugs.main(["--steps", "5", "--backends", f"numpy,{OTHERS[0]}", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in bugs.BUGS)
    assert max(len(line) for line in out.splitlines()) <= 100
    assert not bug_catalogue._active


# ---------------------------------------------------------------- step


def test_the_steps_numbers_are_numpys_gradients_and_update():
    from comparisons.backprop import step_mlp
    from comparisons.core.problem import XOR, Problem
    from shared.data import make_dataset

    spec = MLPSpec((2, 4, 3, 1), ("tanh", "relu"), "bce")
    data = make_dataset("xor")
    params = make_problem(spec)[0]
    problem = Problem(data, spec, params, data.X, data.targets(spec), SGD(0.5), 1, 0, None)
    loss, layers, _ = step_mlp.numpy_step(spec, params, problem.X, problem.y, problem.optimizer)
    ref_loss, grads = get_backend("numpy").loss_and_grads(spec, params, problem.X, problem.y)
    assert loss == ref_loss
    for layer, g, p in zip(layers, grads, params):
        np.testing.assert_array_equal(layer["dW"], g["W"])
        np.testing.assert_array_equal(layer["db"], g["b"])
        np.testing.assert_allclose(layer["W_new"], p["W"] - 0.5 * g["W"], rtol=0, atol=1e-15)
    # dL/dX of a layer is the next-earlier layer's dL/dA, and dZ = dA ⊙ f′(Z)
    np.testing.assert_array_equal(layers[1]["dX"], layers[0]["dA"])
    np.testing.assert_allclose(layers[0]["dZ"], layers[0]["dA"] * (1 - np.tanh(layers[0]["Z"]) ** 2), atol=1e-15)
    quantities, losses = step_mlp.collect(problem, problem.X, problem.y, available_backends(), "float64")
    for q in quantities:  # every backend's intermediates agree with NumPy's to a few roundings
        for name, value in q.values.items():
            assert gap_in_eps(q.values["numpy"], value, "float64") < 64, (q.layer, q.name, name)
    assert set(losses) == set(available_backends())
    assert XOR.sizes == (2, 4, 1)


def test_step_command_one_sample_and_html(tmp_path, capsys):
    from comparisons.backprop import step

    page = tmp_path / "step.html"
    assert step.main(["--sample", "2", "--html", str(page), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "sample 2 alone (n=1)" in out
    for text in ("Z = X·W + b", "dL/dZ = dL/dA ⊙ f′(Z)", "dL/dW = Xᵀ·dL/dZ", "dL/db", "dL/dX", "UPDATE"):
        assert text in out
    assert max(len(line) for line in out.splitlines() if not line.startswith("wrote")) <= 100
    for name in available_backends():
        if name != "numpy":
            assert f"{name} " in out
    assert "dL/dW = Xᵀ·dL/dZ" in page.read_text() and page.read_text().startswith("<!doctype html>")


# ---------------------------------------------------------------- graph


def test_numpy_tape_lists_the_forward_then_the_backward_functions():
    from comparisons.backprop import graph

    spec = MLPSpec((2, 4, 1), "tanh", "bce")
    params, X, y = make_problem(spec, n=4)
    tape = graph.numpy_tape(spec, params, X, y)
    assert [lines[0] for lines in tape.nodes.values()] == [
        "linear_forward",
        "tanh_forward",
        "linear_forward",
        "bce_forward",
        "bce_backward",
        "linear_backward",
        "tanh_backward",
        "linear_backward",
    ]
    assert len(tape.edges) == len(tape.nodes) - 1


def test_torch_graph_of_a_two_layer_tanh_mlp_has_exactly_the_expected_nodes():
    pytest.importorskip("torch")
    from comparisons.backprop import graph

    spec = MLPSpec((2, 4, 1), "tanh", "bce")
    params, X, y = make_problem(spec, n=4)
    g, _ = graph.torch_graph(spec, params, X, y)
    assert g.kinds() == {
        "BinaryCrossEntropyWithLogitsBackward0": 1,
        "AddmmBackward0": 2,
        "TanhBackward0": 1,
        "TBackward0": 2,  # nn.Linear's (out, in) weight, transposed in the forward
        "AccumulateGrad": 4,  # one per parameter tensor
    }
    leaves = sorted(lines[1].split(".grad")[0] for lines in g.nodes.values() if lines[0] == "AccumulateGrad")
    assert leaves == ["layer0.W", "layer0.b", "layer1.W", "layer1.b"]
    assert len(g.edges) == 9  # every node but the loss has one parent here


def test_jax_gradient_jaxpr_has_a_dot_general_pair_per_layer_but_the_first():
    pytest.importorskip("jax")
    from comparisons.backprop import graph

    spec = MLPSpec((2, 4, 3, 1), "tanh", "mse")
    params, X, y = make_problem(spec, n=4)
    loss_jaxpr, grad_jaxpr = graph.jax_jaxprs(spec, params, X, y)
    assert graph.jaxpr_graph(loss_jaxpr).kinds()["dot_general"] == 3
    assert graph.jaxpr_graph(grad_jaxpr).kinds()["dot_general"] == 3 + 2 * 3 - 1


def test_graph_command_writes_dot_with_one_cluster_per_backend(tmp_path, capsys):
    from comparisons.backprop import graph

    assert graph.main(["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    dot = (tmp_path / "graph.dot").read_text()
    assert dot.startswith("digraph trigrad {") and dot.rstrip().endswith("}")
    for name in available_backends():
        assert f"subgraph cluster_{name} {{" in dot
    assert "linear_forward" in dot and "->" in dot
    if "torch" in available_backends():
        assert "AddmmBackward0" in out and "AddmmBackward0" in dot
    if "jax" in available_backends():
        assert "dot_general" in out and "jax.make_jaxpr" in out
    assert (tmp_path / "graph.json").exists()


def test_jaxpr_graph_links_the_params_through_the_equations_to_their_gradients():
    pytest.importorskip("jax")
    from comparisons.backprop import graph
    from shared.params import named_leaves

    spec = MLPSpec((2, 4, 1), "tanh", "bce")
    params, X, y = make_problem(spec, n=4)
    _, grad_jaxpr = graph.jax_jaxprs(spec, params, X, y)
    names = [name for name, _ in named_leaves(params)]
    g = graph.jaxpr_graph(grad_jaxpr, names, [f"dL/d{n}" for n in names], ["X", "y"])
    outputs = [key for key, role in g.roles.items() if role == "output"]
    assert [g.nodes[key][0] for key in outputs] == ["dL/dlayer0.W", "dL/dlayer0.b", "dL/dlayer1.W", "dL/dlayer1.b"]
    assert all(any(b == key for _, b in g.edges) for key in outputs)  # each gradient is computed, not a constant
    roles = [g.roles[key] for key in g.nodes if key.startswith("j") and key[1:].isdigit()]
    assert roles[0] == "forward" and roles[-1] == "backward" and "backward" in roles


def test_graph_writes_an_svg_only_when_dot_is_installed(tmp_path, monkeypatch, capsys):
    from comparisons.backprop import graph

    monkeypatch.setattr(graph.shutil, "which", lambda name: None)  # graphviz absent: DOT and JSON only
    assert graph.main(["--backends", "numpy", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "graph.dot").exists() and not (tmp_path / "graph.svg").exists()
    if shutil.which("dot"):  # present: the SVG is drawn from the same DOT
        monkeypatch.undo()
        assert graph.main(["--backends", "numpy", "--out", str(tmp_path)]) == 0
        assert (tmp_path / "graph.svg").read_text().lstrip().startswith(("<?xml", "<svg", "<!DOCTYPE"))
    capsys.readouterr()


# ---------------------------------------------------------------- step --model gpt


def _gpt_problem():
    from shared.data import strides
    from shared.spec import GPTSpec

    spec = GPTSpec(8, 4, 8, 2, 1, activation="gelu")
    data = strides(2, spec.vocab_size, spec.seq_len, seed=0)
    return spec, init_params(spec, seed=0), data.X, data.y


def test_the_gpt_steps_numbers_are_numpys_attention_layernorm_and_embedding_gradients():
    from backends.numpy import gpt as nt
    from comparisons.backprop import step_gpt

    spec, params, X, Y = _gpt_problem()
    loss, out = step_gpt.numpy_gpt_step(spec, params, X, Y)
    ref_loss, grads = get_backend("numpy").loss_and_grads(spec, params, X, Y)
    assert loss == ref_loss
    P, t = out["P"], X.shape[1]
    np.testing.assert_allclose(P.sum(axis=-1), 1, rtol=0, atol=1e-15)
    assert (P[..., np.triu_indices(t, k=1)[0], np.triu_indices(t, k=1)[1]] == 0).all()  # no weight on the future
    scale = 1 / np.sqrt(spec.d_model // spec.n_heads)
    np.testing.assert_array_equal(out["dS"], nt.softmax_backward(out["dP"], P) * scale)
    assert (out["dS"][..., np.triu_indices(t, k=1)[0], np.triu_indices(t, k=1)[1]] == 0).all()
    assert len(np.unique(X)) < X.size  # some token repeats: its embedding gradient is a sum
    np.testing.assert_allclose(out["dtok_emb"], grads["tok_emb"], rtol=0, atol=1e-17)
    xhat = (out["x"] - out["mu"][..., None]) * out["rstd"][..., None]
    np.testing.assert_allclose(xhat.mean(axis=-1), 0, atol=1e-14)  # μ and rstd normalize x
    var = out["x"].var(axis=-1)  # small (~6e-4) next to LayerNorm's ε = 1e-5: x̂² averages var/(var + ε), not 1
    np.testing.assert_allclose((xhat**2).mean(axis=-1), var / (var + 1e-5), rtol=1e-12)
    S_finite = np.where(np.isinf(out["S"]), 0, out["S"])
    np.testing.assert_allclose(S_finite, np.where(np.isinf(out["S"]), 0, out["q"] @ out["k"].swapaxes(-1, -2) * scale))


def test_step_command_for_the_gpt_agrees_across_backends(capsys):
    from comparisons.backprop import step, step_gpt
    from comparisons.core.problem import Problem
    from shared.optim import Adam

    spec, params, X, Y = _gpt_problem()
    problem = Problem(None, spec, params, X, Y, Adam(0.01), 1, 0, None)
    quantities, losses = step_gpt.collect_gpt(problem, X, Y, available_backends(), "float64")
    assert set(losses) == set(available_backends())
    for q in quantities:
        for name, value in q.values.items():
            assert gap_in_eps(q.values["numpy"], value, "float64") < 64, (q.name, name)
    assert step.main(["--model", "gpt", "--out", "out"]) == 0
    out = capsys.readouterr().out
    for text in (
        "μ = mean",
        "rstd",
        "S = q·kᵀ/√d_head",
        "P = softmax(S)",
        "dP",
        "dS = P ⊙",
        "LayerNorm's dx",
        "dtok_emb",
    ):
        assert text in out
    assert "-inf" in out and max(len(line) for line in out.splitlines()) <= 100


def test_step_prints_masked_entries_as_0_and_says_they_are_exactly_0(capsys):
    """dS = P ⊙ (dP − Σ dP⊙P) at a masked entry is 0 times a negative number: IEEE's signed −0, which
    step printed as "-0" among the 0s without a word. Every zero prints as 0, and a legend says why
    masked entries are exactly 0."""
    from comparisons.backprop import step

    assert step.matrix_lines(np.array([[-0.0, 0.0, -1.5]]), "") == [f"{0:>10} {0:>10} {-1.5:>10}"]
    assert step.main(["--model", "gpt", "--backends", "numpy", "--out", "out"]) == 0
    out = capsys.readouterr().out
    assert "-0" not in out.split(), "a signed zero printed as -0"
    assert "masked (key j > query i): S = −inf, P = 0 and dS exactly 0" in " ".join(out.split())


def test_step_help_states_the_gpt_defaults_it_uses(capsys):
    """step's GPT is smaller than the other commands' (it prints every number): --help must say its
    own defaults, and --model gpt must use exactly those. (Before, --help stated the common 8,8,16,2,1
    and 32 sequences while the command ran 8,4,8,2,1 on 2.)"""
    from comparisons.backprop import step

    with pytest.raises(SystemExit):
        step.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    shape = ",".join(map(str, step.GPT_STEP.gpt))
    assert f"(default: {shape}:gelu)" in help_text and f"sequences (default: {step.GPT_STEP.n})" in help_text
    assert "gpt: none, its step prints no update" in help_text
    assert step.main(["--model", "gpt", "--backends", "numpy", "--out", "out"]) == 0
    V, T, d, h, L = step.GPT_STEP.gpt
    title = capsys.readouterr().out.splitlines()[0]
    assert f"V={V} T={T} d={d} h={h} L={L}" in title and f"{step.GPT_STEP.n}×{T} tokens" in title
