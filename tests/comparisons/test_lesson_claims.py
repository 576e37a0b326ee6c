"""Every lesson's printed finding, re-checked on seeds it was never tuned on.

A lesson's finding is a claim: the numbers it interpolates into its text must follow from its runs.
Each test here runs a lesson on a fresh seed range (FRESH on, small settings so the suite stays fast),
recomputes every number the text states from the raw runs, independently of the lesson's own summary
code, and checks the text says exactly that. A lesson that states one seed's luck, rounds a claim
past its data, or mislabels which quantity it reports fails here.
"""

import re

import numpy as np
import pytest

from comparisons.backprop import bugs
from comparisons.lessons import hidden_layer, learning_rates, noise, paths, seeds
from shared.spec import MLPSpec
from shared.tolerances import relative_gap

FRESH = 100
"""Seeds from here on were never used while the lessons and their texts were written."""


def _clause(text: str, name: str) -> str:
    """The part of a finding about one problem: from 'name: ' to the end of that sentence."""
    match = re.search(rf"\b{name}: (.*?\.)(?: [a-z]+: | [A-Z]|$)", text)
    assert match, f"no clause for {name!r} in: {text}"
    return match.group(1)


def _range(values) -> str:
    lo, hi = min(values), max(values)
    return f"median {np.median(values):.0f} steps, range {lo}–{hi}" if lo != hi else f"{lo} steps"


def test_learning_rates_claims_hold_on_fresh_seeds():
    steps, seeds = 400, 3
    results = learning_rates.sweep("numpy", np.array([0.05, 0.2, 0.5, 30.0]), steps, seeds, first_seed=FRESH)
    text = learning_rates.finding(results, steps, FRESH)
    assert text.startswith(f"Over seeds {FRESH}–{FRESH + seeds - 1},")
    for name, rates in results.items():
        clause, target = _clause(text, name), learning_rates.TARGETS[name]
        converged, diverged = {}, {}
        for rate in rates:  # judged from the raw losses: below the target from some step to the very end
            runs = [r["losses"] for r in rate["runs"]]
            bad = [len(losses) < steps or losses[-1] > losses[0] for losses in runs]
            diverged[rate["lr"]] = sum(bad)
            converged[rate["lr"]] = [
                max((i + 1 for i, v in enumerate(losses) if v >= target), default=0)
                for losses, b in zip(runs, bad)
                if not b and losses[-1] < target
            ]
        every = {lr: s for lr, s in converged.items() if len(s) == seeds}
        best = min(every, key=lambda lr: (np.median(every[lr]), lr))
        assert f"fastest at lr {best:.3g}, where all {seeds} seeds stay below MSE {target} ({_range(every[best])})" in (
            clause
        ), clause
        for lr, s in converged.items():
            if 0 < len(s) < seeds:
                assert f"at lr {lr:.3g} {len(s)} of {seeds} converge ({_range(s)})" in clause
        first = min(lr for lr, k in diverged.items() if k)
        assert f"from lr {first:.3g} ({first / best:.0f}× the fastest) {diverged[first]} of {seeds} seeds diverge" in (
            clause
        )


def test_hidden_layer_claims_hold_on_fresh_seeds():
    seeds, lrs = 6, [0.2, 0.5, 0.9]
    r = hidden_layer.run("numpy", "mse", lrs=lrs, seeds=seeds, steps=600, first_seed=FRESH)
    text = hidden_layer.finding(r)
    assert f"seeds {FRESH}–{FRESH + seeds - 1} each" in text
    hidden = [x for x in r["runs"] if x["model"] == "hidden"]
    for lr in lrs:  # from the raw losses: diverged = stopped early or ended above its start
        at = [x for x in hidden if x["lr"] == lr]
        bad = [x for x in at if len(x["losses"]) < 600 or x["losses"][-1] > x["losses"][0]]
        solved = [x for x in at if x not in bad and x["correct"] == 4 and x["losses"][-1] < 0.01]
        assert f"lr {lr:g}: {len(solved)} of {seeds}" in text
        if bad:
            assert f"{len(bad)} of {seeds} at lr {lr:g} (seed" in text
        else:
            assert f"at lr {lr:g} (seed" not in text
    linear = [x for x in r["runs"] if x["model"] == "linear" and not x["diverged"]]
    worst = max(abs(x["losses"][-1] - 0.25) for x in linear)
    assert f"every final MSE is within {worst:.1e} of the floor" in text


