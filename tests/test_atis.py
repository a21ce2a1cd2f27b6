"""ATIS: conlleval chunk scores on hand-made tags, the real files (the full split, or a sample of it in
tests/fixtures/), unseen labels, predictions file, a short run."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
import torch
from seqeval.metrics import f1_score, precision_score, recall_score

from helpers import FULL_DATA
from rrn_app.data.atis import ATISDataModule, label_list, pad_tagged_batch
from rrn_app.tasks.conll import SlotIntentScores, chunk_counts, chunks, precision_recall_f1
from rrn_app.tasks.tagger import JointSlotIntentTagger, write_conll
from rrn_app.train import train
from rrn_app.option_checks import InvalidOption, MissingDataError, UserError


def scores(gold, predicted, gold_intents=None, predicted_intents=None) -> dict:
    metric = SlotIntentScores()
    metric.update(gold, predicted, gold_intents, predicted_intents)
    return {name: float(value) for name, value in metric.compute().items()}


# --- conlleval chunk scoring -------------------------------------------------------------------------------


def test_chunks_follow_conlleval():
    assert chunks(["B-a", "I-a", "O", "B-b"]) == {("a", 0, 1), ("b", 3, 3)}
    assert chunks(["O", "I-a", "I-a", "B-a"]) == {("a", 1, 2), ("a", 3, 3)}  # I- after O starts a chunk
    assert chunks(["I-a", "I-a"]) == {("a", 0, 1)}                          # ... and so at the start
    assert chunks(["B-a", "I-b", "I-b"]) == {("a", 0, 0), ("b", 1, 2)}      # a type change starts a chunk
    assert chunks(["B-a", "B-a"]) == {("a", 0, 0), ("a", 1, 1)}
    assert chunks(["B-fromloc.city_name", "I-fromloc.city_name"]) == {("fromloc.city_name", 0, 1)}
    assert chunks(["O", "O"]) == set()


def test_i_tags_that_start_a_chunk_score_like_b_tags():
    gold = [["B-a", "I-a", "O", "B-b"]]
    assert scores(gold, [["I-a", "I-a", "O", "I-b"]])["slot_f1"] == 1.0  # same chunks, other tags
    assert scores(gold, [["I-a", "I-a", "O", "I-b"]])["token_acc"] == 0.5


def test_a_wrong_label_inside_a_right_span_breaks_the_chunk():
    # gold one chunk a[0..1]; predicted a[0..0] and b[1..1]: nothing right, two predicted, one gold
    assert chunk_counts(["B-a", "I-a"], ["B-a", "I-b"]) == (0, 2, 1)
    result = scores([["B-a", "I-a", "O"]], [["B-a", "I-b", "O"]])
    assert (result["slot_precision"], result["slot_recall"], result["slot_f1"]) == (0.0, 0.0, 0.0)
    assert result["token_acc"] == pytest.approx(2 / 3)
    # a right type over a wrong span is wrong too
    assert chunk_counts(["B-a", "I-a", "O"], ["B-a", "I-a", "I-a"]) == (0, 1, 1)


def test_known_precision_recall_f1_on_a_small_corpus():
    gold = [["B-city", "I-city", "O", "B-date", "O"], ["O", "B-airline", "O"], ["B-time", "I-time"]]
    predicted = [["B-city", "I-city", "O", "B-time", "O"], ["O", "B-airline", "B-city"], ["O", "I-time"]]
    # gold chunks 4; predicted chunks: city, time, airline, city, time[1..1] = 5; right: city, airline = 2
    result = scores(gold, predicted)
    assert result["slot_precision"] == pytest.approx(2 / 5)
    assert result["slot_recall"] == pytest.approx(2 / 4)
    assert result["slot_f1"] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    assert result["token_acc"] == pytest.approx(7 / 10) and result["sentence_acc"] == 0.0
    assert result["slot_f1"] == pytest.approx(f1_score(gold, predicted))
    assert result["slot_precision"] == pytest.approx(precision_score(gold, predicted))


def test_nothing_predicted_scores_zero_not_an_error():
    assert precision_recall_f1(0, 0, 3) == (0.0, 0.0, 0.0)
    assert scores([["B-a", "O"]], [["O", "O"]])["slot_f1"] == 0.0


def test_batch_sums_equal_seqeval_on_the_whole_corpus():
    rng = random.Random(0)
    tags = ["O", "O", "O", "B-a", "I-a", "B-b", "I-b", "I-c"]
    gold = [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(300)]
    predicted = [[tag if rng.random() < 0.7 else rng.choice(tags) for tag in sentence] for sentence in gold]
    metric = SlotIntentScores()
    for start in range(0, 300, 17):  # in uneven batches
        metric.update(gold[start : start + 17], predicted[start : start + 17])
    result = metric.compute()
    assert float(result["slot_f1"]) == pytest.approx(f1_score(gold, predicted))
    assert float(result["slot_precision"]) == pytest.approx(precision_score(gold, predicted))
    assert float(result["slot_recall"]) == pytest.approx(recall_score(gold, predicted))


def test_intent_and_sentence_accuracy():
    gold, predicted = [["B-a"], ["O"], ["B-a"]], [["B-a"], ["O"], ["O"]]
    result = scores(gold, predicted, ["x", "y#z", "x"], ["x", "y", "x"])
    assert result["intent_acc"] == pytest.approx(2 / 3)  # a joined label is matched exactly
    assert result["sentence_acc"] == pytest.approx(1 / 3)
    assert "intent_acc" not in scores(gold, predicted)    # slot filling only


# --- the real files ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def atis(data_root):
    module = ATISDataModule(root=str(data_root))
    module.setup()
    return module


def read_split(data_root, split: str) -> dict[str, list[str]]:
    folder = data_root / "atis" / split
    return {name: (folder / name).read_text(encoding="utf-8").splitlines() for name in ("seq.in", "seq.out", "label")}


def test_real_files_parse_line_by_line(atis, data_root):
    for split, folder in (("train", "train"), ("validation", "valid"), ("test", "test")):
        files = read_split(data_root, folder)
        assert len(atis.splits[split]) == len(files["label"])
        assert [int(n) for n in atis.lengths[split]] == [len(line.split()) for line in files["seq.in"]]
    train = read_split(data_root, "train")
    train_tags = {tag for line in train["seq.out"] for tag in line.split()}
    assert atis.slot_labels[0] == "O" and atis.num_slot_outputs == len(train_tags)
    assert atis.num_intent_outputs == len(set(train["label"]))
    assert "atis_flight#atis_airfare" in atis.intent_labels[:atis.num_intent_outputs]  # a class of its own


def test_real_files_parse_to_the_published_counts(atis, full_data):
    assert {split: len(data) for split, data in atis.splits.items()} == {"train": 4478, "validation": 500, "test": 893}
    assert sum(atis.lengths["test"]) == 9164
    assert max(max(lengths) for lengths in atis.lengths.values()) == 46
    assert len(atis.slot_labels) == 127 and atis.num_slot_outputs == 120 and atis.slot_labels[0] == "O"
    assert len(atis.intent_labels) == 26 and atis.num_intent_outputs == 21
    assert "atis_flight#atis_airfare" in atis.intent_labels[:21]  # a multi-intent label is a class of its own
    assert {"B-booking_class", "B-compartment", "B-flight", "B-stoploc.airport_code", "I-flight_number",
            "I-state_name", "I-return_date.day_number"} == set(atis.slot_labels[atis.num_slot_outputs:])
    assert set(atis.intent_labels[atis.num_intent_outputs:]) == {
        "atis_airfare#atis_flight", "atis_day_name", "atis_flight#atis_airline", "atis_flight_no#atis_airline",
        "atis_airfare#atis_flight_time"}


def test_labels_unseen_in_training_come_last_and_cost_no_loss(atis, data_root):
    splits = {split: read_split(data_root, split) for split in ("train", "valid", "test")}
    tags = {split: {tag for line in files["seq.out"] for tag in line.split()} for split, files in splits.items()}
    intents = {split: set(files["label"]) for split, files in splits.items()}
    assert set(atis.slot_labels[atis.num_slot_outputs:]) == (tags["valid"] | tags["test"]) - tags["train"] != set()
    assert set(atis.intent_labels[atis.num_intent_outputs:]) == (
        (intents["valid"] | intents["test"]) - intents["train"]) >= {"atis_day_name"}
    assert label_list(["B-x", "O", "B-x"], ["B-y", "O"]) == (["O", "B-x", "B-y"], 2)
    # a test utterance with an unseen tag and an unseen intent: left out of the loss, always an error
    test = atis.splits["test"]
    row = next(test[i] for i in range(len(test)) if max(test[i]["tags"]) >= atis.num_slot_outputs)
    row = dict(row, intent=atis.intent_labels.index("atis_day_name"))
    batch = pad_tagged_batch([row])
    model = JointSlotIntentTagger(cell={"name": "gru", "hidden_size": 8}, **atis.model_arguments())
    slot_logits, intent_logits = model(batch["ids"], batch["lengths"])
    slot_loss, intent_loss = model._losses(slot_logits, intent_logits, batch)
    unseen = int((batch["tags"] >= atis.num_slot_outputs).sum())
    assert slot_loss.numel() == len(row["ids"]) - unseen and intent_loss.numel() == 0
    assert torch.isfinite(model._total(slot_loss, intent_loss))
    model.evaluate(batch, "val")
    result = model.scores["val"].compute()
    assert float(result["intent_acc"]) == 0.0 and float(result["token_acc"]) < 1.0


def test_prediction_file_is_conll(tmp_path):
    path = tmp_path / "predictions.txt"
    write_conll(path, [(["from", "denver"], ["O", "B-city"], ["O", "B-city"]), (["hi"], ["O"], ["B-x"])])
    assert path.read_text() == "from O O\ndenver B-city B-city\n\nhi O B-x\n\n"
    with pytest.raises(ValueError):
        write_conll(path, [(["a", "b"], ["O"], ["O"])])


def test_missing_and_inconsistent_files(tmp_path, data_root):
    with pytest.raises(MissingDataError) as error:
        ATISDataModule(root=str(tmp_path))
    assert str(tmp_path / "atis" / "train" / "seq.in") in str(error.value) and "data.root=" in str(error.value)
    assert f"rrn-data get atis root={tmp_path}" in str(error.value)
    for split in ("train", "valid", "test"):
        folder = tmp_path / "atis" / split
        folder.mkdir(parents=True)
        for name in ("seq.in", "seq.out", "label"):
            (folder / name).write_text((data_root / "atis" / split / name).read_text())
    (tmp_path / "atis" / "train" / "seq.out").write_text("O O\nO B-x I-x\n")
    (tmp_path / "atis" / "train" / "seq.in").write_text("a b\nc d\n")
    (tmp_path / "atis" / "train" / "label").write_text("i\nj\n")
    module = ATISDataModule(root=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(UserError, match=r"seq.out line 2: 3 tags for 2 words"):
        module.setup()


def test_bad_options(data_root):
    with pytest.raises(InvalidOption, match="^batch_size="):
        ATISDataModule(root=str(data_root), batch_size=0)
    with pytest.raises(InvalidOption, match="^intent_pooling="):
        JointSlotIntentTagger(10, 4, ["O"], 1, ["x"], 1, cell={"name": "gru", "hidden_size": 4}, intent_pooling="last")


def test_config_composes(compose_config):
    cfg = compose_config("task=atis", "cell=lstm", "cell.bidirectional=true")
    assert cfg.task.monitor == "val/slot_f1" and cfg.task.monitor_mode == "max"
    assert (cfg.cell.hidden_size, cfg.cell.num_layers, cfg.task.data.embedding_dim) == (100, 1, 100)
    assert cfg.task.model.optimizer._target_ == "torch.optim.RMSprop"  # the optimizer group's rmsprop


# --- end to end -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_short_real_run_beats_chance_and_writes_conll_predictions(compose_config, data_root):
    cfg = compose_config("task=atis", "cell=gru", "cell.bidirectional=true", "cell.hidden_size=64",
                         f"data.root={data_root}", "trainer.max_epochs=2", "task.model.lr=0.005",
                         "trainer.enable_progress_bar=false", "logger=none")
    run_dir = train(cfg)
    results = json.loads((run_dir / "results.json").read_text())
    metrics = results["metrics"]
    gold_intents = (data_root / "atis" / "test" / "label").read_text().splitlines()
    if FULL_DATA:  # the fixtures' few hundred utterances are too few to learn this much in two epochs
        assert metrics["test/slot_f1"] > 0.75, metrics           # tagging everything O scores 0
        majority = Counter(gold_intents).most_common(1)[0][1]    # atis_flight, 632 of 893
        assert metrics["test/intent_acc"] > majority / len(gold_intents) + 0.05
    for name in ("slot_precision", "slot_recall", "token_acc", "sentence_acc", "loss", "slot_loss", "intent_loss"):
        assert f"test/{name}" in metrics and f"val/{name}" in metrics
    assert "I-state_name" in results["labels_unseen_in_training"]["slot_tags"]  # unseen in the full train split too

    # test_predictions.txt: the test files, in order, one `token gold predicted` line per token
    path = run_dir / "test_predictions.txt"
    assert results["test_predictions"] == str(path.resolve())
    blocks = path.read_text(encoding="utf-8").split("\n\n")
    assert blocks[-1] == "" and len(blocks) == len(gold_intents) + 1
    words = (data_root / "atis" / "test" / "seq.in").read_text().splitlines()
    tags = (data_root / "atis" / "test" / "seq.out").read_text().splitlines()
    gold, predicted = [], []
    for block, sentence, sentence_tags in zip(blocks, words, tags):
        lines = [line.split(" ") for line in block.split("\n")]
        assert all(len(line) == 3 for line in lines)
        assert [line[0] for line in lines] == sentence.split() and [line[1] for line in lines] == sentence_tags.split()
        gold.append([line[1] for line in lines])
        predicted.append([line[2] for line in lines])
    assert f1_score(gold, predicted) == pytest.approx(metrics["test/slot_f1"], abs=1e-6)  # a user's own scorer agrees
    intents = (run_dir / "test_intent_predictions.txt").read_text().splitlines()
    assert [line.split(" ")[0] for line in intents] == gold_intents
    right = sum(g == p for g, p in (line.split(" ") for line in intents))
    assert right / len(gold_intents) == pytest.approx(metrics["test/intent_acc"], abs=1e-6)


def test_slot_filling_only(data_root, atis):
    model = JointSlotIntentTagger(cell={"name": "gru", "hidden_size": 8}, intent_weight=0.0, **atis.model_arguments())
    assert model.intent_classifier is None
    batch = pad_tagged_batch([atis.splits["validation"][i] for i in range(4)])
    slot_logits, intent_logits = model(batch["ids"], batch["lengths"])
    assert intent_logits is None and slot_logits.shape[:2] == batch["ids"].shape
