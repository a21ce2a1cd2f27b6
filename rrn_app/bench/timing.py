"""How `rrn-bench` times: calls round-robin over a configuration's models, their spread, and the CPU that other
processes used meanwhile (`LoadMeter`)."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import torch

from rrn_app.bench.models import CALLS, Model, backend_context

SPREAD_WARNING = 0.10  # an IQR/median above this: a warning that the numbers are unreliable


def cpu_busy() -> tuple[float, float] | None:
    """(busy seconds of all CPUs, wall seconds) from /proc/stat, or None where there is none."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks[:8]) - idle) / hz, time.monotonic()


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


class LoadMeter:
    """CPU used by other processes (in cores) while the benchmark runs: all CPUs' busy time minus our own."""

    def __init__(self):
        self.start, self.own = cpu_busy(), own_cpu()

    def others(self) -> float | None:
        end = cpu_busy()
        if self.start is None or end is None or end[1] - self.start[1] < 0.05:
            return None
        return max(0.0, ((end[0] - self.start[0]) - (own_cpu() - self.own)) / (end[1] - self.start[1]))


def time_call(call, module, x, cuda: bool) -> float:
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call(module, x)
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1000
    begin = time.perf_counter()
    call(module, x)
    return time.perf_counter() - begin


def summary(times: list[float], tokens: int) -> dict:
    ordered = sorted(times)
    median = statistics.median(ordered)
    if len(ordered) >= 4:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1, q3 = ordered[0], ordered[-1]
    return dict(tokens_per_second=tokens / median, median_s=median, iqr_rel=(q3 - q1) / median,
                min_s=ordered[0], max_s=ordered[-1],
                tokens_per_second_min=tokens / ordered[-1], tokens_per_second_max=tokens / ordered[0],
                repeats=len(ordered))


def time_models(models: list[Model], x: torch.Tensor, mode: str, warmup: int, repeats: int) -> dict[str, dict]:
    call, cuda = CALLS[mode], x.is_cuda
    for model in models:
        model.module.train(mode == "train")
        with backend_context(model):
            for _ in range(warmup):
                call(model.module, x)
    if cuda:
        torch.cuda.synchronize()
    times = {model.label: [] for model in models}
    for repeat in range(repeats):
        shift = repeat % len(models)
        for model in models[shift:] + models[:shift]:  # round-robin: load changes hit every model alike
            with backend_context(model):
                times[model.label].append(time_call(call, model.module, x, cuda))
    tokens = x.shape[0] * x.shape[1]
    return {label: summary(values, tokens) for label, values in times.items()}
