"""Joint slot filling and intent detection: embedding -> recurrent encoder from the registry -> two classifiers.

A per-token slot classifier reads the encoder's output at every step; an intent classifier reads the sentence
state (the final state, or mean/max pooling over time). The loss is the slot cross-entropy (mean over real
tokens) plus `intent_weight` times the intent cross-entropy (mean over sentences); `intent_weight=0` drops the
intent classifier (slot filling only, as in Yue et al. 2018, section 4.1). Used by `task=atis`.

Scores (conll.py): slot F1, precision and recall as conlleval computes them, token accuracy, intent accuracy
and sentence accuracy (all tags and the intent right), under `val/` and `test/`. Testing writes the run
directory's `test_predictions.txt` in CoNLL format (`token gold predicted` per token, a blank line between
utterances, in the order of the test files; `conlleval.pl < test_predictions.txt` reproduces the slot scores)
and `test_intent_predictions.txt` (`gold predicted` per utterance). Under DDP each rank's predictions are
gathered on rank zero first. The intents' confusion matrix, with their names, is drawn in the run directory's
`figures/` (and sent to W&B or TensorBoard when that is the logger).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchmetrics
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from rrn_app import option_checks
from rrn_app.tasks.base import SequenceTask
from rrn_app.tasks.conll import SlotIntentScores
from rrn_app.tasks.optim import embedding_groups
from rrn_app.tasks.pooling import POOLINGS, pool

PREDICTIONS_FILE, INTENT_PREDICTIONS_FILE = "test_predictions.txt", "test_intent_predictions.txt"


def write_conll(path: Path, utterances) -> None:
    """`token gold predicted` per token, a blank line after each utterance (conlleval's input format)."""
    with open(path, "w", encoding="utf-8") as out:
        for tokens, gold, predicted in utterances:
            for token, gold_tag, predicted_tag in zip(tokens, gold, predicted, strict=True):
                out.write(f"{token} {gold_tag} {predicted_tag}\n")
            out.write("\n")


class JointSlotIntentTagger(SequenceTask):
    """The slot tagger and intent classifier of task=atis."""

    def __init__(self, vocab_size: int, embedding_dim: int, slot_labels: list[str], num_slot_outputs: int,
                 intent_labels: list[str], num_intent_outputs: int, cell: dict, dropout: float = 0.5,
                 intent_weight: float = 1.0, intent_pooling: str = "final", optimizer: str | dict = "rmsprop",
                 lr: float = 1e-3, embedding_lr: float | None = None, weight_decay: float = 0.0,
                 pretrained_embeddings: torch.Tensor | None = None, scheduler: dict | None = None):
        super().__init__()
        option_checks.non_negative_float("intent_weight", intent_weight)
        option_checks.one_of("intent_pooling", intent_pooling, POOLINGS)
        self.check_training_options(optimizer=optimizer, lr=lr, weight_decay=weight_decay, scheduler=scheduler,
                                    dropout=dropout, embedding_lr=embedding_lr)
        self.save_hyperparameters(ignore=["pretrained_embeddings"])
        self.slot_labels, self.intent_labels = list(slot_labels), list(intent_labels)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        if pretrained_embeddings is not None:
            self.embedding.weight.data.copy_(pretrained_embeddings)
        self.encoder = self.build_encoder(cell, input_size=embedding_dim)
        self.dropout = nn.Dropout(dropout)
        self.slot_classifier = nn.Linear(self.encoder.output_size, num_slot_outputs)
        self.intent_classifier = nn.Linear(self.encoder.output_size, num_intent_outputs) if intent_weight > 0 else None
        self.scores = nn.ModuleDict({stage: SlotIntentScores() for stage in ("val", "test")})
        self.slot_losses = nn.ModuleDict({stage: torchmetrics.MeanMetric() for stage in ("val", "test")})
        self.intent_losses = nn.ModuleDict({stage: torchmetrics.MeanMetric() for stage in ("val", "test")})
        self.intent_confusion = nn.ModuleDict({stage: MulticlassConfusionMatrix(len(self.intent_labels))
                                               for stage in ("val", "test")}) if intent_weight > 0 else None
        self.test_predictions: list = []
        self.predictions_path: Path | None = None

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor):
        """Slot logits [batch, time, slot outputs] and intent logits [batch, intent outputs] (None: slots only)."""
        outputs, _ = self.encoder(self.dropout(self.embedding(ids)), lengths)
        slots = self.slot_classifier(self.dropout(outputs))
        if self.intent_classifier is None:
            return slots, None
        summary = pool(outputs, lengths, self.encoder.bidirectional, self.hparams.intent_pooling)
        return slots, self.intent_classifier(self.dropout(summary))

    def _losses(self, slot_logits, intent_logits, batch):
        """Per-token slot losses and per-sentence intent losses, over the labels the model can predict."""
        tags = batch["tags"]
        trainable = (tags >= 0) & (tags < self.hparams.num_slot_outputs)  # not padding, not a label unseen in training
        slot_loss = nn.functional.cross_entropy(slot_logits[trainable], tags[trainable], reduction="none")
        if intent_logits is None:
            return slot_loss, None
        known = batch["intent"] < self.hparams.num_intent_outputs
        intent_loss = nn.functional.cross_entropy(intent_logits[known], batch["intent"][known], reduction="none")
        return slot_loss, intent_loss

    def _total(self, slot_loss, intent_loss):
        loss = slot_loss.mean()
        if intent_loss is not None and intent_loss.numel():
            loss = loss + self.hparams.intent_weight * intent_loss.mean()
        return loss

    def training_step(self, batch, batch_index):
        slot_logits, intent_logits = self(batch["ids"], batch["lengths"])
        slot_loss, intent_loss = self._losses(slot_logits, intent_logits, batch)
        loss = self._total(slot_loss, intent_loss)
        size = len(batch["lengths"])
        self.log_training_loss(loss, size)
        self.log_training_loss(slot_loss.mean(), size, "train/slot_loss")
        if intent_loss is not None:
            self.log_training_loss(intent_loss.mean(), size, "train/intent_loss")
        return loss

    def evaluate(self, batch, stage: str):
        slot_logits, intent_logits = self(batch["ids"], batch["lengths"])
        slot_loss, intent_loss = self._losses(slot_logits, intent_logits, batch)
        self.slot_losses[stage].update(slot_loss)
        if intent_loss is not None and intent_loss.numel():
            self.intent_losses[stage].update(intent_loss)
        lengths = batch["lengths"].tolist()
        predicted = slot_logits.argmax(-1).tolist()
        gold = batch["tags"].tolist()
        gold_tags = [[self.slot_labels[i] for i in row[:n]] for row, n in zip(gold, lengths)]
        predicted_tags = [[self.slot_labels[i] for i in row[:n]] for row, n in zip(predicted, lengths)]
        gold_intents = predicted_intents = None
        if intent_logits is not None:
            self.intent_confusion[stage].update(intent_logits.argmax(-1), batch["intent"])
            gold_intents = [self.intent_labels[i] for i in batch["intent"].tolist()]
            predicted_intents = [self.intent_labels[i] for i in intent_logits.argmax(-1).tolist()]
        self.scores[stage].update(gold_tags, predicted_tags, gold_intents, predicted_intents)
        if stage == "test":
            for number, index in enumerate(batch["index"].tolist()):
                intents = None if gold_intents is None else (gold_intents[number], predicted_intents[number])
                self.test_predictions.append(
                    (index, batch["tokens"][number], gold_tags[number], predicted_tags[number], intents))

    def log_evaluation(self, stage: str):
        values = {f"{stage}/{name}": value for name, value in self.scores[stage].compute().items()}
        slot_loss = self.slot_losses[stage].compute()
        values[f"{stage}/slot_loss"] = slot_loss
        loss = slot_loss
        if self.intent_classifier is not None:
            intent_loss = self.intent_losses[stage].compute()
            values[f"{stage}/intent_loss"] = intent_loss
            loss = loss + self.hparams.intent_weight * intent_loss
        values[f"{stage}/loss"] = loss
        self.log_epoch(values, stage)
        if self.intent_confusion is not None:
            self._intent_confusion_figure(stage)
            self.intent_confusion[stage].reset()
        for metric in (self.scores[stage], self.slot_losses[stage], self.intent_losses[stage]):
            metric.reset()

    def _intent_confusion_figure(self, stage: str):
        """The intents' confusion matrix with their names, `<run dir>/figures/<stage>_intent_confusion_matrix.png`
        (validation: the latest epoch's, at the end the best checkpoint's), also to a logger that takes pictures."""
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        from rrn_app.figures import confusion_matrix_picture

        folder = Path(self.trainer.default_root_dir) / "figures"
        confusion_matrix_picture(self.intent_confusion[stage], self.intent_labels,
                                 folder / f"{stage}_intent_confusion_matrix.png", self.logger,
                                 f"{stage}/intent_confusion_matrix", self.trainer.global_step)

    def on_test_epoch_start(self):
        self.test_predictions = []

    def on_test_epoch_end(self):
        super().on_test_epoch_end()
        self._write_test_predictions()

    def _write_test_predictions(self):
        """The test predictions, in the test files' order, into the run directory (rank zero, after gathering)."""
        predictions = self.test_predictions
        if self.trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, predictions)
            predictions = [row for part in gathered for row in part]
        self.test_predictions = []
        if not self.trainer.is_global_zero:
            return
        by_index = dict((row[0], row[1:]) for row in predictions)  # one row per utterance
        ordered = [by_index[index] for index in sorted(by_index)]
        folder = Path(self.trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.predictions_path = folder / PREDICTIONS_FILE
        write_conll(self.predictions_path, ((tokens, gold, predicted) for tokens, gold, predicted, _ in ordered))
        if self.intent_classifier is not None:
            lines = "".join(f"{gold} {predicted}\n" for *_, (gold, predicted) in ordered)
            (folder / INTENT_PREDICTIONS_FILE).write_text(lines, encoding="utf-8")

    def extra_results(self) -> dict:
        """Added to results.json by rrn-train."""
        slots, intents = self.hparams.num_slot_outputs, self.hparams.num_intent_outputs
        return {
            "test_predictions": str(self.predictions_path.resolve()) if self.predictions_path else None,
            "labels_unseen_in_training": {"slot_tags": self.slot_labels[slots:], "intents": self.intent_labels[intents:]},
        }

    def parameter_groups(self) -> list[dict]:
        """The embedding at embedding_lr (null: lr), the rest at lr."""
        return embedding_groups(self, self.hparams.lr, self.hparams.embedding_lr)
