"""What a finished training run promises: early stopping after `task.patience` epochs without improvement, the
best checkpoint from the epoch with the best monitored metric, the CSV logger's rows matching the run's history,
and the same seed giving the same numbers. Tiny SST runs (sentences only, two batches per epoch)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from rrn_app.train import train


def sst_run(compose_config, data_root, quick, *overrides: str) -> dict:
    cfg = compose_config("task=sst", "cell=lstm", "cell.hidden_size=8", "task.data.train_on=sentences",
                         f"data.root={data_root}", *quick, *overrides)
    run_dir = train(cfg)
    return dict(json.loads((run_dir / "results.json").read_text()), run_dir=run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("patience", [1, 2])
def test_early_stopping_waits_patience_epochs_and_the_best_checkpoint_is_the_best_epoch(compose_config, data_root,
                                                                                         quick, patience):
    # min_delta=10 on val/loss: only the first epoch counts as an improvement, so the run must stop `patience`
    # epochs later, long before max_epochs
    results = sst_run(compose_config, data_root, quick, "trainer.max_epochs=8", f"task.patience={patience}",
                      "+callbacks.early_stopping.min_delta=10", "logger=csv")
    history = results["history"]
    assert results["status"] == "finished" and history["epoch"] == list(range(patience + 1))
    assert results["epochs"] == patience + 1
    losses = history["val/loss"]
    best_epoch = losses.index(min(losses))  # task=sst monitors val/loss (mode min)
    assert Path(results["best_checkpoint"]).name == f"best-epoch{best_epoch:02d}.ckpt"
    assert results["metrics"]["val/loss"] == pytest.approx(losses[best_epoch], rel=1e-5)  # tested on the best one
    # the CSV logger: one row per epoch's validation with the history's numbers, then the best checkpoint's
    with open(results["run_dir"] / "csv" / "metrics.csv") as file:
        rows = [row for row in csv.DictReader(file) if row.get("val/loss")]
    *epochs, final = rows
    assert [int(row["epoch"]) for row in epochs] == history["epoch"]
    assert [float(row["val/loss"]) for row in epochs] == pytest.approx(losses, rel=1e-5)
    assert [float(row["val/acc"]) for row in epochs] == pytest.approx(history["val/acc"], rel=1e-5)
    assert float(final["val/loss"]) == pytest.approx(losses[best_epoch], rel=1e-5)


@pytest.mark.slow
def test_the_same_seed_gives_the_same_metrics_and_another_seed_others(compose_config, data_root, quick, tmp_path):
    first = sst_run(compose_config, data_root, quick, "seed=5", f"run_dir={tmp_path / 'a'}")
    again = sst_run(compose_config, data_root, quick, "seed=5", f"run_dir={tmp_path / 'b'}")
    other = sst_run(compose_config, data_root, quick, "seed=6", f"run_dir={tmp_path / 'c'}")
    assert first["metrics"] == again["metrics"] and first["history"] == again["history"]
    assert other["metrics"]["val/loss"] != first["metrics"]["val/loss"]
