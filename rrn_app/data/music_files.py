"""The files the polyphonic music datasets come in, read into one form: {"train", "valid", "test"} -> pieces.

A piece is a list of time steps, a step the sorted MIDI note numbers (ints, 21..108) sounding then, `[]` a
rest: the layout of rrn's `polyphonic/<name>.pickle`. Two canonical formats are read as well:

- Boulanger-Lewandowski's pickles (`JSB Chorales.pickle`, ...): the same dict, written by Python 2; some
  copies hold the notes as floats or numpy values, or the pieces as numpy arrays. Read with the restricted
  unpickler (`rrn_app.safe_pickle`), so a crafted file cannot run code.
- The MATLAB versions (`JSB_Chorales.mat`, ...; MATLAB 5 files, `scipy.io.loadmat`): keys `traindata`,
  `validdata`, `testdata`, each a 1 x N cell array of uint8 (T x 88) piano rolls, column j = MIDI note 21 + j.
"""

from __future__ import annotations

import numbers
import pickle
from itertools import chain
from pathlib import Path

from rrn_app import safe_pickle
from rrn_app.option_checks import UserError

LOWEST_NOTE, KEYS = 21, 88
SPLIT_KEYS = ("train", "valid", "test")
MAT_KEYS = {"train": "traindata", "valid": "validdata", "test": "testdata"}

# rrn's name -> the file names the dataset's owners use: (pickle on Boulanger-Lewandowski's page, .mat version)
CANONICAL_NAMES = {
    "jsb_chorales": ("JSB Chorales.pickle", "JSB_Chorales.mat"),
    "nottingham": ("Nottingham.pickle", "Nottingham.mat"),
    "musedata": ("MuseData.pickle", "MuseData.mat"),
    "piano_midi": ("Piano-midi.de.pickle", "Piano_midi.mat"),
}
_MAT_MAGIC = b"MATLAB 5.0 MAT-file"


def candidate_paths(root: str | Path, name: str) -> list[Path]:
    """Where a dataset may lie under `root`, in the order the loader looks: rrn's pickle, then the canonical names."""
    folder = Path(root) / "polyphonic"
    return [folder / f"{name}.pickle", *(folder / canonical for canonical in CANONICAL_NAMES.get(name, ()))]


def is_mat(path: Path) -> bool:
    """Whether `path` starts like a MATLAB 5 file (the .mat versions), whatever its name."""
    with open(path, "rb") as file:
        return file.read(len(_MAT_MAGIC)) == _MAT_MAGIC


def read_music_file(path: str | Path, fix: str = "") -> dict[str, list[list[list[int]]]]:
    """The splits of a music file (rrn's or a canonical pickle, or a .mat), as sorted int notes per step.

    Any problem is a one-line `UserError` naming `path`, ending in `fix` (how to get a good copy).
    """
    path = Path(path)
    try:
        raw = _read_mat(path) if is_mat(path) else _read_pickle(path, fix)
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001  (a truncated or foreign file raises anything from pickle/scipy)
        message = str(error).splitlines()[0] if str(error) else ""
        raise UserError(f"could not read {path} ({type(error).__name__}: {message}); is the file corrupt? "
                        f"{fix}".rstrip()) from None
    if not isinstance(raw, dict) or any(not _is_sequence(raw.get(key)) for key in SPLIT_KEYS):
        raise UserError(f"{path} is not a polyphonic music pickle: it must hold a dict with lists 'train', 'valid' "
                        f"and 'test'. {fix}".rstrip())
    return {key: [_piece(piece, path, f"{key} piece {number}", fix) for number, piece in enumerate(raw[key])]
            for key in SPLIT_KEYS}


def _read_pickle(path: Path, fix: str):
    try:
        return safe_pickle.load(path, fix)
    except safe_pickle.RefusedGlobal:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
            IndexError, KeyError, MemoryError) as error:
        message = str(error).splitlines()[0] if str(error) else ""
        raise UserError(f"could not read {path} ({type(error).__name__}: {message}); is the file corrupt? "
                        f"{fix}".rstrip()) from None


