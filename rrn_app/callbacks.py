"""rrn's Lightning callbacks (throughput, validation history, the music task's per-epoch sample) and the
`callbacks` config group turned into them.

`conf/callbacks/` holds one key per callback, each a `_target_` node that Hydra instantiates
(lightning-hydra-template's shape): `callbacks=none`, `~callbacks.<name>`, `+callbacks.<name>._target_=<class>`.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import lightning as L
import torch

from rrn_app.option_checks import UserError

CALLBACKS_HINT = ("callbacks are the `callbacks` config group: add one with "
                  "+callbacks.<name>._target_=<class> (e.g. +callbacks.lr_monitor._target_="
                  "lightning.pytorch.callbacks.LearningRateMonitor), drop one with ~callbacks.<name>, "
                  "or choose callbacks=none")


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


class ValidationHistory(L.Callback):
    """Every validation epoch's `val/*` metrics while fitting, as columns: {"epoch": [0, 1, ...], "val/loss": [...]}.

    What results.json's `history` holds, so learning curves need no logger. Kept in checkpoints, so a resumed
    run's history starts with the epochs before the interruption. A value that is not finite is None.
    """

    def __init__(self):
        self.history: dict[str, list] = {"epoch": []}
        self._fitting = True

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return  # not the sanity check, nor the final validate on the best checkpoint
        values = {name: float(value) for name, value in trainer.callback_metrics.items() if name.startswith("val/")}
        epochs = self.history["epoch"]
        if epochs and epochs[-1] == trainer.current_epoch:  # validation more than once an epoch: keep the last
            for column in self.history.values():
                column.pop()
        rows = len(epochs)
        for name in sorted(values.keys() - self.history.keys()):
            self.history[name] = [None] * rows  # a metric that appears late
        epochs.append(trainer.current_epoch)
        for name, column in self.history.items():
            if name != "epoch":
                value = values.get(name)
                column.append(value if value is not None and math.isfinite(value) else None)

    def state_dict(self) -> dict:
        return {"history": self.history}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self._fitting = trainer.state.fn == "fit"  # Lightning calls this just before load_state_dict

    def load_state_dict(self, state_dict: dict) -> None:
        if self._fitting:  # resuming; not the validate/test on the best checkpoint, whose history is older
            self.history = state_dict.get("history", {"epoch": []})


class ConfigInCheckpoint(L.Callback):
    """Writes the run's composed config (interpolations kept, so `data.root=` still reaches every path) into
    each checkpoint as `checkpoint["rrn_config"]`: rrn-eval rebuilds the data and model from it when the
    checkpoint has left its run folder."""

    def __init__(self, config: dict):
        self.config = config

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        checkpoint["rrn_config"] = self.config


def build_callbacks(callbacks_config, *, has_logger: bool, progress_bar: bool) -> list[L.Callback]:
    """The `callbacks` config group, instantiated by Hydra in its order: a list of callbacks.

    A null entry is skipped. A learning-rate monitor is left out without a logger (it has nowhere to write), a
    progress bar when `trainer.enable_progress_bar=false` (Lightning refuses the pair).
    """
    from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar

    from rrn_app.train import build

    callbacks = []
    for name, node in (callbacks_config or {}).items():
        if node is None:
            continue
        if not hasattr(node, "get") or "_target_" not in node:
            raise UserError(f"callbacks.{name} names no class: give +callbacks.{name}._target_=<class>, or "
                            f"drop it with ~callbacks.{name}. ({CALLBACKS_HINT})")
        callback = build(node, f"callbacks.{name}")
        if not isinstance(callback, L.Callback):
            raise UserError(f"callbacks.{name}._target_={node['_target_']} is not a Lightning callback "
                            f"(lightning.pytorch.Callback).")
        if isinstance(callback, LearningRateMonitor) and not has_logger:
            continue
        if isinstance(callback, ProgressBar) and not progress_bar:
            continue
        callbacks.append(callback)
    return callbacks


def trainer_callbacks_error(value) -> UserError:
    """`+trainer.callbacks=[...]`: Lightning's Trainer gets its callbacks from the callbacks group."""
    return UserError(f"trainer.callbacks is not read ({value!r}): {CALLBACKS_HINT}.")


def find(callbacks, cls):
    """The first callback of a class in a Trainer's list, or None."""
    return next((callback for callback in callbacks if isinstance(callback, cls)), None)


