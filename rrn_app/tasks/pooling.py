"""Summaries of an encoder's outputs for a sentence-level classifier: final state, mean or max over time."""

from __future__ import annotations

import torch

from rrn_app.cells import final_output
from rrn_app.cells.sequence import length_mask

POOLINGS = ("final", "mean", "max")


def pool(outputs: torch.Tensor, lengths: torch.Tensor | None, bidirectional: bool, how: str = "final") -> torch.Tensor:
    """[batch, time, features] -> [batch, features].

    final: the final state (`final_output`: the forward direction's last real step, the backward direction's
    step 0); mean: the average over each sequence's real steps; max: the elementwise maximum over them.
    Padding never counts.
    """
    if how == "final":
        return final_output(outputs, lengths, bidirectional)
    if lengths is None:
        return outputs.mean(1) if how == "mean" else outputs.amax(1)
    mask = length_mask(lengths.to(outputs.device), outputs.shape[1])[:, :, None]
    if how == "mean":
        total = torch.where(mask, outputs, 0.0).sum(1)
        return total / lengths.to(outputs.device, outputs.dtype)[:, None]
    if how == "max":
        return torch.where(mask, outputs, torch.finfo(outputs.dtype).min).amax(1)
    raise ValueError(f"unknown pooling {how!r}; one of {', '.join(POOLINGS)}")
