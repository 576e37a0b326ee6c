"""The learning lab: the numbers behind each lesson's finding, checked independently."""

import numpy as np
import pytest

from backends import get_backend
from comparisons.backprop import code
from comparisons.lessons import hidden_layer, learning_rates, noise, paths, seeds
from shared.data import make_dataset, xor
from shared.optim import SGD
from shared.params import init_params
from shared.spec import MLPSpec


def test_no_linear_model_beats_the_floor_and_decides_nothing_while_the_hidden_net_solves_xor():
    r = hidden_layer.run("numpy", "mse", lrs=[0.2, 5.0], seeds=3, steps=300)
    data, be = xor(), get_backend("numpy")
    A = np.column_stack([data.X, np.ones(4)])  # the best possible linear fit, solved directly
    coef, *_ = np.linalg.lstsq(A, data.y.astype(float), rcond=None)
    best_possible = np.mean((A @ coef - data.y) ** 2)
    assert best_possible == pytest.approx(0.25) and np.allclose(A @ coef, 0.5)
    specs = hidden_layer.models("mse")
    for run in r["runs"]:
        if run["lr"] == 5.0:  # far past the stable rate: both models must be reported as diverged, not crash
            assert run["diverged"] and run["final_loss"] is None, run
            continue
        assert not run["diverged"]
        out = be.forward(specs[run["model"]], run["params"], data.X)[:, 0]
        assert run["margin"] == pytest.approx(np.abs(out - 0.5).max())
        mse = np.mean((out - data.y) ** 2)
        if run["model"] == "linear":
            assert run["min_loss"] >= best_possible - 1e-12 and mse == pytest.approx(0.25, abs=1e-6)
            assert run["margin"] < 1e-3  # the outputs sit on the threshold: no decision to count as accuracy
        else:
            assert ((out > 0.5) == data.y).all() and mse < 0.01
    lin, hid = hidden_layer.summary(r, "linear"), hidden_layer.summary(r, "hidden")
    assert lin["diverged"] == hid["diverged"] == [(5.0, 0), (5.0, 1), (5.0, 2)]
    assert hid["solved"] == 3
    text = hidden_layer.finding(r)
    assert f"within {lin['max_margin']:.1e} of 0.5" in text and "3 of 6 runs classify all four points" in text
    assert "(lr 0.2: 3 of 3, lr 5: 0 of 3;" in text and "Diverged: 3 of 3 at lr 5 (seeds 0, 1, 2)." in text


@pytest.mark.parametrize(
    "option", [["--lr", "-1"], ["--lr", "nan"], ["--lrs", "0.1,inf"], ["--seeds", "0"], ["--loss", "hinge"]]
)
def test_hidden_layer_rejects_bad_options_with_a_usage_error(option, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        hidden_layer.main([*option, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert f"argument {option[0]}" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_the_diverging_learning_rate_really_diverges():
    results = learning_rates.sweep("numpy", np.array([0.2, 30.0]), steps=300, seeds=2)
    for name, (slow_enough, too_fast) in results.items():
        for run in slow_enough["runs"]:
            assert not run["diverged"] and run["converged_at"] is not None, name
        for run in too_fast["runs"]:
            assert run["diverged"] and run["diverged_at"] is not None, name
            assert np.isfinite(run["losses"]).all()  # kept up to the bad step, never NaN
    summary = learning_rates.summary(results["xor"])
    assert summary["best_lr"] == 0.2 and summary["first_diverging_lr"] == summary["all_diverge_from"] == 30.0
    assert "from lr 30 (150× the fastest) 2 of 2 seeds diverge" in learning_rates.finding(results, 300)


def test_a_run_that_dips_below_the_target_and_leaves_it_has_not_converged():
    target = 0.01
    assert learning_rates.converged_at(np.array([0.5, 0.2, 0.005, 0.001]), target) == 2
    assert learning_rates.converged_at(np.array([0.5, 0.005, 3.0, 0.02, 0.009, 0.001]), target) == 4  # the spike
    assert learning_rates.converged_at(np.array([0.5, 0.005, 0.2]), target) is None  # left it at the end
    assert learning_rates.converged_at(np.array([0.005, 0.001]), target) == 0
    assert learning_rates.converged_at(np.array([0.5, 0.01]), target) is None  # "below" is strict


def _symmetric_copy(params, perm, flip):
    """Permute hidden units and flip the signs of some: the same function, different weights."""
    W1, b1, W2 = params[0]["W"][:, perm], params[0]["b"][perm], params[1]["W"][perm]
    s = np.where(flip, -1.0, 1.0)
    return [{"W": W1 * s, "b": b1 * s}, {"W": W2 * s[:, None], "b": params[1]["b"].copy()}]


def test_symmetric_networks_compute_the_same_and_are_at_distance_zero():
    spec = MLPSpec((2, 3, 1), "tanh", "bce")
    params = init_params(spec, seed=3)
    params[0]["b"] = np.array([0.3, -0.2, 0.1])
    copy = _symmetric_copy(params, [2, 0, 1], [True, False, True])
    be = get_backend("numpy")
    X = np.random.default_rng(0).normal(size=(10, 2))
    np.testing.assert_allclose(be.forward(spec, params, X), be.forward(spec, copy, X), rtol=1e-12)
    assert seeds.distance(params, copy) < 1e-12
    assert seeds.unit_patterns(params, X) == seeds.unit_patterns(copy, X)
    other = init_params(spec, seed=4)
    assert seeds.distance(params, other) > 0.05
    big = [{k: 3 * v for k, v in layer.items()} for layer in copy]  # BCE weights grow: scale does not count
    assert seeds.distance(params, big) < 1e-12


def test_group_counts_from_spanning_tree_links_match_direct_grouping():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 0.01, (6, 2)), rng.normal(1, 0.01, (5, 2)), rng.uniform(-2, 2, (5, 2))])
    D = np.abs(points[:, None] - points[None]).max(-1)  # (16, 16)
    links = seeds.nearest_links(D)
    assert len(links) == len(D) - 1
    for t in [1e-4, 0.005, 0.02, 0.1, 0.5, 1.0, 5.0]:
        assert seeds.count_groups(links, t) == len(set(seeds.groups(D, t))), t
    two = D[:11, :11]  # two tight clusters far apart: a clear gap, two groups, whatever the drift below it
    gap = seeds.clear_gap(seeds.nearest_links(two), drift=0.03)
    assert gap["clear"] and gap["groups"] == 2 and gap["gap"][0] == 0.03 and gap["gap"][1] > 0.9
    line = np.cumsum(0.05 * 1.2 ** np.arange(10))  # neighbours 1.2× further apart each time: no gap anywhere
    spread = seeds.clear_gap(seeds.nearest_links(np.abs(line[:, None] - line[None])), drift=0.045)
    assert not spread["clear"] and spread["gap"] == pytest.approx((0.045, 0.06))  # drift → the shortest link


