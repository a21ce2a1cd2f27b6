"""Recurrent batch normalization (Cooijmans et al. 2016, "Recurrent Batch Normalization"), per timestep.

Applied by `res_rnn` and `gres_rnn` to the hidden-to-hidden transition, as Yue et al. (section 3.1) do:

    BN(z_t) = gamma ⊙ (z_t - mean_t) / sqrt(var_t + eps)             z_t = U s_{t-1}

- no beta: Cooijmans et al. set it to zero and let the cell's bias b play its part;
- gamma starts at 0.1 (their section 4: larger values saturate tanh and vanish the gradient), shared over time;
- training: mean_t and var_t are the batch's statistics at step t over the sequences still running at t (the
  padding takes no part); running estimates (momentum 0.1, as nn.BatchNorm1d) are kept separately for each
  timestep t < max_length, and every t >= max_length shares the last one;
- evaluation: the running estimates of step min(t, max_length - 1).
"""

from __future__ import annotations

import torch
from torch import nn

from rrn_app import validation


class RecurrentBatchNorm(nn.Module):
    def __init__(self, features: int, max_length: int = 100, gamma: float = 0.1, momentum: float = 0.1,
                 eps: float = 1e-5):
        super().__init__()
        self.max_length = validation.positive_int("batch_norm_max_length", max_length)
        self.momentum, self.eps = momentum, eps
        self.weight = nn.Parameter(torch.full((features,), float(gamma)))
        self.register_buffer("running_mean", torch.zeros(max_length, features))
        self.register_buffer("running_var", torch.ones(max_length, features))

    def forward(self, z: torch.Tensor, t: int, running: torch.Tensor | None = None) -> torch.Tensor:
        """z: [batch, features] at step t; running: [batch, 1], True for the sequences not yet ended (None: all)."""
        slot = min(t, self.max_length - 1)
        if not self.training:
            mean, var = self.running_mean[slot], self.running_var[slot]
            return self.weight * (z - mean) / torch.sqrt(var + self.eps)
        weights = z.new_ones(z.shape[0], 1) if running is None else running.to(z.dtype)
        count = weights.sum()
        mean = (weights * z).sum(0) / count.clamp(min=1)
        var = (weights * (z - mean) ** 2).sum(0) / count.clamp(min=1)
        with torch.no_grad():
            momentum = self.momentum * (count > 0).to(z.dtype)  # a step nobody reached updates nothing
            unbiased = var * count / (count - 1).clamp(min=1)
            self.running_mean[slot] += momentum * (mean.detach() - self.running_mean[slot])
            self.running_var[slot] += momentum * (unbiased.detach() - self.running_var[slot])
        return self.weight * (z - mean) / torch.sqrt(var + self.eps)

    @torch.no_grad()
    def update_running(self, means: torch.Tensor, variances: torch.Tensor, counts: torch.Tensor) -> None:
        """The running estimates after steps 0 .. T-1 whose batch statistics were means, variances [T, features]
        (biased) over counts [T] sequences: what T calls of `forward` in training do (the fast path of res_rnn and
        gres_rnn normalizes inside its own loop and reports the statistics here)."""
        counts = counts.to(means.dtype)
        momentum = self.momentum * (counts > 0).to(means.dtype)
        unbiased = variances * counts[:, None] / (counts - 1).clamp(min=1)[:, None]
        direct = min(len(means), self.max_length - 1)  # steps with a slot of their own: one update each
        if direct:
            slots = slice(0, direct)
            self.running_mean[slots] += momentum[:direct, None] * (means[:direct] - self.running_mean[slots])
            self.running_var[slots] += momentum[:direct, None] * (unbiased[:direct] - self.running_var[slots])
        last = self.max_length - 1
        for t in range(direct, len(means)):  # the steps that share the last slot, in order
            self.running_mean[last] += momentum[t] * (means[t] - self.running_mean[last])
            self.running_var[last] += momentum[t] * (unbiased[t] - self.running_var[last])

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, max_length={self.max_length}"
