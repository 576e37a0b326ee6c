"""The comparison commands: the numbers behind each figure, checked against independent computation,
and every command run end to end with small settings, writing its files."""

import json

import numpy as np
import pytest

from backends import available_backends, get_backend
from comparisons import COMMANDS
from comparisons.__main__ import main as comparisons_main
from comparisons.agreement.boundaries import next_to_boundary
from comparisons.agreement.divergence import divergence_numbers, scaled_gaps, train_all
from comparisons.agreement.gradients import layer_gaps
from comparisons.lessons import weights
from shared.data import xor
from shared.optim import SGD
from shared.params import init_params
from shared.spec import MLPSpec

needs_two = pytest.mark.skipif(len(available_backends()) < 2, reason="needs torch or jax beside numpy")
XOR_SPEC = MLPSpec((2, 4, 1), "tanh", "bce")


# ---- the numbers ----


def test_scaled_gap_is_max_abs_difference_over_max_abs_parameter():
    data = xor()
    be = get_backend("numpy")
    a = be.train(XOR_SPEC, init_params(XOR_SPEC), data.X, data.targets(XOR_SPEC), SGD(0.5), 20, record_every=10)
    b = be.train(XOR_SPEC, init_params(XOR_SPEC), data.X, data.targets(XOR_SPEC), SGD(0.51), 20, record_every=10)
    gaps = scaled_gaps(a, b, np.array([0, 10, 20]))
    for gap, pa, pb in zip(
        gaps, [a.snapshots[0], a.snapshots[1], a.params], [b.snapshots[0], b.snapshots[1], b.params]
    ):
        va = np.concatenate([pa[0]["W"].ravel(), pa[0]["b"], pa[1]["W"].ravel(), pa[1]["b"]])
        vb = np.concatenate([pb[0]["W"].ravel(), pb[0]["b"], pb[1]["W"].ravel(), pb[1]["b"]])
        assert gap == pytest.approx(np.max(np.abs(va - vb)) / max(np.max(np.abs(va)), np.max(np.abs(vb))))
    assert gaps[0] == 0 and gaps[2] > 0


@needs_two
def test_divergence_separates_float64_agreement_from_float32_drift():
    from comparisons.core.problem import Problem

    data = xor()
    problem = Problem(data, XOR_SPEC, init_params(XOR_SPEC), data.X, data.targets(XOR_SPEC), SGD(0.5), 60, 0, None)
    backends = available_backends()
    numbers = divergence_numbers(train_all(problem, backends, record_every=10), problem)
    for p in numbers["pairs"].values():
        assert p["steps"].tolist() == [0, 10, 20, 30, 40, 50, 60]
        assert p["first_exceeded"] is None
        if p["dtype"] == "float64":
            assert p["gap"].max() < 1e-13  # the same math, a few ε apart
    for p in numbers["precision"].values():
        assert 1e-9 < p["gap"][-1] < 1e-4  # float32 rounding, visible but small


@needs_two
def test_divergence_in_mixed_precision_holds_each_format_to_its_own_tolerance_and_float64():
    """--dtype all trains the mixed formats too: their pairs are held to trajectory_mixed, each backend's
    drift is measured from its own float64 run, and the finding states both numbers per format."""
    pytest.importorskip("ml_dtypes")
    from comparisons.agreement.divergence import finding
    from comparisons.core.problem import Problem
    from shared.tolerances import tolerance
    from shared.validation import MIXED_FORMATS as MIXED

    data = xor()
    problem = Problem(data, XOR_SPEC, init_params(XOR_SPEC), data.X, data.targets(XOR_SPEC), SGD(0.5), 40, 0, None)
    a, b = TWO
    runs = train_all(problem, [a, b], record_every=10, formats=("float32", "float64", *MIXED))
    numbers = divergence_numbers(runs, problem)
    assert numbers["formats"] == ["float32", "float64", *MIXED]
    assert set(numbers["drift"]) == {"float32", *MIXED} and numbers["precision"] == numbers["drift"]["float32"]
    text = finding(numbers)
    for name in MIXED:
        dtype = name.split("-")[0]
        pair = numbers["pairs"][f"{a} vs {b} {name}"]
        tol = tolerance(dtype, "trajectory_mixed")
        assert (pair["rtol"], pair["atol"]) == (tol.rtol, tol.atol) and pair["first_exceeded"] is None
        own = get_backend(a, dtype, precision="mixed").train(
            XOR_SPEC, init_params(XOR_SPEC), data.X, data.targets(XOR_SPEC), SGD(0.5), 40
        )
        np.testing.assert_array_equal(own.params[0]["W"], runs[a, name].params[0]["W"])  # that format's own run
        drift = numbers["drift"][name][a]["gap"][-1]
        expected = scaled_gaps(runs[a, name], runs[a, "float64"], np.array([40]))[0]
        assert drift == expected and 1e-5 < drift < 0.1  # the half format's rounding, far above float32's
        assert f"In {name} (float32 params, {dtype} compute" in text and f"{pair['gap'][-1]:.1e} apart" in text


