"""Sequence classification: embedding -> recurrent encoder from the registry -> linear classifier.

The classifier reads the encoder's final state: the top layer's output at each sequence's last real step
(and, when bidirectional, the backward direction's output at step 0), or with `pooling=mean`/`max` the
average or elementwise maximum of the outputs over each sequence's real steps. Used by `task=sst` and `task=imdb`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchmetrics
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from rrn_app import option_checks
from rrn_app.tasks.base import SequenceTask
from rrn_app.tasks.optim import embedding_groups
from rrn_app.tasks.pooling import POOLINGS, pool


CLASS_NAMES = {5: ["very negative", "negative", "neutral", "positive", "very positive"],  # SST-5
               2: ["negative", "positive"]}  # SST-2, IMDB


def class_names(num_classes: int) -> list[str]:
    """The labels' names, for pictures: SST's five, the binary pair, else `class 0`, `class 1`, ..."""
    return CLASS_NAMES.get(num_classes, [f"class {label}" for label in range(num_classes)])


class SequenceClassifier(SequenceTask):
    """The classifier of task=sst and task=imdb. Training accuracy and F1 are computed at the epoch's end from the
    predicted classes kept during it (cheaper than updating the metrics every step)."""

    def __init__(self, vocab_size: int, num_classes: int, embedding_dim: int, cell: dict,
                 dropout: float = 0.5, optimizer: str | dict = "adagrad", lr: float = 0.05, embedding_lr: float = 0.1,
                 weight_decay: float = 1e-4, pretrained_embeddings: torch.Tensor | None = None,
                 pooling: str = "final", scheduler: dict | None = None):
        super().__init__()
        option_checks.one_of("pooling", pooling, POOLINGS)
        self.check_training_options(optimizer=optimizer, lr=lr, weight_decay=weight_decay, scheduler=scheduler,
                                    dropout=dropout, embedding_lr=embedding_lr)
        self.save_hyperparameters(ignore=["pretrained_embeddings"])
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        if pretrained_embeddings is not None:
            self.embedding.weight.data.copy_(pretrained_embeddings)
        self.encoder = self.build_encoder(cell, input_size=embedding_dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.encoder.output_size, num_classes)
        # keyed by "<stage>/" because a ModuleDict key may not shadow nn.Module.train
        self.metrics = nn.ModuleDict({
            f"{stage}/": torchmetrics.MetricCollection({
                "acc": MulticlassAccuracy(num_classes, average="micro"),
                "f1_macro": MulticlassF1Score(num_classes, average="macro"),
            }, prefix=f"{stage}/")
            for stage in ("train", "val", "test")
        })
        self.per_class_f1 = nn.ModuleDict({s: MulticlassF1Score(num_classes, average=None) for s in ("val", "test")})
        self.confusion = nn.ModuleDict({s: MulticlassConfusionMatrix(num_classes) for s in ("val", "test")})
        self.losses = nn.ModuleDict({s: torchmetrics.MeanMetric() for s in ("val", "test")})
        self.confusion_matrices: dict[str, list] = {}
        self.train_predictions: list[tuple[torch.Tensor, torch.Tensor]] = []  # (classes, labels) of the epoch

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        embedded = self.dropout(self.embedding(ids))
        outputs, _ = self.encoder(embedded, lengths)
        summary = pool(outputs, lengths, self.encoder.bidirectional, self.hparams.pooling)
        return self.classifier(self.dropout(summary))

    def training_step(self, batch, batch_index):
        logits = self(batch["ids"], batch["lengths"])
        loss = nn.functional.cross_entropy(logits, batch["label"])
        self.train_predictions.append((logits.detach().argmax(-1), batch["label"]))
        self.log_training_loss(loss, len(logits))
        return loss

    def on_train_epoch_start(self):
        self.train_predictions = []

    def on_train_epoch_end(self):
        """train/acc and train/f1_macro of the epoch's predicted classes (reduced over DDP ranks by torchmetrics)."""
        metrics = self.metrics["train/"]
        if self.train_predictions:
            classes, labels = (torch.cat(column) for column in zip(*self.train_predictions))
            metrics.update(classes, labels)
        self.train_predictions = []
        self.log_epoch(metrics.compute(), "train")
        metrics.reset()

    def evaluate(self, batch, stage: str):
        logits = self(batch["ids"], batch["lengths"])
        self.losses[stage].update(nn.functional.cross_entropy(logits, batch["label"], reduction="none"))
        for metric in (self.metrics[f"{stage}/"], self.per_class_f1[stage], self.confusion[stage]):
            metric.update(logits, batch["label"])

    def log_evaluation(self, stage: str):
        values = {f"{stage}/loss": self.losses[stage].compute(), **self.metrics[f"{stage}/"].compute()}
        for label, f1 in enumerate(self.per_class_f1[stage].compute()):
            values[f"{stage}/f1_class{label}"] = f1
        self.log_epoch(values, stage)
        matrix = self.confusion[stage].compute()
        self.confusion_matrices[stage] = matrix.tolist()
        self._log_confusion_figure(stage)
        for metric in (self.losses[stage], self.metrics[f"{stage}/"], self.per_class_f1[stage], self.confusion[stage]):
            metric.reset()

    def _log_confusion_figure(self, stage: str):
        """The confusion matrix as a picture with the class names, `<run dir>/figures/<stage>_confusion_matrix.png`
        (validation: the latest epoch's, at the end the best checkpoint's), also to a logger that takes pictures."""
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        from rrn_app.figures import confusion_matrix_picture

        confusion_matrix_picture(self.confusion[stage], class_names(self.hparams.num_classes),
                                 Path(self.trainer.default_root_dir) / "figures" / f"{stage}_confusion_matrix.png",
                                 self.logger, f"{stage}/confusion_matrix", self.trainer.global_step)

    def extra_results(self) -> dict:
        """Added to results.json by rrn-train."""
        return {"test_confusion_matrix": self.confusion_matrices.get("test")}

    def parameter_groups(self) -> list[dict]:
        """The embedding at embedding_lr, the rest at lr."""
        return embedding_groups(self, self.hparams.lr, self.hparams.embedding_lr)
