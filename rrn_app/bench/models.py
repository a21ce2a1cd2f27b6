"""What `rrn-bench` times: the models of each configuration (the cells asked for and their nn.LSTM/nn.GRU
baselines, of the same layer count and direction), how they are built and called, and what runs them (`path_of`)."""

from __future__ import annotations

import contextlib
import inspect
import itertools
from dataclasses import dataclass

import torch
from torch import nn

from rrn_app.bench.settings import PRECISIONS, BenchError, Settings

BASELINES = {"nn.LSTM": nn.LSTM, "nn.GRU": nn.GRU}
BASELINE_OPTIONS = ("num_layers", "bidirectional", "dropout")  # what cell.<option> passes on to nn.LSTM/GRU
SHAPE = {"num_layers": 1, "bidirectional": False}  # what a baseline copies from its cell, and nn.LSTM's defaults
UNKNOWN_PATH = "unknown"


@dataclass
class Model:
    label: str  # the row's name: "nn.LSTM", "res_rnn", "res_lstm[keep_prob=0.75]"
    kind: str  # "nn.LSTM", "nn.GRU" or a registered cell's name
    options: dict
    backend: str | None  # fast-path backend forced for this model (None: the default)
    module: nn.Module | None = None
    reference: str = ""  # the label of the nn.LSTM its ratio is taken against ("": its group's first model)
    precision: str = "32-true"  # Lightning's name: X-mixed runs every call under torch.autocast(device_type, X)
    device_type: str = "cpu"


def variants(options: dict[str, list]) -> list[dict]:
    keys = list(options)
    return [dict(zip(keys, combination)) for combination in itertools.product(*(options[k] for k in keys))]


def has_fast_path(name: str) -> bool:
    """Whether the cell runs on rrn's fast path (so backend= variants apply): asked of a small instance."""
    from rrn_app.cells import get_cell

    try:
        module = get_cell(name)(input_size=2, hidden_size=2)
    except Exception:  # noqa: BLE001  (a plugin cell with other required arguments: no fast path to vary)
        return False
    return any(hasattr(m, "fast_backend") for m in module.modules())


def shape_of(name: str, options: dict) -> dict:
    """The cell's num_layers and bidirectional as it will be built: the options given, else its constructor's
    defaults, else nn.LSTM's (a cell without the option is one layer, one direction)."""
    from rrn_app.cells import cell_info

    defaults = cell_info(name).options()
    shape = {}
    for key, fallback in SHAPE.items():
        value = options.get(key, defaults.get(key, fallback))
        shape[key] = fallback if value is None or value is inspect.Parameter.empty else value
    return shape


def baselines(common: dict, shape: dict, group_tags: list[str]) -> list[Model]:
    """nn.LSTM and nn.GRU for cells of `shape`: the cell.<option> values they take, the shape's layer count and
    direction; labelled with the group's tags plus any shape value not set by cell.<option> that differs from
    nn.LSTM's default (so a two-layer cell default shows as nn.LSTM[num_layers=2])."""
    options = {k: v for k, v in common.items() if k in BASELINE_OPTIONS}
    tags = list(group_tags)
    for key, value in shape.items():
        if key in common or value != SHAPE[key]:
            options[key] = value
        if value != common.get(key, SHAPE[key]):
            tags.append(f"{key}={value}")
    suffix = f"[{','.join(tags)}]" if tags else ""
    return [Model(name + suffix, name, dict(options), None, reference="nn.LSTM" + suffix) for name in BASELINES]


def model_list(settings: Settings) -> list[list[Model]]:
    """Groups of models that share a configuration (one group per variant of the cell.<option> grid). In each
    group every cell is compared with baselines of its own layer count and direction: one nn.LSTM/nn.GRU pair per
    shape, placed before the first cell of that shape."""
    from rrn_app.cells import cell_info

    groups = []
    grid = variants(settings.common_options)
    for precision, common in itertools.product(settings.precisions, grid):
        # several groups (a cell.<option> list): every row names its group's values, the baselines' included
        group_tags = [f"{k}={v}" for k, v in common.items()] if len(grid) > 1 else []
        if precision != "32-true" or len(settings.precisions) > 1:  # each precision its own group of rows
            group_tags.append(f"precision={precision}")
        cells, shapes = [], []
        for name in settings.cells:
            accepted = set(cell_info(name).options())
            shared = {k: v for k, v in common.items() if k in accepted}
            for own in variants(settings.cell_options.get(name, {})):
                unknown = set(own) - accepted
                if unknown:
                    raise BenchError(f"{name} has no option {sorted(unknown)[0]!r}; its options: "
                                     f"{', '.join(sorted(accepted))}")
                options = {**shared, **own}
                shape = shape_of(name, options)
                for backend in (settings.backends if has_fast_path(name) else [None]):
                    tags = group_tags + [f"{k}={v}" for k, v in own.items()] + ([f"backend={backend}"] if backend
                                                                                         else [])
                    label = name + (f"[{','.join(tags)}]" if tags else "")
                    cells.append(Model(label, name, options, backend))
                    shapes.append(shape)
        group, placed = [], {}
        for model, shape in zip(cells, shapes):
            key = tuple(shape.items())
            if key not in placed:
                pair = baselines(common, shape, group_tags)
                placed[key] = pair[0].label
                group += pair
            model.reference = placed[key]
            group.append(model)
        if not cells:
            group = baselines(common, {k: common.get(k, v) for k, v in SHAPE.items()}, group_tags)
        group = with_peers(group, settings.peers, group_tags)
        unused = set(common) - {k for m in group for k in m.options}
        if unused:
            raise BenchError(f"no cell takes cell.{sorted(unused)[0]}")
        for model in group:
            model.precision, model.device_type = precision, torch.device(settings.device).type
        groups.append(group)
    return groups


