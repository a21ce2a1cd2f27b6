"""SST parsing and batching, on the real treebank files (data.root's or the embedded copy, the same trees) and on
small hand-made inputs."""

from __future__ import annotations

import gzip
from collections import Counter

import pytest
import torch

from helpers import BatchRecorder, located, run_epochs
from rrn_app.data.batching import BucketBatchSampler
from rrn_app.data.sst import SSTDataModule
from rrn_app.data.sst_trees import MalformedTreeError, parse_tree
from rrn_app.data.text import Vocabulary, load_vectors, pad_batch
from rrn_app.option_checks import InvalidOption, MissingDataError, UserError


def test_parse_tree_gives_every_phrase_with_the_sentence_last():
    phrases = parse_tree("(3 (2 The) (4 (3 gorgeously) (2 elaborate)))\n")
    assert phrases == [(2, ["The"]), (3, ["gorgeously"]), (2, ["elaborate"]),
                       (4, ["gorgeously", "elaborate"]), (3, ["The", "gorgeously", "elaborate"])]


@pytest.mark.parametrize("line", ["(3 (2 The) (2 Rock)", "(3 (2 The)) (2 x))", "(7 word)", "(2 (2 a) b)", "hello"])
def test_malformed_trees_are_rejected(line):
    with pytest.raises(MalformedTreeError):
        parse_tree(line)


@pytest.mark.parametrize("split, sentences, roots", [
    ("train", 8544, [1092, 2218, 1624, 2322, 1288]),
    ("dev", 1101, [139, 289, 229, 279, 165]),
    ("test", 2210, [279, 633, 389, 510, 399]),
])
def test_real_files_parse_to_the_published_counts(data_root, split, sentences, roots):
    lines = (located(data_root, "sst") / "sst" / f"{split}.txt").read_text(encoding="utf-8").splitlines()
    trees = [parse_tree(line) for line in lines]
    assert len(trees) == sentences
    counts = Counter(tree[-1][0] for tree in trees)
    assert [counts[label] for label in range(5)] == roots
    for tree in trees:  # every node labelled; a binarized tree of n words has 2n - 1 nodes
        assert len(tree) == 2 * len(tree[-1][1]) - 1


def test_no_break_space_tokens_stay_whole(data_root):
    line = (located(data_root, "sst") / "sst" / "train.txt").read_text(encoding="utf-8").splitlines()[4341]
    words = parse_tree(line)[-1][1]
    assert "8\xa01\\/2" in words


@pytest.fixture(scope="module")
def sst(data_root, glove_path):
    module = SSTDataModule(root=str(data_root), vectors=str(glove_path), embedding_dim=50)
    module.setup()
    return module


def test_datamodule_splits_and_vocabulary(sst):
    # every distinct labelled phrase of the training trees; full sentences for evaluation
    assert {split: len(data) for split, data in sst.splits.items()} == {"train": 159274, "validation": 1101, "test": 2210}
    assert sst.vocabulary.itos[:2] == ["<pad>", "<unk>"]
    assert len(sst.vocabulary) > 15000 and "the" in sst.vocabulary.stoi and "The" not in sst.vocabulary.stoi


def test_pretrained_vectors_and_unknown_words(sst, glove_path):
    matrix = sst.embeddings
    assert matrix.shape == (len(sst.vocabulary), 50)
    assert sst.vectors_found > 0.9 * len(sst.vocabulary)  # the full file and the embedded SST rows alike
    assert torch.all(matrix[0] == 0)
    first_line = gzip.open(glove_path, "rt").readline().split()
    assert first_line[0] == "the"
    torch.testing.assert_close(matrix[sst.vocabulary.stoi["the"]], torch.tensor([float(v) for v in first_line[1:]]))
    vocabulary = Vocabulary(["<pad>", "<unk>", "the", "zzqxunseenword"])
    vectors, found = load_vectors(glove_path, vocabulary, 50)
    assert found == 1 and vectors[3].abs().max() <= 0.05 and vectors[3].abs().max() > 0


def test_sentences_only_and_binary_mode(data_root):
    module = SSTDataModule(root=str(data_root), train_on="sentences", classes=2)
    module.setup()
    assert {split: len(data) for split, data in module.splits.items()} == {"train": 6920, "validation": 872, "test": 1821}
    assert set(module.splits["test"]["label"]) == {0, 1}


def test_batches_are_padded_little(sst):
    loader = sst.train_dataloader()
    real = padded = 0
    for index, batch in enumerate(loader):
        assert batch["ids"].shape[1] == int(batch["lengths"].max())
        real += int(batch["lengths"].sum())
        padded += batch["ids"].numel()
        if index == 200:
            break
    assert real / padded > 0.85


