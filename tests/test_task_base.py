"""The task base (rrn_app/tasks/base.py): what it logs where, and the classifier's training metrics read at the
epoch's end."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torchmetrics
from torch.utils.data import DataLoader, TensorDataset

from rrn_app.tasks.base import SequenceTask


class Regression(SequenceTask):
    """A linear regression through the base's training, evaluation and optimizer handling."""

    def __init__(self, optimizer="sgd", lr: float = 0.1, weight_decay: float = 0.0, scheduler=None):
        super().__init__()
        self.check_training_options(optimizer=optimizer, lr=lr, weight_decay=weight_decay, scheduler=scheduler)
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(2, 1)
        self.losses = torch.nn.ModuleDict({stage: torchmetrics.MeanMetric() for stage in ("val", "test")})
        self.logged: list[tuple[dict, dict]] = []

    def training_step(self, batch, batch_index):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log_training_loss(loss, len(x))
        return loss

    def evaluate(self, batch, stage):
        x, y = batch
        self.losses[stage].update(torch.nn.functional.mse_loss(self.layer(x), y))

    def log_evaluation(self, stage):
        self.log_epoch({f"{stage}/loss": self.losses[stage].compute()}, stage)
        self.losses[stage].reset()

    def log_dict(self, values, **options):
        self.logged.append((dict(values), options))
        super().log_dict(values, **options)


def loader():
    x = torch.randn(32, 2)
    return DataLoader(TensorDataset(x, x.sum(-1, keepdim=True)), batch_size=8)


@pytest.fixture
def fitted(tmp_path):
    model = Regression()
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, loader(), loader())
    return model, trainer


def test_the_training_loss_goes_to_the_logger_but_not_to_the_progress_bar(fitted):
    _, trainer = fitted
    assert "train/loss" in trainer.callback_metrics
    assert "train/loss" not in trainer.progress_bar_metrics and "val/loss" in trainer.progress_bar_metrics


def test_epoch_metrics_are_reduced_over_ranks_and_test_runs_the_same_loop(fitted):
    model, trainer = fitted
    assert model.logged and all(options.get("sync_dist") is True for _, options in model.logged)
    test = trainer.test(model, loader(), verbose=False)[0]
    assert set(test) == {"test/loss"} and test["test/loss"] >= 0


def test_the_classifier_scores_its_training_epoch_from_the_classes_it_kept(monkeypatch):
    from rrn_app.tasks.classifier import SequenceClassifier

    model = SequenceClassifier(vocab_size=12, num_classes=3, embedding_dim=4, cell={"name": "gru", "hidden_size": 4})
    monkeypatch.setattr(model, "log_training_loss", lambda *arguments, **options: None)
    logged = {}
    monkeypatch.setattr(model, "log_epoch", lambda values, stage: logged.update({stage: dict(values)}))
    torch.manual_seed(0)
    batches = [{"ids": torch.randint(1, 12, (5, 6)), "lengths": torch.tensor([6, 5, 4, 3, 2]),
                "label": torch.randint(0, 3, (5,))} for _ in range(3)]
    model.eval()  # no dropout: the logits below are the ones the steps saw
    model.on_train_epoch_start()
    for number, batch in enumerate(batches):
        model.training_step(batch, number)
    assert len(model.train_predictions) == 3  # kept, not scored, during the epoch
    model.on_train_epoch_end()
    with torch.no_grad():
        predicted = torch.cat([model(batch["ids"], batch["lengths"]).argmax(-1) for batch in batches])
    labels = torch.cat([batch["label"] for batch in batches])
    assert float(logged["train"]["train/acc"]) == pytest.approx(float((predicted == labels).float().mean()))
    assert "train/f1_macro" in logged["train"] and model.train_predictions == []
