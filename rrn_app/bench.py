"""`rrn-bench`: training and inference speed of recurrent cells, always next to torch.nn.LSTM and torch.nn.GRU.

    rrn-bench cells=res_rnn,gres_rnn batch=64 length=100 input=128 hidden=128,512 threads=1,2 out=bench/
    rrn-bench cells=res_lstm cell.num_layers=12 res_lstm.keep_prob=1.0,0.75 hidden=128 repeats=20
    rrn-bench cells=res_rnn scaling=length batch=16 hidden=256         # tokens/s for length 100 .. 2000
    rrn-bench cells=res_rnn scaling=hidden                               # tokens/s for hidden 64 .. 1024
    rrn-bench mode=data                  # each task's time to first batch, cold and warm (rrn-bench mode=data --help)

Every `key=value`; a comma list makes a grid. For each configuration (threads x batch x length x input x hidden
x cell options) every model — the cells asked for, `nn.LSTM` and `nn.GRU` — is built with the same seed and
timed on the same random batch [batch, length, input] of full-length sequences:

- training: forward, `outputs.sum().backward()`, the gradients cleared (the optimizer's step is left out);
- inference: forward under `torch.no_grad()` in eval mode;

after `warmup` untimed calls, `repeats` timed calls each, round-robin over the models (so a change in the
machine's load hits all of them alike). Reported: tokens/s (batch x length / time) of the median call, the
spread (interquartile range relative to the median, and min/max), the ratio to nn.LSTM in the same
configuration, and peak memory of one call over what was allocated before it. On CUDA (`device=cuda`) the
times come from CUDA events and the memory from torch.cuda.max_memory_allocated; nn.LSTM/nn.GRU run on cuDNN.
On CPU the memory comes from a fresh subprocess per model and configuration: its peak resident memory (VmHWM,
reset before the call) over its resident memory before the call, with glibc's malloc told to map every block
of 64 KiB or more directly, so freed tensors leave the resident set at once.

Options:
  cells=a,b              registered cells (rrn-cells lists them); nn.LSTM and nn.GRU are always added
  batch= length= input= hidden=   sizes (comma lists: a grid); defaults 64, 100, 128, 128
  threads=1,2            torch intra-op threads (a grid); default: torch's current setting
  cell.<option>=v1,v2    an option for every cell that takes it (num_layers, bidirectional, dropout reach
                         nn.LSTM/nn.GRU too); <cell>.<option>=... for that cell only; lists are variants
  backend=cpp,python,step   the fast-path backend of res_rnn/gres_rnn (fast.py) to time; default: the default
  mode=train,infer       what to time (default both);  warmup=3  repeats=10
  mode=data              the data instead: time to first batch and loading per batch of every task (its own
                         options: rrn-bench mode=data --help; rrn_app/bench_data.py)
  memory=true|false      measure peak memory (default true);  device=cpu|cuda;  dtype=float32|float64
  scaling=length|hidden  set length to 100,250,500,1000,2000 or hidden to 64,128,256,512,1024 and add a table
                         of tokens/s against it
  out=DIR                write DIR/bench.json and DIR/bench.md;  seed=0

A warning is printed when the numbers are unreliable: a spread (IQR/median) above 10%, or other processes using
more CPU than the cores the benchmark leaves free (measured from /proc/stat during each configuration; where
that is unavailable, the 1-minute load average above the free cores).
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from rrn_app.validation import UserError

BASELINES = {"nn.LSTM": nn.LSTM, "nn.GRU": nn.GRU}
BASELINE_OPTIONS = ("num_layers", "bidirectional", "dropout")  # what cell.<option> passes on to nn.LSTM/GRU
SCALING = {"length": [100, 250, 500, 1000, 2000], "hidden": [64, 128, 256, 512, 1024]}
GRID_KEYS = ("batch", "length", "input", "hidden")
DEFAULTS = dict(cells="", batch="64", length="100", input="128", hidden="128", threads="", mode="train,infer",
                warmup="3", repeats="10", memory="true", device="cpu", dtype="float32", scaling="", out="",
                seed="0", backend="")
SPREAD_WARNING = 0.10


class BenchError(UserError):
    pass


def parse_value(text: str):
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text.startswith("["):
        import yaml

        return yaml.safe_load(text)
    return text.strip()


def parse_list(text: str) -> list:
    if text.strip().startswith("["):
        return [parse_value(text)]
    return [parse_value(part) for part in text.split(",") if part.strip()]


@dataclass
class Settings:
    cells: list[str]
    batch: list[int]
    length: list[int]
    input: list[int]
    hidden: list[int]
    threads: list[int]
    modes: list[str]
    warmup: int
    repeats: int
    memory: bool
    device: str
    dtype: torch.dtype
    scaling: str
    out: Path | None
    seed: int
    backends: list[str | None]
    common_options: dict[str, list] = field(default_factory=dict)  # cell.<option>
    cell_options: dict[str, dict[str, list]] = field(default_factory=dict)  # <cell>.<option>
    argv: list[str] = field(default_factory=list)


def whole_numbers(key: str, text: str, least: int) -> list[int]:
    """The comma list `text` of whole numbers >= least, or an error naming the setting."""
    numbers = parse_list(text)
    if not numbers or any(isinstance(v, bool) or not isinstance(v, int) or v < least for v in numbers):
        raise BenchError(f"{key}={text!r}: must be whole numbers >= {least}, e.g. {key}={max(least, 1)}")
    return numbers


def parse_arguments(argv: list[str]) -> Settings:
    from rrn_app.cells import cell_info

    values = dict(DEFAULTS)
    common, per_cell, given = {}, {}, set()
    for argument in argv:
        if argument in ("-h", "--help", "help"):
            print(__doc__)
            raise SystemExit(0)
        key, sep, value = argument.partition("=")
        if not sep:
            raise BenchError(f"arguments are key=value, got {argument!r} (rrn-bench --help lists the keys)")
        if "." in key:
            owner, option = key.split(".", 1)
            (common if owner == "cell" else per_cell.setdefault(owner, {}))[option] = parse_list(value)
        elif key in values:
            values[key] = value
            given.add(key)
        else:
            raise BenchError(f"unknown setting {key!r}; known: {', '.join(sorted(values))}, cell.<option>, "
                             f"<cell>.<option>")
    cells = [name.strip() for name in values["cells"].split(",") if name.strip()]
    for name in cells:
        cell_info(name)  # an unknown cell: UnknownCellError listing the known ones
    for owner in per_cell:
        if owner not in cells:
            raise BenchError(f"options for {owner!r} but it is not in cells={','.join(cells)}")
    scaling = values["scaling"].strip()
    if scaling and scaling not in SCALING:
        raise BenchError(f"scaling={scaling!r}: must be one of {', '.join(SCALING)}")
    grid = {}
    for key in GRID_KEYS:
        grid[key] = whole_numbers(key, values[key], 1)
    if scaling and scaling not in given:
        grid[scaling] = SCALING[scaling]
    threads = whole_numbers("threads", values["threads"], 1) if values["threads"] else [torch.get_num_threads()]
    warmup, repeats, seed = (whole_numbers(key, values[key], least)[0] for key, least in
                             (("warmup", 0), ("repeats", 1), ("seed", 0)))
    modes = [mode.strip() for mode in values["mode"].split(",") if mode.strip()]
    if not modes or set(modes) - {"train", "infer"}:
        raise BenchError(f"mode={values['mode']!r}: train, infer or train,infer (or data, on its own)")
    device = values["device"].strip()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError("device=cuda but torch sees no CUDA device")
    dtypes = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
              "bfloat16": torch.bfloat16}
    if values["dtype"] not in dtypes:
        raise BenchError(f"dtype={values['dtype']!r}: one of {', '.join(dtypes)}")
    backends = [b.strip() for b in values["backend"].split(",") if b.strip()] or [None]
    for name in backends:
        if name not in (None, "cpp", "python", "step"):
            raise BenchError(f"backend={name!r}: cpp, python or step")
    if "cpp" in backends:
        from rrn_app.cells import fast

        if not fast.backend_available("cpp"):
            raise BenchError("backend=cpp: the C++ extension cannot be built here (see the warning above)")
    return Settings(
        cells=cells, batch=grid["batch"], length=grid["length"], input=grid["input"], hidden=grid["hidden"],
        threads=threads, modes=modes, warmup=warmup, repeats=repeats,
        memory=bool(parse_value(values["memory"])), device=device,
        dtype=dtypes[values["dtype"]], scaling=scaling, out=Path(values["out"]) if values["out"] else None,
        seed=seed, backends=backends, common_options=common, cell_options=per_cell,
        argv=list(argv),
    )


# --- the models ------------------------------------------------------------------------------------------------


@dataclass
class Model:
    label: str  # the row's name: "nn.LSTM", "res_rnn", "res_lstm[keep_prob=0.75]"
    kind: str  # "nn.LSTM", "nn.GRU" or a registered cell's name
    options: dict
    backend: str | None  # fast.py backend forced for this model (None: the default)
    module: nn.Module | None = None


def variants(options: dict[str, list]) -> list[dict]:
    keys = list(options)
    return [dict(zip(keys, combination)) for combination in itertools.product(*(options[k] for k in keys))]


def has_fast_path(name: str) -> bool:
    """Whether the cell runs on the fast path of fast.py (so backend= variants apply): asked of a small instance."""
    from rrn_app.cells import get_cell

    try:
        module = get_cell(name)(input_size=2, hidden_size=2)
    except Exception:  # noqa: BLE001  (a plugin cell with other required arguments: no fast path to vary)
        return False
    return any(hasattr(m, "fast_backend") for m in module.modules())


def model_list(settings: Settings) -> list[list[Model]]:
    """Groups of models that share a configuration (one group per variant of the cell.<option> grid)."""
    from rrn_app.cells import cell_info

    groups = []
    grid = variants(settings.common_options)
    for common in grid:
        group = []
        # several groups (a cell.<option> list): every row names its group's values, the baselines' included
        group_tags = [f"{k}={v}" for k, v in common.items()] if len(grid) > 1 else []
        baseline_options = {k: v for k, v in common.items() if k in BASELINE_OPTIONS}
        for name in BASELINES:
            group.append(Model(name + (f"[{','.join(group_tags)}]" if group_tags else ""), name, baseline_options,
                               None))
        for name in settings.cells:
            accepted = set(cell_info(name).options())
            shared = {k: v for k, v in common.items() if k in accepted}
            for own in variants(settings.cell_options.get(name, {})):
                unknown = set(own) - accepted
                if unknown:
                    raise BenchError(f"{name} has no option {sorted(unknown)[0]!r}; its options: "
                                     f"{', '.join(sorted(accepted))}")
                for backend in (settings.backends if has_fast_path(name) else [None]):
                    tags = group_tags + [f"{k}={v}" for k, v in own.items()] + ([f"backend={backend}"] if backend
                                                                                         else [])
                    label = name + (f"[{','.join(tags)}]" if tags else "")
                    group.append(Model(label, name, {**shared, **own}, backend))
        unused = set(common) - {k for m in group for k in m.options}
        if unused:
            raise BenchError(f"no cell takes cell.{sorted(unused)[0]}")
        groups.append(group)
    return groups


def build(model: Model, input_size: int, hidden_size: int, device, dtype, seed: int) -> nn.Module:
    from rrn_app.cells import get_cell

    torch.manual_seed(seed)
    if model.kind in BASELINES:
        options = dict(model.options)
        if options.get("num_layers", 1) == 1:
            options.pop("dropout", None)
        module = BASELINES[model.kind](input_size, hidden_size, batch_first=True, **options)
    else:
        module = get_cell(model.kind)(input_size=input_size, hidden_size=hidden_size, **model.options)
    return module.to(device=device, dtype=dtype)


def backend_context(model: Model):
    from rrn_app.cells import fast

    return fast.use_backend(model.backend)


def path_of(model: Model, x: torch.Tensor) -> str:
    """What runs the model, read off its modules: for res_rnn/gres_rnn the fast-path backend (and "+oneDNN" when
    its per-step GEMM is oneDNN's); a Python step-wise layer "python/autograd"; otherwise PyTorch's fused kernels:
    cuDNN on CUDA, on CPU oneDNN's RNN for nn.LSTM in float32 and ATen's loop for the others."""
    from rrn_app.cells import fast
    from rrn_app.cells.recurrence import Recurrence

    modules = list(model.module.modules())
    fast_layers = [m for m in modules if hasattr(m, "fast_backend")]
    if fast_layers:
        with backend_context(model):
            which = fast_layers[0].fast_backend(x)
        if which == "cpp" and fast.step_gemm(fast_layers[0].weight_hh, which) == "oneDNN":
            which += "+oneDNN"
        return which
    if any(isinstance(m, Recurrence) for m in modules):
        return "python/autograd"
    if x.is_cuda:
        return "cuDNN" if torch.backends.cudnn.enabled else "aten"
    kernels = {type(m) for m in modules if isinstance(m, nn.RNNBase)}
    onednn = torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled and x.dtype == torch.float32
    return "oneDNN" if onednn and kernels == {nn.LSTM} else "aten"


def train_call(module: nn.Module, x: torch.Tensor) -> None:
    for parameter in module.parameters():
        parameter.grad = None
    outputs = module(x)[0]
    outputs.sum().backward()


def infer_call(module: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        module(x)


CALLS = {"train": train_call, "infer": infer_call}


# --- timing ------------------------------------------------------------------------------------------------------


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


# --- peak memory -------------------------------------------------------------------------------------------------


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
    model = Model(spec["label"], spec["kind"], spec["options"], spec["backend"])
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
        own = {**spec, "label": model.label, "kind": model.kind, "options": model.options, "backend": model.backend}
        done = subprocess.run([sys.executable, "-m", "rrn_app.bench", "--probe-memory", json.dumps(own)],
                              capture_output=True, text=True, env=env, timeout=900)
        try:
            peaks[model.label] = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            print(f"rrn-bench: the memory probe of {model.label} failed: {done.stderr.strip()[-300:]}",
                  file=sys.stderr)
            peaks[model.label] = {}
    return peaks


# --- the run -------------------------------------------------------------------------------------------------------


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = dict(cpu=cpu, cpu_count=os.cpu_count(), platform=platform.platform(), python=platform.python_version(),
                torch=torch.__version__)
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name()
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def run(settings: Settings, log=print) -> dict:
    from rrn_app.cells import fast

    groups = model_list(settings)
    device, cuda = torch.device(settings.device), settings.device.startswith("cuda")
    started = dict(time=time.strftime("%Y-%m-%d %H:%M:%S %Z"), loadavg=list(os.getloadavg()))
    if any(has_fast_path(m.kind) for group in groups for m in group):
        fast.backend()  # build the C++ extension before any timing
    rows, warnings_ = [], []
    configs = list(itertools.product(settings.threads, settings.batch, settings.length, settings.input,
                                     settings.hidden))
    memory_done: dict[tuple, dict] = {}
    floor = column_floor(settings, groups)
    for threads, batch, length, input_size, hidden in configs:
        torch.set_num_threads(threads)
        for group in groups:
            meter = LoadMeter()
            load_before = os.getloadavg()[0]
            for model in group:
                model.module = build(model, input_size, hidden, device, settings.dtype, settings.seed)
            generator = torch.Generator().manual_seed(settings.seed)
            x = torch.randn(batch, length, input_size, generator=generator, dtype=settings.dtype).to(device)
            results = {mode: time_models(group, x, mode, settings.warmup, settings.repeats)
                       for mode in settings.modes}
            others = meter.others()
            peaks = {}
            if settings.memory:
                if cuda:
                    peaks = {m.label: {mode: cuda_peak(m, x, mode) for mode in settings.modes} for m in group}
                else:
                    key = (batch, length, input_size, hidden, tuple(m.label for m in group),
                           json.dumps([m.options for m in group], sort_keys=True, default=str))
                    if key not in memory_done:  # threads barely change memory: measured once
                        spec = dict(threads=threads, batch=batch, length=length, input=input_size, hidden=hidden,
                                    dtype=str(settings.dtype).replace("torch.", ""), seed=settings.seed,
                                    modes=settings.modes)
                        memory_done[key] = cpu_peaks(group, spec)
                    peaks = memory_done[key]
            free_cores = max(0, (os.cpu_count() or 1) - (0 if cuda else threads))
            busy = others if others is not None else load_before
            config = dict(device=str(device), threads=threads, batch=batch, length=length, input=input_size,
                          hidden=hidden, others_cpu=None if others is None else round(others, 2),
                          loadavg=round(load_before, 2))
            if not cuda and busy > free_cores + 0.25:
                warnings_.append(f"threads={threads} B={batch} T={length} I={input_size} H={hidden}: other "
                                 f"processes used {busy:.2f} CPUs while {free_cores} were free: timings are "
                                 f"contended")
            group_rows = []
            for model in group:
                row = dict(config, cell=model.label, kind=model.kind, options=model.options,
                           path=path_of(model, x))
                for mode in settings.modes:
                    stats = results[mode][model.label]
                    base = results[mode][group[0].label]["tokens_per_second"]  # the group's nn.LSTM
                    row[mode] = dict(stats, ratio_to_lstm=stats["tokens_per_second"] / base,
                                     peak_bytes=peaks.get(model.label, {}).get(mode))
                    if stats["iqr_rel"] > SPREAD_WARNING:
                        warnings_.append(f"{model.label} {mode} threads={threads} B={batch} T={length} "
                                         f"I={input_size} H={hidden}: spread (IQR/median) {stats['iqr_rel']:.0%}: "
                                         f"the machine is busy or the run too short; repeat it")
                group_rows.append(row)
                model.module = None
            log(format_rows(group_rows, settings.modes, header=not rows, floor=floor)
                + f"\n{'':4}(other processes used {'?' if others is None else config['others_cpu']} CPUs, load average "
                f"{config['loadavg']})")
            rows += group_rows
    finished = dict(time=time.strftime("%Y-%m-%d %H:%M:%S %Z"), loadavg=list(os.getloadavg()))
    for warning in warnings_:
        log(f"WARNING: {warning}")
    return dict(command="rrn-bench " + " ".join(settings.argv), machine=machine(), started=started,
                finished=finished, fast_backend=fast.backend() if any(has_fast_path(c) for c in settings.cells)
                else None, settings=dict(warmup=settings.warmup, repeats=settings.repeats, dtype=str(settings.dtype),
                                         scaling=settings.scaling or None),
                rows=rows, warnings=warnings_)


# --- output ------------------------------------------------------------------------------------------------------

COLUMNS = ["threads", "B", "T", "I", "H", "cell", "path"]


def _mib(value) -> str:
    return "" if value is None else f"{value / 2**20:.1f}"


def row_cells(row: dict, modes: list[str]) -> list[str]:
    cells = [str(row["threads"]), str(row["batch"]), str(row["length"]), str(row["input"]), str(row["hidden"]),
             row["cell"], row["path"]]
    for mode in modes:
        stats = row[mode]
        cells += [f"{stats['tokens_per_second']:,.0f}", f"{stats['iqr_rel']:.0%}",
                  f"{stats['ratio_to_lstm']:.2f}x", _mib(stats.get("peak_bytes"))]
    return cells


def headers(modes: list[str]) -> list[str]:
    result = list(COLUMNS)
    for mode in modes:
        result += [f"{mode} tok/s", "IQR", "vs nn.LSTM", f"{mode} peak MiB"]
    return result


def format_rows(rows: list[dict], modes: list[str], header: bool = True, floor: list[int] | None = None) -> str:
    """The terminal table: each column as wide as its widest entry, header included, and at least `floor`
    (`run` prints one group of rows at a time, under the header of the first: its floor, from every value the
    settings can give, keeps their columns in line). Names left-aligned, numbers right-aligned."""
    names = headers(modes)
    table = [row_cells(row, modes) for row in rows]
    floor = floor or [0] * len(names)
    widths = [max(len(name), floor[i], *(len(cells[i]) for cells in table)) for i, name in enumerate(names)]
    lines = ([names] if header else []) + table
    return "\n".join("  ".join(cell.ljust(width) if i in (5, 6) else cell.rjust(width)
                               for i, (cell, width) in enumerate(zip(cells, widths))).rstrip() for cells in lines)


def column_floor(settings: Settings, groups: list[list[Model]]) -> list[int]:
    """Widths every group's rows fit: the settings' sizes and threads, the models' labels, the longest path name,
    13 characters of tokens/s ("1,234,567,890"), a spread ("1000%"), a ratio ("12.34x") and MiB ("12345.6")."""
    sizes = [settings.threads, settings.batch, settings.length, settings.input, settings.hidden]
    floor = [max(len(str(value)) for value in values) for values in sizes]
    floor += [max(14, *(len(model.label) for group in groups for model in group)), len("python/autograd")]
    return floor + [13, 5, 6, 7] * len(settings.modes)


def markdown(report: dict) -> str:
    modes = [m for m in ("train", "infer") if report["rows"] and m in report["rows"][0]]
    lines = [f"`{report['command']}`", "",
             f"Machine: {report['machine']['cpu']} ({report['machine']['cpu_count']} CPUs), torch "
             f"{report['machine']['torch']}" + (f", {report['machine']['cuda_device']}" if 'cuda_device' in
                                                report['machine'] else "") + ".",
             f"Load average (1, 5, 15 min) at the start {', '.join(f'{v:.2f}' for v in report['started']['loadavg'])}"
             f", at the end {', '.join(f'{v:.2f}' for v in report['finished']['loadavg'])}; `others CPU`: CPUs "
             f"used by other processes during each configuration. Median of {report['settings']['repeats']} "
             f"calls after {report['settings']['warmup']} warm-up calls; IQR relative to the median; training = "
             f"forward + backward.", ""]
    head = headers(modes) + ["others CPU"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(" --- " if i in (5, 6) else " ---: " for i in range(len(head))) + "|")
    for row in report["rows"]:
        cells = row_cells(row, modes) + ["" if row["others_cpu"] is None else f"{row['others_cpu']:.2f}"]
        cells[5] = f"`{cells[5]}`"
        lines.append("| " + " | ".join(cells) + " |")
    scaling = report["settings"].get("scaling")
    if scaling:
        lines += ["", scaling_table(report, scaling)]
    if report["warnings"]:
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"


def scaling_table(report: dict, scaling: str) -> str:
    """Training tokens/s (and inference) of each cell against the scaled size, one line per cell and threads."""
    values = sorted({row[scaling] for row in report["rows"]})
    modes = [m for m in ("train", "infer") if m in report["rows"][0]]
    lines = []
    for mode in modes:
        lines.append(f"{mode} tokens/s against {scaling} (x nn.LSTM):")
        lines.append("")
        lines.append("| cell | threads | " + " | ".join(f"{scaling}={v}" for v in values) + " |")
        lines.append("| --- | ---: |" + " ---: |" * len(values))
        seen = {}
        for row in report["rows"]:
            seen.setdefault((row["cell"], row["threads"]), {})[row[scaling]] = row[mode]
        for (cell, threads), by_value in seen.items():
            cells = [f"{by_value[v]['tokens_per_second']:,.0f} ({by_value[v]['ratio_to_lstm']:.2f}x)"
                     if v in by_value else "" for v in values]
            lines.append(f"| `{cell}` | {threads} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--probe-memory"]:
        print(json.dumps(probe_memory(json.loads(argv[1]))))
        return
    if "mode=data" in argv:
        from rrn_app import bench_data

        return bench_data.main(argv)
    try:
        settings = parse_arguments(argv)
        report = run(settings)
    except UserError as error:
        print(f"rrn-bench: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if report["settings"]["scaling"]:
        print()
        print(scaling_table(report, report["settings"]["scaling"]))
    if settings.out is not None:
        settings.out.mkdir(parents=True, exist_ok=True)
        (settings.out / "bench.json").write_text(json.dumps(report, indent=2, default=str))
        (settings.out / "bench.md").write_text(markdown(report))
        print(f"wrote {settings.out / 'bench.json'} and {settings.out / 'bench.md'}")


if __name__ == "__main__":
    main()
