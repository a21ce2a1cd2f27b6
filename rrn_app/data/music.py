"""The four polyphonic music datasets of Boulanger-Lewandowski et al. (2012) as a LightningDataModule.

Reads `<root>/polyphonic/<dataset>.pickle`: a dict with 'train', 'valid' and 'test' lists of pieces, a piece
a list of time steps, a step the sorted MIDI notes (21..108) sounding then, `[]` a rest. Each piece becomes
an 88-key binary piano roll [frames, 88], column j the MIDI note 21 + j. The pickle loads in well under a
second, so nothing is cached. Without rrn's pickle, the owner's files are read as they are: the canonical
pickle (`JSB Chorales.pickle`, ...) or the `.mat` version (`JSB_Chorales.mat`, ...) in `<root>/polyphonic/`
(see rrn_app.data.music_files). Pickles are read with a restricted unpickler: a file that tries to load
anything but data is refused before it can run code.

Training batches are windows (`WindowSampler` over `PieceWindows`): pieces are grouped `batch_size` at a time
(length-bucketed, shuffled per epoch), and each group is cut into consecutive windows of `window` frames; the
model carries each piece's state (detached) from one window of its group to the next and starts from zero at a
group's first window (`batch["reset"]`). Every frame of every piece is trained on exactly once per epoch, in
order. Validation and test batches hold whole pieces, padded and masked (`batch["lengths"]`).

A batch: {"inputs" [batch, time, 88] the previous frames (the zero frame before a piece's first frame),
"targets" [batch, time, 88] the frames to predict, "lengths" [batch] real frames (0 for a piece that has
ended before this window), "reset" bool}.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import Sampler

from rrn_app import option_checks
from rrn_app.data.batching import BucketBatchSampler
from rrn_app.data.resumable import EpochOrder, ResumableLoader
from rrn_app.data.music_files import candidate_paths, read_music_file
from rrn_app.data.locate import dataset_root
from rrn_app.option_checks import MissingDataError, UserError

SOURCE_URL = "http://www-etud.iro.umontreal.ca/~boulanni/icml2012"
LOWEST_NOTE, KEYS = 21, 88  # piano keys A0 (MIDI 21) .. C8 (MIDI 108)
SPLITS = {"train": "train", "validation": "valid", "test": "test"}


@dataclass(frozen=True)
class MusicDataset:
    """What a dataset's frames mean: `beats_per_frame` quarter notes per frame (1 = a quarter, 0.5 = an eighth)."""

    title: str
    beats_per_frame: float


DATASETS = {
    "jsb_chorales": MusicDataset("JSB Chorales", 1.0),
    "nottingham": MusicDataset("Nottingham", 0.5),
    "musedata": MusicDataset("MuseData", 0.5),
    "piano_midi": MusicDataset("Piano-midi.de", 0.5),
}


def dataset_path(root: str | Path, name: str) -> Path:
    return Path(root) / "polyphonic" / f"{name}.pickle"


def piano_roll(piece, path: Path | str = "?", where: str = "") -> torch.Tensor:
    """A piece (a list of steps, each a list of MIDI notes 21..108) -> a bool piano roll [frames, 88].

    All notes are checked and placed at once (numpy); only a piece with a bad note is walked step by step, to
    name the first one.
    """
    notes = np.array(list(chain.from_iterable(piece)))
    if not notes.size or notes.dtype.kind in "iu" and ((notes >= LOWEST_NOTE) & (notes < LOWEST_NOTE + KEYS)).all():
        roll = torch.zeros(len(piece), KEYS, dtype=torch.bool)
        frames = np.repeat(np.arange(len(piece)), list(map(len, piece)))
        roll[torch.from_numpy(frames), torch.from_numpy(notes.astype(np.int64) - LOWEST_NOTE)] = True
        return roll
    for frame, notes in enumerate(piece):
        for note in notes:
            if not isinstance(note, int) or not LOWEST_NOTE <= note < LOWEST_NOTE + KEYS:
                raise UserError(f"{path}: {where} step {frame} holds {note!r}; notes must be MIDI numbers "
                                f"{LOWEST_NOTE}..{LOWEST_NOTE + KEYS - 1}. Is the file corrupt?")
    raise UserError(f"{path}: {where} holds notes that are not whole numbers. Is the file corrupt?")


