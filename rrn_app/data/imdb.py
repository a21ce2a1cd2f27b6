"""IMDB movie reviews (Maas et al. 2011), binary sentiment, as a LightningDataModule.

Reads `<root>/imdb/{train,test}.jsonl.gz` (25,000 reviews each, gzip'd JSON lines {id, text, label, rating},
sorted by label) through Hugging Face `datasets`, which caches the tokenised reviews and the vocabulary.
There is no official validation split: `validation_size` reviews are carved from train, the same number of
each label, chosen by `split_seed` (fixed, independent of the training seed, so every run validates on the
same reviews); training uses the rest. The vocabulary comes from the training part only.

Tokenisation (`tokenize`): HTML line breaks `<br />` become spaces, text is lowercased (optional), and split
into words, clitics as GloVe/PTB split them (`don't` -> `do n't`, `it's` -> `it 's`) and single punctuation
marks. A review longer than `max_length` tokens keeps its last `max_length` tokens (`keep=end`, as Keras'
`pad_sequences` truncates by default; reviews tend to end on the verdict) or its first (`keep=start`).
Validation and test reviews are cut the same way unless `eval_max_length` says otherwise: `null` evaluates every
review at full length (the protocol of papers that do not truncate the test set), a number cuts them there.
`rrn-eval ckpt=... task.data.max_length=null` evaluates any IMDB checkpoint at full length (the vocabulary does
not depend on the cut).
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import torch

from rrn_app import option_checks
from rrn_app.data.cache import cached_dataset
from rrn_app.data.columns import arrow_table, in_memory_dataset, list_lengths
from rrn_app.data.locate import dataset_root
from rrn_app.data.text import Vocabulary, require_vectors
from rrn_app.data.words import WordDataModule
from rrn_app.option_checks import UserError

SOURCE_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
FILES = {"train": "train.jsonl.gz", "test": "test.jsonl.gz"}
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TOKEN = re.compile(r"\w+(?=n't\b)|n't\b|'(?:s|re|ve|ll|d|m)\b|\w+|[^\w\s]", re.IGNORECASE)


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """`<br />` -> space, optionally lowercase, then words, clitics and single punctuation marks."""
    text = _BREAK.sub(" ", text)
    return _TOKEN.findall(text.lower() if lowercase else text)


def read_reviews(path: str, lowercase: bool):
    """Rows {tokens, label} of one gzip'd JSON-lines file, in file order."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                try:
                    record = json.loads(line)
                    text, label = record["text"], int(record["label"])
                except (ValueError, KeyError, TypeError) as error:
                    raise UserError(f"{path} line {number} is not a labelled review ({error}); each line must be "
                                    'a JSON object with "text" and "label" (0 or 1). Is the file corrupt?') from None
                if label not in (0, 1):
                    raise UserError(f"{path} line {number}: label {label!r}; labels must be 0 or 1.")
                yield {"tokens": tokenize(text, lowercase), "label": label}
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise UserError(f"could not read {path}: {error}. Is the file a complete gzip of UTF-8 JSON lines?") from None


def validation_indices(labels: list[int], size: int, seed: int) -> list[int]:
    """`size` indices of `labels`, as many of each label as the proportions allow, drawn with `seed`; sorted."""
    generator = torch.Generator().manual_seed(seed)
    by_label: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(label, []).append(index)
    chosen, remaining = [], size
    groups = sorted(by_label.items())
    for number, (label, indices) in enumerate(groups):
        take = remaining if number == len(groups) - 1 else round(size * len(indices) / len(labels))
        take = min(take, len(indices))
        permutation = torch.randperm(len(indices), generator=generator)[:take].tolist()
        chosen += [indices[i] for i in permutation]
        remaining -= take
    return sorted(chosen)


def load_reviews(path: Path, lowercase: bool, cache_dir: str | None):
    """The tokenised reviews of one file, parsed once and cached by `datasets`."""
    import datasets

    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "label": datasets.Value("int64")})
    return cached_dataset(read_reviews, dict(path=str(path.resolve()), lowercase=lowercase), [path], features,
                          cache_dir, tokenize)


