"""IMDB: tokenisation, the reproducible validation split, truncation, pooling, the real files (the full dataset, or
a sample of it in tests/fixtures/), a short run."""

from __future__ import annotations

import gzip
import json

import pytest
import torch

from helpers import FULL_DATA
from rrn_app.data.imdb import IMDBDataModule, tokenize, truncate, validation_indices
from rrn_app.tasks.pooling import pool
from rrn_app.train import train
from rrn_app.option_checks import InvalidOption, MissingDataError, UserError


def test_tokenize_strips_html_breaks_and_splits_clitics_and_punctuation():
    assert tokenize("Great film.<br /><br />I didn't LIKE it's end!!<br/>Really") == [
        "great", "film", ".", "i", "did", "n't", "like", "it", "'s", "end", "!", "!", "really"]
    assert tokenize("Café 'quoted'", lowercase=False) == ["Café", "'", "quoted", "'"]


def test_truncation_keeps_the_end_or_the_start():
    ids = list(range(10))
    assert truncate(ids, 4, "end") == [6, 7, 8, 9]
    assert truncate(ids, 4, "start") == [0, 1, 2, 3]
    assert truncate(ids, 20, "end") == ids and truncate(ids, None, "start") == ids


def test_validation_split_is_reproducible_balanced_and_seeded():
    labels = [0] * 600 + [1] * 400
    first, again = validation_indices(labels, 100, seed=0), validation_indices(labels, 100, seed=0)
    assert first == again and len(set(first)) == 100
    assert sum(labels[i] for i in first) == 40  # the label proportions of the whole
    assert validation_indices(labels, 100, seed=1) != first


def test_pooling_ignores_padding():
    outputs = torch.tensor([[[1.0, -1.0], [3.0, -3.0], [0.0, 0.0]], [[-2.0, 2.0], [0.0, 0.0], [0.0, 0.0]]])
    lengths = torch.tensor([2, 1])
    assert pool(outputs, lengths, False, "final").tolist() == [[3.0, -3.0], [-2.0, 2.0]]
    assert pool(outputs, lengths, False, "mean").tolist() == [[2.0, -2.0], [-2.0, 2.0]]
    assert pool(outputs, lengths, False, "max").tolist() == [[3.0, -1.0], [-2.0, 2.0]]  # not the padding's 0


VALIDATION = 2500 if FULL_DATA else 40   # the default; the fixtures hold 200 training reviews


def labels_of(path) -> list[int]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line)["label"] for line in lines]


@pytest.fixture(scope="module")
def imdb(data_root):
    module = IMDBDataModule(root=str(data_root), max_length=400, keep="end", validation_size=VALIDATION)
    module.setup()
    return module


def test_real_splits_are_reproducible_and_disjoint(imdb, data_root):
    train_labels, test_labels = (labels_of(data_root / "imdb" / f"{split}.jsonl.gz") for split in ("train", "test"))
    assert {split: len(data) for split, data in imdb.splits.items()} == {
        "train": len(train_labels) - VALIDATION, "validation": VALIDATION, "test": len(test_labels)}
    assert sorted(imdb.splits["validation"]["label"]).count(1) == VALIDATION // 2  # balanced, as the files are
    assert not set(imdb.split_indices["train"]) & set(imdb.split_indices["validation"])
    again = IMDBDataModule(root=str(data_root), seed=5, validation_size=VALIDATION)  # another seed, same reviews
    again.setup()
    assert again.split_indices == imdb.split_indices and again.vocabulary.itos == imdb.vocabulary.itos
    assert train_labels == sorted(train_labels)  # the file is sorted by label
    assert validation_indices(train_labels, VALIDATION, seed=0) == imdb.split_indices["validation"]
    assert validation_indices(train_labels, VALIDATION, seed=1) != imdb.split_indices["validation"]


def test_real_split_sizes(imdb, full_data):
    assert {split: len(data) for split, data in imdb.splits.items()} == {"train": 22500, "validation": 2500, "test": 25000}


def test_real_reviews_are_truncated_keeping_the_end(imdb, data_root):
    assert max(imdb.lengths["train"]) == 400 and max(imdb.lengths["test"]) == 400
    assert imdb.vocabulary.itos[:2] == ["<pad>", "<unk>"] and "<br" not in imdb.vocabulary.stoi
    with gzip.open(data_root / "imdb" / "train.jsonl.gz", "rt") as lines:
        records = [json.loads(next(lines)) for _ in range(200)]
    index = next(i for i, record in enumerate(records) if len(tokenize(record["text"])) > 400
                 and i in imdb.split_indices["train"])
    ids = imdb.splits["train"][imdb.split_indices["train"].index(index)]["ids"]
    assert ids == imdb.vocabulary.encode(tokenize(records[index]["text"])[-400:])


