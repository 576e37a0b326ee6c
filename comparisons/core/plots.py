"""The house style of the lessons' figures, in three helpers: every spread is drawn the same way.

A curve over seeds is its centre line over a band (`band`: mean ± sd via `mean_sd`, or median and
min–max); a value per setting is a marker with its spread as an error bar (`spread_bars`). The colours
of the backends are in output.BACKEND_COLORS.
"""

from __future__ import annotations

import numpy as np


def mean_sd(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean and the sample standard deviation (ddof=1) over axis 0; sd 0 for a single run."""
    curves = np.asarray(curves)
    return curves.mean(0), curves.std(0, ddof=1) if len(curves) > 1 else np.zeros(curves.shape[1:])


def band(ax, x, center, low, high, color, label=None, band_label=None, alpha=0.2, lw=2.0) -> None:
    """A centre line over a shaded band from `low` to `high` (the band first, so the line is on top)."""
    ax.fill_between(x, low, high, color=color, alpha=alpha, lw=0, label=band_label)
    ax.plot(x, center, color=color, lw=lw, label=label)


def spread_bars(ax, x, center, low=None, high=None, sd=None, **style) -> None:
    """Markers at `center` with error bars: from `low` to `high` (a median's range), or ± `sd`."""
    center = np.asarray(center)
    if sd is not None:
        yerr = sd
    else:
        yerr = [center - np.asarray(low), np.asarray(high) - center]
    ax.errorbar(x, center, yerr=yerr, **style)
