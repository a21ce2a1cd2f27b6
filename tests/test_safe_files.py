"""Files from elsewhere cannot run code or write outside their folder.

- Data pickles go through a restricted unpickler: a pickle whose loading would run a shell command (creating
  a marker file) is refused by every entry point that reads one, with one line naming the file and the
  global it asked for, and the marker never appears.
- Archives (tar, tar.gz, zip) with a member that escapes the target folder (absolute path, `..`, a symlink or
  hard link pointing outside) are refused by `rrn-data prepare` with one line naming the archive and the
  member, and nothing is written anywhere.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import shlex
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from helpers import run_cli
from rrn_app import safe_pickle
from rrn_app.data.music import load_pieces
from rrn_app.option_checks import UserError

TREES = {"trees/train.txt": b"(3 (2 good) (3 film))\n", "trees/dev.txt": b"(1 bad)\n", "trees/test.txt": b"(2 ok)\n"}


class RunsAShellCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


class RunsPython:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.fixture(params=[RunsAShellCommand, RunsPython], ids=["os.system", "builtins.exec"])
def crafted_root(request, tmp_path):
    """(data root holding a crafted polyphonic/jsb_chorales.pickle, the marker its payload would create, global)."""
    marker = tmp_path / "marker"
    payload = request.param(marker)
    path = tmp_path / "data" / "polyphonic" / "jsb_chorales.pickle"
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps({"train": [payload], "valid": [], "test": []}, protocol=2))
    name = "system" if request.param is RunsAShellCommand else "exec"
    return tmp_path / "data", marker, name


def one_line(result) -> str:
    assert result.returncode != 0, result.stdout[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


# ---- pickles ------------------------------------------------------------------------------------------------

def test_the_restricted_unpickler_refuses_before_anything_runs(crafted_root):
    root, marker, name = crafted_root
    path = root / "polyphonic" / "jsb_chorales.pickle"
    with pytest.raises(safe_pickle.RefusedGlobal) as error:
        safe_pickle.load(path)
    assert str(path) in str(error.value) and f".{name} " in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(UserError, match="refused to load"):
        load_pieces(path)
    assert not marker.exists()


@pytest.mark.slow
def test_rrn_train_on_a_crafted_music_pickle_fails_in_one_line_and_runs_nothing(crafted_root, tmp_path):
    root, marker, name = crafted_root
    result = run_cli("rrn-train", "task=music", "task.dataset=jsb_chorales", f"data.root={root}", "threads=1",
                     "logger=none", f"hydra.run.dir={tmp_path / 'run'}", timeout=300)
    line = one_line(result)
    assert str(root / "polyphonic" / "jsb_chorales.pickle") in line and f".{name} " in line
    assert not marker.exists()


def test_rrn_data_on_a_crafted_music_pickle_fails_in_one_line_and_runs_nothing(crafted_root, tmp_path):
    root, marker, name = crafted_root
    crafted = root / "polyphonic" / "jsb_chorales.pickle"
    line = one_line(run_cli("rrn-data", "prepare", "jsb_chorales", str(crafted), f"root={tmp_path / 'out'}"))
    assert str(crafted) in line and f".{name} " in line
    assert not list((tmp_path / "out").rglob("*.pickle"))
    line = one_line(run_cli("rrn-data", "list", f"root={root}"))
    assert str(crafted) in line and f".{name} " in line
    assert not marker.exists()


def test_the_canonical_forms_of_a_music_pickle_still_load(tmp_path):
    """Python-2 style protocol-2 pickles with numpy arrays, numpy scalars, floats, tuples and sets are data."""
    piece = [np.array([60, 64, 67], dtype=np.int64), (np.float64(62.0), 65.0), {67, 60}, []]
    splits = {"train": [piece, [[61.0]]], "valid": [[[np.int32(70)]]], "test": [[[21, 108]]]}
    for protocol in (2, 4, 5):
        path = tmp_path / f"canonical-{protocol}.pickle"
        path.write_bytes(pickle.dumps(splits, protocol=protocol))
        pieces = load_pieces(path)
        assert [roll.nonzero().tolist() for roll in pieces["train"][:1]] == [
            [[0, 39], [0, 43], [0, 46], [1, 41], [1, 44], [2, 39], [2, 46]]]
        assert pieces["test"][0].nonzero().tolist() == [[0, 0], [0, 87]]


# ---- archives -----------------------------------------------------------------------------------------------

def tar_with(path: Path, special: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, content in TREES.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        archive.addfile(special, io.BytesIO(b"escaped\n") if special.isfile() else None)
    return path


def member(name: str, kind=tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(b"escaped\n") if kind == tarfile.REGTYPE else 0
    return info


def zip_with(path: Path, name: str, content: bytes = b"escaped\n", symlink: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for tree, text in TREES.items():
            archive.writestr(tree, text)
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, content)
    return path


ESCAPING_TARS = {
    "absolute path": member("/tmp/rrn-escaped.txt"),
    "dot-dot": member("trees/../../escaped.txt"),
    "symlink to an absolute path": member("trees/link", tarfile.SYMTYPE, "/etc"),
    "symlink out of the folder": member("trees/link", tarfile.SYMTYPE, "../../outside"),
    "hard link out of the folder": member("trees/hard", tarfile.LNKTYPE, "../outside.txt"),
}
ESCAPING_ZIPS = {
    "absolute path": dict(name="/tmp/rrn-escaped.txt"),
    "dot-dot": dict(name="trees/../../escaped.txt"),
    "symlink out of the folder": dict(name="trees/link", content=b"../../outside", symlink=True),
}


def everything_under(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*")}


@pytest.mark.parametrize("kind", ESCAPING_TARS)
def test_a_tar_with_an_escaping_member_is_refused(kind, tmp_path):
    archive = tar_with(tmp_path / "trainDevTestTrees_PTB.tar.gz", ESCAPING_TARS[kind])
    before = everything_under(tmp_path)
    line = one_line(run_cli("rrn-data", "prepare", "sst", str(archive), f"root={tmp_path / 'data'}"))
    assert str(archive) in line and repr(ESCAPING_TARS[kind].name) in line and "nothing was extracted" in line
    assert everything_under(tmp_path) - before <= {tmp_path / "data"}   # at most the (empty) data root
    assert not Path("/tmp/rrn-escaped.txt").exists()


@pytest.mark.parametrize("kind", ESCAPING_ZIPS)
def test_a_zip_with_an_escaping_member_is_refused(kind, tmp_path):
    archive = zip_with(tmp_path / "trainDevTestTrees_PTB.zip", **ESCAPING_ZIPS[kind])
    before = everything_under(tmp_path)
    line = one_line(run_cli("rrn-data", "prepare", "sst", str(archive), f"root={tmp_path / 'data'}"))
    assert str(archive) in line and repr(ESCAPING_ZIPS[kind]["name"]) in line and "nothing was extracted" in line
    assert everything_under(tmp_path) - before <= {tmp_path / "data"}
    assert not Path("/tmp/rrn-escaped.txt").exists()


def test_links_inside_the_folder_are_fine(tmp_path):
    """A symlink to a sibling is harmless (and is never followed: only regular members are read)."""
    from rrn_app.data import archives

    archive = tar_with(tmp_path / "ok.tar.gz", member("trees/latest.txt", tarfile.SYMTYPE, "train.txt"))
    source = archives.open_source(archive)
    assert sorted(source.names()) == sorted(TREES)
