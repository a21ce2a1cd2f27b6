"""Mixed precision: under torch.autocast (what trainer.precision=bf16-mixed turns on) res_rnn and gres_rnn stay on
their fast path (rrn_app/cells/fast/precision.py) and give float32's results within what bfloat16 allows; a plugin
cell's step loop does too; rrn-bench and rrn-train run in that precision.

Tolerances. bfloat16 keeps 8 significant bits: a value rounded to it moves by up to u = 2^-9 ≈ 2e-3 of itself.
Each step rounds three things into its recurrent product (the state, the weight, the product itself) and the
input projection three more (x, W, W x + b), so one step's pre-activation carries ~6u ≈ 1.2e-2 of relative
error at worst, ~3u typically; over the T = 12 steps here those add up partly at random (√12 · 3u ≈ 2e-2), and
the identity shortcut of res_rnn carries every earlier step's error forward. Hence BF16_TOLERANCE = 3e-2 of the
largest |value| of the float32 result, for outputs and gradients alike (measured: 4e-3 to 9e-3). A second bound
needs no such estimate: the fast path may be no further from float32 than autocast's own step-by-step loop is
(which in addition rounds the states to bfloat16 at every step), with 50% slack for the rounding's luck. The C++
loop and the pure PyTorch loop round the same values in the same places, so under autocast they agree to float32
precision (1e-5), as they do without it.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from rrn_app.cells import get_cell
from rrn_app.cells import recurrence as recurrence_module
from rrn_app.cells.fast import backends as fast
from rrn_app.cells.fast import precision as fast_precision
from rrn_app.cells.recurrence import Recurrence
from rrn_app.cells.stack import RecurrentStack

BF16_TOLERANCE = 3e-2  # of max |float32 value|: see the module docstring
STEP_SLACK = 1.5  # the fast path's error at most this times the autocast step loop's (+ u)
UNIT = 2.0**-9  # bfloat16's unit roundoff
NATIVE_BF16 = fast_precision.native("cpu", torch.bfloat16)

CONFIGS = {
    "res_rnn": ("res_rnn", {}),
    "res_rnn linear relu tanh": ("res_rnn", dict(projection="linear", activation="relu", output_activation="tanh")),
    "gres_rnn": ("gres_rnn", {}),
    "gres_rnn linear tanh": ("gres_rnn", dict(projection="linear", output_activation="tanh")),
    "res_rnn batch norm": ("res_rnn", dict(batch_norm=True, batch_norm_max_length=8)),
    "gres_rnn batch norm": ("gres_rnn", dict(batch_norm=True)),
}
LENGTHS = torch.tensor([12, 5, 9, 12, 7, 3, 11, 12])  # padded: sequences end at different steps


def cpp_available() -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fast.backend_available("cpp")


BACKENDS = ["python", pytest.param("cpp", marks=pytest.mark.skipif(not cpp_available(),
                                                                   reason="the C++ extension cannot be built here"))]


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| over max |expected|."""
    assert actual.shape == expected.shape
    return float((actual.float() - expected).abs().max() / expected.abs().max().clamp(min=1e-30))


def make_cell(config: str, seed: int = 0):
    name, options = CONFIGS[config]
    torch.manual_seed(seed)
    return get_cell(name)(input_size=16, hidden_size=32, **options)


def run(cell, x, which: str, autocast: bool, lengths=LENGTHS):
    """outputs, final state and the gradients of x and every parameter, of a loss that weighs every output."""
    x = x.detach().clone().requires_grad_(True)
    cell.zero_grad()
    weights = torch.linspace(-1, 1, x.shape[1] * 32).view(1, x.shape[1], 32)
    with fast.use_backend(which), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        outputs, state = cell(x, lengths)
    loss = (outputs.float() * weights).sum() + (outputs.float() ** 2).sum() + state.float().sum()
    loss.backward()
    return [outputs.detach(), state.detach(), x.grad] + [p.grad.clone() for p in cell.parameters()]


