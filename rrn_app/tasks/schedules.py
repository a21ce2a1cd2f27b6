"""The learning-rate schedule of a task: the `scheduler` config group (conf/scheduler/).

A scheduler node is a Hydra node of a scheduler class or function taking the optimizer first
(`{_target_: torch.optim.lr_scheduler.OneCycleLR, _partial_: true, <its options>}`), plus three keys that say
how Lightning steps it and are not passed on: `interval` (`step`: after every optimizer step, or `epoch`),
`frequency` (every that many intervals, default 1) and `monitor` (the metric a plateau schedule watches,
default the task's `task.monitor`). What the run decides is filled in where the class takes it and the node
leaves it out: `total_steps` (the run's optimizer steps, Lightning's estimate from max_epochs/max_steps),
`T_max` (those steps, or epochs with `interval: epoch`), `max_lr` (each parameter group's learning rate).

Choices: `scheduler=default` (the task's own: a constant rate, and on task=music its plateau decay
`task.model.lr_decay`/`lr_patience`), `none` (a constant rate on every task), `cosine` (linear warm-up, then
cosine decay: `cosine_with_warmup`), `onecycle` (torch's OneCycleLR), `plateau` (ReduceLROnPlateau on
task.monitor). Any other: `scheduler=none scheduler._target_=torch.optim.lr_scheduler.ExponentialLR
+scheduler.gamma=0.95`.
"""

from __future__ import annotations

import inspect
import math

import torch

from rrn_app.option_checks import InvalidOption, UserError

LIGHTNING_KEYS = ("interval", "frequency", "monitor")
INTERVALS = ("step", "epoch")


def is_task_default(spec) -> bool:
    """`scheduler=default`, or a checkpoint from before the scheduler group: the task's own schedule."""
    return spec is None or (isinstance(spec, dict) and not spec)


def is_constant(spec) -> bool:
    """`scheduler=none`: no schedule."""
    return isinstance(spec, dict) and "_target_" in spec and not spec["_target_"]


def scheduler_target(spec: dict):
    """The callable behind a scheduler node, or a UserError naming scheduler._target_."""
    from rrn_app.tasks.optim import import_object

    target = spec.get("_target_")
    target_object = import_object(str(target))
    if not callable(target_object):
        known = sorted(name for name, item in vars(torch.optim.lr_scheduler).items()
                       if isinstance(item, type) and issubclass(item, torch.optim.lr_scheduler.LRScheduler)
                       and not name.startswith("_") and name != "LRScheduler")
        raise UserError(f"scheduler._target_={target!r} is not a scheduler that imports. Choose scheduler=cosine, "
                        f"onecycle, plateau or none, or a class of torch.optim.lr_scheduler: {', '.join(known)}, "
                        "ReduceLROnPlateau.")
    return target_object


def check_scheduler(spec) -> None:
    """A scheduler node's keys, checked before any data is read (its values when it is built, by a dry run)."""
    if is_task_default(spec) or is_constant(spec):
        return
    if not isinstance(spec, dict):
        raise InvalidOption("scheduler", spec, "must be a node of the scheduler group (scheduler=cosine, ...)")
    target = scheduler_target(spec)
    interval = spec.get("interval", "epoch")
    if interval not in INTERVALS:
        raise UserError(f"scheduler.interval={interval!r} is not allowed: must be step or epoch.")
    frequency = spec.get("frequency", 1)
    if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
        raise UserError(f"scheduler.frequency={frequency!r} is not allowed: must be a whole number >= 1.")
    parameters = inspect.signature(target).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        for key in spec:
            if not key.startswith("_") and key not in LIGHTNING_KEYS and key not in parameters:
                from rrn_app.option_checks import unknown_option

                known = [name for name in parameters if name != "optimizer"] + list(LIGHTNING_KEYS)
                raise unknown_option(f"scheduler.{key}", known, f" ({getattr(target, '__qualname__', target)})")
    dry_run(spec, target)


def dry_run(spec: dict, target) -> None:
    """Build the schedule once over a throwaway optimizer of 100 steps: torch's checks of its values, in one line."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    try:
        build_scheduler(spec, optimizer, total_steps=100, epochs=10, monitor="val/loss")
    except UserError:
        raise
    except (ValueError, TypeError, ZeroDivisionError) as error:
        name = getattr(target, "__qualname__", spec.get("_target_"))
        raise UserError(f"scheduler ({name}) refuses its options "
                        f"{ {k: v for k, v in spec.items() if not k.startswith('_')} }: {error}") from None


def build_scheduler(spec: dict, optimizer: torch.optim.Optimizer, total_steps: float, epochs: int | None,
                    monitor: str) -> dict:
    """Lightning's lr_scheduler config ({"scheduler", "interval", "frequency"[, "monitor"]}) of a scheduler node.

    `total_steps`: the run's optimizer steps (Lightning's `estimated_stepping_batches`, inf without a limit);
    `epochs`: trainer.max_epochs (None or -1: no limit)."""
    target = scheduler_target(spec)
    interval, frequency = spec.get("interval", "epoch"), spec.get("frequency", 1)
    options = {key: value for key, value in spec.items() if not key.startswith("_") and key not in LIGHTNING_KEYS}
    parameters = inspect.signature(target).parameters
    length = total_steps if interval == "step" else epochs
    for key in ("total_steps", "T_max"):
        if key in parameters and key not in options:
            if length is None or length < 1 or not math.isfinite(length):
                raise UserError(f"scheduler={getattr(target, '__qualname__', target)} needs the run's length: set "
                                "trainer.max_epochs or trainer.max_steps (or give scheduler." + key + ").")
            options[key] = int(length)
    if "max_lr" in parameters and "max_lr" not in options:
        options["max_lr"] = [group["lr"] for group in optimizer.param_groups]
    scheduler = target(optimizer, **options)
    config = {"scheduler": scheduler, "interval": interval, "frequency": frequency}
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        config["monitor"] = spec.get("monitor") or monitor
    return config


def cosine_with_warmup(optimizer: torch.optim.Optimizer, total_steps: int, warmup: float = 0.05,
                       final_lr: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Each group's rate rises linearly from 0 over the first `warmup` fraction of `total_steps` (in [0, 1)), then
    falls along a half cosine to `final_lr` times itself at the last step."""
    if isinstance(warmup, bool) or not isinstance(warmup, (int, float)) or not 0 <= warmup < 1:
        raise UserError(f"scheduler.warmup={warmup!r} is not allowed: must be a fraction of the run's steps in [0, 1).")
    if isinstance(final_lr, bool) or not isinstance(final_lr, (int, float)) or not 0 <= final_lr <= 1:
        raise UserError(f"scheduler.final_lr={final_lr!r} is not allowed: must be a fraction of the rate in [0, 1].")
    warmup_steps = int(warmup * total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return final_lr + (1 - final_lr) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
