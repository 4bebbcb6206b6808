"""Sequence data sets, and the tokenization every framework shares.

Tokenization is the harness's job, so all frameworks see identical token ids:
characters become their code point (the course's ``ord(c)``, 128 ids), words
become ids from a vocabulary built on the training split. Id 0 is padding
everywhere; sequences are padded at the end to one length per data set, so
every batch has the same shape (no retrace in graph modes) and the models'
masks keep the padding out of every result.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from harness.data import (
    DataError,
    Dataset,
    DatasetInfo,
    read_once,
    register,
    stratified_split,
)

PAD, UNKNOWN = 0, 1
CHAR_VOCAB = 128  # ASCII code points; 0 (NUL) never occurs in text and pads


def pad(seqs: list[list[int]], length: int) -> tuple[np.ndarray, int]:
    """Int32 ``[N, length]`` with zeros after each sequence, and how many were cut."""
    out = np.zeros((len(seqs), length), dtype=np.int32)
    cut = 0
    for i, s in enumerate(seqs):
        cut += len(s) > length
        s = s[:length]
        out[i, : len(s)] = s
    return out, cut


def char_ids(text: str) -> list[int]:
    """Code points of ``text``; a character outside ASCII becomes '?'."""
    return [ord(c) if 0 < ord(c) < CHAR_VOCAB else ord("?") for c in text]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def word_vocab(texts: list[str], size: int) -> dict[str, int]:
    """The ``size - 2`` most frequent words (ties by spelling) -> ids from 2."""
    counts = Counter(w for t in texts for w in words(t))
    ranked = sorted(counts, key=lambda w: (-counts[w], w))[: size - 2]
    return {w: i + 2 for i, w in enumerate(ranked)}


def word_ids(text: str, vocab: dict[str, int]) -> list[int]:
    return [vocab.get(w, UNKNOWN) for w in words(text)]


def chance(y: np.ndarray, classes: int) -> float:
    """Accuracy of always answering the most frequent class."""
    return float(np.bincount(y, minlength=classes).max() / len(y))


# --------------------------------------------------------------------------- hello


HELLO_CHARS = "ehlo"  # the course's idx2char


def hello(params: dict[str, Any], test_fraction: float, seed: int, _: Path | None) -> Dataset:
    """The course's first RNN: one-hot "hello" -> "ohlol", one sample, also the test set."""
    src, dst = params.get("input", "hello"), params.get("output", "ohlol")
    ids = [HELLO_CHARS.index(c) for c in src]
    x = np.eye(len(HELLO_CHARS), dtype=np.float32)[ids][None]
    y = np.array([[HELLO_CHARS.index(c) for c in dst]], dtype=np.int64)
    info = {"split": "one sample, trained and tested on", "chars": HELLO_CHARS}
    return Dataset(x, y, x, y, len(HELLO_CHARS), info)


# --------------------------------------------------------------------------- names

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _name_models(classes: int, rng: np.random.Generator, distinct: float) -> list[np.ndarray]:
    """Per class, a bigram letter model: shared logits plus a class's own part, so the
    classes have distinct but overlapping statistics. Row 26 is the start state,
    column 26 the end."""
    shared = rng.normal(size=(27, 27))
    models = []
    for _ in range(classes):
        logits = shared + distinct * rng.normal(size=(27, 27))
        logits[:, 26] += rng.uniform(1.5, 3.0)  # each class its own typical length
        logits[26, 26] = -np.inf  # no empty name
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        models.append(p / p.sum(axis=1, keepdims=True))
    return models


def _sample_name(model: np.ndarray, rng: np.random.Generator, max_len: int) -> str:
    state, out = 26, []
    while len(out) < max_len:
        state = rng.choice(27, p=model[state])
        if state == 26:
            break
        out.append(LETTERS[state])
    return "".join(out).capitalize()


def names_generated(
    params: dict[str, Any], test_fraction: float, seed: int, _: Path | None
) -> Dataset:
    """Surnames drawn from per-class letter models (the embedded stand-in for the
    course's names files): ``classes`` balanced classes, ``n`` names."""
    classes, n = int(params.get("classes", 18)), int(params.get("n", 4000))
    max_len = int(params.get("max_len", 20))
    rng = np.random.default_rng([seed, 7])
    models = _name_models(classes, rng, float(params.get("distinct", 1.0)))
    y = np.arange(n) % classes
    texts = [_sample_name(models[c], rng, max_len) for c in y]
    x, _ = pad([char_ids(t) for t in texts], max_len)
    tr, te = stratified_split(y, test_fraction, seed)
    info = {
        "source": f"{n} names from {classes} generated letter models",
        "split": f"stratified {len(tr)} train / {len(te)} test, seed {seed}",
        "chance": chance(y[te], classes),
        "examples": texts[:5],
    }
    return Dataset(x[tr], y[tr], x[te], y[te], classes, info)


