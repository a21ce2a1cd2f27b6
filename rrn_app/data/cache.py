"""Parsed data files as Hugging Face datasets, cached on disk and rebuilt when the file or the parser changes."""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

from rrn_app.option_checks import UserError


def cache_key(paths: list[Path], options: dict, *code) -> str:
    """The datasets cache key of parsed files: their identity, the options, and the parsing code itself."""
    text = repr(sorted(options.items()))
    for path in paths:
        stat = path.stat()
        text += repr((str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    text += "".join(inspect.getsource(function) for function in code)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cached_dataset(generator, options: dict, paths: list[Path], features, cache_dir: str | None, *code,
                   dataset: str | None = None):
    """`datasets.Dataset.from_generator(generator, gen_kwargs=options)`, keyed by `cache_key`.

    A UserError raised while reading a file (a corrupt line, say) comes out as itself, not wrapped in
    datasets' DatasetGenerationError; a file that is not UTF-8 text, or files that hold no example at all, are
    one-line UserErrors naming them (with `rrn-data get <dataset>` as the fix when `dataset` is given). `code`
    lists the functions whose source should key the cache besides the generator.
    """
    import datasets

    datasets.disable_progress_bars()
    key = cache_key(paths, options, generator, *code)
    if "fingerprint" in inspect.signature(datasets.Dataset.from_generator).parameters:
        keyed = dict(gen_kwargs=options, fingerprint=key)
    else:  # datasets < 4.3 has no fingerprint=: the key goes into the arguments it hashes
        keyed = dict(gen_kwargs={"generator": generator, "cache_key": key, **options})
        generator = _keyed_rows
    fix = f"get a complete copy with rrn-data get {dataset}" if dataset else "replace it with a complete copy"
    named = ", ".join(str(path) for path in paths)
    try:
        return datasets.Dataset.from_generator(generator, features=features, cache_dir=cache_dir, **keyed)
    except datasets.exceptions.DatasetGenerationError as error:
        if isinstance(error.__cause__, UserError):
            raise error.__cause__ from None
        if isinstance(error.__cause__, UnicodeDecodeError):
            raise UserError(f"{named}: not UTF-8 text ({error.__cause__.reason} at byte {error.__cause__.start} "
                            f"of a line); is the file damaged? {fix[0].upper()}{fix[1:]}.") from None
        raise
    except ValueError as error:
        if "corresponds to no data" not in str(error):
            raise
        raise UserError(f"{named} holds no examples (empty, or nothing but blank lines); {fix}.") from None


def _keyed_rows(generator, cache_key: str, **options):
    """`generator(**options)`'s rows; `cache_key` is there only to be hashed into the cache's name."""
    yield from generator(**options)
