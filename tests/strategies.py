"""Bounded hypothesis strategies: small random networks and batches, so property tests stay fast."""

from __future__ import annotations

from hypothesis import strategies as st

from shared.spec import ACTIVATIONS, MLPSpec


@st.composite
def specs(draw, max_hidden: int = 4, max_width: int = 16) -> MLPSpec:
    """1–4 hidden layers of width 1–16, any activations, any loss."""
    n_hidden = draw(st.integers(1, max_hidden))
    loss = draw(st.sampled_from(["mse", "bce", "softmax_ce"]))
    n_in = draw(st.integers(1, max_width))
    hidden = draw(st.lists(st.integers(1, max_width), min_size=n_hidden, max_size=n_hidden))
    n_out = {"bce": 1, "softmax_ce": draw(st.integers(2, 6)), "mse": draw(st.integers(1, 4))}[loss]
    acts = draw(st.lists(st.sampled_from(ACTIVATIONS), min_size=n_hidden, max_size=n_hidden))
    return MLPSpec((n_in, *hidden, n_out), tuple(acts), loss)


batch_sizes = st.integers(1, 32)
seeds = st.integers(0, 2**16)