def test_divergence_trains_the_pure_half_formats_and_counts_the_weights_their_rounding_froze(capsys, tmp_path):
    """--dtype all with SGD adds pure bfloat16 and float16 (params and momentum in the format): held to
    their trajectory_sgd, drift measured from float64, and the finding counts the parameters that did
    not move over the run's last tenth, from the snapshots (XOR, 300 steps, lr 0.5: in bfloat16 every
    one of the 17 stops, as lr·g falls under half an ulp). A pure format cannot train Adam: asked for by
    name it is a usage error with the reason, and --dtype all leaves it out with a note."""
    pytest.importorskip("ml_dtypes")
    from comparisons.agreement.divergence import finding, frozen
    from comparisons.agreement.divergence import main as divergence_main
    from comparisons.core.problem import Problem
    from shared.params import flatten
    from shared.tolerances import tolerance

    data = xor()
    problem = Problem(data, XOR_SPEC, init_params(XOR_SPEC), data.X, data.targets(XOR_SPEC), SGD(0.5), 300, 0, None)
    a, b = TWO
    runs = train_all(problem, [a, b], record_every=10, formats=("float32", "float64", "bfloat16"))
    numbers = divergence_numbers(runs, problem)
    assert numbers["formats"] == ["float32", "float64", "bfloat16"]
    pair, tol = numbers["pairs"][f"{a} vs {b} bfloat16"], tolerance("bfloat16", "trajectory_sgd")
    assert (pair["rtol"], pair["atol"]) == (tol.rtol, tol.atol)
    still = frozen(runs[a, "bfloat16"])
    before, after = flatten(runs[a, "bfloat16"].snapshot(270)), flatten(runs[a, "bfloat16"].params)
    assert still == {"since": 270, "steps": 300, "unchanged": int((before == after).sum()), "of": 17}
    assert still["unchanged"] == 17  # the whole network stopped: the claim the finding makes
    text = finding(numbers)
    assert "In bfloat16 (params, momentum and compute in bfloat16" in text
    assert "from step 270 to 300 17 of the 17 parameters did not change at all" in text
    assert numbers["frozen"].keys() == {f"{a} bfloat16", f"{b} bfloat16"}
    with pytest.raises(SystemExit):
        divergence_main(["--dtype", "bfloat16", "--optimizer", "adam", "--backends", "numpy"])
    err = capsys.readouterr().err
    assert "--dtype bfloat16: bfloat16 cannot train with Adam(lr=0.5): its β₂ = 0.999" in err
    assert "Choose bfloat16-mixed (float32 params), or --optimizer sgd" in err
    argv = ["--dtype", "all", "--optimizer", "adam", "--steps", "5", "--backends", "numpy", "--out", str(tmp_path)]
    assert divergence_main(argv) == 0
    assert "bfloat16, float16 cannot train with Adam(lr=0.5): its β₂ = 0.999" in capsys.readouterr().err
    formats = json.loads((tmp_path / "divergence.json").read_text())["formats"]
    assert formats == ["float32", "float64", "bfloat16-mixed", "float16-mixed"]


def test_the_tolerance_marker_sits_where_the_plotted_ratio_first_crosses_one():
    from comparisons.agreement.divergence import check_ratios
    from shared.tolerances import tolerance
    from shared.trajectory import compare

    data, be, tol = xor(), get_backend("numpy"), tolerance("float64", "trajectory")
    X, y = data.X, data.targets(XOR_SPEC)
    a = be.train(XOR_SPEC, init_params(XOR_SPEC), X, y, SGD(0.5), 60, record_every=7)
    b = be.train(XOR_SPEC, init_params(XOR_SPEC), X, y, SGD(0.5 * (1 + 1e-7)), 60, record_every=7)
    c = compare(a, b, tol)
    ratio = check_ratios(a, b, tol, c.steps)
    assert c.first_exceeded is not None and 0 < c.first_exceeded < 60
    crossing = int(np.flatnonzero(ratio > 1)[0])
    assert c.steps[crossing] == c.steps[c.steps >= c.first_exceeded][0]  # the marker's point is above 1 ...
    assert (ratio[:crossing] <= 1).all()  # ... and is the first one that is
    s, previous = int(c.steps[crossing]), int(c.steps[crossing - 1])
    pa, pb = a.snapshot(s), b.snapshot(s)
    va = np.concatenate([pa[0]["W"].ravel(), pa[0]["b"], pa[1]["W"].ravel(), pa[1]["b"]])
    vb = np.concatenate([pb[0]["W"].ravel(), pb[0]["b"], pb[1]["W"].ravel(), pb[1]["b"]])
    la, lb = a.losses[previous + 1 : s + 1], b.losses[previous + 1 : s + 1]
    expected = max(
        np.max(np.abs(va - vb) / (tol.atol + tol.rtol * np.maximum(np.abs(va), np.abs(vb)))),
        np.max(np.abs(la - lb) / (tol.atol + tol.rtol * np.maximum(np.abs(la), np.abs(lb)))),
    )
    assert ratio[crossing] == pytest.approx(expected, rel=1e-12)


def test_divergence_says_when_every_run_diverged():
    from comparisons.agreement.divergence import finding
    from comparisons.core.problem import Problem

    data = xor()
    problem = Problem(data, XOR_SPEC, init_params(XOR_SPEC), data.X, data.targets(XOR_SPEC), SGD(1e6), 20, 0, None)
    numbers = divergence_numbers(train_all(problem, ["numpy"], record_every=5), problem)
    for key, losses in numbers["losses"].items():  # the loss never comes back below where it started
        assert losses[-1] > losses[0] and (losses[1:] > losses[0]).all(), key
        assert numbers["diverged_at"][key] == 1
    text = finding(numbers)
    assert "Every run diverged" in text and "all 2 runs from step 1" in text
    assert "tolerance" not in text  # one backend: no pair was compared, so no claim about one


