"""The fast path's algorithm with the loop in Python: the "python" backend, line by line csrc/'s C++.

Shapes: T steps, B sequences, H = hidden_size, kH = spec.input_width(H) (H, or 2H gated), R =
spec.recurrent_rows(H) (kH, + H with projection linear). Forward, for t = 0 .. T-1:

    P_t   = s_t W^T  [B, R],  W = [U; (U_g;) (W_im)] [R, H]      one GEMM per step
    P_t[:, :kH] <- BN(P_t[:, :kH]) (batch norm), then += xp_t    xp_t = W x_t + b [B, kH], computed before the loop
    a_t   = act(P_t[:, :H])  [B, H],  g_t = σ(P_t[:, H:2H])       (gated)
    s_{t+1} = f(base + a_t (⊙ g_t)),  base = P_t[:, kH:] (linear) or s_t, held at s_t past each sequence's length

Backward: one loop back over time, dL/dP_t and dL/ds_t from dL/ds_{t+1} (one GEMM per step); dL/dW is one GEMM
over all steps after the loop (dL/dxp is dL/dP's first kH columns; the input GEMM's own gradients follow from it).
Mixed precision (precision.py): W in the GEMMs' dtype, everything else in the states' (`_times`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from rrn_app.cells.fast.spec import BATCH_NORM_EPS, RecurrenceSpec


class Forward(NamedTuple):
    """What the forward pass returns (the C++ op too, as a list in this order).

    states [T+1, B, H] (s_0 first); acts a and gates g [T, B, H] when need_grad, else the last step's [B, H]
    (gates None when not gated); batch norm only: zhat [T, B, kH] (need_grad) and, in training, the batch's
    mean and var (biased) and inv = 1/sqrt(var + eps), [T, kH] each.
    """

    states: torch.Tensor
    acts: torch.Tensor
    gates: torch.Tensor | None
    zhat: torch.Tensor | None
    mean: torch.Tensor | None
    var: torch.Tensor | None
    inv: torch.Tensor | None


class Backward(NamedTuple):
    """dL/dxp [T, B, kH], dL/ds_0 [B, H], dL/dW [R, H], dL/dgamma [kH] (None without batch norm)."""

    xp: torch.Tensor
    s0: torch.Tensor
    weight: torch.Tensor
    gamma: torch.Tensor | None


def _times(x: torch.Tensor, weight: torch.Tensor, addend: torch.Tensor | None = None) -> torch.Tensor:
    """(addend +) x @ weight in x's dtype; a weight in another dtype (mixed precision: precision.py) multiplies x
    rounded to it, and the product is widened back to x's dtype (csrc/step_gemm.h: StepProduct likewise)."""
    if weight.dtype != x.dtype:
        product = (x.to(weight.dtype) @ weight).to(x.dtype)
        return product if addend is None else product.add_(addend)
    return x @ weight if addend is None else torch.addmm(addend, x, weight)


def _activate(z: torch.Tensor, activation: str) -> torch.Tensor:
    return torch.tanh(z) if activation == "tanh" else torch.clamp_min(z, 0)


def _activate_backward(grad: torch.Tensor, value: torch.Tensor, activation: str) -> torch.Tensor:
    """dL/dz from dL/da and a = act(z)."""
    if activation == "tanh":
        return torch.ops.aten.tanh_backward(grad, value)
    return torch.ops.aten.threshold_backward(grad, value, 0)  # relu(z) > 0 exactly where z > 0


def _running(mask, T: int, B: int, like: torch.Tensor):
    """Batch norm's weights [T, B, 1] (None without padding) and counts [T] (>= 1) of the sequences running at each
    step (csrc/batch_norm.h: Running)."""
    if mask is None:
        return None, like.new_full((T,), float(B))
    keep = mask.to(like.dtype)
    return keep, keep.sum((1, 2)).clamp_min(1)


class _Norm(NamedTuple):
    """Batch norm inside the forward loop: gamma [kH]; evaluation: given_mean, given_std [T, kH] (None in
    training, which appends each step's mean, var, inv [kH] to `record`)."""

    gamma: torch.Tensor
    given_mean: torch.Tensor | None
    given_std: torch.Tensor | None
    record: tuple[list, list, list]
    running: tuple


def _normalize(pre: torch.Tensor, kH: int, t: int, norm: _Norm) -> torch.Tensor:
    """Recurrent batch norm of P's first kH columns ([B, kH]) in place (csrc/batch_norm.h: normalize); returns zhat."""
    z = pre[:, :kH]
    if norm.given_mean is None:
        keep, counts = norm.running
        weights, count = (None if keep is None else keep[t]), counts[t]
        mean = (z if weights is None else weights * z).sum(0) / count
        diff = z - mean
        var = (diff * diff if weights is None else weights * diff * diff).sum(0) / count
        std = torch.sqrt(var + BATCH_NORM_EPS)
        zhat = diff / std
        for records, value in zip(norm.record, (mean, var, 1 / std)):
            records.append(value)
    else:
        zhat = (z - norm.given_mean[t]) / norm.given_std[t]
    pre[:, :kH] = norm.gamma * zhat
    return zhat


