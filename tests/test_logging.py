"""What a run tells and keeps: the offline W&B line, no library noise, pictures in the run folder with any logger,
TensorBoard event files that read back, and music samples of a few MB."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from helpers import QUICK, run_cli, run_dir_of
from rrn_app.noise import LITLOGGER_TIP, NoLitLoggerTip, drop_wandb_anonymous
from rrn_app.train import train

TINY = [*QUICK, "cell.hidden_size=16"]  # each test names its logger after it
MUSIC = ["task=music", "cell=gru", "task.model.sample_length=8", *TINY, "trainer.max_epochs=3"]


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("lightning.pytorch.utilities.rank_zero", logging.INFO, __file__, 1, message, None, None)


def test_the_litlogger_tip_alone_is_dropped():
    tip = NoLitLoggerTip()
    assert not tip.filter(record(f"{LITLOGGER_TIP} and experiment tracking, try installing [litlogger](...)"))
    assert tip.filter(record("GPU available: False, used: False"))


def test_wandb_gets_no_anonymous_setting(tmp_path):
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(project="rrn", save_dir=str(tmp_path), offline=True)
    assert "anonymous" in logger._wandb_init  # what Lightning passes, None: wandb warns on it
    drop_wandb_anonymous(logger)
    assert "anonymous" not in logger._wandb_init and logger._wandb_init["project"] == "rrn"


@pytest.mark.slow
def test_offline_wandb_run_says_so_and_prints_no_noise(data_root, tmp_path):
    result = run_cli("rrn-train", "task=sst", "cell=lstm", f"data.root={data_root}", *TINY, "logger=wandb",
                     f"hydra.run.dir={tmp_path / 'run'}", env={"WANDB_MODE": "offline"})
    run_dir = run_dir_of(result)
    output = result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("W&B run saved offline")]
    assert len(lines) == 1, result.stdout[-2000:]
    sync_dir = lines[0].split("wandb sync ", 1)[1]
    assert sync_dir.startswith(str(run_dir / "wandb" / "offline-run-")) and (run_dir / "wandb").is_dir()
    assert Path(sync_dir).is_dir() and list(Path(sync_dir).glob("run-*.wandb"))
    for noise in ("anonymous setting has no effect", "litlogger", "configure_callbacks"):
        assert noise not in output


@pytest.mark.slow
@pytest.mark.parametrize("task, name", [("sst", "confusion_matrix"), ("atis", "intent_confusion_matrix")])
def test_confusion_matrix_pictures_land_in_the_run_folder_with_csv(compose_config, data_root, task, name):
    run_dir = train(compose_config(f"task={task}", f"data.root={data_root}", *TINY, "logger=csv"))
    for stage in ("val", "test"):
        picture = run_dir / "figures" / f"{stage}_{name}.png"
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 10_000


@pytest.mark.slow
def test_tensorboard_event_files_read_back(compose_config, data_root):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = train(compose_config("task=sst", f"data.root={data_root}", *TINY, "logger=tensorboard"))
    results = json.loads((run_dir / "results.json").read_text())
    scalars, images = {}, set()
    for events in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"images": 0, "scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend(event.value for event in accumulator.Scalars(tag))
        images |= set(accumulator.Tags()["images"])
    assert scalars["test/acc"][-1] == pytest.approx(results["metrics"]["test/acc"])
    assert scalars["val/loss"][0] == pytest.approx(results["history"]["val/loss"][0])
    assert {"val/confusion_matrix", "test/confusion_matrix"} <= images
    assert (run_dir / "tensorboard" / "hparams.yaml").is_file()


@pytest.mark.slow
def test_music_keeps_midi_and_png_every_epoch_and_wav_for_the_best_and_last(data_root, tmp_path):
    result = run_cli("rrn-train", *MUSIC, f"data.root={data_root}", "logger=csv", f"hydra.run.dir={tmp_path / 'run'}")
    run_dir = run_dir_of(result)
    assert "configure_callbacks" not in result.stdout + result.stderr  # Lightning's override message, once or twice
    samples = run_dir / "samples"
    best = json.loads((run_dir / "results.json").read_text())["best_checkpoint"].rsplit("best-", 1)[1][:7]
    assert sorted(path.name for path in samples.glob("*.mid")) == ["epoch00.mid", "epoch01.mid", "epoch02.mid"]
    assert sorted(path.name for path in samples.glob("*.png")) == ["epoch00.png", "epoch01.png", "epoch02.png"]
    assert sorted(path.name for path in samples.glob("*.wav")) == sorted({f"{best}.wav", "epoch02.wav"})
    assert sum(path.stat().st_size for path in samples.iterdir()) < 5_000_000


@pytest.mark.slow
@pytest.mark.parametrize("audio, wavs", [("every", 3), ("never", 0)])
def test_music_sample_audio_every_or_never(compose_config, data_root, audio, wavs):
    run_dir = train(compose_config(*MUSIC, f"data.root={data_root}", "logger=none", f"task.model.sample_audio={audio}"))
    assert len(list((run_dir / "samples").glob("*.png"))) == 3
    assert len(list((run_dir / "samples").glob("*.wav"))) == wavs
