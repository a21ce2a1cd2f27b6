"""`rrn-bench mode=train-loop`: rrn-train's training batches/s beside a bare PyTorch loop over the same model,
loader and optimizer. Only that it measures both and says where the time goes is tested here; the speed itself
is a ratio measured in one run (docs/speed.md), never a timed unit test."""

from __future__ import annotations

import json

import pytest

from rrn_app.bench import train_loop
from rrn_app.option_checks import UserError

TINY = ["tasks=sst", "cells=lstm", "batches=2", "warmup=1", "rounds=2", "threads=1", "cell.hidden_size=8",
        "task.data.batch_size=16"]


@pytest.mark.slow
def test_a_tiny_run_reports_both_rates_their_ratio_and_where_the_time_goes(tmp_path, capsys):
    train_loop.main([*TINY, "mode=train-loop", f"out={tmp_path}"])
    report = json.loads((tmp_path / "train_loop.json").read_text())
    (row,) = report["rows"]
    assert (row["task"], row["cell"], report["rounds"]) == ("sst", "lstm", 2)
    assert len(row["rates"]["rrn-train"]) == len(row["rates"]["bare"]) == 2  # one of each per round
    assert row["rrn_train_batches_per_s"] > 0 and row["bare_batches_per_s"] > 0
    assert row["ratio"] == pytest.approx(row["rrn_train_batches_per_s"] / row["bare_batches_per_s"])
    assert row["cpu_ratio"] > 0 and len(row["round_cpu_ratios"]) == 2  # the same in CPU time
    parts = row["breakdown_ms"]["parts"]  # the callbacks rrn-train runs every batch, and the task's own calls
    assert {"callback RichProgressBar", "callback DivergenceGuard", "task: self.log"} <= set(parts)
    table = (tmp_path / "train_loop.md").read_text()
    assert "| sst | lstm |" in table and "rest (Lightning's loop)" in table
    assert "ratio" in capsys.readouterr().out


def test_the_bare_loop_leaves_the_models_metrics_and_log_as_they_were():
    """The bare side switches the task's torchmetrics updates and self.log off, and on again after."""
    import torch
    import torchmetrics
    from lightning import LightningModule

    class Model(LightningModule):
        def __init__(self):
            super().__init__()
            self.accuracy = torchmetrics.MeanMetric()

    model = Model()
    with train_loop.metrics_and_log_off(model):
        model.accuracy.update(torch.tensor(1.0))
        model.log("x", 1.0)
    assert model.accuracy.update.__name__ != "<lambda>" and "log" not in model.__dict__
    model.accuracy.update(torch.tensor(3.0))
    assert float(model.accuracy.compute()) == 3.0  # only the update made after the bare loop counted


@pytest.mark.parametrize("argv, says", [
    (["tasks=sts"], "unknown task 'sts'. Did you mean sst?"),
    (["batches=0"], "batches='0': must be a whole number >= 1"),
    (["breakdown=maybe"], "breakdown='maybe': true or false"),
])
def test_bad_settings_are_one_line_errors(argv, says):
    with pytest.raises(UserError, match=says.replace("?", r"\?").replace("(", r"\(")):
        train_loop.parse_arguments(["mode=train-loop", *argv])
