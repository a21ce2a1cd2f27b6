"""The plugin fast path of `Recurrence` (rrn_app/cells/recurrence.py): a layer that writes `recurrent_step` gets
its step compiled, and the results are the plain step loop's — values, gradients, padding, both directions; a
compile that fails falls back to the loop with one warning; RRN_COMPILE_STEP=0 and `compile_step=False` turn it
off, and unset it compiles on CUDA only. The layer is the minGRU plugin of tests/mingru_plugin.py."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from mingru_plugin import MinGRU, MinGRULayer

from rrn_app.cells import recurrence
from rrn_app.cells.recurrence import Recurrence


def twin_stacks(**options):
    """The same minGRU stack twice, same weights: one compiling its steps, one on the plain loop."""
    torch.manual_seed(0)
    compiled = MinGRU(5, 6, compile_step=True, **options)
    plain = copy.deepcopy(compiled)
    for layer in plain.modules():
        if isinstance(layer, Recurrence):
            layer.compile_step = False
    return compiled, plain


def run_and_differentiate(model, x, lengths):
    x = x.clone().requires_grad_(True)
    outputs, state = model(x, lengths)
    ((outputs * torch.linspace(-1, 1, outputs.shape[-1])).sum() + state.square().sum()).backward()
    return outputs, state, x.grad, {name: p.grad for name, p in model.named_parameters()}


def fresh_layer_class():
    """A MinGRULayer subclass of its own: the fallback's one warning is per layer class."""
    return type("FreshMinGRULayer", (MinGRULayer,), {})


def test_a_layer_writing_recurrent_step_compiles_it_and_one_writing_step_does_not(monkeypatch):
    cpu = torch.zeros(1)
    monkeypatch.delenv(recurrence.COMPILE_VARIABLE, raising=False)  # auto: compiled on CUDA tensors only
    assert MinGRULayer(3, 4).step_path(cpu) == "loop"
    monkeypatch.setenv(recurrence.COMPILE_VARIABLE, "1")
    assert MinGRULayer(3, 4).step_path(cpu) == "compiled"
    assert MinGRULayer(3, 4, compile_step=False).step_path(cpu) == "loop"

    class StepLayer(MinGRULayer):
        def step(self, inputs, h, t, running):
            return self.recurrent_step(inputs, h)

    assert StepLayer(3, 4).step_path(cpu) == "loop"
    monkeypatch.setenv(recurrence.COMPILE_VARIABLE, "0")
    assert MinGRULayer(3, 4).step_path(cpu) == "loop"
    monkeypatch.setenv(recurrence.COMPILE_VARIABLE, "aot_eager")
    assert recurrence.compile_backend() == "aot_eager"


@pytest.mark.slow  # inductor builds C++ for the step: seconds to a minute the first time
def test_the_compiled_step_gives_the_plain_loops_values_and_gradients_over_padding_in_both_directions(monkeypatch):
    monkeypatch.setenv(recurrence.COMPILE_VARIABLE, "1")  # inductor on CPU too
    compiled, plain = twin_stacks(num_layers=2, bidirectional=True)
    x, lengths = torch.randn(4, 7, 5), torch.tensor([7, 3, 5, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no silent fall back to the loop
        got = run_and_differentiate(compiled, x, lengths)
    want = run_and_differentiate(plain, x, lengths)
    assert got[0][1, 3:].abs().max() == 0  # padding stays zero
    for a, b in zip(got[:3], want[:3]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert got[3].keys() == want[3].keys()
    for name in want[3]:
        torch.testing.assert_close(got[3][name], want[3][name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.slow
def test_the_compiled_step_without_padding_and_under_no_grad_gives_the_plain_loops_values(monkeypatch):
    monkeypatch.setenv(recurrence.COMPILE_VARIABLE, "1")  # inductor on CPU too
    compiled, plain = twin_stacks()
    x = torch.randn(3, 6, 5)
    got, want = run_and_differentiate(compiled, x, None), run_and_differentiate(plain, x, None)
    for a, b in zip(got[:3], want[:3]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x)[0], plain(x)[0], rtol=1e-5, atol=1e-6)


def test_a_compile_that_fails_falls_back_to_the_plain_loop_with_one_warning(monkeypatch):
    def broken_compile(function, **options):
        def call(*args):
            raise RuntimeError("inductor: no C++ compiler found\nmore detail")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setenv(recurrence.COMPILE_VARIABLE, "1")
    layer_class = fresh_layer_class()
    torch.manual_seed(0)
    layer = layer_class(5, 6)
    plain = copy.deepcopy(layer)
    plain.compile_step = False
    x, lengths = torch.randn(3, 4, 5), torch.tensor([4, 2, 3])
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler found.*plain step loop") as caught:
        outputs, _ = layer(x, lengths)
        layer_class(5, 6)(x)  # a second layer of the class: no second warning
    assert len([w for w in caught if "torch.compile" in str(w.message)]) == 1
    torch.testing.assert_close(outputs, plain(x, lengths)[0])
    assert layer.step_path(x) == "loop"


def test_an_unknown_compile_backend_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setenv(recurrence.COMPILE_VARIABLE, "no_such_backend")
    layer = fresh_layer_class()(5, 6)
    with pytest.warns(RuntimeWarning, match="no_such_backend"):
        outputs, _ = layer(torch.randn(2, 3, 5))
    assert outputs.shape == (2, 3, 6)


def test_a_step_that_is_wrong_raises_its_own_error_not_a_fallback_warning(monkeypatch):
    monkeypatch.setenv(recurrence.COMPILE_VARIABLE, "eager")  # dynamo on, no code generation: quick

    class Wrong(MinGRULayer):
        def recurrent_step(self, inputs, h):
            return inputs @ h  # [b, 2h] @ [b, h]: a shape error of the step itself

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
            Wrong(5, 6)(torch.randn(2, 3, 5))


def test_a_copy_of_a_compiled_layer_leaves_the_compiled_step_behind(monkeypatch):
    monkeypatch.setenv(recurrence.COMPILE_VARIABLE, "eager")
    layer = MinGRULayer(5, 6)
    layer(torch.randn(2, 3, 5))
    assert "_compiled" in layer.__dict__
    assert "_compiled" not in copy.deepcopy(layer).__dict__


@pytest.mark.slow  # dynamo traces the step for each of the kit's shapes and dtypes
def test_the_minGRU_plugin_on_the_compiled_path_keeps_the_cell_contract(monkeypatch):
    """rrn's contract kit (padding, state, gradients, dropout, state_dict...) through dynamo's compiled step; the
    eager backend keeps the kit's many shapes and dtypes quick to compile."""
    from rrn_app.testing import check_cell

    monkeypatch.setenv(recurrence.COMPILE_VARIABLE, "eager")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        check_cell(MinGRU)
