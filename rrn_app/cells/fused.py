"""`rnn`, `lstm`, `gru`: PyTorch's fused recurrent kernels (cuDNN on GPU), padded batches packed.

    rnn:  h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)             (Elman; `nonlinearity` relu possible)
    lstm: i, f, g, o = σ, σ, tanh, σ of (W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
          c_t = f ⊙ c_{t-1} + i ⊙ g,   h_t = o ⊙ tanh(c_t)               (Hochreiter & Schmidhuber 1997)
    gru:  r, z = σ(W_ir x_t + W_hr h_{t-1} + b_r), σ(W_iz x_t + W_hz h_{t-1} + b_z)
          n = tanh(W_in x_t + b_in + r ⊙ (W_hn h_{t-1} + b_hn)),  h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}   (Cho et al. 2014)

All three: `num_layers` stacked, `dropout` on the outputs of every layer but the last, `bidirectional`
concatenating both directions. The state is PyTorch's: h_n (or (h_n, c_n) for lstm) of shape
[num_layers * directions, batch, hidden_size], each sequence's state at its own last step.
"""

from __future__ import annotations

import torch
from torch import nn

from rrn_app import validation
from rrn_app.cells.registry import register_cell
from rrn_app.cells.sequence import check_common_options, check_lengths, pack, unpack


class _FusedRecurrent(nn.Module):
    kernel: type[nn.RNNBase]

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float, bidirectional: bool, **kernel_options):
        super().__init__()
        validation.positive_int("input_size", input_size)
        check_common_options(hidden_size, num_layers, dropout)
        self.hidden_size, self.num_layers, self.bidirectional = hidden_size, num_layers, bool(bidirectional)
        self.output_size = hidden_size * (2 if bidirectional else 1)
        self.rnn = self.kernel(
            input_size, hidden_size, num_layers, batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0, bidirectional=bool(bidirectional), **kernel_options,
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, state=None):
        lengths = check_lengths(x, lengths)
        outputs, state = self.rnn(pack(x, lengths), state)
        return unpack(outputs, x.shape[1]), state


@register_cell("rnn")
class ElmanRNN(_FusedRecurrent):
    """Elman RNN on torch.nn.RNN: h_t = act(W_ih x_t + W_hh h_{t-1} + b)."""

    kernel = nn.RNN

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False, nonlinearity: str = "tanh"):
        validation.one_of("nonlinearity", nonlinearity, ("tanh", "relu"))
        super().__init__(input_size, hidden_size, num_layers, dropout, bidirectional, nonlinearity=nonlinearity)


@register_cell("lstm")
class LSTM(_FusedRecurrent):
    """LSTM on torch.nn.LSTM (cuDNN on GPU): gated cell state c_t = f⊙c_{t-1} + i⊙g, h_t = o⊙tanh(c_t)."""

    kernel = nn.LSTM

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False):
        super().__init__(input_size, hidden_size, num_layers, dropout, bidirectional)


@register_cell("gru")
class GRU(_FusedRecurrent):
    """GRU on torch.nn.GRU: h_t = (1 - z)⊙n + z⊙h_{t-1} with reset and update gates."""

    kernel = nn.GRU

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False):
        super().__init__(input_size, hidden_size, num_layers, dropout, bidirectional)
