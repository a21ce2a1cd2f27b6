"""The "triton" backend: res_rnn's and gres_rnn's recurrence as fused Triton kernels (CUDA; any device under
Triton's interpreter, TRITON_INTERPRET=1, which is how the tests run them on CPU tensors).

Same algorithm and tensors as loop.py (shapes there and in spec.py); what differs is what one kernel does:

- `persistent` (hidden sizes that fit, `fits_on_chip`): ONE launch for the whole sequence, one program per tile
  of BLOCK_B sequences looping over time. The recurrent weights [U; (U_g;) (W_im)] are loaded into the program's
  registers once, before the loop, and the state stays there between steps (as FlashRNN keeps its weights on
  chip); each step is the products s U^T (s U_g^T, s W_im^T) as tl.dot and the elementwise part
  (activation, gate, shortcut, f, padding) fused behind them, writing s_{t+1} (and a_t, g_t for the backward
  pass). The backward pass is the same shape: one launch, carry dL/ds_t in registers, dL/dP_t written per step.
- `stepwise` (larger hidden sizes): one launch per step over tiles of (sequences x hidden units), each tile's
  recurrent product a loop over BLOCK_K-wide chunks of the state, the elementwise part fused behind it (the
  backward launch recomputes dL/dP_t chunk by chunk in front of its product dL/dP_t W). One launch a step
  replaces the ATen loop's several.

Around the kernels, as in loop.py: xp = W x_t + b is one GEMM before the loop (layer.py), and dL/dW =
dL/dP^T [s_0 .. s_{T-1}] one GEMM after the backward loop.

Covered: float32 states with a float32 weight, or under autocast (precision.py) a float16/bfloat16 one — each
product then takes the state rounded to the weight's dtype and accumulates in float32, the rest of the step in
float32; both activations, both output activations, both projections, gated or not, padding (mask). Not
covered, so `supports` says no and the ATen loop runs instead: recurrent batch norm (its statistics are over
the whole batch, across the programs' tiles) and float64. float32 products are IEEE float32 unless torch allows
TF32 for CUDA matmuls (torch.backends.cuda.matmul.allow_tf32), as torch's own mm.
The tile sizes and the on-chip limit are first guesses, not tuned: no GPU was lent to measure them on.

The kernels call Triton's builtins only, none of triton.language's own @triton.jit helpers (tl.sigmoid, tl.zeros):
those are decorated when triton is first imported, so with them the interpreter would run these kernels only if
TRITON_INTERPRET was set before that; without them, setting it while this module is imported is enough.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from rrn_app.cells.fast.loop import Backward, Forward
from rrn_app.cells.fast.spec import RecurrenceSpec

BLOCK_B = 16  # sequences per program (tl.dot needs >= 16)
BLOCK_N = 64  # stepwise: hidden units per program
BLOCK_K = 32  # stepwise: the state's chunk per product
ON_CHIP_LIMIT = 16384  # persistent when its weight matrices (1-3 of them, HP x HP) hold at most this many floats
WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # the recurrent weight's (precision.py: autocast)
INDEX_LIMIT = 2 ** 31 - 1  # the kernels index with int32: larger tensors run on the ATen loop


def matrices(spec: RecurrenceSpec) -> int:
    """How many H x H matrices multiply the state each step: U, (U_g), (W_im)."""
    return 1 + spec.gated + spec.linear


def padded(hidden_size: int) -> int:
    """HP: the hidden size as the persistent kernel's blocks hold it (a power of two, at least 16)."""
    return max(16, triton.next_power_of_2(hidden_size))


def fits_on_chip(spec: RecurrenceSpec, hidden_size: int) -> bool:
    """Whether the persistent kernel (weights in registers across the steps) runs, rather than the stepwise one."""
    return matrices(spec) * padded(hidden_size) ** 2 <= ON_CHIP_LIMIT


