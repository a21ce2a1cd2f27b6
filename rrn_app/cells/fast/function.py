"""The fast path as one autograd op: `residual_recurrence` runs a layer's whole recurrence, forward and BPTT.

Either backend's kernels (loop.forward / loop.backward in Python, or the C++ ops, which take the spec as
`RecurrenceSpec.codes` and the switches of backends.py first) are called the same way here; saved for the
backward pass are the states, the activations (and gate values, batch norm's normalized values) — no per-step
autograd graph.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from rrn_app.cells.fast import backends, loop
from rrn_app.cells.fast.spec import RecurrenceSpec


class Kernels(NamedTuple):
    """forward(spec, xp, s0, weight, mask, need_grad, gamma, given_mean, given_std) -> loop.Forward's fields, and
    backward(spec, grad, states, acts, gates, weight, mask, gamma, zhat, inv, norm_training) -> loop.Backward's."""

    forward: Callable
    backward: Callable


def _cpp_forward(spec: RecurrenceSpec, *args):
    return backends.cpp_ops().forward(*spec.codes, *backends.switches(), *args)


def _cpp_backward(spec: RecurrenceSpec, *args):
    return backends.cpp_ops().backward(*spec.codes, *backends.switches(), *args)


def _triton_forward(spec: RecurrenceSpec, *args):
    return backends.triton_kernels().forward(spec, *args)


def _triton_backward(spec: RecurrenceSpec, *args):
    return backends.triton_kernels().backward(spec, *args)


KERNELS = {"cpp": Kernels(_cpp_forward, _cpp_backward), "python": Kernels(loop.forward, loop.backward),
           "triton": Kernels(_triton_forward, _triton_backward)}  # triton_kernel.py, imported at first use


def kernel_input(xp: torch.Tensor, s0: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """xp as the kernels take it: in the states' dtype, except autocast's bfloat16 projection with bfloat16 GEMMs,
    which the loops widen as they read it (no float32 copy of it is made)."""
    if xp.dtype == weight.dtype == torch.bfloat16 != s0.dtype:
        return xp.contiguous()
    return xp.to(s0.dtype).contiguous()


def kernel_precision(like: torch.Tensor):
    """Autocast off inside the kernels (it would recast their own GEMMs and elementwise ops): they run in the dtypes
    they are given — xp and the states in the state dtype (s0's), the GEMMs in the recurrent weight's (precision.py).
    torch.amp.custom_fwd(cast_inputs=...) would do the same but cast every input to one dtype."""
    return torch.autocast(like.device.type, enabled=False)


class ResidualRecurrenceFunction(torch.autograd.Function):
    """states[1:] [T, B, H] (each sequence's state held past its length) from xp [T, B, kH], s0 [B, H], the weight
    [U; ...] [R, H] and batch norm's gamma [kH] (None: no batch norm); see `residual_recurrence`. Mixed precision:
    xp in any dtype (widened to s0's; its gradient returned in its own), the weight in the GEMMs' dtype."""

    @staticmethod
    def forward(ctx, spec, which, xp, s0, weight, gamma, mask, given_mean, given_std):
        need_grad = any(ctx.needs_input_grad[2:6])
        ctx.xp_dtype = xp.dtype
        with kernel_precision(s0):
            xp, s0, weight = kernel_input(xp, s0, weight), s0.contiguous(), weight.contiguous()
            states, acts, gates, zhat, mean, var, inv = KERNELS[which].forward(
                spec, xp, s0, weight, mask, need_grad, gamma, given_mean, given_std)
        ctx.spec, ctx.which, ctx.norm_training = spec, which, given_mean is None
        if gamma is not None and given_std is not None:
            inv = 1 / given_std
        if need_grad:
            ctx.save_for_backward(states, acts, gates, weight, mask, gamma, zhat, inv)
        ctx.mark_non_differentiable(*[t for t in (mean, var) if t is not None])
        return states[1:], mean, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad, _mean, _var):
        states, acts, gates, weight, mask, gamma, zhat, inv = ctx.saved_tensors
        with kernel_precision(states):
            dxp, ds0, dweight, dgamma = KERNELS[ctx.which].backward(
                ctx.spec, grad.to(states.dtype).contiguous(), states, acts, gates, weight, mask, gamma, zhat, inv,
                ctx.norm_training)
        return None, None, dxp.to(ctx.xp_dtype), ds0, dweight, dgamma, None, None, None


def residual_recurrence(spec: RecurrenceSpec, which: str, xp: torch.Tensor, s0: torch.Tensor, weight: torch.Tensor,
                        mask: torch.Tensor | None = None, gamma: torch.Tensor | None = None,
                        given_mean: torch.Tensor | None = None, given_std: torch.Tensor | None = None):
    """Run the recurrence on backend `which` ("cpp" or "python"): (states[1:] [T, B, H], mean, var).

    xp [T, B, kH] time-major, s0 [B, H], weight [R, H] = [U; (U_g;) (W_im)], mask [T, B, 1] bool or None (shapes:
    spec.py). Batch norm (gamma [kH] given): training normalizes with the batch's statistics and returns them,
    mean and var [T, kH]; evaluation takes the running estimates given_mean and given_std [T, kH]. Without it
    mean and var are None.
    """
    which = backends.kernel_for(spec, which, xp, s0, weight, gamma)  # the Triton kernels where they apply
    if not torch.is_grad_enabled():  # inference: nothing kept for a backward pass
        with kernel_precision(s0):
            results = KERNELS[which].forward(spec, kernel_input(xp, s0, weight), s0.contiguous(),
                                             weight.contiguous(), mask, False, gamma, given_mean, given_std)
        return results[0][1:], results[4], results[5]
    return ResidualRecurrenceFunction.apply(spec, which, xp, s0, weight, gamma, mask, given_mean, given_std)
