"""The Triton kernels of res_rnn and gres_rnn (rrn_app/cells/fast/triton_kernel.py) give what the step-by-step
oracles of reference.py give — outputs, final states and the gradients of the input, the initial state and every
weight — run by Triton's interpreter on CPU tensors, so no GPU is needed; and they compile for a Hopper GPU.

float32 at 1e-5 of each tensor's scale: the kernels do the oracle's arithmetic in float32 in another order (the
products as tl.dot's IEEE float32 sums, tanh from exp), which moves results by a few float32 roundings per step
(about 1e-7 relative here), far below 1e-5; a wrong term (a missing shortcut, gate or padding rule) moves them by
O(1). Sizes are small (B=3, T=5, H=16-24) because the interpreter runs every block operation in numpy.
"""

from __future__ import annotations

import importlib.util
import itertools
import os

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed (pip install 'rrn[triton]'): the Triton kernels of "
                                     "res_rnn/gres_rnn are not tested here")

from rrn_app.cells import get_cell, reference  # noqa: E402
from rrn_app.cells.fast import backends  # noqa: E402

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "identity": reference.identity}
CONFIGS = {
    "res_rnn": ("res_rnn", {}),
    "res_rnn linear relu tanh": ("res_rnn", dict(projection="linear", activation="relu", output_activation="tanh")),
    "gres_rnn": ("gres_rnn", {}),
    "gres_rnn linear tanh": ("gres_rnn", dict(projection="linear", output_activation="tanh")),
    "gres_rnn relu": ("gres_rnn", dict(activation="relu")),
}
KERNEL_FILE = backends.CSRC.parent / "triton_kernel.py"


