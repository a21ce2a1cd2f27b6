"""Sample statistics of task=music (rrn_app/music_stats.py): chord types up to transposition, the numbers of a
set of piano rolls on hand-made examples, total variation distances, the corpus's own yardstick, and
rrn-generate's samples=N stats=true writing stats.json and stats.png."""

from __future__ import annotations

import json

import pytest
import torch

from rrn_app import music_stats
from rrn_app.data.music import piano_roll
from rrn_app.tasks.music import MusicModel
from rrn_app.option_checks import UserError

CELL = {"name": "gru", "hidden_size": 8, "num_layers": 1, "dropout": 0.0, "bidirectional": False, "residual": False}


def test_chord_types_are_pitch_class_sets_up_to_transposition():
    c_major, f_major_first_inversion, c_major_spread = {0, 4, 7}, {9, 0, 5}, {48 % 12, 64 % 12, 79 % 12}
    assert music_stats.chord_type(c_major) == music_stats.chord_type(f_major_first_inversion) \
        == music_stats.chord_type(c_major_spread)
    assert music_stats.chord_type({0, 3, 7}) != music_stats.chord_type({0, 4, 7})  # minor is not major
    assert music_stats.chord_name(music_stats.chord_type({2, 6, 9, 0})) == "dominant 7th"  # D7
    assert music_stats.chord_type([]) == () and music_stats.chord_name((0, 1)) == "{0,1}"


def test_every_named_chord_type_is_a_different_type():
    kinds = [music_stats.chord_type(classes) for classes in music_stats.CHORD_NAMES]
    assert len(set(kinds)) == len(kinds)


def test_the_numbers_of_a_hand_made_roll():
    #             C major (C4 E4 G4 C5), rest, A minor (A3 C4 E4), C major again (E3 G3 C4), one note (C8)
    roll = piano_roll([[60, 64, 67, 72], [], [57, 60, 64], [52, 55, 60], [108]])
    numbers = music_stats.describe([roll])
    assert numbers["frames"] == 5 and numbers["notes_per_frame"] == pytest.approx(11 / 5)
    assert numbers["polyphony"][:5] == pytest.approx([1 / 5, 1 / 5, 0, 2 / 5, 1 / 5])
    assert sum(numbers["polyphony"]) == pytest.approx(1)
    assert numbers["pitch_range"]["lowest"] == 52 and numbers["pitch_range"]["highest"] == 108
    assert numbers["chord_types"] == pytest.approx({"major triad": 2 / 4, "minor triad": 1 / 4, "one note": 1 / 4})
    assert numbers["top_chord_share"] == pytest.approx(1.0)
    only_major = music_stats.describe([roll], top=[music_stats.chord_type({0, 4, 7})])
    assert only_major["top_chord_share"] == pytest.approx(2 / 4)
    assert music_stats.describe([piano_roll([[60] * 0 for _ in range(3)])])["polyphony"][0] == 1.0  # all rests


def test_total_variation_distance_between_histograms():
    four_voices, scattered = [0, 0, 0, 0, 1.0], [0.25, 0.5, 0.25, 0, 0]
    assert music_stats.total_variation(four_voices, four_voices) == 0
    assert music_stats.total_variation(four_voices, scattered) == pytest.approx(1.0)  # disjoint
    assert music_stats.total_variation([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25)


def test_the_corpus_report_measures_the_test_set_and_the_training_halves():
    chord, single = [60, 64, 67], [60]
    pieces = {"train": [piano_roll([chord] * 4), piano_roll([chord] * 4), piano_roll([chord, single] * 2),
                        piano_roll([chord, single] * 2)],
              "test": [piano_roll([single] * 4)]}
    report = music_stats.corpus_report(pieces)
    assert report["train"]["polyphony"][3] == pytest.approx(0.75) and report["train"]["polyphony"][1] == 0.25
    # train halves: first [chord]*8 (all 3 notes), second half 3 and 1 alternating -> polyphony TV 0.5
    assert report["train_halves"]["polyphony_tv"] == pytest.approx(0.5)
    assert report["test"]["polyphony_tv"] == pytest.approx(0.75)  # test all one note: 0.75 of the mass moves
    assert report["test"]["top_chord_share"] == pytest.approx(1.0)  # "one note" is among the train's types


def test_rrn_generate_stats_writes_the_samples_and_their_numbers_against_the_corpus(tmp_path):
    torch.manual_seed(0)
    data = tmp_path / "pieces.pt"
    model = MusicModel(CELL, output="nade", nade_hidden=8)
    pieces = {"train": [piano_roll([[60, 64, 67], [62, 65, 69]] * 3)] * 2, "validation": [],
              "test": [piano_roll([[60, 64, 67]] * 5)]}
    model._pieces = pieces  # what _load_pieces reads from the dataset file
    paths = model.generate_files(tmp_path / "out", {"length": 6, "samples": 3, "stats": True, "wav": False,
                                                    "seed": 4})
    names = [path.name for path in paths]
    assert names == ["sample-seed4.mid", "sample-seed4.png", "sample-seed5.mid", "sample-seed5.png",
                     "sample-seed6.mid", "sample-seed6.png", "stats.json", "stats.png"]
    report = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert report["samples"]["pieces"] == 3 and report["samples"]["frames"] == 18 and report["output"] == "nade"
    assert report["test"]["polyphony_tv"] == pytest.approx(0.0) and 0 <= report["samples"]["polyphony_tv"] <= 1
    assert report["train_halves"]["polyphony_tv"] == 0 and (tmp_path / "out" / "stats.png").stat().st_size > 0
    again = model.generate_files(tmp_path / "out", {"length": 6, "stats": True, "wav": False})
    assert [path.name for path in again][-2:] == ["stats-1.json", "stats-1.png"]  # never overwritten


@pytest.mark.parametrize("option, value, message", [("samples", 0, "samples=0 is not allowed"),
                                                    ("stats", "yes", "stats='yes' is not allowed")])
def test_bad_stats_options_name_the_option(tmp_path, option, value, message):
    with pytest.raises(UserError, match=message):
        MusicModel(CELL).generate_files(tmp_path, {"length": 2, option: value})


def test_several_reports_in_one_picture(tmp_path):
    pieces = {"train": [piano_roll([[60, 64, 67]] * 4)] * 2, "test": [piano_roll([[60]] * 3)]}
    paths = [music_stats.write_report(tmp_path / name, [piano_roll([[60, 64]] * 3)], pieces, name, {"dataset": "x"})
             for name in ("a", "b")]
    music_stats.main([str(paths[0][0]), str(paths[1][0]), "--out", str(tmp_path / "both.png")])
    assert (tmp_path / "both.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        music_stats.main([str(tmp_path / "missing.json")])
