"""A res_rnn / gres_rnn layer on the fast path: from the layer's batch-first call to the time-major op and back.

    x [B, T, I], lengths [B] (None: all T long), state s_0 [B, H] (None: zeros)
      -> xp = W x_t + b for every step, [T', B, kH], one GEMM (T' = the longest length; under autocast in its dtype)
      -> residual_recurrence (function.py) -> states [T', B, H] (float32 under autocast: precision.py)
      -> outputs [B, T, H], zero past each length; final state [B, H], each sequence's at its own length
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from rrn_app.cells.fast.function import residual_recurrence
from rrn_app.cells.fast.precision import call_precision
from rrn_app.cells.fast.spec import RecurrenceSpec


def running_mask(lengths: torch.Tensor | None, longest: int, device) -> torch.Tensor | None:
    """[T', B]: True while a sequence runs; None when every sequence runs to the end."""
    if lengths is None or int(lengths.min()) >= longest:
        return None
    return torch.arange(longest, device=device)[:, None] < lengths.to(device)[None, :]


def recurrent_weight(layer) -> torch.Tensor:
    """[U; (U_g;) (W_im)] [R, H]: what multiplies s_{t-1} each step."""
    return layer.weight_hh if layer.weight_im is None else torch.cat([layer.weight_hh, layer.weight_im])


def given_statistics(norm, longest: int, device):
    """Batch norm in evaluation: the running mean and std [T', kH] of each step; (None, None) in training."""
    if norm.training:
        return None, None
    slots = torch.arange(longest, device=device).clamp(max=norm.max_length - 1)
    return norm.running_mean[slots], torch.sqrt(norm.running_var[slots] + norm.eps)


def run_layer(layer, spec: RecurrenceSpec, which: str, x: torch.Tensor, lengths: torch.Tensor | None = None,
              state: torch.Tensor | None = None):
    """(outputs [B, T, H], final state [B, H]) of a ResRNNLayer (weights weight_ih [kH, I], bias [kH], weight_hh
    [kH, H], weight_im [H, H] or None, norm a RecurrentBatchNorm or None) on backend `which`."""
    batch, total_length, _ = x.shape
    longest = total_length if lengths is None else int(lengths.max())
    running = running_mask(lengths, longest, x.device)
    mask = None if running is None else running[:, :, None]
    inputs = x[:, :longest].transpose(0, 1).reshape(longest * batch, x.shape[2])  # time-major
    xp = torch.addmm(layer.bias, inputs, layer.weight_ih.t()).view(longest, batch, -1)  # W x_t + b: one GEMM
    weight = recurrent_weight(layer)
    dtypes = call_precision(x, weight)  # under autocast: float32 states, GEMMs in autocast's dtype where native
    s0 = x.new_zeros(batch, layer.hidden_size, dtype=dtypes.state) if state is None else state.to(dtypes.state)
    norm = layer.norm
    gamma = None if norm is None else norm.weight
    given_mean, given_std = (None, None) if norm is None else given_statistics(norm, longest, x.device)
    states, mean, var = residual_recurrence(spec, which, xp, s0, weight.to(dtypes.gemm), mask, gamma, given_mean,
                                            given_std)
    if norm is not None and norm.training:
        counts = running.sum(1) if running is not None else torch.full((longest,), batch, device=x.device)
        norm.update_running(mean, var, counts)
    outputs = (states if mask is None else torch.where(mask, states, 0.0)).transpose(0, 1)  # [B, T', H]
    if longest < total_length:
        outputs = F.pad(outputs, (0, 0, 0, total_length - longest))
    return outputs, states[-1]