def test_layer_gaps_are_relative_to_the_layers_largest_gradient():
    ga = [{"W": np.array([[1.0, -2.0]]), "b": np.array([0.5, 0.0])}]
    gb = [{"W": np.array([[1.0, -2.5]]), "b": np.array([0.25, 0.0])}]
    (gap,) = layer_gaps(ga, gb)
    assert gap.shape == (2, 2)  # W row, then the bias row
    np.testing.assert_allclose(gap, [[0.0, 0.5 / 2.5], [0.25 / 2.5, 0.0]])


def test_percentages_never_round_to_100_or_0_unless_exact():
    from comparisons.agreement.boundaries import percent

    assert [percent(x) for x in (1.0, 0.995, 0.9999, 0.5, 0.0007, 0.0)] == [
        "100%",
        "99.5%",
        "99.99%",
        "50%",
        "0.07%",
        "0%",
    ]


def test_boundaries_reports_the_accuracy_it_measured():
    from comparisons.agreement import boundaries

    r = boundaries.boundaries(boundaries.PRESETS["moons"], ["numpy"], "float64", 0, None, 20)
    data, spec = r["data"], r["spec"]
    be = get_backend("numpy", "float64")
    trained = be.train(
        spec, init_params(spec, seed=0), data.X, data.targets(spec), boundaries.make_optimizer("adam", 0.01), 1000
    ).params
    correct = int(((be.forward(spec, trained, data.X)[:, 0] > 0).astype(int) == data.y).sum())
    assert correct == 199 and r["accuracy"]["numpy"] == correct / 200  # one point of 200 wrong
    assert "training accuracy numpy 99.5%;" in boundaries.finding({"moons": r})
    assert r["seconds"]["numpy"] > 0


def test_gradient_gaps_are_taken_at_init_and_after_the_training_the_options_describe():
    from comparisons.agreement import gradients
    from comparisons.core.problem import Problem

    data = xor()
    y = data.targets(XOR_SPEC)
    problem = Problem(data, XOR_SPEC, init_params(XOR_SPEC), data.X, y, SGD(0.5), 30, 0, None)
    at = gradients.checkpoints(problem)
    trained = get_backend("numpy").train(XOR_SPEC, init_params(XOR_SPEC), data.X, y, SGD(0.5), 30).params
    assert list(at) == [0, 30]
    for layer, expected in zip(at[30], trained):
        np.testing.assert_array_equal(layer["W"], expected["W"])
    assert not np.array_equal(at[0][0]["W"], at[30][0]["W"])  # --steps/--lr/--optimizer change what is compared


def test_gradients_finding_states_the_spread_it_measured():
    from comparisons.agreement import gradients

    gaps = [np.full((3, 4), 2e-16), np.full((5, 1), 2.6e-16)]  # layer 1 has the larger gap: 1.3×
    numbers = {"gaps": {(0, "float64", "numpy", "torch"): gaps}, "n_layers": 2, "steps": [0]}
    numbers["worst"] = {(0, "float64"): (2.6e-16, "layer 1 W[0, 0] (numpy vs torch)")}
    text = gradients.finding(numbers)
    assert "within a factor 1.3 of each other" in text and "1×" not in text
    assert "At initialization" in text and f"({2.6e-16 / np.finfo(np.float64).eps:.1f} ε)" in text


def test_next_to_boundary_marks_both_sides_of_a_class_change():
    classes = np.array([[0, 0, 0, 1, 1]] * 3)
    near = next_to_boundary(classes)
    assert near[:, 2:4].all() and not near[:, [0, 1, 4]].any()


def test_settled_means_still_in_the_tail_and_settle_step_is_where_it_stays_put():
    t = np.arange(201, dtype=float)
    converging = 1 - np.exp(-t / 10)  # moves ~2e-8 of its range in the last 20 steps: settled
    drifting = np.log1p(t / 10)  # the cross-entropy drift: ~3 % of its range in the last 20 steps
    series = np.stack([converging, drifting], axis=1)
    tail = weights.tail_movement(series)
    for k, x in enumerate((converging, drifting)):
        assert tail[k] == pytest.approx(np.sum(np.abs(np.diff(x[-21:]))) / np.ptp(x))
    assert weights.settled(series).tolist() == [True, False]
    assert 0.02 < tail[1] < 0.04 and tail[0] < 1e-6  # far from the 0.1 % line on either side
    inside = np.abs(converging - converging[-1]) <= 0.001 * np.ptp(converging)
    expected = int(np.flatnonzero(~inside).max()) + 1  # analytically: ln(1000) · 10 ≈ 69
    assert weights.settle_steps(series)[0] == expected and 68 <= expected <= 70


def test_reversals_count_real_turns_and_ignore_jitter():
    rng = np.random.default_rng(0)
    t = np.arange(400)
    triangle = np.abs((t % 40) - 20.0)  # turns at 20, 40, ..., 380: 19 turns
    monotone = t / 400 + 1e-4 * rng.standard_normal(400)  # jitter of 1e-4 on a range of 1: no turn
    overshoot = np.concatenate([np.linspace(0, 1.2, 100), np.linspace(1.2, 1.0, 300)])  # one turn back
    bump = np.concatenate([np.linspace(0, 1, 100), np.linspace(1, 0.5, 100), np.full(200, 0.5)])
    series = np.stack([triangle, monotone, overshoot, bump], axis=1)
    assert weights.reversals(series).tolist() == [19, 0, 1, 1]
    small = np.stack([np.sin(t / 5) * 0.01 + t / 400], axis=1)  # wiggles of 2 % of the range ≥ SWING
    assert weights.reversals(small, swing=0.5).tolist() == [0]


