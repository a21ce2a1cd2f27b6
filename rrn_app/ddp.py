"""DDP rank loss: when one process of a multi-process run dies, the whole job ends within a second or two with
one line naming the rank that died, and a non-zero exit.

Without this, a rank killed with SIGKILL leaves the others to gloo: the survivor's next collective fails with a
"Connection reset by peer" traceback (or waits up to the process group's 30-minute timeout), and Lightning's
child-process observer, which looks every 5 seconds, SIGKILLs the launcher with a log line at best.

Two watchers, each a daemon thread polling a few times a second:
- in the launching process (rank 0), `watch_children` replaces Lightning's observer: when a child rank has
  exited with a non-zero status, it prints the line, SIGKILLs the other ranks and exits with status 1;
- in every other rank, `watch_parent` (started as rrn-train begins) notices that its launcher, rank 0, is gone
  (its parent process id changes): local rank 1 prints the line, and each rank exits with status 1.
A survivor whose collective fails first waits in `RankLossWatch.on_exception` for its watcher to decide.

Ranks started by an outside launcher (torchrun, SLURM's srun, LSF's jsrun: one process per device on every
node, `trainer.num_nodes` > 1) have no such parent to watch: `join_process_group` starts torch.distributed as
rrn-train begins (Lightning's DDP set-up then finds it started), and when a collective fails because a peer is
gone, `RankLossWatch` prints the line on each surviving rank and ends it; the launcher then ends the job.

The line says which checkpoint holds the last good state (checkpoints are written atomically:
rrn_app/checkpoints.py) and the `ckpt_path=` that resumes from it.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import lightning as L

POLL_SECONDS = 0.2
WAIT_ON_ERROR_SECONDS = 3.0  # how long a failed collective waits for the watcher to see a dead rank

_checkpoints: Path | None = None  # the run's checkpoint folder, for the line


def how_it_ended(returncode: int) -> str:
    """'killed by SIGKILL' or 'exited with status 3'."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


def last_good_checkpoint() -> str:
    """Where the run can resume from, as the end of the line."""
    found = []
    if _checkpoints is not None and _checkpoints.is_dir():
        found = sorted((p for p in _checkpoints.glob("*.ckpt") if p.is_file()), key=lambda p: p.stat().st_mtime)
        last = _checkpoints / "last.ckpt"
        if last.is_file():
            found.append(last)
    if not found:
        return "no checkpoint had been written yet"
    return f"the last good checkpoint is intact; resume with: rrn-train ckpt_path={found[-1].resolve()}"


