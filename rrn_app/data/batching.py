"""Length-bucketed batches: little padding, still shuffled, and split across DDP ranks."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Sampler

from rrn_app.data.resumable import EpochOrder


def length_tensor(lengths) -> torch.Tensor:
    """Sequence lengths as one int64 tensor, converted in one call whatever holds them.

    A tensor, numpy array, list or tuple converts directly; a pyarrow array through numpy; any other sequence
    (a lazy `datasets` Column, with `datasets` 4+) is read with one slice, `lengths[:]`: `torch.as_tensor` on it
    would fetch and format one row at a time (36 s for SST's 159,274 phrases).
    """
    if isinstance(lengths, torch.Tensor):
        return lengths.to(torch.long)
    if type(lengths).__module__.startswith("pyarrow"):
        lengths = lengths.to_numpy(zero_copy_only=False) if hasattr(lengths, "offset") else lengths.to_numpy()
    elif not isinstance(lengths, (np.ndarray, list, tuple)):
        lengths = lengths[:] if hasattr(type(lengths), "__getitem__") else list(lengths)
    return torch.as_tensor(np.asarray(lengths, dtype=np.int64))


class BucketBatchSampler(EpochOrder, Sampler[list[int]]):
    """Batches of indices whose sequences have similar lengths.

    Training (shuffle=True): the indices are shuffled, cut into pools of `pool_batches` batches, each pool
    sorted by length and cut into batches, and the batches shuffled. Evaluation: sorted by length.
    With several ranks each takes every `num_replicas`-th batch; in training the list is first padded by
    repeating batches so every rank runs the same number of steps (DDP needs that).

    The order is drawn when iteration starts, for the epoch set then; `resume_at(n)` (rrn_app/data/resumable.py)
    makes the next pass over the same epoch start at its n-th batch.
    """

    def __init__(self, lengths, batch_size: int, shuffle: bool, seed: int = 0, pool_batches: int = 50,
                 num_replicas: int = 1, rank: int = 0):
        self.lengths = length_tensor(lengths)
        self.batch_size, self.shuffle, self.seed, self.pool_batches = batch_size, shuffle, seed, pool_batches
        self.num_replicas, self.rank, self.epoch = num_replicas, rank, 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose shuffle to draw (seed + epoch): the same on every rank, a new one each epoch."""
        super().set_epoch(epoch)

    @property
    def sampler(self):
        """Lightning sets the epoch through `dataloader.batch_sampler.sampler.set_epoch(epoch)` before every epoch
        (never on the batch sampler itself): this batch sampler is its own sampler, so that call reaches it."""
        return self

    def _all_batches(self) -> list[list[int]]:
        if not self.shuffle:
            order = torch.argsort(self.lengths, stable=True)
            return [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator)
        pool = self.batch_size * self.pool_batches
        batches = []
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            chunk = chunk[torch.argsort(self.lengths[chunk], stable=True)]
            batches += [chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        permutation = torch.randperm(len(batches), generator=generator).tolist()
        batches = [batches[i] for i in permutation]
        if self.num_replicas > 1 and len(batches) % self.num_replicas:
            batches += batches[: self.num_replicas - len(batches) % self.num_replicas]
        return batches

    def __iter__(self):
        # a generator: the order is drawn, and a resume's skip taken, when the first batch is asked for
        yield from self._all_batches()[self.rank :: self.num_replicas][self.take_skip() :]

    def __len__(self) -> int:
        size = len(self.lengths)
        if self.shuffle:
            pool = self.batch_size * self.pool_batches
            count = size // pool * self.pool_batches + -(-(size % pool) // self.batch_size)
            count = -(-count // self.num_replicas) * self.num_replicas
        else:
            count = -(-size // self.batch_size)
        return len(range(self.rank, count, self.num_replicas))
