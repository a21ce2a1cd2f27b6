"""The limit a row of `rrn-bench` is held to: the machine's GEMM rate at the recurrence's shape, and each model's
matrix-product FLOPs per token.

The rate: FLOP/s of torch.mm of a [batch, hidden] by a [hidden, hidden] matrix — one step's recurrent product
U s_{t-1} of a one-layer cell — on the run's device, dtype, thread count and precision (under the same
autocast as the models), measured in the same run: before, between and after each group's timings (train,
infer), each sample the median of `ROUNDS` rounds of back-to-back products, the row's rate the median of the
samples (so a change in the machine's load during the group moves the limit with the models). The reference is
one shape for every row: a model whose products are larger (nn.LSTM's gates are [H, 4H]; every cell's hoisted
input GEMM has B x T rows) can run them faster than this and show a fraction above 1.

The FLOP convention, for every row alike (cells, nn.LSTM/nn.GRU, peers): only matrix products count, 2 FLOPs
per multiply-add, and every weight matrix (a parameter of two or more dimensions) is applied once per token,
so a token's forward pass costs 2 x (the elements of the model's weight matrices); training (forward and
backward: the gradients of the input and of the weight, two more products per product) costs 3 x that.
Elementwise work, vectors (biases, IndRNN's u, batch norm) and the softmax-free rest are not counted. Per token:

    res_rnn      6 (I H + H^2)  training,  2 (I H + H^2)  inference       (W [H, I], U [H, H])
    gres_rnn    12 (I H + H^2),            4 (I H + H^2)                  ([W; W_g], [U; U_g])
    nn.LSTM     24 (I H + H^2),            8 (I H + H^2)                  (four gates)
    nn.GRU      18 (I H + H^2),            6 (I H + H^2)                  (three gates)
    sru.SRU      6 k I H, k = 3 (I = H) or 4,   2 k I H                   (no recurrent product)
    minGRU      12 I H,                    4 I H                          (no recurrent product)

(with `projection=linear` res_rnn's W_im adds H^2 to the bracket; more layers and directions add theirs). The
achieved rate of a row is its FLOPs per token x its tokens/s, reported as a fraction of the GEMM rate: 1.0 is a
model doing its products as fast as one back-to-back recurrent-shaped product runs. A cell with little matrix
work (minGRU) shows a small fraction even when fast: the fraction says how close to the GEMM limit a model is,
not how fast it is.
"""

from __future__ import annotations

import contextlib
import statistics
import time

import torch
from torch import nn

ROUNDS = 5
ROUND_SECONDS = 0.05  # each round: back-to-back products for about this long


def flops_per_token(module: nn.Module) -> int:
    """Forward matrix-product FLOPs per token of `module`: 2 x the elements of its parameters of 2+ dimensions."""
    return 2 * sum(p.numel() for p in module.parameters() if p.dim() >= 2)


def mode_flops(module: nn.Module, mode: str) -> int:
    """FLOPs per token of one call in `mode`: the forward's for "infer", 3 x it for "train"."""
    return flops_per_token(module) * (3 if mode == "train" else 1)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_rate(batch: int, hidden: int, device, dtype: torch.dtype, autocast: torch.dtype | None = None) -> float:
    """FLOP/s of [batch, hidden] @ [hidden, hidden] here and now (see the module docstring)."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(batch, hidden, generator=generator, dtype=dtype).to(device)
    b = torch.randn(hidden, hidden, generator=generator, dtype=dtype).to(device)
    context = (torch.autocast(device.type, dtype=autocast) if autocast is not None else contextlib.nullcontext())
    flops = 2 * batch * hidden * hidden
    with context, torch.no_grad():
        for _ in range(3):  # warm-up: the kernel chosen, caches filled
            torch.mm(a, b)
        _synchronize(device)
        begin, count = time.perf_counter(), 0
        while time.perf_counter() - begin < ROUND_SECONDS / 5:  # a fifth of a round: how many products a round is
            torch.mm(a, b)
            count += 1
        _synchronize(device)
        per_round = max(1, round(count * ROUND_SECONDS / (time.perf_counter() - begin)))
        rates = []
        for _ in range(ROUNDS):
            _synchronize(device)
            begin = time.perf_counter()
            for _ in range(per_round):
                torch.mm(a, b)
            _synchronize(device)
            rates.append(flops * per_round / (time.perf_counter() - begin))
    return statistics.median(rates)


def fraction(flops: int, tokens_per_second: float, rate: float) -> float:
    """The achieved FLOP rate of a row as a fraction of the GEMM rate."""
    return flops * tokens_per_second / rate