def _end(message: str | None) -> None:
    """Print the one line (if this process is the one to say it) and leave at once: no teardown, no
    collective that could wait on the dead rank."""
    if message:
        print(f"rrn-train: error: {message}; {last_good_checkpoint()}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)


def watch_children(child_processes: list[subprocess.Popen]) -> None:
    """In the launching process (rank 0): watch the ranks it started (Lightning's `procs`, rank i + 1 at
    index i); one that exits non-zero ends the job. Replaces Lightning's `_launch_process_observer`."""
    node = int(os.environ.get("NODE_RANK", "0"))
    first = node * (len(child_processes) + 1)  # global rank of this node's rank 0

    def run() -> None:
        while True:
            time.sleep(POLL_SECONDS)
            codes = [process.poll() for process in child_processes]
            if all(code == 0 for code in codes):
                return  # every child finished its job
            for index, (process, code) in enumerate(zip(child_processes, codes)):
                if code:
                    for other in child_processes:
                        if other.poll() is None:
                            other.send_signal(signal.SIGKILL)
                    _end(f"DDP rank {first + index + 1} (PID {process.pid}) {how_it_ended(code)}; stopped the job")

    threading.Thread(target=run, name="rrn-ddp-children", daemon=True).start()


def watch_parent() -> None:
    """In a rank that Lightning's launcher started (LOCAL_RANK > 0): when the launcher, rank 0 of this node, is
    gone, end this rank too. Only local rank 1 prints the line, so the job shows one."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if local_rank == 0 or not any(a.startswith("hydra.job.name=train_ddp_process_") for a in sys.argv):
        return  # not a rank Lightning's launcher started (torchrun, SLURM: their agent is the parent)
    parent = os.getppid()
    node = int(os.environ.get("NODE_RANK", "0"))
    name = "DDP rank 0" if node == 0 else f"DDP local rank 0 of node {node}"

    def run() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_SECONDS)
        if finished.is_set():
            return  # this rank's job is done; rank 0 may well exit first
        _end(f"{name} (PID {parent}) died; stopped the job" if local_rank == 1 else None)

    finished = threading.Event()
    atexit.register(finished.set)  # Python is shutting this rank down after its job
    threading.Thread(target=run, name="rrn-ddp-parent", daemon=True).start()


def outside_launcher():
    """Lightning's cluster environment of a rank that torchrun, SLURM (srun) or LSF started, in a job of more
    than one process; None otherwise (one process, or ranks that Lightning's own launcher starts). The same
    environments, in the same order, as Lightning's Trainer chooses from."""
    from lightning.fabric.plugins.environments import LSFEnvironment, SLURMEnvironment, TorchElasticEnvironment

    for kind in (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment):
        if kind.detect():
            environment = kind()
            return environment if environment.world_size() > 1 else None
    return None


def process_group_backend(trainer_config) -> str:
    """The backend Lightning's DDP would choose: NCCL on CUDA GPUs, gloo on CPUs."""
    import torch

    strategy = trainer_config.get("strategy")
    chosen = strategy.get("process_group_backend") if hasattr(strategy, "get") else None
    if chosen:
        return str(chosen)
    accelerator = str(trainer_config.get("accelerator", "auto"))
    return "nccl" if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "gloo"


def check_process_count(trainer_config, environment) -> None:
    """`trainer.num_nodes` x `trainer.devices` must be the number of processes the launcher started (else the
    process group would wait for ranks that never come, or Lightning would refuse later): a UserError if not."""
    from rrn_app.option_checks import UserError

    nodes, devices = trainer_config.get("num_nodes", 1), trainer_config.get("devices", 1)
    if not isinstance(nodes, int) or not isinstance(devices, int) or isinstance(devices, bool):
        return  # devices=auto or a list: Lightning checks it against the launcher
    started = environment.world_size()
    if nodes * devices != started:
        from lightning.fabric.plugins.environments import LSFEnvironment, SLURMEnvironment, TorchElasticEnvironment

        launcher = next((name for kind, name in ((TorchElasticEnvironment, "torchrun"), (SLURMEnvironment, "SLURM"),
                                                 (LSFEnvironment, "LSF")) if isinstance(environment, kind)), "?")
        raise UserError(f"trainer.num_nodes={nodes} x trainer.devices={devices} = {nodes * devices} processes, but "
                        f"the launcher ({launcher}) started {started}: make them equal (torchrun: --nnodes and "
                        "--nproc_per_node; SLURM: --nodes and --ntasks-per-node).")


def join_process_group(trainer_config):
    """Under an outside launcher (`outside_launcher`): start torch.distributed's process group now, as Lightning's
    DDP would (its set-up finds it started and uses it), so the ranks can agree on one run folder before the
    Trainer is made (rrn_app/run_folders.py: `agree_on_run_dir`). Returns the environment, or None."""
    import torch.distributed as dist

    environment = outside_launcher()
    if environment is None or dist.is_initialized():
        return environment
    check_process_count(trainer_config, environment)
    from lightning.fabric.utilities.distributed import _init_dist_connection

    _init_dist_connection(environment, process_group_backend(trainer_config))
    return environment


def install(checkpoints: Path) -> None:
    """Arm the watchers for this rrn-train process: the launcher's child watcher replaces Lightning's observer
    (it is called as the launcher starts the other ranks), and a started rank watches its launcher."""
    global _checkpoints
    _checkpoints = Path(checkpoints)
    from lightning.pytorch.strategies.launchers import subprocess_script

    if hasattr(subprocess_script, "_launch_process_observer"):  # the hook Lightning 2.x's launcher calls
        subprocess_script._launch_process_observer = watch_children
    watch_parent()


class RankLossWatch(L.Callback):
    """When training fails in a multi-process run, give the watchers a moment: if a rank died, the failure is
    its consequence (a collective that lost its peer) and the watcher's one line replaces the traceback."""

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        from rrn_app.option_checks import UserError

        if trainer.world_size <= 1 or isinstance(exception, UserError) or not isinstance(exception, RuntimeError):
            return  # gloo's lost peer is a RuntimeError (DistBackendError); a diverged run's stop is not
        if outside_launcher() is not None:
            if lost_peer(exception):  # no watcher here: this rank says it and ends; its launcher ends the job
                _end(f"DDP rank {trainer.global_rank} lost the other ranks ({first_line(exception)}): a rank or "
                     "node of this job stopped; stopped this rank too")
            return
        deadline = time.monotonic() + WAIT_ON_ERROR_SECONDS
        while time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)  # a watcher that fires ends the process (os._exit) during this sleep


def lost_peer(exception: BaseException) -> bool:
    """A collective that failed because a peer process is gone (gloo: connection closed or reset; NCCL: the
    communicator aborted), rather than an error of this rank's own."""
    import torch.distributed as dist

    text = str(exception).lower()
    if isinstance(exception, (getattr(dist, "DistNetworkError", ()), getattr(dist, "DistBackendError", ()))):
        return True
    return any(words in text for words in ("connection closed by peer", "connection reset by peer", "broken pipe",
                                            "nccl communicator was aborted", "gloo", "timed out"))


def first_line(exception: BaseException) -> str:
    """The error's first sentence, without gloo's source location: `Read error [10.0.0.2]:34197: Connection
    reset by peer`."""
    import re

    lines = [line.strip() for line in str(exception).splitlines() if line.strip()]
    text = re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", lines[0]) if lines else type(exception).__name__
    return text.split(". ")[0].rstrip(".")[:200]
