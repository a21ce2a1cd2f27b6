"""The fast path of `res_rnn` and `gres_rnn`: the whole recurrence of a layer as one autograd op, BPTT by hand.

A step-wise cell run by `Recurrence` costs a dozen autograd-recorded ops per timestep, and at the sizes of the
papers that per-op overhead, not the arithmetic, sets the speed. Here one layer, one direction is

    xp     = W x_t + b for every t                               one GEMM (addmm, outside the op)
    for t:                                                       in C++ (csrc/residual_recurrence.cpp)
        P   = s_{t-1} [U; (U_g;) (W_im)]^T                       one GEMM per step, + xp_t on the first k*H columns
        a   = act(P_c),  g = σ(P_g) (gated)                      (CPU: one fused, vectorised pass over the rows)
        s'  = f(base + a (⊙ g)),  base = P_im (projection=linear) or s_{t-1}
        s_t = s' where t < length, else s_{t-1}                 (each sequence stops at its own length)

and its backward pass, written out (`ResidualRecurrenceFunction.backward`): one loop back over time computing
dL/dP_t and dL/ds_{t-1} (one GEMM per step); after the loop dL/d[U; U_g; W_im] is a single GEMM over all
timesteps, and dL/dW, dL/db, dL/dx are the input GEMM's own. Saved for the backward pass: the states, the
activations (and gate values, batch norm's normalized values) — no per-step autograd graph.

Backends, chosen once per process (`backend()`):

- "cpp": the time loop in a small C++ extension of ATen calls (no pybind11; about 15 s of CPU to build with the
  system compiler and ninja at first use, cached in torch's extensions folder, TORCH_EXTENSIONS_DIR);
- "python": the same algorithm with the loop in Python (this module's `python_forward`/`python_backward`), used
  when the extension cannot be built (no compiler or ninja: a warning says so once), or with `RRN_FAST_CELLS=0`;
- "step": `RRN_FAST_CELLS=step` turns the fast path off: the step-wise `Recurrence` loop with autograd.

How the C++ loop uses the CPU (each choice measured with rrn-bench, see the README's Speed section):

- the per-step GEMM: float32 with hidden_size >= 256 goes to oneDNN's matmul with the weight reordered once per
  call into its blocked layout (what nn.LSTM's oneDNN kernel gets; `step_gemm` tells; `RRN_ONEDNN=0` turns it
  off), otherwise to ATen's mm (MKL);
- several threads: with ATen's GEMM, each thread takes its share of the batch rows through all the steps, forward
  and backward, in one parallel region (rows are independent; batch norm excepted); with oneDNN, oneDNN's
  parallel GEMM and a serial elementwise pass per step. The extension is compiled with OpenMP (torch's own
  runtime) for that; a compiler without OpenMP gives a one-thread loop around torch's parallel GEMMs.

On other devices (CUDA) the C++ loop is ATen ops: one GEMM and a few elementwise kernels per step;
`RRN_FAST_CELLS_DEVICE_LOOP=1` runs that loop on CPU too, which is how the tests check it without a GPU.

Recurrent batch norm (batch_norm.py) is on the fast path too: the U s_{t-1} columns of P are normalized in place
each step (training: the statistics of the sequences still running; evaluation: the running estimates of the
step), its backward pass is written out per step, and the running estimates are updated after the loop from the
recorded per-step statistics, exactly as the step-wise loop updates them. Not on the fast path (the cells fall
back to the step-wise loop by themselves): autocast (mixed precision), dtypes other than float32/float64, and a
subclass that overrides `step`, `residual` or `project_inputs`. The generic plugin-facing `Recurrence` path
(recurrence.py) keeps its autograd loop: an arbitrary Python `step` has no hand-written backward pass.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import warnings
from pathlib import Path

import torch

from rrn_app.validation import UserError

ENV = "RRN_FAST_CELLS"
SOURCE = Path(__file__).with_name("csrc") / "residual_recurrence.cpp"
EXTENSION = "rrn_fast_cells"
OPENMP_FLAG = "-fopenmp"  # without OpenMP (a compiler lacking it: tried next) the loops run on one thread
ACTIVATION = {"tanh": 0, "relu": 1}
OUTPUT_ACTIVATION = {"identity": 0, "tanh": 1}

_lock = threading.Lock()
_backend: str | None = None
_forced: str | None = None
_built: bool | None = None


def _build() -> bool:
    """Build (or load from the cache) the C++ extension once; False, with a warning, when that is not possible."""
    global _built
    if _built is None:
        _built = _try_build()
    return _built


def _torch_uses_openmp() -> bool:
    """torch's threads are OpenMP's: at::parallel_for (inlined from ATen's headers) runs in parallel only when the
    extension is compiled with OpenMP too — then it shares torch's OpenMP runtime (libgomp.so.1, already loaded)."""
    return sys.platform.startswith("linux") and "parallel backend: OpenMP" in torch.__config__.parallel_info()


def _try_build() -> bool:
    from torch.utils import cpp_extension

    problem = None
    if not cpp_extension.is_ninja_available():
        problem = "ninja is not installed (pip install ninja)"
    elif shutil.which(os.environ.get("CXX", "c++")) is None:
        problem = "no C++ compiler found (set CXX or install g++)"
    else:
        for flags in ([OPENMP_FLAG], []) if _torch_uses_openmp() else ([],):
            try:
                cpp_extension.load(EXTENSION, [str(SOURCE)], extra_cflags=["-O3", *flags], extra_ldflags=flags,
                                   is_python_module=False, verbose=False)
                return True
            except Exception as error:  # a broken toolchain must not stop training
                problem = f"building it failed: {type(error).__name__}: {str(error).strip()[-600:]}"
    warnings.warn(f"rrn: the C++ fast path of res_rnn/gres_rnn is unavailable, using the pure PyTorch one "
                  f"(slower): {problem}. Set {ENV}=0 to choose it and silence this warning.", RuntimeWarning,
                  stacklevel=3)
    return False


def backend() -> str:
    """"cpp", "python" or "step" (see the module docstring); the C++ extension is built on the first call."""
    global _backend
    if _forced is not None:
        return _forced
    if _backend is None:
        with _lock:
            if _backend is None:
                setting = os.environ.get(ENV, "1").strip().lower()
                if setting in ("step", "off", "none"):
                    _backend = "step"
                elif setting in ("0", "python", "false", "no"):
                    _backend = "python"
                elif setting in ("1", "cpp", "true", "yes", ""):
                    _backend = "cpp" if _build() else "python"
                else:
                    raise UserError(f"{ENV}={os.environ[ENV]!r} is not a setting: 1 (the C++ loop, the default), 0 "
                                    "(the same algorithm in pure PyTorch) or step (the step-by-step autograd loop)")
    return _backend


class use_backend:
    """Context manager (and plain setter) forcing a backend in this process: tests and rrn-bench compare them."""

    def __init__(self, name: str | None):
        if name not in (None, "cpp", "python", "step"):
            raise ValueError(f"unknown fast-cell backend {name!r}: cpp, python or step")
        if name == "cpp" and backend_available("cpp") is False:
            raise RuntimeError("the C++ fast path is not available here (see the warning above)")
        global _forced
        self.previous, _forced = _forced, name

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _forced
        _forced = self.previous


def backend_available(name: str) -> bool:
    if name != "cpp":
        return True
    if _backend == "cpp":
        return True
    if hasattr(torch.ops, EXTENSION) and hasattr(getattr(torch.ops, EXTENSION), "forward"):
        return True
    with _lock:
        return _build()


# --- the algorithm in Python: the fallback, line by line the C++ of csrc/residual_recurrence.cpp ------------------


def _activate(z, activation):
    return torch.tanh(z) if activation == 0 else torch.clamp_min(z, 0)


def _activate_backward(grad, value, activation):
    if activation == 0:
        return torch.ops.aten.tanh_backward(grad, value)
    return torch.ops.aten.threshold_backward(grad, value, 0)


def _running(mask, T, B, like):
    """Batch norm's weights [T, B, 1] (None without padding) and counts [T] of running sequences (csrc: Running)."""
    if mask is None:
        return None, like.new_full((T,), float(B))
    keep = mask.to(like.dtype)
    return keep, keep.sum((1, 2)).clamp_min(1)


def _normalize(pre, kH, t, norm, running):
    """Recurrent batch norm of P's first kH columns in place (csrc: normalize); returns zhat."""
    gamma, given_mean, given_std, record = norm
    z = pre[:, :kH]
    if given_mean is None:
        keep, counts = running
        weights, count = (None if keep is None else keep[t]), counts[t]
        mean = (z if weights is None else weights * z).sum(0) / count
        diff = z - mean
        var = (diff * diff if weights is None else weights * diff * diff).sum(0) / count
        std = torch.sqrt(var + 1e-5)
        zhat = diff / std
        record[0].append(mean)
        record[1].append(var)
        record[2].append(1 / std)
    else:
        zhat = (z - given_mean[t]) / given_std[t]
    pre[:, :kH] = gamma * zhat
    return zhat


def python_forward(xp, s0, weight, mask, activation, output_activation, gated, linear, need_grad, gamma=None,
                   given_mean=None, given_std=None):
    T, B, kH = xp.shape
    H = s0.shape[1]
    states = xp.new_empty(T + 1, B, H)
    states[0] = s0
    acts, gates, zhats, record = [], [], [], ([], [], [])
    norm = None if gamma is None else (gamma, given_mean, given_std, record)
    running = None if gamma is None else _running(mask, T, B, xp)
    wt = weight.t()
    for t in range(T):
        s = states[t]
        pre = s @ wt
        if norm is not None:
            zhats.append(_normalize(pre, kH, t, norm, running))
        pre[:, :kH] += xp[t]
        a = _activate(pre[:, :H], activation)
        base = pre[:, kH:] if linear else s
        if gated:
            g = torch.sigmoid(pre[:, H:2 * H])
            fresh = torch.addcmul(base, a, g)
            gates.append(g)
        else:
            fresh = base + a
        if output_activation == 1:
            fresh = torch.tanh(fresh)
        states[t + 1] = fresh if mask is None else torch.where(mask[t], fresh, s)
        acts.append(a)
    stats = [torch.stack(r) if r else None for r in record]
    if not need_grad:
        return [states, acts[-1], gates[-1] if gated else None, None, *stats]
    return [states, torch.stack(acts), torch.stack(gates) if gated else None,
            torch.stack(zhats) if zhats else None, *stats]


def python_backward(grad, states, acts, gates, weight, mask, activation, output_activation, gated, linear, kH,
                    gamma=None, zhat=None, inv=None, norm_training=False):
    T, B, H = grad.shape
    R = weight.shape[0]
    if mask is not None:
        keep = mask.to(grad.dtype)
        drop = 1 - keep
    dpre_all = grad.new_empty(T, B, R)
    dz_all = grad.new_empty(T, B, R) if gamma is not None else dpre_all
    weights_all, counts = _running(mask, T, B, grad) if gamma is not None else (None, None)
    carry = grad.new_zeros(B, H)
    for t in range(T - 1, -1, -1):
        total = grad[t] + carry
        dfresh = total if mask is None else total * keep[t]
        dsum = torch.ops.aten.tanh_backward(dfresh, states[t + 1]) if output_activation == 1 else dfresh
        dpre = dpre_all[t]
        if gated:
            dpre[:, :H] = _activate_backward(dsum * gates[t], acts[t], activation)
            dpre[:, H:2 * H] = torch.ops.aten.sigmoid_backward(dsum * acts[t], gates[t])
        else:
            dpre[:, :H] = _activate_backward(dsum, acts[t], activation)
        if linear:
            dpre[:, kH:] = dsum
        dz = dpre
        if gamma is not None:  # batch norm's backward pass (csrc: normalize_backward)
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
        if mask is not None:
            passed = total * drop[t]
            if not linear:
                passed = passed + dsum
            carry = torch.addmm(passed, dz, weight)
        elif not linear:
            carry = torch.addmm(dsum, dz, weight)
        else:
            carry = dz @ weight
    dweight = dz_all.view(T * B, R).t() @ states[:T].reshape(T * B, H)
    dgamma = None if gamma is None else (dpre_all[:, :, :kH] * zhat).sum((0, 1))
    return [dpre_all[:, :, :kH], carry, dweight, dgamma]


def step_gemm(weight: torch.Tensor, which: str) -> str:
    """What multiplies the state by this layer's recurrent weight [U; ...] each step: "oneDNN" or "ATen"."""
    return torch.ops.rrn_fast_cells.step_gemm(weight) if which == "cpp" else "ATen"


def _ops(name: str):
    if name == "cpp":
        ops = getattr(torch.ops, EXTENSION)
        return ops.forward, ops.backward
    return python_forward, python_backward


class ResidualRecurrenceFunction(torch.autograd.Function):
    """states[1:] ([T, B, H], each sequence's state held past its length) from xp [T, B, kH], s0, W = [U; ...] and
    batch norm's gamma (None: no batch norm)."""

    @staticmethod
    def forward(ctx, xp, s0, weight, gamma, mask, given_mean, given_std, activation, output_activation, gated, linear,
                which):
        forward_op, _ = _ops(which)
        need_grad = any(ctx.needs_input_grad[:4])
        xp, s0, weight = xp.contiguous(), s0.contiguous(), weight.contiguous()
        states, acts, gates, zhat, mean, var, inv = forward_op(
            xp, s0, weight, mask, activation, output_activation, gated, linear, need_grad, gamma, given_mean,
            given_std)
        ctx.options = (activation, output_activation, gated, linear, xp.shape[2], which, given_mean is None)
        if gamma is not None and given_std is not None:
            inv = 1 / given_std
        if need_grad:
            ctx.save_for_backward(states, acts, gates, weight, mask, gamma, zhat, inv)
        ctx.mark_non_differentiable(*[t for t in (mean, var) if t is not None])
        return states[1:], mean, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad, _mean, _var):
        activation, output_activation, gated, linear, kH, which, norm_training = ctx.options
        _, backward_op = _ops(which)
        states, acts, gates, weight, mask, gamma, zhat, inv = ctx.saved_tensors
        dxp, ds0, dweight, dgamma = backward_op(grad.contiguous(), states, acts, gates, weight, mask, activation,
                                                output_activation, gated, linear, kH, gamma, zhat, inv,
                                                norm_training)
        return dxp, ds0, dweight, dgamma, None, None, None, None, None, None, None, None


def residual_recurrence(xp, s0, weight, lengths_mask, activation: str, output_activation: str, gated: bool,
                        linear: bool, which: str, gamma=None, given_mean=None, given_std=None):
    """Run the recurrence: xp [T, B, kH] time-major, s0 [B, H], weight [U; (U_g;) (W_im)]; mask [T, B, 1] or None.

    Batch norm (gamma given): training normalizes with the batch's statistics and returns them, (states, mean
    [T, kH], var [T, kH]); evaluation takes given_mean and given_std [T, kH]. Without it: (states, None, None).
    """
    options = (ACTIVATION[activation], OUTPUT_ACTIVATION[output_activation], gated, linear, which)
    if not torch.is_grad_enabled():  # inference: nothing kept for a backward pass
        forward_op, _ = _ops(which)
        results = forward_op(xp.contiguous(), s0.contiguous(), weight.contiguous(), lengths_mask, *options[:4],
                             False, gamma, given_mean, given_std)
        return results[0][1:], results[4], results[5]
    return ResidualRecurrenceFunction.apply(xp, s0, weight, gamma, lengths_mask, given_mean, given_std, *options)
