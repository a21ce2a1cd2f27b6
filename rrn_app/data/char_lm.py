"""Character-level corpora as contiguous streams for truncated back-propagation through time (char-rnn style).

Datasets under `<root>`:
- `tinyshakespeare/input.txt`: one text file with no official split; cut in order into train / validation /
  test by the `split` fractions (default 90 / 5 / 5 of the character stream). `[0.9, 0.1, 0.0]` is nanoGPT's
  split (data/shakespeare_char/prepare.py: the last 10% is its validation part) and has no test split:
  rrn-train then tests nothing, and `rrn-eval split=validation protocol=nanogpt` gives nanoGPT's number.
- `ptb_char/ptb.char.{train,valid,test}.txt`: Mikolov's character-level Penn Treebank, one sentence per line,
  symbols separated by spaces, `_` between words. Each sentence becomes its symbols plus a newline (the usual
  end-of-line symbol), so the splits hold 5,017,482 / 393,042 / 442,423 characters.

The vocabulary is every character of the corpus (all splits, as char-rnn does), sorted.

Batching: a split's N characters give N - 1 (input, next character) pairs, cut into `batch_size x world_size`
contiguous streams of nearly equal length (the first N - 1 mod streams are one longer); DDP rank r reads
the contiguous block of streams r * batch_size .. (r + 1) * batch_size - 1. Batch k holds window k of each of
its streams: positions k * seq_length .. (k + 1) * seq_length - 1, the last window running to the end (it can
be up to seq_length + 1 long), so every character of the split is read exactly once per epoch, in order, by
every split alike. A model carries its recurrent state from window k to window k + 1 and starts afresh at
window 0 (a run resumed mid-epoch goes on from the window, and with the state, where it stopped).
A batch is {"ids": [batch, time], "targets": [batch, time], "lengths": [batch] (the real steps of
each stream in this window; only the last window has padding), "window": k, "reset": k == 0}.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from rrn_app import option_checks
from rrn_app.data.locate import dataset_root
from rrn_app.data.resumable import InOrder, ResumableLoader
from rrn_app.option_checks import UserError

DATASETS = ("tinyshakespeare", "ptb_char")
SOURCES = {
    "tinyshakespeare": "https://github.com/karpathy/char-rnn (data/tinyshakespeare/input.txt)",
    "ptb_char": "Mikolov's simple-examples (ptb.char.train.txt, ptb.char.valid.txt, ptb.char.test.txt)",
}
PTB_FILES = {"train": "ptb.char.train.txt", "validation": "ptb.char.valid.txt", "test": "ptb.char.test.txt"}
WORD_BOUNDARY = {"tinyshakespeare": None, "ptb_char": "_"}


def data_files(root: str | Path, dataset: str) -> list[Path]:
    folder = Path(root) / dataset
    if dataset == "tinyshakespeare":
        return [folder / "input.txt"]
    return [folder / name for name in PTB_FILES.values()]


def read_ptb_char(path: Path) -> str:
    """One PTB character file as a string: each sentence's symbols, then a newline."""
    lines = (line.split() for line in path.read_text(encoding="utf-8").split("\n"))
    return "".join("".join(symbols) + "\n" for symbols in lines if symbols)


def read_splits(root: str | Path, dataset: str, split: tuple[float, float, float]) -> dict[str, str]:
    """{"train", "validation", "test"} -> the split's text."""
    if dataset == "ptb_char":
        return {name: read_ptb_char(path) for name, path in zip(PTB_FILES, data_files(root, dataset))}
    text = data_files(root, dataset)[0].read_text(encoding="utf-8")
    train_end = int(len(text) * split[0])
    validation_end = int(len(text) * (split[0] + split[1]))
    return {"train": text[:train_end], "validation": text[train_end:validation_end], "test": text[validation_end:]}


def window_bounds(stream_length: int, longest: int, seq_length: int) -> list[tuple[int, int]]:
    """(start, end) of each window over streams of `stream_length` (some `longest` = one more) steps."""
    starts = list(range(0, stream_length, seq_length))
    return list(zip(starts, starts[1:] + [longest]))


def character_ids(text: str, vocabulary: list[str]) -> torch.Tensor:
    """Each character's index in `vocabulary` (which holds them all), found for the whole text at once: the
    text's code points (its UTF-32 bytes) index a table from code point to index, not one dictionary lookup a
    character."""
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    codes = np.array([ord(character) for character in vocabulary], dtype=np.int64)
    table = np.zeros(int(codes.max(initial=0)) + 1, dtype=np.int64)
    table[codes] = np.arange(len(codes))
    return torch.from_numpy(table[points])