def test_bucket_sampler_covers_everything_once_and_splits_across_ranks():
    lengths = torch.randint(1, 50, (1000,))
    single = BucketBatchSampler(lengths, 32, shuffle=True, seed=1)
    batches = list(single)
    assert len(batches) == len(single)
    assert sorted(i for batch in batches for i in batch) == list(range(1000))
    single.set_epoch(1)
    assert list(single) != batches  # a new order each epoch
    ranks = [BucketBatchSampler(lengths, 32, shuffle=True, seed=1, num_replicas=3, rank=r) for r in range(3)]
    per_rank = [list(sampler) for sampler in ranks]
    assert len({len(batches) for batches in per_rank}) == 1 and len(per_rank[0]) == len(ranks[0])
    assert {i for batches in per_rank for batch in batches for i in batch} == set(range(1000))
    evaluation = [BucketBatchSampler(lengths, 32, shuffle=False, num_replicas=2, rank=r) for r in range(2)]
    seen = [i for sampler in evaluation for batch in sampler for i in batch]
    assert sorted(seen) == list(range(1000))  # evaluation: every example exactly once across ranks


def test_pad_batch():
    batch = pad_batch([{"ids": [4, 5, 6], "label": 1}, {"ids": [7], "label": 0}])
    assert batch["ids"].tolist() == [[4, 5, 6], [7, 0, 0]]
    assert batch["lengths"].tolist() == [3, 1] and batch["label"].tolist() == [1, 0]


def test_missing_files_fall_back_to_the_embedded_trees_with_one_line(tmp_path, capsys):
    from rrn_app.data.locate import embedded_root

    module = SSTDataModule(root=str(tmp_path / "nowhere"))
    assert module.folder == embedded_root("sst") / "sst"
    SSTDataModule(root=str(tmp_path / "nowhere"))  # told once per root, not per data module
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"rrn: sst not found in {tmp_path / 'nowhere' / 'sst'}; using the embedded copy "
                     "(rrn-data get sst for your own)"]
    partial = tmp_path / "partial" / "sst"
    partial.mkdir(parents=True)
    (partial / "train.txt").write_text("(3 (2 fine) (3 tree))\n", encoding="utf-8")
    assert SSTDataModule(root=str(tmp_path / "partial")).folder == embedded_root("sst") / "sst"  # all or nothing


def test_default_vectors_fall_back_to_the_embedded_rows_and_other_paths_do_not(tmp_path, capsys):
    from rrn_app.data.text import require_vectors

    missing_default = tmp_path / "glove" / "glove.6B.50d.filtered.txt.gz"
    fallback = require_vectors(missing_default)
    assert fallback.is_file() and fallback != missing_default
    assert "rrn: glove not found in" in capsys.readouterr().err
    with pytest.raises(MissingDataError, match="rrn-data get glove"):
        require_vectors(tmp_path / "vectors" / "my-glove.txt")


def test_corrupt_file_names_the_line(tmp_path, data_root):
    folder = tmp_path / "sst"
    folder.mkdir()
    for name in ("dev.txt", "test.txt"):
        (folder / name).write_text((located(data_root, "sst") / "sst" / name).read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "train.txt").write_text("(3 (2 fine) (3 tree))\n(2 (2 broken\n", encoding="utf-8")
    module = SSTDataModule(root=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(UserError, match=r"train.txt line 2 is not a sentiment tree"):
        module.setup()


@pytest.mark.parametrize("options, key", [(dict(batch_size=0), "batch_size"), (dict(classes=3), "classes"),
                                          (dict(train_on="words"), "train_on")])
def test_bad_options(data_root, options, key):
    with pytest.raises(InvalidOption, match=rf"^{key}="):
        SSTDataModule(root=str(data_root), **options)


@pytest.mark.parametrize("module", ["sst", "imdb", "atis"])
def test_a_missing_vectors_file_is_an_error_as_soon_as_the_data_module_is_made(module, tmp_path, data_root):
    from rrn_app.data.atis import ATISDataModule
    from rrn_app.data.imdb import IMDBDataModule

    data_module = {"sst": SSTDataModule, "imdb": IMDBDataModule, "atis": ATISDataModule}[module]
    missing = tmp_path / "glove.6B.300d.txt"
    with pytest.raises(MissingDataError, match=r"word vectors not found: .*glove\.6B\.300d\.txt.*task\.data\.vectors=null"):
        data_module(root=str(data_root), vectors=str(missing))
    with pytest.raises(MissingDataError, match="word vectors not found"):  # and where the vectors are read
        load_vectors(missing, Vocabulary.build([["a"]], min_freq=1), 4)


def test_lightning_reshuffles_the_training_batches_every_epoch(tmp_path):
    """Lightning reaches the batch sampler's set_epoch (through its `sampler`): each epoch a new order, all once."""
    from torch.utils.data import DataLoader

    sampler = BucketBatchSampler(torch.randint(1, 20, (200,)), 8, shuffle=True, seed=0, pool_batches=5)
    module = run_epochs(BatchRecorder(lambda: DataLoader(list(range(200)), batch_sampler=sampler)), 3, tmp_path)
    assert len(module.epochs) == 3
    for epoch in module.epochs:
        assert sorted(i for batch in epoch for i in batch) == list(range(200))
    assert module.epochs[0] != module.epochs[1] != module.epochs[2] != module.epochs[0]
