"""task=music: the metrics on hand-computed examples, windowed batches with state carry, MIDI/PNG/WAV output,
seeded generation, data errors, and a short real training run end to end."""

from __future__ import annotations

import json
import math
import pickle
import wave
from pathlib import Path

import pytest
import torch

from helpers import FULL_DATA, BatchRecorder, located, run_cli, run_dir_of, run_epochs
from rrn_app import music_io
from rrn_app.data.music import KEYS, MusicDataModule, PieceWindows, WindowSampler, collate, load_pieces, piano_roll
from rrn_app.tasks.music import FrameMetrics, MusicModel, frame_nll, parse_prime
from rrn_app.option_checks import InvalidOption, MissingDataError, UserError

CELL = {"name": "gru", "hidden_size": 16, "num_layers": 1, "dropout": 0.0, "bidirectional": False, "residual": False}


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# ---- metrics ----

def test_nll_is_summed_over_keys_and_averaged_over_all_frames_of_the_split():
    # BCE with logits: -log sigmoid(z) = softplus(-z) for an on key, -log(1 - sigmoid(z)) = softplus(z) for an off key
    metric = FrameMetrics()
    # piece A, 2 frames, 3 keys (the other 85 keys: logit -inf-like, off, cost ~0)
    logits_a = torch.full((1, 2, KEYS), -50.0)
    targets_a = torch.zeros(1, 2, KEYS)
    logits_a[0, 0, :3] = torch.tensor([2.0, 0.0, -1.0])
    targets_a[0, 0, :3] = torch.tensor([1.0, 0.0, 1.0])
    logits_a[0, 1, :3] = torch.tensor([0.0, 0.0, 0.0])
    targets_a[0, 1, :3] = torch.tensor([0.0, 1.0, 0.0])
    frame_a0 = softplus(-2.0) + softplus(0.0) + softplus(1.0)
    frame_a1 = 3 * math.log(2.0)
    # piece B, 1 real frame and 1 padding frame whose (huge) loss must not count
    logits_b = torch.full((1, 2, KEYS), -50.0)
    targets_b = torch.zeros(1, 2, KEYS)
    logits_b[0, 0, 0] = 1.0
    targets_b[0, 0, 0] = 1.0
    logits_b[0, 1, :] = 50.0  # padding
    frame_b0 = softplus(-1.0)
    metric.update(logits_a, targets_a, torch.tensor([2]))
    metric.update(logits_b, targets_b, torch.tensor([1]))
    expected = (frame_a0 + frame_a1 + frame_b0) / 3  # frame-weighted: not ((a0 + a1) / 2 + b0) / 2
    assert metric.compute()["nll"].item() == pytest.approx(expected, abs=1e-6)
    per_frame = frame_nll(logits_b, targets_b, torch.tensor([1]))
    assert per_frame[0, 1] == 0 and per_frame[0, 0].item() == pytest.approx(frame_b0, abs=1e-6)


def test_frame_accuracy_of_bay_et_al_sums_tp_fp_fn_over_frames():
    logits = torch.full((1, 3, KEYS), -5.0)
    targets = torch.zeros(1, 3, KEYS)
    targets[0, 0, [0, 1]] = 1  # frame 0: predicted {0, 2}: TP 1, FP 1, FN 1
    logits[0, 0, [0, 2]] = 5.0
    targets[0, 1, 3] = 1  # frame 1: predicted {3}: TP 1
    logits[0, 1, 3] = 5.0
    # frame 2: nothing sounding, nothing predicted: counts nowhere
    metric = FrameMetrics()
    metric.update(logits, targets, torch.tensor([3]))
    assert metric.compute()["frame_acc"].item() == pytest.approx(2 / 4)


# ---- windows and state carry ----

