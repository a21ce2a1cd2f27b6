"""One-line errors where a traceback (or a silent no-op) used to be: damaged data files, missing checkpoints, run
folders that cannot be made or already hold a run, and `+key=value` for a key nothing reads."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import QUICK, REPO, located, run_cli, run_dir_of
from rrn_app.command_line import preflight
from rrn_app.option_checks import UserError

TINY = ["task=sst", "cell=lstm", "cell.hidden_size=8", "task.data.train_on=sentences", *QUICK, "logger=csv"]


def one_error_line(result, program: str = "rrn-train") -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"{program}: error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return lines[0]


def test_garbage_bytes_in_an_atis_line_name_the_file_and_line(data_root, tmp_path):
    from rrn_app.data.atis import ATISDataModule

    shutil.copytree(located(data_root, "atis") / "atis", tmp_path / "atis")
    path = tmp_path / "atis" / "train" / "seq.in"
    lines = path.read_bytes().split(b"\n")
    lines[2] = b"what flights \xff\xfe leave"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(UserError) as raised:
        ATISDataModule(root=str(tmp_path), cache_dir=str(tmp_path / "cache")).setup("fit")
    message = str(raised.value)
    assert message.startswith(f"{path} line 3: not UTF-8 text") and "rrn-data get atis" in message
    assert "\n" not in message


def test_an_empty_sst_dev_file_names_dev_not_train(data_root, tmp_path):
    from rrn_app.data.sst import SSTDataModule

    source = located(data_root, "sst") / "sst"
    (tmp_path / "sst").mkdir()
    for name in ("train.txt", "test.txt"):
        packed = source / f"{name}.gz"
        if packed.is_file():
            with gzip.open(packed, "rb") as raw, open(tmp_path / "sst" / name, "wb") as out:
                shutil.copyfileobj(raw, out)
        else:
            shutil.copy(source / name, tmp_path / "sst" / name)
    (tmp_path / "sst" / "dev.txt").write_text("\n\n")
    with pytest.raises(UserError) as raised:
        SSTDataModule(root=str(tmp_path), train_on="sentences", cache_dir=str(tmp_path / "cache")).setup("fit")
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'sst' / 'dev.txt'} holds no examples") and "rrn-data get sst" in message
    assert "train" not in message.replace("train.txt", "")


@pytest.mark.slow
def test_ckpt_path_to_a_missing_checkpoint_is_one_line_and_leaves_no_folder(tmp_path):
    missing = tmp_path / "runs" / "old" / "checkpoints" / "last.ckpt"
    result = run_cli("rrn-train", *TINY, f"ckpt_path={missing}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    line = one_error_line(result)
    assert f"checkpoint not found: {missing}" in line
    assert not (tmp_path / "run").exists()
    # truncated, foreign and text files given to ckpt_path=: tests/test_checkpoints.py
    # ::test_a_truncated_or_foreign_checkpoint_is_one_line_naming_it


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder this process cannot write in: chmod 555, or for root (who ignores modes) a read-only tmpfs."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"root cannot be refused by modes, and a read-only tmpfs cannot be mounted: {mounted.stderr}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["proc", "file_in_the_way", "no_permission", "multirun_proc"])
def test_a_run_folder_that_cannot_be_made_is_one_line_naming_it(tmp_path, read_only_folder, case):
    (tmp_path / "a_file").write_text("in the way")
    folder = {"proc": Path("/proc/rrn-run"), "file_in_the_way": tmp_path / "a_file" / "run",
              "no_permission": read_only_folder / "run", "multirun_proc": Path("/proc/rrn-sweep")}[case]
    key = "hydra.sweep.dir" if case.startswith("multirun") else "hydra.run.dir"
    mode = ["-m"] if case.startswith("multirun") else []
    result = run_cli("rrn-train", *mode, *TINY, f"{key}={folder}", cwd=tmp_path)
    line = one_error_line(result)
    assert f"cannot make the run folder {folder}" in line and f"{key}=" in line
    assert not folder.exists()


@pytest.mark.slow
def test_a_rerun_into_a_folder_holding_a_run_is_refused_and_keeps_every_file(data_root, tmp_path):
    run = tmp_path / "run"
    first = run_dir_of(run_cli("rrn-train", *TINY, f"data.root={data_root}", f"hydra.run.dir={run}", cwd=tmp_path))
    before = {path: path.read_bytes() for path in first.rglob("*") if path.is_file()}
    assert {"last.ckpt", "results.json", "metrics.csv", "config.yaml"} <= {path.name for path in before}
    again = run_cli("rrn-train", *TINY, "seed=2", f"data.root={data_root}", f"hydra.run.dir={run}", cwd=tmp_path)
    line = one_error_line(again)
    assert f"the run folder {run} already holds checkpoints" in line
    assert f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}" in line
    after = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    assert after == before  # .hydra/, metrics, results.json and checkpoints untouched


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # preflight checks the default runs/ folder under the current one


@pytest.mark.parametrize("argument, meant", [("+lr=0.1", "task.model.lr=0.1"), ("+seeed=3", "seed=3"),
                                             ("+data.foo=1", None), ("+task.learning_rate=0.1", None)])
def test_adding_a_key_that_nothing_reads_is_an_error(in_repo, argument, meant):
    with pytest.raises(UserError) as raised:
        preflight([argument])
    message = str(raised.value)
    key = argument[1:].partition("=")[0]
    assert message.startswith(f"{argument}: no part of rrn reads {key}, so it would change nothing.")
    if meant:
        assert f"Did you mean {meant}?" in message


@pytest.mark.parametrize("argument", ["+test_after_fit=false", "+callbacks.swa._target_=lightning.pytorch."
                                      "callbacks.StochasticWeightAveraging", "+trainer.detect_anomaly=true"])
def test_adding_a_key_that_a_component_reads_is_accepted(in_repo, argument):
    assert argument in preflight([argument])


def test_a_key_without_plus_names_the_key_it_probably_meant(in_repo):
    with pytest.raises(UserError, match="unknown option lr"):
        preflight(["lr=0.1"])


STRICT_CELL = """
    from torch import nn
    from rrn_app import option_checks
    from rrn_app.cells import register_cell

    @register_cell("strict")
    class Strict(nn.Module):
        '''A plugin cell that checks its own option and refuses inputs longer than `max_steps` while training.'''

        def __init__(self, input_size, hidden_size, num_layers=1, dropout=0.0, bidirectional=False,
                     scale: float = 1.0, max_steps: int = 1000):
            super().__init__()
            self.scale = option_checks.positive_float("scale", scale)
            self.max_steps = max_steps
            self.rnn = nn.RNN(input_size, hidden_size, batch_first=True)
            self.output_size, self.bidirectional = hidden_size, False

        def forward(self, x, lengths=None, state=None):
            if x.shape[1] > self.max_steps:
                raise option_checks.UserError(f"strict: {x.shape[1]} steps is more than cell.max_steps={self.max_steps}")
            outputs, state = self.rnn(x, state)
            return outputs * self.scale, state
"""


@pytest.mark.slow
@pytest.mark.parametrize("option, expected", [
    # the cell's constructor rejects the value: the early check names the full key
    ("cell.scale=-2.0", "rrn-train: error: cell.scale=-2.0 is not allowed"),
    # a UserError raised inside train(), in the middle of the first training step
    ("cell.max_steps=1", "rrn-train: error: strict: "),
])
def test_a_user_error_from_a_cell_is_one_line_and_exit_2(tmp_path, data_root, quick, option, expected):
    from helpers import make_plugin

    make_plugin(tmp_path, "rrn-strict", "rrn_strict", STRICT_CELL, {"strict": "rrn_strict"})
    result = run_cli("rrn-train", "task=sst", "cell=strict", "cell.hidden_size=8", "task.data.train_on=sentences",
                     f"data.root={data_root}", *quick, option, f"hydra.run.dir={tmp_path / 'run'}",
                     env={"PYTHONPATH": str(tmp_path)}, cwd=tmp_path, timeout=300)
    assert one_error_line(result).startswith(expected), result.stderr[-2000:]
