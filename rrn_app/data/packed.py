"""Encoded splits held as tensors, so that a whole padded batch is one gather.

`PackedSequences` holds integer sequences as one values tensor and per-row lengths and offsets;
`EncodedRows` is a torch Dataset over the columns of an encoded split (a pyarrow Table or a `datasets.Dataset`):
its `__getitems__(indices)`, which DataLoader calls with each list of indices of a batch sampler, returns the
finished batch {name: tensor}. Nothing is converted row by row: the columns become tensors once, in Arrow, and
a batch is a few tensor indexing operations (tens of microseconds for 128 SST phrases).
"""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import torch
from torch.utils.data import Dataset

from rrn_app.data.columns import arrow_table, list_lengths, to_numpy


class PackedSequences:
    """Integer sequences packed end to end: `values` [total], `lengths` [rows], `offsets` [rows] (each row's start)."""

    def __init__(self, values: torch.Tensor, lengths: torch.Tensor):
        self.values, self.lengths = values.to(torch.long), lengths.to(torch.long)
        self.offsets = torch.cumsum(self.lengths, 0) - self.lengths

    @classmethod
    def from_arrow(cls, column) -> "PackedSequences":
        """From a pyarrow list-of-integers column (chunked or not)."""
        values = np.array(to_numpy(pc.list_flatten(column)), dtype=np.int64)  # a writable copy
        return cls(torch.from_numpy(values), list_lengths(column))

    def __len__(self) -> int:
        return len(self.lengths)

    def padded(self, indices, value: int = 0) -> torch.Tensor:
        """The rows `indices` as one tensor [len(indices), longest], filled with `value` past each row's end."""
        index = torch.as_tensor(indices, dtype=torch.long)
        lengths = self.lengths[index]
        steps = torch.arange(int(lengths.max()) if len(index) else 0)
        inside = steps < lengths[:, None]
        positions = (self.offsets[index, None] + steps).masked_fill_(~inside, 0)
        return self.values[positions].masked_fill_(~inside, value)


class EncodedRows(Dataset):
    """A split's encoded rows; a batch of indices gives the padded batch in one call.

    `padded`: integer-sequence columns -> their padding value (the batch gets "lengths", the first column's,
    right after that column); `scalars`: integer columns (a tensor [batch] each); `objects`: columns passed on
    as Python values (a list per batch, e.g. ATIS' words). The batch's keys come in that order.
    """

    def __init__(self, rows, padded: dict[str, int], scalars=(), objects=()):
        table = arrow_table(rows)
        self.padding = dict(padded)
        self.sequences = {name: PackedSequences.from_arrow(table.column(name)) for name in self.padding}
        self.scalars = {name: torch.from_numpy(np.array(to_numpy(table.column(name)), dtype=np.int64))
                        for name in scalars}
        self.objects = {name: table.column(name).to_pylist() for name in objects}
        self.lengths = next(iter(self.sequences.values())).lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitems__(self, indices: list[int]) -> dict:
        index = torch.as_tensor(indices, dtype=torch.long)
        batch = {}
        for number, (name, packed) in enumerate(self.sequences.items()):
            batch[name] = packed.padded(index, self.padding[name])
            if number == 0:
                batch["lengths"] = self.lengths[index]
        for name, values in self.scalars.items():
            batch[name] = values[index]
        for name, values in self.objects.items():
            batch[name] = [values[i] for i in indices]
        return batch

    def __getitem__(self, index: int) -> dict:
        """One row as Python values ({"ids": [...], "label": 3, ...}), as the `datasets` row reads."""
        row = {}
        for name, packed in self.sequences.items():
            start = int(packed.offsets[index])
            row[name] = packed.values[start : start + int(packed.lengths[index])].tolist()
        row.update({name: int(values[index]) for name, values in self.scalars.items()})
        row.update({name: values[index] for name, values in self.objects.items()})
        return row


def whole_batch(batch: dict) -> dict:
    """The DataLoader's collate_fn for `EncodedRows`: its `__getitems__` already gives the finished batch."""
    return batch
