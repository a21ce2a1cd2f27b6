"""Shared fixtures. The real datasets are read from RRN_DATA_ROOT (CI: ../shared/data); tests use one torch thread."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the rrn-train processes the tests start
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.pop("WANDB_API_KEY", None)

import lightning as L  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    return Path(os.environ.get("RRN_DATA_ROOT", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if not (root / "sst" / "train.txt").is_file():
        message = f"real data not found under {root}; set RRN_DATA_ROOT to the folder holding sst/, atis/, ..."
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must never skip the real-data tests silently
        pytest.skip(message)
    return root


@pytest.fixture(scope="session")
def glove_path(data_root) -> Path:
    return data_root / "glove" / "glove.6B.50d.filtered.txt.gz"


def run_cli(*arguments: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 600):
    """Run an installed console script (rrn-train, rrn-cells) the way a user would."""
    executable = Path(sys.executable).with_name(arguments[0])
    command = [str(executable) if executable.exists() else arguments[0], *arguments[1:]]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout)


def run_dir_of(result) -> Path:
    """The run folder an rrn-train call printed last, after checking that it succeeded."""
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def compose_config(tmp_path):
    """Compose the rrn-train config in-process, as the command line would, with the run dir in tmp_path."""
    from hydra import compose, initialize_config_dir

    from rrn_app.config import config_dir, register_plugin_cells

    def compose_with(*overrides: str):
        register_plugin_cells()
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return compose(config_name="config", overrides=[f"run_dir={tmp_path / 'run'}", *overrides])

    return compose_with


class BatchRecorder(L.LightningModule):
    """Records the batches of every training epoch and how often validation ran; learns nothing."""

    def __init__(self, train_loader=None):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.make_loader, self.epochs, self.validations = train_loader, [], 0

    def train_dataloader(self):  # without a datamodule
        return self.make_loader()

    def on_train_epoch_start(self):
        self.epochs.append([])

    def training_step(self, batch, batch_index):
        self.epochs[-1].append(batch.tolist() if torch.is_tensor(batch) else None)  # the indices, or a mark
        return self.weight.sum() * 0.0

    def validation_step(self, batch, batch_index):
        pass

    def on_validation_epoch_end(self):
        self.validations += 1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def run_epochs(module, epochs, tmp_path, datamodule=None, **trainer_options):
    """`module` trained for `epochs` by a plain Lightning Trainer (what the data's samplers see across epochs)."""
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, use_distributed_sampler=False, num_sanity_val_steps=0,
                        default_root_dir=tmp_path, **trainer_options)
    trainer.fit(module, datamodule=datamodule)
    return module

