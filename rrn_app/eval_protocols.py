"""Evaluation protocols of other code bases, for `rrn-eval protocol=<name>`, so a number compares like with like.

`nanogpt`: nanoGPT's `estimate_loss` (train.py, with config/train_shakespeare_char.py's settings): the mean,
over `eval_iters` = 200 batches, of the mean cross-entropy of `batch_size` = 64 windows of `block_size` = 256
characters, each window starting at a position drawn uniformly from 0 .. len(text) - block_size - 1, read with
no carried state (every window starts from a zero state), each window's loss averaged over all its positions.
nanoGPT reads it on its validation part, the last 10% of input.txt: a char_lm run trained with
`task.data.split=[0.9,0.1,0.0]` (nanoGPT's split) has exactly that part as its validation split. rrn's own
evaluation instead streams the whole split once with the state carried from window to window.
"""

from __future__ import annotations

import torch
from torch import nn

from rrn_app import option_checks
from rrn_app.option_checks import UserError

PROTOCOLS = ("nanogpt",)
NANOGPT = {"eval_iters": 200, "batch_size": 64, "block_size": 256, "window_seed": 1337}  # nanoGPT seeds 1337


def nanogpt_options(options: dict[str, str]) -> dict[str, int]:
    """The protocol's settings, nanoGPT's unless given on the command line (`eval_iters=20`, ...); popped."""
    settings = dict(NANOGPT)
    for key in NANOGPT:
        if key in options:
            value = options.pop(key)
            try:
                settings[key] = int(value)
            except ValueError:
                raise option_checks.InvalidOption(key, value, "must be a whole number") from None
            if key != "window_seed":
                option_checks.positive_int(key, settings[key])
    return settings


@torch.no_grad()
def nanogpt_loss(model, ids: torch.Tensor, eval_iters: int, batch_size: int, block_size: int, window_seed: int,
                 device: torch.device | str = "cpu") -> float:
    """nanoGPT's estimate_loss over the character ids of one split (see the module docstring), in nats."""
    if len(ids) <= block_size:
        raise UserError(f"the split has {len(ids):,} characters, too few for windows of block_size={block_size}; "
                        "give a smaller block_size= or another split=.")
    generator = torch.Generator().manual_seed(window_seed)
    was_training = model.training
    model.eval()
    model.to(device)
    offsets = torch.arange(block_size)
    losses = torch.zeros(eval_iters, dtype=torch.float64)
    for k in range(eval_iters):
        starts = torch.randint(len(ids) - block_size, (batch_size,), generator=generator)
        positions = starts[:, None] + offsets[None, :]
        inputs, targets = ids[positions].to(device), ids[positions + 1].to(device)
        logits, _ = model(inputs)  # no state given: each window starts from zeros
        losses[k] = float(nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)))
    model.train(was_training)
    return float(losses.mean())
