"""What every rrn task shares: `SequenceTask`, the LightningModule base of the classifier, tagger, character
language model and music model.

A task subclass builds its layers (`build_encoder` for the recurrent encoder from the registry), says how a
batch is scored (`training_step`, `evaluate(batch, stage)`) and what an evaluation epoch logs
(`log_evaluation(stage)`); the base owns the rest:

- the option checks every task has (`check_training_options`: dropout, optimizer, learning rates, weight
  decay, scheduler),
- the evaluation loop: `validation_step`/`test_step` call `evaluate`, the epoch ends call `log_evaluation`;
  epoch-level values go through `log_epoch` (reduced over DDP ranks, `sync_dist=True`; the validation values on
  the progress bar), the training loss through `log_training_loss` (to the logger at its interval, not pushed
  to the progress bar every step),
- the optimizer and the learning-rate schedule (`configure_optimizers`, from the `optimizer` and `scheduler`
  config groups: rrn_app/tasks/optim.py, schedules.py), over `parameter_groups()`,
- `extra_results()` (added to results.json and rrn-eval's json) and the checkpoint's `rrn_module` tag (the
  class rrn-generate rebuilds).

`CarriedState` is the recurrent state a windowed task (char_lm, music) carries from one window to the next; a
batch whose `reset` is true starts afresh. `may_leave_parameters_unused` asks a model's cells whether a step may
leave some parameters without a gradient (DDP must then look for them).
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import nn

from rrn_app import option_checks
from rrn_app.tasks import optim, schedules

STAGES = ("val", "test")


class SequenceTask(L.LightningModule):
    """A recurrent-cell task: an encoder from the registry, evaluated on validation and test, trained by the
    configured optimizer and schedule. Hyper-parameters it reads: `optimizer`, `lr`, `weight_decay`,
    `scheduler` (absent in checkpoints from before the scheduler group: the task's own schedule)."""

    def check_training_options(self, *, optimizer, lr: float, weight_decay: float, scheduler=None,
                               dropout: float | None = None, embedding_lr: float | None = None) -> None:
        """The options every task checks, one-line errors naming the key: before any layer is built."""
        if dropout is not None:
            option_checks.dropout_rate("dropout", dropout)
        option_checks.positive_float("lr", lr)
        if embedding_lr is not None:
            option_checks.positive_float("embedding_lr", embedding_lr)
        option_checks.non_negative_float("weight_decay", weight_decay)
        optim.check_optimizer(optimizer, lr, weight_decay)
        schedules.check_scheduler(scheduler)

    @staticmethod
    def build_encoder(cell: dict, input_size: int) -> nn.Module:
        """The recurrent encoder of the `cell` config node (rrn_app/cells: build_cell)."""
        from rrn_app.cells import build_cell

        return build_cell(dict(cell), input_size=input_size)

    # ---- evaluation ----

    def evaluate(self, batch, stage: str) -> None:
        """Score one validation or test batch into the stage's metrics."""
        raise NotImplementedError

    def log_evaluation(self, stage: str) -> None:
        """Log (`log_epoch`) and reset the stage's metrics at the end of its epoch."""
        raise NotImplementedError

    def validation_step(self, batch, batch_index):
        self.evaluate(batch, "val")

    def on_validation_epoch_end(self):
        self.log_evaluation("val")

    def test_step(self, batch, batch_index):
        self.evaluate(batch, "test")

    def on_test_epoch_end(self):
        self.log_evaluation("test")

    def log_epoch(self, values: dict, stage: str) -> None:
        """Epoch-level metrics, reduced over DDP ranks (the values of torchmetrics are equal on every rank already:
        the mean leaves them as they are); validation's shown on the progress bar."""
        self.log_dict(values, prog_bar=stage == "val", sync_dist=True)

    def log_training_loss(self, loss: torch.Tensor, batch_size: int, name: str = "train/loss") -> None:
        """A training step's loss for the logger (written every trainer.log_every_n_steps). Not on the progress
        bar: that would read the value back every step."""
        self.log(name, loss, batch_size=batch_size)

    # ---- optimization ----

    def parameter_groups(self) -> list[dict]:
        """The optimizer's parameter groups, each with its learning rate: here all parameters at `lr`."""
        return [{"params": list(self.parameters()), "lr": self.hparams.lr}]

    def default_schedule(self, optimizer: torch.optim.Optimizer):
        """The task's own schedule (`scheduler=default`): Lightning's lr_scheduler config, or None (constant)."""
        return None

    def configure_optimizers(self):
        optimizer = optim.build_optimizer(self.hparams.optimizer, self.parameter_groups(),
                                          weight_decay=self.hparams.weight_decay)
        spec = self.hparams.get("scheduler")
        if schedules.is_task_default(spec):
            schedule = self.default_schedule(optimizer)
        elif schedules.is_constant(spec):
            schedule = None
        else:
            schedule = schedules.build_scheduler(spec, optimizer, self.trainer.estimated_stepping_batches,
                                                 self.trainer.max_epochs, self.monitor())
        return optimizer if schedule is None else {"optimizer": optimizer, "lr_scheduler": schedule}

    def monitor(self) -> str:
        """The metric a plateau schedule watches: the best checkpoint's (task.monitor), else val/loss."""
        checkpoint = self.trainer.checkpoint_callback if self._trainer is not None else None
        return getattr(checkpoint, "monitor", None) or "val/loss"

    # ---- results and checkpoints ----

    def extra_results(self) -> dict:
        """Added to results.json by rrn-train and to eval-<split>.json by rrn-eval (none here)."""
        return {}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The class that wrote the checkpoint (`rrn_module`): rrn-generate rebuilds it from there."""
        checkpoint["rrn_module"] = f"{type(self).__module__}.{type(self).__qualname__}"


class CarriedState:
    """The recurrent state carried from one window of a stream to the next, one per stage (`train`, `val`,
    `test`), detached from the graph (truncated back-propagation through time). A batch with `reset` true (the
    first window of a stream) starts from the zero state."""

    def __init__(self):
        self.states: dict = {}

    def start(self, batch: dict, stage: str):
        """The state the batch's window starts from: None (zeros) on a reset, else the stage's carried state."""
        return None if bool(batch["reset"]) else self.states.get(stage)

    def carry(self, state, stage: str) -> None:
        from rrn_app.cells.sequence import detach_state

        self.states[stage] = detach_state(state)

    def clear(self, stage: str) -> None:
        self.states[stage] = None

    def get(self, stage: str):
        return self.states.get(stage)

    def set(self, state, stage: str, device: torch.device | None = None) -> None:
        """A stage's state as given (e.g. from a checkpoint), moved to `device` when one is given."""
        self.states[stage] = state if device is None else move_data_to_device(state, device)


def may_leave_parameters_unused(model: nn.Module) -> bool:
    """Whether a training step of `model` may leave some parameters without a gradient: a submodule (a cell)
    says so with its `may_leave_parameters_unused` attribute (res_lstm with stochastic depth: a dropped layer).
    DDP then needs `find_unused_parameters`."""
    return any(bool(getattr(module, "may_leave_parameters_unused", False)) for module in model.modules())
