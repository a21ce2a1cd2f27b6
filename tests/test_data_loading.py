"""Data loading without per-row Python: the vectorised sampler, lengths, encoding and padding give exactly what the
row-by-row code gave, and no row is ever fetched and formatted on its own.

The `reference_*` functions below are the old row-by-row code, kept as the specification. The data modules run on
tiny datasets written by the tests themselves.
"""

from __future__ import annotations

import gzip
import json
import random
from collections import Counter
from collections.abc import Sequence

import datasets
import numpy as np
import pyarrow as pa
import pytest
import torch

from rrn_app.data.atis import ATISDataModule, label_list, pad_tagged_batch
from rrn_app.data.batching import BucketBatchSampler, length_tensor
from rrn_app.data.columns import lookup, lookup_lists, value_counts
from rrn_app.data.imdb import IMDBDataModule, load_reviews, truncate
from rrn_app.data.packed import EncodedRows, PackedSequences
from rrn_app.data.sst import SSTDataModule
from rrn_app.data.text import PAD, UNK, Vocabulary, pad_batch, pad_sequences

# --- the old row-by-row code: the specification ----------------------------------------------------------------


def reference_batches(lengths, batch_size, shuffle, seed=0, epoch=0, pool_batches=50, num_replicas=1, rank=0):
    lengths = torch.as_tensor(list(lengths))
    if not shuffle:
        order = torch.argsort(lengths, stable=True)
        batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
        return batches[rank::num_replicas]
    generator = torch.Generator().manual_seed(seed + epoch)
    order = torch.randperm(len(lengths), generator=generator)
    pool, batches = batch_size * pool_batches, []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[torch.argsort(lengths[chunk], stable=True)]
        batches += [chunk[i : i + batch_size].tolist() for i in range(0, len(chunk), batch_size)]
    batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    if num_replicas > 1 and len(batches) % num_replicas:
        batches += batches[: num_replicas - len(batches) % num_replicas]
    return batches[rank::num_replicas]


def reference_pad(sequences, value=0):
    padded = torch.full((len(sequences), max(len(s) for s in sequences)), value, dtype=torch.long)
    for index, sequence in enumerate(sequences):
        padded[index, : len(sequence)] = torch.as_tensor(sequence, dtype=torch.long)
    return padded


def reference_vocabulary(token_lists, min_freq=1, max_size=None):
    counts = Counter(token for tokens in token_lists for token in tokens)
    words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
    return [PAD, UNK, *words[:max_size]]


def reference_batch(rows, collate):
    """The batch the old loader made: the rows fetched one by one, then the collate function's padding."""
    return collate(rows)


def assert_same_batch(expected: dict, actual: dict):
    assert list(actual) == list(expected)
    for key, value in expected.items():
        if torch.is_tensor(value):
            assert actual[key].dtype == value.dtype and torch.equal(actual[key], value), key
        else:
            assert actual[key] == value, key


class RowFormatted(AssertionError):
    pass


@pytest.fixture
def no_row_formatting(monkeypatch):
    """`datasets` may format whole batches and columns, never a single row: that is the per-row path (a lazy
    Column's iteration, `dataset[i]`, torch.as_tensor on a Column) that made SST wait 36 s."""

    def refuse(self, pa_table):
        raise RowFormatted("a datasets row was fetched and formatted on its own")

    monkeypatch.setattr(datasets.formatting.formatting.PythonFormatter, "format_row", refuse)


# --- the sampler and its lengths ------------------------------------------------------------------------------------


LENGTHS = [random.Random(3).randint(1, 40) for _ in range(517)]


@pytest.mark.parametrize("kind", ["list", "tuple", "tensor", "numpy", "arrow", "datasets column"])
@pytest.mark.parametrize("shuffle, epoch, replicas", [(True, 0, 1), (True, 4, 1), (True, 1, 3), (False, 0, 1),
                                                      (False, 0, 2)])
def test_sampler_batches_are_the_old_ones_whatever_holds_the_lengths(kind, shuffle, epoch, replicas):
    holder = {"list": lambda: list(LENGTHS), "tuple": lambda: tuple(LENGTHS),
              "tensor": lambda: torch.tensor(LENGTHS, dtype=torch.int32), "numpy": lambda: np.array(LENGTHS),
              "arrow": lambda: pa.chunked_array([LENGTHS[:200], LENGTHS[200:]]),
              "datasets column": lambda: datasets.Dataset.from_dict({"length": LENGTHS})["length"]}[kind]()
    for rank in range(replicas):
        sampler = BucketBatchSampler(holder, 16, shuffle=shuffle, seed=5, pool_batches=4, num_replicas=replicas,
                                     rank=rank)
        sampler.set_epoch(epoch)
        expected = reference_batches(LENGTHS, 16, shuffle, 5, epoch, 4, replicas, rank)
        assert list(sampler) == expected and len(sampler) == len(expected)


