"""The seeded datasets: shapes, labels, determinism, the split, and targets for each loss."""

import numpy as np
import pytest

from shared.data import (
    DATASETS,
    SEQUENCE_TASKS,
    CharTokenizer,
    char_windows,
    load_corpus,
    make_dataset,
    sequence_task,
    xor,
)
from shared.spec import MLPSpec


def test_xor_is_the_truth_table():
    d = xor()
    assert d.X.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert d.y.tolist() == [0, 1, 1, 0]
    assert d.y.tolist() == [int(a) ^ int(b) for a, b in d.X]


@pytest.mark.parametrize("name", DATASETS)
def test_every_dataset_is_seeded_and_well_formed(name):
    a = make_dataset(name, n=60, noise=0.1, seed=3)
    b = make_dataset(name, n=60, noise=0.1, seed=3)
    c = make_dataset(name, n=60, noise=0.1, seed=4)
    assert a.X.shape == (60, 2) and a.X.dtype == np.float64 and a.y.shape == (60,)
    assert np.issubdtype(a.y.dtype, np.integer) and set(a.y) == set(range(a.n_classes))
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)


def test_noise_zero_puts_points_exactly_on_the_shapes():
    d = make_dataset("circles", n=50, noise=0.0, factor=0.3)
    radius = np.hypot(*d.X.T)
    assert np.allclose(radius[d.y == 0], 1.0) and np.allclose(radius[d.y == 1], 0.3)
    noisy = make_dataset("xor", n=100, noise=0.0)
    assert set(map(tuple, noisy.X)) <= {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_spirals_and_blobs_take_a_class_count():
    assert make_dataset("spirals", n=90, arms=3).n_classes == 3
    assert make_dataset("blobs", n=90, centers=4).n_classes == 4


def test_split_is_deterministic_disjoint_and_complete():
    d = make_dataset("moons", n=100)
    train, test = d.split(0.25, seed=1)
    assert len(train) == 75 and len(test) == 25
    rows = {tuple(r) for r in np.concatenate([train.X, test.X])}
    assert rows == {tuple(r) for r in d.X}
    again, _ = d.split(0.25, seed=1)
    assert np.array_equal(train.X, again.X)


def test_targets_fit_each_loss():
    d = make_dataset("blobs", n=30, centers=3)
    assert d.targets(MLPSpec((2, 4, 3), "tanh", "softmax_ce")).shape == (30,)
    onehot = d.targets(MLPSpec((2, 4, 3), "tanh", "mse"))
    assert onehot.shape == (30, 3) and np.array_equal(onehot.argmax(1), d.y)
    two = make_dataset("moons", n=10)
    assert two.targets(MLPSpec((2, 4, 1), "tanh", "bce")).shape == (10, 1)
    with pytest.raises(ValueError, match="has 3 classes; one output"):
        d.targets(MLPSpec((2, 4, 1), "tanh", "bce"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="mnist"), "dataset must be one of 'xor', 'moons'"),
        (dict(name="moons", n=0), "n must be an integer ≥ 1; got 0"),
        (dict(name="moons", n=2.5), "n must be an integer ≥ 1; got 2.5"),
        (dict(name="moons", noise=-0.1), "noise must be a finite number ≥ 0; got -0.1"),
        (dict(name="spirals", arms=1), "arms must be an integer ≥ 2; got 1"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_dataset(**kwargs)


def test_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match=r"test_fraction must be in \(0, 1\)"):
        make_dataset("moons", n=10).split(1.5)


# ---- sequence tasks for the tiny GPT


@pytest.mark.parametrize("name", SEQUENCE_TASKS)
def test_sequence_tasks_are_seeded_and_shaped(name):
    a = sequence_task(name, n=50, length=6, n_digits=7, seed=3)
    b = sequence_task(name, n=50, length=6, n_digits=7, seed=3)
    c = sequence_task(name, n=50, length=6, n_digits=7, seed=4)
    assert a.X.shape == a.Y.shape == (50, 12) and a.source.shape == (50, 6)
    assert a.X.dtype == a.Y.dtype == np.int64 and a.vocab_size == 8 and a.seq_len == 12
    assert np.array_equal(a.X, b.X) and np.array_equal(a.Y, b.Y) and not np.array_equal(a.X, c.X)
    assert a.X.min() >= 0 and a.X.max() < a.vocab_size
    assert np.array_equal(a.X[:, 1:], a.Y[:, :-1]), "Y is X shifted by one"
    assert (a.X[:, 6] == a.sep).all() and (a.Y[:, 5] == a.sep).all()
    assert (a.X[:, :6] != a.sep).all() and (a.Y[:, 6:] != a.sep).all()


@pytest.mark.parametrize("name", SEQUENCE_TASKS)
def test_answers_follow_from_the_inputs(name):
    """Recomputed from the digits with plain Python, string by string."""
    task = sequence_task(name, n=40, length=5, seed=1)
    rule = {"copy": list, "reverse": lambda d: d[::-1], "sort": sorted}[name]
    for x, y, source in zip(task.X, task.Y, task.source):
        digits = x[:5].tolist()
        assert y[task.answer].tolist() == rule(digits)
        assert [digits[j] for j in source] == rule(digits), "source points at the digit each answer copies"
    assert task.answer_accuracy(np.eye(task.vocab_size)[task.Y]) == 1.0  # logits that are the answer


def test_the_reverse_source_is_the_anti_diagonal():
    task = sequence_task("reverse", n=3, length=4)
    queries = np.arange(4, 8)
    assert (queries + task.source == 2 * 4 - 1).all()  # query k+i reads key k−1−i
    assert task.decode(np.r_[task.X[0], task.Y[0, -1]]).count("|") == 1


def test_the_loss_floor_is_what_a_perfect_model_reaches():
    """A model that knows the task exactly but not the random digits: uniform over digits where the next
    input digit is unknown, certain everywhere else. Its mean loss is the floor."""
    from backends.numpy.gpt import softmax_ce_forward

    task = sequence_task("reverse", n=20, length=5, n_digits=10)
    logits = np.full(task.Y.shape + (task.vocab_size,), -1e9)
    logits[:, :4, :10] = 0.0  # the next input digit: any of ten
    np.put_along_axis(logits[:, 4:], task.Y[:, 4:, None], 0.0, axis=-1)  # the SEP and the answers: known
    assert softmax_ce_forward(logits, task.Y) == pytest.approx(task.loss_floor, rel=1e-12)
    assert task.loss_floor == pytest.approx(4 / 10 * np.log(10))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="shuffle"), "task must be one of"),
        (dict(name="copy", length=1), "length must be an integer ≥ 2"),
        (dict(name="copy", n=0), "n must be"),
        (dict(name="sort", n_digits=40), "at most 36"),
    ],
)
def test_bad_sequence_task_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sequence_task(**kwargs)