def _pm(values, percent=True) -> str:
    values = np.asarray(values, float) * (100 if percent else 1)
    return f"{values.mean():.0f} ± {values.std(ddof=1):.0f}"


def test_noise_claims_hold_on_fresh_seeds():
    from backends import get_backend

    seeds, steps, widths = 3, 200, [2, 16]
    r = noise.run("numpy", "moons", 60, 0.2, 0.2, widths, steps, seeds, first_seed=FRESH)
    text = noise.finding(r)
    assert f"seeds {FRESH}–{FRESH + seeds - 1} (mean ± sd)" in text
    be = get_backend("numpy")
    for w in widths:
        memorized, drop = [], []
        for x in r["runs"][w]:  # recomputed from the trained params and the data, not from the lesson's curves
            train, _, flipped = noise.noisy_split("moons", 60, 0.2, 0.2, x["seed"])
            spec = MLPSpec((2, w, w, 1), "tanh", "bce")
            right = (be.forward(spec, x["params"], train.X)[:, 0] > 0) == train.y
            memorized.append(right[flipped].mean())
            drop.append(max(x["test_accuracy"]) - x["test_accuracy"][-1])
        assert f"width {w}: learns {_pm(memorized)} % of the flipped labels" in text
        assert f"width {w} loses {_pm(drop)} points" in text  # every width's own drop, not the widest one's


def test_paths_claims_count_every_way_of_building_xor_on_fresh_seeds():
    seeds = 8
    r = paths.run("numpy", steps=300, lr=0.3, seeds=seeds, first_seed=FRESH)
    text = paths.finding(r)
    solved = [x for x in r["runs"] if x["solved"]]
    assert f"Over seeds {FRESH}–{FRESH + seeds - 1}, {len(solved)} of {seeds} solve XOR" in text
    kinds = {"units": 0, "gates": 0, "neither": 0}
    for x in solved:  # from each unit's signed contributions (final, (4 inputs, 4 units)), not from role names
        ups = [tuple(c > 0) for c in x["final"].T]
        units = (False, True, False, False) in ups and (False, False, True, False) in ups
        gates = (False, True, True, True) in ups and (True, True, True, False) in ups
        kinds["units" if units else "gates" if gates else "neither"] += 1
    assert sum(kinds.values()) == len(solved)
    assert f"How the {len(solved)} solved seeds build XOR: {kinds['units']} with a unit that pushes up only" in text
    assert f"; {kinds['gates']} as OR and NAND" in text and f"; {kinds['neither']} fit neither" in text


def test_seeds_claims_name_the_quantity_they_state_on_fresh_seeds():
    from itertools import combinations

    from backends import get_backend
    from shared.data import xor

    spec, n = MLPSpec((2, 2, 1), "tanh", "bce"), 30
    r = seeds.run("numpy", spec, seeds=n, steps=1000, lr=0.3, first_seed=FRESH)
    text = seeds.finding([r])
    be, data = get_backend("numpy"), xor()
    solved = [x for x in r["runs"] if x["solved"]]
    assert len(solved) == sum(((be.forward(spec, x["params"], data.X)[:, 0] > 0) == data.y).all() for x in r["runs"])
    assert f"2→2→1: {len(solved)} of {n} seeds solve XOR (seeds {FRESH}–{FRESH + n - 1};" in text
    assert r["clear"] and 1 < r["groups"] < len(solved), "these seeds were picked to show two groups"
    members = {}
    for x in solved:
        members.setdefault(x["group"], []).append(x["params"])

    def connected(group, t):  # every solution reachable from the first by steps of length ≤ t
        reached, todo = {0}, [0]
        while todo:
            i = todo.pop()
            new = {j for j in range(len(group)) if j not in reached and seeds.distance(group[i], group[j]) <= t}
            reached |= new
            todo += new
        return len(reached) == len(group)

    diameters = [  # straight from the weights, pair by pair
        max((seeds.distance(a, b) for a, b in combinations(group, 2)), default=0.0) for group in members.values()
    ]
    step = float(re.search(r"a chain of steps of at most ([0-9.]+) joins every solution", text).group(1))
    assert all(connected(group, step + 5e-4) for group in members.values())  # the stated step (rounded) suffices
    assert not all(connected(group, step - 5e-4) for group in members.values())  # and is the shortest that does
    size = " and ".join(f"{v:.3f}" for v in diameters)
    assert f"the groups' diameters (each one's two furthest solutions) are {size}" in text


