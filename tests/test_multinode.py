"""Multi-node DDP: rrn-train under `torchrun --nnodes=2`, here two "nodes" on one machine (gloo, one process each).

The ranks agree on one run folder (rank 0's), read disjoint batches, write one results.json, and their metrics
are those of one process over the same global batches (batches 0 and 1, then 2 and 3, ... as rank 0 and rank 1
read them = one process reading them in order with `accumulate_grad_batches=2`): DDP averages the two ranks'
gradients, accumulation averages the two batches' gradients, and the validation and test metrics are
torchmetrics states summed over the ranks. Dropout is off, so nothing random differs between the two runs.
Tolerance 1e-4 (absolute, on losses near 1.6 and accuracies): the sums run in another order (gloo's all-reduce
against one process's accumulation), float32 rounding, nothing more.

A rank killed mid-training ends the job: the surviving rank prints one `rrn-train: error:` line and exits
within seconds, its launcher with it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest

from helpers import REPO, run_cli

TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
# sst / lstm, tiny: dropout off (no randomness between the runs), one layer of 8, batches of 16
TINY = ["task=sst", "cell=lstm", "cell.hidden_size=8", "task.model.dropout=0.0", "task.data.batch_size=16",
        "threads=1", "logger=none", "trainer.accelerator=cpu", "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false", f"data.root={REPO / 'data'}"]
SEEN = ["+callbacks.seen._target_=test_multinode.SeenBatches"]
TOLERANCE = 1e-4



class SeenBatches(L.Callback):
    """Writes `<run dir>/seen/rank<R>.jsonl`: each training batch's sequences (their token ids) and this PID."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_index):
        folder = Path(trainer.default_root_dir) / "seen"
        folder.mkdir(exist_ok=True)
        sequences = [row[:length].tolist() for row, length in zip(batch["ids"], batch["lengths"])]
        with (folder / f"rank{trainer.global_rank}.jsonl").open("a") as file:
            file.write(json.dumps({"pid": os.getpid(), "sequences": sequences}) + "\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment() -> dict:
    # no empty PYTHONPATH entry: it would put the working directory (the repository, whose rrn_app lacks the
    # rrn_app.conf that installing maps from conf/) before the installed package
    path = os.pathsep.join(part for part in (str(REPO / "tests"), os.environ.get("PYTHONPATH", "")) if part)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, "HF_DATASETS_OFFLINE": "1",
            "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}


def start_nodes(cwd: Path, *overrides: str) -> list[subprocess.Popen]:
    """Node 0 and node 1: `torchrun --nnodes=2 --nproc_per_node=1 --node_rank=N` of rrn-train, in `cwd`; their
    output goes to cwd/node<N>.out and .err (a pipe nobody reads would stall a long run)."""
    port, rrn_train = free_port(), str(Path(sys.executable).with_name("rrn-train"))
    nodes = []
    for node in (0, 1):
        with open(cwd / f"node{node}.out", "w") as out, open(cwd / f"node{node}.err", "w") as err:
            nodes.append(subprocess.Popen(
                [TORCHRUN, "--nnodes=2", "--nproc_per_node=1", f"--node_rank={node}", "--master_addr=127.0.0.1",
                 f"--master_port={port}", rrn_train, *TINY, "trainer.num_nodes=2", "trainer.devices=1",
                 "trainer.strategy=ddp", *overrides], cwd=cwd, env=environment(), stdout=out, stderr=err))
    return nodes


def finish(nodes: list[subprocess.Popen], cwd: Path, timeout: float = 400) -> list[tuple[int, str, str]]:
    """Each node's (exit status, stdout, stderr) once both have ended (both killed after `timeout` s)."""
    deadline = time.monotonic() + timeout
    for node in nodes:
        try:
            node.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for other in nodes:
                other.kill()
            raise
    return [(node.returncode, (cwd / f"node{number}.out").read_text(), (cwd / f"node{number}.err").read_text())
            for number, node in enumerate(nodes)]


def seen(run_dir: Path, rank: int) -> list[tuple]:
    lines = (run_dir / "seen" / f"rank{rank}.jsonl").read_text().splitlines()
    return [tuple(map(tuple, json.loads(line)["sequences"])) for line in lines]


@pytest.mark.slow
def test_two_nodes_share_one_run_folder_read_disjoint_data_and_match_one_process(tmp_path):
    budget = ["trainer.limit_train_batches=3", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2"]
    (node0, out0, err0), (node1, out1, err1) = finish(start_nodes(tmp_path, *SEEN, *budget), tmp_path)
    assert node0 == 0 and node1 == 0, (err0[-3000:], err1[-3000:])
    folders = list((tmp_path / "runs" / "sst" / "lstm").iterdir())
    assert len(folders) == 1, folders  # rank 0's; the folder Hydra made for rank 1 was removed
    run_dir = folders[0]
    assert out0.strip().splitlines()[-1] == out1.strip().splitlines()[-1] == str(run_dir)  # both ranks name it
    assert [path.name for path in run_dir.rglob("results*.json")] == ["results.json"]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()

    rank0, rank1 = seen(run_dir, 0), seen(run_dir, 1)
    assert len(rank0) == len(rank1) == 3
    sequences0 = {sequence for batch in rank0 for sequence in batch}
    sequences1 = {sequence for batch in rank1 for sequence in batch}
    assert sequences0 and sequences1 and not sequences0 & sequences1  # disjoint data

    single = run_cli("rrn-train", *TINY, *SEEN, "trainer.limit_train_batches=6", "+trainer.accumulate_grad_batches=2",
                     "trainer.limit_val_batches=4", "trainer.limit_test_batches=4", f"hydra.run.dir={tmp_path / 'one'}",
                     env={"PYTHONPATH": environment()["PYTHONPATH"], "OMP_NUM_THREADS": "1"}, timeout=400)
    assert single.returncode == 0, single.stderr[-3000:]
    alone = seen(tmp_path / "one", 0)
    assert alone[0::2] == rank0 and alone[1::2] == rank1  # the same global batches, split between the ranks

    two = json.loads((run_dir / "results.json").read_text())["metrics"]
    one = json.loads((tmp_path / "one" / "results.json").read_text())["metrics"]
    assert set(two) == set(one) and {"val/loss", "test/loss", "val/acc", "test/acc"} <= set(two)
    for name in one:
        assert two[name] == pytest.approx(one[name], abs=TOLERANCE), name


@pytest.mark.slow
@pytest.mark.parametrize("killed", [1, 0])
def test_a_killed_rank_ends_the_job_within_seconds_with_one_line(tmp_path, killed):
    nodes = start_nodes(tmp_path, *SEEN, "trainer.max_epochs=50", "trainer.limit_val_batches=2",
                        "hydra.run.dir=run")
    log = tmp_path / "run" / "seen" / f"rank{killed}.jsonl"
    deadline = time.monotonic() + 300
    while not (log.is_file() and len(log.read_text().splitlines()) >= 3):  # the rank to kill is training
        if time.monotonic() > deadline or any(node.poll() is not None for node in nodes):
            for node in nodes:
                node.kill()
            pytest.fail("training never started: " + (tmp_path / "node0.err").read_text()[-2000:]
                        + (tmp_path / "node1.err").read_text()[-2000:])
        time.sleep(0.2)
    os.kill(json.loads(log.read_text().splitlines()[0])["pid"], signal.SIGKILL)
    killed_at = time.monotonic()
    results = finish(nodes, tmp_path, timeout=120)
    assert time.monotonic() - killed_at < 30  # both launchers gone (a busy machine's seconds)
    assert all(code != 0 for code, _, _ in results)
    survivor = 1 - killed  # node N runs rank N
    lines = [line for line in results[survivor][2].splitlines() if line.startswith("rrn-train: error:")]
    assert len(lines) == 1, results[survivor][2][-3000:]
    assert f"DDP rank {survivor} lost the other ranks" in lines[0] and "Connection" in lines[0]
    assert "resume with: rrn-train ckpt_path=" in lines[0] or "no checkpoint had been written yet" in lines[0]
    assert "Traceback" not in results[survivor][2].split("rrn-train: error:")[0]  # nothing before the line


def test_a_launcher_that_started_another_number_of_processes_is_one_line_before_any_waiting():
    """trainer.num_nodes x trainer.devices against the ranks torchrun or SLURM started: unequal, the process group
    would wait for ranks that never come."""
    from lightning.fabric.plugins.environments import TorchElasticEnvironment

    from rrn_app.ddp import check_process_count
    from rrn_app.option_checks import UserError

    class Started(TorchElasticEnvironment):
        def world_size(self) -> int:
            return 4

    check_process_count({"num_nodes": 2, "devices": 2}, Started())
    check_process_count({"num_nodes": 2, "devices": "auto"}, Started())  # Lightning checks that one itself
    with pytest.raises(UserError, match=r"trainer.num_nodes=2 x trainer.devices=1 = 2 processes, but the launcher "
                                        r"\(torchrun\) started 4: make them equal \(torchrun: --nnodes and "):
        check_process_count({"num_nodes": 2, "devices": 1}, Started())
