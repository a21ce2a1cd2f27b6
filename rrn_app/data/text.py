"""Text pieces shared by the word-level tasks: vocabulary, pretrained vectors, padded batches."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import torch

from rrn_app.validation import MissingDataError, UserError

PAD, UNK = "<pad>", "<unk>"


class Vocabulary:
    """Token <-> index, index 0 = padding, 1 = unknown; the rest in order of first appearance by frequency."""

    def __init__(self, tokens: list[str]):
        self.itos = list(tokens)
        self.stoi = {token: index for index, token in enumerate(self.itos)}

    @classmethod
    def build(cls, sequences, min_freq: int = 1, max_size: int | None = None) -> "Vocabulary":
        """The tokens seen at least min_freq times, most frequent first (ties alphabetical), at most max_size."""
        counts = Counter(token for sequence in sequences for token in sequence)
        words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        return cls([PAD, UNK, *words[:max_size]])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: list[str]) -> list[int]:
        unknown = self.stoi[UNK]
        return [self.stoi.get(token, unknown) for token in tokens]


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
    found = 0
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                word, _, rest = line.rstrip("\n").partition(" ")
                index = vocabulary.stoi.get(word)
                if index is None:
                    continue
                values = rest.split(" ")
                if len(values) != dim:
                    raise UserError(
                        f"{path} line {number}: {len(values)} numbers for {word!r}, but the embedding "
                        f"dimension is {dim}. Set the embedding_dim option to the file's dimension."
                    )
                matrix[index] = torch.tensor([float(v) for v in values])
                found += 1
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as error:
        if isinstance(error, UserError):
            raise
        raise UserError(f"could not read word vectors from {path}: {error}. Is the file complete?") from error
    return matrix, found


def pad_batch(rows: list[dict]) -> dict[str, torch.Tensor]:
    """Collate rows with an `ids` list into ids [batch, longest] (0-padded), lengths [batch], label [batch]."""
    batch = {"ids": pad_sequences([row["ids"] for row in rows]),
             "lengths": torch.tensor([len(row["ids"]) for row in rows], dtype=torch.long)}
    if "label" in rows[0]:
        batch["label"] = torch.tensor([row["label"] for row in rows], dtype=torch.long)
    return batch


def pad_sequences(sequences: list[list[int]], value: int = 0) -> torch.Tensor:
    """Integer sequences as one tensor [batch, longest], filled with `value` past each sequence's end."""
    longest = max(len(sequence) for sequence in sequences)
    padded = torch.full((len(sequences), longest), value, dtype=torch.long)
    for index, sequence in enumerate(sequences):
        padded[index, : len(sequence)] = torch.as_tensor(sequence, dtype=torch.long)
    return padded
