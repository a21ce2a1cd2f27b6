"""A minGRU plugin written on `Recurrence`'s fast-path hooks (docs/cells.md, "The plugin fast path"): the example
tests/test_plugin_fast_path.py holds to the plain loop, and what the speed numbers of docs/speed.md time.

minGRU (Feng et al. 2024, "Were RNNs all we needed?"): z_t = σ(W_z x_t + b_z), h̃_t = W_h x_t + b_h,
h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t. Both gates read x only, so all of it but one multiply-add per step is the
input-side transform: a_t = 1 - z_t and b_t = z_t ⊙ h̃_t for every t at once, then h_t = a_t ⊙ h_{t-1} + b_t.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from rrn_app.cells.recurrence import Recurrence
from rrn_app.cells.stack import RecurrentStack


class MinGRULayer(Recurrence):
    """One layer, one direction of minGRU."""

    def __init__(self, input_size: int, hidden_size: int, compile_step: bool = True):
        super().__init__()
        self.hidden_size, self.compile_step = hidden_size, compile_step
        self.weight_ih = nn.Parameter(torch.randn(2 * hidden_size, input_size) / input_size**0.5)  # [W_z; W_h]
        self.bias = nn.Parameter(torch.zeros(2 * hidden_size))

    def project_inputs(self, x):  # [batch, time, input]: one GEMM for every t, then the gates' elementwise part
        z, candidate = F.linear(x, self.weight_ih, self.bias).chunk(2, dim=-1)
        z = torch.sigmoid(z)
        return torch.cat([1 - z, z * candidate], dim=-1)  # a_t, b_t

    def recurrent_step(self, inputs, h):  # one timestep: h_t = a_t ⊙ h_{t-1} + b_t
        a, b = inputs.chunk(2, dim=-1)
        return torch.addcmul(b, a, h)


class MinGRU(RecurrentStack):
    """minGRU (Feng et al. 2024): h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t, z_t and h̃_t from x_t only.

    Options:
        compile_step: compile the step (the plugin fast path); false runs the plain step loop
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False, residual: bool = False, compile_step: bool = True):
        super().__init__(input_size, hidden_size, num_layers, dropout, bidirectional, residual,
                         make_layer=lambda size, hidden: MinGRULayer(size, hidden, compile_step))


def register(name: str = "mingru_plugin") -> None:
    """Register MinGRU under `name` (what an entry point does for an installed plugin), for rrn-bench."""
    from rrn_app.cells import register_cell

    register_cell(name)(MinGRU)
