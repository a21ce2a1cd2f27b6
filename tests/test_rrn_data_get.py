"""`rrn-data get` and `rrn-data prepare`: from the owners' canonical files to the layout the loaders read.

There is no network in the tests: a real HTTP server on 127.0.0.1, started here, serves archives in the
canonical layouts (Stanford's zip and tar.gz, MiuLab's raw ATIS files, Mikolov's tgz, the music pickles),
built by the tests from the small samples in tests/fixtures/ and the embedded copies, and, with
RRN_DATA_ROOT set, from the full data (then the converted files must match the catalog's checksums exactly).
Samples are not the canonical releases, so those tests swap in the checksums of the samples themselves:
the checks still run and must pass.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import pickle
import shutil
import socket
import tarfile
import threading
import time
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from helpers import FIXTURES, FULL_DATA, NEEDS_FULL_DATA, run_cli
from rrn_app import safe_pickle
from rrn_app.data import cli, download, prepare
from rrn_app.data.catalog import embedded_path, get_dataset
from rrn_app.option_checks import UserError

SAMPLE_LINES = {"train": 40, "dev": 12, "test": 15}   # SST trees per split in the sample archive


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; /cut/<file> sends the full Content-Length but closes halfway; /endless/ sends 200 kB
    with no length; /redirect/ points elsewhere."""

    def log_message(self, *arguments):
        pass

    def do_GET(self):
        if self.path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", "http://example.com/trainDevTestTrees_PTB.zip")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/endless/"):   # no Content-Length: the body ends when the connection closes
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"z" * 200_000)
            self.close_connection = True
            return
        if self.path.startswith("/cut/"):
            content = (Path(self.directory) / self.path[len("/cut/"):]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content[: len(content) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path, monkeypatch):
    """(folder it serves, base URL): a threaded HTTP server on 127.0.0.1, shut down after the test."""
    folder = tmp_path / "served"
    folder.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    monkeypatch.setattr(download, "TIMEOUT_S", 10.0)   # a stuck test fails in seconds, never hangs
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def trust(monkeypatch, dataset: str, expected: dict[str, bytes], archives: dict[str, bytes] | None = None):
    """Make the samples' own checksums the known ones (converted files, and archives if given)."""
    known = {relative: sha256(content) for relative, content in expected.items()}
    original = prepare.expected_sha256
    monkeypatch.setattr(prepare, "expected_sha256",
                        lambda entry: known if entry.name == dataset else original(entry))
    monkeypatch.setattr(download, "KNOWN_ARCHIVES", {name: download.Known(len(content), sha256(content))
                                                     for name, content in (archives or {}).items()})


def assert_no_leftovers(root: Path):
    """No staging folder (.rrn-data-*) and no partial file anywhere under the root."""
    assert not root.exists() or not list(root.glob(".rrn-data-*")), list(root.iterdir())


def rrn_data(*arguments) -> None:
    """`rrn-data ARGUMENTS` in this process (so the swapped checksums apply)."""
    cli.run([str(argument) for argument in arguments])


# ---- canonical layouts, built from samples -----------------------------------------------------------------

def embedded_text(name: str, relative: str) -> str:
    with gzip.open(embedded_path(name, relative), "rt", encoding="utf-8", newline="") as file:
        return file.read()


def sst_sample() -> dict[str, bytes]:
    """sst/{train,dev,test}.txt: the first trees of each split of the embedded SST."""
    return {f"sst/{split}.txt": "".join(embedded_text("sst", f"sst/{split}.txt").splitlines(True)[:count]).encode()
            for split, count in SAMPLE_LINES.items()}


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def tar_of(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def imdb_records(root: Path, split: str) -> list[dict]:
    with gzip.open(root / "imdb" / f"{split}.jsonl.gz", "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def acl_imdb_tree(root: Path) -> dict[str, bytes]:
    """aclImdb/{train,test}/{neg,pos}/<n>_<rating>.txt and train/unsup/<n>_0.txt from rrn-layout IMDB files,
    in a shuffled member order (the converter must sort)."""
    members = {}
    for split in ("train", "test", "unsup"):
        for record in imdb_records(root, split):
            folder = "train/unsup" if split == "unsup" else f"{split}/{('neg', 'pos')[record['label']]}"
            members[f"aclImdb/{folder}/{record['id']}.txt"] = record["text"].encode("utf-8")
    order = np.random.default_rng(0).permutation(len(members))
    names = list(members)
    return {"aclImdb/README": b"Large Movie Review Dataset v1.0\n", **{names[i]: members[names[i]] for i in order}}


def ptb_archive(root: Path) -> dict[str, bytes]:
    return {f"./simple-examples/data/ptb.char.{split}.txt": (root / "ptb_char" / f"ptb.char.{split}.txt").read_bytes()
            for split in ("train", "valid", "test")} | {"./simple-examples/README": b"simple examples\n"}


def jsb_sample() -> dict:
    """The first chorales of each split of the embedded JSB Chorales, as rrn's pickle holds them."""
    packed = embedded_path("jsb_chorales", "polyphonic/jsb_chorales.pickle")
    full = safe_pickle.loads(gzip.decompress(packed.read_bytes()), packed)
    return {split: full[split][:count] for split, count in (("train", 6), ("valid", 3), ("test", 3))}


def canonical_style(splits: dict) -> bytes:
    """A pickle like the canonical copies: notes as floats, steps as numpy arrays, pieces as tuples."""
    odd = {split: [tuple(np.array([float(note) for note in step]) for step in piece) for piece in pieces]
           for split, pieces in splits.items()}
    return pickle.dumps(odd, protocol=2)


def read_bytes_under(root: Path, relatives) -> dict[str, bytes]:
    return {relative: (root / relative).read_bytes() for relative in relatives}


# ---- get: every dataset's canonical layout becomes the loaders' layout ---------------------------------------

def test_get_sst_from_the_stanford_zip(server, tmp_path, monkeypatch):
    folder, url = server
    expected = sst_sample()
    archive = zip_of({"trees/" + relative.split("/")[1]: content for relative, content in expected.items()})
    (folder / "trainDevTestTrees_PTB.zip").write_bytes(archive)
    trust(monkeypatch, "sst", expected, {"trainDevTestTrees_PTB.zip": archive})
    root = tmp_path / "data"
    rrn_data("get", "sst", f"root={root}", f"mirror={url}")
    assert read_bytes_under(root, expected) == expected
    assert_no_leftovers(root)

    from rrn_app.data.sst import SSTDataModule
    data = SSTDataModule(root=str(root), train_on="sentences", cache_dir=str(tmp_path / "cache"))
    assert data.folder == root / "sst"   # read from the root, not the embedded copy
    data.setup()
    assert {split: len(rows) for split, rows in data.splits.items()} == {"train": 40, "validation": 12, "test": 15}


def rrn_gzip(name: str, content: bytes) -> bytes:
    """How rrn writes its .gz files: level 9, no time stamp, the inner file's name; the same content, the same bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename=name, mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as file:
        file.write(content)
    return buffer.getvalue()


def imdb_expected() -> dict[str, bytes]:
    """imdb/{train,test,unsup}.jsonl.gz as rrn writes them from the fixtures' reviews."""
    return {f"imdb/{split}.jsonl.gz": rrn_gzip(f"{split}.jsonl", gzip.decompress(
                (FIXTURES / "imdb" / f"{split}.jsonl.gz").read_bytes()))
            for split in ("train", "test", "unsup")}


def test_get_imdb_from_the_aclimdb_tarball(server, tmp_path, monkeypatch):
    folder, url = server
    archive = tar_of(acl_imdb_tree(FIXTURES))
    (folder / "aclImdb_v1.tar.gz").write_bytes(archive)
    expected = imdb_expected()
    trust(monkeypatch, "imdb", expected, {"aclImdb_v1.tar.gz": archive})
    root = tmp_path / "data"
    rrn_data("get", "imdb", f"root={root}", f"mirror={url}")
    assert read_bytes_under(root, expected) == expected   # negatives then positives, each by number; same records
    assert_no_leftovers(root)

    from rrn_app.data.imdb import IMDBDataModule
    data = IMDBDataModule(root=str(root), validation_size=20, cache_dir=str(tmp_path / "cache"))
    data.setup()
    assert {split: len(rows) for split, rows in data.splits.items()} == {"train": 180, "validation": 20, "test": 100}


def test_get_atis_from_the_miulab_files(server, tmp_path, monkeypatch):
    folder, url = server
    shutil.copytree(FIXTURES / "atis", folder / "atis")
    expected = read_bytes_under(FIXTURES, [f"atis/{name}" for name in download.ATIS_FILES])
    trust(monkeypatch, "atis", expected)
    root = tmp_path / "data"
    rrn_data("get", "atis", f"root={root}", f"mirror={url}atis/")
    assert read_bytes_under(root, expected) == expected
    assert_no_leftovers(root)

    from rrn_app.data.atis import ATISDataModule
    data = ATISDataModule(root=str(root), cache_dir=str(tmp_path / "cache"))
    data.setup()
    lines = {split: len((FIXTURES / "atis" / split / "label").read_text().splitlines())
             for split in ("train", "valid", "test")}
    assert {split: len(rows) for split, rows in data.splits.items()} == {
        "train": lines["train"], "validation": lines["valid"], "test": lines["test"]}


def test_get_tinyshakespeare_and_ptb_char(server, tmp_path, monkeypatch):
    folder, url = server
    text = embedded_text("tinyshakespeare", "tinyshakespeare/input.txt")[:20000].encode()
    (folder / "input.txt").write_bytes(text)
    archive = tar_of(ptb_archive(FIXTURES))
    (folder / "simple-examples.tgz").write_bytes(archive)
    ptb = read_bytes_under(FIXTURES, [f"ptb_char/ptb.char.{split}.txt" for split in ("train", "valid", "test")])
    trust(monkeypatch, "tinyshakespeare", {"tinyshakespeare/input.txt": text})
    root = tmp_path / "data"
    rrn_data("get", "tinyshakespeare", f"root={root}", f"mirror={url}")
    trust(monkeypatch, "ptb_char", ptb)
    rrn_data("get", "ptb_char", f"root={root}", f"mirror={url}")
    assert (root / "tinyshakespeare" / "input.txt").read_bytes() == text
    assert read_bytes_under(root, ptb) == ptb
    assert_no_leftovers(root)

    from rrn_app.data.char_lm import CharLMDataModule
    shakespeare = CharLMDataModule(root=str(root), dataset="tinyshakespeare", batch_size=2, seq_length=10)
    assert shakespeare.root == root
    shakespeare.setup()
    assert "".join(shakespeare.texts.values()) == text.decode()
    characters = CharLMDataModule(root=str(root), dataset="ptb_char", batch_size=2, seq_length=10)
    characters.setup()
    symbols_and_line_ends = {split: sum(len(line.split()) + 1 for line in ptb[f"ptb_char/ptb.char.{name}.txt"]
                                        .decode().split("\n") if line.split())
                             for split, name in (("train", "train"), ("validation", "valid"), ("test", "test"))}
    assert {split: len(text) for split, text in characters.texts.items()} == symbols_and_line_ends


def test_get_jsb_chorales_normalises_a_canonical_style_pickle(server, tmp_path, monkeypatch):
    folder, url = server
    splits = jsb_sample()
    (folder / "JSB Chorales.pickle").write_bytes(canonical_style(splits))
    expected = {"polyphonic/jsb_chorales.pickle": pickle.dumps(splits, protocol=2)}
    trust(monkeypatch, "jsb_chorales", expected)
    root = tmp_path / "data"
    rrn_data("get", "jsb_chorales", f"root={root}", f"mirror={url}")
    assert read_bytes_under(root, expected) == expected   # plain ints, sorted, protocol 2: rrn's layout exactly
    assert_no_leftovers(root)

    from rrn_app.data.music import MusicDataModule
    data = MusicDataModule(root=str(root), dataset="jsb_chorales")
    assert data.path == root / "polyphonic" / "jsb_chorales.pickle"
    data.setup()
    assert {split: len(rolls) for split, rolls in data.pieces.items()} == {"train": 6, "validation": 3, "test": 3}


def test_get_glove_keeps_the_50d_file_gzipped(server, tmp_path, monkeypatch):
    """glove.6B.zip's glove.6B.50d.txt becomes glove/glove.6B.50d.txt.gz (every row, unchanged), which SST reads."""
    folder, url = server
    rows = embedded_text("glove", "glove/glove.6B.50d.filtered.txt.gz").splitlines(True)[:300]
    text = "".join(rows).encode()
    (folder / "glove.6B.zip").write_bytes(zip_of({"glove.6B.50d.txt": text, "glove.6B.100d.txt": b"the 0.1\n"}))
    trust(monkeypatch, "glove", {})
    root = tmp_path / "data"
    rrn_data("get", "glove", f"root={root}", f"mirror={url}")
    assert gzip.decompress((root / prepare.GLOVE_FILE).read_bytes()) == text
    assert sorted(path.name for path in (root / "glove").iterdir()) == ["glove.6B.50d.txt.gz"]

    from rrn_app.data.text import Vocabulary, load_vectors
    words = [row.split(" ", 1)[0] for row in rows[:5]]
    vocabulary = Vocabulary.build([words], 1)
    matrix, found = load_vectors(root / prepare.GLOVE_FILE, vocabulary, 50)
    assert found == 5 and matrix.shape == (len(vocabulary), 50)


def test_the_music_loader_reads_a_canonical_pickle_under_its_own_name(tmp_path):
    splits = jsb_sample()
    (tmp_path / "polyphonic").mkdir()
    (tmp_path / "polyphonic" / "JSB Chorales.pickle").write_bytes(canonical_style(splits))
    from rrn_app.data.music import MusicDataModule
    data = MusicDataModule(root=str(tmp_path), dataset="jsb_chorales")
    assert data.path.name == "JSB Chorales.pickle"
    data.setup()
    assert [len(roll) for roll in data.pieces["train"]] == [len(piece) for piece in splits["train"]]


def test_get_again_with_the_dataset_in_place_downloads_nothing(server, tmp_path, monkeypatch, capsys):
    folder, url = server
    expected = {"tinyshakespeare/input.txt": b"First Citizen:\nBefore we proceed any further, hear me speak.\n" * 50}
    (folder / "input.txt").write_bytes(expected["tinyshakespeare/input.txt"])
    trust(monkeypatch, "tinyshakespeare", expected)
    root = tmp_path / "data"
    rrn_data("get", "tinyshakespeare", f"root={root}", f"mirror={url}")
    (folder / "input.txt").unlink()   # a second download would now fail
    rrn_data("get", "tinyshakespeare", f"root={root}", f"mirror={url}")
    assert "already in" in capsys.readouterr().out


@pytest.mark.slow
def test_get_on_the_full_data_reproduces_it_byte_for_byte(server, tmp_path, monkeypatch):
    """Canonical archives rebuilt from RRN_DATA_ROOT: every converted file has the catalog's sha256."""
    if not FULL_DATA:
        pytest.skip(NEEDS_FULL_DATA)
    full = Path(FULL_DATA)
    folder, url = server
    sst = {f"trees/{split}.txt": (full / "sst" / f"{split}.txt").read_bytes() for split in ("train", "dev", "test")}
    (folder / "trainDevTestTrees_PTB.zip").write_bytes(zip_of(sst))
    shutil.copytree(full / "atis", folder / "atis")
    shutil.copy(full / "tinyshakespeare" / "input.txt", folder / "input.txt")
    (folder / "simple-examples.tgz").write_bytes(tar_of(ptb_archive(full)))
    mat = full / "polyphonic" / "orig_mat" / "JSB_Chorales.mat"   # the .mat version where the root keeps it
    shutil.copy(mat if mat.is_file() else full / "polyphonic" / "jsb_chorales.pickle", folder / "JSB Chorales.pickle")
    (folder / "aclImdb_v1.tar.gz").write_bytes(tar_of(acl_imdb_tree(full), mode="w:gz"))
    monkeypatch.setattr(download, "KNOWN_ARCHIVES", {})   # rebuilt archives are not Stanford's bytes
    root = tmp_path / "data"
    for name in ("sst", "atis", "tinyshakespeare", "ptb_char", "jsb_chorales", "imdb"):
        rrn_data("get", name, f"root={root}", f"mirror={url}atis/" if name == "atis" else f"mirror={url}")
        for relative, known in get_dataset(name).sha256.items():
            assert hashlib.sha256((root / relative).read_bytes()).hexdigest() == known, relative
    assert_no_leftovers(root)


# ---- refusals: nothing is left behind, and the one line says how to retry ----------------------------------

def test_a_checksum_mismatch_is_refused_and_leaves_nothing(server, tmp_path):
    """With the real known checksums: a zip of other trees, then an archive of the wrong size."""
    folder, url = server
    root = tmp_path / "data"
    (folder / "input.txt").write_bytes(b"not Shakespeare\n")
    result = run_cli("rrn-data", "get", "tinyshakespeare", f"root={root}", f"mirror={url}", timeout=120)
    assert result.returncode != 0
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "sha256" in message and "rrn-data get tinyshakespeare" in message
    assert not (root / "tinyshakespeare").exists()
    assert_no_leftovers(root)

    (folder / "trainDevTestTrees_PTB.zip").write_bytes(zip_of({"trees/train.txt": b"(2 x)\n"}))
    result = run_cli("rrn-data", "get", "sst", f"root={root}", f"mirror={url}", timeout=120)
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    assert "not the canonical 789,539" in result.stderr and "again to retry" in result.stderr
    assert not (root / "sst").exists()
    assert_no_leftovers(root)


def test_an_interrupted_download_leaves_no_dataset_and_says_how_to_retry(server, tmp_path, monkeypatch):
    folder, url = server
    content = b"x" * 300_000
    (folder / "input.txt").write_bytes(content)
    trust(monkeypatch, "tinyshakespeare", {"tinyshakespeare/input.txt": content})
    root = tmp_path / "data"
    with pytest.raises(UserError) as error:
        download.get("tinyshakespeare", root, mirror=url + "cut/")
    message = str(error.value)
    assert "\n" not in message and "of 300,000 bytes" in message
    assert f"rrn-data get tinyshakespeare root={root} mirror={url}cut/` again to retry" in message
    assert not root.exists()   # made for the download, removed with it
    assert_no_leftovers(root)


def test_more_bytes_than_the_known_size_are_refused(server, tmp_path, monkeypatch):
    _, url = server
    monkeypatch.setattr(download, "KNOWN_ARCHIVES", {"trainDevTestTrees_PTB.zip": download.Known(50_000, "0" * 64)})
    with pytest.raises(UserError, match=r"sent more than the 50,000 bytes expected; refusing it"):
        download.get("sst", tmp_path / "data", mirror=url + "endless/")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("mirror", ["http://example.com/data/", "ftp://127.0.0.1/data/", "file:///etc/"])
def test_a_plain_http_or_other_url_off_this_machine_is_refused(mirror, tmp_path):
    result = run_cli("rrn-data", "get", "sst", f"root={tmp_path / 'data'}", f"mirror={mirror}", timeout=60)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "must be https://" in result.stderr
    assert not (tmp_path / "data").exists()


def test_a_redirect_to_plain_http_elsewhere_is_refused(server, tmp_path):
    _, url = server
    with pytest.raises(UserError, match=r"redirect target must be https://"):
        download.get("sst", tmp_path / "data", mirror=url + "redirect/")
    assert_no_leftovers(tmp_path / "data")


def test_a_server_that_never_answers_times_out(tmp_path, monkeypatch):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)   # the kernel accepts the connection; nothing ever answers
    monkeypatch.setattr(download, "TIMEOUT_S", 1.0)
    started = time.monotonic()
    try:
        with pytest.raises(UserError, match=r"could not download .*timed out.*again to retry"):
            download.get("tinyshakespeare", tmp_path / "data", mirror=f"http://127.0.0.1:{silent.getsockname()[1]}/")
    finally:
        silent.close()
    assert time.monotonic() - started < 10
    assert not (tmp_path / "data").exists()


def test_an_unreachable_host_fails_fast_with_one_line(tmp_path):
    started = time.monotonic()
    result = run_cli("rrn-data", "get", "tinyshakespeare", f"root={tmp_path / 'data'}",
                     "mirror=https://rrn-test.invalid/", timeout=120)   # .invalid never resolves (RFC 2606)
    assert time.monotonic() - started < 60
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    assert "could not download https://rrn-test.invalid/input.txt" in result.stderr and "again to retry" in result.stderr
    assert not (tmp_path / "data" / "tinyshakespeare").exists()


# ---- prepare: the same conversions from a file downloaded by hand --------------------------------------------

def test_prepare_music_from_a_mat_file(tmp_path, monkeypatch):
    splits = jsb_sample()

    def roll(piece):
        matrix = np.zeros((len(piece), 88), dtype=np.uint8)
        for frame, notes in enumerate(piece):
            matrix[frame, [note - 21 for note in notes]] = 1
        return matrix

    cells = {}
    for split, key in (("train", "traindata"), ("valid", "validdata"), ("test", "testdata")):
        cell = np.empty((1, len(splits[split])), dtype=object)
        for number, piece in enumerate(splits[split]):
            cell[0, number] = roll(piece)
        cells[key] = cell
    scipy.io.savemat(tmp_path / "JSB_Chorales.mat", cells)
    expected = {"polyphonic/jsb_chorales.pickle": pickle.dumps(splits, protocol=2)}
    trust(monkeypatch, "jsb_chorales", expected)
    root = tmp_path / "data"
    rrn_data("prepare", "jsb_chorales", tmp_path / "JSB_Chorales.mat", f"root={root}")
    assert read_bytes_under(root, expected) == expected

    from rrn_app.data.music import MusicDataModule, load_pieces
    converted = load_pieces(root / "polyphonic" / "jsb_chorales.pickle")
    canonical_root = tmp_path / "canonical"   # the loader reads the .mat itself too, under its own name
    (canonical_root / "polyphonic").mkdir(parents=True)
    shutil.copy(tmp_path / "JSB_Chorales.mat", canonical_root / "polyphonic")
    data = MusicDataModule(root=str(canonical_root), dataset="jsb_chorales")
    assert data.path == canonical_root / "polyphonic" / "JSB_Chorales.mat"
    data.setup()
    assert all(torch_equal(data.pieces[split], converted[split]) for split in converted)


def torch_equal(left, right) -> bool:
    return len(left) == len(right) and all(bool((a == b).all()) and a.shape == b.shape for a, b in zip(left, right))


def test_prepare_the_real_jsb_mat_gives_the_pickle_rrn_reads(tmp_path):
    if not FULL_DATA:
        pytest.skip(NEEDS_FULL_DATA)
    full = Path(FULL_DATA) / "polyphonic"
    if not (full / "orig_mat" / "JSB_Chorales.mat").is_file():
        pytest.skip("this data root keeps no polyphonic/orig_mat/JSB_Chorales.mat")
    rrn_data("prepare", "jsb_chorales", full / "orig_mat" / "JSB_Chorales.mat", f"root={tmp_path}")
    assert (tmp_path / "polyphonic" / "jsb_chorales.pickle").read_bytes() == (full / "jsb_chorales.pickle").read_bytes()


def test_prepare_imdb_from_a_canonical_layout_tree_tarball(tmp_path, monkeypatch):
    (tmp_path / "aclImdb_v1.tar.gz").write_bytes(tar_of(acl_imdb_tree(FIXTURES)))
    expected = imdb_expected()
    trust(monkeypatch, "imdb", expected)
    root = tmp_path / "data"
    rrn_data("prepare", "imdb", tmp_path / "aclImdb_v1.tar.gz", f"root={root}")
    assert read_bytes_under(root, expected) == expected
    assert_no_leftovers(root)


def test_prepare_from_an_unpacked_folder_and_a_wrong_file(tmp_path, monkeypatch):
    folder = tmp_path / "unpacked"
    for name, content in acl_imdb_tree(FIXTURES).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    expected = imdb_expected()
    trust(monkeypatch, "imdb", expected)
    root = tmp_path / "data"
    rrn_data("prepare", "imdb", folder / "aclImdb", f"root={root}")
    assert read_bytes_under(root, expected) == expected

    (tmp_path / "other.zip").write_bytes(zip_of({"readme.txt": b"hello"}))
    with pytest.raises(UserError, match=r"other.zip holds no SST train trees .* trainDevTestTrees_PTB.zip"):
        rrn_data("prepare", "sst", tmp_path / "other.zip", f"root={root}")
    assert not (root / "sst").exists()
    assert_no_leftovers(root)


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_prepare_from_a_truncated_archive_is_a_clear_error(kind, tmp_path):
    members = {"trees/" + relative.split("/")[1]: content for relative, content in sst_sample().items()}
    whole = tar_of(members) if kind == "tar.gz" else zip_of(members)
    archive = tmp_path / f"trainDevTestTrees_PTB.{kind}"
    archive.write_bytes(whole[: len(whole) // 2])
    result = run_cli("rrn-data", "prepare", "sst", str(archive), f"root={tmp_path / 'data'}", timeout=120)
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"could not read the archive {archive}" in result.stderr and "Download it again" in result.stderr
    assert not (tmp_path / "data").exists()