def test_weights_finding_names_what_the_numbers_show():
    t = np.arange(301, dtype=float)
    series = np.stack(
        [1 - np.exp(-t / 10), np.log1p(t), np.cos(t * np.pi / 25) * np.exp(-t / 200)], axis=1
    )  # settles; drifts; rings with 11 reversals
    names = ["a", "b", "c"]
    numbers = {
        "names": names,
        "series": {"numpy": series, "torch": series + 1e-15},
        "reference": "numpy",
        "range": weights.value_range(series),
        "tail_movement": weights.tail_movement(series),
        "settled": weights.settled(series),
        "settle": weights.settle_steps(series),
        "reversals": weights.reversals(series),
        "gap": {"numpy": 0.0, "torch": 2.5e-16},
        "steps": 300,
    }
    assert numbers["reversals"].tolist() == [0, 0, 11]
    text = weights.finding(numbers, 300)
    assert (
        f"1 settled (moved < 0.1% of their range in the last 30 of 300 steps); first: a (step {numbers['settle'][0]})"
        in text
    )
    assert "The other 2 still move at the end" in text and "b (" in text
    assert "1 oscillates" in text and "c (11 reversals)" in text
    assert "torch never differs from numpy by more than 2.5e-16 of the largest parameter" in text


def test_learning_rate_markers_of_the_two_problems_never_hide_each_other():
    pytest.importorskip("matplotlib")
    from comparisons.lessons import learning_rates

    results = learning_rates.sweep("numpy", np.array([0.002, 0.2, 30.0]), steps=60, seeds=2)
    ax = learning_rates.plot(results, 60).axes[0]
    drawn = {}  # (problem, outcome) -> the learning rates drawn with that marker
    for line in ax.get_lines():
        label = line.get_label()
        if line.get_linestyle() == "None" and not label.startswith("_"):
            name, outcome = label.split(": ")
            drawn[name, outcome] = list(zip(line.get_xdata(), line.get_ydata()))
    for name, rates in results.items():  # each outcome judged here from the losses, independently
        diverged, short = [], []
        for rate in rates:
            runs = rate["runs"]
            if any(len(r["losses"]) < 60 or r["losses"][-1] > r["losses"][0] for r in runs):
                diverged.append(rate["lr"])
            elif all(r["losses"][-1] >= learning_rates.TARGETS[name] for r in runs):
                short.append(rate["lr"])
        assert [x for x, _ in drawn[name, "diverged"]] == diverged == [30.0], name
        assert [x for x, _ in drawn[name, "none converged"]] == short and 0.002 in short, name
    points = [p for pts in drawn.values() for p in pts]
    assert len(points) == len(set(points)) >= 4  # xor's markers sit in their own rows, not under moons'


# ---- the commands, end to end ----


def test_listing_names_every_command(capsys):
    assert comparisons_main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_unknown_command_is_an_error(capsys):
    assert comparisons_main(["plot-everything"]) == 2
    assert "unknown command 'plot-everything'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["parity", "--steps", "-3"], "argument --steps: expected a positive integer, got -3"),
        (["parity", "--dataset", "mnist"], "argument --dataset: invalid choice: 'mnist'"),
        (["parity", "--sizes", "3,4,1"], "dataset 'xor' has 2 features: start --sizes with 2"),
        (["divergence", "--dataset", "blobs", "--sizes", "2,4,1"], "do not fit dataset 'blobs'"),
        (["weights", "--spec", "2,4,1:swish"], "unknown activation 'swish' in --spec"),
        (["boundaries", "--datasets", "xor,mnist"], "expected names from xor, moons"),
        (["gradients", "--batch-size", "5000"], "--batch-size 5000 is larger than the dataset"),
        (["learning-rates", "--min-lr", "1", "--max-lr", "0.1"], "need 0 < --min-lr < --max-lr"),
        (["noise", "--widths", "2,x"], "--widths: expected positive integers"),
        (["divergence", "--points", "-3"], "argument --points: expected a positive integer, got -3"),
        (["boundaries", "--resolution", "1000000"], "argument --resolution: expected an integer from 10 to 1,000"),
        (["learning-rates", "--max-lr", "inf"], "argument --max-lr: expected a finite number > 0, got inf"),
        (["learning-rates", "--min-lr", "nan"], "argument --min-lr: expected a finite number > 0, got nan"),
        (["learning-rates", "--points", "1"], "argument --points: expected an integer from 2 to 40, got 1"),
        (["seeds", "--sizes", "3,2,1"], "argument --sizes: expected 2,H,1"),
        (["code", "transformer"], "unknown concept 'transformer'"),
        (["parity", "--model", "gpt", "--sizes", "2,4,1"], "--sizes is an MLP option"),
        (["parity", "--gpt", "8,8,16,3,1"], "d = 16 must be divisible by h = 3"),
        (["divergence", "--gpt", "8,8"], "argument --gpt: expected 5 numbers"),
        (["gradients", "--model", "mlp", "--gpt", "8,8,16,2,1"], "--gpt describes a transformer"),
        (["gradients", "--model", "gpt", "--activation", "sigmoid"], "--activation sigmoid: a GPT's MLP takes"),
        (["parity", "--model", "gpt", "--n", "4", "--batch-size", "5"], "--batch-size 5 is larger than the data"),
    ],
)
def test_bad_options_get_a_clear_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        comparisons_main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