def load_pieces(path: Path) -> dict[str, list[torch.Tensor]]:
    """The pickle's splits as piano rolls: {"train": [...], "validation": [...], "test": [...]}."""
    fix = (f"Get it with `rrn-data get {path.stem}` (the Boulanger-Lewandowski pickle, {SOURCE_URL}), or set "
           "data.root=<a folder holding polyphonic/>.")
    if not path.is_file():
        raise MissingDataError(f"music dataset not found: {path}. {fix}")
    raw = read_music_file(path, fix)   # rrn's pickle, a canonical pickle or a .mat; pickles read restricted
    return {split: [piano_roll(piece, path, f"{key} piece {number}") for number, piece in enumerate(raw[key])]
            for split, key in SPLITS.items()}


def shifted(roll: torch.Tensor) -> torch.Tensor:
    """The model's inputs for a piece: the zero frame, then every frame but the last (input t = frame t - 1)."""
    return torch.cat([roll.new_zeros(1, roll.shape[1]), roll[:-1]])


class WindowSampler(EpochOrder, Sampler[list[tuple[int, int]]]):
    """Batches of (piece index, first frame) keys: each group of pieces in consecutive windows of `window` frames.

    Groups come from `BucketBatchSampler` (similar lengths, shuffled per epoch, split across DDP ranks); a
    group's windows follow each other in time, so the model can carry state from one to the next. A group
    runs as many windows as its longest piece needs; with several ranks, as many as the longest piece of the
    groups the ranks run side by side, so every rank takes the same number of steps (extra windows are empty).
    Resumable (rrn_app/data/resumable.py): `resume_at(n)` makes the next pass over the epoch start at window n.
    """

    def __init__(self, lengths: list[int], batch_size: int, window: int, shuffle: bool, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0):
        self.lengths, self.window = list(lengths), window
        self.groups = BucketBatchSampler(lengths, batch_size, shuffle=shuffle, seed=seed,
                                         num_replicas=num_replicas, rank=rank)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.groups.set_epoch(epoch)

    @property
    def sampler(self):
        """Where Lightning calls set_epoch (`dataloader.batch_sampler.sampler`): this sampler itself."""
        return self

    def _groups(self):
        """(this rank's group, its number of windows) in order."""
        groups, replicas, rank = self.groups._all_batches(), self.groups.num_replicas, self.groups.rank
        for first in range(0, len(groups) - rank, replicas):
            side_by_side = groups[first : first + replicas]
            longest = max(self.lengths[index] for group in side_by_side for index in group)
            yield side_by_side[rank], -(-longest // self.window)

    def _windows(self):
        for group, windows in self._groups():
            for number in range(windows):
                yield [(index, number * self.window) for index in group]

    def __iter__(self):
        yield from islice(self._windows(), self.take_skip(), None)  # both when the first window is asked for

    def __len__(self) -> int:
        return sum(windows for _, windows in self._groups())


class PieceWindows(torch.utils.data.Dataset):
    """Pieces addressed by (index, first frame): the window of `window` frames from there (None: whole piece)."""

    def __init__(self, rolls: list[torch.Tensor], window: int | None):
        self.rolls, self.window = rolls, window
        self.inputs = [shifted(roll) for roll in rolls]  # once, not once per window

    def __len__(self) -> int:
        return len(self.rolls)

    def __getitem__(self, key):
        index, start = key if isinstance(key, tuple) else (key, 0)
        roll = self.rolls[index]
        end = len(roll) if self.window is None else start + self.window
        return {"inputs": self.inputs[index][start:end], "targets": roll[start:end], "start": start}


def collate(items: list[dict]) -> dict:
    """Pad a list of windows to the longest: float inputs and targets, real lengths, whether state resets."""
    lengths = torch.tensor([len(item["targets"]) for item in items])
    longest = max(int(lengths.max()), 1)
    inside = torch.arange(longest) < lengths[:, None]  # the real frames, row by row: the order torch.cat gives
    inputs = torch.zeros(len(items), longest, KEYS)
    targets = torch.zeros(len(items), longest, KEYS)
    inputs[inside] = torch.cat([item["inputs"] for item in items]).float()
    targets[inside] = torch.cat([item["targets"] for item in items]).float()
    return {"inputs": inputs, "targets": targets, "lengths": lengths, "reset": items[0]["start"] == 0}


class MusicDataModule(L.LightningDataModule):
    def __init__(self, root: str = "data", dataset: str = "jsb_chorales", batch_size: int = 8, window: int = 100,
                 eval_batch_size: int = 32, tempo: float = 120.0, num_workers: int = 0, seed: int = 0):
        super().__init__()
        if dataset not in DATASETS:
            raise option_checks.InvalidOption("dataset", dataset, f"must be one of {', '.join(map(repr, DATASETS))} "
                                           "(choose it with task.dataset=<name>)")
        self.dataset = dataset
        self.batch_size = option_checks.positive_int("batch_size", batch_size)
        self.window = option_checks.positive_int("window", window)
        self.eval_batch_size = option_checks.positive_int("eval_batch_size", eval_batch_size)
        self.tempo = option_checks.positive_float("tempo", tempo)
        self.num_workers, self.seed = num_workers, seed
        present = [path for path in candidate_paths(root, dataset) if path.is_file()]
        # data.root's pickle, else a canonical pickle or .mat there, else the embedded copy (JSB)
        self.path = present[0] if present else dataset_path(dataset_root(root, dataset), dataset)
        self.pieces = None

    def setup(self, stage: str | None = None) -> None:
        if self.pieces is None:
            self.pieces = load_pieces(self.path)

    def frames(self, split: str) -> int:
        return sum(len(roll) for roll in self.pieces[split])

    def model_arguments(self) -> dict:
        """What the LightningModule needs from the data: the dataset (for sampling) and the frame duration."""
        return dict(dataset=self.dataset, beats_per_frame=DATASETS[self.dataset].beats_per_frame, tempo=self.tempo,
                    data_path=str(self.path.resolve()))

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer else (1, 0)

    def train_dataloader(self):
        rolls = self.pieces["train"]
        replicas, rank = self._rank()
        sampler = WindowSampler([len(r) for r in rolls], self.batch_size, self.window, shuffle=True, seed=self.seed,
                                num_replicas=replicas, rank=rank)
        # The number of windows depends on the epoch's grouping of pieces, and Lightning reads the length when it
        # (re)loads this loader, before it sets the epoch: set it here (conf/task/music.yaml reloads every epoch) to
        # the epoch Lightning will set (the one being trained; after a resume at an epoch's end, the next one).
        sampler.set_epoch(self.trainer.fit_loop.epoch_progress.current.processed if self.trainer else 0)
        return ResumableLoader(PieceWindows(rolls, self.window), batch_sampler=sampler, collate_fn=collate,
                               num_workers=self.num_workers, persistent_workers=self.num_workers > 0, seed=self.seed)

    def _whole_pieces(self, split: str) -> ResumableLoader:
        rolls = self.pieces[split]
        replicas, rank = self._rank()
        sampler = BucketBatchSampler([len(r) for r in rolls], self.eval_batch_size, shuffle=False,
                                     num_replicas=replicas, rank=rank)
        return ResumableLoader(PieceWindows(rolls, None), batch_sampler=sampler, collate_fn=collate,
                               num_workers=self.num_workers, persistent_workers=self.num_workers > 0, seed=self.seed)

    def val_dataloader(self):
        return self._whole_pieces("validation")

    def test_dataloader(self):
        return self._whole_pieces("test")