def errors(results, reference) -> list[float]:
    return [relative_error(a, b) for a, b in zip(results, reference, strict=True)]


@pytest.fixture
def no_step_loop(monkeypatch):
    """Fail if any layer falls back to the step-by-step Recurrence loop."""
    def refuse(self, *args, **kwargs):
        raise AssertionError(f"{type(self).__name__} ran the step-by-step loop under autocast")

    monkeypatch.setattr(Recurrence, "forward", refuse)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config", CONFIGS)
def test_under_bf16_autocast_the_fast_path_runs(config, backend, no_step_loop):
    """The layer picks its fast-path backend under autocast, and the step loop is never entered (it would raise)."""
    cell = make_cell(config)
    x = torch.randn(8, 12, 16)
    layer = cell.layers[0][0]
    with fast.use_backend(backend), torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer.fast_backend(x) == backend
        assert layer.fast_backend(x.bfloat16()) == backend  # an input autocast already made bfloat16, too
        outputs, state = cell(x, LENGTHS)
    outputs.float().sum().backward()
    assert outputs.dtype == torch.float32 and state.dtype == torch.float32  # the states stay float32
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in cell.parameters())
    expected_gemm = torch.bfloat16 if NATIVE_BF16 else torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fast_precision.call_precision(x, layer.weight_hh) == (torch.float32, expected_gemm)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config", CONFIGS)
def test_values_and_gradients_match_float32_within_bfloat16_rounding(config, backend, no_step_loop):
    """Outputs, final states, dL/dx and every weight's gradient: within BF16_TOLERANCE of float32's."""
    cell = make_cell(config)
    x = torch.randn(8, 12, 16)
    reference = run(cell, x, backend, autocast=False)
    mixed = run(cell, x, backend, autocast=True)
    names = ["outputs", "state", "x"] + [name for name, _ in cell.named_parameters()]
    for name, error in zip(names, errors(mixed, reference), strict=True):
        assert error <= BF16_TOLERANCE, f"{config} {name}: {error:.3g} of the float32 value's scale"


@pytest.mark.parametrize("config", ["res_rnn", "gres_rnn linear tanh", "res_rnn batch norm"])
def test_the_fast_path_is_at_least_as_close_to_float32_as_the_autocast_step_loop(config, monkeypatch):
    """The step loop under autocast rounds the states too; the fast path keeps them float32, so it is no worse."""
    cell = make_cell(config)
    x = torch.randn(8, 12, 16)
    reference = run(cell, x, "python", autocast=False)
    step_errors = errors(run(cell, x, "step", autocast=True), reference)
    fast_errors = errors(run(cell, x, "python", autocast=True), reference)
    for index, (fast_error, step_error) in enumerate(zip(fast_errors, step_errors, strict=True)):
        assert fast_error <= STEP_SLACK * step_error + UNIT, f"result {index}: {fast_error:.3g} vs {step_error:.3g}"


@pytest.mark.skipif(not cpp_available(), reason="the C++ extension cannot be built here")
@pytest.mark.parametrize("device_loop", ["0", "1"])
@pytest.mark.parametrize("config", ["res_rnn", "gres_rnn linear tanh", "gres_rnn batch norm"])
def test_the_cpp_loops_round_where_the_python_loop_does(config, device_loop, monkeypatch):
    """The C++ CPU loop, and the ATen loop a GPU runs (RRN_FAST_CELLS_DEVICE_LOOP=1), under autocast: the pure
    PyTorch loop's results to 1e-5 (the same roundings; only the order of float32 sums differs)."""
    monkeypatch.setenv(fast.DEVICE_LOOP_ENV, device_loop)
    cell = make_cell(config)
    x = torch.randn(8, 12, 16)
    expected = run(cell, x, "python", autocast=True)
    for index, error in enumerate(errors(run(cell, x, "cpp", autocast=True), expected)):
        assert error <= 1e-5, f"result {index}: {error:.3g}"


