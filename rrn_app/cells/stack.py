"""`RecurrentStack`: the options every cell shares — layers, both directions, dropout between layers, residual links.

A cell is a stack of single-layer, single-direction recurrences, each made by `make_layer(input_size,
hidden_size)`: a `Recurrence` (recurrence.py), or a fused PyTorch kernel behind the same call
`layer(x, lengths, state) -> (outputs zero past each length, final state)` (torch_rnns.FusedLayer). With
z^(0) = x and h^(l) the output of layer l:

    z^(l) = h^(l) = [fwd_l(d(z^(l-1))) ; bwd_l(d(z^(l-1)))]        l = 1 .. num_layers
    z^(b) = h^(b) + P(z^(a))                                          for each residual link a -> b

- bidirectional: the backward layer runs over each sequence reversed within its own length (the padding stays
  at the end), and its outputs are put back in order; the outputs are [forward ; backward].
- dropout d: on the input of every layer but the first, i.e. on the outputs of every layer but the last, as
  nn.LSTM does; a residual link carries z^(a) without dropout.
- residual=True: the res_lstm stacking (Pradhan & Longpre), a link l-1 -> l into every layer but the first,
  x^(l+1) = x^(l) + h^(l), where the widths match. A cell may pass its own `links` ({b: a}) instead (rrn:
  every `skip` layers) and `project_links=True` to put a linear projection P (no bias, so padding stays zero)
  on a link whose widths differ; without it such a link is left out.

State: PyTorch's layout, h_n (or a tuple (h_n, c_n) when a layer's state is two tensors) of shape
[num_layers * directions, batch, hidden_size], layer-major (layer l, direction d at row l * directions + d),
each sequence's state at its own last step (the backward direction's at step 0). When the layers differ in
width (rrn's `layer_sizes`) the rows cannot share one tensor: each of h_n, c_n is then a list with one
[directions, batch, width] tensor per layer. An initial `state` is given in the same layout.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from rrn_app import option_checks
from rrn_app.cells.sequence import check_common_options, check_lengths, length_mask
from rrn_app.cells.sequence import reversal_index, reverse, reverse_within_lengths  # noqa: F401 (their old home)


def residual_links(num_layers: int) -> dict[int, int]:
    """The res_lstm links {l: l - 1}: every layer but the first adds its input to its output."""
    return {layer: layer - 1 for layer in range(2, num_layers + 1)}


class RecurrentStack(nn.Module):
    """Layers x directions of a single-layer recurrence, with dropout between layers and residual links.

    Options:
        hidden_size: units per layer and direction (the width of h_t)
        num_layers: recurrent layers stacked bottom to top
        dropout: dropout probability on the outputs between layers (0 turns it off)
        bidirectional: also run every layer right to left; outputs are [forward; backward], 2 x hidden_size wide
        residual: res_lstm-style links between layers, x^(l+1) = x^(l) + h^(l)
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False, residual: bool = False, *, make_layer: Callable[[int, int], nn.Module],
                 layer_sizes: list[int] | None = None, links: dict[int, int] | None = None,
                 project_links: bool = False):
        super().__init__()
        option_checks.positive_int("input_size", input_size)
        check_common_options(hidden_size, num_layers, dropout)
        option_checks.one_of("residual", residual, (False, True))
        self.layer_sizes = list(layer_sizes) if layer_sizes is not None else [hidden_size] * num_layers
        self.hidden_size, self.num_layers = self.layer_sizes[-1], len(self.layer_sizes)
        self.bidirectional = bool(bidirectional)
        self.directions = 2 if self.bidirectional else 1
        self.output_size = self.hidden_size * self.directions
        widths = [input_size] + [size * self.directions for size in self.layer_sizes]  # of z^(0) .. z^(L)
        self.layers = nn.ModuleList(
            nn.ModuleList(make_layer(widths[index], size) for _ in range(self.directions))
            for index, size in enumerate(self.layer_sizes)
        )
        self.dropout = nn.Dropout(dropout)
        self.links: dict[int, int] = {}
        self.projections = nn.ModuleDict()
        if links is None:
            links = residual_links(self.num_layers) if residual else {}
        for end, start in links.items():
            if widths[start] != widths[end]:
                if not project_links:
                    continue
                self.projections[str(end)] = nn.Linear(widths[start], widths[end], bias=False)
            self.links[end] = start

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, state=None):
        lengths = check_lengths(x, lengths)
        if lengths is not None and 0 in self.links.values():  # a link from the input must carry no padding
            x = x * length_mask(lengths.to(x.device), x.shape[1])[:, :, None].to(x.dtype)
        stream, finals = [x], []
        backward_order = reversal_index(lengths, x.shape[1], x.device) if self.directions == 2 else None
        for index, directions in enumerate(self.layers):
            layer_input = stream[-1] if index == 0 else self.dropout(stream[-1])
            outputs = []
            for direction, layer in enumerate(directions):
                initial = self.layer_state(state, index, direction)
                if direction == 0:
                    output, final = layer(layer_input, lengths, initial)
                else:
                    output, final = layer(reverse(layer_input, backward_order), lengths, initial)
                    output = reverse(output, backward_order)  # the same index undoes it
                outputs.append(output)
                finals.append(final)
            h = torch.cat(outputs, dim=-1) if len(outputs) > 1 else outputs[0]
            end = index + 1
            if end in self.links:
                shortcut = stream[self.links[end]]
                if str(end) in self.projections:
                    shortcut = self.projections[str(end)](shortcut)
                h = h + shortcut
            stream.append(h)
        return stream[-1], self.stacked_state(finals)

    def layer_state(self, state, layer: int, direction: int):
        """One layer and direction's initial state out of a stacked state (see the module docstring), or None."""
        if state is None:
            return None

        def row(stacked):
            if isinstance(stacked, list):  # one [directions, batch, width] per layer
                return stacked[layer][direction]
            return stacked[layer * self.directions + direction]

        return tuple(row(part) for part in state) if isinstance(state, tuple) else row(state)

    def stacked_state(self, finals: list):
        """The per-(layer, direction) final states in PyTorch's layout (see the module docstring)."""
        parts = list(zip(*finals)) if isinstance(finals[0], tuple) else [finals]
        if len(set(self.layer_sizes)) == 1:
            stacked = [torch.stack(part) for part in parts]
        else:
            rows = self.directions
            stacked = [[torch.stack(part[layer * rows:(layer + 1) * rows]) for layer in range(self.num_layers)]
                       for part in parts]
        return tuple(stacked) if isinstance(finals[0], tuple) else stacked[0]
