"""`rrn`: the Recurrent Residual Network (2016), LSTM layers with residual links between non-adjacent layers.

"Recurrent Residual Network" (2016/09/23), section 2 and eq. (1). Every layer is an LSTM,

    i_t = σ(W_i x_t + U_i h_{t-1} + b_i)          C̃_t = tanh(W_c x_t + U_c h_{t-1} + b_c)
    f_t = σ(W_f x_t + U_f h_{t-1} + b_f)          C_t = i_t ⊙ C̃_t + f_t ⊙ C_{t-1}
    out_t = σ(W_o x_t + U_o h_{t-1} [+ V_o C_t] + b_o)          h_t = out_t ⊙ tanh(C_t)

and the layers, of possibly different widths (`layer_sizes`), are joined by residual links every `skip` layers,
the way a ResNet block (He et al. 2016) joins the input and the output of a few layers. With z^(0) = x and
h^(l) the output of layer l:

    z^(l) = h^(l) + P_l z^(l - skip)        for l = skip, 2 skip, 3 skip, ...
    z^(l) = h^(l)                           for the other layers

P_l is the identity where the widths match and a learned linear projection (no bias) where they differ, the
paper's "skip connections and linear transformations".

Our reading of what the paper leaves open ("we do not elaborate the details as it is simple and clear enough"):
the first link starts at the input x itself, as a ResNet's first block does; layers after the last full block
of `skip` get no link; `peephole=False` (the default) leaves out eq. (1)'s V_o C_t term, as the chainer-char-rnn
LSTM the paper ran (chainer.links.LSTM) does, and runs each layer on PyTorch's fused kernel; `peephole=True`
adds it, V_o a full matrix as in eq. (1), in a step-wise layer.

Shared options: `num_layers` x `hidden_size` when `layer_sizes` is not given (given, it sets both: the number
of layers and, from its last width, the output width), `dropout` on every layer's input but the first's,
`bidirectional` (each width then doubles along the stack). The final state is (h_n, c_n) in PyTorch's layout,
or, when the widths differ, a list with one [directions, batch, width] tensor per layer for each (stack.py).
reference.rrn is the plain step-by-step version.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from rrn_app import option_checks
from rrn_app.cells.torch_rnns import FusedLayer
from rrn_app.cells.recurrence import Recurrence
from rrn_app.cells.registry import register_cell
from rrn_app.cells.stack import RecurrentStack


def skip_links(num_layers: int, skip: int) -> dict[int, int]:
    """{l: l - skip} for l = skip, 2 skip, ... <= num_layers: the rrn's residual links, as RecurrentStack takes them."""
    return {end: end - skip for end in range(skip, num_layers + 1, skip)}


def check_layer_sizes(layer_sizes) -> list[int]:
    try:
        sizes = [] if isinstance(layer_sizes, (str, bytes)) else list(layer_sizes)
    except TypeError:  # a single number
        sizes = []
    if not sizes or any(isinstance(size, bool) or not isinstance(size, int) or size <= 0 for size in sizes):
        raise option_checks.InvalidOption("layer_sizes", layer_sizes,
                                       "must be a non-empty list of positive integers, e.g. [80,80,160] (null: "
                                       "num_layers x hidden_size)")
    return sizes


class PeepholeLSTMLayer(Recurrence):
    """One layer, one direction of eq. (1) with the output gate's V_o C_t; gate rows in nn.LSTM's order i, f, C̃, o."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))  # [W_i; W_f; W_c; W_o]
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))  # [U_i; U_f; U_c; U_o]
        self.bias = nn.Parameter(torch.empty(4 * hidden_size))  # [b_i; b_f; b_c; b_o]
        self.weight_co = nn.Parameter(torch.empty(hidden_size, hidden_size))  # V_o
        bound = 1 / math.sqrt(hidden_size)  # nn.LSTM's initialisation
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def initial_state(self, x: torch.Tensor):
        zeros = x.new_zeros(x.shape[0], self.hidden_size)
        return zeros, zeros

    def project_inputs(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight_ih, self.bias)

    def step(self, inputs, state, t, running):
        h, c = state
        i, f, candidate, out = (inputs + F.linear(h, self.weight_hh)).chunk(4, dim=-1)
        c = torch.sigmoid(i) * torch.tanh(candidate) + torch.sigmoid(f) * c
        h = torch.sigmoid(out + F.linear(c, self.weight_co)) * torch.tanh(c)
        return h, c


def fused_lstm_layer(input_size: int, hidden_size: int) -> FusedLayer:
    return FusedLayer(nn.LSTM(input_size, hidden_size, batch_first=True))


@register_cell("rrn")
class RecurrentResidualNetwork(RecurrentStack):
    """Recurrent Residual Network (2016): LSTM layers of any widths, a residual link every `skip` layers.

    Options:
        layer_sizes: widths bottom to top, e.g. [80,80,160]; sets the layers and the output width (null: num_layers x hidden_size)
        skip: a residual link from z^(l - skip) to z^(l) for l = skip, 2 skip, ...; linear where widths differ
        peephole: eq. 1's V_o C_t in the output gate (step-wise layers); false: fused nn.LSTM layers
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False, layer_sizes: list[int] | None = None, skip: int = 2,
                 peephole: bool = False):
        option_checks.positive_int("hidden_size", hidden_size)  # both checked even where layer_sizes sets the widths
        option_checks.positive_int("num_layers", num_layers)
        sizes = [hidden_size] * num_layers if layer_sizes is None else check_layer_sizes(layer_sizes)
        links = skip_links(len(sizes), option_checks.positive_int("skip", skip))
        make_layer = PeepholeLSTMLayer if option_checks.one_of("peephole", peephole, (False, True)) else fused_lstm_layer
        super().__init__(input_size, sizes[-1], len(sizes), dropout, bidirectional, make_layer=make_layer,
                         layer_sizes=sizes, links=links, project_links=True)
