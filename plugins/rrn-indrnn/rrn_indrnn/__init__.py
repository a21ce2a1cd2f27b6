"""`indrnn`: the Independently Recurrent Neural Network of Li et al. (2018), as an rrn cell plugin.

Li, Li, Cook, Zhu & Gao, "Independently Recurrent Neural Network (IndRNN): Building A Longer and Deeper RNN",
CVPR 2018, eq. (2):

    h_t = act(W x_t + u ⊙ h_{t-1} + b)          u: one recurrent weight per unit (elementwise, not a matrix)

Each unit only sees its own past, so the gradient through T steps is scaled by u_n^T act'(.)^T; keeping
|u_n| <= gamma^(1/T) (section 3.1) bounds it by gamma. Recurrent weight clipping: before every training
forward pass |u| is clipped in place to `clip_gain` ** (1 / `clip_steps`) (projected gradient descent: the
optimizer's last step is projected back, as the authors' code does after each update). Initialisation as the
authors': u uniform in [0, bound], W uniform in ±1/sqrt(hidden_size), b = 0. `activation`: relu (the paper's)
or tanh.

This module is the whole plugin: a single-layer, single-direction `Recurrence` (its step is one line) and a
registered `RecurrentStack` that gives it rrn's shared options (num_layers, dropout, bidirectional, residual).
The constructor's defaults are the cell's config in rrn-train (hidden_size, which has none, gets rrn's 80).
`reference` is the plain step-by-step oracle the tests check the cell against.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from rrn_app import option_checks
from rrn_app.cells import register_cell
from rrn_app.cells.recurrence import Recurrence
from rrn_app.cells.stack import RecurrentStack

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}


class IndRNNLayer(Recurrence):
    """One layer, one direction: h_t = act(W x_t + u ⊙ h_{t-1} + b), |u| clipped in training."""

    def __init__(self, input_size: int, hidden_size: int, activation: str = "relu", recurrent_max: float = 1.0):
        super().__init__()
        self.hidden_size, self.activation, self.recurrent_max = hidden_size, ACTIVATIONS[activation], recurrent_max
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))  # W
        self.weight_hh = nn.Parameter(torch.empty(hidden_size))  # u
        self.bias = nn.Parameter(torch.zeros(hidden_size))  # b
        bound = 1 / math.sqrt(hidden_size)
        nn.init.uniform_(self.weight_ih, -bound, bound)
        nn.init.uniform_(self.weight_hh, 0.0, recurrent_max)

    def forward(self, x, lengths=None, state=None):
        if self.training:
            with torch.no_grad():
                self.weight_hh.clamp_(-self.recurrent_max, self.recurrent_max)
        return super().forward(x, lengths, state)

    def project_inputs(self, x):
        return F.linear(x, self.weight_ih, self.bias)  # W x_t + b for every t in one GEMM

    def step(self, inputs, h, t, running):
        return self.activation(inputs + self.weight_hh * h)


@register_cell("indrnn")
class IndRNN(RecurrentStack):
    """IndRNN (Li et al. 2018): h_t = act(W x_t + u ⊙ h_{t-1} + b), one clipped recurrent weight per unit.

    Options:
        activation: act, relu (the paper's) or tanh
        clip_gain: gamma of section 3.1: |u| is clipped to clip_gain ** (1 / clip_steps) before each training pass
        clip_steps: T of section 3.1, the sequence length the clipping bounds the gradient over
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 2, dropout: float = 0.0,
                 bidirectional: bool = False, residual: bool = False, activation: str = "relu",
                 clip_gain: float = 2.0, clip_steps: int = 64):
        option_checks.one_of("activation", activation, tuple(ACTIVATIONS))
        recurrent_max = option_checks.positive_float("clip_gain", clip_gain) ** (
            1 / option_checks.positive_int("clip_steps", clip_steps))
        super().__init__(input_size, hidden_size, num_layers, dropout, bidirectional, residual,
                         make_layer=lambda size, hidden: IndRNNLayer(size, hidden, activation, recurrent_max))


def reference(x, W, u, b, activation=torch.relu, h0=None):
    """The plain step-by-step IndRNN layer over full-length sequences [batch, time, input]: the tests' oracle."""
    h = x.new_zeros(x.shape[0], u.shape[0]) if h0 is None else h0
    outputs = []
    for t in range(x.shape[1]):
        h = activation(x[:, t] @ W.T + u * h + b)
        outputs.append(h)
    return torch.stack(outputs, dim=1), h