def test_windows_cover_every_frame_once_in_order_and_carried_state_equals_whole_pieces():
    torch.manual_seed(0)
    lengths = [7, 3, 12, 5, 9]
    rolls = [torch.rand(n, KEYS) < 0.1 for n in lengths]
    sampler = WindowSampler(lengths, batch_size=2, window=4, shuffle=True, seed=3)
    dataset = PieceWindows(rolls, window=4)
    seen = {index: [] for index in range(len(rolls))}
    model = MusicModel(CELL).eval()
    carried = {}
    state = None
    for keys in sampler:
        batch = collate([dataset[key] for key in keys])
        assert batch["reset"] == (keys[0][1] == 0) and len({start for _, start in keys}) == 1
        for row, (index, start) in enumerate(keys):
            real = int(batch["lengths"][row])
            seen[index] += batch["targets"][row, :real].bool().tolist()
            assert real == max(0, min(4, lengths[index] - start))
        with torch.no_grad():
            logits, state = model(batch["inputs"], batch["lengths"], None if batch["reset"] else state)
        for row, (index, _) in enumerate(keys):
            carried.setdefault(index, []).append(logits[row, : int(batch["lengths"][row])])
    for index, roll in enumerate(rolls):
        assert seen[index] == roll.tolist()  # every frame exactly once, in order
        whole = PieceWindows(rolls, None)[index]
        with torch.no_grad():
            logits, _ = model(whole["inputs"][None].float())
        assert torch.allclose(torch.cat(carried[index]), logits[0], atol=1e-5)  # carry = one pass over the piece
    assert len(sampler) == sum(1 for _ in sampler)



def test_every_epoch_trains_all_its_windows_and_validates_though_their_number_changes(tmp_path, data_root):
    """Nottingham's 694 pieces are grouped anew each epoch, so the number of windows changes; with
    conf/task/music.yaml's reload_dataloaders_every_n_epochs Lightning reads it again: every window of every epoch
    trains, and validation runs at every epoch's end. (Without the full data: JSB Chorales' 229 pieces in pairs
    and windows of 50 frames change their number too; the fixtures' Nottingham is too small to regroup.)"""
    from omegaconf import OmegaConf

    options = dict(dataset="nottingham") if FULL_DATA else dict(dataset="jsb_chorales", batch_size=2, window=50)
    data = MusicDataModule(root=str(data_root), eval_batch_size=128, **options)
    data.setup()
    sampler = WindowSampler([len(roll) for roll in data.pieces["train"]], data.batch_size, data.window, shuffle=True)
    windows = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        windows.append(len(sampler))
    assert len(set(windows)) > 1  # the case at hand

    config = OmegaConf.load(Path(__file__).parents[1] / "conf" / "task" / "music.yaml")
    module = BatchRecorder()
    run_epochs(module, 3, tmp_path, datamodule=data, limit_val_batches=1,
               reload_dataloaders_every_n_epochs=config.trainer.reload_dataloaders_every_n_epochs)
    assert [len(epoch) for epoch in module.epochs] == windows
    assert module.validations == 3

def test_ddp_ranks_take_the_same_number_of_window_steps_and_share_every_frame():
    lengths = [30, 3, 12, 5, 9, 41, 7]
    ranks = [WindowSampler(lengths, batch_size=2, window=4, shuffle=True, seed=1, num_replicas=2, rank=rank)
             for rank in (0, 1)]
    batches = [list(sampler) for sampler in ranks]
    assert len(batches[0]) == len(batches[1]) == len(ranks[0]) == len(ranks[1])
    covered = {(index, start + offset) for rank in batches for keys in rank for index, start in keys
               for offset in range(4) if start + offset < lengths[index]}
    assert covered == {(index, frame) for index, n in enumerate(lengths) for frame in range(n)}


def test_inputs_are_the_previous_frames_starting_from_the_zero_frame():
    roll = piano_roll([[60], [62, 64], [], [65]])
    item = PieceWindows([roll], None)[0]
    assert item["inputs"][0].sum() == 0 and torch.equal(item["inputs"][1:], roll[:-1])
    assert torch.equal(item["targets"], roll) and roll[1, 62 - 21] and roll[2].sum() == 0


# ---- files ----

