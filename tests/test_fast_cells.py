"""The fast path of res_rnn and gres_rnn (rrn_app/cells/fast/): the C++ loop and its pure PyTorch fallback give
what the step-by-step oracles of reference.py give — outputs, final states and every gradient, on padded batches."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import warnings

import pytest
import torch
from torch.autograd import gradcheck

from rrn_app.cells import get_cell, reference
from rrn_app.cells.fast import backends as fast  # the backend switches and their state

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "identity": reference.identity}
CONFIGS = {
    "res_rnn": ("res_rnn", {}),
    "res_rnn linear relu tanh": ("res_rnn", dict(projection="linear", activation="relu", output_activation="tanh")),
    "gres_rnn": ("gres_rnn", {}),
    "gres_rnn linear tanh": ("gres_rnn", dict(projection="linear", output_activation="tanh")),
    "gres_rnn relu": ("gres_rnn", dict(activation="relu")),
}


def cpp_available() -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fast.backend_available("cpp")


requires_cpp = pytest.mark.skipif(not cpp_available(),
                                  reason="the C++ extension cannot be built here (no compiler or ninja)")
BACKENDS = ["python", pytest.param("cpp", marks=requires_cpp)]


def assert_relative(actual, expected, tolerance=1e-5, what=""):
    """|actual - expected| <= tolerance * max |expected|, elementwise: 1e-5 relative to the tensor's scale.

    (Plain elementwise relative error is no measure for the small entries of a gradient summed over many
    timesteps: float32 rounding in a different summation order alone moves those by more than 1e-5 of themselves.)
    """
    assert actual.shape == expected.shape, what
    scale = expected.abs().max().clamp(min=1e-30)
    error = (actual - expected).abs().max()
    assert error <= tolerance * scale, f"{what}: max error {error:.3g} > {tolerance} x max |expected| {scale:.3g}"


def perturbed(cell, scale=0.3, seed=1):
    """Weights away from the near-identity start, so every term of the recurrence matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in cell.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return cell


def oracle(layer, x, s0):
    """reference.res_rnn / gres_rnn with the layer's own weights, on full-length sequences."""
    options = dict(activation=ACTIVATIONS[layer.activation_name],
                   output_activation=ACTIVATIONS[layer.output_activation_name], s0=s0)
    if layer.fast_gated:
        W, W_g = layer.weight_ih.chunk(2)
        U, U_g = layer.weight_hh.chunk(2)
        b, b_g = layer.bias.chunk(2)
        return reference.gres_rnn(x, W, U, b, W_g, U_g, b_g, layer.weight_im, **options)
    return reference.res_rnn(x, layer.weight_ih, layer.weight_hh, layer.bias, layer.weight_im, **options)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config", CONFIGS)
def test_fast_layer_matches_the_reference_with_padding(config, backend):
    """Outputs, final state and the gradients of x, s0 and every weight within 1e-5 relative (float32)."""
    name, options = CONFIGS[config]
    torch.manual_seed(0)
    layer = perturbed(get_cell(name)(input_size=5, hidden_size=8, **options)).layers[0][0]
    lengths = torch.randint(1, 10, (6,))
    lengths[0] = 9
    x = torch.randn(6, 9, 5, requires_grad=True)
    s0 = torch.randn(6, 8, requires_grad=True)
    out_weights, state_weights = torch.randn(6, 9, 8), torch.randn(6, 8)
    parameters = [x, s0, *layer.parameters()]

    with fast.use_backend(backend):
        assert layer.fast_backend(x) == backend
        outputs, h_n = layer(x, lengths, s0)
    assert torch.all(outputs[torch.arange(9)[None, :] >= lengths[:, None]] == 0)  # zeros past each length
    fast_grads = torch.autograd.grad((outputs * out_weights).sum() + (h_n * state_weights).sum(), parameters)

    expected_outputs, expected_h, loss = torch.zeros(6, 9, 8), [], 0.0
    for row, length in enumerate(lengths.tolist()):  # the oracle has no padding: each sequence alone
        sequence_outputs, s_T = oracle(layer, x[row : row + 1, :length], s0[row : row + 1])
        expected_outputs[row, :length] = sequence_outputs[0].detach()
        expected_h.append(s_T.detach())
        loss = loss + (sequence_outputs[0] * out_weights[row, :length]).sum() + (s_T[0] * state_weights[row]).sum()
    expected_grads = torch.autograd.grad(loss, parameters)

    torch.testing.assert_close(outputs, expected_outputs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h_n, torch.cat(expected_h), rtol=1e-5, atol=1e-6)
    names = ["x", "s0"] + [name for name, _ in layer.named_parameters()]
    for name, actual, expected in zip(names, fast_grads, expected_grads, strict=True):
        assert_relative(actual, expected, 1e-5, f"d/d{name}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config", ["res_rnn", "gres_rnn linear tanh"])
