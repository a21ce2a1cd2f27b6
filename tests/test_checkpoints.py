"""Checkpoints: every one rrn writes loads under weights_only=True and rrn's allow-list; a crafted, truncated or
foreign one is refused in one line by every entry point, running nothing; saves are atomic (kills, full disks)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import QUICK, REPO, run_cli, run_dir_of
from rrn_app.checkpoints import (ALLOWED_GLOBALS, AtomicCheckpointIO, read_checkpoint, remove_stale_temporaries,
                                 write_atomically)
from rrn_app.train import train
from rrn_app.option_checks import UserError

TINY = [*QUICK, "cell.hidden_size=8"]
TASKS = {"sst": ["task.data.train_on=sentences"], "atis": [], "imdb": ["task.data.validation_size=40"],
         "char_lm": ["task.data.seq_length=20"], "music": ["task.model.sample_length=8"]}


def allowed_names() -> set[str]:
    return {f"{item.__module__}.{item.__qualname__}" for item in ALLOWED_GLOBALS}


def error_lines(result, program: str) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith(f"{program}: error:")]


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_checkpoint_rrn_writes_loads_under_the_allow_list(compose_config, data_root, task):
    run_dir = train(compose_config(f"task={task}", "cell=lstm", f"data.root={data_root}", *TINY, *TASKS[task]))
    written = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    assert {path.name for path in written} >= {"last.ckpt", "best-epoch00.ckpt"}
    for path in written:
        # nothing beyond what weights_only admits by itself, plus the allow-list
        assert set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) <= allowed_names(), path
        checkpoint = read_checkpoint(path)
        assert checkpoint["state_dict"] and checkpoint["rrn_config"]["task"]["name"] == task


class Payload:
    """Unpickling runs a shell command that creates a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def crafted(tmp_path) -> tuple[Path, Path]:
    """A checkpoint shaped like rrn's (a generative task's module, weights, loops) holding the payload."""
    marker = tmp_path / "marker"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "loops": {}, "pytorch-lightning_version": "2.6.6",
                "rrn_module": "rrn_app.tasks.language_model.CharLanguageModel", "payload": Payload(marker)}, path)
    return path, marker


@pytest.mark.slow
@pytest.mark.parametrize("program, argument", [("rrn-generate", "ckpt"), ("rrn-eval", "ckpt"),
                                               ("rrn-train", "ckpt_path")])
def test_a_crafted_checkpoint_is_refused_in_one_line_and_runs_nothing(crafted, tmp_path, program, argument):
    path, marker = crafted
    extra = ["threads=1", "logger=none", f"hydra.run.dir={tmp_path / 'run'}"] if program == "rrn-train" else []
    result = run_cli(program, f"{argument}={path}", *extra, cwd=tmp_path, timeout=300)
    assert result.returncode != 0
    lines = error_lines(result, program)
    assert len(lines) == 1 and str(path) in lines[0], result.stderr
    assert "posix.system" in lines[0] and "trust_checkpoint=true" in lines[0]
    assert "Traceback" not in result.stderr
    assert not marker.exists()
    assert not (tmp_path / "run").exists()  # rrn-train: refused before any run folder was kept


def test_trust_checkpoint_loads_in_full_on_purpose_only(crafted):
    path, marker = crafted
    with pytest.raises(UserError, match="refused to load posix.system"):
        read_checkpoint(path)
    assert not marker.exists()
    read_checkpoint(path, trust=True)  # what trust_checkpoint=true does: the full unpickler, payload included
    assert marker.exists()


@pytest.fixture(scope="module")
def sst_run(data_root, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("checkpoints") / "run"
    return run_dir_of(run_cli("rrn-train", "task=sst", "cell=lstm", *TINY, f"data.root={data_root}",
                              f"hydra.run.dir={folder}", timeout=300))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["truncated", "foreign", "text"])
@pytest.mark.parametrize("program, argument", [("rrn-generate", "ckpt"), ("rrn-eval", "ckpt"),
                                               ("rrn-train", "ckpt_path")])
def test_a_truncated_or_foreign_checkpoint_is_one_line_naming_it(sst_run, tmp_path, kind, program, argument):
    path = tmp_path / f"{kind}.ckpt"
    real = (sst_run / "checkpoints" / "last.ckpt").read_bytes()
    if kind == "truncated":
        path.write_bytes(real[: len(real) * 9 // 10])
    elif kind == "foreign":
        torch.save({"weights": torch.ones(3)}, path)  # a torch file, but no checkpoint of rrn-train
    else:
        path.write_text("not a checkpoint\n")
    extra = ["threads=1", "logger=none", f"hydra.run.dir={tmp_path / 'run'}"] if program == "rrn-train" else []
    result = run_cli(program, f"{argument}={path}", *extra, cwd=tmp_path, timeout=300)
    assert result.returncode == 2
    lines = error_lines(result, program)
    assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in result.stderr, result.stderr


@pytest.mark.slow
def test_stale_temporary_files_are_removed_when_the_run_resumes(sst_run, data_root):
    stale = sst_run / "checkpoints" / f".last.ckpt.tmp-{os.getpid()}-0badf00d"
    stale.write_bytes(b"half a checkpoint")
    before = read_checkpoint(sst_run / "checkpoints" / "last.ckpt")["epoch"]
    result = run_cli("rrn-train", "task=sst", "cell=lstm", *TINY, "trainer.max_epochs=2", f"data.root={data_root}",
                     f"ckpt_path={sst_run / 'checkpoints' / 'last.ckpt'}", timeout=300)
    assert run_dir_of(result) == sst_run
    assert not stale.exists()
    assert read_checkpoint(sst_run / "checkpoints" / "last.ckpt")["epoch"] > before  # the resumed epoch saved


def test_an_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"n": torch.arange(3)}, target)
    AtomicCheckpointIO().save_checkpoint({"n": torch.arange(5)}, target)
    assert read_checkpoint(target)["n"].tolist() == [0, 1, 2, 3, 4]
    assert [path.name for path in tmp_path.iterdir()] == ["last.ckpt"]