def test_bugs_counts_a_detector_only_where_it_passes_without_the_bug_and_fails_with_it():
    cases = {  # (finite differences pass without the bug, pass with it) -> what they say
        (True, False): "catches",
        (True, True): "misses",
        (False, False): "cannot tell",
        (False, True): "cannot tell",
    }
    assert {k: bugs.verdict(*k) for k in cases} == cases
    problem = bugs.problem_for(bugs.BUGS["relu-prime-at-0"], steps=1)
    assert not bugs.fd_check(problem).ok and not bugs.fd_check(problem, "relu-prime-at-0").ok  # fails either way


def test_bugs_summary_counts_what_it_says(tmp_path, capsys):
    import json

    from backends import available_backends

    others = [b for b in available_backends() if b != "numpy"][:1]
    if not others:
        pytest.skip("bugs compares NumPy with torch or JAX; neither is installed")
    bugs.main(["--steps", "5", "--backends", f"numpy,{others[0]}", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "bugs.json").read_text())
    text = " ".join(data["finding"].split())
    caught = [b["name"] for b in data["bugs"] if b["fd_without"]["ok"] and not b["fd_with"]["ok"]]
    unclear = [b["name"] for b in data["bugs"] if not b["fd_without"]["ok"]]
    assert f"finite differences catch {len(caught)}," in text and len(caught) == 6
    assert f"cannot tell for {', '.join(unclear)}:" in text and unclear == ["relu-prime-at-0"]
    parity = [b for b in data["bugs"] if b["parity_without"] and not b["parity_with"]]
    assert f"catches {len(parity)} of {len(data['bugs'])} bugs" in text


def test_attention_claims_over_seeds_hold_on_fresh_seeds():
    from comparisons.lessons import attention

    settings = dict(task_name="reverse", length=3, layers=1, heads=2, d_model=8, steps=40, batch_size=16, n=64)
    r = attention.run(backends=["numpy"], seed=FRESH, **settings)
    rows = attention.over_seeds(r, "numpy", 3, **settings)
    text = attention.seeds_finding(rows, "numpy", r["uniform"])
    assert [x["seed"] for x in rows] == [FRESH, FRESH + 1, FRESH + 2] and text.startswith(f"Over seeds {FRESH}–")
    best, others = [], []
    for x in rows:  # each seed's shares recomputed from its own maps, best head first
        again = attention.run(backends=["numpy"], seed=x["seed"], **settings)["runs"]["numpy"]
        shares = sorted((float(s) for layer in again["share"] for s in layer), reverse=True)
        best.append(100 * shares[0])
        others += [100 * v for v in shares[1:]]
    assert f"the best head puts {min(best):.0f}–{max(best):.0f} % of its attention" in text
    assert f"the other heads {min(others):.0f}–{max(others):.0f} %" in text


def test_weights_counts_over_seeds_hold_on_fresh_seeds(tmp_path):
    import json

    from backends import get_backend
    from comparisons.lessons import weights
    from shared.data import xor
    from shared.optim import SGD
    from shared.params import init_params

    pytest.importorskip("matplotlib")
    args = ["--steps", "80", "--seed", str(FRESH), "--seeds", "3", "--backends", "numpy", "--out", str(tmp_path)]
    assert weights.main(args) == 0
    data = json.loads((tmp_path / "weights.json").read_text())
    spec, xs = MLPSpec((2, 4, 1), "tanh", "bce"), xor()
    settled, oscillating = [], []
    for seed in range(FRESH, FRESH + 3):  # trained here, straight from the defaults the command states
        traj = get_backend("numpy").train(
            spec, init_params(spec, seed), xs.X, xs.targets(spec), SGD(0.5), 80, record_every=1
        )
        series = weights.weight_series(traj)
        settled.append(int(weights.settled(series).sum()))
        oscillating.append(int((weights.reversals(series) >= weights.OSCILLATING).sum()))
    assert [r["settled"] for r in data["over_seeds"]] == settled
    assert [r["oscillating"] for r in data["over_seeds"]] == oscillating
    span = f"{min(settled)}" if min(settled) == max(settled) else f"{min(settled)}–{max(settled)}"
    assert f"Over seeds {FRESH}–{FRESH + 2} on numpy, of the 17 parameters: {span} settled" in data["finding"]


