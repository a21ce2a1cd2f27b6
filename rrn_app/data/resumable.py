"""Data loaders that a resumed run continues exactly: the same epoch's order, from the batch where it stopped.

`ResumableLoader` is a torch `DataLoader` over an `EpochOrder` sampler (or batch sampler). Three things make an
interrupted run continue as if it never stopped:

- Iteration is lazy: nothing is drawn, loaded or sent to a worker until the first batch is asked for, so the
  epoch Lightning sets (`set_epoch`, which it calls after it has made the iterator) is the epoch iterated.
- Lightning's stateful data loading: the loader has `state_dict()` / `load_state_dict()`, which Lightning
  saves in every checkpoint and hands back on resume, before the first batch. The state is the epoch, the
  batches of it already read (`position`) and the loader's own random generator. The sampler then skips the
  batches already read (without loading them) when the same epoch is iterated; a resume into the next epoch
  (Lightning sets another epoch) starts that epoch from its first batch.
- The loader draws its workers' seeds (torch's `base_seed`) from its own generator, seeded with the run's seed,
  never from the global torch generator: iterating a loader takes no draw from the random state that dropout
  uses, and the generator's state at the start of the epoch goes into the checkpoint, so the workers of a
  resumed epoch get the seeds they had (Lightning's `seed_everything(workers=True)` derives every worker's
  torch, numpy and Python seeds from it); with persistent workers, the seeds they were first made with.
  Not replayed: what a worker draws itself during an epoch, and which worker reads which batch after a
  mid-epoch resume (the batches are dealt round-robin from the first one read). rrn's datasets draw nothing.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Sampler


class EpochOrder:
    """What a resumable sampler shares: the epoch whose order it draws and the batches the next pass skips.

    `set_epoch(e)` with a new epoch forgets a pending skip (the resumed epoch was finished); `resume_at(n)`
    makes the next pass over the current epoch start at its n-th item. `__iter__` is a generator that calls
    `take_skip()` when its first item is asked for (a DataLoader makes an iterator it drops before reading one).
    """

    epoch: int = 0
    _skip: int = 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self._skip = 0
        self.epoch = epoch

    def resume_at(self, position: int) -> None:
        self._skip = max(int(position), 0)

    @property
    def pending_skip(self) -> int:
        return self._skip

    def take_skip(self) -> int:
        skip, self._skip = self._skip, 0
        return skip


class InOrder(EpochOrder, Sampler[int]):
    """Items 0 .. size - 1 in order, every epoch (char_lm's windows), resumable at any position."""

    def __init__(self, size: int):
        self.size = size

    def __iter__(self):
        yield from range(min(self.take_skip(), self.size), self.size)

    def __len__(self) -> int:
        return self.size


class ResumableLoader(DataLoader):
    """A DataLoader over an `EpochOrder` (its `batch_sampler`, or its `sampler` with batch_size=None) that
    Lightning can checkpoint and resume mid-epoch; `seed` seeds the loader's own generator (worker seeds)."""

    _resume_generator = None  # the generator at the start of the epoch a resume continues inside

    def __init__(self, dataset, *args, seed: int = 0, **kwargs):
        kwargs.setdefault("generator", torch.Generator().manual_seed(int(seed)))
        super().__init__(dataset, *args, **kwargs)
        self.seed = seed
        self._epoch, self._position = self.order.epoch, 0
        self._worker_generator = self.generator.get_state()

    @property
    def order(self) -> EpochOrder:
        """The sampler that orders the batches (the batch sampler when there is one)."""
        for candidate in (self.batch_sampler, self.sampler):
            if isinstance(candidate, EpochOrder):
                return candidate
        raise TypeError("ResumableLoader needs an EpochOrder sampler or batch sampler")

    def __iter__(self):
        return self._batches()

    def _batches(self):
        order = self.order
        start = order.pending_skip
        new_workers = not (self.persistent_workers and self.num_workers > 0 and self._iterator is not None)
        if self._resume_generator is not None and new_workers and (start or self.persistent_workers):
            # the seeds the workers reading this batch had: drawn at this epoch's start, or (persistent workers)
            # when the workers were first made
            self.generator.set_state(self._resume_generator)
        self._resume_generator = None
        if new_workers:
            self._worker_generator = self.generator.get_state()  # torch draws the workers' base seed from it now
        self._epoch, self._position = order.epoch, start
        for batch in super().__iter__():
            self._position += 1
            yield batch

    def state_dict(self) -> dict:
        """The epoch being read, how many of its batches were read, and the generator as it was when the
        current workers' seed was drawn and as it is now."""
        return {"epoch": self._epoch, "position": self._position,
                "worker_generator": self._worker_generator, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state` (Lightning calls this on resume, before the first batch is asked for)."""
        order = self.order
        order.set_epoch(int(state["epoch"]))
        order.resume_at(int(state["position"]))
        self.generator.set_state(state["generator"])  # a resume into the next epoch goes on from here
        self._resume_generator = state["worker_generator"]  # a resume inside the epoch starts from here
