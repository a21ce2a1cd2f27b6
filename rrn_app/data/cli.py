"""`rrn-data`: which datasets rrn reads from where, and getting the ones that are missing.

    rrn-data list [root=DIR]                 each dataset: read from DIR, the embedded copy, or missing;
                                             its files, sizes, counts and checksums
    rrn-data get NAME [root=DIR] [mirror=URL]    download NAME from its owner's canonical source into DIR
    rrn-data prepare NAME FILE [root=DIR]    convert a canonical download you fetched yourself into DIR

DIR is the data root the tasks read (`data.root`, default `data`).
"""

from __future__ import annotations

import gzip
import hashlib
import sys
from pathlib import Path

from rrn_app.data.catalog import DATASETS, Dataset, get_dataset
from rrn_app.option_checks import UserError

USAGE = __doc__.strip().replace("`", "")
DEFAULT_ROOT = "data"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _lines(path: Path) -> int:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        return sum(block.count(b"\n") for block in iter(lambda: file.read(1 << 20), b""))


def count(dataset: Dataset, path: Path) -> str:
    """What the file holds, in the dataset's own unit (sentences, reviews, pieces, ...), cheaply."""
    name = dataset.name
    if name == "tinyshakespeare":
        return f"{len(path.read_text(encoding='utf-8')):,} characters"
    if dataset.folder == "polyphonic":
        from rrn_app import safe_pickle  # never a plain pickle.load of a file from disk

        raw = safe_pickle.load(path)
        return " / ".join(f"{len(raw[split]):,}" for split in ("train", "valid", "test")) + " pieces"
    unit = {"sst": "sentences", "glove": "words", "imdb": "reviews", "atis": "utterances",
            "ptb_char": "sentences"}[name]
    return f"{_lines(path):,} {unit}"


def checksum_state(dataset: Dataset, relative: str, path: Path, embedded: bool) -> str:
    """"ok" (the checksum we know), "differs" (another version or a corrupt file) or "unknown"."""
    known = (dataset.embedded_sha256 if embedded else {}).get(relative) or dataset.sha256.get(relative)
    if known is None:
        return "unknown"
    return "ok" if sha256(path) == known else "differs"


def size(path: Path) -> str:
    number = path.stat().st_size
    for unit in ("B", "kB", "MB", "GB"):
        if number < 1000 or unit == "GB":
            return f"{number:,.0f} {unit}" if unit == "B" else f"{number:,.1f} {unit}"
        number /= 1000


def describe(dataset: Dataset, root: Path) -> tuple[str, Path | None, list[tuple[str, ...]]]:
    """(where it is read from, the root it is read from or None, [(file, size, count, checksum), ...])."""
    from rrn_app.data.locate import embedded_root, missing_files

    missing = missing_files(root, dataset)
    if not missing:
        where, source, embedded = f"data.root ({root / dataset.folder})", root, False
    elif dataset.embedded:
        source, embedded = embedded_root(dataset.name), True
        where = "embedded copy" + (f", {dataset.embedded_note}" if dataset.embedded_note else "")
    else:
        where = f"missing (rrn-data get {dataset.name})"
        rows = [(relative, "-", "-", "missing") if root / relative in missing
                else (relative, size(root / relative), "-", checksum_state(dataset, relative, root / relative, False))
                for relative in dataset.files]
        return where, None, rows
    rows = []
    for relative in dataset.files:
        path = source / relative
        rows.append((relative, size(path), count(dataset, path), checksum_state(dataset, relative, path, embedded)))
    return where, source, rows


def list_datasets(root: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # a file or a pipe: one line per row
    expanded = []
    table = Table(title=f"rrn datasets (data.root = {root})", title_justify="left")
    for column in ("dataset", "read from", "file", "size", "count", "checksum"):
        table.add_column(column, no_wrap=column != "read from")
    for name, dataset in DATASETS.items():
        where, source, rows = describe(dataset, root)
        if source is not None and source != root:
            expanded.append(source.parent)
        for number, (relative, file_size, what, state) in enumerate(rows):
            table.add_row(name if number == 0 else "", where if number == 0 else "", relative, file_size, what,
                          state, end_section=number == len(rows) - 1)
    console.print(table)
    if expanded:
        console.print(f"Embedded copies are read from {', '.join(sorted(set(map(str, expanded))))}", soft_wrap=True)


def parse(arguments: list[str], positional: int, options: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    """`positional` plain words, then key=value options among `options`."""
    words, values = [], {}
    for argument in arguments:
        key, equals, value = argument.partition("=")
        if equals:
            if key not in options:
                allowed = ", ".join(f"{option}=" for option in options) or "none"
                raise UserError(f"unknown option {key}=; this command takes {allowed}. See rrn-data --help.")
            values[key] = value
        else:
            words.append(argument)
    if len(words) != positional:
        raise UserError(f"expected {positional} argument(s) before the options, got {len(words)} "
                        f"({' '.join(words) or 'none'}). See rrn-data --help.")
    return words, values


def _step(module: str, function: str):
    """rrn_app.data.<module>.<function>, imported only when its command runs."""
    import importlib

    try:
        return getattr(importlib.import_module(f"rrn_app.data.{module}"), function)
    except (ModuleNotFoundError, AttributeError) as error:
        raise UserError(f"this install of rrn lacks rrn_app.data.{module}.{function} ({error}); reinstall rrn "
                        '(pip install -e ".[dev]").') from None


def run(arguments: list[str]) -> None:
    if not arguments or arguments[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = arguments[0], arguments[1:]
    if "-h" in rest or "--help" in rest:
        print(USAGE)
        return
    if command == "list":
        _, options = parse(rest, 0, ("root",))
        list_datasets(Path(options.get("root", DEFAULT_ROOT)))
    elif command == "get":
        (name,), options = parse(rest, 1, ("root", "mirror"))
        dataset = get_dataset(name)
        get = _step("download", "get")
        get(dataset.name, Path(options.get("root", DEFAULT_ROOT)), mirror=options.get("mirror"))
    elif command == "prepare":
        (name, file), options = parse(rest, 2, ("root",))
        dataset = get_dataset(name)
        prepare = _step("prepare", "prepare")
        prepare(dataset.name, Path(file), Path(options.get("root", DEFAULT_ROOT)))
    else:
        raise UserError(f"unknown command {command!r}; rrn-data takes list, get or prepare. See rrn-data --help.")


def main() -> None:
    try:
        run(sys.argv[1:])
    except UserError as error:
        print(f"rrn-data: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