def test_precision_claims_hold_on_fresh_seeds():
    pytest.importorskip("ml_dtypes")
    from backends import available_backends, get_backend
    from comparisons.lessons import precision
    from shared.data import make_dataset
    from shared.params import init_params

    backends = [b for b in available_backends() if b != "jax"]  # JAX's six formats' compiles: ~7 s of the suite
    r = precision.run(backends, steps=60, seeds=2, first_seed=FRESH)
    text, s = precision.finding(r), precision.summary(r)
    assert f"seeds {FRESH}–{FRESH + 1}" in text
    data = make_dataset("moons", n=200, noise=0.2, seed=FRESH)  # one number recomputed from scratch
    spec, X, y = precision.SPEC, data.X, data.targets(precision.SPEC)
    kw = dict(batch_size=precision.BATCH, seed=FRESH)
    runs = {
        d: get_backend("numpy", d).train(spec, init_params(spec, FRESH), X, y, precision.OPTIMIZER, 60, **kw)
        for d in ("float64", "float32")
    }
    assert r["runs"][0]["final_gap"]["numpy/float32"] == relative_gap(runs["float32"].params, runs["float64"].params)
    for fmt in precision.FORMATS[1:]:
        gaps = [x["final_gap"][f"{b}/{fmt}"] for x in r["runs"] for b in backends]
        assert f"{fmt}: {np.median(gaps):.1e} from float64" in text
    ratios = {fmt: s[fmt]["pair_median"] / s[fmt]["gap_median"] for fmt in precision.FORMATS[1:]}
    if len(backends) > 1:
        assert all(f"{q:.1f}× ({fmt})" in text for fmt, q in ratios.items())
        verdict = "never more than a few times" if all(q < 3 for q in ratios.values()) else "the framework adds"
        assert verdict in text
    worst = max(abs(s[f]["loss_median"] - s["float64"]["loss_median"]) for f in ("bfloat16-mixed", "float16-mixed"))
    assert f"Mixed precision trains to within {worst:.1e} of float64's loss" in text
    for half in precision.PURE_HALF:  # the pure-against-mixed sentence states the medians' ratio
        q = s[half]["gap_median"] / s[f"{half}-mixed"]["gap_median"]
        assert f"{half} ends {s[half]['gap_median']:.1e} from float64 pure" in text
        assert f"({q:.1f}× {'closer' if q >= 1 else 'further'})" in text
    runs = [(x["skipped"][k], x["final_gap"][k]) for x in r["runs"] for k in [f"{b}/float16-mixed" for b in backends]]
    if any(n for n, _ in runs) and not all(n for n, _ in runs):  # the split is stated only when there is one
        kept = [g for n, g in runs if not n]
        assert f"those that skipped none {min(kept):.1e}–{max(kept):.1e}" in text


