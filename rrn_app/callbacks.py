"""Training throughput: tokens per second over the training batches, data loading included."""

from __future__ import annotations

import time

import lightning as L
import torch


class Throughput(L.Callback):
    """Counts the real (non-padding) tokens of every training batch and the wall time they took.

    The clock runs from the start of each training epoch to the end of its last batch, validation excluded,
    so data loading counts against the cell, as a user would feel it. Reduced over DDP ranks at the end.
    """

    def __init__(self):
        self.tokens, self.seconds, self._last = 0, 0.0, None

    def on_train_epoch_start(self, trainer, pl_module):
        self._last = time.perf_counter()

    def on_validation_start(self, trainer, pl_module):
        self._last = None

    def on_validation_end(self, trainer, pl_module):
        self._last = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_index):
        now = time.perf_counter()
        if self._last is not None:
            self.seconds += now - self._last
        self._last = now
        self.tokens += int(batch["lengths"].sum())

    def tokens_per_second(self, trainer) -> float:
        tokens = trainer.strategy.reduce(torch.tensor(float(self.tokens)), reduce_op="sum")
        seconds = trainer.strategy.reduce(torch.tensor(self.seconds), reduce_op="max")
        return float(tokens) / float(seconds) if float(seconds) > 0 else 0.0