ROLL_NOTES = [[60, 64], [60, 64], [67], [], [72, 21, 108]]  # C4+E4 held 2 frames, G4, rest, a chord with the extremes


def test_midi_reads_back_with_pretty_midi_and_mido_to_the_same_notes_and_timing(tmp_path):
    import mido
    import pretty_midi

    roll = piano_roll(ROLL_NOTES)
    seconds = music_io.frame_seconds(0.5, 120.0)  # an eighth note at 120 bpm: 0.25 s
    path = music_io.write_midi(roll, tmp_path / "piece.mid", seconds, tempo=120.0)
    expected = sorted([(60, 0.0, 0.5), (64, 0.0, 0.5), (67, 0.5, 0.75), (21, 1.0, 1.25), (72, 1.0, 1.25),
                       (108, 1.0, 1.25)])

    midi = pretty_midi.PrettyMIDI(str(path))
    notes = sorted((n.pitch, round(n.start, 6), round(n.end, 6)) for i in midi.instruments for n in i.notes)
    assert notes == expected
    assert midi.get_tempo_changes()[1].tolist() == pytest.approx([120.0])

    file = mido.MidiFile(str(path))
    tempos = [m.tempo for track in file.tracks for m in track if m.type == "set_tempo"]
    assert tempos == [500000]  # microseconds per quarter note = 120 bpm
    ticks, sounding, read = 0, {}, []
    for track in file.tracks:
        ticks = 0
        for message in track:
            ticks += message.time
            seconds_now = mido.tick2second(ticks, file.ticks_per_beat, 500000)
            if message.type == "note_on" and message.velocity > 0:
                sounding[message.note] = seconds_now
            elif message.type in ("note_off", "note_on"):
                read.append((message.note, round(sounding.pop(message.note), 3), round(seconds_now, 3)))
    assert sorted(read) == expected


