"""Run folders: made or refused in one line, never shared by two runs, never filled up silently.

- `check_creatable(path)`: before Hydra makes a run folder, try making it (and remove what was made): a folder
  under /proc, a file in the way or a folder without write permission is a one-line UserError naming the path.
- `check_fresh_run_dir(run_dir)`: a new run (no ckpt_path=) into a folder that already holds an earlier run's
  checkpoints is refused, since its checkpoints would overwrite the earlier ones and results.json could name
  either run's; the message says how to resume that run or where else to go. Other earlier files are kept
  anyway: results.json becomes results-N.json, the CSV logger writes the next version_N/.
- `disk_full_message(error, run_dir)`: the line for "no space left on the device" (or a quota), naming the file.
- `agree_on_run_dir(run_dir)`: in a job of several processes that torchrun or SLURM started (each its own
  Hydra, each its own timestamped folder), rank 0's folder for every rank; the folders Hydra made for the other
  ranks are removed. Every rank must see it (a file system shared by the nodes), else a UserError on all.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from rrn_app.option_checks import UserError

FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


def check_creatable(path, key: str = "hydra.run.dir") -> None:
    """Make `path` (with its missing parents) and remove again what was made; a UserError naming the path and
    `key` if that fails."""
    path = Path(path).expanduser().absolute()
    missing = []
    existing = path
    while not existing.exists() and existing != existing.parent:
        missing.append(existing)
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise UserError(f"cannot make the run folder {path}: {existing} is a file, not a folder; choose another "
                        f"{key}=<folder>.")
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not missing and not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
    except OSError as error:
        raise UserError(f"cannot make the run folder {path} ({error.strerror or error}); choose a folder you can "
                        f"write to with {key}=<folder>.") from None
    finally:
        for folder in missing:  # deepest first: leave nothing behind
            try:
                folder.rmdir()
            except OSError:
                break


def make_run_dir(run_dir: Path) -> None:
    """mkdir -p, as a one-line UserError when the folder cannot be made."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot make the run folder {run_dir} ({error.strerror or error}); choose a folder you "
                        "can write to with hydra.run.dir=<folder>.") from None


def agree_on_run_dir(run_dir: Path) -> Path:
    """Rank 0's run folder, broadcast to every rank of the started process group (rrn_app/ddp.py:
    `join_process_group`); `run_dir` itself outside one. A rank whose own folder differs removes it (it holds
    only Hydra's .hydra/). Raised on every rank alike: a UserError when some rank cannot see the folder."""
    import torch.distributed as dist

    from rrn_app.command_line import remove_unused_run_dir

    if not dist.is_initialized():
        return run_dir
    group = dist.new_group(backend="gloo")  # Python objects over gloo, whatever the training backend
    try:
        chosen = [str(Path(run_dir).resolve())]
        dist.broadcast_object_list(chosen, src=0, group=group)
        shared = Path(chosen[0])
        if dist.get_rank() != 0 and Path(run_dir).resolve() != shared:
            remove_unused_run_dir(Path(run_dir))
        seen = [None] * dist.get_world_size()
        dist.all_gather_object(seen, shared.is_dir(), group=group)
    finally:
        dist.destroy_process_group(group)
    blind = [str(rank) for rank, visible in enumerate(seen) if not visible]
    if blind:
        raise UserError(f"the run folder {shared}, made by DDP rank 0, is not there for rank {', '.join(blind)}: "
                        "every node must see it on a shared file system; choose such a folder with "
                        "hydra.run.dir=<folder>.")
    return shared


def earlier_checkpoints(run_dir: Path) -> list[Path]:
    folder = Path(run_dir) / "checkpoints"
    return sorted(folder.glob("*.ckpt")) if folder.is_dir() else []


def check_fresh_run_dir(run_dir: Path) -> None:
    """A UserError when `run_dir` holds an earlier run's checkpoints (a new run would overwrite them)."""
    found = earlier_checkpoints(run_dir)
    if found:
        last = next((path for path in found if path.name == "last.ckpt"), found[-1])
        raise UserError(f"the run folder {run_dir} already holds checkpoints of an earlier run ({last.name}); a new "
                        f"run there would overwrite them. Resume that run with ckpt_path={last}, or start a new "
                        "one in another folder (leave hydra.run.dir out, or give a new one).")


def disk_full_message(error: OSError, run_dir: Path) -> str | None:
    """One line for a full disk or quota, naming the file (or the run folder); None for any other OSError."""
    if error.errno not in FULL_DISK:
        return None
    where = error.filename or run_dir
    return (f"no space left on the device writing {where}; free space there, or choose another run folder with "
            "hydra.run.dir=<folder>.")


def check_run_folder_arguments(overrides: list[str], multirun: bool) -> None:
    """rrn-train's command line, before Hydra makes the run folder (and writes its .hydra/ there): the folder of
    `hydra.run.dir=` (`hydra.sweep.dir=` with -m; else the default `runs/` under this folder) can be made, and a
    new run (no ckpt_path=) does not go into a folder holding an earlier run's checkpoints."""
    from rrn_app.config import parse_overrides

    given = {override.key_or_group: override.value() for override in parse_overrides(overrides) or []
             if not override.is_delete() and not override.is_sweep_override()}
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    folder = given.get(key)
    if folder is not None and "${" in str(folder):
        return  # an interpolation: Hydra resolves it
    check_creatable(Path(str(folder)) if folder is not None else Path("runs"), key)
    if folder is not None and not multirun and given.get("ckpt_path") in (None, "null"):
        check_fresh_run_dir(Path(str(folder)))