class CountingColumn(Sequence):
    """A lazy column (as `datasets` 4+ returns) that counts how it is read: one row at a time, or in slices."""

    def __init__(self, values):
        self.values, self.rows_read, self.slices_read = list(values), 0, 0

    def __len__(self):
        return len(self.values)

    def __getitem__(self, key):
        if isinstance(key, slice):
            self.slices_read += 1
            return self.values[key]
        self.rows_read += 1
        return self.values[key]

    def __iter__(self):
        for value in self.values:
            self.rows_read += 1
            yield value


def test_lengths_are_read_in_one_slice_not_row_by_row():
    column = CountingColumn(LENGTHS)
    assert torch.equal(length_tensor(column), torch.tensor(LENGTHS))
    assert (column.rows_read, column.slices_read) == (0, 1)
    sampler = BucketBatchSampler(CountingColumn(LENGTHS), 16, shuffle=True)
    assert sampler.lengths.dtype == torch.long and sampler.lengths.tolist() == LENGTHS
    naive = CountingColumn(LENGTHS)
    torch.as_tensor(naive)  # what the sampler used to do: it reads every row on its own
    assert naive.rows_read >= len(LENGTHS)


def test_a_datasets_column_gives_the_sampler_its_lengths_without_formatting_a_row(no_row_formatting):
    column = datasets.Dataset.from_dict({"length": LENGTHS})["length"]
    if not isinstance(column, list):  # datasets 4+: a lazy Column; reading it row by row trips the trap
        with pytest.raises(RowFormatted):
            next(iter(column))
    assert BucketBatchSampler(column, 16, shuffle=False).lengths.tolist() == LENGTHS


# --- padding and packed sequences ---------------------------------------------------------------------------------


SEQUENCES = [[random.Random(n).randint(1, 99) for _ in range(random.Random(-n).randint(1, 12))] for n in range(30)]


@pytest.mark.parametrize("value", [0, -1])
def test_pad_sequences_pads_as_the_per_row_copy_did(value):
    expected = reference_pad(SEQUENCES, value)
    for given in (SEQUENCES, [torch.tensor(s) for s in SEQUENCES], [tuple(s) for s in SEQUENCES]):
        padded = pad_sequences(given, value)
        assert padded.dtype == torch.long and torch.equal(padded, expected)
    rows = [{"ids": s, "label": n % 5} for n, s in enumerate(SEQUENCES)]
    batch = pad_batch(rows)
    assert list(batch) == ["ids", "lengths", "label"]
    assert torch.equal(batch["ids"], reference_pad(SEQUENCES))
    assert batch["lengths"].tolist() == [len(s) for s in SEQUENCES] and batch["label"].tolist() == [n % 5 for n in
                                                                                                     range(30)]


def test_packed_sequences_gather_any_rows_padded_like_the_rows_themselves():
    column = pa.chunked_array([pa.array(SEQUENCES[:11]), pa.array(SEQUENCES[11:]).slice(2)])  # chunked and sliced
    rows = SEQUENCES[:11] + SEQUENCES[13:]
    packed = PackedSequences.from_arrow(column)
    assert len(packed) == len(rows) and packed.lengths.tolist() == [len(r) for r in rows]
    for indices in ([0], [5, 3, 3, 20], list(range(len(rows)))[::-1]):
        for value in (0, -1):
            assert torch.equal(packed.padded(indices, value), reference_pad([rows[i] for i in indices], value))
    assert packed.padded([], 0).shape == (0, 0)


def test_encoded_rows_give_the_batch_the_row_collate_gave():
    table = pa.table({"tokens": [[f"w{v}" for v in s] for s in SEQUENCES], "ids": SEQUENCES,
                      "tags": [[v % 7 for v in s] for s in SEQUENCES], "intent": [n % 3 for n in range(30)],
                      "index": list(range(30))})
    rows = EncodedRows(datasets.Dataset(table), {"ids": 0, "tags": -1}, ("intent", "index"), ("tokens",))
    dataset_rows = datasets.Dataset(table)
    for indices in ([4], [9, 2, 17, 2], list(range(30))):
        expected = pad_tagged_batch([dataset_rows[i] for i in indices])
        assert_same_batch(expected, rows.__getitems__(indices))
    assert rows[7] == dataset_rows[7]


