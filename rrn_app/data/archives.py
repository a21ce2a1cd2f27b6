"""Reading the files inside a downloaded archive (tar, tar.gz, zip), a folder or a single file, safely.

`open_source(path)` checks every member of an archive before anything is read from it: a member whose name
is absolute or holds `..`, a link pointing outside the archive's folder, or a device/FIFO entry is refused
with a one-line `UserError` naming the archive and the member. Members are read into memory by the caller
(`files()`); nothing is ever extracted under the member's own name, so no archive can write anywhere; rrn
writes only the files of its own layout, under names it chooses.
"""

from __future__ import annotations

import abc
import posixpath
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from rrn_app.option_checks import UserError


class UnsafeArchive(UserError):
    """An archive member would land outside the folder it is extracted to (or is not a plain file/folder)."""


def _refuse(archive: Path, member: str, why: str) -> UnsafeArchive:
    return UnsafeArchive(f"{archive}: refusing member {member!r}: {why}; nothing was extracted. The archive may be "
                         "crafted or damaged: get it again from the dataset's source (rrn-data list shows it).")


def check_name(archive: Path, name: str) -> str:
    """`name` as a clean relative posix path, or UnsafeArchive if it is absolute or climbs out with `..`."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise _refuse(archive, name, "absolute path")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise _refuse(archive, name, "'..' leads outside the target folder")
    return posixpath.normpath(name.replace("\\", "/"))


def check_link(archive: Path, name: str, target: str, hard: bool) -> None:
    """A link member must point inside the archive's folder (hard links: relative to the top, symlinks: to its own folder)."""
    if target.startswith(("/", "\\")) or (len(target) > 1 and target[1] == ":"):
        raise _refuse(archive, name, f"link to the absolute path {target!r}")
    base = "" if hard else posixpath.dirname(name)
    resolved = posixpath.normpath(posixpath.join(base, target.replace("\\", "/")))
    if resolved == ".." or resolved.startswith("../"):
        raise _refuse(archive, name, f"link to {target!r}, outside the target folder")


class Source(abc.ABC):
    """The regular files of an archive, a folder or one file, by relative posix name (see `open_source`)."""

    def __init__(self, path: Path):
        self.path = path

    @abc.abstractmethod
    def names(self) -> list[str]:
        """The regular files' names."""

    @abc.abstractmethod
    def files(self, wanted: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
        """(name, content) of each regular file whose name `wanted` accepts, in archive order, read once."""


_BROKEN = (tarfile.TarError, zipfile.BadZipFile, zlib.error, OSError, EOFError)   # a truncated or damaged archive


def _unreadable(path: Path, error: Exception) -> UserError:
    return UserError(f"could not read the archive {path} ({type(error).__name__}: {error}). Is the download "
                     "complete? Download it again.")


class _ListedArchive(Source):
    """An archive whose members were checked and listed once, when it was opened."""

    def __init__(self, path: Path):
        super().__init__(path)
        self._names: list[str] = []

    def names(self) -> list[str]:
        return list(self._names)


class TarSource(_ListedArchive):
    def __init__(self, path: Path):
        super().__init__(path)
        try:
            with tarfile.open(path, "r:*") as archive:
                for member in archive:
                    name = check_name(path, member.name)
                    if member.issym() or member.islnk():
                        check_link(path, member.name, member.linkname, hard=member.islnk())
                    elif not (member.isfile() or member.isdir()):
                        raise _refuse(path, member.name, "a device, FIFO or other special file")
                    elif member.isfile():
                        self._names.append(name)
        except _BROKEN as error:
            raise _unreadable(path, error) from None

    def files(self, wanted):
        try:
            with tarfile.open(self.path, "r:*") as archive:
                for member in archive:
                    name = posixpath.normpath(member.name)
                    if member.isfile() and wanted(name):
                        yield name, archive.extractfile(member).read()
        except _BROKEN as error:
            raise _unreadable(self.path, error) from None


class ZipSource(_ListedArchive):
    def __init__(self, path: Path):
        super().__init__(path)
        try:
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    name = check_name(path, info.filename)
                    if stat.S_ISLNK(info.external_attr >> 16):
                        check_link(path, info.filename, archive.read(info).decode("utf-8", "replace"), hard=False)
                    elif not info.is_dir():
                        self._names.append(name)
        except _BROKEN as error:
            raise _unreadable(path, error) from None

    def files(self, wanted):
        regular = set(self._names)
        try:
            with zipfile.ZipFile(self.path) as archive:
                for info in archive.infolist():
                    name = posixpath.normpath(info.filename)
                    if name in regular and wanted(name):
                        yield name, archive.read(info)
        except _BROKEN as error:
            raise _unreadable(self.path, error) from None


class FolderSource(Source):
    """A folder the user unpacked: its regular files (symlinks are not followed)."""

    def names(self) -> list[str]:
        return sorted(path.relative_to(self.path).as_posix() for path in self.path.rglob("*")
                      if path.is_file() and not path.is_symlink())

    def files(self, wanted):
        for name in self.names():
            if wanted(name):
                yield name, (self.path / name).read_bytes()


class FileSource(Source):
    """One plain file, named by its file name."""

    def names(self) -> list[str]:
        return [self.path.name]

    def files(self, wanted):
        if wanted(self.path.name):
            yield self.path.name, self.path.read_bytes()


def open_source(path: str | Path) -> Source:
    """The files of `path`: a tar (any compression) or zip archive, checked member by member, a folder, or a file."""
    path = Path(path)
    if path.is_dir():
        return FolderSource(path)
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    if zipfile.is_zipfile(path):
        return ZipSource(path)
    with open(path, "rb") as file:
        if file.read(4) == b"PK\x03\x04":   # a zip's first member, but no directory at the end: cut short
            raise _unreadable(path, zipfile.BadZipFile("the zip's central directory is missing"))
    if tarfile.is_tarfile(path):
        return TarSource(path)
    return FileSource(path)


def find(source: Source, suffix: str) -> str | None:
    """The one member whose name is `suffix` or ends in `/suffix` (the shortest, if several), else None."""
    matches = [name for name in source.names() if name == suffix or name.endswith("/" + suffix)]
    return min(matches, key=len) if matches else None
