"""The published protocols rrn offers beside its own, so a comparison with a paper is like for like:
SST's vocabulary of every word with a vector and Tai et al.'s every-node loss, nanoGPT's split and
estimate_loss for Tiny Shakespeare, a Chung-sized music suite, IMDB evaluated at full length."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch

from helpers import located, run_cli, run_dir_of
from rrn_app.data.sst import SPLITS, SSTDataModule, read_examples
from rrn_app.data.sst_trees import parse_tree
from rrn_app.data.vector_vocabulary import build_vocabulary, unknown_rate, words_with_vectors
from rrn_app.option_checks import InvalidOption, UserError

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


# --- Tiny Shakespeare: nanoGPT's split and estimate_loss -------------------------------------------------------


class Bigram(torch.nn.Module):
    """Next-character logits from the current character alone; records the shapes and states it is given."""

    def __init__(self, vocabulary: int):
        super().__init__()
        torch.manual_seed(0)
        self.table = torch.nn.Embedding(vocabulary, vocabulary)
        self.calls = []

    def forward(self, ids, lengths=None, state=None):
        self.calls.append((tuple(ids.shape), state))
        return self.table(ids), None


def test_nanogpt_loss_is_the_mean_over_batches_of_random_windows_without_state():
    from rrn_app.eval_protocols import nanogpt_loss

    ids = torch.randint(5, (1000,), generator=torch.Generator().manual_seed(3))
    model = Bigram(5)
    loss = nanogpt_loss(model, ids, eval_iters=3, batch_size=4, block_size=10, window_seed=7)
    assert model.calls == [((4, 10), None)] * 3  # every window from a zero state
    generator, expected = torch.Generator().manual_seed(7), []
    for _ in range(3):  # nanoGPT's get_batch: starts uniform in [0, len - block_size)
        starts = torch.randint(1000 - 10, (4,), generator=generator)
        with torch.no_grad():
            nll = [torch.nn.functional.cross_entropy(model.table(ids[s:s + 10]), ids[s + 1:s + 11]) for s in starts]
        expected.append(torch.stack(nll).mean())
    assert loss == pytest.approx(float(torch.stack(expected).mean()), rel=1e-6)
    assert loss == nanogpt_loss(model, ids, eval_iters=3, batch_size=4, block_size=10, window_seed=7)
    with pytest.raises(UserError, match="block_size"):
        nanogpt_loss(model, ids[:10], eval_iters=1, batch_size=1, block_size=10, window_seed=0)


def test_nanogpts_split_is_the_last_tenth_for_validation_and_no_test(data_root):
    from rrn_app.data.char_lm import CharLMDataModule

    data = CharLMDataModule(root=str(data_root), split=[0.9, 0.1, 0.0], batch_size=4)
    data.setup()
    text = (located(data_root, "tinyshakespeare") / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    n = len(text)  # nanoGPT's prepare.py: train_data = data[:int(n*0.9)], val_data = data[int(n*0.9):]
    assert data.texts == {"train": text[:int(n * 0.9)], "validation": text[int(n * 0.9):], "test": ""}
    assert data.test_dataloader() == []
    for bad in ([0.9, 0.0, 0.1], [0.9, 0.2, 0.0], [1.0, 0.0, 0.0]):
        with pytest.raises(InvalidOption, match="split"):
            CharLMDataModule(root=str(data_root), split=bad)


@pytest.mark.slow
def test_rrn_eval_protocol_nanogpt_on_a_run_with_nanogpts_split(data_root, tmp_path, quick):
    run = run_dir_of(run_cli(
        "rrn-train", "task=char_lm", "cell=lstm", "cell.hidden_size=16", "cell.num_layers=1",
        "task.data.split=[0.9,0.1,0.0]", *quick, f"data.root={data_root}", f"hydra.run.dir={tmp_path / 'run'}"))
    results = json.loads((run / "results.json").read_text())
    assert "val/loss" in results["metrics"] and not any(name.startswith("test/") for name in results["metrics"])
    best = results["best_checkpoint"]
    evaluated = run_cli("rrn-eval", f"ckpt={best}", "split=validation", "protocol=nanogpt", "eval_iters=3",
                        "batch_size=2", "threads=1", f"data.root={data_root}")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    written = Path(evaluated.stdout.strip().splitlines()[-1])
    assert written == run / "eval-validation-nanogpt.json"
    report = json.loads(written.read_text())
    assert report["protocol"] == "nanogpt"
    assert report["protocol_settings"] == {"eval_iters": 3, "batch_size": 2, "block_size": 256, "window_seed": 1337}
    loss = report["metrics"]["val/loss"]
    assert 0 < loss < 10 and report["metrics"]["val/bpc"] == pytest.approx(loss / math.log(2))
    for arguments, message in ((["protocol=nanogtp"], "Did you mean protocol=nanogpt?"),
                               (["protocol=nanogpt"], "too few for windows"),  # split=test is empty here
                               (["protocol=nanogpt", "eval_iters=0"], "eval_iters")):
        failed = run_cli("rrn-eval", f"ckpt={best}", *arguments, f"data.root={data_root}")
        last = failed.stderr.strip().splitlines()[-1]
        assert failed.returncode == 2 and last.startswith("rrn-eval: error: ") and message in last, failed.stderr


@pytest.mark.slow
def test_rrn_eval_reads_an_sst_run_from_before_the_vocabulary_option(data_root, tmp_path, quick):
    """A run whose config has no task.data.vocabulary trained on the training words: its checkpoint's
    vocabulary is used, so rrn-eval reproduces its test numbers under today's default."""
    run = run_dir_of(run_cli(
        "rrn-train", "task=sst", "cell=lstm", "cell.hidden_size=8", "task.data.train_on=sentences",
        "task.data.vocabulary=train", *quick, f"data.root={data_root}", f"hydra.run.dir={tmp_path / 'run'}"))
    config = run / ".hydra" / "config.yaml"
    text = config.read_text()
    assert "vocabulary: train" in text
    config.write_text(text.replace("    vocabulary: train\n", ""))  # as an older rrn wrote it
    results = json.loads((run / "results.json").read_text())
    evaluated = run_cli("rrn-eval", f"ckpt={results['best_checkpoint']}", "threads=1", f"data.root={data_root}",
                        "trainer.limit_test_batches=2")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    metrics = json.loads(Path(evaluated.stdout.strip().splitlines()[-1]).read_text())["metrics"]
    assert metrics["test/acc"] == pytest.approx(results["metrics"]["test/acc"])


