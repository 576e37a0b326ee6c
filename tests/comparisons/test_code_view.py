"""`python -m comparisons code`: columns measured in what a terminal shows, lines wrapped between
tokens rather than inside them, and the three `backprop` columns showing the same things."""

from __future__ import annotations

import re

import pytest

from comparisons.backprop import code


def test_a_combining_accent_takes_no_column():
    assert code.display_width("m̂ / (√v̂ + ε)") == len("m / (√v + ε)")


@pytest.mark.parametrize("concept", ["adam", "backprop", "train_step", "engine_loop"])
def test_columns_line_up_in_display_width(concept):
    wide = code.columns(code.concept_code(concept), 150)
    for line in wide.splitlines():
        assert code.display_width(line) <= 150, line
        # the separators sit at the same display column on every line that reaches them
        starts = [code.display_width(line[: m.start()]) for m in re.finditer(" │ ", line)]
        assert starts == [48, 99][: len(starts)], line


def test_long_lines_break_between_tokens():
    line = "        return optax.chain(optax.add_decayed_weights(opt.weight_decay), tx) if opt.weight_decay else tx"
    pieces = code._wrap(line, 44)
    assert all(code.display_width(p) <= 44 for p in pieces), pieces
    words = re.findall(r"\w+", line)
    assert [w for p in pieces for w in re.findall(r"\w+", p)] == words, f"a name was cut: {pieces}"
    assert all(p.startswith("        ↪ ") for p in pieces[1:])


def test_a_word_longer_than_the_column_is_still_cut_to_fit():
    pieces = code._wrap("x = " + "a" * 100, 40)
    assert all(code.display_width(p) <= 40 for p in pieces) and "".join(pieces).count("a") == 100


def test_backprop_columns_each_show_the_forward_they_differentiate():
    texts = code.concept_code("backprop")
    assert "def mlp_forward" in texts["numpy"]
    assert "def forward(self" in texts["torch"] and "loss.backward()" in texts["torch"]
    assert "def mlp(" in texts["jax"] and "jax.value_and_grad(loss_fn" in texts["jax"]


@pytest.mark.parametrize("concept", list(code.CONCEPTS))
def test_every_concept_finds_each_of_its_symbols(concept):
    """A symbol renamed or removed in a backend (NumPy's `_erf` once) must not break `code <concept>`."""
    texts = code.concept_code(concept)
    assert set(texts) == {"numpy", "torch", "jax"} and all(texts.values()), concept  # one concept, three files
    files = code.source_files(concept)
    assert all(files[b].startswith(f"backends/{b}/") for b in texts), files


@pytest.mark.parametrize("concept", ["embedding", "layernorm", "softmax", "attention", "block"])
def test_transformer_concepts_render_for_all_three_backends(concept):
    texts = code.concept_code(concept)
    assert set(texts) == {"numpy", "torch", "jax"} and all(texts.values())
    expected = {  # the function or module each backend computes the piece with
        "embedding": ("def embedding_backward", "nn.Embedding", 'params["tok_emb"][X]'),
        "layernorm": ("def layernorm_backward", "nn.LayerNorm", "def layernorm("),
        "softmax": ("def softmax_backward", "torch.softmax", "jax.nn.softmax"),
        "attention": ("def attention_backward", "class CausalSelfAttention", "def attention("),
        "block": ("def block_backward", "class Block", "def block("),
    }[concept]
    for backend, snippet in zip(("numpy", "torch", "jax"), expected):
        assert snippet in texts[backend], f"{concept} {backend}: no {snippet!r}"
    wide = code.columns(texts, 150, code.source_files(concept))
    assert "numpy: backends/numpy/gpt.py" in wide and "jax: backends/jax/gpt.py" in wide


def test_listing_shows_the_transformer_concepts(capsys):
    assert code.main([]) == 0
    listed = capsys.readouterr().out
    for concept in ("embedding", "layernorm", "softmax", "attention", "block"):
        assert f"  {concept} " in listed
    with pytest.raises(SystemExit):
        code.main(["--help"])
    assert "attention" in capsys.readouterr().out
