"""Peak memory of one call: torch.cuda's peak on CUDA; on CPU a fresh process per model (`python -m rrn_app.bench
--probe-memory SPEC`) whose peak resident memory over its resident memory before the call is read from /proc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from rrn_app.bench.models import CALLS, Model, backend_context, build


def cuda_peak(model: Model, x: torch.Tensor, mode: str) -> int:
    call = CALLS[mode]
    model.module.train(mode == "train")
    for parameter in model.module.parameters():
        parameter.grad = None
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with backend_context(model):
        call(model.module, x)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def probe_memory(spec: dict) -> dict:
    """In a fresh process: peak resident memory of one call per mode over what was resident before it (bytes)."""
    torch.set_num_threads(spec["threads"])
    model = Model(spec["label"], spec["kind"], spec["options"], spec["backend"],
                  precision=spec.get("precision", "32-true"))
    dtype = getattr(torch, spec["dtype"])
    model.module = build(model, spec["input"], spec["hidden"], "cpu", dtype, spec["seed"])
    x = torch.randn(spec["batch"], spec["length"], spec["input"], dtype=dtype)
    result = {}
    for mode in spec["modes"]:
        model.module.train(mode == "train")
        with backend_context(model):
            CALLS[mode](model.module, x)  # warm-up: lazy initialisations, the C++ extension
            for parameter in model.module.parameters():
                parameter.grad = None
            before = _status_kib("VmRSS")
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident size
            CALLS[mode](model.module, x)
            result[mode] = (_status_kib("VmHWM") - before) * 1024
    return result


def cpu_peaks(models: list[Model], spec: dict) -> dict[str, dict]:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0",
           "OMP_NUM_THREADS": str(spec["threads"])}
    peaks = {}
    for model in models:
        own = {**spec, "label": model.label, "kind": model.kind, "options": model.options, "backend": model.backend,
               "precision": model.precision}
        done = subprocess.run([sys.executable, "-m", "rrn_app.bench", "--probe-memory", json.dumps(own)],
                              capture_output=True, text=True, env=env, timeout=900)
        try:
            peaks[model.label] = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            print(f"rrn-bench: the memory probe of {model.label} failed: {done.stderr.strip()[-300:]}",
                  file=sys.stderr)
            peaks[model.label] = {}
    return peaks
