"""Which words a word-level task's vocabulary holds: the training words only, or also every word that has a
pretrained vector (Tai, Socher & Manning 2015's pipeline, which Pradhan & Longpre follow on SST).

`train`: the words of the training split seen at least `min_freq` times; every other word is `<unk>`.
`vectors`: those, then every word of any split (training, validation, test) that the vectors file has a row
for, most frequent first (ties alphabetical). Only the words of the splits are read, never their labels, so
no test label reaches the model; a test word the model never trained on still gets its pretrained vector
instead of `<unk>`'s. Without a vectors file nothing has a vector, and `vectors` is the same as `train`.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from rrn_app.data.text import Vocabulary, require_vectors
from rrn_app.option_checks import UserError

MODES = ("vectors", "train")


def words_with_vectors(path: str | Path) -> set[str]:
    """The words a GloVe-format text file (plain or .gz) has a row for: each line's text before its first space."""
    path = require_vectors(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as file:
            return {line.partition(" ")[0] for line in file.read().split("\n") if line.strip()}
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise UserError(f"could not read word vectors from {path}: {error}. Is the file complete?") from error


def build_vocabulary(mode: str, train, others=(), min_freq: int = 1, vectors: str | Path | None = None) -> Vocabulary:
    """The vocabulary of `mode` (see the module docstring). `train` and each of `others` are token columns
    (pyarrow list-of-strings columns, or lists of token lists) of the training split and of the other splits."""
    vocabulary = Vocabulary.build(train, min_freq)
    if mode == "train" or not vectors:
        return vocabulary
    from rrn_app.data.columns import value_counts

    counts: dict[str, int] = {}
    for column in (train, *others):
        if type(column).__module__.startswith("pyarrow"):
            column_counts = value_counts(column)
        else:
            column_counts = {}
            for tokens in column:
                for token in tokens:
                    column_counts[token] = column_counts.get(token, 0) + 1
        for word, count in column_counts.items():
            counts[word] = counts.get(word, 0) + count
    have = words_with_vectors(vectors)
    extra = sorted((word for word in counts if word in have and word not in vocabulary.stoi),
                   key=lambda word: (-counts[word], word))
    return Vocabulary([*vocabulary.itos, *extra])


def unknown_rate(vocabulary: Vocabulary, sequences) -> tuple[int, int, int, int]:
    """(tokens that are `<unk>`, tokens, sequences with at least one `<unk>`, sequences) of lists of tokens."""
    unknown = tokens = hit = count = 0
    for sequence in sequences:
        missing = sum(token not in vocabulary.stoi for token in sequence)
        unknown, tokens, hit, count = unknown + missing, tokens + len(sequence), hit + (missing > 0), count + 1
    return unknown, tokens, hit, count