@pytest.mark.skipif(not cpp_available(), reason="the C++ extension cannot be built here")
@pytest.mark.skipif(not NATIVE_BF16, reason="bfloat16 GEMMs only where the CPU has them")
@pytest.mark.parametrize("config", ["res_rnn", "gres_rnn linear tanh"])
def test_onednn_bfloat16_step_gemm_from_hidden_size_256(config):
    """H >= 256: oneDNN multiplies by the bfloat16 weight (reordered once per call). Its sums run in another order
    than ATen's, so a product may round to the neighbouring bfloat16 (2^-8 of it): cpp and python agree within
    BF16_TOLERANCE of each other, and both are within it of float32."""
    name, options = CONFIGS[config]
    torch.manual_seed(0)
    cell = get_cell(name)(input_size=16, hidden_size=256, **options)
    assert fast.step_gemm(cell.layers[0][0].weight_hh.bfloat16(), "cpp") == "oneDNN"
    x = torch.randn(8, 12, 16)
    weights = torch.linspace(-1, 1, 12 * 256).view(1, 12, 256)

    def results(which, autocast):
        x_ = x.clone().requires_grad_(True)
        cell.zero_grad()
        with fast.use_backend(which), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            outputs, _ = cell(x_, LENGTHS)
        ((outputs.float() * weights).sum() + (outputs.float() ** 2).sum()).backward()
        return [outputs.detach(), x_.grad] + [p.grad.clone() for p in cell.parameters()]

    reference, onednn, aten = results("python", False), results("cpp", True), results("python", True)
    for index, (a, b, c) in enumerate(zip(onednn, aten, reference, strict=True)):
        assert relative_error(a, c) <= BF16_TOLERANCE and relative_error(b, c) <= BF16_TOLERANCE, index
        assert relative_error(a, b) <= BF16_TOLERANCE, index


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_norm_statistics_stay_float32_under_autocast(backend):
    """The running estimates after a training call: float32, and within bfloat16 rounding of float32's."""
    estimates = {}
    for autocast in (False, True):
        cell = make_cell("gres_rnn batch norm")
        run(cell, torch.randn(8, 12, 16, generator=torch.Generator().manual_seed(3)), backend, autocast)
        norm = cell.layers[0][0].norm
        assert norm.running_mean.dtype == torch.float32 and norm.running_var.dtype == torch.float32
        estimates[autocast] = (norm.running_mean.clone(), norm.running_var.clone())
    for actual, expected in zip(estimates[True], estimates[False]):
        assert relative_error(actual, expected) <= BF16_TOLERANCE


@pytest.mark.parametrize("backend", BACKENDS)
def test_inference_under_autocast_gives_the_training_calls_outputs(backend):
    cell = make_cell("gres_rnn").eval()
    x = torch.randn(8, 12, 16)
    with fast.use_backend(backend), torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            inferred, _ = cell(x, LENGTHS)
        trained, _ = cell(x, LENGTHS)
    torch.testing.assert_close(inferred, trained.detach(), rtol=1e-6, atol=1e-6)


def test_float32_gemms_on_request_are_closer_to_float32(monkeypatch):
    """RRN_AUTOCAST_GEMM=0: float32 GEMMs (only the input projection rounds), so the results are closer still."""
    cell = make_cell("res_rnn")
    x = torch.randn(8, 12, 16)
    reference = run(cell, x, "python", autocast=False)
    low = errors(run(cell, x, "python", autocast=True), reference)
    monkeypatch.setenv(fast_precision.GEMM_ENV, "0")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fast_precision.call_precision(x, cell.layers[0][0].weight_hh).gemm == torch.float32
    wide = errors(run(cell, x, "python", autocast=True), reference)
    assert max(wide) <= BF16_TOLERANCE
    if NATIVE_BF16:  # otherwise both runs multiply in float32
        assert sum(wide) < sum(low)