# --- Music: a Chung-sized suite --------------------------------------------------------------------------------


def music_model_parameters(compose_config, *overrides: str) -> tuple[int, int]:
    """(cell.hidden_size, parameters of the music model) that `rrn-train <overrides>` would build."""
    from omegaconf import OmegaConf

    from rrn_app.tasks.music import MusicModel

    config = OmegaConf.to_container(compose_config(*overrides), resolve=True)
    options = {key: value for key, value in config["task"]["model"].items() if not key.startswith("_")}  # Hydra's keys
    model = MusicModel(cell=config["cell"], **options)
    return config["cell"]["hidden_size"], sum(parameter.numel() for parameter in model.parameters())


@pytest.mark.parametrize("cell, hidden_size", [("lstm", 34), ("gru", 41), ("rnn", 78), ("res_rnn", 78),
                                               ("gres_rnn", 53)])
def test_the_chung_2014_suite_has_about_20k_parameters_per_cell(compose_config, cell, hidden_size):
    size, parameters = music_model_parameters(compose_config, "experiment=chung_2014_music", f"cell={cell}")
    assert size == hidden_size and abs(parameters - 20000) < 250  # Chung et al.: about 20k per model
    # one unit more or fewer is farther from 20k: each size is the closest
    for other in (size - 1, size + 1):
        assert abs(music_model_parameters(compose_config, "task=music", f"cell={cell}",
                                          f"cell.hidden_size={other}")[1] - 20000) >= abs(parameters - 20000)
    default = music_model_parameters(compose_config, "task=music", f"cell={cell}")[1]
    assert default > 1.9 * parameters  # the defaults are larger: 39k (rnn) to 123k (lstm)


def test_the_chung_2014_suite_names_its_cells_for_another(compose_config):
    config = compose_config("experiment=chung_2014_music", "cell=res_lstm")
    from omegaconf import OmegaConf

    assert "set cell.hidden_size" in str(OmegaConf.to_container(config, resolve=True)["cell"]["hidden_size"])
    assert music_model_parameters(compose_config, "experiment=chung_2014_music", "cell=res_lstm",
                                  "cell.hidden_size=20")[0] == 20


# --- IMDB: full-length evaluation ------------------------------------------------------------------------------


def imdb(data_root, tmp_path, **options):
    from rrn_app.data.imdb import IMDBDataModule

    module = IMDBDataModule(root=str(data_root), validation_size=10, cache_dir=str(tmp_path / "cache"), **options)
    module.setup()
    return module


@pytest.mark.slow  # reads and evaluates the full IMDB splits (about 10 s)
def test_imdb_evaluates_at_full_length_with_eval_max_length_null(data_root, tmp_path):
    cut = imdb(data_root, tmp_path, max_length=50)
    full = imdb(data_root, tmp_path, max_length=50, eval_max_length=None)
    uncut = imdb(data_root, tmp_path, max_length=None)
    assert cut.eval_max_length == 50  # by default validation and test are cut as training is
    assert int(cut.lengths["test"].max()) == 50 < int(uncut.lengths["test"].max())
    for split in ("validation", "test"):  # full length: every token of every review, as with no cut at all
        assert full.splits[split]["ids"] == uncut.splits[split]["ids"]
    assert full.splits["train"]["ids"] == cut.splits["train"]["ids"]  # training is still cut
    assert full.vocabulary.itos == cut.vocabulary.itos == uncut.vocabulary.itos  # the cut never changes it
    shorter = imdb(data_root, tmp_path, max_length=None, eval_max_length=30)
    assert int(shorter.lengths["test"].max()) == 30 and int(shorter.lengths["train"].max()) > 30
    for bad in (0, "all", True):
        with pytest.raises(InvalidOption, match="eval_max_length"):
            imdb(data_root, tmp_path, eval_max_length=bad)