# --- whole columns in Arrow ---------------------------------------------------------------------------------------


TOKENS = [["the", "cat", "sat"], ["the", "dog"], [], ["a", "cat", "the", "zebra", "the"], ["b", "a"]]


@pytest.mark.parametrize("min_freq, max_size", [(1, None), (2, None), (1, 3)])
def test_vocabulary_from_an_arrow_column_is_the_counted_one(min_freq, max_size):
    column = pa.chunked_array([TOKENS[:2], TOKENS[2:]])
    assert value_counts(column) == Counter(t for tokens in TOKENS for t in tokens)
    built = Vocabulary.build(column, min_freq, max_size)
    assert built.itos == reference_vocabulary(TOKENS, min_freq, max_size) == Vocabulary.build(TOKENS, min_freq,
                                                                                               max_size).itos


@pytest.mark.parametrize("max_length, keep", [(None, "end"), (2, "end"), (2, "start"), (10, "end")])
def test_encoding_and_truncation_in_arrow_are_the_per_token_ones(max_length, keep):
    vocabulary = Vocabulary([PAD, UNK, "the", "cat", "a"])
    encoded = vocabulary.encode_column(pa.chunked_array([TOKENS[:3], TOKENS[3:]]), max_length, keep)
    assert encoded.to_pylist() == [truncate(vocabulary.encode(tokens), max_length, keep) for tokens in TOKENS]


def test_lookups_without_a_default_name_what_is_missing():
    assert lookup(pa.array(["b", "a"]), {"a": 0, "b": 1}).to_pylist() == [1, 0]
    assert lookup_lists(pa.array([["b"], [], ["a", "a"]]), {"a": 4, "b": 5}).to_pylist() == [[5], [], [4, 4]]
    with pytest.raises(KeyError, match="'c'"):
        lookup(pa.array(["a", "c"]), {"a": 0})


# --- the word tasks' data modules, on tiny data written here -------------------------------------------------------


WORDS = ["good", "bad", "film", "plot", "the", "a", "dull", "fun", "-LRB-", "actors", "not", "very"]


def random_tree(rng: random.Random, words: list[str]) -> str:
    if len(words) == 1:
        return f"({rng.randint(0, 4)} {words[0]})"
    cut = rng.randint(1, len(words) - 1)
    return f"({rng.randint(0, 4)} {random_tree(rng, words[:cut])} {random_tree(rng, words[cut:])})"


@pytest.fixture
def sst_root(tmp_path):
    rng = random.Random(0)
    folder = tmp_path / "data" / "sst"
    folder.mkdir(parents=True)
    for name, count in (("train.txt", 60), ("dev.txt", 12), ("test.txt", 12)):
        lines = [random_tree(rng, [rng.choice(WORDS) for _ in range(rng.randint(1, 9))]) for _ in range(count)]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path / "data"


def check_loaders(module, rows_of, collate, batch_size):
    """Every loader's batches are the old sampler's batches of the old rows, padded by the old collate."""
    for split, shuffle in (("train", True), ("validation", False), ("test", False)):
        rows = rows_of(split)
        loader = module._loader(split, shuffle)
        expected = reference_batches([len(row["ids"]) for row in rows], batch_size, shuffle, seed=module.seed)
        assert module.lengths[split].tolist() == [len(row["ids"]) for row in rows]
        assert list(loader.batch_sampler) == expected
        for indices, batch in zip(expected, loader, strict=True):
            assert_same_batch(reference_batch([rows[i] for i in indices], collate), batch)


def test_sst_vocabulary_ids_and_batches_are_the_old_ones_and_no_row_is_formatted(sst_root, tmp_path,
                                                                                 no_row_formatting):
    module = SSTDataModule(root=str(sst_root), batch_size=8, cache_dir=str(tmp_path / "cache"), seed=3)
    module.setup()
    raw = {split: module._load_split(split)[:] for split in ("train", "validation", "test")}  # columns, not rows
    vocabulary = Vocabulary(reference_vocabulary(raw["train"]["tokens"]))
    assert module.vocabulary.itos == vocabulary.itos
    assert "(" in vocabulary.stoi  # -LRB- unescaped

    def rows_of(split):
        return [{"ids": vocabulary.encode(tokens), "label": label}
                for tokens, label in zip(raw[split]["tokens"], raw[split]["label"])]

    assert len(raw["train"]["tokens"]) > 60  # phrases
    check_loaders(module, rows_of, pad_batch, 8)


