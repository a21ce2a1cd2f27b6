"""Where a dataset is read from: the user's `data.root`, else the copy embedded in the package, else an error.

`dataset_root(root, name)` is the one place that decides. If `root` holds every file the loader needs (in
the layout of rrn_app.data.catalog), that root is used. Otherwise, for a dataset that ships with rrn (SST,
GloVe's rows for SST's words, Tiny Shakespeare, JSB Chorales), the embedded copy is expanded once into a
cache folder (`$RRN_CACHE_DIR/embedded/`, default `~/.cache/rrn/embedded/`; a temporary folder if that is
not writable) and its root is returned, with one line on stderr saying so. Any other dataset is a
MissingDataError naming the missing path(s) and how to get them (`rrn-data get NAME`).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from rrn_app.data.catalog import Dataset, embedded_path, get_dataset
from rrn_app.option_checks import MissingDataError

_ANNOUNCED: set[tuple[str, str]] = set()   # (dataset, root) pairs already told about, once per process


def cache_home() -> Path:
    """rrn's cache folder: $RRN_CACHE_DIR, else $XDG_CACHE_HOME/rrn, else ~/.cache/rrn."""
    if os.environ.get("RRN_CACHE_DIR"):
        return Path(os.environ["RRN_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rrn"


def missing_files(root: str | Path, dataset: Dataset, files=None) -> list[Path]:
    """The files of `dataset` (or just `files`, relative to the root) that `root` lacks."""
    return [Path(root) / relative for relative in (files or dataset.files) if not (Path(root) / relative).is_file()]


def dataset_root(root: str | Path, name: str, files=None, announce: bool = True) -> Path:
    """The data root to read dataset `name` from (see the module docstring).

    `files`: the files (relative to the root, as in the catalog) the caller reads, if not all of the
    dataset's (IMDB's loader needs no unsup.jsonl.gz).
    """
    dataset = get_dataset(name)
    missing = missing_files(root, dataset, files)
    if not missing:
        return Path(root)
    if dataset.embedded:
        expanded = embedded_root(name)
        if announce and (name, str(root)) not in _ANNOUNCED:
            _ANNOUNCED.add((name, str(root)))
            what = f"the embedded copy, {dataset.embedded_note}" if dataset.embedded_note else "the embedded copy"
            print(f"rrn: {name} not found in {Path(root) / dataset.folder}; using {what} "
                  f"(rrn-data get {name} for your own)", file=sys.stderr, flush=True)
        return expanded
    raise MissingDataError(missing_message(root, dataset, missing))


def missing_message(root: str | Path, dataset: Dataset, missing: list[Path]) -> str:
    """`<name> not found: <path> (and N more). Get it with ...` in one line."""
    more = f" (and {len(missing) - 1} more of its files)" if len(missing) > 1 else ""
    get = f"rrn-data get {dataset.name}" + ("" if str(root) == "data" else f" root={root}")
    return (f"{dataset.name} not found: {missing[0]}{more}. Get it with `{get}`, or set data.root=<a folder "
            f"holding {dataset.folder}/>.")


def embedded_root(name: str) -> Path:
    """A folder holding the expanded embedded copy of `name` in the loaders' layout (made once, atomically)."""
    dataset = get_dataset(name)
    packed = [embedded_path(name, relative) for relative in dataset.files]
    digest = hashlib.sha256()
    for path in packed:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    folder_name = f"{name}-{digest.hexdigest()[:16]}"
    last_error = None
    for base in (cache_home() / "embedded", Path(tempfile.gettempdir()) / f"rrn-{_user()}" / "embedded"):
        target = base / folder_name
        if not missing_files(target, dataset):
            return target
        try:
            _expand(dataset, packed, target)
            return target
        except OSError as error:  # an unwritable cache: try the next place
            last_error = error
    raise MissingDataError(f"could not expand the embedded {name} into {cache_home() / 'embedded'} or a temporary "
                           f"folder ({last_error}). Set RRN_CACHE_DIR to a writable folder.")


def _expand(dataset: Dataset, packed: list[Path], target: Path) -> None:
    """Write the dataset's files under a fresh folder beside `target`, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for relative, source in zip(dataset.files, packed):
            destination = staging / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            if relative.endswith(".gz"):
                shutil.copyfile(source, destination)
            else:
                with gzip.open(source, "rb") as compressed, open(destination, "wb") as out:
                    shutil.copyfileobj(compressed, out, 1 << 20)
        if target.exists():  # an incomplete copy (files deleted by hand): replace it
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(staging, target)
        except OSError:
            if missing_files(target, dataset):  # not another process finishing first: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _user() -> str:
    try:
        return str(os.getuid())
    except AttributeError:  # Windows
        return os.environ.get("USERNAME", "user")


FULL_GLOVE_FILE = "glove.6B.50d.txt.gz"  # rrn_app.data.prepare.GLOVE_FILE


def vectors_fallback(path: str | Path) -> Path | None:
    """For a missing `<root>/glove/<GloVe file>` (task.data.vectors' default): the full GloVe file `rrn-data get glove`
    wrote beside it, else the embedded GloVe rows; None for any other path."""
    path = Path(path)
    glove = get_dataset("glove")
    relative = glove.files[0]
    if path.is_file() or path.as_posix() != relative and not path.as_posix().endswith("/" + relative):
        return None
    full = path.with_name(FULL_GLOVE_FILE)  # what `rrn-data get glove` writes: all 400k rows, preferred
    if full.is_file():
        return full
    root = path.parents[len(Path(relative).parts) - 1]
    return dataset_root(root, "glove") / relative