def forward(spec: RecurrenceSpec, xp: torch.Tensor, s0: torch.Tensor, weight: torch.Tensor,
            mask: torch.Tensor | None, need_grad: bool, gamma: torch.Tensor | None = None,
            given_mean: torch.Tensor | None = None, given_std: torch.Tensor | None = None) -> Forward:
    """The recurrence over T steps (module docstring).

    xp [T, B, kH] = W x_t + b (in the states' dtype, or bfloat16 under mixed precision), s0 [B, H], weight [R, H],
    mask [T, B, 1] bool (True while a sequence runs; None: no padding); need_grad: keep every step's a and g for
    the backward pass; batch norm: gamma [kH], and in evaluation the running estimates given_mean, given_std
    [T, kH] (None: training, the batch's statistics).
    """
    T, B, kH = xp.shape
    H = s0.shape[1]
    states = s0.new_empty(T + 1, B, H)
    states[0] = s0
    acts, gates, zhats = [], [], []
    norm = None if gamma is None else _Norm(gamma, given_mean, given_std, ([], [], []), _running(mask, T, B, s0))
    wt = weight.t()
    for t in range(T):
        s = states[t]
        pre = _times(s, wt)
        if norm is not None:
            zhats.append(_normalize(pre, kH, t, norm))
        pre[:, :kH] += xp[t]
        a = _activate(pre[:, :H], spec.activation)
        base = pre[:, kH:] if spec.linear else s
        if spec.gated:
            g = torch.sigmoid(pre[:, H:2 * H])
            fresh = torch.addcmul(base, a, g)
            gates.append(g)
        else:
            fresh = base + a
        if spec.output_activation == "tanh":
            fresh = torch.tanh(fresh)
        states[t + 1] = fresh if mask is None else torch.where(mask[t], fresh, s)
        acts.append(a)
    stats = [torch.stack(r) if r else None for r in (norm.record if norm is not None else ((), (), ()))]
    if not need_grad:
        return Forward(states, acts[-1], gates[-1] if spec.gated else None, None, *stats)
    return Forward(states, torch.stack(acts), torch.stack(gates) if spec.gated else None,
                   torch.stack(zhats) if zhats else None, *stats)


def backward(spec: RecurrenceSpec, grad: torch.Tensor, states: torch.Tensor, acts: torch.Tensor,
             gates: torch.Tensor | None, weight: torch.Tensor, mask: torch.Tensor | None,
             gamma: torch.Tensor | None = None, zhat: torch.Tensor | None = None, inv: torch.Tensor | None = None,
             norm_training: bool = False) -> Backward:
    """Back-propagation through time of `forward`.

    grad [T, B, H] = dL/d states[1:]; states [T+1, B, H], acts and gates [T, B, H] (gates None when not gated),
    weight [R, H] and mask [T, B, 1] as the forward pass had them; batch norm: gamma [kH], zhat [T, B, kH], inv
    [T, kH] (1/std of the step's statistics), norm_training (the statistics were the batch's, so they depend on it).
    """
    T, B, H = grad.shape
    R = weight.shape[0]
    kH = R - H if spec.linear else R
    if mask is not None:
        keep = mask.to(grad.dtype)
        drop = 1 - keep
    dpre_all = grad.new_empty(T, B, R)  # dL/dP
    dz_all = grad.new_empty(T, B, R) if gamma is not None else dpre_all  # dL/dP behind batch norm
    weights_all, counts = _running(mask, T, B, grad) if gamma is not None else (None, None)
    carry = grad.new_zeros(B, H)  # dL/ds_t through step t+1
    for t in range(T - 1, -1, -1):
        total = grad[t] + carry
        dfresh = total if mask is None else total * keep[t]
        dsum = torch.ops.aten.tanh_backward(dfresh, states[t + 1]) if spec.output_activation == "tanh" else dfresh
        dpre = dpre_all[t]
        if spec.gated:
            dpre[:, :H] = _activate_backward(dsum * gates[t], acts[t], spec.activation)
            dpre[:, H:2 * H] = torch.ops.aten.sigmoid_backward(dsum * acts[t], gates[t])
        else:
            dpre[:, :H] = _activate_backward(dsum, acts[t], spec.activation)
        if spec.linear:
            dpre[:, kH:] = dsum
        dz = dpre
        if gamma is not None:  # batch norm's backward pass (csrc/batch_norm.h: normalize_backward)
            dz = dz_all[t]
            dzhat = dpre[:, :kH] * gamma
            if not norm_training:
                dz[:, :kH] = dzhat * inv[t]
            else:
                weights, count = (None if weights_all is None else weights_all[t]), counts[t]
                sum1 = (dzhat if weights is None else weights * dzhat).sum(0)
                sum2 = (dzhat * zhat[t] if weights is None else weights * dzhat * zhat[t]).sum(0)
                value = (dzhat - sum1 / count - zhat[t] * (sum2 / count)) * inv[t]
                dz[:, :kH] = value if weights is None else value * weights
            dz[:, kH:] = dpre[:, kH:]
        # dL/ds_{t-1} = dz W + (the identity shortcut: dsum) + (ended sequences: the state passed through)
        if mask is not None:
            passed = total * drop[t]
            if not spec.linear:
                passed = passed + dsum
            carry = _times(dz, weight, passed)
        elif not spec.linear:
            carry = _times(dz, weight, dsum)
        else:
            carry = _times(dz, weight)
    gemm = weight.dtype  # dL/dW in the GEMMs' dtype, like the weight it is the gradient of
    dweight = dz_all.view(T * B, R).t().to(gemm) @ states[:T].reshape(T * B, H).to(gemm)
    dgamma = None if gamma is None else (dpre_all[:, :, :kH] * zhat).sum((0, 1))
    return Backward(dpre_all[:, :, :kH], carry, dweight, dgamma)