@pytest.mark.slow
def test_rrn_eval_scores_an_imdb_checkpoint_at_full_length(data_root, tmp_path):
    run = run_dir_of(run_cli(
        "rrn-train", "task=imdb", "cell=gru", "threads=1", "cell.hidden_size=8", "task.data.validation_size=10",
        "task.data.min_freq=1", "task.data.max_length=20", "trainer.limit_train_batches=2", "trainer.max_epochs=1",
        "logger=none", "trainer.enable_progress_bar=false", f"data.root={data_root}",
        f"hydra.run.dir={tmp_path / 'run'}"))
    results = json.loads((run / "results.json").read_text())
    for override in ("task.data.max_length=null", "task.data.eval_max_length=null"):
        evaluated = run_cli("rrn-eval", f"ckpt={results['best_checkpoint']}", "threads=1", f"data.root={data_root}",
                            override)
        assert evaluated.returncode == 0, evaluated.stderr[-2000:]
        report = json.loads(Path(evaluated.stdout.strip().splitlines()[-1]).read_text())
        assert report["config"]["task"]["data"][override.split(".")[-1].split("=")[0]] is None
        assert 0 <= report["metrics"]["test/acc"] <= 1


# --- the published numbers: each beside like for like only ----------------------------------------------------


def test_published_rows_are_shown_only_beside_runs_of_their_protocol():
    from rrn_app.report.published import PUBLISHED, published_for

    atis = published_for("atis", [{"task.name": "atis"}])  # rrn's ATIS: Goo et al.'s 4,478 / 500 / 893 split
    assert atis and {entry.citation.split(" ")[0] for entry in atis} == {"Goo"}
    yue_atis = [entry for entry in PUBLISHED if entry.task == "atis" and entry.citation.startswith("Yue")]
    assert len(yue_atis) == 5 and all("DIFFERENT SPLIT" in entry.ours for entry in yue_atis)
    assert all("3,000 / 1,000 / 1,000" in entry.protocol.split for entry in yue_atis)

    shakespeare = {"task.name": "char_lm", "task.dataset": "tinyshakespeare"}
    assert published_for("char_lm", [{**shakespeare, "task.data.split": [0.9, 0.05, 0.05]}]) == []
    (nanogpt,) = published_for("char_lm", [{**shakespeare, "task.data.split": [0.9, 0.1, 0.0]}])
    assert nanogpt.value == 1.4697 and "protocol=nanogpt" in nanogpt.ours and not nanogpt.matches

    sst = published_for("sst", [{"task.name": "sst", "task.data.classes": 5}])
    (best,) = [entry for entry in sst if entry.value == 50.6]
    assert "ranked on TEST" in best.ours and "TEST" in best.protocol.selection
    chung = [entry for entry in PUBLISHED if entry.citation.startswith("Chung")]
    assert chung and all("chung_2014_music" in entry.ours and "first of each piece" in entry.ours
                         for entry in chung)


def test_skip_first_frame_leaves_each_pieces_first_frame_out_of_validation_and_test(compose_config):
    from omegaconf import OmegaConf

    from rrn_app.tasks.music import MusicModel

    config = OmegaConf.to_container(compose_config("task=music", "cell=gru", "cell.hidden_size=8"), resolve=True)
    options = {key: value for key, value in config["task"]["model"].items() if not key.startswith("_")}  # Hydra's keys
    assert options["skip_first_frame"] is False  # the default counts every frame
    torch.manual_seed(0)
    targets = (torch.rand(2, 5, 88) < 0.1).float()
    lengths = torch.tensor([5, 3])
    inputs = torch.cat([torch.zeros(2, 1, 88), targets[:, :-1]], 1)
    batch = {"inputs": inputs, "targets": targets, "lengths": lengths}
    scores, weights = {}, None
    for skip in (False, True):  # the same weights, scored both ways
        model = MusicModel(cell=config["cell"], **{**options, "skip_first_frame": skip, "dropout": 0.0}).eval()
        weights = weights or model.state_dict()
        model.load_state_dict(weights)
        with torch.no_grad():
            model.test_step(batch, 0)
        scores[skip] = float(model.metrics["test/"].compute()["nll"])
    with torch.no_grad():
        conditions, _ = model(inputs, lengths)
        nll = model.output_layer.nll(conditions, targets, None)  # [batch, time] per-frame NLL
    real = torch.arange(5)[None, :] < lengths[:, None]
    assert scores[False] == pytest.approx(float(nll[real].sum() / 8), rel=1e-5)  # all 8 frames
    later = real.clone()
    later[:, 0] = False
    assert scores[True] == pytest.approx(float(nll[later].sum() / 6), rel=1e-5)  # 8 frames less the 2 first
    with pytest.raises(InvalidOption, match="skip_first_frame"):
        MusicModel(cell=config["cell"], **{**options, "skip_first_frame": "yes"})
