"""Small seeded 2-D datasets for the lessons, as numpy arrays.

Every generator takes `n` (samples), `noise` (standard deviation of Gaussian jitter) and `seed`, and
returns a `Dataset` with X (n, 2) float64 and y (n,) integer class labels. `Dataset.targets(spec)`
turns the labels into what a loss expects: (n, 1) floats for bce, (n,) labels for softmax_ce,
(n, k) one-hot (or (n, 1) floats for one output) for mse.

    data = make_dataset("spirals", n=300, noise=0.1, arms=3, seed=0)
    train, test = data.split(test_fraction=0.25, seed=0)
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.spec import MLPSpec


@dataclass(frozen=True)
class Dataset:
    name: str
    X: np.ndarray  # (n, 2) float64
    y: np.ndarray  # (n,) int64 class labels
    n_classes: int

    def __len__(self) -> int:
        return len(self.X)

    def targets(self, spec: MLPSpec) -> np.ndarray:
        """The labels in the form spec.loss expects (see the module docstring)."""
        if spec.loss == "softmax_ce":
            if spec.n_outputs < self.n_classes:
                raise ValueError(
                    f"dataset {self.name!r} has {self.n_classes} classes but the spec has only "
                    f"{spec.n_outputs} outputs (sizes[-1])"
                )
            return self.y
        if spec.n_outputs == 1:
            if self.n_classes > 2:
                raise ValueError(
                    f"dataset {self.name!r} has {self.n_classes} classes; one output (loss={spec.loss!r}) "
                    "only fits two. Use loss='softmax_ce' with one output per class."
                )
            return self.y[:, None].astype(np.float64)  # (n, 1)
        if spec.n_outputs != self.n_classes:
            raise ValueError(
                f"dataset {self.name!r} has {self.n_classes} classes; mse with several outputs needs "
                f"one per class (sizes[-1] = {self.n_classes}), got {spec.n_outputs}"
            )
        return np.eye(self.n_classes)[self.y]  # (n, k) one-hot

    def split(self, test_fraction: float = 0.25, seed: int = 0) -> tuple[Dataset, Dataset]:
        """A deterministic shuffled (train, test) split."""
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction!r}")
        n_test = int(round(len(self) * test_fraction))
        if not 0 < n_test < len(self):
            raise ValueError(f"test_fraction={test_fraction} of {len(self)} samples leaves an empty split")
        order = np.random.default_rng(seed).permutation(len(self))
        test, train = order[:n_test], order[n_test:]
        return (
            Dataset(self.name, self.X[train], self.y[train], self.n_classes),
            Dataset(self.name, self.X[test], self.y[test], self.n_classes),
        )


def xor(n: int | None = None, noise: float = 0.0, seed: int = 0) -> Dataset:
    """The four corners of the unit square, labelled x₁ XOR x₂. With n, n points sampled from the
    corners with Gaussian noise; without, exactly the 4 points (the classic truth table)."""
    corners = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    labels = np.array([0, 1, 1, 0])
    if n is None:
        return Dataset("xor", corners, labels, 2)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, 4, size=n)
    return Dataset("xor", corners[pick] + rng.normal(0, noise, size=(n, 2)), labels[pick], 2)


def moons(n: int = 200, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Two interleaving half circles."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    t = rng.uniform(0, np.pi, size=n)
    X = np.where(
        y[:, None] == 0,
        np.stack([np.cos(t), np.sin(t)], axis=1),
        np.stack([1 - np.cos(t), 0.5 - np.sin(t)], axis=1),
    )
    return Dataset("moons", X + rng.normal(0, noise, size=(n, 2)), y, 2)


def circles(n: int = 200, noise: float = 0.05, factor: float = 0.5, seed: int = 0) -> Dataset:
    """A small circle (class 1) inside a large one (class 0); `factor` is the radius ratio."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    t = rng.uniform(0, 2 * np.pi, size=n)
    r = np.where(y == 1, factor, 1.0)
    X = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    return Dataset("circles", X + rng.normal(0, noise, size=(n, 2)), y, 2)