def test_seeds_counts_solved_and_stuck_runs_by_their_predictions():
    spec = MLPSpec((2, 2, 1), "tanh", "bce")
    r = seeds.run("numpy", spec, seeds=6, steps=600, lr=0.3)
    be, data = get_backend("numpy"), xor()
    for run in r["runs"]:
        predicted = (be.forward(spec, run["params"], data.X)[:, 0] > 0).astype(int)
        assert run["solved"] == bool((predicted == data.y).all())
    solved = [run for run in r["runs"] if run["solved"]]
    assert r["D"].shape == (len(solved), len(solved)) and np.allclose(r["D"], r["D"].T)
    assert r["drift"] == max(run["drift"] for run in solved)
    assert len({run["group"] for run in solved}) == seeds.count_groups(r["links"], r["group_threshold"])
    lo, hi = seeds.wilson(len(solved), 6)
    assert lo <= len(solved) / 6 <= hi
    assert f"{len(solved)} of 6 seeds solve XOR (seeds 0–5; {len(solved) / 6:.0%}, 95% interval {lo:.0%}–{hi:.0%})" in (
        seeds.finding([r])
    )


@pytest.mark.parametrize("sizes", ["2,9,1", "2,4,4,1", "3,2,1", "2,x,1"])
def test_seeds_rejects_networks_it_cannot_compare(sizes, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        seeds.main(["--sizes", sizes, "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and "argument --sizes" in capsys.readouterr().err


def test_noise_flips_only_training_labels_and_measures_memorization_from_the_weights():
    r = noise.run("numpy", "moons", n=40, noise=0.2, flip=0.2, widths=[2, 16], steps=300, seeds=3)
    be = get_backend("numpy")
    assert r["n_train"] == r["n_test"] == 20 and r["n_flipped"] == 4
    for width in (2, 16):
        spec = MLPSpec((2, width, width, 1), "tanh", "bce")
        for run in r["runs"][width]:
            train, test, flipped = noise.noisy_split("moons", 40, 0.2, 0.2, run["seed"])
            clean_train, clean_test = make_dataset("moons", n=40, noise=0.2, seed=run["seed"]).split(
                0.5, seed=run["seed"]
            )
            assert (train.y != clean_train.y).sum() == 4 and (train.y[flipped] != clean_train.y[flipped]).all()
            assert (test.y == clean_test.y).all()  # the test labels stay clean
            predicted = (be.forward(spec, run["params"], train.X)[:, 0] > 0).astype(int)
            assert run["memorized"][-1] == pytest.approx((predicted[flipped] == train.y[flipped]).mean())
            assert run["test_accuracy"][-1] == pytest.approx(
                ((be.forward(spec, run["params"], test.X)[:, 0] > 0) == test.y).mean()
            )
            assert run["steps"][0] == 0 and run["steps"][-1] == 300
    s = noise.summary(r)
    mem = np.array([run["memorized"][-1] for run in r["runs"][16]])
    assert s[16]["memorized"] == pytest.approx((mem.mean(), mem.std(ddof=1)))
    text = noise.finding(r)
    assert f"width 16: learns {noise.pm(s[16]['memorized'])} of the flipped labels" in text
    assert "seeds 0–2 (mean ± sd)" in text


def test_noise_calls_a_difference_clear_only_beyond_two_standard_errors():
    assert noise.paired(np.array([0.5, 0.6, 0.55, 0.52]), np.array([0.1, 0.12, 0.08, 0.1]))[2]
    assert not noise.paired(np.array([0.5, 0.1, 0.3]), np.array([0.2, 0.3, 0.3]))[2]  # mean −0.03, sd 0.3
    assert not noise.paired(np.array([0.9, 0.8]), np.array([0.1, 0.2]))[2]  # too few seeds to say


@pytest.mark.parametrize("option", [["--seed", "-1"], ["--flip", "0.5"], ["--widths", "0,4"], ["--n", "4"]])
def test_noise_rejects_bad_options_with_a_usage_error(option, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        noise.main([*option, "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and option[0] in capsys.readouterr().err


def test_unit_contributions_add_up_to_the_networks_output_exactly():
    params = init_params(paths.SPEC, seed=1)
    params[0]["b"] = np.array([0.5, -1.0, 2.0, 0.0])  # biases matter: the old path strengths ignored them
    X = xor().X
    c, z = paths.contributions(params, X)
    assert c.shape == z.shape == (4, 4)
    logits = get_backend("numpy").forward(paths.SPEC, params, X)[:, 0]
    np.testing.assert_allclose(c.sum(1) + params[1]["b"][0], logits, rtol=1e-12)
    assert c[2, 3] == pytest.approx(params[1]["W"][3, 0] * np.tanh(params[0]["W"][0, 3] + params[0]["b"][3]))


def test_unit_roles_name_where_a_unit_pushes_the_output_up():
    assert paths.role(np.array([-1.0, 2.0, -3.0, -0.5])) == "up only on (0,1)"
    assert paths.role(np.array([-1.0, 2.0, 3.0, 0.5])) == "down only on (0,0)"
    assert paths.role(np.array([1.0, 2.0, 3.0, 0.5])) == "up on all four (a bias)"
    assert paths.role(np.array([1.0, -2.0, 3.0, -0.5])) == "up on (0,0) and (1,0)"


def test_paths_counts_roles_and_saturation_from_the_trained_weights():
    r = paths.run("numpy", steps=300, lr=0.3, seeds=3)
    be, data = get_backend("numpy"), xor()
    for run in r["runs"]:
        params = init_params(paths.SPEC, run["seed"])  # retrain independently, no recording
        final = be.train(paths.SPEC, params, data.X, data.targets(paths.SPEC), SGD(0.3, momentum=0.9), 300).params
        logits = be.forward(paths.SPEC, final, data.X)[:, 0]
        np.testing.assert_allclose(run["logit"], logits, rtol=1e-9, atol=1e-12)
        assert run["solved"] == bool(((logits > 0) == data.y).all())
        z = data.X @ final[0]["W"] + final[0]["b"]
        assert run["saturation"][-1] == pytest.approx((np.abs(z) > paths.SATURATED).mean())
    text = paths.finding(r)
    for j in range(4):
        assert f"h{j + 1} adds" in text and r["runs"][0]["roles"][j] in text  # every unit is described
    sat = np.array([run["saturation"][-1] for run in r["runs"]])
    assert f"{sat.mean():.0%} ± {sat.std(ddof=1):.0%}" in text


@pytest.mark.parametrize("option", [["--lr", "nan"], ["--seed", "-1"], ["--seeds", "0"], ["--steps", "1.5"]])
def test_paths_rejects_bad_options_with_a_usage_error(option, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        paths.main([*option, "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and option[0] in capsys.readouterr().err


@pytest.mark.parametrize("concept", list(code.CONCEPTS))
def test_code_view_finds_every_concept_in_every_backend_file(concept):
    texts = code.concept_code(concept)
    assert set(texts) == {"numpy", "torch", "jax"}
    for backend, text in texts.items():
        assert text.strip(), f"{concept} is empty in {backend}"
        for symbol in code.CONCEPTS[concept][1][backend]:
            name = symbol.split(":")[-1].split(".")[-1]
            assert name.strip("_").split("_")[0] in text, f"{symbol} not in the {backend} text"


def test_code_columns_fit_the_width_or_stack():
    texts = code.concept_code("adam")
    wide = code.columns(texts, 150, code.source_files("adam"))
    assert max(map(len, wide.splitlines())) <= 150 and "numpy: backends/numpy/optim.py" in wide.splitlines()[0]
    narrow = code.columns(texts, 80)
    assert narrow.index("numpy:") < narrow.index("torch:") < narrow.index("jax:")


def test_code_writes_a_highlighted_page(tmp_path, capsys):
    page = tmp_path / "bce.html"
    assert code.main(["bce", "--html", str(page), "--width", "150"]) == 0
    text = page.read_text()
    assert text.startswith("<!doctype html>") and "binary_cross_entropy_with_logits" in text
    assert "bce_backward" in capsys.readouterr().out
