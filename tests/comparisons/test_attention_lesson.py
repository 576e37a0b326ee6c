"""The attention and generate commands: end to end with tiny options on the installed backends, and the
numbers behind each finding recomputed independently of the command's own code."""

from __future__ import annotations

import json

import numpy as np
import pytest

from backends import available_backends, get_backend
from comparisons.lessons import attention, generate
from shared.data import sequence_task


def test_source_share_counts_the_weight_on_each_answers_source():
    """A hand-built P that puts all of head 0's weight on the anti-diagonal and spreads head 1 evenly."""
    task = sequence_task("reverse", n=4, length=3)
    t = task.seq_len
    P = np.zeros((4, 2, t, t))
    for q in range(t):
        P[:, 1, q, : q + 1] = 1 / (q + 1)  # even over the visible keys
        P[:, 0, q, min(q, 2 * 3 - 1 - q) if q >= 3 else q] = 1.0
    share = attention.source_share(P, task)
    assert share[0] == pytest.approx(1.0)
    assert share[1] == pytest.approx(attention.uniform_share(task)) == pytest.approx(np.mean([1 / 4, 1 / 5, 1 / 6]))


def test_attention_maps_match_the_numpy_backends_forward():
    task = sequence_task("copy", n=8, length=3)
    spec = attention.GPTSpec(task.vocab_size, task.seq_len, 8, 2, 2, activation="relu")
    params = attention.init_params(spec, 1)
    maps, logits = attention.attention_maps(spec, params, task.X)
    assert len(maps) == 2 and maps[0].shape == (8, 2, 6, 6)
    assert np.allclose(maps[1].sum(-1), 1) and np.all(np.triu(maps[1], 1) == 0)  # rows sum to 1, causal
    assert np.array_equal(logits, get_backend("numpy").forward(spec, params, task.X))


def test_attention_command_end_to_end(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the command draws a figure (pip install matplotlib)")
    """Tiny options: the command writes its figure and numbers; every number in the finding is
    recomputed here from the backend's own forward and the attention maps."""
    here = available_backends()
    argv = ["--out", str(tmp_path), "--steps", "30", "--n", "64", "--batch-size", "16", "--length", "3"]
    assert attention.main([*argv, "--d-model", "8", "--backends", ",".join(here)]) == 0
    out = capsys.readouterr().out
    numbers = json.loads((tmp_path / "attention.json").read_text())
    assert (tmp_path / "attention.png").stat().st_size > 10_000
    assert set(numbers["runs"]) == set(here)
    for name in here:
        x = numbers["runs"][name]
        assert f"{name}: answer digits {100 * x['accuracy']:.1f} % right" in out
        assert x["recompute_gap"] < 1e-10, "the NumPy pieces reproduce the backend's own logits"
    assert numbers["loss_floor"] == pytest.approx(2 / 6 * np.log(10))


@pytest.mark.slow
def test_reverse_is_learned_and_read_off_the_anti_diagonal():
    """The default lesson on NumPy, trained directly: every answer digit right on held-out strings, and a
    head with most of its weight on the anti-diagonal — checked with plain indexing of P."""
    r = attention.run("reverse", ["numpy"])
    x, test = r["runs"]["numpy"], r["test"]
    logits = get_backend("numpy").forward(r["spec"], r["runs"]["numpy"]["params"], test.X)
    assert test.answer_accuracy(logits) == x["accuracy"] > 0.99
    P = x["maps"][0]  # (n, h, t, t)
    k = test.length
    anti = np.mean([[P[s, :, k + i, k - 1 - i] for i in range(k)] for s in range(len(test))], axis=(0, 1))  # (h,)
    assert np.allclose(anti, x["share"][0]) and anti.max() > 0.9
    assert x["final_loss"] - test.loss_floor < 0.05


def test_generate_command_end_to_end(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the command draws a figure (pip install matplotlib)")
    here = available_backends()
    argv = ["--out", str(tmp_path), "--steps", "5", "--seq-len", "8", "--d-model", "8", "--heads", "2"]
    argv += ["--seeds", "2", "--first-seed", "100"]  # seeds the lesson was never tuned on
    assert generate.main([*argv, "--layers", "1", "--length", "12", "--backends", ",".join(here)]) == 0
    out = capsys.readouterr().out
    numbers = json.loads((tmp_path / "generate.json").read_text())
    assert (tmp_path / "generate.png").exists() and set(numbers["runs"]) == set(here)
    seeds = numbers["over_seeds"]  # the first seed is the figure's run on the first backend; the second its own
    assert [x["seed"] for x in seeds] == [100, 101] and seeds[0]["final_loss"] == numbers["runs"][here[0]]["final_loss"]
    final = [x["final_loss"] for x in seeds]
    assert f"Over seeds 100–101 on {here[0]}, after 5 steps: training loss {min(final):.2f}–{max(final):.2f}" in out
    greedy = [x["greedy"] for x in numbers["runs"].values()]
    assert all(len(g) == 12 for g in greedy)
    for name, x in numbers["runs"].items():  # the reported loss is the labelled quantity, not the curve's last point
        assert x["final_loss"] == pytest.approx(np.mean(x["losses"][-generate.FINAL_STEPS :]), rel=1e-12)
        assert f"{name}: final training loss {x['final_loss']:.4f} (mean of the last 20 minibatch losses)" in out
    if len(here) > 1:  # float64 from the same init: the claim in the finding, checked on the texts
        identical = len(set(greedy)) == 1
        assert ("Greedy samples are identical" in out) == identical


def test_sampling_is_greedy_at_temperature_zero_and_seeded():
    """Independent of training: a forward whose logits favour token (last + 1) mod V."""

    class Counting:
        def forward(self, spec, params, X):
            V = 5
            logits = np.zeros(X.shape + (V,))
            np.put_along_axis(logits, ((X + 1) % V)[..., None], 1.0, axis=-1)
            return logits

    spec = attention.GPTSpec(5, 4, 4, 1, 1)
    greedy, hot = generate.sample(Counting(), spec, None, np.array([0, 1]), 6, (0.0, 1.0), seed=3)
    assert greedy.tolist() == [2, 3, 4, 0, 1, 2]
    again = generate.sample(Counting(), spec, None, np.array([0, 1]), 6, (0.0, 1.0), seed=3)[1]
    assert np.array_equal(hot, again) and not np.array_equal(hot, greedy)
    assert generate.first_difference(["abc", "abd"]) == 2 and generate.first_difference(["ab", "ab"]) is None


def test_the_accuracy_legend_names_each_backends_accuracy_beside_the_bars_not_over_them():
    pytest.importorskip("matplotlib", reason="the test draws the figure (pip install matplotlib)")
    here = available_backends()
    r = attention.run("reverse", here, length=3, d_model=8, steps=20, batch_size=16, n=64)
    fig = attention.plot(r)
    fig.canvas.draw()
    ax = next(a for a in fig.axes if a.get_title().startswith("Accuracy per answer digit"))
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [
        f"{name}: {100 * r['runs'][name]['accuracy']:.1f} %" for name in here
    ]
    box, data = legend.get_window_extent(), ax.get_window_extent()
    assert box.x0 >= data.x1  # wholly right of the axes: no bar and no guessing line under it
    assert box.x1 <= fig.get_window_extent().x1  # and still inside the figure
