"""rrn_app.data.cache: parsed files are cached as Hugging Face datasets and parsed again when a file changes."""

from __future__ import annotations

import os

import datasets

from rrn_app.data.cache import cached_dataset

FEATURES = datasets.Features({"line": datasets.Value("string")})
parsed = []  # the files each parse read (a module global: datasets pickles the generator by reference)


def read_lines(path: str):
    parsed.append(path)
    with open(path) as file:
        for line in file:
            yield {"line": line.strip()}


def load(path, cache_dir):
    return cached_dataset(read_lines, dict(path=str(path)), [path], FEATURES, str(cache_dir))["line"]


def test_the_cache_is_used_until_the_file_changes_then_rebuilt(tmp_path):
    source, cache = tmp_path / "data.txt", tmp_path / "cache"
    source.write_text("one\ntwo\n")
    parsed.clear()
    assert load(source, cache) == ["one", "two"] and len(parsed) == 1
    assert load(source, cache) == ["one", "two"] and len(parsed) == 1  # read from the cache: not parsed again
    stat = source.stat()
    source.write_text("uno\ndos\n")  # the same size: only the modification time tells the files apart
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert load(source, cache) == ["uno", "dos"] and len(parsed) == 2
    source.write_text("one\ntwo\nthree\n")
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the old time, another size
    assert load(source, cache) == ["one", "two", "three"] and len(parsed) == 3