def spirals(n: int = 300, noise: float = 0.1, arms: int = 2, seed: int = 0) -> Dataset:
    """`arms` interleaved spiral arms, one class each (the classic hard case for a small MLP)."""
    _check_count(arms, "arms", minimum=2)
    rng = np.random.default_rng(seed)
    y = np.arange(n) % arms
    t = rng.uniform(0.0, 1.0, size=n)  # position along the arm, centre to rim
    angle = 3 * np.pi * t + 2 * np.pi * y / arms
    X = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    return Dataset(f"spirals{arms}", X + rng.normal(0, noise * t[:, None] + 1e-12, size=(n, 2)), y, arms)


def blobs(n: int = 200, noise: float = 0.5, centers: int = 3, seed: int = 0) -> Dataset:
    """`centers` Gaussian clusters placed evenly on a circle of radius 2."""
    _check_count(centers, "centers", minimum=2)
    rng = np.random.default_rng(seed)
    y = np.arange(n) % centers
    angle = 2 * np.pi * np.arange(centers) / centers
    means = 2 * np.stack([np.cos(angle), np.sin(angle)], axis=1)  # (centers, 2)
    return Dataset("blobs", means[y] + rng.normal(0, noise, size=(n, 2)), y, centers)


DATASETS = {"xor": xor, "moons": moons, "circles": circles, "spirals": spirals, "blobs": blobs}


