"""`Replay`: a cell run again layer by layer and step by step, keeping every layer's state at every timestep.

A cell's own forward runs fused kernels (nn.LSTM, cuDNN) or rrn's fast path, which never hold the per-step
states h_t of a layer as tensors of the autograd graph. The probe needs exactly those: the gradient of the loss
with respect to h_t of layer l is the total one, through the layers above *and* through the layer's own later
steps (back-propagation through time). So `Replay` wraps a built-in cell and computes the same function from the
cell's own parameters, one timestep at a time:

- a step-wise layer (`Recurrence`: res_rnn, gres_rnn, rrn with peepholes, plugin cells) runs its own
  `project_inputs` and `step`, as Recurrence.forward does;
- a PyTorch kernel (rnn, lstm, gru, the layers of res_lstm, rrn, residual=true) runs PyTorch's own one-step
  functions on the kernel's weights (torch.rnn_tanh_cell, rnn_relu_cell, lstm_cell, gru_cell);
- the stacking is the cell's: RecurrentStack's links and projections (stack.py), res_lstm's evaluation-time
  x^(l+1) = x^(l) + keep_prob * h^(l), or a plain stack for a multi-layer kernel.

It runs in evaluation mode only (no dropout, no stochastic depth or timesteps), from a zero initial state.
`check(x, lengths)` compares its outputs with the cell's own forward; the probe does that on its first batch.
Each call leaves `self.layers_run`: per layer and direction, a `LayerRun` with the step function, its per-step
inputs and every state (the h_t tensors retain their gradient).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from rrn_app.cells.recurrence import Recurrence, keep_running, output_of
from rrn_app.cells.res_lstm import ResidualLSTM
from rrn_app.cells.sequence import check_lengths, length_mask
from rrn_app.cells.stack import RecurrentStack, reversal_index, reverse
from rrn_app.cells.torch_rnns import FusedLayer, _FusedRecurrent
from rrn_app.option_checks import UserError

KERNEL_STEPS = {"RNN_TANH": torch.rnn_tanh_cell, "RNN_RELU": torch.rnn_relu_cell, "LSTM": torch.lstm_cell,
                "GRU": torch.gru_cell}


@dataclass
class StepLayer:
    """One layer, one direction as a step function: `project(x)` gives the per-step inputs of x [batch, time,
    input_size], `step(inputs_t, state, t, running_t)` the next state, `initial(x)` the zero state."""

    project: Callable
    step: Callable
    initial: Callable
    hidden_size: int


def recurrence_layer(layer: Recurrence) -> StepLayer:
    """A Recurrence as it is: its own projection and step (the step-by-step path of every fast cell)."""
    return StepLayer(layer.project_inputs, layer.step, layer.initial_state, layer.hidden_size)


def kernel_layer(kernel: nn.RNNBase, index: int, backward: bool) -> StepLayer:
    """Layer `index` (its backward direction if `backward`) of a PyTorch kernel, on PyTorch's one-step function."""
    if getattr(kernel, "proj_size", 0):
        raise UserError("rrn-probe cannot replay an LSTM with proj_size; use a cell without it.")
    suffix = f"_l{index}" + ("_reverse" if backward else "")
    weights = [getattr(kernel, f"{name}{suffix}", None) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    cell_step, size, is_lstm = KERNEL_STEPS[kernel.mode], kernel.hidden_size, kernel.mode == "LSTM"

    def step(inputs, state, t, running):
        return tuple(cell_step(inputs, state, *weights)) if is_lstm else cell_step(inputs, state, *weights)

    def initial(x):
        zeros = x.new_zeros(x.shape[0], size)
        return (zeros, zeros.clone()) if is_lstm else zeros

    return StepLayer(lambda x: x, step, initial, size)


def any_layer(layer: nn.Module) -> StepLayer:
    if isinstance(layer, Recurrence):
        return recurrence_layer(layer)
    if isinstance(layer, FusedLayer):
        return kernel_layer(layer.kernel, 0, False)
    raise UserError(f"rrn-probe cannot replay a layer of type {type(layer).__name__}: it replays Recurrence "
                    "layers and PyTorch kernels (every built-in cell).")


@dataclass
class LayerRun:
    """One layer and direction of one call: the step function, per-step inputs [batch, steps, ...], the initial
    state and the state after each step (`states[t]`; `outputs[t]` is its h, which retains its gradient).
    `order` maps processing steps back to positions for a backward direction (None: forward)."""

    layer: StepLayer
    inputs: torch.Tensor
    initial: object
    states: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    order: torch.Tensor | None = None
    backward: bool = False


def run_layer(layer: StepLayer, x: torch.Tensor, lengths: torch.Tensor | None, keep: bool) -> tuple[torch.Tensor, LayerRun]:
    """Recurrence.forward's loop over any StepLayer: outputs [batch, time, hidden] zero past each length."""
    batch, total_length, _ = x.shape
    state = layer.initial(x)
    running = None if lengths is None else length_mask(lengths.to(x.device), total_length)[:, :, None]
    longest = total_length if lengths is None else int(lengths.max())
    inputs = layer.project(x[:, :longest])
    record = LayerRun(layer, inputs, state)
    for t in range(longest):
        running_t = None if running is None else running[:, t]
        state = keep_running(layer.step(inputs[:, t], state, t, running_t), state, running_t)
        h = output_of(state)
        if keep and h.requires_grad:
            h.retain_grad()
        record.states.append(state)
        record.outputs.append(h)
    outputs = torch.stack(record.outputs, dim=1)
    if running is not None:
        outputs = torch.where(running[:, :longest], outputs, 0.0)
    if longest < total_length:
        outputs = nn.functional.pad(outputs, (0, 0, 0, total_length - longest))
    return outputs, record


@dataclass
class Plan:
    """How a cell stacks its layers: `layers[l][d]`, `combine(index, stream, h)` -> z^(index + 1), and whether a
    link starts at the input (which is then masked past each length, as RecurrentStack does)."""

    layers: list[list[StepLayer]]
    combine: Callable
    masks_input: bool = False


def stack_plan(stack: RecurrentStack) -> Plan:
    def combine(index, stream, h):
        end = index + 1
        if end in stack.links:
            shortcut = stream[stack.links[end]]
            if str(end) in stack.projections:
                shortcut = stack.projections[str(end)](shortcut)
            h = h + shortcut
        return h

    layers = [[any_layer(layer) for layer in directions] for directions in stack.layers]
    return Plan(layers, combine, 0 in stack.links.values())


def res_lstm_plan(cell: ResidualLSTM) -> Plan:
    directions = 2 if cell.bidirectional else 1
    layers = [[kernel_layer(lstm, 0, d == 1) for d in range(directions)] for lstm in cell.layers]

    def combine(index, stream, h):  # evaluation: x^(l+1) = x^(l) + keep_prob * h^(l)
        return h if index == 0 else stream[-1] + cell.keep_prob * h

    return Plan(layers, combine)


def kernel_plan(kernel: nn.RNNBase) -> Plan:
    directions = 2 if kernel.bidirectional else 1
    layers = [[kernel_layer(kernel, index, d == 1) for d in range(directions)] for index in range(kernel.num_layers)]
    return Plan(layers, lambda index, stream, h: h)


def plan_of(cell: nn.Module) -> Plan:
    """The replay plan of a built-in cell (or a plugin cell built on RecurrentStack); a UserError otherwise."""
    if isinstance(cell, RecurrentStack):
        return stack_plan(cell)
    if isinstance(cell, ResidualLSTM):
        return res_lstm_plan(cell)
    if isinstance(cell, _FusedRecurrent):
        return stack_plan(cell.rnn) if isinstance(cell.rnn, RecurrentStack) else kernel_plan(cell.rnn)
    if isinstance(cell, nn.RNNBase):
        return kernel_plan(cell)
    raise UserError(f"rrn-probe cannot replay the cell {type(cell).__name__}: it replays cells built on "
                    "RecurrentStack (rrn_app/cells/stack.py), res_lstm and PyTorch's kernels.")


class Replay(nn.Module):
    """The cell `cell`, replayed step by step (module docstring); called like the cell, from a zero state."""

    def __init__(self, cell: nn.Module):
        super().__init__()
        self.cell = cell
        self.plan = plan_of(cell)
        self.output_size = cell.output_size
        self.bidirectional = bool(getattr(cell, "bidirectional", False))
        self.hidden_size = getattr(cell, "hidden_size", None)
        self.num_layers = len(self.plan.layers)
        self.directions = len(self.plan.layers[0])
        self.layers_run: list[list[LayerRun]] = []
        self.keep = True  # h_t retains its gradient

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, state=None):
        if state is not None:
            raise ValueError("Replay runs from a zero initial state only (the probe resets carried states)")
        if self.cell.training:
            raise ValueError("Replay runs in evaluation mode only: call .eval() first")
        lengths = check_lengths(x, lengths)
        if lengths is not None and self.plan.masks_input:
            x = x * length_mask(lengths.to(x.device), x.shape[1])[:, :, None].to(x.dtype)
        order = reversal_index(lengths, x.shape[1], x.device) if self.directions == 2 else None
        stream, finals, self.layers_run = [x], [], []
        for index, directions in enumerate(self.plan.layers):
            outputs, runs = [], []
            for direction, layer in enumerate(directions):
                layer_input = stream[-1] if direction == 0 else reverse(stream[-1], order)
                output, run = run_layer(layer, layer_input, lengths, self.keep)
                if direction == 1:
                    output = reverse(output, order)
                    run.order, run.backward = order, True
                outputs.append(output)
                runs.append(run)
                finals.append(run.states[-1])
            self.layers_run.append(runs)
            h = torch.cat(outputs, dim=-1) if len(outputs) > 1 else outputs[0]
            stream.append(self.plan.combine(index, stream, h))
        return stream[-1], final_state(finals, lengths, self.layers_run)

    @torch.no_grad()
    def check(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> float:
        """The largest absolute difference between this replay's outputs and the cell's own forward on x (float32
        rounding grows with the outputs: `checked_scale` keeps their largest magnitude)."""
        keep, self.keep = self.keep, False
        try:
            ours, _ = self(x, lengths)
        finally:
            self.keep = keep
        theirs, _ = self.cell(x, lengths)
        self.checked_scale = float(theirs.abs().max()) if theirs.numel() else 0.0  # the outputs' largest magnitude
        return float((ours - theirs).abs().max()) if ours.numel() else 0.0


def final_state(finals: list, lengths, runs) -> object:
    """Each layer and direction's state at each sequence's own last step (the loop keeps it there), stacked
    as PyTorch does when the widths agree, else a list per layer."""
    parts = list(zip(*finals)) if isinstance(finals[0], tuple) else [finals]
    widths = {part.shape[-1] for part in parts[0]}
    stacked = [torch.stack(part) if len(widths) == 1 else list(part) for part in parts]
    return tuple(stacked) if isinstance(finals[0], tuple) else stacked[0]
