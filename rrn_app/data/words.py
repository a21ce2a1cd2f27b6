"""`WordDataModule`: what the word-level DataModules (sst, imdb, atis) share once their splits are built.

A subclass's `setup` sets `self.splits` ({"train", "validation", "test"} -> a dataset of encoded rows),
`self.lengths` (the same keys -> each row's length, for bucketing) and `self.vocabulary`, then calls
`load_embeddings()`; its `__init__` sets `batch_size`, `seed`, `num_workers`, `vectors` and `embedding_dim`.
The class attributes `padded`, `scalars` and `objects` name the columns a batch holds (see `EncodedRows`).
This class gives the checkpointed vocabulary, pretrained vectors and the length-bucketed loaders (DDP-aware:
each rank its share of the batches; resumable mid-epoch), which read whole batches from each split's columns held as tensors.
"""

from __future__ import annotations

import lightning as L
from rrn_app.data.batching import BucketBatchSampler
from rrn_app.data.packed import EncodedRows, whole_batch
from rrn_app.data.resumable import ResumableLoader
from rrn_app.data.text import load_vectors
from rrn_app.option_checks import UserError


class WordDataModule(L.LightningDataModule):
    padded = {"ids": 0}  # sequence columns of a batch -> padding value (atis pads its tags with -1 too)
    scalars = ("label",)  # integer columns of a batch
    objects = ()  # columns passed on as Python lists (atis: the words)
    splits = None
    saved_vocabulary = None  # a checkpoint's vocabulary given before setup; a subclass's setup may use it as is

    def load_embeddings(self) -> None:
        """The pretrained vectors of the vocabulary's words (`vectors`), or none."""
        self.embeddings, self.vectors_found = None, 0
        if self.vectors:
            self.embeddings, self.vectors_found = load_vectors(self.vectors, self.vocabulary, self.embedding_dim, self.seed)

    def model_arguments(self) -> dict:
        """What a classifier (sst, imdb) needs from the data: sizes and the pretrained embedding matrix."""
        return dict(vocab_size=len(self.vocabulary), num_classes=self.num_classes,
                    embedding_dim=self.embedding_dim, pretrained_embeddings=self.embeddings)

    def state_dict(self) -> dict:
        """Saved in every checkpoint: the vocabulary, so a checkpoint can be read without the training data."""
        return {"vocabulary": self.vocabulary.itos} if self.splits is not None else {}

    def load_state_dict(self, state: dict) -> None:
        """Before `setup`: keep the checkpoint's vocabulary (SST's setup then uses it as it is, so rrn-eval reads
        a run whatever vocabulary option it had). After: check that the vocabulary built now is the same."""
        saved = state.get("vocabulary")
        if saved is not None and self.splits is None:
            self.saved_vocabulary = list(saved)
        elif saved is not None and saved != self.vocabulary.itos:
            hint = (" A run from before task.data.vocabulary existed has its training words only: add "
                    "task.data.vocabulary=train." if getattr(self, "vocabulary_mode", "train") != "train" else "")
            raise UserError(
                "the checkpoint's vocabulary differs from the one built from the training data now "
                f"({len(saved)} vs {len(self.vocabulary)} words): the data or task.data options changed since it "
                f"was saved. Resume with the same data and options.{hint}"
            )

    def encoded_rows(self, split: str) -> EncodedRows:
        """The split's batch columns as tensors, made once (a few milliseconds, in Arrow) and kept."""
        cache = self.__dict__.setdefault("_encoded_rows", {})
        if split not in cache:
            cache[split] = EncodedRows(self.splits[split], self.padded, self.scalars, self.objects)
        return cache[split]

    def _loader(self, split: str, shuffle: bool) -> ResumableLoader:
        trainer = self.trainer
        rows = self.encoded_rows(split)
        sampler = BucketBatchSampler(
            rows.lengths, self.batch_size, shuffle=shuffle, seed=self.seed,
            num_replicas=trainer.world_size if trainer else 1, rank=trainer.global_rank if trainer else 0,
        )
        # resumable mid-epoch, its order drawn for the epoch being iterated (rrn_app/data/resumable.py)
        return ResumableLoader(rows, batch_sampler=sampler, collate_fn=whole_batch, num_workers=self.num_workers,
                               persistent_workers=self.num_workers > 0, seed=self.seed)

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("validation", shuffle=False)

    def test_dataloader(self):
        return self._loader("test", shuffle=False)
