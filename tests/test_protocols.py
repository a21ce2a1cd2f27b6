"""The published protocols rrn offers beside its own, so a comparison with a paper is like for like:
SST's vocabulary of every word with a vector and Tai et al.'s every-node loss, nanoGPT's split and
estimate_loss for Tiny Shakespeare, a Chung-sized music suite, IMDB evaluated at full length."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from conftest import located, run_cli, run_dir_of
from rrn_app.data.sst import SPLITS, SSTDataModule, read_examples
from rrn_app.data.sst_trees import parse_tree
from rrn_app.data.vector_vocabulary import build_vocabulary, unknown_rate, words_with_vectors
from rrn_app.validation import InvalidOption, UserError

# --- SST: the vocabulary ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sst_folder(data_root) -> Path:
    return located(data_root, "sst") / "sst"


@pytest.fixture(scope="module")
def sentences(sst_folder) -> dict[str, list[list[str]]]:
    """Each split's sentences as lowercased tokens (the task's default normalisation)."""
    return {split: [row["tokens"] for row in read_examples(str(sst_folder / name), "sentences", False, True)]
            for split, name in SPLITS.items()}


def test_the_vectors_vocabulary_leaves_few_test_tokens_unknown(sentences, glove_path):
    train, others = sentences["train"], [sentences["validation"], sentences["test"]]
    training_only = build_vocabulary("train", train, others, vectors=glove_path)
    with_vectors = build_vocabulary("vectors", train, others, vectors=glove_path)
    # measured on SST's 2,210 test sentences, 42,405 tokens (the embedded GloVe holds exactly SST's rows)
    assert unknown_rate(training_only, sentences["test"]) == (2225, 42405, 1240, 2210)  # 5.25%
    assert unknown_rate(with_vectors, sentences["test"]) == (316, 42405, 288, 2210)  # 0.75%
    have = words_with_vectors(glove_path)
    lost = [token for sentence in sentences["test"] for token in sentence
            if token not in training_only.stoi and token in have]
    assert len(lost) == 1909  # test tokens with a GloVe vector that the training-only vocabulary makes <unk>
    # the training words come first, in the same order; every added word has a vector and is not a training word
    assert with_vectors.itos[:len(training_only)] == training_only.itos
    added = with_vectors.itos[len(training_only):]
    assert added and all(word in have and word not in training_only.stoi for word in added)
    assert len(added) == len(set(added))


def test_without_vectors_the_vectors_vocabulary_is_the_training_words():
    train, test = [["a", "b", "a"]], [["c", "a"]]
    assert build_vocabulary("vectors", train, [test], vectors=None).itos == ["<pad>", "<unk>", "a", "b"]


@pytest.mark.slow
def test_the_vocabulary_reads_no_labels(data_root, sst_folder, glove_path, tmp_path):
    """Relabel every node of the validation and test trees: the vocabulary is the same word for word."""
    relabelled = tmp_path / "sst"
    relabelled.mkdir()
    shutil.copy(sst_folder / "train.txt", relabelled / "train.txt")
    for name in ("dev.txt", "test.txt"):
        text = (sst_folder / name).read_text(encoding="utf-8")
        (relabelled / name).write_text(re.sub(r"\(\d ", "(0 ", text), encoding="utf-8")
    assert (relabelled / "test.txt").read_text() != (sst_folder / "test.txt").read_text()
    options = dict(train_on="sentences", vectors=str(glove_path), embedding_dim=50, cache_dir=str(tmp_path / "c"))
    original = SSTDataModule(root=str(sst_folder.parent), **options)
    changed = SSTDataModule(root=str(tmp_path), **options)
    original.setup(), changed.setup()
    assert original.vocabulary.itos == changed.vocabulary.itos
    assert set(changed.splits["test"]["label"]) == {0}


@pytest.fixture(scope="module")
def sst_modules(sst_folder, glove_path, tmp_path_factory):
    """Set-up SST modules with the two vocabularies (sentences only, to be quick)."""
    cache = str(tmp_path_factory.mktemp("sst-cache"))
    made = {}
    for mode in ("vectors", "train"):
        made[mode] = SSTDataModule(root=str(sst_folder.parent), train_on="sentences", vectors=str(glove_path),
                                   embedding_dim=50, cache_dir=cache, vocabulary=mode)
        made[mode].setup()
    return made


def test_vectors_is_the_default_and_finds_every_added_words_vector(sst_modules, sst_folder, glove_path):
    assert SSTDataModule(root=str(sst_folder.parent)).vocabulary_mode == "vectors"
    vectors, train = sst_modules["vectors"], sst_modules["train"]
    assert len(vectors.vocabulary) == 19053 and len(train.vocabulary) == 16583
    assert vectors.vectors_found - train.vectors_found == len(vectors.vocabulary) - len(train.vocabulary)
    unk = vectors.vocabulary.stoi["<unk>"]
    test_ids = vectors.splits["test"]["ids"]
    assert sum(row.count(unk) for row in test_ids) == 316


def test_the_checkpointed_vocabulary_round_trips_and_an_old_one_is_used_as_it_is(sst_modules, sst_folder,
                                                                               glove_path, tmp_path):
    options = dict(root=str(sst_folder.parent), train_on="sentences", vectors=str(glove_path), embedding_dim=50,
                   cache_dir=str(tmp_path))
    saved = sst_modules["vectors"].state_dict()
    assert saved == {"vocabulary": sst_modules["vectors"].vocabulary.itos}
    again = SSTDataModule(**options)
    again.load_state_dict(saved)  # before setup, as rrn-eval gives it
    again.setup()
    assert again.vocabulary.itos == saved["vocabulary"]
    assert again.splits["test"]["ids"] == sst_modules["vectors"].splits["test"]["ids"]
    again.load_state_dict(saved)  # after setup: checked, and the same

    old = sst_modules["train"].state_dict()  # a checkpoint from before task.data.vocabulary: training words
    reader = SSTDataModule(**options)  # today's default, vectors
    reader.load_state_dict(old)
    reader.setup()
    assert reader.vocabulary.itos == old["vocabulary"]
    assert reader.model_arguments()["vocab_size"] == len(old["vocabulary"])
    assert reader.splits["test"]["ids"] == sst_modules["train"].splits["test"]["ids"]

    resumed = sst_modules["vectors"]  # resuming (state after setup) with another vocabulary: one line, the fix
    with pytest.raises(UserError, match="task.data.vocabulary=train"):
        resumed.load_state_dict(old)


def test_a_bad_vocabulary_or_train_on_names_the_key(sst_folder):
    with pytest.raises(InvalidOption, match="vocabulary"):
        SSTDataModule(root=str(sst_folder.parent), vocabulary="glove")
    with pytest.raises(InvalidOption, match="train_on.*nodes"):
        SSTDataModule(root=str(sst_folder.parent), train_on="trees")


# --- SST: what training reads ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_on_nodes_is_every_labelled_node_with_duplicates(sst_folder):
    path = str(sst_folder / "train.txt")
    trees = [parse_tree(line) for line in (sst_folder / "train.txt").read_text(encoding="utf-8").splitlines()
             if line.strip()]
    nodes = list(read_examples(path, "nodes", False, True))
    phrases = list(read_examples(path, "phrases", False, True))
    roots = list(read_examples(path, "sentences", False, True))
    assert len(roots) == len(trees)
    assert len(nodes) == sum(len(tree) for tree in trees)  # 2n - 1 nodes for a binarized tree of n words
    assert all(len(tree) == 2 * sum(len(words) == 1 for _, words in tree) - 1 for tree in trees)
    assert {tuple(row["tokens"]) for row in nodes} == {tuple(row["tokens"]) for row in phrases}
    assert len(phrases) < len(nodes)  # phrases: each distinct phrase once; nodes: every one, repeats kept
    assert [row["label"] for row in nodes[:len(trees[0])]] == [label for label, _ in trees[0]]
    if len(trees) == 8544:  # the full training split
        assert (len(nodes), len(phrases)) == (318582, 159274)
    binary = list(read_examples(path, "nodes", True, True))
    assert len(binary) == sum(label != 2 for tree in trees for label, _ in tree)