@pytest.fixture
def imdb_root(tmp_path):
    rng = random.Random(1)
    folder = tmp_path / "data" / "imdb"
    folder.mkdir(parents=True)
    for name, count in (("train.jsonl.gz", 80), ("test.jsonl.gz", 30)):
        with gzip.open(folder / name, "wt", encoding="utf-8") as file:
            for number in range(count):
                text = " ".join(rng.choice(WORDS + ["It's", "don't", "<br />", "!"]) for _ in range(rng.randint(1, 20)))
                file.write(json.dumps({"text": text, "label": number % 2}) + "\n")
    return tmp_path / "data"


@pytest.mark.parametrize("max_length, keep", [(6, "end"), (6, "start"), (None, "end")])
def test_imdb_vocabulary_ids_truncation_and_batches_are_the_old_ones(imdb_root, tmp_path, no_row_formatting,
                                                                     max_length, keep):
    module = IMDBDataModule(root=str(imdb_root), batch_size=4, max_length=max_length, keep=keep, validation_size=10,
                            min_freq=2, cache_dir=str(tmp_path / "cache"))
    module.setup()
    train = load_reviews(imdb_root / "imdb" / "train.jsonl.gz", True, str(tmp_path / "cache"))[:]
    test = load_reviews(imdb_root / "imdb" / "test.jsonl.gz", True, str(tmp_path / "cache"))[:]
    held = module.split_indices["validation"]
    assert len(held) == 10 and sum(train["label"][i] for i in held) == 5
    vocabulary = Vocabulary(reference_vocabulary([t for i, t in enumerate(train["tokens"]) if i not in held], 2))
    assert module.vocabulary.itos == vocabulary.itos

    def rows(part, indices):
        return [{"ids": truncate(vocabulary.encode(part["tokens"][i]), max_length, keep), "label": part["label"][i]}
                for i in indices]

    by_split = {"train": rows(train, module.split_indices["train"]), "validation": rows(train, held),
                "test": rows(test, range(len(test["label"])))}
    check_loaders(module, by_split.__getitem__, pad_batch, 4)


@pytest.fixture
def atis_root(tmp_path):
    rng = random.Random(2)
    slots = ["O", "B-city", "I-city", "B-date"]
    for split, count, extra in (("train", 40, []), ("valid", 8, ["B-time"]), ("test", 8, ["B-airline"])):
        folder = tmp_path / "data" / "atis" / split
        folder.mkdir(parents=True)
        words, tags, intents = [], [], []
        for _ in range(count):
            size = rng.randint(1, 8)
            words.append(" ".join(rng.choice(WORDS) for _ in range(size)))
            tags.append(" ".join(rng.choice(slots + extra) for _ in range(size)))
            intents.append(rng.choice(["atis_flight", "atis_fare"] + ([f"atis_{split}"] if extra else [])))
        for name, lines in (("seq.in", words), ("seq.out", tags), ("label", intents)):
            (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path / "data"


def test_atis_labels_ids_and_batches_are_the_old_ones(atis_root, tmp_path, no_row_formatting):
    module = ATISDataModule(root=str(atis_root), batch_size=4, cache_dir=str(tmp_path / "cache"))
    module.setup()
    raw = {split: module._load_split(split)[:] for split in ("train", "validation", "test")}
    others = [raw["validation"], raw["test"]]
    vocabulary = Vocabulary(reference_vocabulary(raw["train"]["tokens"]))
    slots = label_list((t for ts in raw["train"]["tags"] for t in ts),
                       (t for d in others for ts in d["tags"] for t in ts))
    intents = label_list(raw["train"]["intent"], (i for d in others for i in d["intent"]))
    assert module.vocabulary.itos == vocabulary.itos
    assert (module.slot_labels, module.num_slot_outputs) == slots and "B-airline" in slots[0][slots[1]:]
    assert (module.intent_labels, module.num_intent_outputs) == intents
    tag_index = {tag: i for i, tag in enumerate(slots[0])}
    intent_index = {intent: i for i, intent in enumerate(intents[0])}

    def rows_of(split):
        part = raw[split]
        return [{"tokens": tokens, "ids": vocabulary.encode(tokens), "tags": [tag_index[t] for t in tags],
                 "intent": intent_index[intent], "index": index}
                for index, (tokens, tags, intent) in enumerate(zip(part["tokens"], part["tags"], part["intent"]))]

    check_loaders(module, rows_of, pad_tagged_batch, 4)
    assert module.splits["test"][:] == {key: [row[key] for row in rows_of("test")] for key in rows_of("test")[0]}