# ---- the character corpus


def test_the_corpus_is_shipped_and_the_tokenizer_round_trips():
    text = load_corpus("genesis")
    assert 20_000 < len(text) < 100_000 and text.startswith("In the beginning God created")
    tok = CharTokenizer.from_text(text)
    assert tok.vocab_size == len(set(text)) and list(tok.chars) == sorted(tok.chars)
    ids = tok.encode(text)
    assert ids.dtype == np.int64 and ids.min() == 0 and ids.max() == tok.vocab_size - 1
    assert tok.decode(ids) == text
    assert CharTokenizer.from_text(text) == tok  # the same text, the same ids
    with pytest.raises(ValueError, match="not in the vocabulary: '#'"):
        tok.encode("God#")


def test_char_windows_are_seeded_next_character_pairs():
    ids = np.arange(100)
    X, Y = char_windows(ids, seq_len=8, n=5, seed=2)
    again, _ = char_windows(ids, seq_len=8, n=5, seed=2)
    assert X.shape == Y.shape == (5, 8) and np.array_equal(X, again)
    assert np.array_equal(Y, X + 1)  # each target is the next character
    assert X.min() >= 0 and Y.max() <= 99
    with pytest.raises(ValueError, match="need at least 9"):
        char_windows(np.arange(8), seq_len=8, n=1)


# ---- your own data: CSV ----


def test_a_csv_of_points_and_labels_becomes_a_dataset():
    from shared.data import from_csv

    data = from_csv("x1,x2,label\n0,0,0\n# a comment\n\n0,1,1\n1,0,1\n1.5,-2e-1,0\n")
    np.testing.assert_array_equal(data.X, [[0, 0], [0, 1], [1, 0], [1.5, -0.2]])
    assert data.y.tolist() == [0, 1, 1, 0] and data.n_classes == 2 and data.name == "csv"


@pytest.mark.parametrize(
    "text, message",
    [
        ("0,0,0\n0,1\n1,0,1\n1,1,0\n", r"row 2: expected 3 columns \(x1, x2, label\); got 2"),
        ("0,0,0\n0,x,1\n1,0,1\n1,1,0\n", r"row 2, column 2: expected a finite number; got 'x'"),
        ("0,0,0\n0,inf,1\n1,0,1\n1,1,0\n", r"row 2, column 2: expected a finite number; got 'inf'"),
        ("0,0,0\n0,1,1.5\n1,0,1\n1,1,0\n", r"row 2, column 3: expected a class label 0 to 9; got '1.5'"),
        ("0,0,0\n0,1,-1\n1,0,1\n1,1,0\n", r"row 2, column 3: expected a class label"),
        ("0,0,0\n0,1,2\n1,0,2\n1,1,0\n", r"no point of class 1"),
        ("0,0,0\n0,1,0\n1,0,0\n1,1,0\n", r"only class 0"),
        ("0,0,0\n0,1,1\n", r"at least 4 points"),
    ],
)
def test_a_bad_csv_names_the_row_and_column(text, message):
    from shared.data import from_csv

    with pytest.raises(ValueError, match=message):
        from_csv(text)


def test_a_csv_beyond_its_bound_is_refused_at_the_first_row_too_many():
    from shared.data import from_csv

    text = "\n".join(f"{i},{i},{i % 2}" for i in range(10))
    with pytest.raises(ValueError, match="row 6: more than 5 points"):
        from_csv(text, max_rows=5)
