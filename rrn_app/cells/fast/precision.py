"""The fast path under autocast (mixed precision): which dtype each part of the recurrence runs in.

Under `torch.autocast(device, dtype=low)` (Lightning's `bf16-mixed` and `16-mixed`) a res_rnn/gres_rnn layer with
float32 weights stays on the fast path:

- the input projection W x_t + b for all timesteps: autocast's own addmm, in `low`;
- the per-step GEMM P_t = s_t W^T and, backwards, dL/dP_t W: the state (kept in float32) is rounded to `low` for
  the product, W = [U; (U_g;) (W_im)] is rounded once per call, the product comes back in `low` and is widened to
  float32 at once — "low" GEMMs where the device multiplies natively in that dtype (CUDA; a CPU with AVX512-BF16 or
  AMX for bfloat16, AVX512-FP16 or AMX-FP16 for float16), otherwise float32 GEMMs (no emulated half precision,
  which would be slower than float32: see `gemm_dtype`, and a one-time warning says so);
- the weight gradient dL/dW: one GEMM over all steps in the GEMM dtype (accumulated in float32 inside the GEMM),
  accumulated into the float32 `.grad` by autograd; dL/dP_t, computed in float32, is what these GEMMs and dL/dxp
  read, so the C++ CPU loop stores it in bfloat16 at once (with batch norm, whose backward pass reads it, in
  float32), and reads autocast's bfloat16 xp without a float32 copy;
- everything else in float32: the states s_t, the elementwise pass (activations, gate, shortcut, padding), the
  gradient carried back through time, recurrent batch norm's statistics and its running estimates.

`RRN_AUTOCAST_GEMM` chooses: unset (the default) as above, 1 low-precision GEMMs wherever autocast asks (emulated
where not native), 0 float32 GEMMs always (the arithmetic of the float32 fast path, only the input projection in
`low`). Float64 layers ignore autocast (it does not touch float64), as torch's own ops do.
"""

from __future__ import annotations

import os
import warnings
from typing import NamedTuple

import torch

from rrn_app.cells.fast.backends import switch_on

GEMM_ENV = "RRN_AUTOCAST_GEMM"
LOW_DTYPES = (torch.bfloat16, torch.float16)
_warned: set[tuple[str, torch.dtype]] = set()


class Precision(NamedTuple):
    """One call's dtypes: `state` for the states, the elementwise pass and batch norm (the weights' dtype), `gemm`
    for the per-step GEMMs and the weight gradient (`state` itself outside autocast)."""

    state: torch.dtype
    gemm: torch.dtype

    @property
    def mixed(self) -> bool:
        return self.gemm != self.state


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast casts to on this device type, or None when autocast is off there."""
    if not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def native(device_type: str, dtype: torch.dtype) -> bool:
    """Whether GEMMs in `dtype` are native (faster than float32) on this device type."""
    if device_type == "cuda":
        return dtype == torch.float16 or torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        if dtype == torch.bfloat16:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    return True  # another accelerator under autocast: its half-precision GEMMs


def gemm_dtype(device_type: str, low: torch.dtype) -> torch.dtype:
    """The per-step GEMMs' dtype under autocast to `low` (module docstring; RRN_AUTOCAST_GEMM)."""
    if os.environ.get(GEMM_ENV, ""):
        return low if switch_on(GEMM_ENV, False) else torch.float32
    if native(device_type, low):
        return low
    if (device_type, low) not in _warned:
        _warned.add((device_type, low))
        name = str(low).removeprefix("torch.")
        warnings.warn(f"rrn: this {device_type.upper()} has no native {name} GEMM, so under autocast the fast path "
                      f"of res_rnn/gres_rnn multiplies in float32 (the input projection still in {name}); "
                      f"{GEMM_ENV}=1 forces {name} GEMMs, {GEMM_ENV}=0 silences this", RuntimeWarning, stacklevel=4)
    return torch.float32


def call_precision(x: torch.Tensor, weight: torch.Tensor) -> Precision:
    """The dtypes of a layer call with input x and a (float32 or float64) recurrent weight."""
    low = autocast_dtype(x.device.type)
    if low is None or weight.dtype != torch.float32 or low not in LOW_DTYPES:
        return Precision(weight.dtype, weight.dtype)
    return Precision(torch.float32, gemm_dtype(x.device.type, low))


def supported_input(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the fast path takes this input: float32/float64 like the weights, or under autocast any floating
    input of a float32 layer (autocast's input projection turns it into `low` anyway)."""
    if weight.dtype not in (torch.float32, torch.float64):
        return False
    if autocast_dtype(x.device.type) is not None and weight.dtype == torch.float32:
        return x.is_floating_point()
    return x.dtype in (torch.float32, torch.float64)