def test_the_png_shows_each_note_where_it_sounds_and_the_end_of_the_primer(tmp_path):
    import numpy as np
    from matplotlib.image import imread

    roll = piano_roll(ROLL_NOTES)  # the chord spans the whole keyboard, so the picture shows all 88 keys
    picture = imread(music_io.write_png(roll, tmp_path / "roll.png", 0.5, "test", primer_frames=2))[..., :3]
    dark = picture.mean(-1) < 0.25
    # the axes' frame: the rows and columns that are dark almost all across (the spines)
    rows, columns = dark.sum(1), dark.sum(0)
    frame_rows, frame_columns = np.flatnonzero(rows > 0.8 * rows.max()), np.flatnonzero(columns > 0.8 * columns.max())
    top, bottom, left, right = frame_rows[0], frame_rows[-1], frame_columns[0], frame_columns[-1]
    # the centre of each (frame, key) cell: time across, pitch up
    x = np.round(left + (np.arange(len(roll)) + 0.5) * (right - left) / len(roll)).astype(int)
    y = np.round(bottom - (np.arange(KEYS) + 0.5) * (bottom - top) / KEYS).astype(int)
    shown = dark[y][:, x].T
    assert (shown == roll.numpy()).all(), np.argwhere(shown != roll.numpy())  # dark exactly where notes sound
    red = (picture[..., 0] > 0.6) & (picture[..., 1] < 0.4)
    (primer_line,) = np.flatnonzero(red[(top + bottom) // 2])  # one red line, 2 of the 5 frames in
    assert abs(primer_line - (left + 2 * (right - left) / len(roll))) <= 2


def test_wav_sounds_the_notes_and_is_silent_in_the_rest(tmp_path):
    roll = piano_roll(ROLL_NOTES)
    wav = music_io.write_wav(roll, tmp_path / "roll.wav", 0.5, sample_rate=8000)
    with wave.open(str(wav)) as file:
        assert (file.getnchannels(), file.getsampwidth(), file.getframerate()) == (1, 2, 8000)
        assert file.getnframes() == 5 * 0.5 * 8000  # as long as the roll
        import numpy as np

        audio = np.frombuffer(file.readframes(file.getnframes()), dtype="<i2")
    # frames of 4000 samples: C4+E4 for two, G4, a rest (silent: the notes end with their frames), a chord
    assert np.abs(audio[:12000]).max() > 10000 and np.abs(audio[12100:15900]).max() < 500
    assert np.abs(audio[16000:]).max() > 10000


# ---- generation ----

def test_generation_is_deterministic_under_a_seed_and_continues_the_primer(tmp_path):
    torch.manual_seed(0)
    model = MusicModel(CELL, dataset="nottingham", beats_per_frame=0.5)
    primer = piano_roll(ROLL_NOTES)
    first = model.sample(primer, 20, temperature=1.0, seed=5)
    again = model.sample(primer, 20, temperature=1.0, seed=5)
    other = model.sample(primer, 20, temperature=1.0, seed=6)
    assert first.shape == (25, KEYS) and torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(first[:5], primer)  # continued, not replaced
    paths = model.generate_files(tmp_path / "out", {"length": 12, "seed": 1, "temperature": 0.8, "name": "s"})
    assert [p.name for p in paths] == ["s.mid", "s.png", "s.wav"] and all(p.stat().st_size > 0 for p in paths)
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(str(paths[0]))
    assert midi.get_end_time() <= 12 * 0.25 + 1e-6  # eighth-note frames at 120 bpm
    first_midi = paths[0].read_bytes()
    again = model.generate_files(tmp_path / "out", {"length": 12, "seed": 2, "name": "s"})
    assert [p.name for p in again] == ["s-1.mid", "s-1.png", "s-1.wav"]  # an earlier sample is never overwritten
    assert paths[0].read_bytes() == first_midi


def test_samples_go_to_wandb_only_when_that_logger_is_on(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    from rrn_app.tasks.music import log_to_wandb

    assert log_to_wandb(None, []) is False and log_to_wandb(CSVLogger(tmp_path), []) is False


@pytest.mark.slow
def test_samples_are_logged_to_an_offline_wandb_run(tmp_path):
    """The picture and the audio reach the W&B run's media (offline: no server)."""
    from lightning.pytorch.loggers import WandbLogger

    from rrn_app.tasks.music import log_to_wandb

    roll = torch.zeros(8, KEYS, dtype=torch.bool)
    roll[::2, 40] = True
    paths = [music_io.write_png(roll, tmp_path / "sample.png", 0.5, "a sample"),
             music_io.write_wav(roll, tmp_path / "sample.wav", 0.5, 120.0)]
    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="rrn-test")
    try:
        assert log_to_wandb(logger, paths, step=3) is True
        media = Path(logger.experiment.dir) / "media"
        assert list(media.glob("images/sample/piano_roll_*.png")) and list(media.glob("audio/sample/audio_*.wav"))
    finally:
        logger.experiment.finish()


@pytest.mark.parametrize("option, value, message", [
    ("dataset", "bach", "dataset='bach' is not allowed: must be one of"),
    ("lr_decay", 1.5, "lr_decay=1.5 is not allowed: must be a factor in (0, 1)"),
    ("sample_prime", "test:x", "sample_prime='test:x' is not allowed: must be none, random, or"),
    ("sample_temperature", -1, "sample_temperature=-1 is not allowed"),
])
def test_bad_model_options_name_the_option(option, value, message):
    with pytest.raises(InvalidOption) as error:
        MusicModel(CELL, **{option: value})
    assert message in str(error.value)


def test_prime_option():
    assert parse_prime(None) == ("none", None, None) and parse_prime("random") == ("random", None, None)
    assert parse_prime("test:3") == ("test", 3, 16) and parse_prime("valid:0:8") == ("valid", 0, 8)
    for bad in ("test", "test:x", "dev:1", "test:1:0"):
        with pytest.raises(InvalidOption, match="prime="):
            parse_prime(bad)


def test_primer_from_the_real_test_pieces(data_root):
    path = located(data_root, "jsb_chorales") / "polyphonic" / "jsb_chorales.pickle"  # data.root's or the embedded
    model = MusicModel(CELL, dataset="jsb_chorales", data_path=str(path))
    test = load_pieces(path)["test"]
    assert torch.equal(model.primer("test:2:10"), test[2][:10])
    random_frame = model.primer("random", seed=4)
    assert random_frame.shape == (1, KEYS) and random_frame.any()
    assert torch.equal(random_frame, model.primer("random", seed=4))
    with pytest.raises(InvalidOption, match="has 77 pieces"):
        model.primer("test:77")


# ---- data errors ----

def test_missing_pickle_names_the_path(tmp_path):
    with pytest.raises(MissingDataError) as error:
        MusicDataModule(root=str(tmp_path), dataset="musedata")
    assert str(tmp_path / "polyphonic" / "musedata.pickle") in str(error.value) and "data.root" in str(error.value)
    assert f"rrn-data get musedata root={tmp_path}" in str(error.value)


def test_jsb_chorales_falls_back_to_the_embedded_copy_with_one_line(tmp_path, capsys):
    data = MusicDataModule(root=str(tmp_path))
    assert data.path == located(tmp_path, "jsb_chorales") / "polyphonic" / "jsb_chorales.pickle" and data.path.is_file()
    assert capsys.readouterr().err.splitlines() == [
        f"rrn: jsb_chorales not found in {tmp_path / 'polyphonic'}; using the embedded copy "
        "(rrn-data get jsb_chorales for your own)"]


@pytest.mark.parametrize("content, message", [
    (b"not a pickle at all", "could not read"),
    (pickle.dumps({"train": []}), "must hold a dict with lists 'train', 'valid' and 'test'"),
    (pickle.dumps({"train": [[[60], [130]]], "valid": [], "test": []}), "train piece 0 step 1 holds 130"),
])
def test_corrupt_pickle_is_a_clear_error(tmp_path, content, message):
    (tmp_path / "polyphonic").mkdir()
    path = tmp_path / "polyphonic" / "jsb_chorales.pickle"
    path.write_bytes(content)
    data = MusicDataModule(root=str(tmp_path))
    with pytest.raises(UserError, match=message) as error:
        data.setup()
    assert str(path) in str(error.value)


def test_unknown_dataset_lists_the_known_ones(compose_config, data_root):
    from rrn_app.train import train

    with pytest.raises(UserError) as error:
        train(compose_config("task=music", "task.dataset=bach", f"data.root={data_root}", "logger=none"))
    assert "task.data.dataset='bach' is not allowed: must be one of 'jsb_chorales', 'nottingham'" in str(error.value)
    assert "task.dataset=<name>" in str(error.value)


def test_real_split_sizes(data_root):
    data = MusicDataModule(root=str(data_root), dataset="jsb_chorales")  # the full split, embedded or data.root's
    data.setup()
    assert [len(data.pieces[s]) for s in ("train", "validation", "test")] == [229, 76, 77]
    assert [data.frames(s) for s in ("train", "validation", "test")] == [13807, 4602, 4725]


@pytest.mark.parametrize("name", ["nottingham", "musedata", "piano_midi"])
def test_the_other_datasets_read_as_piano_rolls(data_root, name):
    data = MusicDataModule(root=str(data_root), dataset=name)
    data.setup()
    with open(data_root / "polyphonic" / f"{name}.pickle", "rb") as file:
        raw = pickle.load(file)  # our own fixture or data root: trusted
    assert [len(data.pieces[split]) for split in ("train", "validation", "test")] == [
        len(raw[key]) for key in ("train", "valid", "test")]
    for piece, roll in zip(raw["test"], data.pieces["test"]):
        assert roll.shape == (len(piece), KEYS)
        assert [sorted(21 + key for key in frame.nonzero().flatten().tolist()) for frame in roll] == [
            sorted(step) for step in piece]


@pytest.mark.parametrize("name, pieces", [("nottingham", [694, 173, 170]), ("musedata", [524, 135, 124]),
                                          ("piano_midi", [87, 12, 25])])
def test_the_other_datasets_published_split_sizes(full_data, name, pieces):
    data = MusicDataModule(root=str(full_data), dataset=name)
    data.setup()
    assert [len(data.pieces[split]) for split in ("train", "validation", "test")] == pieces


# ---- end to end ----

@pytest.mark.slow
def test_short_real_training_run_writes_results_checkpoint_and_epoch_samples(data_root, tmp_path):
    result = run_cli("rrn-train", "task=music", "task.dataset=jsb_chorales", "cell=gru", "cell.hidden_size=16",
                     f"data.root={data_root}", "threads=1", "logger=csv", "trainer.max_epochs=2",
                     "trainer.limit_train_batches=20", "trainer.enable_progress_bar=false", "task.model.sample_length=8",
                     cwd=tmp_path, timeout=300)
    run_dir = run_dir_of(result)
    results = json.loads((run_dir / "results.json").read_text())
    metrics = results["metrics"]
    for name in ("val/nll", "test/nll", "val/frame_acc", "test/frame_acc"):
        assert name in metrics
    # learnt which keys sound: better than the best model that knows only how many keys sound on average (one
    # Bernoulli rate for all 88 keys, fitted to the training frames: 15.9 on JSB; a coin per key is 61, the
    # per-key rates 11.1). 40 steps get to about 11.6.
    pieces = load_pieces(located(data_root, "jsb_chorales") / "polyphonic" / "jsb_chorales.pickle")
    rate = torch.cat(pieces["train"]).float().mean()
    test = torch.cat(pieces["test"]).float()
    one_rate = -(test * rate.log() + (1 - test) * (1 - rate).log()).sum(1).mean().item()
    assert 5 < metrics["test/nll"] < one_rate, (metrics["test/nll"], one_rate)
    assert results["train_tokens_per_second"] > 0
    for epoch in ("epoch00", "epoch01"):
        assert all((run_dir / "samples" / f"{epoch}.{ext}").stat().st_size > 0 for ext in ("mid", "png"))
    assert (run_dir / "samples" / "epoch01.wav").stat().st_size > 0  # the last epoch's (and the best's: test_logging)
    assert not (run_dir / "samples" / "epoch02.mid").exists()  # none from the final validate/test
    checkpoint = torch.load(results["best_checkpoint"], weights_only=True, map_location="cpu")
    assert checkpoint["rrn_module"] == "rrn_app.tasks.music.MusicModel"
    assert checkpoint["music"]["dataset"] == "jsb_chorales" and checkpoint["music"]["beats_per_frame"] == 1.0
    model = MusicModel.load_from_checkpoint(results["best_checkpoint"], map_location="cpu", weights_only=True)
    paths = model.generate_files(tmp_path / "gen", {"length": 8, "seed": 0, "prime": "test:0:4", "wav": False})
    assert [p.name for p in paths] == ["sample-seed0.mid", "sample-seed0.png"]
    generated = run_cli("rrn-generate", f"ckpt={results['best_checkpoint']}", "length=8", "seed=3", "prime=test:1:4",
                        "temperature=0.5", "top_k=5", timeout=120)  # top_k: ignored for music
    assert generated.returncode == 0, generated.stderr[-3000:]
    written = sorted((run_dir / "samples").glob("sample-seed3.*"))
    assert [p.suffix for p in written] == [".mid", ".png", ".wav"]
    import pretty_midi

    assert pretty_midi.PrettyMIDI(str(written[0])).get_end_time() <= 12 * 0.5 + 1e-6  # 4 + 8 quarter-note frames


def test_res_rnn_on_music_gets_a_bounded_output_by_itself(compose_config):
    cfg = compose_config("task=music", "cell=res_rnn")          # conf/task_cell/music_res_rnn.yaml
    assert cfg.cell.output_activation == "tanh" and cfg.task.model.lr == 2e-3
    cfg = compose_config("task=music", "cell=res_rnn", "cell.output_activation=identity")
    assert cfg.cell.output_activation == "identity"
    assert compose_config("task=music", "cell=gru").task.model.lr == 1e-2
