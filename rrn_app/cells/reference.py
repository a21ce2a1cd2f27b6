"""Plain step-by-step versions of the new cells: the oracles the cells are tested against.

Each function is one layer, one direction, over a batch [batch, time, input_size] of full-length sequences
(padding is the cells' business, tested separately), one timestep at a time, with the equations written
out as the papers write them and the weights passed in, so `torch.autograd.gradcheck` can differentiate
through everything in float64. Faster kernels (fused, C++) must match these.

`gamma` turns on recurrent batch normalization of the hidden-to-hidden terms with the batch's own
statistics at each step, as in training (batch_norm.py).
"""

from __future__ import annotations

import torch


def identity(z: torch.Tensor) -> torch.Tensor:
    return z


def batch_norm(z: torch.Tensor, gamma: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """gamma ⊙ (z - mean) / sqrt(var + eps) with the batch's mean and biased variance of each feature."""
    mean = z.mean(dim=0)
    var = ((z - mean) ** 2).mean(dim=0)
    return gamma * (z - mean) / torch.sqrt(var + eps)


def res_rnn(x, W, U, b, W_im=None, activation=torch.tanh, output_activation=identity, s0=None, gamma=None):
    """Yue et al. (2018) eqs. (12)-(13): F = act(W x_t + U s_{t-1} + b), y = W_im s_{t-1} + F, s_t = f(y).

    W_im None: the identity. Returns (outputs [batch, time, hidden], s_T).
    """
    s = x.new_zeros(x.shape[0], U.shape[1]) if s0 is None else s0
    outputs = []
    for t in range(x.shape[1]):
        recurrent = s @ U.T
        if gamma is not None:
            recurrent = batch_norm(recurrent, gamma)
        residual = activation(x[:, t] @ W.T + recurrent + b)
        y = (s if W_im is None else s @ W_im.T) + residual
        s = output_activation(y)
        outputs.append(s)
    return torch.stack(outputs, dim=1), s


def gres_rnn(x, W, U, b, W_g, U_g, b_g, W_linear=None, activation=torch.tanh, output_activation=identity,
             s0=None, gamma=None, gamma_g=None):
    """Yue et al. eqs. (15)-(16): g = σ(W_g x_t + U_g s_{t-1} + b_g), y = W_linear s_{t-1} + g ⊙ F, s_t = f(y)."""
    s = x.new_zeros(x.shape[0], U.shape[1]) if s0 is None else s0
    outputs = []
    for t in range(x.shape[1]):
        recurrent, recurrent_g = s @ U.T, s @ U_g.T
        if gamma is not None:
            recurrent, recurrent_g = batch_norm(recurrent, gamma), batch_norm(recurrent_g, gamma_g)
        residual = activation(x[:, t] @ W.T + recurrent + b)
        gate = torch.sigmoid(x[:, t] @ W_g.T + recurrent_g + b_g)
        y = (s if W_linear is None else s @ W_linear.T) + gate * residual
        s = output_activation(y)
        outputs.append(s)
    return torch.stack(outputs, dim=1), s


def lstm(x, W, U, b, V_o=None, h0=None, c0=None):
    """RRN paper eq. (1); W, U, b stack the gates in nn.LSTM's order (i, f, C̃, o); V_o None: no peephole.

    Returns (outputs [batch, time, hidden], (h_T, C_T)).
    """
    hidden = U.shape[1]
    h = x.new_zeros(x.shape[0], hidden) if h0 is None else h0
    c = x.new_zeros(x.shape[0], hidden) if c0 is None else c0
    W_i, W_f, W_c, W_o = W.split(hidden)
    U_i, U_f, U_c, U_o = U.split(hidden)
    b_i, b_f, b_c, b_o = b.split(hidden)
    outputs = []
    for t in range(x.shape[1]):
        x_t = x[:, t]
        i = torch.sigmoid(x_t @ W_i.T + h @ U_i.T + b_i)
        candidate = torch.tanh(x_t @ W_c.T + h @ U_c.T + b_c)
        f = torch.sigmoid(x_t @ W_f.T + h @ U_f.T + b_f)
        c = i * candidate + f * c
        peephole = 0.0 if V_o is None else c @ V_o.T
        out = torch.sigmoid(x_t @ W_o.T + h @ U_o.T + peephole + b_o)
        h = out * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs, dim=1), (h, c)


def rrn(x, layers, projections, skip):
    """The RRN stack: z^(l) = h^(l) + P_l z^(l - skip) for l = skip, 2 skip, ..., else z^(l) = h^(l).

    layers: one (W, U, b, V_o or None) per layer, bottom to top; projections: {l: P_l} for the links whose
    widths differ (the others are the identity). Returns the top layer's outputs z^(L).
    """
    stream = [x]
    for index, (W, U, b, V_o) in enumerate(layers):
        h, _ = lstm(stream[-1], W, U, b, V_o)
        layer = index + 1
        if layer % skip == 0:
            shortcut = stream[layer - skip]
            h = h + (shortcut @ projections[layer].T if layer in projections else shortcut)
        stream.append(h)
    return stream[-1]
