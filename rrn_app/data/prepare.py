"""`rrn-data prepare NAME FILE`: turn a dataset owner's download into the layout rrn's loaders read.

FILE is what the owner publishes (or the folder it unpacks to): Stanford's `trainDevTestTrees_PTB.zip`,
`aclImdb_v1.tar.gz`, `glove.6B.zip`; Mikolov's `simple-examples.tgz`; the MiuLab ATIS folder (or an archive
of it); the Tiny Shakespeare `input.txt`; a Boulanger-Lewandowski music pickle or its `.mat` version.
Archives are read through `rrn_app.data.archives` (every member checked, nothing extracted under its own
name). The converted files are written into a temporary folder under the data root, checked against the
checksums rrn knows (`rrn_app.data.catalog`), and only then moved into place, so a failure leaves no
half-written dataset. `rrn_app.data.download` uses the same conversions after downloading.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from rrn_app.data import archives, music_files
from rrn_app.data.catalog import Dataset, get_dataset
from rrn_app.option_checks import UserError

# The sha256 of what the .gz files of our layout expand to (measured on rrn's copies): gzip's bytes can differ
# between zlib builds, the content cannot.
CONTENT_SHA256 = {
    "imdb/train.jsonl.gz": "45dcf476cf465b36680bd93fe38c863b16902cfbe1f5326e08ebc790b1c3a0eb",
    "imdb/test.jsonl.gz": "4fe43e7ea8a74fcea926813990c82b2721e0302cf357d0bbeb4c8dd60734f9b1",
    "imdb/unsup.jsonl.gz": "0aca5ede3d9d77a80c72ea6606fb6313fcd4b17ddd2a5891734fe8e9a2de16d4",
}
GLOVE_FILE = "glove/glove.6B.50d.txt.gz"   # what `rrn-data get glove` writes: Stanford's 50-d file, all 400k rows

_IMDB_REVIEW = re.compile(r"(?:^|/)(train|test)/(pos|neg|unsup)/(\d+)_(\d+)\.txt$")


def expected_sha256(dataset: Dataset) -> dict[str, str]:
    """Layout file -> the sha256 rrn knows for it (the catalog's)."""
    return dict(dataset.sha256)


@contextlib.contextmanager
def staging(root: Path, name: str) -> Iterator[Path]:
    """A fresh temporary folder under `root` (`.rrn-data-NAME-*`), removed afterwards whatever happens (and
    `root` too if this made it and it is still empty)."""
    made_root = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".rrn-data-{name}-", dir=root))
    except OSError as error:
        raise UserError(f"cannot write to the data root {root}: {error}. Choose another with root=<folder>.") from None
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if made_root and not any(root.iterdir()):
            root.rmdir()


def sha256_of(path: Path, expand: bool = False) -> str:
    digest = hashlib.sha256()
    with (gzip.open(path, "rb") if expand else open(path, "rb")) as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(dataset: Dataset, stage: Path, written: list[str], origin: str, retry: str) -> None:
    """Every written file with a known checksum must match it (a .gz: its bytes or what it expands to)."""
    known = expected_sha256(dataset)
    for relative in written:
        expected = known.get(relative)
        if expected is None:
            continue
        actual = sha256_of(stage / relative)
        if actual == expected:
            continue
        content = CONTENT_SHA256.get(relative)
        if content is not None and relative.endswith(".gz") and sha256_of(stage / relative, expand=True) == content:
            continue
        raise UserError(f"{dataset.name}: {relative} made from {origin} has sha256 {actual}, not the known "
                        f"{expected}; the file is damaged or not the canonical release. Nothing was written. {retry}")


def install(stage: Path, root: Path, written: list[str]) -> None:
    """Move the checked files from the staging folder to their places under `root` (each move is atomic)."""
    for relative in written:
        destination = root / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / relative, destination)


def _write(stage: Path, relative: str, content: bytes) -> str:
    path = stage / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return relative


def _write_gzip(stage: Path, relative: str, content: bytes, level: int = 9) -> str:
    """gzip with no time stamp (mtime 0) and the inner name, so the same content always gives the same bytes."""
    path = stage / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(filename=path.name[: -len(".gz")], mode="wb", fileobj=raw,
                                                  compresslevel=level, mtime=0) as file:
        file.write(content)
    return relative


def _member(source: archives.Source, suffixes: tuple[str, ...], what: str, expected: str) -> bytes:
    """The content of the first of `suffixes` found in `source`, else an error saying what was expected."""
    for suffix in suffixes:
        name = archives.find(source, suffix)
        if name is not None:
            return next(source.files(lambda member: member == name))[1]
    raise UserError(f"{source.path} holds no {what} ({' or '.join(suffixes)}); expected {expected}.")


def _sst(source, stage):
    expected = "Stanford's trainDevTestTrees_PTB.zip (trees/train.txt, trees/dev.txt, trees/test.txt) or its folder"
    return [_write(stage, f"sst/{split}.txt", _member(source, (f"trees/{split}.txt", f"{split}.txt"),
                                                      f"SST {split} trees", expected))
            for split in ("train", "dev", "test")]


def _atis(source, stage):
    expected = "the MiuLab SlotGated-SLU ATIS folder data/atis/ (train/, valid/, test/ with seq.in, seq.out, label)"
    return [_write(stage, f"atis/{split}/{name}", _member(source, (f"atis/{split}/{name}", f"{split}/{name}"),
                                                          f"ATIS {split}/{name}", expected))
            for split in ("train", "valid", "test") for name in ("seq.in", "seq.out", "label")]