def test_fast_stack_equals_the_step_by_step_stack(config, backend):
    """Two layers, both directions, residual links, a given initial state, padding: every output and gradient."""
    name, options = CONFIGS[config]
    torch.manual_seed(0)
    cell = perturbed(get_cell(name)(input_size=5, hidden_size=6, num_layers=2, bidirectional=True, residual=True,
                                    **options))
    x = torch.randn(4, 7, 5, requires_grad=True)
    state = torch.randn(4, 4, 6, requires_grad=True)
    lengths = torch.tensor([7, 3, 5, 1])
    results = {}
    for which in ("step", backend):
        with fast.use_backend(which):
            results[which] = outputs_and_gradients(cell, x, lengths, True, state)
    for index, (actual, expected) in enumerate(zip(results[backend], results["step"], strict=True)):
        assert_relative(actual, expected, 1e-5, f"result {index}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config", CONFIGS)
def test_fast_path_gradcheck_float64(config, backend):
    """The hand-written backward pass against finite differences: x, s0 and all weights, padded, in float64."""
    name, options = CONFIGS[config]
    torch.manual_seed(0)
    layer = perturbed(get_cell(name)(input_size=3, hidden_size=3, **options)).double().layers[0][0]
    x = torch.randn(3, 4, 3, dtype=torch.float64, requires_grad=True)
    s0 = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([4, 2, 3])
    names = [name for name, _ in layer.named_parameters()]

    def run(x, s0, *values):  # the weights as arguments, so gradcheck checks their gradients too
        return torch.func.functional_call(layer, dict(zip(names, values)), (x, lengths, s0))

    values = [w.detach().clone().requires_grad_() for w in layer.parameters()]
    with fast.use_backend(backend):
        assert gradcheck(lambda *a: run(*a)[0], (x, s0, *values))
        assert gradcheck(lambda *a: run(*a)[1], (x, s0, *values))


@pytest.mark.parametrize("backend", BACKENDS)
def test_inference_without_gradients_gives_the_same_outputs(backend):
    torch.manual_seed(0)
    cell = perturbed(get_cell("gres_rnn")(input_size=5, hidden_size=6, num_layers=2)).eval()
    x, lengths = torch.randn(4, 7, 5), torch.tensor([7, 3, 5, 1])
    with fast.use_backend(backend):
        with torch.no_grad():
            fast_outputs, fast_state = cell(x, lengths)
    with fast.use_backend("step"):
        outputs, state = cell(x, lengths)
    torch.testing.assert_close(fast_outputs, outputs)
    torch.testing.assert_close(fast_state, state)



def run_with_threads(threads, function):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        return function()
    finally:
        torch.set_num_threads(before)


def outputs_and_gradients(cell, x, lengths, gradients, state=None):
    """Outputs, final state and (gradients) those of x, the initial state if given, and every weight, as one list."""
    if not gradients:
        with torch.no_grad():
            return list(cell(x, lengths, state))
    inputs = [x.detach().requires_grad_()] + ([] if state is None else [state.detach().requires_grad_()])
    outputs, h_n = cell(*inputs[:1], lengths, *inputs[1:])
    loss = (outputs * torch.linspace(-1, 1, outputs.numel(), dtype=x.dtype).view_as(outputs)).sum() + (h_n**2).sum()
    return [outputs, h_n, *torch.autograd.grad(loss, [*inputs, *cell.parameters()])]


