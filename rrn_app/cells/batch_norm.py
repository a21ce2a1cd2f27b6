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

from rrn_app import option_checks


class RecurrentBatchNorm(nn.Module):
    def __init__(self, features: int, max_length: int = 100, gamma: float = 0.1, momentum: float = 0.1,
                 eps: float = 1e-5):
        super().__init__()
        self.max_length = option_checks.positive_int("batch_norm_max_length", max_length)
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
        if running is None:
            count = torch.tensor(z.shape[0], device=z.device)
            mean, var = z.mean(0), z.var(0, unbiased=False)
        else:
            weights = running.to(z.dtype)
            count = weights.sum()
            mean = (weights * z).sum(0) / count.clamp(min=1)
            var = (weights * (z - mean) ** 2).sum(0) / count.clamp(min=1)
        self.update_running(mean[None].detach(), var[None].detach(), count[None], first_step=t)
        return self.weight * (z - mean) / torch.sqrt(var + self.eps)

    @torch.no_grad()
    def update_running(self, means: torch.Tensor, variances: torch.Tensor, counts: torch.Tensor,
                       first_step: int = 0) -> None:
        """The running estimates after steps first_step .. first_step + T - 1 whose batch statistics were means,
        variances [T, features] (biased) over counts [T] sequences: what `forward` does for its step in training,
        and what the fast path of res_rnn and gres_rnn (which normalizes inside its own loop) reports for all."""
        counts = counts.to(means.dtype)
        momentum = self.momentum * (counts > 0).to(means.dtype)  # a step nobody reached updates nothing
        unbiased = variances * counts[:, None] / (counts - 1).clamp(min=1)[:, None]
        # steps with a slot of their own (before max_length - 1): one update each
        direct = max(0, min(len(means), self.max_length - 1 - first_step))
        if direct:
            slots = slice(first_step, first_step + direct)
            self.running_mean[slots] += momentum[:direct, None] * (means[:direct] - self.running_mean[slots])
            self.running_var[slots] += momentum[:direct, None] * (unbiased[:direct] - self.running_var[slots])
        if direct < len(means):  # the steps that share the last slot, in order: x <- (1 - m_t) x + m_t v_t, i.e.
            # x = x_0 prod_t (1 - m_t) + sum_t m_t v_t prod_{j > t} (1 - m_j), in one go instead of a Python loop
            share = momentum[direct:]
            later = torch.cumprod((1 - share).flip(0), 0).flip(0)  # prod_{j >= t} (1 - m_j)
            weights = share * torch.cat([later[1:], later.new_ones(1)])
            last = self.max_length - 1
            for running, values in ((self.running_mean, means), (self.running_var, unbiased)):
                running[last] = later[0] * running[last] + weights @ values[direct:]

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, max_length={self.max_length}"