COMMAND_RUNS = {
    "parity": (["--steps", "20"], ["parity.json"]),
    "divergence": (["--steps", "40", "--points", "10"], ["divergence.png", "divergence.json"]),
    "gradients": (["--n", "60", "--sizes", "2,6,3"], ["gradients.png", "gradients.json"]),
    "boundaries": (["--datasets", "xor", "--steps", "50", "--resolution", "40"], ["boundaries.png", "boundaries.json"]),
    "weights": (["--steps", "40", "--seeds", "2"], ["weights.png", "weights.json"]),
    "tour": (["--steps", "60"], ["divergence.png", "boundaries.png"]),
    "hidden-layer": (["--steps", "200", "--seeds", "1"], ["hidden-layer.png", "hidden-layer.json"]),
    "learning-rates": (["--steps", "100", "--points", "3"], ["learning-rates.png", "learning-rates.json"]),
    "seeds": (["--seeds", "3", "--steps", "200"], ["seeds.png", "seeds.json"]),
    "noise": (["--steps", "100", "--widths", "2,8", "--n", "40", "--seeds", "3"], ["noise.png", "noise.json"]),
    "paths": (["--steps", "50"], ["paths.png", "paths.json"]),
    "data-parallel": (
        ["--backends", "numpy", "--steps", "6", "--seeds", "1", "--widths", "8"],
        ["data-parallel.png", "data-parallel.json"],
    ),
}