def supports(spec: RecurrenceSpec, xp: torch.Tensor, s0: torch.Tensor, weight: torch.Tensor,
             gamma: torch.Tensor | None) -> bool:
    """Whether these kernels compute this call (module docstring): CUDA tensors (any device's under the
    interpreter), float32 states, a float32 or half-precision weight, no batch norm, int32 indices; else the ATen
    loop does."""
    T, B, kH = xp.shape
    rows = weight.shape[0]  # R: dL/dP [T, B, R] is the widest of the loop's tensors
    return (gamma is None and not spec.batch_norm and (xp.is_cuda or INTERPRETED) and s0.dtype == torch.float32
            and xp.dtype in WEIGHT_DTYPES and weight.dtype in WEIGHT_DTYPES and (T + 1) * B * rows <= INDEX_LIMIT
            and not (INTERPRETED and weight.dtype == torch.bfloat16))  # the interpreter's bfloat16 tl.dot is wrong


def _precision(x: torch.Tensor) -> str:
    """tl.dot's input precision: TF32 only where torch's own CUDA matmuls may use it."""
    return "tf32" if x.is_cuda and torch.backends.cuda.matmul.allow_tf32 else "ieee"


# --- the elementwise part, shared by both kernels ------------------------------------------------------------------

@triton.jit
def _tanh(z):
    e = tl.exp(-2.0 * tl.abs(z))  # in (0, 1]: no overflow
    magnitude = (1.0 - e) / (1.0 + e)
    return tl.where(z < 0, -magnitude, magnitude)


@triton.jit
def _times(x, w, PRECISION: tl.constexpr):
    """x @ w accumulated in float32, x first rounded to w's dtype (a half-precision weight under autocast)."""
    return tl.dot(x.to(w.dtype), w, input_precision=PRECISION)


@triton.jit
def _sigmoid(z):
    return 1.0 / (1.0 + tl.exp(-z))  # tl.sigmoid's formula (why not tl.sigmoid: the module docstring)


@triton.jit
def _activate(z, RELU: tl.constexpr):
    if RELU:
        return tl.maximum(z, 0.0)
    else:
        return _tanh(z)


@triton.jit
def _activate_backward(grad, value, RELU: tl.constexpr):
    """dL/dz from dL/da and a = act(z) (relu: a > 0 exactly where z > 0)."""
    if RELU:
        return tl.where(value > 0, grad, 0.0)
    else:
        return grad * (1.0 - value * value)


@triton.jit
def _new_state(a, g, base, s, keep, GATED: tl.constexpr, OUT_TANH: tl.constexpr, HAS_MASK: tl.constexpr):
    """s_{t+1} = f(base + a (⊙ g)), held at s past a sequence's length (keep [BLOCK_B] False there)."""
    if GATED:
        fresh = base + a * g
    else:
        fresh = base + a
    if OUT_TANH:
        fresh = _tanh(fresh)
    if HAS_MASK:
        fresh = tl.where(keep[:, None], fresh, s)
    return fresh


@triton.jit
def _step_backward(total, keep, s1, a, g, RELU: tl.constexpr, GATED: tl.constexpr, OUT_TANH: tl.constexpr,
                   HAS_MASK: tl.constexpr):
    """(dL/dsum, dL/dz_a, dL/dz_g) of one step from total = dL/ds_{t+1}, s1 = s_{t+1}, a_t and g_t."""
    dfresh = total
    if HAS_MASK:
        dfresh = tl.where(keep[:, None], total, 0.0)
    dsum = dfresh
    if OUT_TANH:
        dsum = dfresh * (1.0 - s1 * s1)
    if GATED:
        da = _activate_backward(dsum * g, a, RELU)
        dg = dsum * a * g * (1.0 - g)
    else:
        da = _activate_backward(dsum, a, RELU)
        dg = dsum  # unused
    return dsum, da, dg


@triton.jit
def _keep(mask, t, B, rows, HAS_MASK: tl.constexpr):
    """[BLOCK_B]: True where the sequence runs at step t (always True without a mask)."""
    if HAS_MASK:
        return tl.load(mask + t * B + rows, mask=rows < B, other=0) != 0
    else:
        return rows >= 0


# --- persistent: one launch for the whole sequence, the weights in registers ----------------------------------------