class SampleEveryEpoch(L.Callback):
    """At the end of every validation epoch while fitting, a short sample: `<run dir>/samples/epochNN.mid` and
    `.png`, and a WAV by the model's `sample_audio`: `best_last` (default) only for the best epoch (by the
    checkpoint's metric, else val/nll) and the last, written when training ends (two WAVs of about 1.8 MB);
    `every` each epoch; `never`.

    Primer, length, temperature and seed come from the model's `sample_*` options (the same every epoch, so the
    samples show progress). The pictures and sounds also go to a logger that takes them (W&B; TensorBoard: the
    pictures). A failure is a warning: it never stops training.
    """

    def __init__(self):
        self.best: dict | None = None  # {"epoch", "score", "stem", "roll"} of the best epoch so far
        self.latest: dict | None = None

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or not trainer.is_global_zero or trainer.state.fn != "fit":
            return  # not after the sanity check, nor in the final validate/test on the best checkpoint
        audio = pl_module.hparams.get("sample_audio", "best_last")
        options = {"length": pl_module.hparams.sample_length, "temperature": pl_module.hparams.sample_temperature,
                   "seed": pl_module.hparams.sample_seed, "prime": pl_module.hparams.sample_prime,
                   "name": f"epoch{trainer.current_epoch:02d}", "wav": audio == "every"}
        try:
            roll, paths = pl_module.sample_files(Path(trainer.default_root_dir) / "samples", options)
            log_sample(trainer.logger, paths, trainer.global_step)
        except Exception as error:  # noqa: BLE001  (a sample must never end a training run)
            warnings.warn(f"could not write the epoch {trainer.current_epoch} music sample: {error!r}")
            return
        if audio != "best_last":
            return
        monitor, mode = "val/nll", "min"
        checkpoint = trainer.checkpoint_callback
        if checkpoint is not None and checkpoint.monitor:
            monitor, mode = checkpoint.monitor, checkpoint.mode
        score = trainer.callback_metrics.get(monitor)
        self.latest = {"epoch": trainer.current_epoch, "stem": str(paths[0].with_suffix("")), "roll": roll,
                       "score": None if score is None else float(score)}
        if self.latest["score"] is not None and (
                self.best is None or (self.latest["score"] < self.best["score"] if mode == "min"
                                      else self.latest["score"] > self.best["score"])):
            self.best = self.latest

    def on_train_end(self, trainer, pl_module):
        """The WAVs of the best and the last epoch (`sample_audio: best_last`)."""
        if not trainer.is_global_zero or pl_module.hparams.get("sample_audio", "best_last") != "best_last":
            return
        for entry in {id(entry): entry for entry in (self.best, self.latest) if entry is not None}.values():
            path = Path(entry["stem"]).with_suffix(".wav")
            try:
                if not path.exists():
                    log_sample(trainer.logger, [pl_module.write_wav(entry["roll"], path)], trainer.global_step)
            except Exception as error:  # noqa: BLE001
                warnings.warn(f"could not write the epoch {entry['epoch']} music sample's WAV: {error!r}")

    def state_dict(self) -> dict:
        """The best epoch so far (its frames too), so a resumed run still writes that epoch's WAV."""
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best = state_dict.get("best")


def log_sample(logger, paths: list[Path], step: int | None = None) -> bool:
    """A sample's picture (and sound) to the logger: W&B both (log_to_wandb), TensorBoard the picture."""
    from lightning.pytorch.loggers import TensorBoardLogger

    if isinstance(logger, TensorBoardLogger):
        from rrn_app.figures import log_png

        for path in paths:
            if path.suffix == ".png":
                log_png(logger, "sample/piano_roll", path, step)
        return True
    return log_to_wandb(logger, paths, step)


def log_to_wandb(logger, paths: list[Path], step: int | None = None) -> bool:
    """Log a sample's PNG and WAV through Lightning's WandbLogger (log_image, log_audio) when that is the logger."""
    from lightning.pytorch.loggers import WandbLogger

    if not isinstance(logger, WandbLogger):
        return False
    for path in paths:
        if path.suffix == ".png":
            logger.log_image("sample/piano_roll", [str(path)], step=step, caption=[path.stem])
        elif path.suffix == ".wav":  # wandb.Audio reads it with soundfile (a dependency for this)
            logger.log_audio("sample/audio", [str(path)], step=step, caption=[path.stem])
    return True