def _tinyshakespeare(source, stage):
    if isinstance(source, archives.FileSource):
        return [_write(stage, "tinyshakespeare/input.txt", source.path.read_bytes())]
    return [_write(stage, "tinyshakespeare/input.txt",
                   _member(source, ("tinyshakespeare/input.txt", "input.txt"), "Tiny Shakespeare text",
                           "char-rnn's data/tinyshakespeare/input.txt"))]


def _ptb_char(source, stage):
    expected = "Mikolov's simple-examples.tgz (simple-examples/data/ptb.char.{train,valid,test}.txt) or its data/ folder"
    return [_write(stage, f"ptb_char/ptb.char.{split}.txt",
                   _member(source, (f"data/ptb.char.{split}.txt", f"ptb.char.{split}.txt"), f"ptb.char.{split}.txt",
                           expected))
            for split in ("train", "valid", "test")]


def _glove(source, stage):
    content = _member(source, ("glove.6B.50d.txt",), "50-d GloVe vectors", "Stanford's glove.6B.zip")
    return [_write_gzip(stage, GLOVE_FILE, content, level=6)]


def _imdb(source, stage):
    """aclImdb/{train,test}/{pos,neg}/<n>_<rating>.txt (+ train/unsup) -> imdb/{train,test,unsup}.jsonl.gz."""
    reviews: dict[tuple[str, str], list[tuple[int, int, str]]] = {}
    for name, content in source.files(lambda member: _IMDB_REVIEW.search(member) is not None):
        split, kind, number, rating = _IMDB_REVIEW.search(name).groups()
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError as error:
            raise UserError(f"{source.path}: {name} is not UTF-8 text ({error}). Is the archive damaged?") from None
        reviews.setdefault((split, kind), []).append((int(number), int(rating), text))
    missing = [f"{split}/{kind}" for split in ("train", "test") for kind in ("neg", "pos") if (split, kind) not in reviews]
    if missing:
        raise UserError(f"{source.path} holds no IMDB reviews in {', '.join(missing)}; expected Stanford's "
                        "aclImdb_v1.tar.gz (aclImdb/{train,test}/{neg,pos}/<n>_<rating>.txt) or its aclImdb folder.")
    written = []
    for split in ("train", "test", "unsup"):
        kinds = (("unsup", None),) if split == "unsup" else (("neg", 0), ("pos", 1))
        if split == "unsup" and ("train", "unsup") not in reviews:
            continue   # the labelled splits are all the loader needs
        lines = io.StringIO()
        for kind, label in kinds:
            for number, rating, text in sorted(reviews[("train" if split == "unsup" else split, kind)]):
                record = {"id": f"{number}_{rating}", "text": text}
                if label is not None:
                    record.update(label=label, rating=rating)
                lines.write(json.dumps(record, ensure_ascii=False) + "\n")
        written.append(_write_gzip(stage, f"imdb/{split}.jsonl.gz", lines.getvalue().encode("utf-8")))
    return written


def _music(name: str) -> Callable:
    def convert(source, stage):
        pickle_name, mat_name = music_files.CANONICAL_NAMES[name]
        if not isinstance(source, archives.FileSource):
            raise UserError(f"{source.path}: give the music file itself ({pickle_name}, {mat_name} or {name}.pickle), "
                            "not a folder or an archive.")
        splits = music_files.read_music_file(source.path, f"Get it with `rrn-data get {name}`.")
        relative = f"polyphonic/{name}.pickle"
        (stage / relative).parent.mkdir(parents=True, exist_ok=True)
        music_files.write_pickle(splits, stage / relative)
        return [relative]
    return convert


CONVERTERS: dict[str, Callable[[archives.Source, Path], list[str]]] = {
    "sst": _sst, "imdb": _imdb, "atis": _atis, "tinyshakespeare": _tinyshakespeare, "ptb_char": _ptb_char,
    "glove": _glove, **{name: _music(name) for name in music_files.CANONICAL_NAMES},
}


def convert_into_root(name: str, source_path: Path, root: Path, stage: Path, origin: str, retry: str) -> list[str]:
    """Convert `source_path` in `stage`, check the results, move them under `root`; the files written (relative)."""
    dataset = get_dataset(name)
    converter = CONVERTERS.get(name)
    if converter is None:
        raise UserError(f"rrn-data cannot convert {name!r} (it converts {', '.join(CONVERTERS)}).")
    output = stage / "out"
    output.mkdir()
    written = converter(archives.open_source(source_path), output)
    verify(dataset, output, written, origin, retry)
    install(output, root, written)
    return written


def prepare(name: str, file: Path, root: Path) -> Path:
    """Convert the owner's download `file` of dataset `name` into rrn's layout under `root`; the dataset's folder."""
    dataset = get_dataset(name)
    file, root = Path(file), Path(root)
    if not file.exists():
        raise UserError(f"file not found: {file}. Download {', '.join(dataset.sources)} first, or use "
                        f"`rrn-data get {name}`.")
    with staging(root, name) as stage:
        written = convert_into_root(name, file, root, stage, str(file), f"Check the file, or use `rrn-data get {name}`.")
    print(f"{name}: wrote {', '.join(written)} under {root}")
    return root / dataset.folder
