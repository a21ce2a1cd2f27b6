"""Shared fixtures. Data: RRN_DATA_ROOT's full datasets if set (CI), else small real samples (tests/fixtures/)
plus the copies embedded in the package; never a skip for lack of data. Tests use one torch thread."""

from __future__ import annotations

import gzip
import os
import shutil
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


FIXTURES = REPO / "tests" / "fixtures"
FULL_DATA = os.environ.get("RRN_DATA_ROOT")   # a full data root (sst/, atis/, imdb/, ...); CI sets it
NEEDS_FULL_DATA = "needs the full data (RRN_DATA_ROOT)"


def assemble_fixture_root(target: Path) -> Path:
    """A data root made of tests/fixtures/: ATIS, IMDB, PTB characters and three music pickles (expanded from
    .pickle.gz). SST, GloVe, Tiny Shakespeare and JSB Chorales are absent, so they come from the embedded copies."""
    for name in ("atis", "imdb", "ptb_char"):
        shutil.copytree(FIXTURES / name, target / name)
    (target / "polyphonic").mkdir()
    for packed in sorted((FIXTURES / "polyphonic").glob("*.pickle.gz")):
        with gzip.open(packed, "rb") as source, open(target / "polyphonic" / packed.stem, "wb") as out:
            shutil.copyfileobj(source, out)
    return target


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """The data root the tests train on: RRN_DATA_ROOT (full data) if set, else one assembled from the fixtures."""
    if FULL_DATA:
        root = Path(FULL_DATA).resolve()
        if not (root / "sst" / "train.txt").is_file():
            pytest.fail(f"RRN_DATA_ROOT={FULL_DATA} holds no sst/train.txt; point it at a full data root or unset it")
        return root
    return assemble_fixture_root(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def full_data(data_root) -> Path:
    """The data root, for the checks of the full datasets' published counts (skipped on the fixtures)."""
    if not FULL_DATA:
        pytest.skip(NEEDS_FULL_DATA)
    return data_root


def located(data_root: Path, name: str) -> Path:
    """The root dataset `name` is read from: data_root, or the expanded embedded copy (rrn_app.data.locate)."""
    from rrn_app.data.locate import dataset_root

    return dataset_root(data_root, name, announce=False)


@pytest.fixture(scope="session")
def glove_path(data_root) -> Path:
    """The GloVe file the SST task reads: the full 50-d file, or the embedded rows of SST's words."""
    return located(data_root, "glove") / "glove" / "glove.6B.50d.filtered.txt.gz"


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