# --------------------------------------------------------------------------- sentiment

_POSITIVE = "good great fine lovely superb excellent pleasant wonderful nice enjoyable".split()
_NEGATIVE = "bad awful poor dull terrible boring weak horrible nasty tedious".split()
_SUBJECTS = ["the film", "this movie", "the book", "the plot", "the cast", "the ending", "it"]
_FILLER = (
    "really quite very rather so a bit at times overall in places honestly "
    "frankly mostly on the whole from start to finish and then again"
).split()


def _sentence(rng: np.random.Generator, label: int, agree: float) -> str:
    """A review-like sentence whose opinion words agree with ``label`` with probability
    ``agree``; 'not' in front of a word flips it, so word counts alone do not decide
    the label (the convolution's windows have to see the pair)."""
    parts = [str(rng.choice(_SUBJECTS))]
    for _ in range(rng.integers(1, 4)):
        polarity = label if rng.random() < agree else 1 - label
        negate = rng.random() < 0.3
        if negate:
            polarity = 1 - polarity
        word = rng.choice(_POSITIVE if polarity == 1 else _NEGATIVE)
        filler = " ".join(rng.choice(_FILLER, size=rng.integers(0, 3)))
        parts.append(f"{filler} {'not ' if negate else ''}{word}".strip())
    return " ".join(parts)


def sentiment_generated(
    params: dict[str, Any], test_fraction: float, seed: int, _: Path | None
) -> Dataset:
    """Generated positive/negative sentences with label noise (``noise`` flips)."""
    n, max_len = int(params.get("n", 3000)), int(params.get("max_len", 24))
    noise, vocab_size = float(params.get("noise", 0.05)), int(params.get("vocab", 64))
    agree = float(params.get("agree", 0.9))
    rng = np.random.default_rng([seed, 11])
    y = rng.integers(0, 2, size=n)
    texts = [_sentence(rng, int(c), agree) for c in y]
    y = np.where(rng.random(n) < noise, 1 - y, y)
    tr, te = stratified_split(y, test_fraction, seed)
    vocab = word_vocab([texts[i] for i in tr], vocab_size)
    x, cut = pad([word_ids(t, vocab) for t in texts], max_len)
    info = {
        "source": f"{n} generated sentences, {noise:.0%} of labels flipped",
        "split": f"stratified {len(tr)} train / {len(te)} test, seed {seed}",
        "chance": chance(y[te], 2),
        "vocabulary": f"{len(vocab) + 2} ids (0 padding, 1 unknown), built on the train split",
        "truncated": int(cut),
        "examples": texts[:3],
    }
    return Dataset(x[tr], y[tr], x[te], y[te], 2, info)


# --------------------------------------------------------------------------- characters

BYTE_VOCAB = 257  # a byte b is id b + 1 (id 0 is never a character)
_GRAMMAR = {
    "S": [["NP", " ", "VP", ". "], ["NP", " ", "VP", ", and ", "NP", " ", "VP", ". "]],
    "NP": [["the ", "N"], ["a ", "A", " ", "N"], ["every ", "N"]],
    "VP": [["V", " ", "NP"], ["V", " ", "P", " ", "NP"], ["V"]],
    "N": [[w] for w in "cat dog bird fox owl horse mouse river tree stone".split()],
    "A": [[w] for w in "small quick quiet old red brave".split()],
    "V": [[w] for w in ("sees", "follows", "sings to", "jumps over", "watches", "finds")],
    "P": [[w] for w in "near under beside behind".split()],
}


def _expand(symbol: str, rng: np.random.Generator) -> str:
    if symbol not in _GRAMMAR:
        return symbol
    options = _GRAMMAR[symbol]
    return "".join(_expand(s, rng) for s in options[rng.integers(len(options))])


def generated_text(chars: int, seed: int) -> str:
    """Sentences of a small grammar: structure an LSTM can learn, well below the
    characters' unigram entropy."""
    rng = np.random.default_rng([seed, 13])
    out: list[str] = []
    while sum(map(len, out)) < chars:
        sentence = _expand("S", rng)
        out.append(sentence[0].upper() + sentence[1:])
    return "".join(out)[:chars]


def byte_ids(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.uint8).astype(np.int32) + 1


def decode(ids) -> str:
    """Ids back to text (bytes that do not form UTF-8 become U+FFFD)."""
    return bytes(int(i) - 1 for i in ids if 0 < int(i) < BYTE_VOCAB).decode("utf-8", "replace")


