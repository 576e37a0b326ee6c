"""The house-style helpers: the spread they draw is the spread the text names."""

import numpy as np
import pytest

from comparisons.core.plots import band, mean_sd, spread_bars


def test_mean_sd_is_the_sample_sd_and_zero_for_one_run():
    curves = np.array([[1.0, 2.0], [3.0, 6.0]])
    mean, sd = mean_sd(curves)
    np.testing.assert_array_equal(mean, [2.0, 4.0])
    np.testing.assert_allclose(sd, [np.sqrt(2), np.sqrt(8)])  # ddof=1: a missing n/(n−1) fails here
    mean, sd = mean_sd(curves[:1])
    np.testing.assert_array_equal(sd, [0.0, 0.0])


def test_spread_bars_span_low_to_high_or_plus_minus_sd():
    pytest.importorskip("matplotlib")
    from comparisons.core.output import pyplot

    plt = pyplot()
    fig, ax = plt.subplots()
    spread_bars(ax, [0, 1], [2.0, 5.0], [1.0, 4.5], [4.0, 5.5], fmt="o")
    spread_bars(ax, [2], [3.0], sd=[0.5], fmt="s")
    band(ax, [0, 1], [1, 2], [0.5, 1.5], [1.5, 2.5], "k", label="centre")
    segments = [c.get_segments() for c in ax.collections if hasattr(c, "get_segments") and c.get_segments()]
    bars = [(s[0][1], s[1][1]) for group in segments for s in group]
    assert bars == [(1.0, 4.0), (4.5, 5.5), (2.5, 3.5)]
    assert [line.get_label() for line in ax.get_lines()][-1] == "centre"
    plt.close(fig)
