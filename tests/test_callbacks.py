"""The `callbacks` config group (conf/callbacks/) and rrn's own callbacks (throughput, validation history)."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar

from helpers import QUICK
from rrn_app.callbacks import Throughput, ValidationHistory, build_callbacks
from rrn_app.divergence import DivergenceGuard
from rrn_app.train import train
from rrn_app.option_checks import UserError

DEFAULT = ["model_checkpoint", "early_stopping", "throughput", "divergence", "learning_rate_monitor",
           "rich_progress_bar"]
TINY = [*QUICK, "cell.hidden_size=16"]


def test_default_callbacks_follow_the_tasks_metric(compose_config):
    cfg = compose_config("task=music")
    assert list(cfg.callbacks) == DEFAULT
    assert cfg.callbacks.model_checkpoint.monitor == "val/nll" and cfg.callbacks.model_checkpoint.mode == "min"
    assert cfg.callbacks.early_stopping.monitor == "val/nll" and cfg.callbacks.early_stopping.patience == 5
    assert compose_config("task=sst", "task.patience=7").callbacks.early_stopping.patience == 7


def test_default_callbacks_are_built_in_order(compose_config):
    cfg = compose_config("task=sst")
    built = build_callbacks(cfg.callbacks, has_logger=True, progress_bar=True)
    assert [type(c) for c in built] == [ModelCheckpoint, EarlyStopping, Throughput, DivergenceGuard,
                                        LearningRateMonitor, RichProgressBar]
    checkpoint = built[0]
    assert checkpoint.monitor == "val/loss" and checkpoint.save_last
    assert str(checkpoint.dirpath).endswith("run/checkpoints")


def test_no_logger_drops_the_lr_monitor_and_no_progress_bar_drops_the_bar(compose_config):
    built = build_callbacks(compose_config().callbacks, has_logger=False, progress_bar=False)
    assert [type(c) for c in built] == [ModelCheckpoint, EarlyStopping, Throughput, DivergenceGuard]


def test_callbacks_none_and_added_callbacks(compose_config):
    assert build_callbacks(compose_config("callbacks=none").get("callbacks"), has_logger=True, progress_bar=True) == []
    cfg = compose_config("callbacks=none",
                         "+callbacks.lr_monitor._target_=lightning.pytorch.callbacks.LearningRateMonitor")
    built = build_callbacks(cfg.callbacks, has_logger=True, progress_bar=True)
    assert [type(c) for c in built] == [LearningRateMonitor]
    cfg = compose_config("~callbacks.early_stopping", "callbacks.model_checkpoint.save_top_k=3")
    built = build_callbacks(cfg.callbacks, has_logger=False, progress_bar=False)
    assert [type(c) for c in built] == [ModelCheckpoint, Throughput, DivergenceGuard] and built[0].save_top_k == 3


def test_a_callback_without_a_class_or_not_a_callback_is_a_clear_error(compose_config):
    with pytest.raises(UserError, match=r"callbacks.swa names no class: give \+callbacks.swa._target_=<class>"):
        build_callbacks(compose_config("+callbacks.swa.swa_lrs=0.01").callbacks, has_logger=True, progress_bar=True)
    with pytest.raises(UserError, match="callbacks.odd._target_=collections.OrderedDict is not a Lightning callback"):
        build_callbacks(compose_config("+callbacks.odd._target_=collections.OrderedDict").callbacks,
                        has_logger=True, progress_bar=True)


def test_trainer_callbacks_points_to_the_callbacks_group(compose_config):
    cfg = compose_config("+trainer.callbacks=[{_target_: lightning.pytorch.callbacks.LearningRateMonitor}]")
    with pytest.raises(UserError) as error:
        train(cfg)  # before any data is read
    message = str(error.value)
    assert "\n" not in message and "trainer.callbacks is not read" in message
    assert "+callbacks.<name>._target_=<class>" in message and "callbacks=none" in message


class LogsEpoch(L.LightningModule):
    """Logs val/loss = 1 / (epoch + 1) and a val/late metric from epoch 1 on."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_index):
        return self.weight.sum() * 0.0 + batch.sum() * 0.0

    def validation_step(self, batch, batch_index):
        self.log("val/loss", 1.0 / (self.current_epoch + 1))
        if self.current_epoch >= 1:
            self.log("val/late", float(self.current_epoch))

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.zeros(4, 1), batch_size=2)

    val_dataloader = train_dataloader

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(module, tmp_path, epochs, callbacks, ckpt_path=None):
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=1, default_root_dir=tmp_path, callbacks=callbacks)
    trainer.fit(module, ckpt_path=ckpt_path)
    trainer.validate(module, ckpt_path=tmp_path / "checkpoints" / "epoch=0-step=2.ckpt", verbose=False)  # as rrn-train
    return trainer


def test_validation_history_has_one_row_per_epoch_and_survives_a_resume(tmp_path):
    history = ValidationHistory()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True, save_top_k=-1)
    fit(LogsEpoch(), tmp_path, 2, [history, checkpoint])
    assert history.history == {"epoch": [0, 1], "val/loss": [1.0, 0.5], "val/late": [None, 1.0]}  # no sanity check
    resumed = ValidationHistory()
    fit(LogsEpoch(), tmp_path, 3, [resumed, ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True,
                                                            save_top_k=-1)],
        ckpt_path=tmp_path / "checkpoints" / "last.ckpt")
    assert resumed.history["epoch"] == [0, 1, 2] and resumed.history["val/loss"] == pytest.approx([1.0, 0.5, 1 / 3])
    json.dumps(resumed.history, allow_nan=False)  # strict JSON


@pytest.mark.slow
def test_a_run_with_callbacks_none_and_an_added_lr_monitor(compose_config, data_root, tmp_path):
    cfg = compose_config("task=sst", f"data.root={data_root}", *TINY, "logger=csv", "callbacks=none",
                         "+callbacks.lr._target_=lightning.pytorch.callbacks.LearningRateMonitor")
    run_dir = train(cfg)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "finished" and results["overrides"] == []  # composed in-process: no Hydra job
    assert results["train_tokens_per_second"] is None  # no Throughput callback
    assert results["history"]["epoch"] == [0] and set(results["history"]) >= {"val/loss", "val/acc"}
    assert results["best_checkpoint"] and results["test_confusion_matrix"]  # Lightning's own last-epoch checkpoint
    header = (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "lr-Adagrad" in header
