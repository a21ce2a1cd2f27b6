"""ATIS slot filling with intent detection (the SlotGated-SLU split of Goo et al. 2018) as a LightningDataModule.

Reads `<root>/atis/{train,valid,test}/{seq.in,seq.out,label}` (4,478 / 500 / 893 utterances; one utterance, its
IOB slot tags and its intent per line) through Hugging Face `datasets`, which caches the parsed splits.

Labels. The model predicts the slot tags and intents of the training split only. Tags and intents that occur
only in validation or test (6 test slot tags, 4 test intents, 1 validation intent and 1 validation tag, see the
data's SOURCE.md) are appended after them in the label lists, so evaluation still scores against the true gold
strings: such a tag or intent can never be predicted and counts as an error, as it would with conlleval; it is
left out of the loss. A multi-intent label (`atis_flight#atis_airfare`) is one class of its own, matched
exactly (as Goo et al. and later work do).
"""

from __future__ import annotations

from pathlib import Path

import torch

from rrn_app import option_checks
from rrn_app.data.cache import cached_dataset
from rrn_app.data.columns import arrow_table, in_memory_dataset, list_lengths, lookup, lookup_lists, unique_values
from rrn_app.data.locate import dataset_root
from rrn_app.data.text import Vocabulary, pad_batch, pad_sequences, require_vectors
from rrn_app.data.words import WordDataModule
from rrn_app.option_checks import UserError

SOURCE_URL = "https://github.com/MiuLab/SlotGated-SLU/tree/master/data/atis"
SPLITS = {"train": "train", "validation": "valid", "test": "test"}
FILES = ("seq.in", "seq.out", "label")
OUTSIDE = "O"


def read_utterances(folder: str):
    """Rows {tokens, tags, intent} of one split folder; the three files must agree line by line."""
    paths = [Path(folder) / name for name in FILES]
    lines = [text_lines(path) for path in paths]
    if len({len(part) for part in lines}) != 1:
        counts = ", ".join(f"{path.name}: {len(part)}" for path, part in zip(paths, lines))
        raise UserError(f"{folder}: the files have different numbers of lines ({counts}); they must match line "
                        "by line. Is a file truncated?")
    for number, (words, tags, intent) in enumerate(zip(*lines), 1):
        words, tags = words.split(), tags.split()
        if not words or len(words) != len(tags) or not intent.strip():
            raise UserError(f"{paths[1]} line {number}: {len(tags)} tags for {len(words)} words in seq.in "
                            f"(intent {intent.strip()!r}); every word needs one IOB tag and every line an intent.")
        for tag in tags:
            if tag != OUTSIDE and not tag.startswith(("B-", "I-")):
                raise UserError(f"{paths[1]} line {number}: {tag!r} is not an IOB tag (O, B-<type> or I-<type>).")
        yield {"tokens": words, "tags": tags, "intent": intent.strip()}


def text_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file; a UserError naming the file and the line where it is not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise UserError(f"{path} line {line}: not UTF-8 text (byte {data[error.start]:#04x}); is the file damaged? "
                        "Get a complete copy with rrn-data get atis.") from None


def label_list(train_labels, other_labels) -> tuple[list[str], int]:
    """All labels, the training ones first (what the model predicts), then those seen only elsewhere.

    Returns (labels, number the model predicts). The training tags are ordered O first, then sorted.
    """
    seen = sorted(set(train_labels), key=lambda label: (label != OUTSIDE, label))
    unseen = sorted(set(other_labels) - set(seen))
    return seen + unseen, len(seen)


def pad_tagged_batch(rows: list[dict]) -> dict:
    """ids [batch, longest] (0-padded), lengths, tags [batch, longest] (-1 past each length), intent, index, tokens."""
    batch = pad_batch(rows)  # ids, lengths
    batch["tags"] = pad_sequences([row["tags"] for row in rows], -1)
    batch["intent"] = torch.tensor([row["intent"] for row in rows], dtype=torch.long)
    batch["index"] = torch.tensor([row["index"] for row in rows], dtype=torch.long)
    batch["tokens"] = [row["tokens"] for row in rows]
    return batch


class ATISDataModule(WordDataModule):
    padded, scalars, objects = {"ids": 0, "tags": -1}, ("intent", "index"), ("tokens",)  # pad_tagged_batch's batch

    def __init__(self, root: str = "data", batch_size: int = 16, min_freq: int = 1, vectors: str | None = None,
                 embedding_dim: int = 100, cache_dir: str | None = None, num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.batch_size = option_checks.positive_int("batch_size", batch_size)
        self.min_freq = option_checks.positive_int("min_freq", min_freq)
        self.embedding_dim = option_checks.positive_int("embedding_dim", embedding_dim)
        self.vectors, self.cache_dir, self.num_workers, self.seed = vectors, cache_dir, num_workers, seed
        self.folder = dataset_root(root, "atis") / "atis"
        if vectors:
            require_vectors(vectors)
        self.splits = None

    def _load_split(self, split: str):
        import datasets

        folder = self.folder / SPLITS[split]
        features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                      "tags": datasets.Sequence(datasets.Value("string")),
                                      "intent": datasets.Value("string")})
        return cached_dataset(read_utterances, dict(folder=str(folder.resolve())),
                              [folder / name for name in FILES], features, self.cache_dir, text_lines, dataset="atis")

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        import pyarrow as pa

        raw = {split: arrow_table(self._load_split(split)) for split in SPLITS}  # whole columns, never row by row
        train, others = raw["train"], [raw["validation"], raw["test"]]
        self.vocabulary = Vocabulary.build(train.column("tokens"), self.min_freq)

        def seen_elsewhere(column: str) -> list[str]:
            return [label for table in others for label in unique_values(table.column(column))]

        self.slot_labels, self.num_slot_outputs = label_list(unique_values(train.column("tags")),
                                                             seen_elsewhere("tags"))
        self.intent_labels, self.num_intent_outputs = label_list(unique_values(train.column("intent")),
                                                                 seen_elsewhere("intent"))
        tags = {tag: index for index, tag in enumerate(self.slot_labels)}
        intents = {intent: index for index, intent in enumerate(self.intent_labels)}
        self.splits = {split: in_memory_dataset(pa.table({
            "tokens": table.column("tokens"), "ids": self.vocabulary.encode_column(table.column("tokens")),
            "tags": lookup_lists(table.column("tags"), tags), "intent": lookup(table.column("intent"), intents),
            "index": pa.array(range(len(table)), pa.int64())})) for split, table in raw.items()}
        self.lengths = {split: list_lengths(table.column("tokens")) for split, table in raw.items()}
        self.load_embeddings()

    def model_arguments(self) -> dict:
        """Sizes, label names (the model predicts the first num_*_outputs of each) and pretrained embeddings."""
        return dict(vocab_size=len(self.vocabulary), embedding_dim=self.embedding_dim,
                    slot_labels=self.slot_labels, num_slot_outputs=self.num_slot_outputs,
                    intent_labels=self.intent_labels, num_intent_outputs=self.num_intent_outputs,
                    pretrained_embeddings=self.embeddings)