@triton.jit
def _forward_persistent(xp, states, acts, gates, weight, mask, T, B, H, KH,
                        RELU: tl.constexpr, OUT_TANH: tl.constexpr, GATED: tl.constexpr, LINEAR: tl.constexpr,
                        HAS_MASK: tl.constexpr, SAVE: tl.constexpr, PRECISION: tl.constexpr,
                        BB: tl.constexpr, HP: tl.constexpr):
    rows = tl.program_id(0) * BB + tl.arange(0, BB)
    cols = tl.arange(0, HP)
    inner = tl.arange(0, HP)
    tile_ok = (rows < B)[:, None] & (cols < H)[None, :]
    weight_ok = (inner < H)[:, None] & (cols < H)[None, :]
    transposed = inner[:, None] + cols[None, :] * H  # [k, n] -> W[n, k]: s @ W_block^T
    u = tl.load(weight + transposed, mask=weight_ok, other=0.0)
    if GATED:
        u_g = tl.load(weight + H * H + transposed, mask=weight_ok, other=0.0)
    if LINEAR:
        w_im = tl.load(weight + KH * H + transposed, mask=weight_ok, other=0.0)
    at_state = rows[:, None] * H + cols[None, :]
    at_input = rows[:, None] * KH + cols[None, :]
    s = tl.load(states + at_state, mask=tile_ok, other=0.0)
    for t in range(T):
        x_t = xp + t * B * KH + at_input
        a = _activate(_times(s, u, PRECISION) + tl.load(x_t, mask=tile_ok, other=0.0), RELU)
        g = a  # unused unless gated
        if GATED:
            g = _sigmoid(_times(s, u_g, PRECISION) + tl.load(x_t + H, mask=tile_ok, other=0.0))
        base = s
        if LINEAR:
            base = _times(s, w_im, PRECISION)
        s = _new_state(a, g, base, s, _keep(mask, t, B, rows, HAS_MASK), GATED, OUT_TANH, HAS_MASK)
        tl.store(states + (t + 1) * B * H + at_state, s, mask=tile_ok)
        if SAVE:
            tl.store(acts + t * B * H + at_state, a, mask=tile_ok)
            if GATED:
                tl.store(gates + t * B * H + at_state, g, mask=tile_ok)


@triton.jit
def _backward_persistent(grad, states, acts, gates, weight, mask, dpre, ds0, T, B, H, KH, R,
                         RELU: tl.constexpr, OUT_TANH: tl.constexpr, GATED: tl.constexpr, LINEAR: tl.constexpr,
                         HAS_MASK: tl.constexpr, PRECISION: tl.constexpr, BB: tl.constexpr, HP: tl.constexpr):
    rows = tl.program_id(0) * BB + tl.arange(0, BB)
    cols = tl.arange(0, HP)
    inner = tl.arange(0, HP)
    tile_ok = (rows < B)[:, None] & (cols < H)[None, :]
    weight_ok = (inner < H)[:, None] & (cols < H)[None, :]
    straight = inner[:, None] * H + cols[None, :]  # [k, n] -> W[k, n]: dL/dP_block @ W_block
    u = tl.load(weight + straight, mask=weight_ok, other=0.0)
    if GATED:
        u_g = tl.load(weight + H * H + straight, mask=weight_ok, other=0.0)
    if LINEAR:
        w_im = tl.load(weight + KH * H + straight, mask=weight_ok, other=0.0)
    at_state = rows[:, None] * H + cols[None, :]
    at_pre = rows[:, None] * R + cols[None, :]
    carry = tl.full((BB, HP), 0.0, tl.float32)  # dL/ds_{t+1} through step t+1
    for i in range(T):
        t = T - 1 - i
        total = tl.load(grad + t * B * H + at_state, mask=tile_ok, other=0.0) + carry
        keep = _keep(mask, t, B, rows, HAS_MASK)
        s1 = tl.load(states + (t + 1) * B * H + at_state, mask=tile_ok, other=0.0)
        a = tl.load(acts + t * B * H + at_state, mask=tile_ok, other=0.0)
        g = a  # unused unless gated
        if GATED:
            g = tl.load(gates + t * B * H + at_state, mask=tile_ok, other=0.0)
        dsum, da, dg = _step_backward(total, keep, s1, a, g, RELU, GATED, OUT_TANH, HAS_MASK)
        here = dpre + t * B * R + at_pre
        tl.store(here, da, mask=tile_ok)
        carry = _times(da, u, PRECISION)
        if GATED:
            tl.store(here + H, dg, mask=tile_ok)
            carry += _times(dg, u_g, PRECISION)
        if LINEAR:
            tl.store(here + KH, dsum, mask=tile_ok)
            carry += _times(dsum, w_im, PRECISION)
        else:
            carry += dsum
        if HAS_MASK:
            carry += tl.where(keep[:, None], 0.0, total)  # an ended sequence's state passed straight through
    tl.store(ds0 + at_state, carry, mask=tile_ok)


