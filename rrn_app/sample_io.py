"""Sample files: where a new sample goes (`unused_stem`), a text sample, and piano rolls out as MIDI (pretty_midi),
a piano-roll picture (matplotlib) and audio (pretty_midi's synthesis, WAV). The tasks (their per-epoch and
rrn-generate samples) and rrn-generate write through this module.

A piano roll is bool [frames, 88], column j the MIDI note 21 + j. Every frame lasts `seconds` (a dataset's
beats per frame at the tempo, `frame_seconds`). A key sounding in consecutive frames is one held note, from
the start of its first frame to the end of its last (the piano roll cannot tell a repeated note from a held
one). Notes are written on one acoustic-piano track at velocity 80, with the tempo as the file's tempo.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import torch

from rrn_app.data.music import LOWEST_NOTE

VELOCITY = 80
SAMPLE_RATE = 22050
_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def unused_stem(directory: Path, name: str, suffixes: tuple[str, ...]) -> Path:
    """directory/name, or directory/name-1, -2, ... : the first whose files (name + each suffix) do not exist yet,
    so a new sample never overwrites an earlier one."""
    stem, number = Path(directory) / name, 1
    while any(stem.with_suffix(suffix).exists() for suffix in suffixes):
        stem, number = Path(directory) / f"{name}-{number}", number + 1
    return stem


def write_text(text: str, directory: Path, name: str) -> Path:
    """A text sample as `<directory>/<name>.txt` (`<name>-1.txt` ... when that exists); the folder is made."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = unused_stem(directory, name, (".txt",)).with_suffix(".txt")
    path.write_text(text)
    return path


def frame_seconds(beats_per_frame: float, tempo: float) -> float:
    """Seconds per frame: `beats_per_frame` quarter notes at `tempo` quarter notes per minute."""
    return beats_per_frame * 60.0 / tempo


def note_name(note: int) -> str:
    """MIDI 60 -> 'C4' (middle C)."""
    return f"{_NAMES[note % 12]}{note // 12 - 1}"


def notes_of(roll: torch.Tensor) -> list[tuple[int, int, int]]:
    """(MIDI note, first frame, end frame) of every held note: runs of consecutive on-frames of a key."""
    roll = torch.as_tensor(roll).bool()
    padded = torch.nn.functional.pad(roll.T.to(torch.int8), (1, 1))  # [88, frames + 2], off at both ends
    change = padded[:, 1:] - padded[:, :-1]
    notes = []
    for key in range(roll.shape[1]):
        starts = torch.nonzero(change[key] == 1).flatten().tolist()
        ends = torch.nonzero(change[key] == -1).flatten().tolist()
        notes += [(LOWEST_NOTE + key, start, end) for start, end in zip(starts, ends)]
    return sorted(notes, key=lambda note: (note[1], note[0]))


def to_pretty_midi(roll: torch.Tensor, seconds: float, tempo: float = 120.0, program: int = 0):
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(initial_tempo=float(tempo))
    piano = pretty_midi.Instrument(program=program, name="piano")
    for note, start, end in notes_of(roll):
        piano.notes.append(pretty_midi.Note(velocity=VELOCITY, pitch=note, start=start * seconds, end=end * seconds))
    midi.instruments.append(piano)
    return midi


def write_midi(roll: torch.Tensor, path: Path, seconds: float, tempo: float = 120.0) -> Path:
    """A standard MIDI file of the roll, each frame `seconds` long, at `tempo` (quarter notes per minute)."""
    path = Path(path)
    to_pretty_midi(roll, seconds, tempo).write(str(path))
    return path


def write_wav(roll: torch.Tensor, path: Path, seconds: float, tempo: float = 120.0,
              sample_rate: int = SAMPLE_RATE) -> Path:
    """16-bit mono WAV of the roll, synthesised by pretty_midi (sine waves), as long as the roll."""
    audio = to_pretty_midi(roll, seconds, tempo).synthesize(fs=sample_rate)
    total = int(round(len(roll) * seconds * sample_rate))
    audio = np.pad(audio, (0, max(0, total - len(audio))))[: max(total, 1)]
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    samples = (audio / peak * 0.9 * 32767 if peak > 0 else audio).astype("<i2")
    path = Path(path)
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(sample_rate)
        file.writeframes(samples.tobytes())
    return path


def write_png(roll: torch.Tensor, path: Path, seconds: float, title: str = "", primer_frames: int = 0) -> Path:
    """The piano roll as a picture: time across (seconds), pitch up (note names), the primer marked off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    roll = torch.as_tensor(roll).bool()
    sounding = torch.nonzero(roll.any(0)).flatten()
    low, high = (int(sounding.min()), int(sounding.max())) if len(sounding) else (39, 51)  # C4 octave when silent
    low, high = max(0, low - 3), min(roll.shape[1] - 1, max(high + 3, low + 12))
    figure, axes = plt.subplots(figsize=(min(4 + len(roll) * 0.06, 20), 4.5))
    axes.imshow(roll[:, low : high + 1].T.numpy(), origin="lower", aspect="auto", cmap="Greys", interpolation="nearest",
                extent=(0, len(roll) * seconds, LOWEST_NOTE + low - 0.5, LOWEST_NOTE + high + 0.5))
    c_notes = [n for n in range(LOWEST_NOTE + low, LOWEST_NOTE + high + 1) if n % 12 == 0]
    axes.set_yticks(c_notes, [note_name(n) for n in c_notes])
    if primer_frames:
        axes.axvline(primer_frames * seconds, color="tab:red", linewidth=1, label="end of primer")
        axes.legend(loc="upper right", fontsize="small")
    axes.set_xlabel("time (s)")
    axes.set_ylabel("note")
    axes.set_title(title, fontsize="medium")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