@requires_cpp
@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("config", CONFIGS)
def test_two_threads_split_the_batch_rows_and_give_the_same_results(config, training):
    """With several threads each thread runs its own batch rows through every step (forward and backward)."""
    if sys.platform.startswith("linux") and "OpenMP" in torch.__config__.parallel_info():
        assert torch.ops.rrn_fast_cells.parallel()  # built with OpenMP: at::parallel_for really uses the threads
    name, options = CONFIGS[config]
    torch.manual_seed(0)
    # float64: the split rows' GEMMs round differently in float32; the algorithm must agree exactly
    cell = perturbed(get_cell(name)(input_size=5, hidden_size=16, num_layers=2, **options)).double().train(training)
    x = torch.randn(11, 9, 5, dtype=torch.float64)  # split from 4 rows a thread: here rows 0-5 and 6-10
    lengths = torch.randint(1, 10, (11,))
    with fast.use_backend("cpp"):
        split = run_with_threads(2, lambda: outputs_and_gradients(cell, x, lengths, training))
    with fast.use_backend("step"):
        expected = outputs_and_gradients(cell, x, lengths, training)
    for index, (actual, wanted) in enumerate(zip(split, expected, strict=True)):
        assert_relative(actual, wanted, 1e-10, f"result {index}")


ONEDNN_CONFIGS = {key: CONFIGS[key] for key in ("gres_rnn", "res_rnn linear relu tanh")} | {
    "res_rnn batch norm": ("res_rnn", dict(batch_norm=True))}


@requires_cpp
@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("config", ONEDNN_CONFIGS)
def test_onednn_step_gemm_from_hidden_size_256_in_float32_gives_the_same_results(config, training, monkeypatch):
    """float32, hidden_size >= 256: oneDNN multiplies by [U; ...] each step (as nn.LSTM's kernel); RRN_ONEDNN=0: MKL."""
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch has no oneDNN")
    name, options = ONEDNN_CONFIGS[config]
    torch.manual_seed(0)
    cell = get_cell(name)(input_size=8, hidden_size=256, **options).train(training)
    layer = cell.layers[0][0]
    assert fast.step_gemm(layer.weight_hh.double(), "cpp") == "ATen"
    assert fast.step_gemm(layer.weight_hh[:, :128], "cpp") == "ATen"
    x, lengths = torch.randn(6, 12, 8), torch.tensor([12, 3, 7, 12, 1, 9])  # batch norm: >= 2 running each step
    results = {}
    for which, onednn_setting in (("cpp", "1"), ("cpp", "0"), ("step", "1")):
        monkeypatch.setenv("RRN_ONEDNN", onednn_setting)
        with fast.use_backend(which):
            results[which, onednn_setting] = outputs_and_gradients(copy.deepcopy(cell), x, lengths, training)
    assert fast.step_gemm(layer.weight_hh, "cpp") == "oneDNN"
    monkeypatch.setenv("RRN_ONEDNN", "0")
    assert fast.step_gemm(layer.weight_hh, "cpp") == "ATen"
    onednn, mkl, expected = results["cpp", "1"], results["cpp", "0"], results["step", "1"]
    for index, (actual, other, wanted) in enumerate(zip(onednn, mkl, expected, strict=True)):
        assert_relative(actual, wanted, 1e-5, f"oneDNN result {index}")
        assert_relative(other, wanted, 1e-5, f"MKL result {index}")


def test_what_is_not_on_the_fast_path_runs_step_by_step():
    x = torch.randn(2, 3, 4)
    with fast.use_backend("python"):
        assert get_cell("res_rnn")(input_size=4, hidden_size=5).layers[0][0].fast_backend(x) == "python"
        norm = get_cell("gres_rnn")(input_size=4, hidden_size=5, batch_norm=True).layers[0][0]
        assert norm.fast_backend(x) == "python"  # recurrent batch norm is on the fast path too
        with torch.autocast("cpu", dtype=torch.bfloat16):  # mixed precision stays on it (test_fast_precision.py)
            assert get_cell("res_rnn")(input_size=4, hidden_size=5).layers[0][0].fast_backend(x) == "python"

        class Custom(type(norm)):
            def step(self, inputs, state, t, running):
                return super().step(inputs, state, t, running) * 0.5

        assert Custom(4, 5).fast_backend(x) == "step"  # a subclass with its own step keeps its own step

        class OwnResidual(type(norm)):
            def residual(self, preactivation):
                return super().residual(preactivation) * 0.5

        assert OwnResidual(4, 5).fast_backend(x) == "step"  # likewise its own residual

        class Variant(type(get_cell("res_rnn")(input_size=4, hidden_size=5).layers[0][0])):
            def reset_parameters(self):  # its own initialisation, the same equations
                super().reset_parameters()
                torch.nn.init.orthogonal_(self.weight_hh)

        assert Variant(4, 5).fast_backend(x) == "python"  # ... and one that keeps step stays on the fast path


