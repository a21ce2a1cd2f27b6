"""rrn-train end to end on the real SST data (data.root's or the embedded copy): training, results.json, checkpoints,
loggers, errors, DDP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import FULL_DATA, run_cli, run_dir_of
from rrn_app.train import train
from rrn_app.option_checks import UserError

# a short run: sentences only, a few hundred steps, small model (longer than helpers.QUICK's two batches)
SHORT = ["trainer.max_epochs=2", "task.data.train_on=sentences", "task.data.batch_size=32", "cell.hidden_size=32",
         "trainer.enable_progress_bar=false", "logger=none"]


@pytest.mark.slow
def test_short_real_run_beats_chance_and_writes_results(compose_config, data_root, tmp_path):
    cfg = compose_config("task=sst", "cell=res_lstm", f"data.root={data_root}", *SHORT)
    run_dir = train(cfg)
    results = json.loads((run_dir / "results.json").read_text())
    metrics = results["metrics"]
    majority = 633 / 2210  # the most frequent test class ("negative")
    assert metrics["test/acc"] > majority + 0.05, metrics
    for name in ("val/acc", "val/loss", "test/acc", "test/loss", "test/f1_macro", "test/f1_class0", "val/f1_class4"):
        assert name in metrics
    assert results["task"] == "sst" and results["cell"] == "res_lstm"
    assert results["config"]["cell"]["hidden_size"] == 32 and results["config"]["seed"] == 0
    assert results["parameters"] > 0 and results["wall_time_seconds"] > 0 and results["train_tokens_per_second"] > 0
    assert Path(results["best_checkpoint"]).is_file() and Path(results["last_checkpoint"]).is_file()
    matrix = results["test_confusion_matrix"]
    assert len(matrix) == 5 and sum(map(sum, matrix)) == 2210


@pytest.mark.slow
def test_resume_from_checkpoint_keeps_earlier_results(compose_config, data_root, tmp_path):
    first = train(compose_config(f"data.root={data_root}", *SHORT, "trainer.max_epochs=1"))
    last = first / "checkpoints" / "last.ckpt"
    import torch

    saved = torch.load(last, weights_only=True, map_location="cpu")  # as rrn reads it (rrn_app/checkpoints.py)
    vocabulary = saved["SSTDataModule"]["vocabulary"]  # checkpoints carry the vocabulary
    assert vocabulary[:2] == ["<pad>", "<unk>"] and len(vocabulary) > 10000
    earlier = (first / "results.json").read_text()
    resumed = train(compose_config(f"data.root={data_root}", *SHORT, "trainer.max_epochs=2", f"ckpt_path={last}"))
    results = json.loads((resumed / "results.json").read_text())
    assert results["epochs"] == 2
    assert (first / "results-1.json").read_text() == earlier  # the same run dir: the old results are kept


@pytest.mark.parametrize("override, key", [
    ("cell.keep_prob=1.5", "cell.keep_prob=1.5 is not allowed: must be a probability in (0, 1]"),
    ("cell.hidden_size=0", "cell.hidden_size=0 is not allowed: must be a positive integer"),
    ("task.data.batch_size=-4", "task.data.batch_size=-4 is not allowed: must be a positive integer"),
    ("task.model.dropout=1.0", "task.model.dropout=1.0 is not allowed"),
    ("task.model.optimizer=adagard", "task.model.optimizer='adagard' is not allowed: must be one of"),
])
def test_bad_values_fail_before_training_with_the_key(compose_config, data_root, override, key):
    cell = ["cell=res_lstm"] if "keep_prob" in override else []
    with pytest.raises(UserError) as error:
        train(compose_config(f"data.root={data_root}", *cell, *SHORT, override))
    assert key in str(error.value)


def test_missing_data_names_the_path_and_how_to_get_it(compose_config, tmp_path):
    with pytest.raises(UserError) as error:
        train(compose_config("task=atis", f"data.root={tmp_path / 'nowhere'}", "logger=none"))
    message = str(error.value)
    assert str(tmp_path / "nowhere" / "atis" / "train" / "seq.in") in message
    assert f"rrn-data get atis root={tmp_path / 'nowhere'}" in message and "\n" not in message


def test_bf16_on_a_cpu_without_it_is_a_clear_error(compose_config, tmp_path, monkeypatch):
    """Refused before any data is read: the data root here does not even exist."""
    import torch

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with pytest.raises(UserError, match="bf16-mixed on CPU .* lacks bfloat16 support"):
        train(compose_config(f"data.root={tmp_path / 'nowhere'}", *SHORT, "trainer.precision=bf16-mixed",
                             "trainer.accelerator=cpu"))


@pytest.mark.slow
@pytest.mark.parametrize("argument, expected", [
    ("cell=lstn", "unknown cell 'lstn'. Did you mean cell=lstm? Known cell choices: {cells}."),
    ("task=sts", "unknown task 'sts'. Did you mean task=sst?"),
])
def test_unknown_names_from_the_command_line(argument, expected):
    from rrn_app.cells import list_cells

    expected = expected.format(cells=", ".join(sorted(list_cells())))  # built-in and installed plugin cells
    result = run_cli("rrn-train", argument)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_command_line_run_with_wandb_offline(data_root, tmp_path):
    """The real command: W&B offline without a key (no prompt, no hang), run dir as the last line."""
    result = run_cli("rrn-train", "task=sst", "cell=lstm", f"data.root={data_root}", *SHORT, "logger=wandb",
                     "trainer.max_epochs=1", "trainer.limit_train_batches=20", cwd=tmp_path,
                     env={"WANDB_MODE": "", "WANDB_API_KEY": ""}, timeout=300)
    run_dir = run_dir_of(result)
    assert run_dir.is_dir() and run_dir.is_relative_to(tmp_path / "runs" / "sst" / "lstm")
    assert (run_dir / "results.json").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()
    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    assert list(offline_runs[0].glob("run-*.wandb"))
    assert "best checkpoint:" in result.stdout and "f1_macro" in result.stdout  # the summary table
    if not FULL_DATA:  # the fixtures' root has no sst/: the embedded trees, and one line says so
        assert result.stderr.count("using the embedded copy") == 2  # the trees and the GloVe rows


@pytest.mark.slow
def test_two_process_cpu_ddp(data_root, tmp_path):
    result = run_cli("rrn-train", "task=sst", "cell=res_lstm", "cell.keep_prob=0.75", f"data.root={data_root}", *SHORT,
                     "trainer.max_epochs=1", "trainer.limit_train_batches=10", "trainer.accelerator=cpu",
                     "trainer.devices=2", "trainer.strategy=ddp", cwd=tmp_path, timeout=400)
    run_dir = run_dir_of(result)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["config"]["trainer"]["devices"] == 2
    assert sum(map(sum, results["test_confusion_matrix"])) == 2210  # both ranks' test examples, gathered
    assert "test/acc" in results["metrics"]


def test_experiment_configs_compose(compose_config):
    cfg = compose_config("experiment=sst_stochastic_depth")
    assert cfg.task.name == "sst" and cfg.cell.name == "res_lstm"
    assert (cfg.cell.num_layers, cfg.cell.hidden_size, cfg.cell.keep_prob) == (4, 160, 0.75)
    cfg = compose_config("experiment=sst_res_lstm_paper", "cell.hidden_size=40")  # the command line still wins
    assert cfg.cell.hidden_size == 40 and cfg.trainer.max_epochs == 10
    assert cfg.task.model.optimizer._target_ == "torch.optim.Adagrad"  # sst's optimizer, the optimizer group's adagrad
