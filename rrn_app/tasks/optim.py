"""The optimizer of a task: the `optimizer` config group (conf/optimizer/), or an old name, over parameter groups.

An optimizer is given as a Hydra node, lightning-hydra-template's shape: `{_target_: torch.optim.Adam,
_partial_: true, <its options>}`; any `torch.optim.Optimizer` subclass (or one importable elsewhere) goes.
`optimizer=adamw` chooses conf/optimizer/adamw.yaml; `optimizer._target_=torch.optim.NAdam` any other class;
`optimizer.momentum=0.9` one of its options. The learning rates and the weight decay are not the node's: they
stay the task's keys (`task.model.lr`, `task.model.embedding_lr`, `task.model.weight_decay`), because a
word-level task gives its embedding its own learning rate (`embedding_groups`).

The old spelling `task.model.optimizer=<name>` (one of `OPTIMIZERS`) still works and means that class with
torch's defaults, as before. Where the node leaves `foreach` and `fused` unset and the parameters are on the
CPU, the implementation measured fastest there is used (`FASTEST_ON_CPU`, tools/optimizer_step_timing.py).
"""

from __future__ import annotations

import difflib
import inspect

import torch

from rrn_app import option_checks
from rrn_app.option_checks import UserError

OPTIMIZERS = {  # the names task.model.optimizer took before the optimizer group; each is also conf/optimizer/<name>
    "adagrad": torch.optim.Adagrad,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
}
# The implementation used on CPU when the config sets neither foreach nor fused: fused where torch has it (1.9x
# SGD to 3.6x Adagrad faster a step than the for-loop torch uses on CPU), foreach for RMSprop (about 1.1x);
# measured with tools/optimizer_step_timing.py at one thread on rrn's SST and char_lm models.
FASTEST_ON_CPU = {torch.optim.Adagrad: {"fused": True}, torch.optim.Adam: {"fused": True},
                  torch.optim.AdamW: {"fused": True}, torch.optim.SGD: {"fused": True},
                  torch.optim.RMSprop: {"foreach": True}}
NOT_IN_NODE = {"lr": "task.model.lr (and task.model.embedding_lr on sst, imdb, atis)",
               "weight_decay": "task.model.weight_decay", "params": "the task's parameter groups"}


def optimizer_spec(value) -> dict:
    """A task's `optimizer` value as a node: an old name (`adam`) becomes `{_target_: torch.optim.Adam}`."""
    if isinstance(value, str):
        option_checks.one_of("optimizer", value, tuple(OPTIMIZERS))
        cls = OPTIMIZERS[value]
        return {"_target_": f"{cls.__module__}.{cls.__qualname__}", "_partial_": True}
    if isinstance(value, dict):
        return dict(value)
    raise option_checks.InvalidOption("optimizer", value, "must be a node of the optimizer group (optimizer=adam, "
                                      f"...) or one of the names {', '.join(OPTIMIZERS)}")


def optimizer_class(spec: dict) -> tuple[type, dict]:
    """(the class, its options) of an optimizer node; a UserError naming `optimizer.<key>` when it is wrong."""
    target = spec.get("_target_")
    if not target:
        raise UserError("optimizer names no class: choose one with optimizer=<name> (" + ", ".join(OPTIMIZERS) +
                        ") or optimizer._target_=torch.optim.<Class>")
    cls = import_object(str(target))
    if cls is None or not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        known = [name for name, item in vars(torch.optim).items()
                 if isinstance(item, type) and issubclass(item, torch.optim.Optimizer) and item is not torch.optim.Optimizer]
        close = difflib.get_close_matches(str(target).rpartition(".")[2], known, n=1)
        hint = f" Did you mean optimizer._target_=torch.optim.{close[0]}?" if close else ""
        raise UserError(f"optimizer._target_={target!r} is not an optimizer class (a torch.optim.Optimizer that "
                        f"imports).{hint} torch.optim has: {', '.join(sorted(known))}.")
    options = {key: value for key, value in spec.items() if not key.startswith("_")}
    for key in options:
        if key in NOT_IN_NODE:
            raise UserError(f"optimizer.{key} is not read: that is {NOT_IN_NODE[key]}. Drop optimizer.{key}.")
    parameters = [name for name in inspect.signature(cls).parameters if name not in ("self", "params")]
    for key in options:
        if key not in parameters:
            raise option_checks.unknown_option(f"optimizer.{key}", [p for p in parameters if p not in NOT_IN_NODE],
                                               f" ({cls.__qualname__})")
    return cls, options


def import_object(target: str):
    """The object a dotted path names (`torch.optim.Adam`), or None when it does not import (quietly: the caller
    says what is wrong, in one line)."""
    import importlib

    parts = target.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for name in parts[split:]:
                found = getattr(found, name)
        except AttributeError:
            return None
        return found
    return None


def check_optimizer(value, lr: float, weight_decay: float = 0.0) -> dict:
    """The optimizer node, checked by building it once over a throwaway parameter (torch's own checks, e.g. of
    betas, as one-line errors), before any data is read."""
    spec = optimizer_spec(value)
    cls, options = optimizer_class(spec)
    try:
        cls([torch.nn.Parameter(torch.zeros(1))], lr=lr, weight_decay=weight_decay, **options)
    except (ValueError, TypeError, RuntimeError) as error:
        raise UserError(f"optimizer ({cls.__qualname__}) refuses its options {options}: {error}") from None
    return spec


def build_optimizer(value, parameter_groups: list[dict], weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The optimizer over the parameter groups (each with its own "lr"), from a node or an old name."""
    cls, options = optimizer_class(optimizer_spec(value))
    groups = [dict(group, params=list(group["params"])) for group in parameter_groups]
    return cls(groups, weight_decay=weight_decay, **{**fastest_implementation(cls, groups, options), **options})


def fastest_implementation(cls: type, groups: list[dict], options: dict) -> dict:
    """`FASTEST_ON_CPU[cls]` when every parameter is a float32 CPU tensor and the node sets neither foreach nor
    fused; else nothing (torch's own choice: foreach on CUDA)."""
    if "foreach" in options or "fused" in options or cls not in FASTEST_ON_CPU:
        return {}
    parameters = [p for group in groups for p in group["params"]]
    if not parameters or any(p.device.type != "cpu" or p.dtype != torch.float32 or p.is_sparse for p in parameters):
        return {}
    return FASTEST_ON_CPU[cls]


def embedding_groups(module: torch.nn.Module, lr: float, embedding_lr: float | None) -> list[dict]:
    """Parameter groups of a word-level task: `module.embedding` at embedding_lr (None: lr), the rest at lr."""
    rest = [p for name, p in module.named_parameters() if not name.startswith("embedding.")]
    return [{"params": list(module.embedding.parameters()), "lr": lr if embedding_lr is None else embedding_lr},
            {"params": rest, "lr": lr}]
