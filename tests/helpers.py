"""What the tests share besides fixtures: where things are, running rrn's console scripts, the tiny-budget
overrides of a quick run, throwaway plugin packages, and a module that records what a Trainer feeds it.

Fixtures stay in conftest.py (which re-exports these names, so `from conftest import run_cli` still works)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning as L
import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
FULL_DATA = os.environ.get("RRN_DATA_ROOT")   # a full data root (sst/, atis/, imdb/, ...); CI sets it
NEEDS_FULL_DATA = "needs the full data (RRN_DATA_ROOT)"

# the smallest training run that still goes through fit, validate and test: one epoch of two batches each way,
# one thread, no logger, no progress bar (the `quick` fixture; add task=, cell=, data.root= and the rest)
QUICK = ["threads=1", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=2",
         "trainer.limit_test_batches=2", "trainer.enable_progress_bar=false", "logger=none"]


def run_cli(*arguments: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 600):
    """Run an installed console script (rrn-train, rrn-cells) the way a user would."""
    executable = Path(sys.executable).with_name(arguments[0])
    command = [str(executable) if executable.exists() else arguments[0], *arguments[1:]]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout)


def run_main(main, program: str, *arguments) -> subprocess.CompletedProcess:
    """A console script's `main()` run in this process as `program arguments...` (sys.argv set for it): its exit
    status, standard output and standard error, as run_cli gives them, without starting another Python."""
    out, err, saved = io.StringIO(), io.StringIO(), sys.argv
    sys.argv = [program, *map(str, arguments)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                status = 0
            except SystemExit as exit_:
                status = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    finally:
        sys.argv = saved
    return subprocess.CompletedProcess([program, *map(str, arguments)], status, out.getvalue(), err.getvalue())


def run_dir_of(result) -> Path:
    """The run folder an rrn-train call printed last, after checking that it succeeded."""
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(result.stdout.strip().splitlines()[-1])


def make_plugin(root, distribution: str, module: str, body: str, entry_points: dict[str, str]):
    """A throwaway installed package: its module and a dist-info with entry_points.txt on a sys.path folder."""
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{distribution.replace('-', '_')}-0.3.dist-info"  # the name as installers write it
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.3\n")
    lines = "\n".join(f"{name} = {value}" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[rrn_app.cells]\n{lines}\n")


def located(data_root: Path, name: str) -> Path:
    """The root dataset `name` is read from: data_root, or the expanded embedded copy (rrn_app.data.locate)."""
    from rrn_app.data.locate import dataset_root

    return dataset_root(data_root, name, announce=False)


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
