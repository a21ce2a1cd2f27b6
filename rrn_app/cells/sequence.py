"""Helpers for padded batches: checking lengths, masks, reversing within lengths, final steps, packing.

A batch is `x` of shape [batch, time, features] with `lengths` (None: every sequence is full). What rrn's tasks
pass, and what every helper here takes:

    lengths: a 1-d integer tensor [batch] (the tasks give torch.int64; any integer dtype works), on the CPU or
             on x's device (helpers move it where they need it); each length in 1 .. time: a length of 0 is
             refused (`check_lengths`, as every built-in cell does), since an empty sequence has no last
             output for a classifier to read.

Positions at or past a sequence's length are padding: cells return zeros there and never let them influence the
real positions. The public ones (`rrn_app.cells` exports them for plugin cells) are `check_lengths`,
`length_mask`, `mask_padding`, `last_step`, `final_output`, `reverse_padded` and `detach_state`.
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
    """`lengths` checked against x [batch, time, ...]: shape [batch], every length in 1 .. time (ValueError
    otherwise); returned as given (same dtype and device), or None when every sequence fills the time dimension
    (then a cell can take its unpadded path)."""
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
    """[batch, total_length] boolean on `lengths`' device, True at real (non-padding) positions."""
    return torch.arange(total_length, device=lengths.device)[None, :] < lengths[:, None]


def mask_padding(outputs: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """`outputs` [batch, time, ...] with every position at or past its sequence's length set to 0 (the cell
    contract's zeros after each length); `outputs` itself when `lengths` is None. Gradients flow through the real
    positions only."""
    if lengths is None:
        return outputs
    mask = length_mask(lengths.to(outputs.device), outputs.shape[1])
    return outputs * mask.view(*mask.shape, *([1] * (outputs.dim() - 2))).to(outputs.dtype)


def last_step(sequence: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """[batch, ...]: each sequence's value at its own last real step, `sequence[b, lengths[b] - 1]`, out of
    `sequence` [batch, time, ...] (the last time step when `lengths` is None). Use it for a final state of a
    layer that ran over the padding: its states at every step, read at each length."""
    if lengths is None:
        return sequence[:, -1]
    batch = sequence.shape[0]
    index = (lengths.to(sequence.device).long() - 1).view(batch, 1, *([1] * (sequence.dim() - 2)))
    return sequence.gather(1, index.expand(batch, 1, *sequence.shape[2:])).squeeze(1)


def reversal_index(lengths: torch.Tensor | None, total_length: int, device) -> torch.Tensor | None:
    """[batch, time]: where each step of a sequence reversed within its own length comes from (None: no padding)."""
    if lengths is None:
        return None
    steps = torch.arange(total_length, device=device)[None, :]
    last = lengths.to(device)[:, None] - 1
    return torch.where(steps <= last, last - steps, steps)


def reverse(x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    """x [batch, time, features] reversed by a `reversal_index` (None: the whole time axis)."""
    return x.flip(1) if index is None else x.gather(1, index[:, :, None].expand(-1, -1, x.shape[2]))


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Each sequence of x [batch, time, features] reversed within its own length; the padding stays where it is
    (the whole time axis flipped when `lengths` is None). Its own inverse: the backward direction of a
    bidirectional layer is `reverse_padded(layer(reverse_padded(x, lengths)), lengths)`."""
    return reverse(x, reversal_index(lengths, x.shape[1], x.device))


reverse_within_lengths = reverse_padded  # the older name


def final_output(outputs: torch.Tensor, lengths: torch.Tensor | None, bidirectional: bool) -> torch.Tensor:
    """The sequence summary a classifier reads: [batch, output_size], out of a cell's outputs [batch, time,
    output_size].

    Forward direction: the output at each sequence's last real step. Backward direction (second half of
    the features when bidirectional): the output at step 0, where that direction ends.
    """
    last = last_step(outputs, lengths)
    if not bidirectional:
        return last
    half = outputs.shape[2] // 2
    return torch.cat([last[:, :half], outputs[:, 0, half:]], dim=1)


def lstm_layers_state(state, layer: int, directions: int):
    """The (h0, c0) slice for one layer of a stacked state in nn.LSTM layout, or None."""
    if state is None:
        return None
    h, c = state
    rows = slice(layer * directions, (layer + 1) * directions)
    return h[rows].contiguous(), c[rows].contiguous()


def detach_state(state):
    """A recurrent state cut from the graph (truncated back-propagation through time): a tensor, or tuples and
    lists of them nested, as every cell's state layout is."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return type(state)(detach_state(part) for part in state)


__all__ = [
    "check_common_options", "check_lengths", "pack", "unpack", "map_data", "combine", "length_mask", "mask_padding",
    "last_step", "final_output", "reversal_index", "reverse", "reverse_padded", "reverse_within_lengths",
    "lstm_layers_state", "detach_state",
]
