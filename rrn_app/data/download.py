"""`rrn-data get NAME`: download a dataset from its owner's canonical source and convert it to rrn's layout.

The sources are the catalog's (`rrn_app.data.catalog`): https only. `mirror=BASE` fetches the same file
names from another base URL instead (https, or http on this machine only: 127.0.0.1, localhost, ::1), e.g.
a local copy of the canonical files. Redirects are followed only to URLs the same rule allows.

Each file is streamed (with a progress bar on a terminal) into a temporary folder under the data root, its
length checked against the server's Content-Length and, for archives whose size and sha256 are published
(`KNOWN_ARCHIVES`), against those before it is opened; then `rrn_app.data.prepare` converts it, checks the
converted files against the checksums rrn knows and moves them into place. Any failure (no network, a
timeout, a server closing mid-file, a checksum mismatch) is a one-line error saying how to retry, and leaves
neither a partial file nor a partial dataset. Every network call has a timeout (`TIMEOUT_S`), so nothing hangs.
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rrn_app.data import prepare
from rrn_app.data.catalog import Dataset, get_dataset
from rrn_app.option_checks import UserError

TIMEOUT_S = 30.0   # per connection attempt and per read: a silent server fails within this
MAX_BYTES = 2_000_000_000   # no canonical file is larger (glove.6B.zip: 822 MB); a server sending more is refused
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
ATIS_FILES = tuple(f"{split}/{name}" for split in ("train", "valid", "test") for name in ("seq.in", "seq.out", "label"))


@dataclass(frozen=True)
class Known:
    """A canonical archive's published size (bytes) and sha256."""

    size: int
    sha256: str


# Archive checksums published by others and agreeing across independent sources (file name -> Known):
# trainDevTestTrees_PTB.zip as pinned by the Julia model zoo and by a Python benchmark's download table;
# aclImdb_v1.tar.gz as pinned by scikit-learn-style fetchers, MLDatasets.jl and Hugging Face's imdb card
# (size: the Content-Length Stanford's server reports, in many logs). The other sources have no published
# checksum we could confirm: their converted files are checked instead (catalog sha256).
KNOWN_ARCHIVES: dict[str, Known] = {
    "trainDevTestTrees_PTB.zip": Known(789_539, "5c613a4f673fc74097d523a2c83f38e0cc462984d847b82c7aaf36b01cbbbfcc"),
    "aclImdb_v1.tar.gz": Known(84_125_825, "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"),
}


class DownloadError(UserError):
    """A download failed or was refused; the message says how to retry."""


def downloads(dataset: Dataset) -> list[tuple[str, str]]:
    """(canonical URL, file name in the staging folder) of each file `dataset` is made from."""
    if dataset.name == "atis":   # nine raw files under one folder URL
        base = dataset.sources[0].rstrip("/") + "/"
        return [(base + name, name) for name in ATIS_FILES]
    return [(url, urllib.parse.unquote(url.rsplit("/", 1)[1])) for url in dataset.sources]


def mirrored(url: str, dataset: Dataset, mirror: str) -> str:
    """`url` fetched from `mirror` instead: the mirror's base plus the file's name (ATIS: plus split/name)."""
    base = mirror.rstrip("/") + "/"
    if dataset.name == "atis":
        return base + url[len(dataset.sources[0].rstrip("/")) + 1:]
    return base + url.rsplit("/", 1)[1]


def check_url(url: str, what: str = "URL") -> None:
    """https anywhere, or http to this machine only; anything else is refused."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return
    raise DownloadError(f"refusing to download {url}: the {what} must be https:// (plain http only for this "
                        f"machine: {', '.join(sorted(LOOPBACK_HOSTS))}).")


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to a URL `check_url` allows (never from https down to http elsewhere)."""

    def redirect_request(self, request, file, code, message, headers, new_url):
        check_url(new_url, "redirect target")
        return super().redirect_request(request, file, code, message, headers, new_url)


def _progress(total: int | None, label: str):
    """A rich progress bar on stderr (shown on a terminal only)."""
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn,
                               TextColumn)

    console = Console(stderr=True)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                        TimeRemainingColumn(), console=console, transient=True, disable=not console.is_terminal)
    return progress, progress.add_task(label, total=total)


