"""Resuming a run exactly: its random states, its own config, and a model of the same shape.

- `RandomStates`: a callback that saves the random states of torch (CPU and every CUDA device), numpy and
  Python in each checkpoint (one set per DDP rank) and puts them back when the resumed training starts, so
  dropout and everything else random continues as in the uninterrupted run. The data loaders keep their own
  order, position and worker seeds (rrn_app/data/resumable.py); the tasks carry their recurrent state.
- `PlateauCatchUp`: the ReduceLROnPlateau step that Lightning skips when it restarts at an epoch's end.
- `resume_arguments`: `rrn-train ckpt_path=<run>/checkpoints/last.ckpt` alone resumes that run as it was
  configured: the overrides of the job that wrote the checkpoint (kept in it by `OverridesInCheckpoint`; for
  older checkpoints, `<run>/.hydra/overrides.yaml`) come first, and what the command line gives is applied on top.
- `check_same_model`: a command line that changes the model's shape is a one-line error naming the keys.
"""

from __future__ import annotations

import random
from pathlib import Path

import lightning as L
import numpy as np
import torch

from rrn_app.option_checks import UserError


def random_states() -> dict:
    """This process' random states: torch (CPU, and every CUDA device when present), numpy, Python."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()  # plain values: checkpoints load with weights_only
    states = {"torch": torch.get_rng_state(), "numpy": [kind, keys.tolist(), position, has_gauss, gauss],
              "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch.cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss))
    random.setstate(states["python"])
    if "torch.cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch.cuda"])


class RandomStates(L.Callback):
    """Saves every rank's random states in each checkpoint; a resumed fit restores them as training starts.

    Captured when the checkpoint is written (the end of an epoch, or after a training batch with
    `every_n_train_steps`), restored in `on_train_start`: between those points neither run draws a random
    number (the loaders draw from their own generators), so the next draw is the one the uninterrupted run
    made. Not restored for the validate/test on the best checkpoint after fit.
    """

    def __init__(self):
        self._pending: dict | None = None

    def state_dict(self) -> dict:
        states = random_states()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, states)  # every rank writes its state_dict together
            return {"ranks": gathered}
        return {"ranks": [states]}

    def load_state_dict(self, state_dict: dict) -> None:
        ranks = state_dict.get("ranks") or []
        rank = torch.distributed.get_rank() if torch.distributed.is_available() and torch.distributed.is_initialized() else 0
        self._pending = ranks[rank] if rank < len(ranks) else None  # more ranks now than then: seeded as new

    def on_train_start(self, trainer, pl_module) -> None:
        if self._pending is not None:
            set_random_states(self._pending)
            self._pending = None


# ---- the run's own config ----

def _key(override: str) -> str:
    """The key an override sets: `+callbacks.x._target_=...` -> `callbacks.x._target_`, `~cell.dropout` -> `cell.dropout`."""
    return override.lstrip("+~").partition("=")[0].strip()


class OverridesInCheckpoint(L.Callback):
    """Writes the overrides of the job that saves a checkpoint into it (`checkpoint["rrn_overrides"]`): what a
    later `ckpt_path=` of that checkpoint alone replays. A resumed job's overrides hold the ones it replayed."""

    def __init__(self, overrides: list[str]):
        self.overrides = [override for override in overrides if _key(override) not in ("ckpt_path", "run_dir")]

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        checkpoint["rrn_overrides"] = list(self.overrides)


def saved_overrides(ckpt_path: str) -> list[str] | None:
    """The overrides a resume from `ckpt_path` replays: those of the job that wrote the checkpoint (kept in it),
    else, for a checkpoint from before they were kept, the run's `<run>/.hydra/overrides.yaml`; None when
    neither is there (a checkpoint outside a run folder, or unreadable: rrn-train's own check reports that)."""
    import yaml

    from rrn_app.checkpoints import read_checkpoint

    path = Path(ckpt_path).expanduser()
    try:
        kept = read_checkpoint(path).get("rrn_overrides")
    except (UserError, AttributeError):
        kept = None
    if isinstance(kept, list):
        return [str(override) for override in kept]
    folder = path.resolve().parent
    overrides = folder.parent / ".hydra" / "overrides.yaml"
    if folder.name != "checkpoints" or not overrides.is_file():
        return None
    try:
        return [str(override) for override in yaml.safe_load(overrides.read_text()) or []]
    except (OSError, yaml.YAMLError) as error:
        raise UserError(f"cannot read the run's overrides {overrides} ({error}); give the run's options on the "
                        "command line with ckpt_path=.") from None


def resume_arguments(argv: list[str]) -> list[str]:
    """rrn-train's arguments with, for `ckpt_path=<checkpoint>`, the overrides of the run that wrote it first
    (those the command line sets again are left out: the command line wins). Unchanged for a multirun or
    without ckpt_path."""
    if any(argument in ("-m", "--multirun") for argument in argv):
        return argv
    given = [argument for argument in argv if not argument.startswith("-") and "=" in argument]
    ckpt = next((argument.partition("=")[2] for argument in given if _key(argument) == "ckpt_path"), None)
    if not ckpt or ckpt == "null":
        return argv
    saved = saved_overrides(ckpt)
    if not saved:
        return argv
    overridden = {_key(argument) for argument in given} | {"ckpt_path", "run_dir"}
    return [override for override in saved if _key(override) not in overridden] + list(argv)


