"""`rnn`, `lstm`, `gru`: PyTorch's fused recurrent kernels (cuDNN on GPU), padded batches packed.

    rnn:  h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)             (Elman; `nonlinearity` relu possible)
    lstm: i, f, g, o = σ, σ, tanh, σ of (W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
          c_t = f ⊙ c_{t-1} + i ⊙ g,   h_t = o ⊙ tanh(c_t)               (Hochreiter & Schmidhuber 1997)
    gru:  r, z = σ(W_ir x_t + W_hr h_{t-1} + b_r), σ(W_iz x_t + W_hz h_{t-1} + b_z)
          n = tanh(W_in x_t + b_in + r ⊙ (W_hn h_{t-1} + b_hn)),  h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}   (Cho et al. 2014)

All three: `num_layers` stacked, `dropout` on the outputs of every layer but the last, `bidirectional`
concatenating both directions. The state is PyTorch's: h_n (or (h_n, c_n) for lstm) of shape
[num_layers * directions, batch, hidden_size], each sequence's state at its own last step.

`residual=True` stacks the layers res_lstm style, x^(l+1) = x^(l) + h^(l) for every layer but the first
(stack.py): each layer is then its own single-layer, single-direction kernel (`FusedLayer`).
"""

from __future__ import annotations

import torch
from torch import nn

from rrn_app import option_checks
from rrn_app.cells.registry import register_cell
from rrn_app.cells.sequence import check_common_options, check_lengths, pack, unpack
from rrn_app.cells.stack import RecurrentStack


class FusedLayer(nn.Module):
    """One layer, one direction on a PyTorch kernel, called like a `Recurrence`: states [batch, hidden_size]."""

    def __init__(self, kernel: nn.RNNBase):
        super().__init__()
        self.kernel, self.hidden_size = kernel, kernel.hidden_size

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, state=None):
        if state is not None:  # the kernel's layout has a leading layers-times-directions dimension
            state = tuple(part[None] for part in state) if isinstance(state, tuple) else state[None]
        outputs, state = self.kernel(pack(x, lengths), state)
        state = tuple(part[0] for part in state) if isinstance(state, tuple) else state[0]
        return unpack(outputs, x.shape[1]), state


class _FusedRecurrent(nn.Module):
    """A PyTorch recurrent kernel (nn.RNN, nn.LSTM, nn.GRU) behind rrn's cell call.

    Options:
        hidden_size: units per layer and direction (the width of h_t)
        num_layers: recurrent layers stacked bottom to top
        dropout: dropout probability on the outputs between layers (0 turns it off)
        bidirectional: also run every layer right to left; outputs are [forward; backward], 2 x hidden_size wide
        residual: res_lstm-style links between layers, x^(l+1) = x^(l) + h^(l)
    """

    kernel: type[nn.RNNBase]

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float, bidirectional: bool,
                 residual: bool, **kernel_options):
        super().__init__()
        option_checks.positive_int("input_size", input_size)
        check_common_options(hidden_size, num_layers, dropout)
        self.hidden_size, self.num_layers, self.bidirectional = hidden_size, num_layers, bool(bidirectional)
        self.output_size = hidden_size * (2 if bidirectional else 1)
        if option_checks.one_of("residual", residual, (False, True)):
            def make_layer(size: int, hidden: int) -> FusedLayer:
                return FusedLayer(self.kernel(size, hidden, batch_first=True, **kernel_options))

            self.rnn = RecurrentStack(input_size, hidden_size, num_layers, dropout, bidirectional, residual=True,
                                      make_layer=make_layer)
        else:
            self.rnn = self.kernel(
                input_size, hidden_size, num_layers, batch_first=True,
                dropout=dropout if num_layers > 1 else 0.0, bidirectional=bool(bidirectional), **kernel_options,
            )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, state=None):
        lengths = check_lengths(x, lengths)
        if isinstance(self.rnn, RecurrentStack):
            return self.rnn(x, lengths, state)
        outputs, state = self.rnn(pack(x, lengths), state)
        return unpack(outputs, x.shape[1]), state


@register_cell("rnn")
class ElmanRNN(_FusedRecurrent):
    """Elman RNN on torch.nn.RNN: h_t = act(W_ih x_t + W_hh h_{t-1} + b).

    Options:
        nonlinearity: act, tanh or relu
    """

    kernel = nn.RNN

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False, residual: bool = False, nonlinearity: str = "tanh"):
        option_checks.one_of("nonlinearity", nonlinearity, ("tanh", "relu"))
        super().__init__(input_size, hidden_size, num_layers, dropout, bidirectional, residual,
                         nonlinearity=nonlinearity)


@register_cell("lstm")
class LSTM(_FusedRecurrent):
    """LSTM on torch.nn.LSTM (cuDNN on GPU): gated cell state c_t = f⊙c_{t-1} + i⊙g, h_t = o⊙tanh(c_t)."""

    kernel = nn.LSTM

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False, residual: bool = False):
        super().__init__(input_size, hidden_size, num_layers, dropout, bidirectional, residual)


@register_cell("gru")
class GRU(_FusedRecurrent):
    """GRU on torch.nn.GRU: h_t = (1 - z)⊙n + z⊙h_{t-1} with reset and update gates."""

    kernel = nn.GRU

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False, residual: bool = False):
        super().__init__(input_size, hidden_size, num_layers, dropout, bidirectional, residual)