class StreamWindows(Dataset):
    """Window k of each of this rank's streams (see the module docstring); item k is a whole batch."""

    def __init__(self, ids: torch.Tensor, batch_size: int, seq_length: int, rank: int = 0, world_size: int = 1):
        streams = batch_size * world_size
        pairs = len(ids) - 1
        if pairs < streams:
            raise UserError(
                f"a split of {len(ids):,} characters is too short for {streams} streams (batch_size {batch_size} "
                f"x {world_size} processes); lower task.data.batch_size."
            )
        base, extra = divmod(pairs, streams)
        lengths = torch.full((streams,), base, dtype=torch.long)
        lengths[:extra] += 1
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
        longest = base + (extra > 0)
        positions = offsets[:, None] + torch.arange(longest)[None, :]  # [streams, longest]
        valid = torch.arange(longest)[None, :] < lengths[:, None]
        positions = positions.masked_fill(~valid, 0)
        mine = slice(rank * batch_size, (rank + 1) * batch_size)
        self.inputs = ids[positions[mine]].masked_fill(~valid[mine], 0)
        self.targets = ids[positions[mine] + 1].masked_fill(~valid[mine], 0)
        self.lengths = lengths[mine]
        self.windows = window_bounds(base, longest, seq_length)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, k: int) -> dict:
        start, end = self.windows[k]
        return {"ids": self.inputs[:, start:end], "targets": self.targets[:, start:end],
                "lengths": (self.lengths - start).clamp(0, end - start), "window": k,
                "reset": k == 0}  # the state starts afresh (the flag music's windows carry too)


class CharLMDataModule(L.LightningDataModule):
    def __init__(self, root: str = "data", dataset: str = "tinyshakespeare", split=(0.9, 0.05, 0.05),
                 batch_size: int = 64, seq_length: int = 100, eval_batch_size: int | None = None,
                 num_workers: int = 0):
        super().__init__()
        if dataset not in DATASETS:
            raise option_checks.InvalidOption("dataset", dataset, f"must be one of {', '.join(map(repr, DATASETS))} "
                                           "(choose it with task.dataset=<name>)")
        self.dataset = dataset
        self.split = tuple(split)
        if (len(self.split) != 3 or not all(isinstance(f, (int, float)) and f >= 0 for f in self.split)
                or min(self.split[:2]) <= 0 or abs(sum(self.split) - 1) > 1e-6):
            raise option_checks.InvalidOption("split", list(split), "must be three fractions (train, validation, "
                                           "test) that add up to 1, train and validation positive, e.g. "
                                           "[0.9,0.05,0.05] or nanoGPT's [0.9,0.1,0.0] (no test split)")
        self.batch_size = option_checks.positive_int("batch_size", batch_size)
        self.seq_length = option_checks.positive_int("seq_length", seq_length)
        self.eval_batch_size = option_checks.positive_int("eval_batch_size", eval_batch_size or batch_size)
        self.num_workers = num_workers
        self.root = dataset_root(root, self.dataset)  # data.root, else the embedded copy (Tiny Shakespeare)
        self.texts = None

    def setup(self, stage: str | None = None) -> None:
        if self.texts is not None:
            return
        self.texts = read_splits(self.root, self.dataset, self.split)
        self.vocabulary = sorted(set("".join(self.texts.values())))
        self.ids = {name: character_ids(text, self.vocabulary) for name, text in self.texts.items()}

    def model_arguments(self) -> dict:
        """What the LightningModule needs from the data: the vocabulary (it goes into every checkpoint)."""
        return dict(vocabulary=self.vocabulary, word_boundary=WORD_BOUNDARY[self.dataset])

    def state_dict(self) -> dict:
        return {"vocabulary": self.vocabulary} if self.texts is not None else {}

    def load_state_dict(self, state: dict) -> None:
        saved = state.get("vocabulary")
        if saved is not None and self.texts is not None and saved != self.vocabulary:
            raise UserError(
                f"the checkpoint's vocabulary ({len(saved)} characters) differs from this corpus' "
                f"({len(self.vocabulary)}): the data or task.data options changed since it was saved."
            )

    def _loader(self, split: str, batch_size: int) -> ResumableLoader:
        trainer = self.trainer
        windows = StreamWindows(self.ids[split], batch_size, self.seq_length,
                                rank=trainer.global_rank if trainer else 0,
                                world_size=trainer.world_size if trainer else 1)
        # batch_size=None: each item already is a batch; windows in order, never shuffled, and a resumed
        # epoch goes on from the window where it stopped (rrn_app/data/resumable.py)
        return ResumableLoader(windows, batch_size=None, sampler=InOrder(len(windows)),
                               num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        return self._loader("train", self.batch_size)

    def val_dataloader(self):
        return self._loader("validation", self.eval_batch_size)

    def test_dataloader(self):
        if len(self.ids["test"]) == 0:  # split [0.9, 0.1, 0.0]: no test split, so no test batches
            return []
        return self._loader("test", self.eval_batch_size)