def make_dataset(name: str, n: int | None = None, noise: float | None = None, seed: int = 0, **kwargs) -> Dataset:
    """A dataset by name, validating n and noise. `n=None`/`noise=None` take the generator's default
    (for xor: the exact 4-point truth table)."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(map(repr, DATASETS))}; got {name!r}")
    if n is not None:
        _check_count(n, "n", minimum=1)
    if noise is not None and not (isinstance(noise, numbers.Real) and np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number ≥ 0; got {noise!r}")
    args = {k: v for k, v in dict(n=n, noise=noise).items() if v is not None}
    return DATASETS[name](seed=seed, **args, **kwargs)


def from_csv(text: str, name: str = "csv", max_rows: int | None = None, max_classes: int = 10) -> Dataset:
    """A Dataset from CSV text, one point per row: `x1,x2,label` (the label an integer class 0, 1, ...).
    A first row that is not numbers is a header; blank rows and rows starting with # are skipped.
    Anything else that does not fit is a ValueError naming the row and column (1-based, as a
    spreadsheet numbers them), what was expected and what was given."""
    if not isinstance(text, str):
        raise TypeError(f"the CSV must be text; got {type(text).__name__}")
    X, y = [], []
    for r, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in line.split(",")]
        if not X and not y and _is_header(cells):
            continue
        if len(cells) != 3:
            raise ValueError(f"row {r}: expected 3 columns (x1, x2, label); got {len(cells)}: {line.strip()[:60]!r}")
        point = []
        for c, cell in enumerate(cells[:2], 1):
            try:
                value = float(cell)
            except ValueError:
                value = None
            if value is None or not np.isfinite(value):
                raise ValueError(f"row {r}, column {c}: expected a finite number; got {cell!r}")
            point.append(value)
        label = cells[2]
        if not label.isdigit() or int(label) >= max_classes:
            raise ValueError(f"row {r}, column 3: expected a class label 0 to {max_classes - 1}; got {label!r}")
        X.append(point)
        y.append(int(label))
        if max_rows is not None and len(X) > max_rows:
            raise ValueError(f"row {r}: more than {max_rows} points; at most {max_rows}")
    if len(X) < 4:
        raise ValueError(f"expected at least 4 points (rows of x1, x2, label); got {len(X)}")
    labels = np.array(y, np.int64)
    n_classes = int(labels.max()) + 1
    missing = sorted(set(range(n_classes)) - set(labels.tolist()))
    if n_classes < 2 or missing:
        what = "only class 0" if n_classes < 2 else f"no point of class {missing[0]}"
        raise ValueError(f"column 3: the labels must be the classes 0, 1, ... with every class used; {what}")
    return Dataset(name, np.array(X, np.float64), labels, n_classes)


def _is_header(cells: list[str]) -> bool:
    try:
        [float(c) for c in cells]
    except ValueError:
        return True
    return False


def _check_count(value: object, arg: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{arg} must be an integer ≥ {minimum}; got {value!r}")


# ============================================================================ sequence tasks for the tiny GPT

SEQUENCE_TASKS = ("copy", "reverse", "sort")


@dataclass(frozen=True)
class SequenceTask:
    """Digit strings and their copy, reverse or sort, laid out for a decoder-only model.

    Each example is one sequence of 2k + 1 tokens: k random digits, the separator, then the answer,
    e.g. reverse with k = 4 and digits 0–9 (SEP is token 10, drawn as |):

        sequence   3 1 4 1 | 1 4 1 3
        X          3 1 4 1 | 1 4 1          the first 2k tokens: what the model reads
        Y            1 4 1 | 1 4 1 3        the last 2k tokens: the next token at every position

    The loss is the mean over all 2k positions, because the model has no loss mask. Positions
    0 … k−2 of Y are the next input digits, random and unpredictable: the best any model can do there
    is ln(n_digits) each, so the loss never goes below `loss_floor` = (k−1)/(2k)·ln(n_digits). Position
    k−1 is always SEP. Positions k … 2k−1 (`answer`) are the answer: score accuracy there only.

    `source[s, i]` is the position in X of the input digit that answer i of sequence s copies: i for
    copy, k−1−i for reverse (query k+i looks at key k−1−i: the anti-diagonal, query + key = 2k−1), the
    stable argsort of the digits for sort (equal digits: the leftmost unused one). A model that solves
    the task by attention should put its weight from query k+i on key source[s, i].
    """

    name: str
    X: np.ndarray  # (n, 2k) int64 tokens
    Y: np.ndarray  # (n, 2k) int64 next tokens
    source: np.ndarray  # (n, k) int64: the X position each answer digit comes from
    length: int  # k digits per string
    n_digits: int  # digits are tokens 0 … n_digits−1

    def __len__(self) -> int:
        return len(self.X)

    @property
    def sep(self) -> int:
        """The separator token, right after the digits."""
        return self.n_digits

    @property
    def vocab_size(self) -> int:
        return self.n_digits + 1

    @property
    def seq_len(self) -> int:
        return 2 * self.length

    @property
    def answer(self) -> slice:
        """The positions of Y (and the query positions of X) that hold the answer."""
        return slice(self.length, 2 * self.length)

    @property
    def loss_floor(self) -> float:
        """The lowest mean loss any model can reach: ln(n_digits) on each unpredictable input digit."""
        return (self.length - 1) / (2 * self.length) * float(np.log(self.n_digits))

    def answer_accuracy(self, logits: np.ndarray) -> float:
        """The share of answer digits predicted right (argmax of logits (n, 2k, V))."""
        return float((logits[:, self.answer].argmax(axis=-1) == self.Y[:, self.answer]).mean())

    def decode(self, tokens) -> str:
        """Tokens as text: digits as themselves (0–9, then a, b, …), SEP as |."""
        return "".join("|" if t == self.sep else "0123456789abcdefghijklmnopqrstuvwxyz"[t] for t in tokens)


def sequence_task(name: str, n: int = 1000, length: int = 5, n_digits: int = 10, seed: int = 0) -> SequenceTask:
    """`n` random strings of `length` digits (uniform over 0 … n_digits−1) and their `name`d answer:
    copy, reverse or sort (ascending). See SequenceTask for the layout."""
    if name not in SEQUENCE_TASKS:
        raise ValueError(f"task must be one of {', '.join(map(repr, SEQUENCE_TASKS))}; got {name!r}")
    _check_count(n, "n", minimum=1)
    _check_count(length, "length", minimum=2)
    _check_count(n_digits, "n_digits", minimum=2)
    if n_digits > 36:
        raise ValueError(f"n_digits must be at most 36 (0–9 and a–z); got {n_digits}")
    rng = np.random.default_rng(seed)
    digits = rng.integers(0, n_digits, size=(n, length))  # (n, k)
    if name == "copy":
        source = np.broadcast_to(np.arange(length), (n, length))
    elif name == "reverse":
        source = np.broadcast_to(np.arange(length)[::-1], (n, length))
    else:
        source = np.argsort(digits, axis=1, kind="stable")  # (n, k)
    answer = np.take_along_axis(digits, source, axis=1)  # (n, k)
    sep = np.full((n, 1), n_digits)
    sequence = np.concatenate([digits, sep, answer], axis=1).astype(np.int64)  # (n, 2k + 1)
    return SequenceTask(
        name, sequence[:, :-1], sequence[:, 1:], np.ascontiguousarray(source, np.int64), length, n_digits
    )


# ============================================================================ a character-level text corpus

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
CORPORA = ("genesis",)  # shared/corpus/NAME.txt; its README says where each text comes from


def load_corpus(name: str = "genesis") -> str:
    """The text of shared/corpus/NAME.txt: genesis is Genesis 1–11 of the King James Version (1611,
    public domain; see shared/corpus/README.md), one verse a line, 34,849 characters."""
    if name not in CORPORA:
        raise ValueError(f"corpus must be one of {', '.join(map(repr, CORPORA))}; got {name!r}")
    return (CORPUS_DIR / f"{name}.txt").read_text(encoding="utf-8")


@dataclass(frozen=True)
class CharTokenizer:
    """One token per character: the vocabulary is the text's distinct characters, sorted, so the same
    text always gives the same ids. Characters outside the vocabulary are refused, never mapped to 0."""

    chars: str  # token i is chars[i]

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        if not text:
            raise ValueError("a tokenizer needs a non-empty text")
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.chars)}
        if unknown := sorted(set(text) - index.keys()):
            raise ValueError(f"characters not in the vocabulary: {''.join(unknown)!r}")
        return np.array([index[c] for c in text], dtype=np.int64)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def char_windows(ids: np.ndarray, seq_len: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` windows of `seq_len` tokens at seeded random offsets: X = ids[o : o+t], Y = ids[o+1 : o+t+1],
    each (n, seq_len) int64: next-character prediction at every position."""
    _check_count(seq_len, "seq_len", minimum=1)
    _check_count(n, "n", minimum=1)
    if len(ids) < seq_len + 1:
        raise ValueError(f"the text has {len(ids)} tokens; windows of seq_len={seq_len} need at least {seq_len + 1}")
    offsets = np.random.default_rng(seed).integers(0, len(ids) - seq_len, size=n)  # (n,)
    rows = offsets[:, None] + np.arange(seq_len)  # (n, t)
    return ids[rows].astype(np.int64), ids[rows + 1].astype(np.int64)


# ---- token sequences for the tiny GPT ----


@dataclass(frozen=True)
class TokenData:
    """Token sequences for a GPT: inputs X (n, t) and next-token targets y (n, t), both int64."""

    name: str
    X: np.ndarray
    y: np.ndarray
    vocab_size: int

    def __len__(self) -> int:
        return len(self.X)


def strides(n: int, vocab_size: int, seq_len: int, seed: int = 0) -> TokenData:
    """n sequences that count up modulo V from a random start by a random stride (1, 2 or 3, less
    when V is small): 3 6 1 4 7 2 ... for V = 8. The target at each position is the next token. The
    first target needs the stride, which the model cannot know yet; from the second token on, it can
    read the stride off the previous tokens: attention has something to learn."""
    rng = np.random.default_rng(seed)
    start = rng.integers(0, vocab_size, size=(n, 1))  # (n, 1)
    stride = rng.integers(1, max(2, min(4, vocab_size)), size=(n, 1))  # (n, 1)
    tokens = (start + stride * np.arange(seq_len + 1)) % vocab_size  # (n, t + 1)
    return TokenData("strides", tokens[:, :-1].astype(np.int64), tokens[:, 1:].astype(np.int64), vocab_size)