def test_without_native_bfloat16_the_gemms_stay_float32_after_one_warning(monkeypatch):
    """A CPU without AVX512-BF16/AMX: float32 GEMMs (emulated bfloat16 would be slower), said once, not silently."""
    monkeypatch.setattr(fast_precision, "native", lambda device_type, dtype: False)
    monkeypatch.setattr(fast_precision, "_warned", set())
    monkeypatch.delenv(fast_precision.GEMM_ENV, raising=False)
    x, weight = torch.randn(2, 3, 4), torch.randn(5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = fast_precision.call_precision(x, weight)
        second = fast_precision.call_precision(x, weight)
    assert first == second == (torch.float32, torch.float32)
    messages = [str(w.message) for w in caught if "no native bfloat16" in str(w.message)]
    assert len(messages) == 1 and fast_precision.GEMM_ENV in messages[0]


def test_float64_layers_ignore_autocast_as_torch_does():
    x, weight = torch.randn(2, 3, 4, dtype=torch.float64), torch.randn(5, 5, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fast_precision.call_precision(x, weight) == (torch.float64, torch.float64)
        assert fast_precision.supported_input(x, weight)


def test_a_bad_gemm_switch_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(fast_precision.GEMM_ENV, "bf16")
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(fast.SwitchError, match="RRN_AUTOCAST_GEMM"):
        fast_precision.call_precision(torch.randn(2, 3, 4), torch.randn(5, 5))


# --- item 7: a plugin cell's step loop under autocast ------------------------------------------------------------


class ElmanLayer(Recurrence):
    """A plugin as the README writes one: h_t = tanh(W x_t + b + U h_{t-1}), the step in Python."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.input = nn.Linear(input_size, hidden_size)
        self.recurrent = nn.Linear(hidden_size, hidden_size, bias=False)
        nn.init.uniform_(self.recurrent.weight, -0.5 / math.sqrt(hidden_size), 0.5 / math.sqrt(hidden_size))

    def project_inputs(self, x):
        return self.input(x)

    def step(self, inputs, state, t, running):
        return torch.tanh(inputs + self.recurrent(state))


class MinGRULike(Recurrence):
    """A plugin on the fast-path hooks (an input-side transform, then a recurrent step), where they exist."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.input = nn.Linear(input_size, 2 * hidden_size)
        self.recurrent = nn.Linear(hidden_size, hidden_size, bias=False)

    def project_inputs(self, x):
        z, candidate = self.input(x).chunk(2, dim=-1)
        return torch.cat([torch.sigmoid(z), candidate], dim=-1)

    def recurrent_step(self, inputs, h):
        z, candidate = inputs.chunk(2, dim=-1)
        return h + z * (torch.tanh(candidate + self.recurrent(h)) - h)  # (torch.lerp would not mix dtypes)


def plugin_stack(layer_class, seed=0):
    torch.manual_seed(seed)
    return RecurrentStack(16, 32, num_layers=2, bidirectional=True, make_layer=layer_class)


def plugin_results(cell, x, autocast: bool):
    x = x.detach().clone().requires_grad_(True)
    cell.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        outputs, _ = cell(x, LENGTHS)
    assert torch.all(outputs[torch.arange(12)[None, :] >= LENGTHS[:, None]] == 0)  # zeros past each length
    (outputs.float() ** 2).sum().backward()
    return [outputs.detach(), x.grad] + [p.grad.clone() for p in cell.parameters()]


def test_a_plugin_step_loop_under_autocast_matches_float32():
    """Two layers, both directions, padding: outputs and every gradient within bfloat16 rounding of float32."""
    cell = plugin_stack(ElmanLayer)
    x = torch.randn(8, 12, 16)
    for index, error in enumerate(errors(plugin_results(cell, x, True), plugin_results(cell, x, False))):
        assert error <= BF16_TOLERANCE, f"result {index}: {error:.3g}"


@pytest.mark.parametrize("compiled", [False, True])
def test_a_plugin_on_the_fast_path_hooks_under_autocast_matches_float32(compiled, monkeypatch):
    """recurrent_step, plain (compile_step False) or compiled (aot_eager: no C++ build), under autocast."""
    if Recurrence.__dict__.get("recurrent_step") is None:
        pytest.skip("this Recurrence has no recurrent_step hook")
    monkeypatch.setenv(getattr(recurrence_module, "COMPILE_VARIABLE", "RRN_COMPILE_STEP"),
                       "aot_eager" if compiled else "0")
    cell = plugin_stack(MinGRULike)
    x = torch.randn(8, 12, 16)
    for index, error in enumerate(errors(plugin_results(cell, x, True), plugin_results(cell, x, False))):
        assert error <= BF16_TOLERANCE, f"result {index}: {error:.3g}"


# --- rrn-bench and rrn-train in mixed precision ------------------------------------------------------------------


def test_bench_precision_puts_each_cell_beside_nn_lstm_in_the_same_precision():
    from rrn_app.bench.cli import run as bench_run
    from rrn_app.bench.settings import parse_arguments

    settings = parse_arguments(["cells=res_rnn", "batch=4", "length=5", "input=8", "hidden=8", "threads=1",
                                "mode=train", "warmup=0", "repeats=1", "memory=false", "backend=python",
                                "precision=32-true,bf16-mixed"])
    rows = bench_run(settings, log=lambda *_: None)["rows"]
    by_label = {row["cell"]: row for row in rows}
    mixed = by_label["res_rnn[precision=bf16-mixed,backend=python]"]
    assert mixed["precision"] == "bf16-mixed"
    assert mixed["path"] == ("python+bfloat16" if NATIVE_BF16 else "python")  # the fast path, not the step loop
    assert by_label["nn.LSTM[precision=bf16-mixed]"]["precision"] == "bf16-mixed"
    lstm = by_label["nn.LSTM[precision=bf16-mixed]"]["train"]["tokens_per_second"]
    assert mixed["train"]["ratio_to_lstm"] == pytest.approx(mixed["train"]["tokens_per_second"] / lstm)
    assert by_label["res_rnn[precision=32-true,backend=python]"]["path"] == "python"


@pytest.mark.parametrize("argument, message", [("precision=fp8", "precision='fp8'"),
                                               ("precision=16-mixed", "needs device=cuda")])
def test_bench_refuses_a_precision_it_cannot_run(argument, message):
    from rrn_app.bench.settings import BenchError, parse_arguments

    if argument == "precision=16-mixed" and torch.cuda.is_available():
        pytest.skip("16-mixed is for device=cuda, which this machine has")
    with pytest.raises(BenchError, match=message):
        parse_arguments(["cells=res_rnn", argument])


@pytest.mark.slow
@pytest.mark.skipif(not NATIVE_BF16, reason="rrn-train refuses bf16-mixed on a CPU without bfloat16")
def test_rrn_train_bf16_mixed_finishes_with_finite_metrics(data_root, tmp_path):
    """SST, res_rnn, trainer.precision=bf16-mixed, a tiny budget: fit, validate, test; every metric finite."""
    import json

    from helpers import QUICK, run_cli, run_dir_of

    result = run_cli("rrn-train", "task=sst", "cell=res_rnn", "cell.hidden_size=16", "trainer.precision=bf16-mixed",
                     "task.data.train_on=sentences", *QUICK, f"data.root={data_root}",
                     f"hydra.run.dir={tmp_path / 'run'}", timeout=300)
    metrics = json.loads((run_dir_of(result) / "results.json").read_text())["metrics"]
    assert "test/loss" in metrics and "val/loss" in metrics, metrics
    assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in metrics.values()), metrics
