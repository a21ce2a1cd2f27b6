"""Make the small real datasets that ship inside the package (rrn_app/data/embedded/) from a full data root.

    python tools/make_embedded.py SOURCE_ROOT

SOURCE_ROOT holds the datasets in the layout rrn reads (sst/, glove/, tinyshakespeare/, polyphonic/).
Each embedded file is the gzip (level 9, no name, mtime 0, so the bytes are reproducible) of one file of that
layout: SST's three tree files, Tiny Shakespeare's input.txt and JSB Chorales' pickle byte for byte, and
GloVe's rows for SST's words only (every word of the three splits as rrn_app.data.sst normalises it,
lowercased; rows kept byte for byte, in the file's order). The script then rewrites the checksum table of
each dataset's SOURCE.md (the prose above it is kept).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rrn_app.data.catalog import DATASETS, embedded_path  # noqa: E402
from rrn_app.data.sst import normalise  # noqa: E402

TABLE_START = "## Checksums"


def gzip_bytes(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buffer, mtime=0) as out:
        out.write(data)
    return buffer.getvalue()


def sst_words(source: Path) -> set[str]:
    """Every leaf token of SST's three splits, normalised as the loader does (lowercased)."""
    words = set()
    for name in ("train.txt", "dev.txt", "test.txt"):
        text = (source / "sst" / name).read_text(encoding="utf-8")
        words.update(normalise(token, lowercase=True) for token in re.findall(r"\(\S+ ([^()]+)\)", text))
    return words


def glove_subset(source: Path) -> bytes:
    """The GloVe lines (decompressed, unchanged) whose word is one of SST's."""
    words = sst_words(source)
    with gzip.open(source / "glove" / "glove.6B.50d.filtered.txt.gz", "rb") as lines:
        kept = [line for line in lines if line.split(b" ", 1)[0].decode("utf-8") in words]
    return b"".join(kept)


def expanded_content(source: Path, name: str, relative: str) -> bytes:
    """What the embedded file expands to (the file the loader reads under the data root)."""
    if name == "glove":
        return gzip_bytes(glove_subset(source))  # the loader reads the .gz itself
    return (source / relative).read_bytes()


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit(__doc__)
    source = Path(argv[0])
    for name, dataset in DATASETS.items():
        if not dataset.embedded:
            continue
        rows = []
        for relative in dataset.files:
            content = expanded_content(source, name, relative)
            target = embedded_path(name, relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            packed = content if relative.endswith(".gz") else gzip_bytes(content)
            target.write_bytes(packed)
            rows.append(f"| `{target.name}` | {len(packed):,} | `{hashlib.sha256(packed).hexdigest()}` "
                        f"| `{relative}` | {len(content):,} | `{hashlib.sha256(content).hexdigest()}` |")
            print(f"{target.relative_to(REPO)}: {len(packed):,} bytes -> {relative} ({len(content):,} bytes)")
        note = target.parent / "SOURCE.md"
        prose = note.read_text(encoding="utf-8").split(TABLE_START)[0].rstrip() + "\n\n" if note.exists() else ""
        table = ("| embedded file | bytes | sha256 | expands to | bytes | sha256 |\n| --- | --- | --- | --- | --- | --- |\n"
                 + "\n".join(rows))
        note.write_text(f"{prose}{TABLE_START}\n\nMade by `tools/make_embedded.py`.\n\n{table}\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
