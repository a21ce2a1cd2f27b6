"""Numbers that describe piano rolls (samples or a corpus) and how far samples are from the corpus.

For a set of piano rolls (bool [frames, 88], column j the MIDI note 21 + j), `describe` gives:
- `notes_per_frame`: the mean number of keys sounding in a frame (rests included);
- `polyphony`: the histogram of notes per frame, the share of frames with 0, 1, ..., 9 and 10 or more notes;
- `pitch_range`: the lowest and highest note sounding, and the 5th and 95th percentiles of the sounding notes;
- `chord_types`: the share of each chord type among the sounding frames, a chord type being the frame's set of
  pitch classes up to transposition (`chord_type`: C-E-G, F-A-C and E-G-C are all the major triad);
- `top_chord_share`: the share of sounding frames whose chord type is among the reference's 10 most common.

`compare` measures the distance of a set of rolls from the reference (the training pieces): the total variation
distance (half the L1 distance: 0 for the same histogram, 1 for disjoint ones) between their polyphony
histograms, and between their chord-type distributions (the reference's top 10, and all others pooled).
`corpus_report` gives the same for the test pieces and for the first half of the training pieces against the
second half: the distance that two sets of real pieces of the corpus are apart, the yardstick for samples.

`write_report` writes `stats.json` and `stats.png` (`plot`; rrn-generate ... stats=true); `python -m rrn_app.music_stats A.json B.json
--out both.png` draws several stats.json files (e.g. of two outputs) in one picture.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from rrn_app.data.music import LOWEST_NOTE  # the piano roll's column 0 (MIDI note 21, A0)

MAX_POLYPHONY = 10  # the last bin of the polyphony histogram: this many notes or more
TOP_CHORDS = 10
DATASET_TITLES = {"jsb_chorales": "JSB Chorales", "nottingham": "Nottingham", "musedata": "MuseData",
                  "piano_midi": "Piano-midi.de"}
# A few named chord types (pitch classes above C; types that are the same up to transposition share a name: C-F-G
# is F-G-C, C-E-G-A is A-C-E-G); any other type is shown by its pitch classes.
CHORD_NAMES = {
    (0,): "one note", (0, 7): "5th/4th", (0, 4): "maj 3rd/min 6th", (0, 3): "min 3rd/maj 6th", (0, 2): "2nd/7th",
    (0, 6): "tritone", (0, 4, 7): "major triad", (0, 3, 7): "minor triad", (0, 3, 6): "diminished triad",
    (0, 4, 8): "augmented triad", (0, 4, 7, 10): "dominant 7th", (0, 3, 7, 10): "minor 7th/major 6th",
    (0, 4, 7, 11): "major 7th", (0, 3, 6, 10): "half-diminished 7th", (0, 3, 6, 9): "diminished 7th",
    (0, 4, 10): "dominant 7th, no 5th", (0, 3, 10): "minor 7th, no 5th", (0, 5, 7): "sus2/sus4",
    (0, 2, 4, 7): "added 2nd",
}


def chord_type(pitch_classes) -> tuple[int, ...]:
    """A set of pitch classes up to transposition: its smallest rotation to 0 (sorted tuples compared in order),
    e.g. {0, 4, 7}, {5, 9, 0} and {4, 7, 0} are all (0, 3, 8); () for a rest."""
    classes = sorted(set(int(c) % 12 for c in pitch_classes))
    if not classes:
        return ()
    return min(tuple(sorted((c - root) % 12 for c in classes)) for root in classes)


_NAMED = {chord_type(classes): name for classes, name in CHORD_NAMES.items()}


def chord_name(kind: tuple[int, ...]) -> str:
    """A chord type's name, or its pitch classes as `{0,3,8}`."""
    return _NAMED.get(tuple(kind), "{" + ",".join(map(str, kind)) + "}")


def frame_chord_types(roll: torch.Tensor) -> list[tuple[int, ...]]:
    """The chord type of every frame of a roll (() for a rest)."""
    keys = torch.as_tensor(roll).bool().numpy()
    classes = (np.arange(keys.shape[1]) + LOWEST_NOTE) % 12
    masks = (keys[:, :, None] & (classes[None, :, None] == np.arange(12)[None, None])).any(1)  # [frames, 12]
    cache: dict[bytes, tuple[int, ...]] = {}
    kinds = []
    for row in masks:
        key = row.tobytes()
        if key not in cache:
            cache[key] = chord_type(np.nonzero(row)[0])
        kinds.append(cache[key])
    return kinds


def describe(rolls: list[torch.Tensor], top: list[tuple[int, ...]] | None = None) -> dict:
    """The numbers of the module docstring for a set of rolls; `top`: the reference's most common chord types
    (default: these rolls' own)."""
    frames = torch.cat([torch.as_tensor(roll).bool() for roll in rolls]) if rolls else torch.zeros(0, 88, dtype=bool)
    counts = frames.sum(1)
    histogram = torch.bincount(counts.clamp(max=MAX_POLYPHONY), minlength=MAX_POLYPHONY + 1).double()
    notes = torch.nonzero(frames)[:, 1] + LOWEST_NOTE
    kinds = Counter(kind for roll in rolls for kind in frame_chord_types(roll) if kind)
    sounding = sum(kinds.values())
    top = [kind for kind, _ in kinds.most_common(TOP_CHORDS)] if top is None else [tuple(kind) for kind in top]
    low, high = (np.percentile(notes.numpy(), [5, 95]).tolist() if len(notes) else [None, None])
    return {
        "pieces": len(rolls), "frames": int(len(frames)),
        "notes_per_frame": float(counts.double().mean()) if len(frames) else 0.0,
        "polyphony": (histogram / max(len(frames), 1)).tolist(),
        "pitch_range": {"lowest": int(notes.min()) if len(notes) else None,
                        "highest": int(notes.max()) if len(notes) else None,
                        "percentile_5": low, "percentile_95": high},
        "chord_types": {chord_name(kind): kinds[kind] / max(sounding, 1) for kind in top},
        "top_chord_types": [list(kind) for kind in top],
        "top_chord_share": sum(kinds[kind] for kind in top) / max(sounding, 1),
    }


