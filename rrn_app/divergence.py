"""Divergence stops loudly: a callback that watches every training step's loss and gradients.

A step whose loss or gradients are not finite (NaN, inf) is a bad step. It is skipped (its gradients are dropped
before the optimizer step, so the weights do not move), up to `patience` bad steps in a row (config:
`callbacks.divergence.patience`, default 0); the next one stops training with `Diverged`, whose message names the
step, the epoch, the last finite loss and the likely fix. rrn-train then writes results.json with
`"status": "diverged"` and exits with 2. A checkpoint whose weights are not finite is never written: the save is
refused (also raising `Diverged`), so best-*.ckpt and last.ckpt keep their last finite weights.
"""

from __future__ import annotations

import math

import lightning as L
import torch

from rrn_app.option_checks import UserError

FIX = ("lower the learning rate (task.model.lr=...) or clip the gradients (trainer.gradient_clip_val=1.0); "
       "callbacks.divergence.patience=N skips up to N bad steps in a row")


class Diverged(UserError):
    """Training stopped on non-finite values; `details` is what results.json records under `diverged`."""

    def __init__(self, message: str, details: dict):
        super().__init__(message)
        self.details = details


def finite(value) -> bool:
    if torch.is_tensor(value):
        return bool(torch.isfinite(value).all())
    return value is not None and math.isfinite(float(value))


class DivergenceGuard(L.Callback):
    """Stops training at the first non-finite loss or gradient (after `patience` skipped bad steps in a row)."""

    def __init__(self, patience: int = 0):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            from rrn_app.option_checks import InvalidOption

            raise InvalidOption("patience", patience, "must be a whole number >= 0 (bad steps skipped in a row)")
        self.patience = patience
        self.bad_in_a_row = 0
        self.skipped = 0
        self.last_finite_loss: float | None = None
        self._bad_gradients = False

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        gradients = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        # one sum per gradient, one check for all: a NaN or infinity anywhere makes its sum non-finite (and a sum
        # past float32's 3e38 is divergence too); 20x cheaper than isfinite().all() on an embedding's gradient
        sums = [gradient.sum().float().to(gradients[0].device) for gradient in gradients]
        self._bad_gradients = bool(sums) and not finite(torch.stack(sums))
        if self._bad_gradients:
            self._bad_step(trainer, "gradient")
            for group in optimizer.param_groups:  # skipped: optimizers leave a parameter without a gradient alone
                for parameter in group["params"]:
                    parameter.grad = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_index) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        if not finite(loss):
            if not self._bad_gradients:  # counted once per step
                self._bad_step(trainer, "loss", float(loss.detach()) if torch.is_tensor(loss) else loss)
        elif not self._bad_gradients:
            self.last_finite_loss = float(loss.detach()) if torch.is_tensor(loss) else float(loss)
            self.bad_in_a_row = 0
        self._bad_gradients = False

    def _bad_step(self, trainer, what: str, value=None) -> None:
        self.bad_in_a_row += 1
        if self.bad_in_a_row <= self.patience:
            self.skipped += 1
            return
        shown = f" ({value})" if value is not None else ""
        self._stop(trainer, f"non-finite {what}{shown}")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        bad = [name for name, tensor in checkpoint.get("state_dict", {}).items()
               if torch.is_tensor(tensor) and tensor.is_floating_point() and not finite(tensor)]
        if bad:
            self._stop(trainer, f"non-finite weights ({bad[0]}{' and others' if len(bad) > 1 else ''}); that "
                       "checkpoint was not saved")

    def _stop(self, trainer, reason: str) -> None:
        details = {"reason": reason, "step": int(trainer.global_step), "epoch": int(trainer.current_epoch),
                   "last_finite_loss": self.last_finite_loss, "skipped_steps": self.skipped}
        last = "none" if self.last_finite_loss is None else f"{self.last_finite_loss:.6g}"
        raise Diverged(f"training diverged at step {details['step']} (epoch {details['epoch']}): {reason}; the last "
                       f"finite training loss was {last}. Likely fix: {FIX}.", details)

    def state_dict(self) -> dict:
        return {"last_finite_loss": self.last_finite_loss, "skipped": self.skipped}

    def load_state_dict(self, state_dict: dict) -> None:
        self.last_finite_loss = state_dict.get("last_finite_loss")
        self.skipped = state_dict.get("skipped", 0)
