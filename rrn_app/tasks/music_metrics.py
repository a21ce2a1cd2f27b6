"""The metrics of task=music: each frame's negative log-likelihood and Bay et al.'s frame-level accuracy.

`FrameMetrics` sums over every real frame of a split (frame-weighted, not piece-weighted): `nll`, nats per time
step summed over the 88 keys, and `frame_acc`, TP / (TP + FP + FN) summed over all frames (Bay et al. 2009).
"""

from __future__ import annotations

import torch
import torchmetrics
from torch import nn

from rrn_app.cells.sequence import length_mask


def frame_nll(logits: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """[batch, time] negative log-likelihood of each frame (nats, summed over keys); 0 past each length."""
    nll = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(-1)
    if lengths is None:
        return nll
    return nll * length_mask(lengths, nll.shape[1]).to(nll.dtype)


class FrameMetrics(torchmetrics.Metric):
    """NLL per time step and Bay et al.'s frame-level accuracy, summed over every real frame of a split."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        for name in ("nll", "frames", "true_positives", "false_positives", "false_negatives"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor | None, targets: torch.Tensor, lengths: torch.Tensor,
               nll: torch.Tensor | None = None, predicted: torch.Tensor | None = None) -> None:
        """`nll`: the batch's summed frame NLL when the caller has it already (training computes it for the loss);
        `predicted`: the bool frames the accuracy scores when not logits > 0. With both, `logits` may be None."""
        mask = length_mask(lengths.to(targets.device), targets.shape[1])[:, :, None]
        self.nll += (frame_nll(logits, targets, lengths).sum() if nll is None else nll).double()
        self.frames += lengths.sum().double()
        predicted, actual = (logits > 0 if predicted is None else predicted) & mask, (targets > 0.5) & mask
        self.true_positives += (predicted & actual).sum().double()
        self.false_positives += (predicted & ~actual).sum().double()
        self.false_negatives += (~predicted & actual).sum().double()

    def compute(self) -> dict[str, torch.Tensor]:
        counted = self.true_positives + self.false_positives + self.false_negatives
        return {"nll": self.nll / self.frames.clamp(min=1),
                "frame_acc": self.true_positives / counted if counted > 0 else counted}
