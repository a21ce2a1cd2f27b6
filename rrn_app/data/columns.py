"""Whole columns of parsed data, computed in Arrow: never one row at a time in Python.

A `datasets.Dataset` column read row by row costs microseconds a row (with `datasets` 4+ a column read is a
lazy `Column` that formats every row on its own), which on SST's 159,274 phrases is many seconds. These helpers
take a dataset's rows as one pyarrow Table (`arrow_table`, the same in every `datasets` version) and do the
work on whole columns: lengths, token counts, lookups of strings in a vocabulary, truncation.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch


def arrow_table(dataset) -> pa.Table:
    """A `datasets.Dataset`'s rows as one pyarrow Table (its indices mapping applied); a Table as it is."""
    if isinstance(dataset, pa.Table):
        return dataset
    return dataset.with_format("arrow")[:]


def to_numpy(column) -> np.ndarray:
    """A pyarrow (Chunked)Array as one numpy array (chunks concatenated)."""
    return column.to_numpy(zero_copy_only=False) if isinstance(column, pa.Array) else column.to_numpy()


def list_lengths(column) -> torch.Tensor:
    """Each row's length of a list column, as an int64 tensor."""
    return torch.from_numpy(to_numpy(pc.list_value_length(column)).astype(np.int64))


def value_counts(column) -> dict[str, int]:
    """{value: how often it occurs} over all rows of a list column (e.g. token counts of a tokens column)."""
    counts = pc.value_counts(pc.list_flatten(column))
    return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))


def unique_values(column) -> list:
    """The distinct values of a column, or of all rows of a list column."""
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        column = pc.list_flatten(column)
    return pc.unique(column).to_pylist()


def lookup(column, mapping: dict, default: int | None = None) -> pa.Array:
    """Each value of a plain column replaced by mapping[value] (int64); one missing from `mapping` becomes
    `default`, or a KeyError naming it if there is none."""
    keys = pa.array(list(mapping), pa.string())
    codes = pa.array(list(mapping.values()), pa.int64())
    found = pc.take(codes, pc.index_in(column, value_set=keys))
    if isinstance(found, pa.ChunkedArray):
        found = found.combine_chunks() if found.num_chunks else pa.array([], pa.int64())
    if found.null_count:
        if default is None:
            missing = pc.filter(column, pc.is_null(found))
            raise KeyError(to_numpy(missing)[0])
        found = pc.fill_null(found, default)
    return found


def offsets_of(lengths: np.ndarray) -> np.ndarray:
    """Row start offsets (one more than rows, the last = the total) of rows of these lengths."""
    return np.concatenate([np.zeros(1, np.int64), np.cumsum(lengths, dtype=np.int64)])


def lookup_lists(column, mapping: dict, default: int | None = None, max_length: int | None = None,
                 keep: str = "end") -> pa.ListArray:
    """Each row of a list-of-strings column as the list of mapping[value] (see `lookup`).

    With `max_length`, a longer row keeps its last `max_length` values (`keep="end"`) or its first ("start").
    """
    lengths = to_numpy(pc.list_value_length(column)).astype(np.int64)
    values = lookup(pc.list_flatten(column), mapping, default)
    offsets = offsets_of(lengths)
    if max_length is not None and len(lengths) and lengths.max() > max_length:
        kept = np.minimum(lengths, max_length)
        starts = offsets[:-1] + (lengths - kept if keep == "end" else 0)
        offsets = offsets_of(kept)
        positions = np.repeat(starts - offsets[:-1], kept) + np.arange(offsets[-1])
        values = values.take(pa.array(positions))
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)


def in_memory_dataset(table: pa.Table):
    """`table` as an in-memory `datasets.Dataset`, without hashing its contents for a fingerprint (datasets 2.19
    pickles the whole table for it: 8 s for SST's splits); the rows are never cached to disk or mapped."""
    import datasets
    from datasets.fingerprint import generate_random_fingerprint

    return datasets.Dataset(table, fingerprint=generate_random_fingerprint())
