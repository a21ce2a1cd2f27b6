"""Text pieces shared by the word-level tasks: vocabulary, pretrained vectors, padded batches."""

from __future__ import annotations

import gzip
import warnings
from collections import Counter
from itertools import chain
from pathlib import Path

import numpy as np
import torch

from rrn_app.option_checks import MissingDataError, UserError

PAD, UNK = "<pad>", "<unk>"


class Vocabulary:
    """Token <-> index, index 0 = padding, 1 = unknown; the rest in order of first appearance by frequency."""

    def __init__(self, tokens: list[str]):
        self.itos = list(tokens)
        self.stoi = {token: index for index, token in enumerate(self.itos)}

    @classmethod
    def build(cls, sequences, min_freq: int = 1, max_size: int | None = None) -> "Vocabulary":
        """The tokens seen at least min_freq times, most frequent first (ties alphabetical), at most max_size.

        `sequences`: lists of tokens, or a pyarrow list-of-strings column (counted in Arrow, not row by row).
        """
        if type(sequences).__module__.startswith("pyarrow"):
            from rrn_app.data.columns import value_counts

            counts = value_counts(sequences)
        else:
            counts = Counter(token for sequence in sequences for token in sequence)
        words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        return cls([PAD, UNK, *words[:max_size]])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: list[str]) -> list[int]:
        unknown = self.stoi[UNK]
        return [self.stoi.get(token, unknown) for token in tokens]

    def encode_column(self, column, max_length: int | None = None, keep: str = "end"):
        """A pyarrow list-of-strings column as lists of indices (unknown tokens -> <unk>), computed in Arrow;
        with `max_length`, a longer row keeps its last (`keep="end"`) or first ("start") max_length indices."""
        from rrn_app.data.columns import lookup_lists

        return lookup_lists(column, self.stoi, self.stoi[UNK], max_length, keep)


def require_vectors(path: str | Path) -> Path:
    """The word-vectors file, or an error naming it and the fix (the DataModules check it before reading data)."""
    path = Path(path)
    if not path.is_file():
        from rrn_app.data.locate import vectors_fallback  # the default GloVe file falls back to the embedded rows

        fallback = vectors_fallback(path)
        if fallback is not None:
            return fallback
        raise MissingDataError(
            f"word vectors not found: {path}. Get GloVe with `rrn-data get glove`, set task.data.vectors to a GloVe "
            "text file, plain or .gz, or task.data.vectors=null to learn embeddings from scratch."
        )
    return path


def load_vectors(path: str | Path, vocabulary: Vocabulary, dim: int, seed: int = 0):
    """An embedding matrix [len(vocabulary), dim] from a GloVe-format text file (plain or .gz).

    Words the file lacks are drawn uniform in [-0.05, 0.05] (Pradhan & Longpre 4.2); padding is zero.
    Returns (matrix, number of vocabulary words found in the file).
    """
    path = require_vectors(path)
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.empty(len(vocabulary), dim).uniform_(-0.05, 0.05, generator=generator)
    matrix[0] = 0.0
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as file:
            lines = file.read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise UserError(f"could not read word vectors from {path}: {error}. Is the file complete?") from error
    numbers, indices, rows = [], [], []  # the file's lines with a vocabulary word: all their numbers parsed at once
    for number, line in enumerate(lines, 1):
        word, _, rest = line.partition(" ")
        index = vocabulary.stoi.get(word)
        if index is not None:
            numbers.append(number), indices.append(index), rows.append(rest)
    values = np.zeros(0)
    if rows:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # numpy's "could not be read to its end"
            try:
                values = np.fromstring(" ".join(rows), dtype=np.float64, sep=" ")
            except ValueError:
                pass
    if values.size != len(rows) * dim:  # a row of another length, or not numbers: name the first
        for number, rest in zip(numbers, rows):
            word, parts = lines[number - 1].partition(" ")[0], rest.split(" ")
            if len(parts) != dim:
                raise UserError(
                    f"{path} line {number}: {len(parts)} numbers for {word!r}, but the embedding "
                    f"dimension is {dim}. Set the embedding_dim option to the file's dimension."
                )
            try:
                [float(v) for v in parts]
            except ValueError as error:
                raise UserError(f"could not read word vectors from {path}: {error}. Is the file complete?") from None
        raise UserError(f"could not read word vectors from {path}: its numbers do not parse. Is the file complete?")
    last = {index: position for position, index in enumerate(indices)}  # a word listed twice: its last line
    matrix[torch.tensor(list(last), dtype=torch.long)] = torch.from_numpy(
        values.reshape(-1, dim)[list(last.values())].astype(np.float32))
    found = len(rows)
    return matrix, found


def pad_batch(rows: list[dict]) -> dict[str, torch.Tensor]:
    """Collate rows with an `ids` list into ids [batch, longest] (0-padded), lengths [batch], label [batch].

    (The word tasks' loaders read whole batches from `EncodedRows`, which gives the same; this is for rows.)
    """
    ids = [row["ids"] for row in rows]
    batch = {"ids": pad_sequences(ids), "lengths": torch.tensor(list(map(len, ids)), dtype=torch.long)}
    if "label" in rows[0]:
        batch["label"] = torch.tensor([row["label"] for row in rows], dtype=torch.long)
    return batch


def pad_sequences(sequences: list, value: int = 0) -> torch.Tensor:
    """Integer sequences (lists or tensors) as one tensor [batch, longest], filled with `value` past each
    sequence's end: one tensor of all values, placed by a mask, not a copy per sequence."""
    lengths = torch.tensor(list(map(len, sequences)), dtype=torch.long)
    if sequences and isinstance(sequences[0], torch.Tensor):
        values = torch.cat([sequence.reshape(-1) for sequence in sequences]).to(torch.long)
    else:
        values = torch.tensor(list(chain.from_iterable(sequences)), dtype=torch.long)
    padded = torch.full((len(sequences), int(lengths.max()) if len(sequences) else 0), value, dtype=torch.long)
    padded[torch.arange(padded.shape[1]) < lengths[:, None]] = values
    return padded