def test_precision_claims_for_the_gpt_hold_on_fresh_seeds():
    """--model gpt: the same finding for the tiny transformer (NumPy and torch here: JAX's compiles of
    six formats would double the suite's share; the lesson runs all three), its gradient gaps per
    tensor group, and the chaos guard: float64 backends that end apart make the finding say so."""
    pytest.importorskip("ml_dtypes")
    from backends import available_backends, get_backend
    from comparisons.lessons import precision

    backends = [b for b in available_backends() if b != "jax"]
    r = precision.run(backends, steps=20, seeds=2, first_seed=FRESH, model="gpt")
    text, s = precision.finding(r), precision.summary(r)
    assert f"on {precision.TASK['gpt']} (seeds {FRESH}–{FRESH + 1}" in text
    assert r["runs"][0]["layer_names"] == ["embeddings", "block 0", "ln_f + head"]
    spec, X, y, params, batch = precision.problem("gpt", FRESH)  # one number recomputed from scratch
    kw = dict(batch_size=batch, seed=FRESH)
    runs = {
        d: get_backend("numpy", d).train(spec, params, X, y, precision.OPTIMIZER, 20, **kw)
        for d in ("float64", "float32")
    }
    assert r["runs"][0]["final_gap"]["numpy/float32"] == relative_gap(runs["float32"].params, runs["float64"].params)
    for fmt in precision.FORMATS[1:]:
        gaps = [x["final_gap"][f"{b}/{fmt}"] for x in r["runs"] for b in backends]
        assert f"{fmt}: {np.median(gaps):.1e} from float64" in text
    for half in precision.PURE_HALF:
        q = s[half]["gap_median"] / s[f"{half}-mixed"]["gap_median"]
        assert f"({q:.1f}× {'closer' if q >= 1 else 'further'})" in text
    assert "even in float64" not in text  # 20 steps: not chaotic
    if len(backends) > 1:
        r["runs"][0]["pair_gap"][f"{backends[0]}-{backends[1]}/float64"] = 1e-6
        assert "But even in float64 the backends end 1.0e-06 apart: the training is chaotic" in precision.finding(r)


def test_data_parallel_claims_hold_on_fresh_seeds():
    from backends import get_backend
    from comparisons.lessons import data_parallel as dp
    from shared.data import make_dataset
    from shared.optim import SGD
    from shared.params import init_params

    r = dp.run(["numpy"], steps=20, seeds=2, first_seed=FRESH, widths=())
    text, s = dp.finding(r), dp.summary(r)
    assert f"seeds {FRESH}–{FRESH + 1}" in text and "Time:" not in text  # no widths timed: no claim about time
    data = make_dataset("moons", n=dp.N_SAMPLES, noise=0.2, seed=FRESH)  # one gap recomputed from scratch
    X, y, params = data.X, data.targets(dp.SPEC), init_params(dp.SPEC, seed=FRESH)
    be, kw = get_backend("numpy", "float32"), dict(batch_size=dp.BATCH, seed=FRESH)
    one = be.train(dp.SPEC, params, X, y, SGD(dp.LR, dp.MOMENTUM), 20, **kw)
    four = be.train(dp.SPEC, params, X, y, SGD(dp.LR, dp.MOMENTUM), 20, workers=4, **kw)
    assert r["runs"][0]["final_gap"]["numpy/float32/4"] == relative_gap(four.params, one.params)
    for dtype in dp.DTYPES:
        worst = max(max(run["gaps"][f"numpy/{dtype}/{n}"]) for run in r["runs"] for n in dp.WORKERS)
        assert f"more than {worst:.1e} apart in float" in text or f"or {worst:.1e} in float32" in text
        assert worst < 100 * dp.EPS[dtype]  # the finding's claim: the order of the sum, a few ε
    assert s["float64"]["runs"] == 2 * len(dp.WORKERS)


def test_data_parallel_time_claim_follows_the_numbers():
    from comparisons.lessons import data_parallel as dp

    r = {"backends": ["numpy"], "steps": 1, "seeds": 1, "first_seed": 0, "cpu_count": 2}
    gaps = {f"numpy/{d}/{n}": [0.0, 1e-16] for d in dp.DTYPES for n in dp.WORKERS}
    r["runs"] = [
        {"gaps": gaps, "final_gap": {k: v[-1] for k, v in gaps.items()}, "exact": dict.fromkeys(gaps, False)}
        | {"final_loss": {k: 0.5 for k in [*gaps, "numpy/float64/1", "numpy/float32/1"]}}
    ]
    row = {"backend": "numpy", "width": 16, "n_params": 10, "ring_bytes": 80}
    r["rows"] = [row | {"ms_per_step_1": 1.0, "ms_per_step_2": 2.0}]
    assert "Two workers were slower at every width measured" in dp.finding(r) and "numpy 0.50×" in dp.finding(r)
    r["rows"] = [row | {"ms_per_step_1": 2.0, "ms_per_step_2": 1.0}]
    assert "Two workers were faster only for numpy" in dp.finding(r) and "numpy 2.00×" in dp.finding(r)
