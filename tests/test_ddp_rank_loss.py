"""DDP rank loss: a real two-process CPU run (gloo) whose rank 1, or rank 0, is killed with SIGKILL once training
has written a checkpoint ends within seconds (not at gloo's 30-minute timeout), non-zero, with one line naming the
rank that died and the intact checkpoint to resume from, and leaves no process running (rrn_app/ddp.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rrn_app.checkpoints import read_checkpoint

RUN = ["task=sst", "cell=lstm", "cell.hidden_size=16", "threads=1", "logger=none", "trainer.accelerator=cpu",
       "trainer.devices=2", "trainer.strategy=ddp", "trainer.enable_progress_bar=false",
       "trainer.limit_train_batches=200", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
       "trainer.max_epochs=50"]  # far longer than the test waits: the run only ends because a rank died
STARTED_WITHIN = 240  # seconds for both processes to start and write the first epoch's checkpoint
ENDS_WITHIN = 60


def children(pid: int) -> list[int]:
    """The processes `pid` started (Lightning's launcher starts rank 1 as a child of the rrn-train process)."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the ranks' processes through /proc")
@pytest.mark.parametrize("dead_rank", [1, 0])
def test_a_ddp_run_whose_rank_is_killed_ends_in_seconds_with_one_line_naming_it(dead_rank, data_root, tmp_path):
    run = tmp_path / "run"
    executable = Path(sys.executable).with_name("rrn-train")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen([str(executable), *RUN, f"data.root={data_root}", f"hydra.run.dir={run}"], cwd=tmp_path,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ranks: list[int] = []
    try:
        deadline = time.monotonic() + STARTED_WITHIN
        while not (run / "checkpoints" / "last.ckpt").is_file():  # training runs on both ranks
            assert job.poll() is None, job.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no checkpoint written in time"
            time.sleep(0.5)
        ranks = [job.pid, *children(job.pid)]
        assert len(ranks) == 2, ranks

        os.kill(ranks[dead_rank], signal.SIGKILL)
        killed = time.monotonic()
        _, stderr = job.communicate(timeout=ENDS_WITHIN)  # ends once every rank has closed stderr
        took = time.monotonic() - killed
    finally:
        for pid in [job.pid, *ranks]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        job.wait(timeout=10)

    assert took < ENDS_WITHIN
    assert job.returncode != 0
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("rrn-train: error:")]
    assert len(errors) == 1, lines[-30:]
    assert errors[0] in lines[-3:], lines[-30:]
    assert f"DDP rank {dead_rank} (PID {ranks[dead_rank]})" in errors[0]
    assert "Traceback" not in stderr, lines[-30:]
    last = run / "checkpoints" / "last.ckpt"
    assert f"ckpt_path={last.resolve()}" in errors[0]
    assert read_checkpoint(last)["state_dict"]  # the last good checkpoint loads
    time.sleep(1)
    assert not [pid for pid in ranks if alive(pid)]  # no rank left running