def total_variation(p, q) -> float:
    """Half the L1 distance between two distributions on the same bins."""
    return 0.5 * float(np.abs(np.asarray(p, dtype=float) - np.asarray(q, dtype=float)).sum())


def compare(numbers: dict, reference: dict) -> dict:
    """Distances of `numbers` (from describe with the reference's top chord types) from `reference`."""
    def chords(entry):
        shares = list(entry["chord_types"].values())
        return [*shares, max(0.0, 1 - sum(shares))]  # the top types, then all others pooled

    return {"polyphony_tv": total_variation(numbers["polyphony"], reference["polyphony"]),
            "chord_type_tv": total_variation(chords(numbers), chords(reference))}


def corpus_report(pieces: dict[str, list[torch.Tensor]]) -> dict:
    """The training pieces (the reference), the test pieces against them, and the first half of the training
    pieces against the second half (the distance within the corpus itself)."""
    train = pieces["train"]
    reference = describe(train)
    top = [tuple(kind) for kind in reference["top_chord_types"]]
    first, second = train[: len(train) // 2], train[len(train) // 2:]
    halves = describe(first, top), describe(second, top)
    test = describe(pieces["test"], top)
    return {"train": reference, "test": {**test, **compare(test, reference)},
            "train_halves": compare(*halves), "top": top}


def write_report(stem: Path, samples: list[torch.Tensor], pieces: dict[str, list[torch.Tensor]], label: str,
                 about: dict | None = None) -> list[Path]:
    """`<stem>.json` and `<stem>.png`: the samples (their sampled frames, primers left out) against the corpus;
    returns the two paths."""
    corpus = corpus_report(pieces)
    numbers = describe(samples, corpus["top"])
    report = {"label": label, **(about or {}), "distance": "total variation distance to the training pieces' "
              "histogram (polyphony_tv: notes per frame; chord_type_tv: the top-10 chord types and the rest pooled)",
              "samples": {**numbers, **compare(numbers, corpus["train"])}, "test": corpus["test"],
              "train": corpus["train"], "train_halves": corpus["train_halves"]}
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    json_path = stem.with_suffix(".json")
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    return [json_path, plot([report], stem.with_suffix(".png"))]


def plot(reports: list[dict], path: Path) -> Path:
    """Polyphony histograms and top chord-type shares: the training pieces, the test pieces and each report's
    samples, the total variation distances in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = reports[0]
    rows = [("train pieces", first["train"], None),
            ("test pieces", first["test"], first["test"]),
            *[(f"samples: {report['label']}", report["samples"], report["samples"]) for report in reports]]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 1.5]})
    width = 0.8 / len(rows)
    names = list(first["train"]["chord_types"])
    for index, (label, numbers, distances) in enumerate(rows):
        bins = np.arange(len(numbers["polyphony"]))
        left_label = label if distances is None else f"{label} (TV {distances['polyphony_tv']:.2f})"
        left.bar(bins + (index - (len(rows) - 1) / 2) * width, numbers["polyphony"], width, label=left_label)
        shares = [numbers["chord_types"].get(name, 0.0) for name in names]
        right_label = label if distances is None else f"{label} (TV {distances['chord_type_tv']:.2f})"
        right.bar(np.arange(len(names)) + (index - (len(rows) - 1) / 2) * width, shares, width, label=right_label)
    left.set_xticks(np.arange(MAX_POLYPHONY + 1), [*map(str, range(MAX_POLYPHONY)), f"{MAX_POLYPHONY}+"])
    left.set_xlabel("notes sounding in a frame")
    left.set_ylabel("share of frames")
    left.set_title("polyphony", fontsize="medium")
    for axes in (left, right):  # room above the bars for the legend
        axes.set_ylim(0, axes.get_ylim()[1] * 1.45)
    left.legend(fontsize="x-small", loc="upper right")
    right.set_xticks(np.arange(len(names)), names, rotation=35, ha="right", fontsize="small")
    right.set_ylabel("share of sounding frames")
    right.set_title("the training pieces' most common chord types", fontsize="medium")
    right.legend(fontsize="x-small", loc="upper right")
    halves = first["train_halves"]
    dataset = first.get("dataset", "")
    figure.suptitle(f"{DATASET_TITLES.get(dataset, dataset)}: TV distance to the training pieces (the training pieces' first half "
                    f"to their second: polyphony {halves['polyphony_tv']:.3f}, chord types "
                    f"{halves['chord_type_tv']:.3f})", fontsize="small")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def main(arguments: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rrn_app.music_stats",
                                     description="Draw several stats.json files (from rrn-generate stats=true) in "
                                                 "one picture: the corpus of the first and each file's samples.")
    parser.add_argument("reports", nargs="+", type=Path, help="stats.json files")
    parser.add_argument("--out", type=Path, default=Path("stats.png"), help="the picture (default stats.png)")
    options = parser.parse_args(arguments)
    for report in options.reports:
        if not report.is_file():
            parser.error(f"{report} not found: give stats.json files written by rrn-generate ... stats=true")
    print(plot([json.loads(report.read_text()) for report in options.reports], options.out))


if __name__ == "__main__":
    main()