BATCH_NORM_CONFIGS = {
    "res_rnn": ("res_rnn", dict(batch_norm=True, batch_norm_max_length=3)),
    "gres_rnn linear tanh": ("gres_rnn", dict(batch_norm=True, projection="linear", output_activation="tanh")),
    "gres_rnn relu": ("gres_rnn", dict(batch_norm=True, activation="relu", batch_norm_max_length=4)),
}


BATCH_NORM_CASES = [
    pytest.param(config, dtype, lengths, tolerance, id=f"{config}-{str(dtype).removeprefix('torch.')}")
    for config in BATCH_NORM_CONFIGS
    for dtype, lengths, tolerance in (
        (torch.float64, [7, 3, 5, 1], 1e-10),
        (torch.float32, [7, 5, 6, 4], 1e-5),  # float32: at least two sequences per step (one alone has variance 0)
    )
    # float32 relu is left to float64: at relu's kink a rounding difference flips a unit on or off
    if not (dtype == torch.float32 and BATCH_NORM_CONFIGS[config][1].get("activation") == "relu")
]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config, dtype, lengths, tolerance", BATCH_NORM_CASES)
def test_batch_norm_on_the_fast_path_equals_the_step_by_step_loop(config, backend, training, dtype, lengths,
                                                                   tolerance):
    """Recurrent batch norm: outputs, every gradient (gamma included) and the running estimates afterwards."""
    import copy

    name, options = BATCH_NORM_CONFIGS[config]
    torch.manual_seed(0)
    base = perturbed(get_cell(name)(input_size=5, hidden_size=6, num_layers=2, bidirectional=True, **options)).to(dtype)
    with torch.no_grad():
        for buffer in base.buffers():
            buffer.add_(0.3 * torch.rand_like(buffer))
    x = torch.randn(4, 7, 5, dtype=dtype, requires_grad=True)
    state = torch.randn(4, 4, 6, dtype=dtype, requires_grad=True)
    results = {}
    for which in ("step", backend):
        cell = copy.deepcopy(base).train(training)
        with fast.use_backend(which):
            assert cell.layers[0][0].fast_backend(x) == which
            results[which] = outputs_and_gradients(cell, x, torch.tensor(lengths), True, state) + list(cell.buffers())
    for index, (actual, expected) in enumerate(zip(results[backend], results["step"], strict=True)):
        assert_relative(actual, expected, tolerance, f"result {index}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_norm_fast_path_gradcheck_float64(backend):
    torch.manual_seed(0)
    cell = perturbed(get_cell("gres_rnn")(input_size=3, hidden_size=2, batch_norm=True, projection="linear",
                                          bidirectional=True)).double().train()
    x = torch.randn(3, 4, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([4, 2, 3])
    names = [name for name, _ in cell.named_parameters()]
    values = [w.detach().clone().requires_grad_() for w in cell.parameters()]
    with fast.use_backend(backend):
        assert gradcheck(lambda x, *v: torch.func.functional_call(cell, dict(zip(names, v)), (x, lengths))[0],
                         (x, *values))


DEVICE_LOOP_CONFIGS = CONFIGS | {f"{key} batch norm": value for key, value in BATCH_NORM_CONFIGS.items()}


@requires_cpp
@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("config", DEVICE_LOOP_CONFIGS)
def test_the_loop_a_gpu_runs_gives_the_same_results(config, training, monkeypatch):
    """The C++ loop of ATen ops that CUDA runs (RRN_FAST_CELLS_DEVICE_LOOP=1 runs it on CPU): float64, padded,
    both directions, every output, gradient and running estimate against the step-by-step loop."""
    name, options = DEVICE_LOOP_CONFIGS[config]
    torch.manual_seed(0)
    base = perturbed(get_cell(name)(input_size=5, hidden_size=6, num_layers=2, bidirectional=True, **options))
    base = base.double().train(training)
    x, lengths = torch.randn(5, 7, 5, dtype=torch.float64), torch.tensor([7, 3, 5, 1, 6])
    results = {}
    for which, device_loop in (("cpp", "1"), ("step", "0")):
        monkeypatch.setenv("RRN_FAST_CELLS_DEVICE_LOOP", device_loop)
        cell = copy.deepcopy(base)
        with fast.use_backend(which):
            results[which] = outputs_and_gradients(cell, x, lengths, training) + list(cell.buffers())
    for index, (actual, expected) in enumerate(zip(results["cpp"], results["step"], strict=True)):
        assert_relative(actual, expected, 1e-10, f"result {index}")


def test_no_ninja_falls_back_to_pure_pytorch_with_one_warning(monkeypatch):
    from torch.utils import cpp_extension

    monkeypatch.setattr(cpp_extension, "is_ninja_available", lambda: False)
    monkeypatch.setattr(fast, "_backend", None)
    monkeypatch.setattr(fast, "_built", None)
    monkeypatch.setattr(fast, "_forced", None)
    monkeypatch.delenv(fast.ENV, raising=False)
    with pytest.warns(RuntimeWarning, match="pure PyTorch.*ninja is not installed"):
        assert fast.backend() == "python"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        assert fast.backend() == "python"
        cell = get_cell("res_rnn")(input_size=3, hidden_size=4)
        assert cell(torch.randn(2, 5, 3))[0].shape == (2, 5, 4)


@pytest.mark.slow  # compiles the extension afresh
@requires_cpp
def test_a_compiler_without_openmp_still_builds_the_extension_for_one_thread(tmp_path):
    """The build tries OpenMP first; where the compiler refuses it, the same source builds without (a fresh
    extensions folder, in a subprocess: about 15 s of compiling)."""
    code = ("import warnings; warnings.simplefilter('error'); import torch;"
            "from rrn_app.cells.fast import backends as fast;"
            "fast.OPENMP_FLAG = '-fno-such-openmp-option';"  # what a compiler without OpenMP makes of -fopenmp
            "print(fast.backend(), torch.ops.rrn_fast_cells.parallel() if fast.backend() == 'cpp' else None)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    openmp_torch = fast._torch_uses_openmp()
    assert done.stdout.split() == ["cpp", "False" if openmp_torch else "True"]


def test_a_bad_switch_value_is_a_clear_error(monkeypatch):
    from rrn_app.option_checks import UserError

    monkeypatch.setattr(fast, "_backend", None)
    monkeypatch.setattr(fast, "_forced", None)
    monkeypatch.setenv(fast.ENV, "banana")
    with pytest.raises(UserError, match="RRN_FAST_CELLS='banana' is not a setting: 1 .*, 0 .* or step"):
        fast.backend()
    if cpp_available():
        monkeypatch.setenv("RRN_ONEDNN", "yes")
        with pytest.raises(RuntimeError, match="RRN_ONEDNN='yes' is not a setting: 1 \\(on\\) or 0 \\(off\\)"):
            fast.step_gemm(torch.zeros(256, 256), "cpp")


@pytest.mark.parametrize("setting, expected", [("0", "python"), pytest.param("step", "step", marks=pytest.mark.slow)])
def test_environment_variable_chooses_the_path_without_building(setting, expected):
    code = ("import warnings; warnings.simplefilter('error'); from rrn_app.cells import get_cell; import torch;"
            "from rrn_app.cells.fast import backends as fast;"
            "cell = get_cell('res_rnn')(input_size=3, hidden_size=4); cell(torch.randn(2, 5, 3));"
            "import torch.utils.cpp_extension as c; print(fast.backend(), hasattr(torch.ops.rrn_fast_cells, 'forward'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, fast.ENV: setting}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [expected, "False"]


def test_res_lstm_stochastic_depth_skips_the_dropped_layers():
    """A dropped layer computes nothing: at keep_prob 0.75, 12 layers run about 1 + 11 * 0.75 LSTMs per batch."""
    torch.manual_seed(0)
    cell = get_cell("res_lstm")(input_size=4, hidden_size=4, num_layers=12, keep_prob=0.75).train()
    runs = []
    for layer in cell.layers:
        layer.register_forward_hook(lambda module, args, output: runs.append(module))
    x = torch.randn(2, 3, 4)
    for _ in range(100):
        cell(x)
    assert 800 < len(runs) < 1050  # expected 925; keep_prob 1.0 would give 1200
    runs.clear()
    cell.eval()(x)
    assert len(runs) == 12