def load_kernel_module(name: str, interpret: bool):
    """A fresh copy of triton_kernel.py; whether Triton interprets its kernels is decided as they are decorated, by
    TRITON_INTERPRET at import, so it is set (or unset) just for that."""
    previous = os.environ.pop("TRITON_INTERPRET", None)
    if interpret:
        os.environ["TRITON_INTERPRET"] = "1"
    try:
        spec = importlib.util.spec_from_file_location(name, KERNEL_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        os.environ.pop("TRITON_INTERPRET", None)
        if previous is not None:
            os.environ["TRITON_INTERPRET"] = previous
    return module


@pytest.fixture
def kernels(monkeypatch):
    """The interpreted kernels, in place of the module backends.py would import, counting their calls."""
    module = load_kernel_module("rrn_triton_interpreted", interpret=True)
    assert module.INTERPRETED
    module.calls = {"forward": 0, "backward": 0}
    for name in ("forward", "backward"):
        def counted(*args, _run=getattr(module, name), _name=name):
            module.calls[_name] += 1
            return _run(*args)
        monkeypatch.setattr(module, name, counted)
    monkeypatch.setattr(backends, "_triton", module)
    with backends.use_backend("triton"):
        yield module


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


def assert_relative(actual, expected, what, tolerance=1e-5):
    """|actual - expected| <= tolerance * max |expected| (the module docstring says why 1e-5)."""
    assert actual.shape == expected.shape, what
    scale = expected.abs().max().clamp(min=1e-30)
    error = (actual - expected).abs().max()
    assert error <= tolerance * scale, f"{what}: max error {error:.3g} > {tolerance} x max |expected| {scale:.3g}"


def check_against_reference(layer, lengths, batch=3, steps=5, inputs=4):
    """The layer (on whatever backend is forced) against the oracle run on each sequence alone, up to its length,
    on the layer's device and in its dtype."""
    H, like = layer.hidden_size, dict(dtype=layer.weight_hh.dtype, device=layer.weight_hh.device)
    x = torch.randn(batch, steps, inputs, **like, requires_grad=True)
    s0 = torch.randn(batch, H, **like, requires_grad=True)
    out_weights, state_weights = torch.randn(batch, steps, H, **like), torch.randn(batch, H, **like)
    parameters = [x, s0, *layer.parameters()]
    outputs, final = layer(x, lengths, s0)
    grads = torch.autograd.grad((outputs * out_weights).sum() + (final * state_weights).sum(), parameters)

    full = torch.full((batch,), steps) if lengths is None else lengths
    expected_outputs, expected_final, loss = torch.zeros(batch, steps, H, **like), [], 0.0
    for row, length in enumerate(full.tolist()):
        sequence_outputs, s_T = oracle(layer, x[row:row + 1, :length], s0[row:row + 1])
        expected_outputs[row, :length] = sequence_outputs[0].detach()
        expected_final.append(s_T.detach())
        loss = loss + (sequence_outputs[0] * out_weights[row, :length]).sum() + (s_T[0] * state_weights[row]).sum()
    expected_grads = torch.autograd.grad(loss, parameters)

    assert_relative(outputs, expected_outputs, "outputs")
    assert_relative(final, torch.cat(expected_final), "final state")
    names = ["x", "s0"] + [name for name, _ in layer.named_parameters()]
    for name, actual, expected in zip(names, grads, expected_grads, strict=True):
        assert_relative(actual, expected, f"d/d{name}")


def make_layer(config, hidden_size=16, inputs=4, **extra):
    name, options = CONFIGS[config]
    torch.manual_seed(0)
    return perturbed(get_cell(name)(input_size=inputs, hidden_size=hidden_size, **options, **extra)).layers[0][0]


@pytest.mark.parametrize("padded", [False, True], ids=["full length", "padded"])
@pytest.mark.parametrize("config", CONFIGS)
def test_persistent_kernel_matches_the_reference(config, padded, kernels):
    """One launch for the whole sequence, the weights held across steps: values and every gradient."""
    layer = make_layer(config)
    assert kernels.fits_on_chip(layer.fast_spec, layer.hidden_size)
    check_against_reference(layer, torch.tensor([5, 2, 4]) if padded else None)
    assert kernels.calls == {"forward": 1, "backward": 1}  # the Triton kernels ran, not a fallback


@pytest.mark.parametrize("config", ["res_rnn linear relu tanh", "gres_rnn", "gres_rnn linear tanh"])
def test_stepwise_kernel_matches_the_reference(config, kernels, monkeypatch):
    """One launch a step over tiles of sequences x hidden units (forced here with 16-wide tiles, so H=24 spans two
    tiles of hidden units, the second partly past H, and the product two chunks of the state), padded."""
    monkeypatch.setattr(kernels, "ON_CHIP_LIMIT", 0)
    monkeypatch.setattr(kernels, "BLOCK_N", 16)
    monkeypatch.setattr(kernels, "BLOCK_K", 16)
    layer = make_layer(config, hidden_size=24)
    assert not kernels.fits_on_chip(layer.fast_spec, layer.hidden_size)
    check_against_reference(layer, torch.tensor([5, 1, 3]))
    assert kernels.calls == {"forward": 1, "backward": 1}


def test_inference_keeps_only_the_states(kernels):
    """Without autograd the kernels keep no activations, and give the states the training call gives."""
    layer = make_layer("gres_rnn linear tanh")
    x, lengths = torch.randn(3, 5, 4), torch.tensor([5, 3, 4])
    with torch.no_grad():
        outputs, final = layer(x, lengths)
    expected_outputs, expected_final = layer(x, lengths)
    assert kernels.calls == {"forward": 2, "backward": 0}
    torch.testing.assert_close(outputs, expected_outputs.detach(), rtol=0, atol=0)
    torch.testing.assert_close(final, expected_final.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("persistent", [True, False], ids=["persistent", "stepwise"])
def test_a_float16_weight_rounds_only_the_products_operands(persistent, kernels, monkeypatch):
    """Under autocast the weight comes in float16 (precision.py): the kernels equal the float32 loop run with that
    same weight widened, within what rounding the state to float16 for each product moves (2^-11 relative per
    rounding; 4e-3 of each tensor's scale allows 8 of them; a wrong term moves results by O(1))."""
    from rrn_app.cells.fast import loop
    from rrn_app.cells.fast.spec import RecurrenceSpec

    if not persistent:
        monkeypatch.setattr(kernels, "ON_CHIP_LIMIT", 0)
        monkeypatch.setattr(kernels, "BLOCK_N", 16)
        monkeypatch.setattr(kernels, "BLOCK_K", 16)
    spec = RecurrenceSpec("tanh", "tanh", "linear", gated=True)
    torch.manual_seed(0)
    T, B, H = 5, 3, 24
    xp, s0 = torch.randn(T, B, spec.input_width(H)), 0.5 * torch.randn(B, H)
    weight = (0.3 * torch.randn(spec.recurrent_rows(H), H)).half()
    mask = (torch.arange(T)[:, None] < torch.tensor([5, 1, 3])[None, :])[:, :, None]
    assert kernels.supports(spec, xp, s0, weight, None)
    expected = loop.forward(spec, xp, s0, weight.float(), mask, True)
    actual = kernels.forward(spec, xp, s0, weight, mask, True)
    assert_relative(actual.states, expected.states, "states", 4e-3)
    grad = torch.randn(T, B, H)
    expected_grads = loop.backward(spec, grad, expected.states, expected.acts, expected.gates, weight.float(), mask)
    actual_grads = kernels.backward(spec, grad, actual.states, actual.acts, actual.gates, weight, mask)
    assert actual_grads.weight.dtype == torch.float16  # dL/dW in the weight's dtype, as the ATen loop gives it
    for name, got, want in zip(("xp", "s0", "weight"), actual_grads[:3], expected_grads[:3]):
        assert_relative(got.float(), want, f"d/d{name}", 4e-3)


def test_under_autocast_a_layer_runs_the_kernels_with_its_half_precision_weight(kernels, monkeypatch):
    """torch.autocast to float16 (RRN_AUTOCAST_GEMM=1: float16 GEMMs even where the CPU has none natively): the
    kernels get the float16 weight and give what the ATen loop gives under the same autocast, within 4e-3 of each
    tensor's scale (the loop rounds each product to float16 once more, 2^-11 relative)."""
    monkeypatch.setenv("RRN_AUTOCAST_GEMM", "1")
    layer = make_layer("gres_rnn linear tanh", hidden_size=24)
    x, lengths = torch.randn(3, 5, 4), torch.tensor([5, 2, 4])
    weights = []
    run = kernels.forward
    monkeypatch.setattr(kernels, "forward", lambda *args: weights.append(args[3].dtype) or run(*args))
    results = {}
    for which in ("triton", "python"):
        with backends.use_backend(which), torch.autocast("cpu", dtype=torch.float16):
            outputs, final = layer(x, lengths)
            grads = torch.autograd.grad(outputs.float().sum() + final.float().sum(), list(layer.parameters()))
        results[which] = (outputs, final, *grads)
    assert weights == [torch.float16]  # the triton run reached the kernels with autocast's weight
    names = ["outputs", "final state"] + [f"d/d{name}" for name, _ in layer.named_parameters()]
    for name, actual, expected in zip(names, results["triton"], results["python"], strict=True):
        assert_relative(actual.float(), expected.float(), name, 4e-3)


@pytest.mark.parametrize("case", ["batch norm", "float64"])
def test_calls_the_kernels_do_not_cover_run_on_the_aten_loop(case, kernels):
    """Recurrent batch norm (statistics across the whole batch) and float64 stay on the C++/Python loop, correct."""
    if case == "batch norm":
        layer = make_layer("gres_rnn", batch_norm=True)
        x, s0 = torch.randn(3, 5, 4), torch.randn(3, 16)
        W, W_g = layer.weight_ih.chunk(2)
        U, U_g = layer.weight_hh.chunk(2)
        b, b_g = layer.bias.chunk(2)
        gamma, gamma_g = layer.norm.weight.chunk(2)
        expected, _ = reference.gres_rnn(x, W, U, b, W_g, U_g, b_g, s0=s0, gamma=gamma, gamma_g=gamma_g)
        outputs, _ = layer(x, None, s0)
        assert_relative(outputs, expected, "outputs")
    else:
        layer = make_layer("res_rnn").double()
        check_against_reference(layer, torch.tensor([5, 2, 4]))
    assert kernels.calls == {"forward": 0, "backward": 0}


def test_rrn_fast_cells_triton_forces_the_kernels(monkeypatch):
    monkeypatch.setattr(backends, "_backend", None)
    monkeypatch.setattr(backends, "_forced", None)
    monkeypatch.setenv(backends.ENV, "triton")
    assert backends.backend() == "triton"


def test_forcing_the_kernels_where_triton_does_not_import_is_one_clear_error(monkeypatch):
    from rrn_app.option_checks import UserError

    monkeypatch.setattr(backends, "_triton", "ModuleNotFoundError: No module named 'triton'")
    assert not backends.backend_available("triton")
    with pytest.raises(UserError, match=r"need triton, which does not import here .*pip install 'rrn\[triton\]'"):
        backends.use_backend("triton")
    monkeypatch.setattr(backends, "_backend", None)
    monkeypatch.setattr(backends, "_forced", None)
    monkeypatch.setenv(backends.ENV, "triton")
    with pytest.raises(UserError, match=r"pip install 'rrn\[triton\]', or unset RRN_FAST_CELLS=triton"):
        backends.backend()


def test_cpu_tensors_stay_on_their_backend_without_the_interpreter():
    """Not forced, a CPU call keeps the process's backend (the Triton kernels are for CUDA tensors)."""
    layer = make_layer("res_rnn")
    xp, s0 = torch.zeros(5, 3, 16), torch.zeros(3, 16)
    weight = layer.weight_hh.detach()
    for which in ("cpp", "python"):
        assert backends.kernel_for(layer.fast_spec, which, xp, s0, weight, None) == which


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the interpreter tests above run anywhere)")
@pytest.mark.parametrize("config, hidden_size", [("res_rnn", 128), ("gres_rnn linear tanh", 64),
                                                 ("gres_rnn", 200), ("res_rnn linear relu tanh", 512)])
def test_on_a_gpu_cuda_layers_choose_the_kernels_and_match_the_reference(config, hidden_size, monkeypatch):
    """Not forced: a CUDA layer runs the compiled kernels (persistent up to the on-chip limit, stepwise beyond),
    values and gradients as the reference computes them on the same GPU (IEEE float32 products on both sides);
    forced to another backend, it stays there."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    module = backends.triton_kernels()
    assert not module.INTERPRETED
    layer = make_layer(config, hidden_size=hidden_size).cuda()
    xp, s0 = torch.zeros(5, 3, layer.weight_ih.shape[0], device="cuda"), torch.zeros(3, hidden_size, device="cuda")
    weight = layer.weight_hh.detach() if layer.weight_im is None else torch.cat([layer.weight_hh, layer.weight_im])
    assert backends.kernel_for(layer.fast_spec, backends.backend(), xp, s0, weight.detach(), None) == "triton"
    with backends.use_backend("python"):  # forced, another backend keeps the call (rrn-bench backend=cpp,triton)
        assert backends.kernel_for(layer.fast_spec, "python", xp, s0, weight.detach(), None) == "python"
    calls = {"forward": 0, "backward": 0}
    for name in calls:
        def counted(*args, _run=getattr(module, name), _name=name):
            calls[_name] += 1
            return _run(*args)
        monkeypatch.setattr(module, name, counted)
    check_against_reference(layer, torch.tensor([5, 2, 4]))
    assert calls == {"forward": 1, "backward": 1}


@pytest.mark.slow
def test_kernels_compile_for_a_hopper_gpu():
    """The compiled (not interpreted) kernels lower to a cubin for sm_90 with Triton's own toolchain — no GPU is
    needed to compile — for both sides of every option: gated, linear projection, tanh output, padding, with a
    float32 weight and with a bfloat16 one (autocast's, whose values the interpreter cannot check: its bfloat16
    tl.dot is wrong, so `supports` keeps such calls on the ATen loop there); and relu, the identity shortcut and
    output, no padding."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    module = load_kernel_module("rrn_triton_compiled", interpret=False)
    assert not module.INTERPRETED
    richest = dict(RELU=False, OUT_TANH=True, GATED=True, LINEAR=True, HAS_MASK=True, PRECISION="ieee")
    plainest = dict(RELU=True, OUT_TANH=False, GATED=False, LINEAR=False, HAS_MASK=False, PRECISION="tf32")
    for (kernel, pointers, constants, warps), (flags, weight_type) in itertools.product((
            (module._forward_persistent, 6, dict(SAVE=True, BB=16, HP=64), 8),
            (module._backward_persistent, 8, dict(BB=16, HP=64), 8),
            (module._forward_step, 6, dict(SAVE=True, BB=16, BN=64, BK=32), 4),
            (module._backward_step, 9, dict(BB=16, BN=64, BK=32), 4)),
            ((richest, "*fp32"), (richest, "*bf16"), (plainest, "*fp32"))):
        constants = {**flags, **constants}
        names = kernel.arg_names
        runtime = [name for name in names if name not in constants]
        signature = {name: ("*u8" if name == "mask" else "*fp32") if index < pointers else "i32"
                     for index, name in enumerate(runtime)}
        signature["weight"] = weight_type
        signature.update({name: "constexpr" for name in constants})
        source = ASTSource(kernel, signature, constexprs={(names.index(k),): v for k, v in constants.items()})
        compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=warps, enable_fp_fusion=True))
        assert compiled.asm["cubin"], (kernel.__name__, weight_type)
