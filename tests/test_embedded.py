"""The datasets that ship inside the package: their SOURCE notes, checksums, size, packaging, and the fallback
to them (rrn_app.data.locate) when data.root lacks a dataset."""

from __future__ import annotations

import gzip
import hashlib
import re
import sys
from pathlib import Path

import pytest

from helpers import FULL_DATA, REPO
from rrn_app.data import locate
from rrn_app.data.catalog import DATASETS, EMBEDDED_DIR, embedded_path
from rrn_app.data.sst import normalise
from rrn_app.option_checks import MissingDataError

EMBEDDED = [name for name, dataset in DATASETS.items() if dataset.embedded]
ROW = re.compile(r"^\| `([^`]+)` \| ([\d,]+) \| `([0-9a-f]{64})` \| `([^`]+)` \| ([\d,]+) \| `([0-9a-f]{64})` \|$")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def expanded(relative: str, packed: Path) -> bytes:
    """What the embedded file becomes under the data root: itself for a .gz the loader reads, else gunzipped."""
    return packed.read_bytes() if relative.endswith(".gz") else gzip.decompress(packed.read_bytes())


def test_the_embedded_datasets_are_the_four_of_the_issue():
    assert EMBEDDED == ["sst", "glove", "tinyshakespeare", "jsb_chorales"]


@pytest.mark.parametrize("name", EMBEDDED)
def test_source_note_gives_origin_licence_and_the_checksums_of_the_files(name):
    dataset = DATASETS[name]
    note = (EMBEDDED_DIR / name / "SOURCE.md").read_text(encoding="utf-8")
    assert "Licence:" in note and "https://" in note and "shared" not in note
    rows = {match[4]: match for match in map(ROW.match, note.splitlines()) if match}
    assert sorted(rows) == sorted(dataset.files)
    for relative in dataset.files:
        packed = embedded_path(name, relative)
        content = expanded(relative, packed)
        row = rows[relative]
        assert row[1] == packed.name and int(row[2].replace(",", "")) == packed.stat().st_size
        assert row[3] == sha256(packed.read_bytes())
        assert int(row[5].replace(",", "")) == len(content) and row[6] == sha256(content)
        # the expanded file is the canonical one, or for GloVe the SST subset whose checksum the catalog holds
        assert row[6] == (dataset.embedded_sha256.get(relative) or dataset.sha256[relative])


def test_at_most_5_mb_in_all():
    total = sum(path.stat().st_size for path in EMBEDDED_DIR.rglob("*") if path.is_file())
    assert total <= 5_000_000


def test_every_embedded_file_ships_in_the_wheel():
    """pyproject.toml lists each embedded folder as a package with globs that take in all its files."""
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    for name in EMBEDDED:
        package = f"rrn_app.data.embedded.{name}"
        assert package in setuptools["packages"]
        globs = setuptools["package-data"][package]
        for path in (EMBEDDED_DIR / name).iterdir():
            assert any(path.match(pattern) for pattern in globs), path


def test_embedded_glove_holds_exactly_the_rows_of_sst_words(data_root):
    sst = locate.dataset_root(data_root, "sst", announce=False) / "sst"
    words = {normalise(token, lowercase=True) for split in ("train", "dev", "test")
             for token in re.findall(r"\(\S+ ([^()]+)\)", (sst / f"{split}.txt").read_text(encoding="utf-8"))}
    with gzip.open(embedded_path("glove", DATASETS["glove"].files[0]), "rt", encoding="utf-8") as lines:
        rows = lines.read().splitlines()
    assert len(rows) == 17_773 and rows[0].startswith("the 0.418 0.24968 ")
    assert all(row.split(" ", 1)[0] in words and len(row.split(" ")) == 51 for row in rows)
    if FULL_DATA:  # the same lines as the full file's, in its order
        with gzip.open(Path(FULL_DATA) / "glove" / "glove.6B.50d.filtered.txt.gz", "rt", encoding="utf-8") as lines:
            assert rows == [line.rstrip("\n") for line in lines if line.split(" ", 1)[0] in words]


# ---- the fallback ----

@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RRN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(locate, "_ANNOUNCED", set())
    return tmp_path / "cache"


def test_a_dataset_missing_from_data_root_falls_back_to_the_embedded_copy_with_one_line(tmp_path, cache, capsys):
    root = tmp_path / "data"
    found = locate.dataset_root(root, "tinyshakespeare")
    assert found.parent == cache / "embedded" and found.name.startswith("tinyshakespeare-")
    text = (found / "tinyshakespeare" / "input.txt").read_bytes()
    assert sha256(text) == DATASETS["tinyshakespeare"].sha256["tinyshakespeare/input.txt"]
    assert locate.dataset_root(root, "tinyshakespeare") == found  # expanded once, told once
    assert capsys.readouterr().err == (f"rrn: tinyshakespeare not found in {root / 'tinyshakespeare'}; using the "
                                       "embedded copy (rrn-data get tinyshakespeare for your own)\n")
    assert [path.name for path in (cache / "embedded").iterdir()] == [found.name]  # no staging folder left


def test_data_root_wins_when_it_holds_every_file(tmp_path, cache, capsys):
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("my own text\n")
    assert locate.dataset_root(tmp_path, "tinyshakespeare") == tmp_path
    assert capsys.readouterr().err == "" and not cache.exists()


def test_a_damaged_cache_is_expanded_again(tmp_path, cache):
    found = locate.dataset_root(tmp_path, "sst", announce=False)
    (found / "sst" / "dev.txt").unlink()
    assert locate.dataset_root(tmp_path, "sst", announce=False) == found
    assert sha256((found / "sst" / "dev.txt").read_bytes()) == DATASETS["sst"].sha256["sst/dev.txt"]


def test_an_unwritable_cache_falls_back_to_a_temporary_folder(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("RRN_CACHE_DIR", str(blocker))
    monkeypatch.setattr(locate.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    found = locate.dataset_root(tmp_path / "data", "jsb_chorales", announce=False)
    assert found.is_relative_to(tmp_path / "tmp") and (found / "polyphonic" / "jsb_chorales.pickle").is_file()


@pytest.mark.parametrize("name", [name for name, dataset in DATASETS.items() if not dataset.embedded])
def test_a_missing_dataset_that_is_not_embedded_names_the_path_and_rrn_data_get(tmp_path, monkeypatch, name):
    dataset = DATASETS[name]
    with pytest.raises(MissingDataError) as error:
        locate.dataset_root(tmp_path, name)
    message = str(error.value)
    assert str(tmp_path / dataset.files[0]) in message and f"`rrn-data get {name} root={tmp_path}`" in message
    assert f"data.root=<a folder holding {dataset.folder}/>" in message and "\n" not in message
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingDataError, match=rf"`rrn-data get {name}`"):  # the default root needs no root=
        locate.dataset_root("data", name)


def test_the_default_vectors_path_prefers_the_full_glove_that_rrn_data_get_writes(tmp_path, cache):
    from rrn_app.data.text import require_vectors

    default = tmp_path / "glove" / "glove.6B.50d.filtered.txt.gz"  # conf/task/sst.yaml's vectors under data.root
    embedded = require_vectors(default)
    assert embedded != default and embedded.is_file()  # nothing there: the embedded rows
    full = tmp_path / "glove" / "glove.6B.50d.txt.gz"  # rrn_app.data.prepare.GLOVE_FILE
    full.parent.mkdir()
    full.write_bytes(b"")
    assert require_vectors(default) == full
    default.write_bytes(b"")
    assert require_vectors(default) == default  # the configured file itself wins
