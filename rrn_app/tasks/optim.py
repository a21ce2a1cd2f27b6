"""Optimizers by name, so task configs can say `optimizer: adagrad` with per-group learning rates."""

from __future__ import annotations

import torch

from rrn_app import option_checks

OPTIMIZERS = {
    "adagrad": torch.optim.Adagrad,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
}


def build_optimizer(name: str, parameter_groups: list[dict], weight_decay: float = 0.0) -> torch.optim.Optimizer:
    option_checks.one_of("optimizer", name, tuple(OPTIMIZERS))
    return OPTIMIZERS[name](parameter_groups, weight_decay=weight_decay)


def embedding_groups(module: torch.nn.Module, lr: float, embedding_lr: float | None) -> list[dict]:
    """Parameter groups of a word-level task: `module.embedding` at embedding_lr (None: lr), the rest at lr."""
    rest = [p for name, p in module.named_parameters() if not name.startswith("embedding.")]
    return [{"params": list(module.embedding.parameters()), "lr": lr if embedding_lr is None else embedding_lr},
            {"params": rest, "lr": lr}]
