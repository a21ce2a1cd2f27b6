"""Helpers for padded batches: packing for PyTorch's fused kernels, masks, final steps.

A batch is `x` of shape [batch, time, features] with `lengths` [batch] (None: every sequence is full).
Positions at or past a sequence's length are padding: cells return zeros there and never let them
influence the real positions.
"""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rrn_app import option_checks


def check_common_options(hidden_size, num_layers, dropout) -> None:
    option_checks.positive_int("hidden_size", hidden_size)
    option_checks.positive_int("num_layers", num_layers)
    option_checks.dropout_rate("dropout", dropout)


def check_lengths(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor | None:
    """`lengths` checked against x [batch, time, ...]; None when every sequence fills the time dimension."""
    if lengths is None:
        return None
    if lengths.dim() != 1 or lengths.shape[0] != x.shape[0]:
        raise ValueError(f"lengths must have shape [batch]={x.shape[0]}, got {tuple(lengths.shape)}")
    if not x.shape[0]:
        return lengths
    shortest, longest = lengths.aminmax()
    if int(shortest) < 1 or int(longest) > x.shape[1]:
        raise ValueError(f"lengths must lie in [1, {x.shape[1]}] (the time dimension of x)")
    return None if int(shortest) == x.shape[1] else lengths  # no padding: the cells take the unpadded path


def pack(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor | PackedSequence:
    """A PackedSequence for the fused kernels, or `x` itself when there is no padding."""
    if lengths is None:
        return x
    return pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)


def unpack(sequence: torch.Tensor | PackedSequence, total_length: int) -> torch.Tensor:
    if isinstance(sequence, PackedSequence):
        return pad_packed_sequence(sequence, batch_first=True, total_length=total_length)[0]
    return sequence


def map_data(sequence, function):
    """Apply an elementwise `function` to a tensor or to the data of a PackedSequence."""
    if isinstance(sequence, PackedSequence):
        return sequence._replace(data=function(sequence.data))
    return function(sequence)


def combine(first, second, function):
    """`function(a, b)` on two tensors, or on the data of two PackedSequences packed alike."""
    if isinstance(first, PackedSequence):
        return first._replace(data=function(first.data, second.data))
    return function(first, second)


def length_mask(lengths: torch.Tensor, total_length: int) -> torch.Tensor:
    """[batch, time] boolean, True at real (non-padding) positions."""
    return torch.arange(total_length, device=lengths.device)[None, :] < lengths[:, None]


def final_output(outputs: torch.Tensor, lengths: torch.Tensor | None, bidirectional: bool) -> torch.Tensor:
    """The sequence summary a classifier reads: [batch, output_size].

    Forward direction: the output at each sequence's last real step. Backward direction (second half of
    the features when bidirectional): the output at step 0, where that direction ends.
    """
    batch, total_length, features = outputs.shape
    if lengths is None:
        last = outputs[:, -1]
    else:
        index = (lengths.to(outputs.device) - 1).view(batch, 1, 1).expand(batch, 1, features)
        last = outputs.gather(1, index).squeeze(1)
    if not bidirectional:
        return last
    half = features // 2
    return torch.cat([last[:, :half], outputs[:, 0, half:]], dim=1)


def lstm_layers_state(state, layer: int, directions: int):
    """The (h0, c0) slice for one layer of a stacked state in nn.LSTM layout, or None."""
    if state is None:
        return None
    h, c = state
    rows = slice(layer * directions, (layer + 1) * directions)
    return h[rows].contiguous(), c[rows].contiguous()


__all__ = [
    "check_common_options", "check_lengths", "pack", "unpack", "map_data", "combine",
    "length_mask", "final_output", "lstm_layers_state",
]


def detach_state(state):
    """A recurrent state cut from the graph (truncated back-propagation through time): a tensor, or tuples and
    lists of them nested, as every cell's state layout is."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return type(state)(detach_state(part) for part in state)
