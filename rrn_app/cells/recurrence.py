"""`Recurrence`: one layer, one direction of a step-wise cell. A new cell writes one timestep; this runs it.

A subclass sets `hidden_size` and writes

    project_inputs(x)                     the input terms of every timestep at once: one GEMM, W x + b for all t
    step(inputs, state, t, running)       one timestep: the new state from the projected input and the last state

and, if its state is more than one tensor (an LSTM's (h, c)), `initial_state`. The state is a tensor h, or a
tuple whose first element is the output h. Over a padded batch the loop is

    for t in 0 .. longest - 1:
        new = step(inputs[:, t], state, t, running[:, t])
        state  = new where t < length, else the state stays       (each sequence stops at its own length)
        output[:, t] = h where t < length, else 0

so a padded batch gives exactly what each sequence gives alone, and the final state of each sequence is the
one at its own last step. `running` ([batch, 1], True where t < length; None without padding) is for a step
that keeps batch statistics (recurrent batch norm); most steps ignore it, and `t` too.

Stacking layers, both directions, dropout between layers and residual links come from `RecurrentStack`
(stack.py): a cell, built in or plugin, writes only this single-layer, single-direction recurrence.
"""

from __future__ import annotations

import torch
from torch import nn

from rrn_app.cells.sequence import length_mask


def output_of(state):
    """The output h of a state: the tensor itself, or the first element of a tuple."""
    return state[0] if isinstance(state, tuple) else state


def keep_running(new, old, running):
    """The new state where a sequence is still running, the old one where it has ended."""
    if running is None:
        return new
    if isinstance(new, tuple):
        return tuple(torch.where(running, n, o) for n, o in zip(new, old))
    return torch.where(running, new, old)


class Recurrence(nn.Module):
    """Base class of a single-layer, single-direction step-wise recurrence (see the module docstring)."""

    hidden_size: int

    def project_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, time, input_size] -> what `step` reads at each t. Default: x itself."""
        return x

    def step(self, inputs: torch.Tensor, state, t: int, running: torch.Tensor | None):
        raise NotImplementedError

    def initial_state(self, x: torch.Tensor):
        return x.new_zeros(x.shape[0], self.hidden_size)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, state=None):
        batch, total_length, _ = x.shape
        state = self.initial_state(x) if state is None else state
        running = None if lengths is None else length_mask(lengths.to(x.device), total_length)[:, :, None]
        longest = total_length if lengths is None else int(lengths.max())
        inputs = self.project_inputs(x[:, :longest])
        outputs = []
        for t in range(longest):
            running_t = None if running is None else running[:, t]
            state = keep_running(self.step(inputs[:, t], state, t, running_t), state, running_t)
            outputs.append(output_of(state))
        outputs = torch.stack(outputs, dim=1)
        if running is not None:  # zero past each length, in one op for all steps
            outputs = torch.where(running[:, :longest], outputs, 0.0)
        if longest < total_length:
            outputs = nn.functional.pad(outputs, (0, 0, 0, total_length - longest))
        return outputs, state