def with_peers(group: list[Model], names: list[str], group_tags: list[str]) -> list[Model]:
    """The group with the installed peers (peers.py) after the nn.GRU of its one-layer, one-direction pair, their
    ratio taken to that pair's nn.LSTM; a group without such a pair gets none."""
    from rrn_app.bench import peers

    present = peers.available(names)[0]
    plain = [i for i, m in enumerate(group) if m.kind == "nn.LSTM" and m.options.get("num_layers", 1) == 1
             and not m.options.get("bidirectional", False)]
    if not present or not plain:
        return group
    at = plain[0] + 2  # after its nn.GRU
    suffix = f"[{','.join(group_tags)}]" if group_tags else ""
    added = [Model(peers.PEERS[name].label + suffix, peers.PEERS[name].label, {}, None,
                   reference=group[plain[0]].label) for name in present]
    return group[:at] + added + group[at:]


def build(model: Model, input_size: int, hidden_size: int, device, dtype, seed: int) -> nn.Module:
    from rrn_app.bench import peers
    from rrn_app.cells import get_cell

    torch.manual_seed(seed)
    if peers.is_peer(model.kind):
        module = peers.build(model.kind, input_size, hidden_size)
    elif model.kind in BASELINES:
        options = dict(model.options)
        if options.get("num_layers", 1) == 1:
            options.pop("dropout", None)
        module = BASELINES[model.kind](input_size, hidden_size, batch_first=True, **options)
    else:
        module = get_cell(model.kind)(input_size=input_size, hidden_size=hidden_size, **model.options)
    return module.to(device=device, dtype=dtype)


def backend_context(model: Model):
    """What every call of the model runs under: its fast-path backend, and autocast for a mixed precision."""
    from rrn_app.cells import fast

    context = contextlib.ExitStack()
    context.enter_context(fast.use_backend(model.backend))
    low = PRECISIONS[model.precision]
    if low is not None:
        context.enter_context(torch.autocast(model.device_type, dtype=low))
    return context


def path_of(model: Model, x: torch.Tensor) -> str:
    """What runs the model, read off its modules: for res_rnn/gres_rnn the fast-path backend (and "+oneDNN" when
    its per-step GEMM is oneDNN's); a Python step-wise layer "python/autograd", or "compiled" when its
    recurrent_step is compiled (the plugin fast path); a peer its own name (peers.py); torch.nn's recurrent kernels:
    cuDNN on CUDA, on CPU oneDNN's RNN for nn.LSTM in float32 and ATen's loop for the others; "unknown" for a
    model with none of these inside (a plugin's own kernel: rrn-bench cannot tell what runs it)."""
    from rrn_app.cells import fast
    from rrn_app.cells.recurrence import Recurrence

    if getattr(model.module, "bench_path", None):  # a peer names its own (peers.py)
        return model.module.bench_path
    modules = list(model.module.modules())
    fast_layers = [m for m in modules if hasattr(m, "fast_backend")]
    if fast_layers:
        with backend_context(model):
            which = fast_layers[0].fast_backend(x)
            dtypes = fast.call_precision(x, fast_layers[0].weight_hh)
            which = fast.backends.layer_kernel(fast_layers[0], which, x, dtypes.state, dtypes.gemm)  # or "triton"
        if which == "cpp" and fast.step_gemm(fast_layers[0].weight_hh.to(dtypes.gemm), which) == "oneDNN":
            which += "+oneDNN"
        if dtypes.mixed and which != "step":  # mixed precision: the GEMMs' dtype (fast/precision.py)
            which += f"+{str(dtypes.gemm).removeprefix('torch.')}"
        return which
    steps = [m for m in modules if isinstance(m, Recurrence)]
    if steps:  # a plugin's compiled recurrent_step (recurrence.py), else the step loop in autograd
        return "compiled" if all(m.step_path(x) == "compiled" for m in steps) else "python/autograd"
    kernels = {type(m) for m in modules if isinstance(m, nn.RNNBase)}
    if not kernels:
        return UNKNOWN_PATH
    if x.is_cuda:
        return "cuDNN" if torch.backends.cudnn.enabled else "aten"
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
