"""rrn's checkpoint files: what they may hold, how they are read, and how they are written.

Reading: every checkpoint (rrn-generate, rrn-eval, rrn-train's ckpt_path=, the test on the best checkpoint) is
loaded with `torch.load(weights_only=True)`, which rebuilds tensors, plain containers and numbers and refuses
every other class before anything of it runs, plus the allow-list below. A checkpoint that needs any other class
is a one-line UserError naming the class; `trust_checkpoint=true` loads it with the full unpickler, on purpose.

Writing (`AtomicCheckpointIO`, the Trainer's checkpoint plugin): the checkpoint is serialised in memory, written to a
temporary file in the same folder (`.<name>.tmp-<pid>-<random>`), flushed and fsynced, then renamed over the old
file with `os.replace` and the folder fsynced. A kill or a full disk at any moment leaves the previous checkpoint
whole; the temporary file of a killed save is removed at the next start (`remove_stale_temporaries`).
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import zipfile
from pathlib import Path

from lightning.pytorch.plugins.io import TorchCheckpointIO

from rrn_app.option_checks import UserError

# Classes a checkpoint of rrn may hold beyond what weights_only admits by itself (tensors and their storages,
# OrderedDict, dict, list, tuple, set, str, bytes, int, float, bool, None, torch.Size, dtypes). Every checkpoint
# rrn writes needs none: Lightning's loops and callbacks, the optimizers' and schedulers' states, the model's
# hyper-parameters (plain dicts), the data module's state (the vocabulary: a list of strings) and rrn_config
# (OmegaConf.to_container: plain containers) are all plain. Keep it so: store plain containers, and add a
# class here only with a test in tests/test_checkpoints.py that a real checkpoint holds it.
ALLOWED_GLOBALS: list = []

TRUST_HINT = ("if you trust this file (you wrote it, or know who did), load it anyway with trust_checkpoint=true: "
              "that unpickles it in full and can run code stored in it")
TEMPORARY = re.compile(r"^\..+\.tmp-\d+-[0-9a-f]+$")


def check_readable(path) -> Path:
    """A cheap look before anything is loaded: the file exists and is a complete torch zip file (its central
    directory, at the very end, is there); else a one-line UserError naming the file."""
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}. Give a .ckpt that rrn-train wrote, e.g. "
                        "<run dir>/checkpoints/last.ckpt.")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as error:
        raise UserError(f"could not read checkpoint {path}: not a complete torch file ({error}); it is truncated, "
                        "damaged or something else. Use another checkpoint of the run (best-*.ckpt or "
                        "last.ckpt).") from None
    if not any(name.endswith("/data.pkl") or name == "data.pkl" for name in names):
        raise UserError(f"could not read checkpoint {path}: a zip file but not a torch checkpoint (no data.pkl in "
                        "it); give a .ckpt that rrn-train wrote.")
    return path


def read_checkpoint(path, *, trust: bool = False, map_location="cpu") -> dict:
    """The checkpoint at `path`, loaded with weights_only=True and ALLOWED_GLOBALS (or in full with trust=True).
    Every failure is a one-line UserError naming the file."""
    import pickle

    import torch

    path = check_readable(path)
    try:
        if trust:
            return torch.load(path, map_location=map_location, weights_only=False)
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if trust:
            raise UserError(f"could not read checkpoint {path} ({first_line(error)}).") from None
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        what = found.group(1) if found else f"something else ({first_line(error)})"
        raise UserError(f"{path}: refused to load {what}, which rrn's checkpoints never hold (it may be crafted "
                        f"to run code, and nothing from it was run); {TRUST_HINT}.") from None
    except Exception as error:  # a damaged member, a storage that does not match, ...
        raise UserError(f"could not read checkpoint {path} ({type(error).__name__}: {first_line(error)}); is it "
                        "a complete .ckpt written by rrn-train?") from None


def check_resumable(path, *, trust: bool = False) -> None:
    """rrn-train's ckpt_path=: a checkpoint that loads safely and is a Lightning training checkpoint (its weights
    and its loops' state), before any data is read; else a one-line UserError naming the file."""
    checkpoint = read_checkpoint(path, trust=trust)
    missing = [key for key in ("state_dict", "loops", "pytorch-lightning_version")
               if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise UserError(f"ckpt_path={path} is not a training checkpoint of rrn-train (it has no {missing[0]}); give "
                        "<run dir>/checkpoints/last.ckpt (or best-*.ckpt) of the run to resume.")


def first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def write_atomically(data: bytes, path) -> None:
    """`data` into `path` through a fsynced temporary file in the same folder and os.replace: `path` is always
    either its old content or all of `data`. A failure (a full disk, no permission) is a one-line UserError naming
    the file; the temporary file is removed and the old file is left as it was."""
    path = Path(path)
    temporary = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        fsync_folder(path.parent)
    except OSError as error:
        try:
            temporary.unlink(missing_ok=True)
        except OSError:
            pass
        why = "no space left on the device" if error.errno in (errno.ENOSPC, errno.EDQUOT) else \
            (error.strerror or str(error))
        kept = " (the previous one is intact)" if path.is_file() else ""
        raise UserError(f"could not write checkpoint {path}: {why}{kept}; free space, or choose another run folder "
                        "(hydra.run.dir=...) or checkpoint folder (callbacks.model_checkpoint.dirpath=...).") from None


def fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (where the platform allows opening a folder)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def remove_stale_temporaries(folder) -> list[Path]:
    """Remove the temporary files that killed saves left in `folder` (`.<name>.tmp-<pid>-<random>`); returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        if TEMPORARY.match(entry.name) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint plugin for rrn-train: saves through `write_atomically`, loads through
    `read_checkpoint` (weights_only=True and the allow-list, unless `trust=True`)."""

    def __init__(self, trust: bool = False):
        super().__init__()
        self.trust = trust

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        import io

        import torch

        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomically(buffer.getbuffer(), path)

    def load_checkpoint(self, path, map_location=lambda storage, location: storage, weights_only=None) -> dict:
        return read_checkpoint(path, trust=self.trust, map_location=map_location)