def unigram_entropy(ids: np.ndarray) -> float:
    """Entropy of the ids' frequencies in nats: the loss of a model that ignores context."""
    p = np.bincount(ids) / len(ids)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def windows(raw: bytes, params: dict[str, Any], test_fraction: float, source: str) -> Dataset:
    """A language model's data: windows of ``steps`` byte ids, each labelled with the
    next byte at every step; the last ``test_fraction`` of the text is the test set
    (a contiguous split: no window straddles it)."""
    steps = int(params.get("steps", 32))
    ids = byte_ids(raw)
    cut = int(len(ids) * (1 - test_fraction))
    parts = []
    for part in (ids[:cut], ids[cut:]):
        n = (len(part) - 1) // steps
        if n < 1:
            raise ValueError(f"{source}: too short for windows of {steps} characters")
        parts.append(part[: n * steps].reshape(n, steps))
        parts.append(part[1 : n * steps + 1].reshape(n, steps))
    x_tr, y_tr, x_te, y_te = parts
    info = {
        "source": source,
        "split": f"first {cut} bytes train ({len(x_tr)} windows of {steps}), the rest test "
        f"({len(x_te)} windows)",
        "chance": 1.0 / BYTE_VOCAB,
        "baselines": {"unigram_entropy_loss": unigram_entropy(ids[:cut])},
        "prompt": decode(x_te[0]),
    }
    return Dataset(x_tr, y_tr, x_te, y_te, BYTE_VOCAB, info)


def chars_generated(
    params: dict[str, Any], test_fraction: float, seed: int, _: Path | None
) -> Dataset:
    """Generated sentences (``chars`` characters) cut into windows."""
    chars = int(params.get("chars", 20000))
    raw = generated_text(chars, seed).encode("ascii")
    return windows(raw, params, test_fraction, f"{chars} characters of a generated grammar")


def seq_shape(default_len: int):
    return lambda p: (int(p.get("max_len", default_len)),)


register(
    DatasetInfo(
        "hello",
        hello,
        lambda p: (len(p.get("input", "hello")), len(HELLO_CHARS)),
        "the course's 'hello' -> 'ohlol', one-hot",
    )
)
register(
    DatasetInfo(
        "names_generated",
        names_generated,
        seq_shape(20),
        "surnames from generated per-class letter models",
    )
)
register(
    DatasetInfo(
        "sentiment_generated",
        sentiment_generated,
        seq_shape(24),
        "generated positive/negative sentences",
    )
)
register(
    DatasetInfo(
        "chars_generated",
        chars_generated,
        lambda p: (int(p.get("steps", 32)),),
        "generated sentences as byte windows",
    )
)


def _utf8_text(raw: bytes, path: Path) -> None:
    if b"\x00" in raw:  # valid UTF-8, but no text has it: a binary file
        raise DataError(
            f"{path} holds NUL bytes: it is a binary file, not UTF-8 text; --data-file takes "
            "a UTF-8 text file"
        )
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path} is not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); "
            "--data-file takes a UTF-8 text file"
        ) from None


def shortest_text(steps: int, test_fraction: float) -> int:
    """The fewest bytes that give one window of ``steps`` on each side of the split."""
    n = 2 * (steps + 1)
    while int(n * (1 - test_fraction)) < steps + 1 or n - int(n * (1 - test_fraction)) < steps + 1:
        n += 1
    return n


def check_text(path: Path, params: dict[str, Any], test_fraction: float, strict: bool) -> None:
    """A --data-file must be UTF-8 text long enough for a window in train and in test."""
    raw = read_once("bytes", path, Path.read_bytes)
    steps = int(params.get("steps", 32))
    need = shortest_text(steps, test_fraction)
    if not raw:
        raise DataError(f"{path} is empty; --data-file takes a UTF-8 text of {need} bytes or more")
    _utf8_text(raw, path)
    if len(raw) < need:
        raise DataError(
            f"{path} has {len(raw)} bytes, too few for a window of {steps} characters in both "
            f"the train and the test part; give a text of {need} bytes or more"
        )


def text_file(
    params: dict[str, Any], test_fraction: float, seed: int, path: Path | None
) -> Dataset:
    """Any UTF-8 text file (``--data-file``), as byte windows."""
    from harness.data.files import UNVERIFIED  # files imports this module

    assert path is not None
    raw = read_once("bytes", path, Path.read_bytes)
    _utf8_text(raw, path)
    try:
        ds = windows(raw, params, test_fraction, str(path))
    except ValueError as err:
        raise DataError(str(err)) from None
    checks = {
        "files": {path.name: UNVERIFIED},
        "sha256": {path.name: hashlib.sha256(raw).hexdigest()},
    }
    return Dataset(ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.classes, {**ds.info, **checks})


register(
    DatasetInfo(
        "text_file",
        text_file,
        lambda p: (int(p.get("steps", 32)),),
        "any UTF-8 text file, given with --data-file",
        needs_dir=True,
        check=check_text,
        reads_file=True,
    )
)
