"""`gres_rnn`: the gated residual recurrent unit, gRes-RNN, of Yue, Fu & Liang (2018), eqs. (15)-(16).

Res-RNN (res_rnn.py) with a gate on the residual, which learns how much of it each step lets in:

    F(x_t, s_{t-1}) = act(W x_t + U s_{t-1} + b)            the residual function, as in res_rnn
    g   = σ(W_g x_t + U_g s_{t-1} + b_g)                    the gate (eq. 16, with a bias b_g)
    y   = W_linear s_{t-1} + g ⊙ F(x_t, s_{t-1})            (eq. 15)
    s_t = f(y)

The options are res_rnn's (`projection` is W_linear here); `batch_norm` normalizes both hidden-to-hidden terms,
U s_{t-1} and U_g s_{t-1}, each feature with its own statistics. Initialisation as res_rnn, with U_g small
like U and b_g = 0, so the gate starts near one half. W x_t + b and W_g x_t + b_g are one GEMM for all
timesteps, [U; U_g; W_linear] s_{t-1} one GEMM per step, on res_rnn's fast path (fast/);
reference.gres_rnn is the plain step-by-step version.
"""

from __future__ import annotations

import torch

from rrn_app.cells.registry import register_cell
from rrn_app.cells.res_rnn import ResRNN, ResRNNLayer


class GatedResRNNLayer(ResRNNLayer):
    """One layer, one direction of gRes-RNN: s_t = f(W_linear s_{t-1} + σ(W_g x_t + U_g s_{t-1} + b_g) ⊙ F)."""

    transforms = 2  # the rows of weight_ih, weight_hh, bias: [F's ; the gate's]
    fast_gated = True

    def residual(self, preactivation: torch.Tensor) -> torch.Tensor:
        candidate, gate = preactivation.chunk(2, dim=-1)
        return torch.sigmoid(gate) * self.activation(candidate)

    fast_residual = residual  # g ⊙ F: what the fast path computes with fast_gated


@register_cell("gres_rnn")
class GatedResRNN(ResRNN):
    """gRes-RNN (Yue et al. 2018): y = W_linear s_{t-1} + g ⊙ F, the gate g = σ(W_g x_t + U_g s_{t-1} + b_g).

    Options:
        output_activation: f in s_t = f(W_linear s_{t-1} + g ⊙ F): identity (the paper) or tanh
        projection: W_linear: identity or linear (learned, starts at the identity)
        batch_norm: recurrent batch norm of U s_{t-1} and U_g s_{t-1} (Cooijmans et al. 2016)
    """

    layer = GatedResRNNLayer
