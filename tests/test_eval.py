"""rrn-eval: a checkpoint of rrn-train evaluated on a split, from its run's saved config; resuming in the same run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import QUICK, run_cli, run_dir_of
from rrn_app.evaluate import leaf_keys, run_folder, unused_path

TINY = ["task=sst", "cell=lstm", "cell.hidden_size=16", *QUICK, "logger=csv"]


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory) -> Path:
    """The run folder of one tiny rrn-train run, made the way a user makes it."""
    folder = tmp_path_factory.mktemp("eval") / "run"
    return run_dir_of(run_cli("rrn-train", *TINY, f"data.root={data_root}", f"hydra.run.dir={folder}"))


def test_the_run_of_a_checkpoint_and_the_next_free_name(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    assert run_folder(tmp_path / "checkpoints" / "last.ckpt") == tmp_path.resolve()
    assert run_folder(tmp_path / "loose.ckpt") == tmp_path.resolve()
    assert unused_path(tmp_path, "test").name == "eval-test.json"
    (tmp_path / "eval-test.json").write_text("{}")
    (tmp_path / "eval-test-1.json").write_text("{}")
    assert unused_path(tmp_path, "test").name == "eval-test-2.json"
    assert leaf_keys({"a": 1, "b": {"c": 2, "d": {"e": 3}}}) == ["a", "b.c", "b.d.e"]


@pytest.mark.slow
def test_help_and_bad_arguments_are_one_line(tmp_path):
    help_text = run_cli("rrn-eval", "--help")
    assert help_text.returncode == 0 and help_text.stdout.startswith("usage: rrn-eval ckpt=")
    for arguments, expected in [
        ([], "ckpt=<path> is required"),
        (["ckpt"], "expected key=value, got 'ckpt'"),
        ([f"ckpt={tmp_path / 'missing.ckpt'}"], f"checkpoint not found: {tmp_path / 'missing.ckpt'}"),
    ]:
        result = run_cli("rrn-eval", *arguments)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("rrn-eval: error: ") and expected in result.stderr
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    result = run_cli("rrn-eval", f"ckpt={tmp_path / 'notes.ckpt'}")
    assert result.returncode == 2 and "could not read checkpoint" in result.stderr and result.stderr.count("\n") == 1
    import torch

    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.ckpt")
    result = run_cli("rrn-eval", f"ckpt={tmp_path / 'plain.ckpt'}")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "is not a Lightning checkpoint (no state_dict in it)" in result.stderr
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": {}}, tmp_path / "run" / "checkpoints" / "last.ckpt")
    result = run_cli("rrn-eval", f"ckpt={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}")
    assert result.returncode == 2 and f"{tmp_path / 'run' / '.hydra' / 'config.yaml'} not found" in result.stderr


@pytest.mark.slow
def test_eval_on_test_and_validation_reproduces_the_runs_numbers(trained, data_root):
    results = json.loads((trained / "results.json").read_text())
    best = results["best_checkpoint"]
    first = run_cli("rrn-eval", f"ckpt={best}", "threads=1", f"data.root={data_root}")
    written = Path(first.stdout.strip().splitlines()[-1])
    assert first.returncode == 0 and written == trained / "eval-test.json", first.stderr[-2000:]
    evaluated = json.loads(written.read_text())
    assert evaluated["split"] == "test" and evaluated["checkpoint"] == best
    assert evaluated["metrics"]["test/acc"] == pytest.approx(results["metrics"]["test/acc"])
    assert "metric" in first.stdout and "test" in first.stdout and "acc " in first.stdout
    assert "Be aware that when using `ckpt_path`" not in first.stderr

    again = run_cli("rrn-eval", f"ckpt={best}", "split=validation", "threads=1", f"data.root={data_root}")
    assert Path(again.stdout.strip().splitlines()[-1]) == trained / "eval-validation.json"
    validated = json.loads((trained / "eval-validation.json").read_text())
    assert validated["metrics"]["val/loss"] == pytest.approx(results["metrics"]["val/loss"])

    third = run_cli("rrn-eval", f"ckpt={best}", "threads=1", f"data.root={data_root}", "trainer.limit_test_batches=1")
    assert Path(third.stdout.strip().splitlines()[-1]) == trained / "eval-test-1.json"  # never overwritten
    assert json.loads((trained / "eval-test.json").read_text()) == evaluated
    assert json.loads((trained / "eval-test-1.json").read_text())["overrides"] == [
        "threads=1", f"data.root={data_root}", "trainer.limit_test_batches=1"]


@pytest.mark.slow
def test_eval_errors_name_the_key_or_the_split(trained):
    best = json.loads((trained / "results.json").read_text())["best_checkpoint"]
    result = run_cli("rrn-eval", f"ckpt={best}", "split=tset")
    assert result.returncode == 2 and "split='tset' is not allowed: must be one of test, validation" in result.stderr
    result = run_cli("rrn-eval", f"ckpt={best}", "trainer.limit_test_batchs=1")
    assert result.returncode == 2 and "Did you mean trainer.limit_test_batches=?" in result.stderr


@pytest.mark.slow
def test_a_checkpoint_moved_out_of_its_run_uses_the_config_inside_it(trained, data_root, tmp_path):
    best = Path(json.loads((trained / "results.json").read_text())["best_checkpoint"])
    loose = tmp_path / "copied.ckpt"
    shutil.copy(best, loose)
    result = run_cli("rrn-eval", f"ckpt={loose}", "threads=1", f"data.root={data_root}")
    assert result.returncode == 0, result.stderr[-2000:]
    written = Path(result.stdout.strip().splitlines()[-1])
    assert written == tmp_path / "eval-test.json"
    original = json.loads((trained / "eval-test.json").read_text())
    assert json.loads(written.read_text())["metrics"] == pytest.approx(original["metrics"])


@pytest.mark.slow
def test_resume_continues_in_the_original_run_folder(trained, data_root, tmp_path):
    earlier = (trained / "results.json").read_text()
    rejected = run_cli("rrn-train", *TINY, "task.data.batch_size=-1", f"data.root={data_root}",
                       f"hydra.run.dir={tmp_path / 'rejected'}", f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}")
    assert rejected.returncode == 2 and "task.data.batch_size=-1 is not allowed" in rejected.stderr
    assert not (tmp_path / "rejected").exists() and (trained / "results.json").read_text() == earlier
    elsewhere = tmp_path / "would-be-new"
    result = run_cli("rrn-train", *TINY, "trainer.max_epochs=2", f"data.root={data_root}",
                     f"hydra.run.dir={elsewhere}", f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}")
    assert run_dir_of(result) == trained
    assert not elsewhere.exists()  # Hydra's new folder is folded into the run
    assert (trained / ".hydra" / "resumed-2" / "overrides.yaml").is_file()  # resumed-1: the rejected one's
    assert (trained / "results-1.json").read_text() == earlier  # kept, not overwritten
    resumed = json.loads((trained / "results.json").read_text())
    assert resumed["epochs"] == 2 and resumed["history"]["epoch"] == [0, 1]
    assert f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}" in resumed["overrides"]
    assert (trained / "csv" / "metrics.csv").is_file() and (trained / "csv" / "version_1" / "metrics.csv").is_file()
    assert "exists and is not empty" not in result.stderr
