"""`res_lstm`: residual stacked LSTM with stochastic depth and stochastic timesteps.

Pradhan & Longpre, "Exploring the Depths of Recurrent Neural Networks with Stochastic Residual Learning",
sections 3.3-3.5. With h^(l) the output sequence of LSTM layer l run over its input x^(l):

    x^(2)   = h^(1)                      the first layer adapts the width; no residual
    x^(l+1) = x^(l) + h^(l)              for l = 2 .. num_layers

Stochastic depth (section 3.4, after Huang et al. 2016): during training each residual layer l >= 2 is kept
with probability `keep_prob`, once per mini-batch; a dropped layer is skipped, x^(l+1) = x^(l), and costs no
compute. At evaluation every layer runs and its residual is scaled by its survival probability, as Huang et
al. do: x^(l+1) = x^(l) + keep_prob * h^(l).

Stochastic timesteps (section 3.5): during training each timestep but the first is dropped with probability
1 - `timestep_keep_prob`, independently per sequence. The recurrence runs over the kept steps only; at a
dropped step the state and output stay those of the last kept step, so outputs keep their [batch, time]
layout. The first step is never dropped (no empty input).

`dropout` (between layers, as in nn.LSTM) is applied to the input of each residual branch: x^(l+1) =
x^(l) + LSTM(dropout(x^(l))). Each layer is a fused single-layer nn.LSTM run on a sequence packed once,
so the stack stays close to `lstm` in speed.

State: (h_n, c_n) of shape [num_layers * directions, batch, hidden_size], zeros for a layer dropped in
this mini-batch.
"""

from __future__ import annotations

import torch
from torch import nn

from rrn_app import option_checks
from rrn_app.cells.registry import register_cell
from rrn_app.cells.sequence import (
    check_common_options, check_lengths, combine, length_mask, lstm_layers_state, map_data, pack, unpack,
)


def drop_timesteps(x: torch.Tensor, lengths: torch.Tensor | None, keep_prob: float):
    """Compact the kept timesteps of each sequence to its front.

    Returns (compacted x, new lengths, position) where `position[b, t]` is the index in the compacted
    sequence of the last kept step at or before t, so `compacted_outputs.gather(1, position)` puts the
    outputs back in the original layout.
    """
    batch, total_length, features = x.shape
    if lengths is None:
        lengths = torch.full((batch,), total_length, dtype=torch.long, device=x.device)
    valid = length_mask(lengths.to(x.device), total_length)
    keep = (torch.rand(batch, total_length, device=x.device) < keep_prob) & valid
    keep[:, 0] = True
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept steps first, in order
    new_lengths = keep.sum(dim=1)
    longest = int(new_lengths.max())
    compacted = x.gather(1, order[:, :longest, None].expand(-1, -1, features))
    position = keep.cumsum(dim=1) - 1
    return compacted, new_lengths, position


@register_cell("res_lstm")
class ResidualLSTM(nn.Module):
    """Residual LSTM stack (Pradhan & Longpre): x^(l+1) = x^(l) + h^(l), stochastic depth and timesteps.

    Options:
        hidden_size: units per layer and direction (the width of h_t)
        num_layers: LSTM layers; every one after the first is a residual layer
        dropout: dropout probability on the outputs between layers (0 turns it off)
        bidirectional: also run every layer right to left; outputs are [forward; backward], 2 x hidden_size wide
        keep_prob: stochastic depth: probability of keeping each residual layer in training (paper: 0.75)
        timestep_keep_prob: stochastic timesteps: probability of keeping each timestep but the first in training
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 2, dropout: float = 0.0,
                 bidirectional: bool = False, keep_prob: float = 1.0, timestep_keep_prob: float = 1.0):
        super().__init__()
        option_checks.positive_int("input_size", input_size)
        check_common_options(hidden_size, num_layers, dropout)
        self.keep_prob = option_checks.keep_probability("keep_prob", keep_prob)
        self.timestep_keep_prob = option_checks.keep_probability("timestep_keep_prob", timestep_keep_prob)
        self.hidden_size, self.num_layers, self.bidirectional = hidden_size, num_layers, bool(bidirectional)
        self.directions = 2 if bidirectional else 1
        self.output_size = hidden_size * self.directions
        self.layers = nn.ModuleList(
            nn.LSTM(input_size if layer == 0 else self.output_size, hidden_size, batch_first=True,
                    bidirectional=self.bidirectional)
            for layer in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)

    @property
    def may_leave_parameters_unused(self) -> bool:
        """True with stochastic depth (keep_prob < 1): a dropped layer's parameters get no gradient in that step,
        so DDP must look for unused parameters (rrn-train then picks ddp_find_unused_parameters_true)."""
        return self.keep_prob < 1.0

    def layer_kept(self, layer: int) -> bool:
        """Stochastic depth: the first layer always runs; residual layers run with probability keep_prob."""
        if layer == 0 or not self.training or self.keep_prob == 1.0:
            return True
        return bool(torch.rand(()) < self.keep_prob)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, state=None):
        lengths = check_lengths(x, lengths)
        original_lengths, total_length = lengths, x.shape[1]
        position = None
        if self.training and self.timestep_keep_prob < 1.0:
            x, lengths, position = drop_timesteps(x, lengths, self.timestep_keep_prob)

        stream = pack(x, lengths)
        batch = x.shape[0]
        zeros = x.new_zeros(self.directions, batch, self.hidden_size)
        final_h, final_c = [], []
        for index, layer in enumerate(self.layers):
            if not self.layer_kept(index):
                final_h.append(zeros)
                final_c.append(zeros)
                continue
            branch_input = stream if index == 0 else map_data(stream, self.dropout)
            branch, (h_n, c_n) = layer(branch_input, lstm_layers_state(state, index, self.directions))
            final_h.append(h_n)
            final_c.append(c_n)
            if index == 0:
                stream = branch
            elif self.training:
                stream = combine(stream, branch, torch.add)
            else:
                scale = self.keep_prob
                stream = combine(stream, branch, lambda residual, h: residual + scale * h)

        outputs = unpack(stream, x.shape[1])
        if position is not None:  # back to the original layout; padding stays zero
            outputs = outputs.gather(1, position[:, :, None].expand(-1, -1, outputs.shape[2]))
            if original_lengths is not None:
                outputs = outputs * length_mask(original_lengths.to(outputs.device), total_length)[:, :, None]
        return outputs, (torch.cat(final_h), torch.cat(final_c))