@pytest.mark.parametrize("command", list(COMMAND_RUNS))
def test_each_command_writes_its_files_and_a_finding(command, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    if command in ("parity", "gradients") and len(available_backends()) < 2:
        pytest.skip("needs two backends")
    args, files = COMMAND_RUNS[command]
    assert comparisons_main([command, *args, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in files:
        assert (tmp_path / name).stat().st_size > 0, f"{command} did not write {name}"
        assert str(tmp_path / name) in out or command == "tour" and name.endswith(".json")
    for name in files:
        if name.endswith(".json"):
            data = json.loads((tmp_path / name).read_text())
            assert data.get("finding") or data.get("rows")


def _numbers(cross32, cross64, precision):
    pairs = {f"p{i} float32": {"dtype": "float32", "gap": [g], "first_exceeded": None} for i, g in enumerate(cross32)}
    pairs |= {f"p{i} float64": {"dtype": "float64", "gap": [g], "first_exceeded": None} for i, g in enumerate(cross64)}
    return {"pairs": pairs, "precision": {f"b{i}": {"gap": [g]} for i, g in enumerate(precision)}}


@pytest.mark.parametrize(
    "cross32, cross64, precision, says",
    [
        ([1e-8], [1e-16], [1e-6], "the precision, not the framework"),
        ([1e-5], [1e-16], [1e-7], "here the framework matters"),
        ([3e-7], [1e-16], [4e-7], "the drift is float32's, not any framework's"),
        ([0.2], [0.5], [0.3], "these training dynamics are chaotic"),
    ],
)
def test_divergence_finding_follows_the_numbers(cross32, cross64, precision, says):
    from comparisons.agreement.divergence import finding

    text = finding(_numbers(cross32, cross64, precision))
    assert says in text
    assert ("a few ε: the same math" in text) == (max(cross64) < 1e-10)


# ---- --model gpt: the tiny transformer through parity, divergence and gradients ----

GPT_ARGS = ["--model", "gpt", "--gpt", "5,4,8,2,1", "--n", "4", "--steps", "3"]
# two backends keep these runs to seconds: torch starts faster than JAX compiles
TWO = (["numpy", "torch"] if "torch" in available_backends() else available_backends())[:2]


def _gpt_problem():
    from comparisons.core.options import make_parser
    from comparisons.core.problem import XOR, build_problem

    parser = make_parser("test", "", XOR, gpt=True)
    return build_problem(parser, parser.parse_args(GPT_ARGS))


def test_the_gpt_problem_is_next_token_prediction_on_strides():
    from shared.spec import GPTSpec

    problem = _gpt_problem()
    assert problem.spec == GPTSpec(5, 4, 8, 2, 1, activation="gelu")
    assert problem.X.shape == problem.y.shape == (4, 4) and problem.X.dtype == np.int64
    np.testing.assert_array_equal(problem.y[:, :-1], problem.X[:, 1:])  # the target is the next token
    steps = (problem.X[:, 1:] - problem.X[:, :-1]) % 5
    assert (steps == steps[:, :1]).all() and set(steps[:, 0]) <= {1, 2, 3}  # one stride per sequence
    np.testing.assert_array_equal(_gpt_problem().X, problem.X)  # made from the seed: the same every time
    assert "strides (4 sequences of 4 tokens), GPT V=5 T=4 d=8 h=2 L=1" in problem.describe()
    assert "Adam(lr=0.01), 3 steps" in problem.describe()


def test_mlp_options_keep_their_defaults_beside_model():
    from comparisons.core.options import make_parser
    from comparisons.core.problem import XOR, build_problem

    parser = make_parser("test", "", XOR, gpt=True)
    problem = build_problem(parser, parser.parse_args([]))
    assert problem.spec == XOR_SPEC and problem.steps == 500 and problem.optimizer == SGD(0.5)


@needs_two
def test_parity_gpt_rows_are_closeness_computed_directly(tmp_path, capsys):
    from shared.optim import Adam
    from shared.tolerances import closeness, tolerance

    argv = ["parity", *GPT_ARGS, "--dtype", "float64", "--backends", ",".join(TWO), "--out", str(tmp_path)]
    code = comparisons_main(argv)
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "parity.json").read_text())["rows"]
    problem, backends = _gpt_problem(), TWO
    results = {}
    for name in backends:
        be = get_backend(name, "float64")
        loss, grads = be.loss_and_grads(problem.spec, problem.params, problem.X, problem.y)
        trained = be.train(problem.spec, problem.params, problem.X, problem.y, Adam(0.01), 3).params
        results[name] = {
            "forward": be.forward(problem.spec, problem.params, problem.X),
            "loss": loss,
            "grads": grads,
            "params after 3 steps": trained,
        }
    seen = 0
    for row in rows:
        a, b = row["pair"]
        if row["quantity"] not in results[a]:
            assert row["quantity"].strip().startswith("… without") and "bk" in row["quantity"]
            continue
        kind = {"forward": "forward", "loss": "grads", "grads": "grads"}.get(row["quantity"], "trajectory")
        c = closeness(results[a][row["quantity"]], results[b][row["quantity"]], tolerance("float64", kind))
        assert (row["max_abs"], row["max_rel"], row["ok"], row["worst"]) == (c.max_abs, c.max_rel, c.ok, c.worst)
        seen += 1
    assert seen == 4 * len(backends) * (len(backends) - 1) // 2
    assert code == (0 if all(r["ok"] for r in rows) else 1) and "comparisons within tolerance" in out


@needs_two
def test_parity_compares_the_half_formats_and_mixed_precision_as_far_as_each_goes(tmp_path, capsys):
    """--dtype all: every format's forward, loss and grads, and the trained params (mixed precision
    held to trajectory_mixed, SGD in a pure half format to that format's trajectory_sgd)."""
    pytest.importorskip("ml_dtypes")
    from shared.tolerances import tolerance

    argv = ["parity", "--dtype", "all", "--steps", "40", "--backends", ",".join(TWO), "--out", str(tmp_path)]
    code = comparisons_main(argv)
    captured = capsys.readouterr()
    rows = json.loads((tmp_path / "parity.json").read_text())["rows"]
    by_format = {}
    for row in rows:
        by_format.setdefault(row["dtype"], set()).add(row["quantity"])
    full = {"forward", "loss", "grads", "params after 40 steps"}
    assert by_format == {
        "float64": full,
        "float32": full,
        "bfloat16": full,  # SGD trains in a pure half format (held to its trajectory_sgd)
        "float16": full,
        "bfloat16-mixed": full,
        "float16-mixed": full,
    }
    mixed = next(r for r in rows if r["dtype"] == "bfloat16-mixed" and r["quantity"].startswith("params"))
    assert (mixed["rtol"], mixed["atol"]) == (
        tolerance("bfloat16", "trajectory_mixed").rtol,
        tolerance("bfloat16", "trajectory_mixed").atol,
    )
    pure = next(r for r in rows if r["dtype"] == "float16" and r["quantity"].startswith("params"))
    want = tolerance("float16", "trajectory_sgd")
    assert (pure["rtol"], pure["atol"]) == (want.rtol, want.atol)
    assert code == 0, captured.out


@needs_two
def test_divergence_gpt_records_the_losses_each_backend_trains_to(tmp_path, capsys):
    from shared.optim import Adam

    argv = ["divergence", *GPT_ARGS, "--points", "3", "--backends", ",".join(TWO), "--out", str(tmp_path)]
    assert comparisons_main(argv) == 0
    data = json.loads((tmp_path / "divergence.json").read_text())
    problem = _gpt_problem()
    direct = get_backend("numpy", "float64").train(problem.spec, problem.params, problem.X, problem.y, Adam(0.01), 3)
    np.testing.assert_array_equal(data["losses"]["numpy float64"], direct.losses)
    assert list(data["rounding_noise"]) == ["blocks[0].attn.bk"]
    assert data["gap_without_noise"]["float64"] < 1e-12 and "blocks[0].attn.bk" in data["finding"]
    assert (tmp_path / "divergence.png").stat().st_size > 0


@needs_two
def test_gradients_gpt_gaps_are_per_tensor_and_computed_from_the_grads(tmp_path, capsys):
    from shared.params import named_leaves

    argv = ["gradients", *GPT_ARGS, "--backends", ",".join(TWO), "--out", str(tmp_path)]
    assert comparisons_main(argv) == 0
    data = json.loads((tmp_path / "gradients.json").read_text())
    problem = _gpt_problem()
    a, b = TWO
    ga = named_leaves(get_backend(a, "float32").loss_and_grads(problem.spec, problem.params, problem.X, problem.y)[1])
    gb = dict(
        named_leaves(get_backend(b, "float32").loss_and_grads(problem.spec, problem.params, problem.X, problem.y)[1])
    )
    gaps = data["gaps"][f"step 0 float32 {a} {b}"]
    assert list(gaps) == [name for name, _ in ga]
    for name, g in ga:
        g, h = g.astype(np.float64), gb[name].astype(np.float64)
        expected = np.abs(g - h).max() / max(np.abs(g).max(), np.abs(h).max())
        assert gaps[name] == pytest.approx(expected, rel=1e-12), name
    worst, where = data["worst"]["step 0 float32"]
    assert "attn.bk" not in where and worst < 1e-5  # the noise tensor is left out of the worst ...
    assert gaps["blocks[0].attn.bk"] > 0.1  # ... where the gap is noise against noise
    assert "Left out: blocks[0].attn.bk" in data["finding"]


@needs_two
def test_gradients_in_every_format_are_each_formats_own_grads_in_its_own_eps(tmp_path, capsys):
    """--dtype all: a heatmap row per pair and format, each gap computed from that format's gradients
    (mixed: float32 gradients computed in the half format) and stated in that format's ε; at the
    initial params no format's pairs are further apart than the grads tolerance, 8 of its ε."""
    pytest.importorskip("ml_dtypes")
    from shared.validation import FORMATS, split_format
    from shared.validation import format_eps as eps_of

    argv = ["gradients", "--dtype", "all", "--sizes", "2,6,3", "--n", "40", "--steps", "20"]
    assert comparisons_main([*argv, "--backends", ",".join(TWO), "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "gradients.json").read_text())
    assert set(data["worst"]) == {f"step {s} {f}" for s in (0, 20) for f in FORMATS}
    a, b = TWO
    from comparisons.core.options import make_parser
    from comparisons.core.problem import SPIRALS, build_problem

    parser = make_parser("gradients", "", SPIRALS)
    problem = build_problem(parser, parser.parse_args(argv[3:]))  # the same problem, built again
    for name in ("bfloat16", "float16-mixed"):
        dtype, precision = split_format(name)
        ga, gb = (
            get_backend(x, dtype, precision=precision).loss_and_grads(
                problem.spec, problem.params, problem.X, problem.y
            )[1]
            for x in (a, b)
        )
        expected = layer_gaps(ga, gb)
        got = data["gaps"][f"step 0 {name} {a} {b}"]
        for g, e in zip(got, expected):
            np.testing.assert_allclose(np.array(g), e, rtol=1e-12)
        worst = data["worst"][f"step 0 {name}"][0]
        assert 0 < worst <= 8 * eps_of(name), name
        assert f"in {name} {worst:.1e} ({worst / eps_of(name):.1f} ε)" in data["finding"]
    assert eps_of("bfloat16-mixed") == 2.0**-7 and eps_of("float16") == 2.0**-10


@needs_two
def test_gradients_of_the_gpt_in_a_pure_half_format_are_each_formats_own(tmp_path):
    """The GPT computes in a pure half format too: `gradients --dtype bfloat16` writes each pair's
    largest relative gradient gap, every one within the 8ε of bfloat16's grads tolerance."""
    pytest.importorskip("ml_dtypes")
    assert comparisons_main(["gradients", *GPT_ARGS, "--dtype", "bfloat16", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "gradients.json").read_text())
    worst = [v[0] for k, v in data["worst"].items() if k.endswith(" bfloat16")]
    assert worst and all(0 < w <= 8 * 2.0**-7 for w in worst)


# ---- what the figures say, read back from the drawn figure ----


def _xor_divergence(backends, steps=10):
    from comparisons.core.problem import Problem
    from shared.tolerances import trajectory_tolerance

    data = xor()
    problem = Problem(data, XOR_SPEC, init_params(XOR_SPEC), data.X, data.targets(XOR_SPEC), SGD(0.5), steps, 0, None)
    numbers = divergence_numbers(train_all(problem, backends, record_every=1), problem)
    return numbers, problem, {d: trajectory_tolerance(d, problem.optimizer) for d in ("float32", "float64")}


def test_divergence_names_eps_and_the_tolerance_beside_the_axes_where_no_curve_reaches():
    pytest.importorskip("matplotlib")
    from comparisons.agreement import divergence_figure

    fig = divergence_figure.plot(*_xor_divergence(["numpy"]))
    fig.canvas.draw()
    gap_ax, tol_ax = fig.axes[0], fig.axes[1]
    for ax, levels in [
        (gap_ax, {"float32 ε": np.finfo(np.float32).eps, "float64 ε": np.finfo(np.float64).eps}),
        (tol_ax, {"the tolerance": 1.0}),
    ]:
        (side,) = ax.child_axes  # the secondary axis at the right
        labels = [t for t in side.get_yticklabels() if t.get_text()]
        assert {t.get_text(): t.get_position()[1] for t in labels} == pytest.approx(levels, rel=1e-12)
        right_edge = ax.get_window_extent().x1
        assert all(t.get_window_extent().x0 > right_edge for t in labels)  # outside the data area
        assert not [t.get_text() for t in ax.texts if t.get_text() in levels]  # not written over the curves


def _first_beyond(a, b, tol) -> int | None:
    """The first step where a parameter or the loss of two runs recorded at every step differ by more than
    atol + rtol·max(|a|, |b|), found by walking the steps."""
    from shared.params import flatten

    for s in range(min(len(a), len(b))):
        pa, pb = flatten(a.snapshot(s)).astype(np.float64), flatten(b.snapshot(s)).astype(np.float64)
        la, lb = float(a.losses[s]), float(b.losses[s])
        if (np.abs(pa - pb) > tol.atol + tol.rtol * np.maximum(np.abs(pa), np.abs(pb))).any():
            return s
        if not abs(la - lb) <= tol.atol + tol.rtol * max(abs(la), abs(lb)):
            return s
    return None


@needs_two
def test_each_dtypes_tolerance_crossing_is_labelled_with_the_first_step_its_pairs_leave_it():
    """The chaotic moons run of the README, cut short: every crossing label names the first step each of
    its pairs leaves the tolerance, walked step by step on the trajectories, and every pair that leaves
    it is in exactly one label."""
    pytest.importorskip("matplotlib")
    import itertools
    import re

    from comparisons.agreement import divergence, divergence_figure
    from comparisons.core.options import make_parser
    from comparisons.core.problem import XOR, build_problem
    from shared.tolerances import trajectory_tolerance

    parser = make_parser("test", "", XOR)
    args = "--dataset moons --n 100 --noise 0.2 --sizes 2,16,16,1 --lr 1.0 --steps 160".split()
    problem = build_problem(parser, parser.parse_args(args))
    backends = available_backends()
    runs = train_all(problem, backends, record_every=1)
    expected = {}
    for dtype in divergence.DTYPES:
        tol = trajectory_tolerance(dtype, problem.optimizer)
        for a, b in itertools.combinations(backends, 2):
            step = _first_beyond(runs[a, dtype], runs[b, dtype], tol)
            if step is not None:
                expected[f"{a} vs {b}", dtype] = step
    assert expected, "the run is chaotic: some pair leaves its tolerance within 160 steps"
    numbers = divergence_numbers(runs, problem)
    fig = divergence_figure.plot(
        numbers, problem, {d: trajectory_tolerance(d, problem.optimizer) for d in divergence.DTYPES}
    )
    labelled = {}
    for text in fig.axes[1].texts:
        m = re.fullmatch(r"(float\d\d) crosses at step (\d+) \((.*)\)", text.get_text())
        if m:
            dtype, step, which = m.group(1), int(m.group(2)), m.group(3)
            pairs = [f"{a} vs {b}" for a, b in itertools.combinations(backends, 2)] if which.startswith("all") else []
            for pair in pairs or which.split(", "):
                assert (pair, dtype) not in labelled, f"{pair} {dtype} labelled twice"
                labelled[pair, dtype] = step
    assert labelled == expected
    pair_count = len(list(itertools.combinations(backends, 2)))
    for group in divergence_figure.crossings(numbers):  # "all n pairs" only when it is all of them
        assert ("all" in divergence_figure.crossing_label(group)) == (len(group["pairs"]) == pair_count > 1)


def test_crossing_labels_group_a_dtypes_pairs_by_step():
    from comparisons.agreement.divergence_figure import crossing_label, crossings

    def pair(a, b, dtype, step):
        return {"pair": [a, b], "dtype": dtype, "first_exceeded": step}

    numbers = {
        "pairs": {
            "1": pair("numpy", "torch", "float32", 98),
            "2": pair("numpy", "jax", "float32", 98),
            "3": pair("torch", "jax", "float32", 98),
            "4": pair("numpy", "torch", "float64", 119),
            "5": pair("numpy", "jax", "float64", 112),
            "6": pair("torch", "jax", "float64", None),
        }
    }
    assert [crossing_label(g) for g in crossings(numbers)] == [
        "float32 crosses at step 98 (all 3 pairs)",
        "float64 crosses at step 112 (numpy vs jax)",
        "float64 crosses at step 119 (numpy vs torch)",
    ]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weights_title_names_the_dtype_the_runs_trained_in(dtype):
    pytest.importorskip("matplotlib")
    data, be = xor(), get_backend("numpy", dtype)
    run = be.train(XOR_SPEC, init_params(XOR_SPEC), data.X, data.targets(XOR_SPEC), SGD(0.5), 5, record_every=1)
    assert run.params[0]["W"].dtype == np.dtype(dtype)
    numbers = weights.weight_numbers({"numpy": run}, XOR_SPEC)
    assert numbers["dtype"] == dtype
    title = weights.plot(numbers, XOR_SPEC, "xor").get_suptitle()
    assert title.startswith(f"Every parameter during training, {dtype} — ")


def test_disagreeing_cells_are_where_any_backend_predicts_another_class():
    from comparisons.agreement.boundaries import disagreeing_cells

    a = np.array([[0, 1], [2, 2]])
    b = np.array([[0, 1], [2, 1]])
    c = np.array([[1, 1], [2, 2]])
    assert disagreeing_cells({"a": a, "b": b, "c": c}).tolist() == [[True, False], [False, True]]
    assert not disagreeing_cells({"a": a, "a again": a.copy()}).any()
    assert not disagreeing_cells({"alone": a}).any()


@needs_two
def test_boundaries_marks_exactly_the_cells_where_the_backends_argmax_differs():
    """Spirals cut to 400 steps, where float32 rounding already moves a boundary: the ✕ on every panel
    are the grid cells where the argmax of the backends' logits, recomputed here, are not all equal."""
    pytest.importorskip("matplotlib")
    from comparisons.agreement import boundaries

    backends = available_backends()
    r = boundaries.boundaries(boundaries.PRESETS["spirals"], backends, "float32", 0, 400, 120)
    grid = np.column_stack([r["gx"].ravel(), r["gy"].ravel()])
    argmax = [
        get_backend(name, "float32").forward(r["spec"], r["params"][name], grid).argmax(axis=1).reshape(r["gx"].shape)
        for name in backends
    ]
    expected = np.any([classes != argmax[0] for classes in argmax[1:]], axis=0)
    np.testing.assert_array_equal(r["differ"], expected)
    fig = boundaries.plot({"spirals": r}, backends, "float32")
    cells = {(x, y) for x, y in zip(r["gx"][expected], r["gy"][expected])}
    for ax in fig.axes:
        marks = [c for c in ax.collections if c.get_gid() == "differ"]
        assert (len(marks) == 1) == bool(expected.any())
        if marks:
            assert {tuple(xy) for xy in marks[0].get_offsets()} == cells
    share = boundaries.percent(expected.mean())
    caption = f"differ on {int(expected.sum())} of {expected.size:,} cells ({share})"
    assert (caption in fig.axes[0].get_ylabel()) == bool(expected.any())
