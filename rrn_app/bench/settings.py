"""What an `rrn-bench` command line means: its keys (the shared `key=value` parser, rrn_app/keyvalue.py), their
checks, and the `Settings` the run reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from rrn_app.keyvalue import KeyValueParser, Option, parse_value
from rrn_app.option_checks import UserError

HELP = """`rrn-bench`: training and inference speed of recurrent cells, always next to torch.nn.LSTM and torch.nn.GRU.

    rrn-bench cells=res_rnn,gres_rnn batch=64 length=100 input=128 hidden=128,512 threads=1,2 out=bench/
    rrn-bench cells=res_lstm cell.num_layers=12 res_lstm.keep_prob=1.0,0.75 hidden=128 repeats=20
    rrn-bench cells=res_rnn scaling=length batch=16 hidden=256         # tokens/s for length 100 .. 2000
    rrn-bench cells=res_rnn scaling=hidden                               # tokens/s for hidden 64 .. 1024
    rrn-bench mode=data                  # each task's time to first batch, cold and warm (rrn-bench mode=data --help)
    rrn-bench mode=train-loop            # rrn-train's batches/s against a bare PyTorch loop (mode=train-loop --help)

Every `key=value`; a comma list makes a grid. For each configuration (threads x batch x length x input x hidden
x precision x cell options) every model — the cells asked for, `nn.LSTM` and `nn.GRU` — is built with the same seed and
timed on the same random batch [batch, length, input] of full-length sequences. The baselines have the layer
count and direction of the cells they are compared with (`num_layers`, `bidirectional`: given, or the cell's
default); cells of different shapes in one run each get baselines of their shape, labelled with it.

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
  backend=cpp,python,step   the fast-path backend of res_rnn/gres_rnn (cells/fast) to time; default: the default
                         (triton: the Triton kernels wherever they apply, CUDA by default where triton imports)
  mode=train,infer       what to time (default both);  warmup=3  repeats=10
  mode=data              the data instead: time to first batch and loading per batch of every task (its own
                         options: rrn-bench mode=data --help; rrn_app/bench/data.py)
  mode=train-loop        rrn-train's training batches/s against a bare loop over the same model, loader and
                         optimizer, per task (rrn-bench mode=train-loop --help; rrn_app/bench/train_loop.py)
  memory=true|false      measure peak memory (default true);  device=cpu|cuda;  dtype=float32|float64
  precision=32-true,bf16-mixed   Lightning's trainer.precision (a grid): X-mixed times every model, nn.LSTM
                         and nn.GRU included, under torch.autocast(device, X); 16-mixed needs device=cuda
  scaling=length|hidden  set length to 100,250,500,1000,2000 or hidden to 64,128,256,512,1024 and add a table
                         of tokens/s against it
  out=DIR                write DIR/bench.json and DIR/bench.md;  seed=0
  peers=sru,mingru|all   also time other packages' layers (sru.SRU, mingru-pytorch's minGRU) at one layer, one
                         direction, beside that shape's nn.LSTM; one not installed is a note (pip install "rrn[peers]")

The path column says what runs each model: cpp / python / step (and +oneDNN) for the fast path, python/autograd
for a step-wise Recurrence (compiled where its recurrent_step is compiled), oneDNN / aten / cuDNN for torch.nn's
recurrent kernels, sru/cpu and log-scan for the peers, `unknown` for a cell made of none of these (a plugin's own
kernel, say). The `of GEMM` column: the row's matrix-product FLOP rate over the machine's rate for one
[batch, hidden] x [hidden, hidden] product, measured in the same run (rrn_app/bench/gemm.py has the convention).