def check_same_model(model, checkpoint_path: str, config: dict, trust: bool = False) -> None:
    """A UserError when the checkpoint's weights do not fit `model` (an override changed its shape): names
    the first tensor that differs and the cell/task options that differ from the checkpoint's run. The file is
    read as rrn-train reads it (safely, unless `trust`: trust_checkpoint=true)."""
    from rrn_app.generate import read_checkpoint

    checkpoint = read_checkpoint(Path(checkpoint_path), trust=trust)
    saved = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(saved, dict):
        return  # not a Lightning checkpoint: Lightning's own loading (and its error) decides
    mine = model.state_dict()
    differing = sorted(set(saved) ^ set(mine)) or [name for name in saved
                                                   if tuple(saved[name].shape) != tuple(mine[name].shape)]
    if not differing:
        return
    name = differing[0]
    what = (f"{name} is {list(saved[name].shape)} there and {list(mine[name].shape)} now" if name in saved and name in mine
            else f"{name} is only in {'the checkpoint' if name in saved else 'the model configured now'}")
    changed = _changed_options(checkpoint.get("rrn_config"), config)
    because = f" The options that differ from the checkpoint's run: {', '.join(changed)}." if changed else ""
    raise UserError(f"ckpt_path={checkpoint_path}: the model configured now has another shape than the "
                    f"checkpoint's ({what}).{because} Resume without the overrides that change the model.")


def _changed_options(saved: dict | None, config: dict, prefixes=("cell", "task")) -> list[str]:
    """`key=<checkpoint's> -> <now>` for each cell.* / task.* leaf whose value differs."""
    if not isinstance(saved, dict):
        return []

    def leaves(node, prefix=""):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from leaves(value, f"{prefix}{key}.")
        else:
            yield prefix[:-1], node

    before, after = dict(leaves({k: saved.get(k) for k in prefixes})), dict(leaves({k: config.get(k) for k in prefixes}))
    return [f"{key} ({before.get(key)} -> {after.get(key)})" for key in sorted(before.keys() | after.keys())
            if str(before.get(key)) != str(after.get(key))]


class PlateauCatchUp(L.Callback):
    """The ReduceLROnPlateau steps that Lightning skips in a resumed run, taken as the uninterrupted run took them.

    Lightning keeps no metrics in checkpoints, so it steps no plateau scheduler at the end of the first epoch of
    a resumed fit (`FitLoop.on_advance_end` skips them while restarting). Two cases:
    - resumed from a checkpoint written at the end of epoch e (ModelCheckpoint, in on_train_epoch_end, before
      Lightning steps the schedulers): the checkpoint carries the monitored values, and the step for epoch e is
      taken when training starts;
    - resumed inside epoch e: at its end the values are there (its validation ran), and the skipped step is
      taken before the next epoch starts, after the end-of-epoch checkpoints (which, as in the uninterrupted
      run, hold the schedulers before it).
    """

    def __init__(self):
        self._trainer, self._monitors, self._due, self._replayed_end = None, None, None, False

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer

    @staticmethod
    def _values(trainer) -> dict:
        keys = {config.monitor for config in trainer.lr_scheduler_configs if config.reduce_on_plateau and config.monitor}
        metrics = trainer.callback_metrics
        return {key: float(metrics[key]) for key in sorted(keys) if key in metrics}

    @staticmethod
    def _step(trainer, pl_module, monitors: dict, index: int) -> None:
        """What Lightning's `_update_learning_rates("epoch", update_plateau_schedulers=True)` does at epoch `index`."""
        for config in trainer.lr_scheduler_configs:
            if (config.reduce_on_plateau and config.interval == "epoch" and index % config.frequency == 0
                    and config.monitor in monitors):
                pl_module.lr_scheduler_step(config.scheduler, torch.tensor(monitors[config.monitor]))

    def state_dict(self) -> dict:
        return {"monitors": self._values(self._trainer)} if self._trainer is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        self._monitors = state_dict.get("monitors")

    def on_train_start(self, trainer, pl_module) -> None:
        monitors, self._monitors = self._monitors, None
        loop = trainer.fit_loop
        self._replayed_end = loop.restarted_on_epoch_end  # Lightning runs that epoch's end hooks again
        if monitors and (loop.restarted_on_epoch_end or loop.resumed_on_epoch_end) and pl_module.automatic_optimization:
            self._step(trainer, pl_module, monitors, loop.epoch_progress.current.processed)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        replayed, self._replayed_end = self._replayed_end, False
        reached = getattr(trainer.fit_loop.epoch_loop, "_num_ready_batches_reached", lambda: True)()
        if trainer.fit_loop.restarting and not replayed and reached and pl_module.automatic_optimization:
            self._due = (self._values(trainer), trainer.current_epoch + 1)  # Lightning will skip this step

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self._due is not None:
            monitors, index = self._due
            self._due = None
            self._step(trainer, pl_module, monitors, index)