def _read_mat(path: Path) -> dict:
    """A .mat version's cells as lists of steps (sorted notes per row of the 88-key roll)."""
    import numpy as np
    import scipy.io

    contents = scipy.io.loadmat(path)
    missing = [key for key in MAT_KEYS.values() if key not in contents]
    if missing:
        raise UserError(f"{path} is a MATLAB file without {', '.join(missing)}; a polyphonic music .mat holds "
                        "traindata, validdata and testdata (1 x N cells of T x 88 piano rolls).")
    splits = {}
    for key, mat_key in MAT_KEYS.items():
        cells = contents[mat_key]
        pieces = []
        for number, roll in enumerate(np.asarray(cells, dtype=object).reshape(-1)):
            roll = np.asarray(roll)
            if roll.ndim != 2 or roll.shape[1] != KEYS or not np.isin(roll, (0, 1)).all():
                raise UserError(f"{path}: {mat_key} cell {number} is not a T x {KEYS} binary piano roll (shape "
                                f"{roll.shape}). Is the file corrupt?")
            rows, columns = np.nonzero(roll)   # row-major: each row's columns ascending
            ends = np.cumsum(np.bincount(rows, minlength=roll.shape[0])).tolist()
            notes = (columns + LOWEST_NOTE).tolist()
            pieces.append([notes[start:end] for start, end in zip([0, *ends[:-1]], ends)])
        splits[key] = pieces
    return splits


def _is_sequence(value) -> bool:
    import numpy as np

    return isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 1)


def _in_layout(piece) -> bool:
    """Whether `piece` is already rrn's layout (lists of sorted, distinct int notes in range), checked with numpy."""
    import numpy as np

    if type(piece) is not list or not piece or not all(type(step) is list for step in piece):
        return False
    flat = list(chain.from_iterable(piece))
    if not flat:
        return True
    if not set(map(type, flat)) <= {int}:   # floats, numpy scalars, bools: normalised one by one
        return False
    notes = np.array(flat)
    if notes.min() < LOWEST_NOTE or notes.max() >= LOWEST_NOTE + KEYS:
        return False
    frames = np.repeat(np.arange(len(piece)), [len(step) for step in piece])
    same_step = frames[1:] == frames[:-1]
    return bool((np.diff(notes)[same_step] > 0).all())


def _piece(piece, path: Path, where: str, fix: str) -> list[list[int]]:
    """One piece as a list of steps of sorted, distinct int notes (floats/numpy values that are whole numbers ok)."""
    if _in_layout(piece):
        return piece
    if not _is_sequence(piece) or len(piece) == 0 or not all(_is_sequence(step) or _is_set(step) for step in piece):
        raise UserError(f"{path}: {where} is not a non-empty list of time steps (lists of MIDI notes). Is the file "
                        f"corrupt? {fix}".rstrip())
    steps = []
    for frame, step in enumerate(piece):
        notes = set()
        for note in step:
            number = _note_number(note)
            if number is None or not LOWEST_NOTE <= number < LOWEST_NOTE + KEYS:
                raise UserError(f"{path}: {where} step {frame} holds {note!r}; notes must be MIDI numbers "
                                f"{LOWEST_NOTE}..{LOWEST_NOTE + KEYS - 1}. Is the file corrupt? {fix}".rstrip())
            notes.add(number)
        steps.append(sorted(notes))
    return steps


def _is_set(value) -> bool:
    return isinstance(value, (set, frozenset))


def _note_number(note) -> int | None:
    """`note` as an int if it is a whole number (int, float 60.0, numpy scalar), else None."""
    if isinstance(note, bool):
        return None
    if isinstance(note, numbers.Integral):
        return int(note)
    if isinstance(note, numbers.Real) and float(note).is_integer():
        return int(note)
    return None


def write_pickle(splits: dict[str, list[list[list[int]]]], path: Path) -> None:
    """rrn's layout: a protocol-2 pickle of {"train", "valid", "test"} with plain ints (no numpy)."""
    with open(path, "wb") as file:
        pickle.dump({key: splits[key] for key in SPLIT_KEYS}, file, protocol=2)