SAVER = """
import sys, torch
from rrn_app.checkpoints import AtomicCheckpointIO
io, path = AtomicCheckpointIO(), sys.argv[1]
for number in range(100000):
    io.save_checkpoint({"number": number, "weights": torch.full((4_000_000,), float(number))}, path)
    print(number, flush=True)
"""


@pytest.mark.slow
def test_a_save_killed_at_any_moment_leaves_the_last_good_checkpoint(tmp_path):
    target = tmp_path / "checkpoints" / "last.ckpt"
    stale_seen = []
    for attempt in range(3):
        process = subprocess.Popen([sys.executable, "-c", SAVER, str(target)], cwd=REPO, stdout=subprocess.PIPE,
                                   text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            for _ in range(attempt + 1):  # a few complete saves, more each attempt
                assert process.stdout.readline().strip(), "the saver stopped before its first save"
            deadline = time.time() + 60
            while not any(path.name.startswith(".last.ckpt.tmp-") for path in target.parent.iterdir()):
                assert time.time() < deadline, "no save in progress seen"
                time.sleep(0.0005)
            os.kill(process.pid, signal.SIGKILL)  # mid-save: its temporary file is there
        finally:
            process.kill()
            process.wait()
        checkpoint = read_checkpoint(target)
        assert checkpoint["number"] >= attempt
        assert torch.equal(checkpoint["weights"], torch.full((4_000_000,), float(checkpoint["number"])))
        stale_seen += remove_stale_temporaries(target.parent)  # what rrn-train does at its next start
        assert [path.name for path in target.parent.iterdir()] == ["last.ckpt"]
    assert stale_seen  # the kills did hit saves in progress, which left their temporary files


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs mounted for the test (skipped where this process may not mount one)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here: the full-disk test needs a small tmpfs")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_fails_the_save_in_one_line_and_keeps_the_previous_checkpoint(small_disk):
    target = small_disk / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"number": 1, "weights": torch.ones(1000)}, target)
    with pytest.raises(UserError) as raised:
        AtomicCheckpointIO().save_checkpoint({"number": 2, "weights": torch.ones(1_000_000)}, target)  # 4 MB
    message = str(raised.value)
    assert "\n" not in message and str(target) in message and "no space left" in message
    assert "previous one is intact" in message
    checkpoint = read_checkpoint(target)
    assert checkpoint["number"] == 1 and torch.equal(checkpoint["weights"], torch.ones(1000))
    assert [path.name for path in target.parent.iterdir()] == ["last.ckpt"]


def test_write_atomically_into_a_missing_folder_that_cannot_be_made(tmp_path):
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(UserError, match=f"could not write checkpoint {tmp_path / 'file' / 'x.ckpt'}"):
        write_atomically(b"data", tmp_path / "file" / "x.ckpt")


@pytest.mark.slow
def test_rrn_train_on_a_full_disk_is_one_line_naming_the_checkpoint(small_disk, data_root, tmp_path):
    run = small_disk / "run"
    result = run_cli("rrn-train", "task=sst", "cell=lstm", *TINY, f"data.root={data_root}", f"hydra.run.dir={run}",
                     cwd=tmp_path, timeout=300)
    assert result.returncode == 2
    lines = error_lines(result, "rrn-train")
    assert len(lines) == 1 and "no space left" in lines[0] and str(run / "checkpoints") in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    leftovers = list((run / "checkpoints").iterdir()) if (run / "checkpoints").is_dir() else []
    assert leftovers == []  # no truncated checkpoint, no temporary file



def test_a_full_disk_while_writing_results_is_one_line_naming_the_folder(small_disk):
    from rrn_app.run_folders import disk_full_message
    from rrn_app.train import write_results

    (small_disk / "filler").write_bytes(b"\0" * (2 * 1024 * 1024 - 8192))  # leave less than the results need
    with pytest.raises(OSError) as raised:
        write_results(small_disk, {"history": ["x" * 64] * 1000})
    message = disk_full_message(raised.value, small_disk)
    assert message is not None and message.startswith(f"no space left on the device writing {small_disk}")
    assert disk_full_message(FileNotFoundError(2, "No such file"), small_disk) is None  # other errors stay theirs
