"""How long one optimizer step takes on CPU, per torch.optim implementation (for-loop, foreach, fused).

    OMP_NUM_THREADS=1 python tools/optimizer_step_timing.py [rounds]

The parameters are those of rrn's default SST model with res_rnn (a 16 504 x 50 embedding, a 1 x 150 res_rnn
encoder, a 5-class classifier: about 0.9 M parameters in 8 tensors) and of the default char_lm model (2 x 256
LSTM: 0.8 M parameters in 12 tensors), with fresh random gradients. Each (optimizer, implementation) is timed
over 30 steps after 5 warm-up steps, the implementations interleaved, and the median of `rounds` rounds is
printed in milliseconds per step, one torch thread. rrn's tasks use an implementation by default only where it
was measured faster here (conf/optimizer/*.yaml).
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

SHAPES = {
    "sst res_rnn": [(16504, 50), (150, 50), (150, 150), (150,), (150,), (150,), (5, 150), (5,)],
    "char_lm lstm": [(65, 64), (1024, 64), (1024, 256), (1024,), (1024,), (1024, 256), (1024, 256), (1024,),
                     (1024,), (65, 256), (65,), (64,)],
}
OPTIMIZERS = {"adagrad": (torch.optim.Adagrad, {"lr": 0.05}), "adam": (torch.optim.Adam, {"lr": 1e-3}),
              "adamw": (torch.optim.AdamW, {"lr": 1e-3}), "rmsprop": (torch.optim.RMSprop, {"lr": 1e-3}),
              "sgd": (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9})}
IMPLEMENTATIONS = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def step_ms(cls, options: dict, shapes, steps: int = 30, warmup: int = 5) -> float | None:
    torch.manual_seed(0)
    parameters = [torch.nn.Parameter(torch.randn(shape)) for shape in shapes]
    try:
        optimizer = cls(parameters, **options)
    except (RuntimeError, ValueError, TypeError):
        return None  # this implementation does not exist for the optimizer on CPU
    for parameter in parameters:
        parameter.grad = torch.randn_like(parameter)
    try:
        for _ in range(warmup):
            optimizer.step()
    except RuntimeError:
        return None
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    torch.set_num_threads(1)
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    print(f"torch {torch.__version__}, 1 thread, median of {rounds} rounds, ms per step")
    for model, shapes in SHAPES.items():
        print(f"\n{model} | " + " | ".join(IMPLEMENTATIONS))
        for name, (cls, options) in OPTIMIZERS.items():
            times = {implementation: [] for implementation in IMPLEMENTATIONS}
            for _ in range(rounds):
                for implementation, flags in IMPLEMENTATIONS.items():
                    times[implementation].append(step_ms(cls, {**options, **flags}, shapes))
            cells = ["n/a" if None in values else f"{statistics.median(values):.3f}" for values in times.values()]
            print(f"{name} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
