"""Divergence stops loudly: one message, exit 2, strict results.json, no checkpoint with non-finite weights; bad steps
can be skipped (callbacks.divergence.patience); the summary table keeps its columns for any magnitude."""

from __future__ import annotations

import json
import math

import lightning as L
import pytest
import torch

from helpers import QUICK, run_cli
from rrn_app.divergence import Diverged, DivergenceGuard
from rrn_app.train import finite_or_null, metrics_table, write_results
from rrn_app.option_checks import UserError

TINY = ["task=sst", "cell=lstm", "cell.hidden_size=8", "task.data.train_on=sentences", *QUICK,
        "trainer.limit_train_batches=4", "trainer.max_epochs=2"]


def strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.slow
def test_a_diverging_run_stops_with_one_message_exit_2_and_strict_results(data_root, tmp_path):
    run = tmp_path / "run"
    result = run_cli("rrn-train", *TINY, "task.model.lr=1e38", f"data.root={data_root}", f"hydra.run.dir={run}",
                     cwd=tmp_path, timeout=300)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("rrn-train: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    message = errors[0]
    assert "diverged at step" in message and "(epoch 0)" in message and "last finite training loss was" in message
    assert "task.model.lr" in message and "trainer.gradient_clip_val" in message
    results = strict_json((run / "results.json").read_text())
    assert results["status"] == "diverged" and results["metrics"] == {}
    assert results["diverged"]["epoch"] == 0 and isinstance(results["diverged"]["step"], int)
    assert math.isfinite(results["diverged"]["last_finite_loss"])
    for path in run.rglob("*.ckpt"):  # whatever was saved before holds finite weights only
        state = torch.load(path, weights_only=True)["state_dict"]
        assert all(torch.isfinite(tensor).all() for tensor in state.values() if tensor.is_floating_point()), path


class Scripted(L.LightningModule):
    """One weight; the loss of step i is `losses[i]` times the weight (NaN or inf where scripted)."""

    def __init__(self, losses):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.losses, self.weights_seen = losses, []

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.arange(len(self.losses)), batch_size=1)

    def training_step(self, batch, index):
        self.weights_seen.append(float(self.weight.detach()))
        return self.weight.sum() * float(self.losses[index])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(module, guard, tmp_path):
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[guard], default_root_dir=tmp_path)
    trainer.fit(module)
    return trainer


def test_the_first_non_finite_loss_stops_training_with_its_step(tmp_path):
    module = Scripted([1.0, 2.0, float("nan"), 1.0])
    with pytest.raises(Diverged) as raised:
        fit(module, DivergenceGuard(), tmp_path)
    assert raised.value.details == {"reason": "non-finite gradient", "step": 2, "epoch": 0,
                                    "last_finite_loss": pytest.approx(1.8), "skipped_steps": 0}  # 2.0 * 0.9
    assert len(module.weights_seen) == 3  # nothing ran after it
    assert math.isfinite(float(module.weight))  # the bad update never reached the weights


def test_patience_skips_bad_steps_in_a_row_without_moving_the_weights(tmp_path):
    module = Scripted([1.0, float("nan"), float("inf"), 1.0, float("nan"), 1.0])
    guard = DivergenceGuard(patience=2)
    fit(module, guard, tmp_path)
    seen = module.weights_seen
    assert seen[1] == seen[2] == seen[3]  # steps 1 and 2 skipped: no update
    assert seen[4] == seen[5] and seen[3] != seen[4]  # step 3 updated, step 4 skipped
    assert guard.skipped == 3 and guard.last_finite_loss == pytest.approx(0.8)  # step 5: 0.8 * 1.0
    with pytest.raises(Diverged, match="at step 3"):  # a third bad step in a row is one too many
        fit(Scripted([1.0, float("nan"), float("nan"), float("nan")]), DivergenceGuard(patience=2), tmp_path)


def test_a_checkpoint_with_non_finite_weights_is_never_written(tmp_path):
    module = Scripted([1.0])
    trainer = fit(module, DivergenceGuard(), tmp_path)
    with torch.no_grad():
        module.weight.fill_(float("inf"))
    with pytest.raises(Diverged, match="non-finite weights"):
        trainer.save_checkpoint(tmp_path / "last.ckpt")
    assert not (tmp_path / "last.ckpt").exists()


@pytest.mark.parametrize("patience", [-1, 1.5, True])
def test_patience_must_be_a_whole_number(patience):
    with pytest.raises(UserError, match="patience"):
        DivergenceGuard(patience=patience)


def test_results_json_is_strict_with_null_for_non_finite_values(tmp_path):
    write_results(tmp_path, {"metrics": {"val/loss": float("nan"), "val/acc": 0.5}, "history": [float("inf")]})
    results = strict_json((tmp_path / "results.json").read_text())
    assert results == {"metrics": {"val/loss": None, "val/acc": 0.5}, "history": [None]}
    assert finite_or_null((1.0, -math.inf)) == [1.0, None]


def test_the_summary_table_keeps_its_columns_for_any_magnitude():
    metrics = {"val/loss": 1.35e4, "test/loss": 1e38, "val/acc": float("nan"), "test/acc": 0.4217,
               "val/bpc": -123456.789, "test/bpc": 1e-7, "val/ppl": float("inf")}
    lines = metrics_table(metrics).splitlines()
    assert len({len(line.rstrip()) for line in lines if not line.endswith(" ")}) == 1  # one width for full rows
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["loss"] == ["13500.0000", "1.0000e+38"]
    assert rows["acc"] == ["nan", "0.4217"]
    assert rows["bpc"] == ["-1.2346e+05", "1.0000e-07"]
    assert rows["ppl"] == ["inf"]