A warning is printed when the numbers are unreliable: a spread (IQR/median) above 10%, or other processes using
more CPU than the cores the benchmark leaves free (measured from /proc/stat during each configuration; where
that is unavailable, the 1-minute load average above the free cores).
"""

SCALING = {"length": [100, 250, 500, 1000, 2000], "hidden": [64, 128, 256, 512, 1024]}
GRID_KEYS = ("batch", "length", "input", "hidden")
# every value as written (type=str): the comma lists are read below, each entry typed by parse_value
OPTIONS = {key: Option(default, str) for key, default in dict(
    cells="", batch="64", length="100", input="128", hidden="128", threads="", mode="train,infer", warmup="3",
    repeats="10", memory="true", device="cpu", dtype="float32", scaling="", out="", seed="0", backend="",
    precision="32-true").items()}
OPTIONS["peers"] = Option("", str)  # peers.py
PARSER = KeyValueParser(OPTIONS, HELP, usage="(rrn-bench --help lists the keys)", noun="setting",
                        accept=lambda key: "." in key, shown=("cell.<option>", "<cell>.<option>"))
DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}
# precision= (Lightning's names): the dtype autocast casts to, None for no autocast
PRECISIONS = {"32-true": None, "32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


class BenchError(UserError):
    """A bad rrn-bench setting (the command line prints it in one line and exits 2)."""


def parse_list(text: str) -> list:
    """A comma list, each entry typed by parse_value; `[...]` is one YAML list value."""
    if text.strip().startswith("["):
        return [parse_value(text)]
    return [parse_value(part) for part in text.split(",") if part.strip()]


@dataclass
class Settings:
    """One rrn-bench run: the grid of sizes and threads, the cells and their option grids, what to measure."""

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
    precisions: list[str] = field(default_factory=lambda: ["32-true"])  # PRECISIONS' keys
    common_options: dict[str, list] = field(default_factory=dict)  # cell.<option>
    cell_options: dict[str, dict[str, list]] = field(default_factory=dict)  # <cell>.<option>
    argv: list[str] = field(default_factory=list)
    peers: list[str] = field(default_factory=list)  # peers.py: rows from other packages, when installed


def whole_numbers(key: str, text: str, least: int) -> list[int]:
    """The comma list `text` of whole numbers >= least, or an error naming the setting."""
    numbers = parse_list(text)
    if not numbers or any(isinstance(v, bool) or not isinstance(v, int) or v < least for v in numbers):
        raise BenchError(f"{key}={text!r}: must be whole numbers >= {least}, e.g. {key}={max(least, 1)}")
    return numbers


def parse_arguments(argv: list[str]) -> Settings:
    """The Settings of an rrn-bench command line (--help prints HELP and exits 0; a bad setting is a BenchError
    or, for an unknown cell, the registry's UnknownCellError)."""
    from rrn_app.bench import peers
    from rrn_app.cells import cell_info

    values = PARSER.parse(argv)
    given = set(PARSER.split(argv))
    common, per_cell = {}, {}
    for key in [key for key in values if "." in key]:
        owner, option = key.split(".", 1)
        (common if owner == "cell" else per_cell.setdefault(owner, {}))[option] = parse_list(values.pop(key))
    cells = [name.strip() for name in values["cells"].split(",") if name.strip()]
    for name in cells:
        cell_info(name)  # an unknown cell: UnknownCellError listing the known ones
    for owner in per_cell:
        if owner not in cells:
            raise BenchError(f"options for {owner!r} but it is not in cells={','.join(cells)}")
    scaling = values["scaling"].strip()
    if scaling and scaling not in SCALING:
        raise BenchError(f"scaling={scaling!r}: must be one of {', '.join(SCALING)}")
    grid = {key: whole_numbers(key, values[key], 1) for key in GRID_KEYS}
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
    if values["dtype"] not in DTYPES:
        raise BenchError(f"dtype={values['dtype']!r}: one of {', '.join(DTYPES)}")
    backends = [b.strip() for b in values["backend"].split(",") if b.strip()] or [None]
    for name in backends:
        if name not in (None, "cpp", "python", "step", "triton"):
            raise BenchError(f"backend={name!r}: cpp, python, step or triton")
    if "triton" in backends:
        from rrn_app.cells import fast

        if not fast.backend_available("triton"):
            raise BenchError("backend=triton: triton does not import here (pip install 'rrn[triton]')")
    if "cpp" in backends:
        from rrn_app.cells import fast

        if not fast.backend_available("cpp"):
            raise BenchError("backend=cpp: the C++ extension cannot be built here (see the warning above)")
    precisions = [p.strip() for p in values["precision"].split(",") if p.strip()]
    for name in precisions:
        if name not in PRECISIONS:
            raise BenchError(f"precision={name!r}: one of {', '.join(PRECISIONS)}")
        if name == "16-mixed" and not device.startswith("cuda"):
            raise BenchError("precision=16-mixed needs device=cuda (on CPU, Lightning's mixed precision is "
                             "bf16-mixed)")
        if PRECISIONS[name] is not None and values["dtype"] != "float32":
            raise BenchError(f"precision={name} autocasts float32 models: leave dtype=float32")
    return Settings(
        cells=cells, batch=grid["batch"], length=grid["length"], input=grid["input"], hidden=grid["hidden"],
        threads=threads, modes=modes, warmup=warmup, repeats=repeats, memory=bool(parse_value(values["memory"])),
        device=device, dtype=DTYPES[values["dtype"]], scaling=scaling,
        out=Path(values["out"]) if values["out"] else None, seed=seed, backends=backends, precisions=precisions,
        common_options=common,
        cell_options=per_cell, argv=list(argv), peers=peers.parse(values["peers"]),
    )