def fetch(url: str, destination: Path, known: Known | None, retry: str) -> None:
    """Stream `url` into `destination` (a new file), checking its length and, if `known`, its size and sha256."""
    check_url(url)
    opener = urllib.request.build_opener(_CheckedRedirects())
    request = urllib.request.Request(url, headers={"User-Agent": "rrn-data"})
    received, digest, total = 0, hashlib.sha256(), None
    try:
        with opener.open(request, timeout=TIMEOUT_S) as response, open(destination, "xb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if known is not None and total is not None and total != known.size:
                raise DownloadError(f"{url} is {total:,} bytes, not the canonical {known.size:,}; refusing it "
                                    f"(nothing was written). {retry}")
            limit = known.size if known is not None else (total if total is not None else MAX_BYTES)
            progress, task = _progress(total, destination.name)
            with progress:
                while block := response.read(1 << 16):
                    received += len(block)
                    if received > limit:
                        raise DownloadError(f"{url} sent more than the {limit:,} bytes expected; refusing it "
                                            f"(nothing was written). {retry}")
                    out.write(block)
                    digest.update(block)
                    progress.update(task, advance=len(block))
    except DownloadError:
        raise
    except urllib.error.HTTPError as error:
        raise DownloadError(f"could not download {url}: HTTP {error.code} {error.reason}. Nothing was written. "
                            f"{retry}") from None
    except (urllib.error.URLError, http.client.HTTPException, socket.timeout, TimeoutError, ConnectionError,
            OSError) as error:
        reason = getattr(error, "reason", None) or error
        where = f" after {received:,} of {total:,} bytes" if total else (f" after {received:,} bytes" if received else "")
        raise DownloadError(f"could not download {url}{where} ({type(error).__name__}: {reason}). Nothing was "
                            f"written. {retry}") from None
    if total is not None and received != total:
        raise DownloadError(f"download of {url} was cut off after {received:,} of {total:,} bytes. Nothing was "
                            f"written. {retry}")
    if known is not None and (received != known.size or digest.hexdigest() != known.sha256):
        raise DownloadError(f"{url} ({received:,} bytes) has sha256 {digest.hexdigest()}, not the canonical "
                            f"{known.sha256} ({known.size:,} bytes); refusing it (nothing was written). {retry}")


def already_there(dataset: Dataset, root: Path) -> bool:
    """Whether every layout file of `dataset` is under `root` with the checksum rrn knows."""
    files = [prepare.GLOVE_FILE] if dataset.name == "glove" else list(dataset.files)
    known = prepare.expected_sha256(dataset)
    for relative in files:
        path = root / relative
        if not path.is_file():
            return False
        expected = known.get(relative)
        if expected is not None and prepare.sha256_of(path) != expected:
            content = prepare.CONTENT_SHA256.get(relative)
            if content is None or prepare.sha256_of(path, expand=True) != content:
                return False
    return True


def get(name: str, root: Path, mirror: str | None = None) -> Path:
    """Download dataset `name` (from `mirror` if given) and convert it into rrn's layout under `root`.

    Returns the dataset's folder. A dataset already there with the known checksums is left as it is.
    """
    dataset = get_dataset(name)
    root = Path(root)
    if mirror is not None:
        check_url(mirror, "mirror")
    command = f"rrn-data get {name}" + (f" root={root}" if str(root) != "data" else "") + (
        f" mirror={mirror}" if mirror else "")
    retry = f"Run `{command}` again to retry."
    if already_there(dataset, root):
        print(f"{name}: already in {root / dataset.folder} (checksums match); nothing to do.")
        return root / dataset.folder
    with prepare.staging(root, name) as stage:
        files = []
        for url, file_name in downloads(dataset):
            source_url = mirrored(url, dataset, mirror) if mirror else url
            destination = stage / "download" / file_name
            destination.parent.mkdir(parents=True, exist_ok=True)
            print(f"{name}: downloading {source_url}", flush=True)
            fetch(source_url, destination, KNOWN_ARCHIVES.get(file_name), retry)
            files.append(destination)
        source = stage / "download" if len(files) > 1 else files[0]
        origin = mirror or dataset.sources[0]
        written = prepare.convert_into_root(name, source, root, stage, origin, retry)
    print(f"{name}: wrote {', '.join(written)} under {root}")
    return root / dataset.folder