def test_batches_are_padded_little(imdb):
    real = padded = 0
    for number, batch in enumerate(imdb.train_dataloader()):
        real += int(batch["lengths"].sum())
        padded += batch["ids"].numel()
        if number == 100:
            break
    lengths = [int(n) for n in imdb.lengths["train"]]  # what batches in random order would pad to, for comparison
    order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).tolist()
    groups = [[lengths[i] for i in order[start : start + imdb.batch_size]] for start in range(0, len(order), imdb.batch_size)]
    unbucketed = sum(map(sum, groups)) / sum(max(group) * len(group) for group in groups)
    assert real / padded > (0.9 if FULL_DATA else max(unbucketed + 0.1, 0.8)), unbucketed  # 160 reviews bucket less well


def test_missing_files_and_bad_options(tmp_path, data_root):
    with pytest.raises(MissingDataError) as error:
        IMDBDataModule(root=str(tmp_path))
    assert str(tmp_path / "imdb" / "train.jsonl.gz") in str(error.value) and "rrn-data get imdb" in str(error.value)
    for options, key in ((dict(keep="middle"), "keep"), (dict(max_length=0), "max_length"),
                         (dict(validation_size=25000), "validation_size")):
        with pytest.raises(InvalidOption, match=f"^{key}="):
            IMDBDataModule(root=str(data_root), **options)


def test_corrupt_file_names_the_line(tmp_path):
    folder = tmp_path / "imdb"
    folder.mkdir()
    good = json.dumps({"text": "fine", "label": 1})
    for name in ("train.jsonl.gz", "test.jsonl.gz"):
        with gzip.open(folder / name, "wt") as out:
            out.write(f"{good}\n" * 20 + ("not json\n" if name == "train.jsonl.gz" else ""))
    module = IMDBDataModule(root=str(tmp_path), validation_size=4, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(UserError, match=r"train.jsonl.gz line 21 is not a labelled review"):
        module.setup()


def test_config_composes(compose_config):
    cfg = compose_config("task=imdb", "cell=res_rnn")
    assert cfg.task.monitor == "val/acc" and cfg.task.model.pooling == "final"
    assert (cfg.cell.hidden_size, cfg.cell.num_layers, cfg.task.data.embedding_dim) == (128, 1, 64)
    assert cfg.task.model.optimizer._target_ == "torch.optim.RMSprop"  # the optimizer group's rmsprop
    cfg = compose_config("experiment=imdb_res_rnn")
    assert cfg.task.name == "imdb" and cfg.cell.name == "res_rnn" and cfg.cell.batch_norm is True
    assert cfg.cell.hidden_size == 128


def test_res_rnn_on_imdb_gets_batch_norm_by_itself_and_the_command_line_still_wins(compose_config):
    assert compose_config("task=imdb", "cell=res_rnn").cell.batch_norm is True   # conf/task_cell/imdb_res_rnn.yaml
    assert compose_config("task=imdb", "cell=res_rnn", "cell.batch_norm=false").cell.batch_norm is False
    assert compose_config("task=sst", "cell=res_rnn").cell.batch_norm is False    # only that pair
    assert "batch_norm" not in compose_config("task=imdb", "cell=lstm").cell


@pytest.mark.slow
def test_short_real_run_beats_chance(compose_config, data_root):
    cfg = compose_config("task=imdb", "cell=gru", "cell.hidden_size=32", f"data.root={data_root}",
                         f"task.data.validation_size={VALIDATION}",
                         "task.data.max_length=64", "task.data.batch_size=64", "task.model.lr=0.003",
                         "task.model.embedding_lr=0.003", "task.model.pooling=mean", "trainer.max_epochs=1",
                         "trainer.limit_train_batches=150", "trainer.enable_progress_bar=false", "logger=none")
    run_dir = train(cfg)
    results = json.loads((run_dir / "results.json").read_text())
    if FULL_DATA:  # 160 training reviews (the fixtures) are too few to learn from
        assert results["metrics"]["test/acc"] > 0.65, results["metrics"]  # balanced classes: chance is 0.5
    assert sum(map(sum, results["test_confusion_matrix"])) == len(labels_of(data_root / "imdb" / "test.jsonl.gz"))