# --- stepwise: one launch per step, tiles of (sequences x hidden units) ---------------------------------------------

@triton.jit
def _forward_step(xp, states, acts, gates, weight, mask, t, B, H, KH,
                  RELU: tl.constexpr, OUT_TANH: tl.constexpr, GATED: tl.constexpr, LINEAR: tl.constexpr,
                  HAS_MASK: tl.constexpr, SAVE: tl.constexpr, PRECISION: tl.constexpr,
                  BB: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    rows = tl.program_id(0) * BB + tl.arange(0, BB)
    cols = tl.program_id(1) * BN + tl.arange(0, BN)
    row_ok, col_ok = rows < B, cols < H
    tile_ok = row_ok[:, None] & col_ok[None, :]
    previous = states + t * B * H
    acc = tl.full((BB, BN), 0.0, tl.float32)
    acc_g = tl.full((BB, BN), 0.0, tl.float32)
    acc_im = tl.full((BB, BN), 0.0, tl.float32)
    for k0 in range(0, H, BK):
        inner = k0 + tl.arange(0, BK)
        s_chunk = tl.load(previous + rows[:, None] * H + inner[None, :],
                          mask=row_ok[:, None] & (inner < H)[None, :], other=0.0)
        transposed = inner[:, None] + cols[None, :] * H
        weight_ok = (inner < H)[:, None] & col_ok[None, :]
        acc += _times(s_chunk, tl.load(weight + transposed, mask=weight_ok, other=0.0), PRECISION)
        if GATED:
            acc_g += _times(s_chunk, tl.load(weight + H * H + transposed, mask=weight_ok, other=0.0),
                            PRECISION)
        if LINEAR:
            acc_im += _times(s_chunk, tl.load(weight + KH * H + transposed, mask=weight_ok, other=0.0),
                             PRECISION)
    at_state = rows[:, None] * H + cols[None, :]
    x_t = xp + t * B * KH + rows[:, None] * KH + cols[None, :]
    s = tl.load(previous + at_state, mask=tile_ok, other=0.0)
    a = _activate(acc + tl.load(x_t, mask=tile_ok, other=0.0), RELU)
    g = a  # unused unless gated
    if GATED:
        g = _sigmoid(acc_g + tl.load(x_t + H, mask=tile_ok, other=0.0))
    base = s
    if LINEAR:
        base = acc_im
    fresh = _new_state(a, g, base, s, _keep(mask, t, B, rows, HAS_MASK), GATED, OUT_TANH, HAS_MASK)
    tl.store(states + (t + 1) * B * H + at_state, fresh, mask=tile_ok)
    if SAVE:
        tl.store(acts + t * B * H + at_state, a, mask=tile_ok)
        if GATED:
            tl.store(gates + t * B * H + at_state, g, mask=tile_ok)


@triton.jit
def _backward_step(grad, states, acts, gates, weight, mask, carry_in, carry_out, dpre, t, B, H, KH, R,
                   RELU: tl.constexpr, OUT_TANH: tl.constexpr, GATED: tl.constexpr, LINEAR: tl.constexpr,
                   HAS_MASK: tl.constexpr, PRECISION: tl.constexpr,
                   BB: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """carry_out[:, tile] = dL/dP_t W[:, tile] (+ the shortcut, + ended sequences' pass-through); dL/dP_t is
    recomputed chunk by chunk from carry_in = dL/ds_{t+1} through step t+1, and stored by the first column of tiles."""
    rows = tl.program_id(0) * BB + tl.arange(0, BB)
    cols = tl.program_id(1) * BN + tl.arange(0, BN)
    row_ok, col_ok = rows < B, cols < H
    keep = _keep(mask, t, B, rows, HAS_MASK)
    writes = (rows * 0 + tl.program_id(1) == 0)[:, None]  # [BB, 1]: only the first column of tiles stores dL/dP
    acc = tl.full((BB, BN), 0.0, tl.float32)
    for k0 in range(0, H, BK):
        inner = k0 + tl.arange(0, BK)
        chunk_ok = row_ok[:, None] & (inner < H)[None, :]
        at_chunk = rows[:, None] * H + inner[None, :]
        total = (tl.load(grad + t * B * H + at_chunk, mask=chunk_ok, other=0.0)
                 + tl.load(carry_in + at_chunk, mask=chunk_ok, other=0.0))
        s1 = tl.load(states + (t + 1) * B * H + at_chunk, mask=chunk_ok, other=0.0)
        a = tl.load(acts + t * B * H + at_chunk, mask=chunk_ok, other=0.0)
        g = a  # unused unless gated
        if GATED:
            g = tl.load(gates + t * B * H + at_chunk, mask=chunk_ok, other=0.0)
        dsum, da, dg = _step_backward(total, keep, s1, a, g, RELU, GATED, OUT_TANH, HAS_MASK)
        here = dpre + t * B * R + rows[:, None] * R + inner[None, :]
        straight = inner[:, None] * H + cols[None, :]
        weight_ok = (inner < H)[:, None] & col_ok[None, :]
        tl.store(here, da, mask=chunk_ok & writes)
        acc += _times(da, tl.load(weight + straight, mask=weight_ok, other=0.0), PRECISION)
        if GATED:
            tl.store(here + H, dg, mask=chunk_ok & writes)
            acc += _times(dg, tl.load(weight + H * H + straight, mask=weight_ok, other=0.0),
                          PRECISION)
        if LINEAR:
            tl.store(here + KH, dsum, mask=chunk_ok & writes)
            acc += _times(dsum, tl.load(weight + KH * H + straight, mask=weight_ok, other=0.0),
                          PRECISION)
    tile_ok = row_ok[:, None] & col_ok[None, :]
    at_state = rows[:, None] * H + cols[None, :]
    total = (tl.load(grad + t * B * H + at_state, mask=tile_ok, other=0.0)
             + tl.load(carry_in + at_state, mask=tile_ok, other=0.0))
    if not LINEAR:  # the identity shortcut: + dL/dsum of these columns
        s1 = tl.load(states + (t + 1) * B * H + at_state, mask=tile_ok, other=0.0)
        dsum, da, dg = _step_backward(total, keep, s1, s1, s1, RELU, False, OUT_TANH, HAS_MASK)
        acc += dsum
    if HAS_MASK:
        acc += tl.where(keep[:, None], 0.0, total)
    tl.store(carry_out + at_state, acc, mask=tile_ok)


INTERPRETED = isinstance(_forward_persistent, InterpretedFunction)  # TRITON_INTERPRET=1 when this module was imported


# --- the backend's kernels, called as loop.forward / loop.backward are (function.py) ------------------------------

def _flags(spec: RecurrenceSpec, mask, x: torch.Tensor) -> dict:
    """Every launch's constants, and its one compile option: fused multiply-adds, said outright (Triton 3.9 warns
    where it is left to its default)."""
    return dict(RELU=spec.activation == "relu", OUT_TANH=spec.output_activation == "tanh", GATED=spec.gated,
                LINEAR=spec.linear, HAS_MASK=mask is not None, PRECISION=_precision(x), enable_fp_fusion=True)


def _mask_bytes(mask: torch.Tensor | None, like: torch.Tensor):
    """mask [T, B, 1] bool -> [T, B] uint8 (what the kernels load), or a placeholder pointer when there is none."""
    return like if mask is None else mask.reshape(mask.shape[0], mask.shape[1]).to(torch.uint8).contiguous()


def forward(spec: RecurrenceSpec, xp: torch.Tensor, s0: torch.Tensor, weight: torch.Tensor,
            mask: torch.Tensor | None, need_grad: bool, gamma: torch.Tensor | None = None,
            given_mean: torch.Tensor | None = None, given_std: torch.Tensor | None = None) -> Forward:
    """loop.forward's result, batch norm excepted (`supports`). Without need_grad nothing but the states is kept:
    acts and gates are None (inference reads only the states)."""
    if gamma is not None:
        raise ValueError("the triton kernels have no batch norm (supports() sends such a call to the ATen loop)")
    T, B, kH = xp.shape
    H = s0.shape[1]
    states = s0.new_empty(T + 1, B, H)  # in the states' dtype (float32), whatever xp's
    states[0] = s0
    acts = s0.new_empty(T, B, H) if need_grad else None
    gates = s0.new_empty(T, B, H) if need_grad and spec.gated else None
    pointers = (xp, states, states if acts is None else acts, states if gates is None else gates, weight,
                _mask_bytes(mask, xp))
    flags = _flags(spec, mask, xp)
    tiles = triton.cdiv(B, BLOCK_B)
    if T == 0:
        pass
    elif fits_on_chip(spec, H):
        _forward_persistent[(tiles,)](*pointers, T, B, H, kH, SAVE=need_grad, BB=BLOCK_B, HP=padded(H),
                                      num_warps=8, **flags)
    else:
        grid = (tiles, triton.cdiv(H, BLOCK_N))
        for t in range(T):
            _forward_step[grid](*pointers, t, B, H, kH, SAVE=need_grad, BB=BLOCK_B, BN=BLOCK_N, BK=BLOCK_K, **flags)
    return Forward(states, acts, gates, None, None, None, None)


def backward(spec: RecurrenceSpec, grad: torch.Tensor, states: torch.Tensor, acts: torch.Tensor,
             gates: torch.Tensor | None, weight: torch.Tensor, mask: torch.Tensor | None,
             gamma: torch.Tensor | None = None, zhat: torch.Tensor | None = None, inv: torch.Tensor | None = None,
             norm_training: bool = False) -> Backward:
    """loop.backward's result: dL/dxp [T, B, kH], dL/ds_0 [B, H], dL/dW [R, H] (one GEMM after the loop), None."""
    if gamma is not None:
        raise ValueError("the triton kernels have no batch norm (supports() sends such a call to the ATen loop)")
    T, B, H = grad.shape
    R = weight.shape[0]
    kH = R - H if spec.linear else R
    dpre = grad.new_empty(T, B, R)  # dL/dP
    pointers = (grad, states, acts, acts if gates is None else gates, weight, _mask_bytes(mask, grad))
    flags = _flags(spec, mask, grad)
    tiles = triton.cdiv(B, BLOCK_B)
    if T == 0:
        ds0 = grad.new_zeros(B, H)
    elif fits_on_chip(spec, H):
        ds0 = grad.new_empty(B, H)
        _backward_persistent[(tiles,)](*pointers, dpre, ds0, T, B, H, kH, R, BB=BLOCK_B, HP=padded(H), num_warps=8,
                                       **flags)
    else:
        carry, spare = grad.new_zeros(B, H), grad.new_empty(B, H)  # dL/ds_{t+1} through step t+1, and the next
        grid = (tiles, triton.cdiv(H, BLOCK_N))
        for t in range(T - 1, -1, -1):
            _backward_step[grid](*pointers, carry, spare, dpre, t, B, H, kH, R, BB=BLOCK_B, BN=BLOCK_N, BK=BLOCK_K,
                                 **flags)
            carry, spare = spare, carry
        ds0 = carry
    gemm = weight.dtype  # dL/dW in the GEMMs' dtype, like the weight it is the gradient of (loop.py likewise)
    dweight = dpre.view(T * B, R).t().to(gemm) @ states[:T].reshape(T * B, H).to(gemm)
    return Backward(dpre[:, :, :kH], ds0, dweight, None)