def truncate(ids: list[int], max_length: int | None, keep: str) -> list[int]:
    if max_length is None or len(ids) <= max_length:
        return ids
    return ids[-max_length:] if keep == "end" else ids[:max_length]


class IMDBDataModule(WordDataModule):
    def __init__(self, root: str = "data", batch_size: int = 32, max_length: int | None = 400, keep: str = "end",
                 validation_size: int = 2500, split_seed: int = 0, lowercase: bool = True, min_freq: int = 5,
                 max_vocab: int | None = None, vectors: str | None = None, embedding_dim: int = 64,
                 cache_dir: str | None = None, num_workers: int = 0, seed: int = 0,
                 eval_max_length: int | str | None = "max_length"):
        super().__init__()
        self.batch_size = option_checks.positive_int("batch_size", batch_size)
        self.max_length = None if max_length is None else option_checks.positive_int("max_length", max_length)
        if eval_max_length == "max_length":  # validation and test cut as training is
            eval_max_length = self.max_length
        elif eval_max_length is not None and (isinstance(eval_max_length, bool) or not isinstance(eval_max_length, int)
                                              or eval_max_length <= 0):
            raise option_checks.InvalidOption("eval_max_length", eval_max_length, "must be max_length (cut validation and "
                                           "test as training), null (full length) or a positive number of tokens")
        self.eval_max_length = eval_max_length
        self.keep = option_checks.one_of("keep", keep, ("end", "start"))
        self.validation_size = option_checks.positive_int("validation_size", validation_size)
        if validation_size >= 25000:
            raise option_checks.InvalidOption("validation_size", validation_size, "must be below the 25,000 training reviews")
        self.split_seed = split_seed
        self.min_freq = option_checks.positive_int("min_freq", min_freq)
        self.max_vocab = None if max_vocab is None else option_checks.positive_int("max_vocab", max_vocab)
        self.embedding_dim = option_checks.positive_int("embedding_dim", embedding_dim)
        self.lowercase, self.vectors, self.cache_dir = lowercase, vectors, cache_dir
        self.num_workers, self.seed = num_workers, seed
        self.folder = dataset_root(root, "imdb", [f"imdb/{name}" for name in FILES.values()]) / "imdb"
        if vectors:
            require_vectors(vectors)
        self.splits = None

    @property
    def num_classes(self) -> int:
        return 2

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        import pyarrow as pa

        # whole columns in Arrow, never row by row
        raw_train = arrow_table(load_reviews(self.folder / FILES["train"], self.lowercase, self.cache_dir))
        raw_test = arrow_table(load_reviews(self.folder / FILES["test"], self.lowercase, self.cache_dir))
        held_out = validation_indices(raw_train.column("label").to_pylist(), self.validation_size, self.split_seed)
        held = set(held_out)
        self.split_indices = {"train": [i for i in range(len(raw_train)) if i not in held], "validation": held_out}
        training_part = raw_train.column("tokens").take(self.split_indices["train"])  # held-out words excluded
        self.vocabulary = Vocabulary.build(training_part, self.min_freq, self.max_vocab)

        def encoded(table, max_length):
            ids = self.vocabulary.encode_column(table.column("tokens"), max_length, self.keep)
            return pa.table({"ids": ids, "label": table.column("label")})

        train = encoded(raw_train, self.max_length)
        validation_rows = (train.take(held_out) if self.eval_max_length == self.max_length
                           else encoded(raw_train.take(held_out), self.eval_max_length))
        self.splits = {"train": in_memory_dataset(train.take(self.split_indices["train"])),
                       "validation": in_memory_dataset(validation_rows),
                       "test": in_memory_dataset(encoded(raw_test, self.eval_max_length))}
        self.lengths = {split: list_lengths(arrow_table(data).column("ids")) for split, data in self.splits.items()}
        self.load_embeddings()
