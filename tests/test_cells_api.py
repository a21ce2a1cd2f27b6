"""The public API for writing a cell (`rrn_app.cells`): the padding helpers, the option checks, and the plugin
guide's worked example of a wrapped third-party layer, which must keep the cell contract as printed."""

from __future__ import annotations

import inspect
import re

import pytest
import torch

import rrn_app.cells as cells
from helpers import REPO
from rrn_app import option_checks
from rrn_app.cells import registry, sequence
from rrn_app.testing import CellContractError, check_cell, contract_results

BUILT_IN = ["rnn", "lstm", "gru", "res_lstm", "res_rnn", "gres_rnn", "rrn"]


# --- padding helpers -------------------------------------------------------------------------------------------------


def test_mask_padding_zeroes_every_position_past_each_length_and_keeps_the_rest():
    outputs = torch.randn(3, 5, 2, 4, dtype=torch.float64, requires_grad=True)  # extra feature dimensions too
    lengths = torch.tensor([5, 2, 1])
    masked = cells.mask_padding(outputs, lengths)
    for row, length in enumerate(lengths.tolist()):
        assert torch.equal(masked[row, :length], outputs[row, :length])
        assert torch.all(masked[row, length:] == 0)
    masked.sum().backward()
    assert outputs.grad[1, 2:].abs().sum() == 0 and torch.all(outputs.grad[1, :2] == 1)  # no gradient from padding
    assert cells.mask_padding(outputs, None) is outputs


def test_last_step_reads_each_sequence_at_its_own_length():
    sequence_ = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    lengths = torch.tensor([2, 4], dtype=torch.int32)  # any integer dtype
    assert torch.equal(cells.last_step(sequence_, lengths), torch.stack([sequence_[0, 1], sequence_[1, 3]]))
    assert torch.equal(cells.last_step(sequence_, None), sequence_[:, -1])


def test_reverse_padded_reverses_within_each_length_keeps_the_padding_and_is_its_own_inverse():
    x = torch.arange(1.0, 6.0).view(1, 5, 1).repeat(2, 1, 1)
    lengths = torch.tensor([5, 3])
    reversed_x = cells.reverse_padded(x, lengths)
    assert reversed_x[:, :, 0].tolist() == [[5, 4, 3, 2, 1], [3, 2, 1, 4, 5]]
    assert torch.equal(cells.reverse_padded(reversed_x, lengths), x)
    assert torch.equal(cells.reverse_padded(x, None), x.flip(1))


def test_check_lengths_refuses_a_length_of_zero_and_returns_none_without_padding():
    x = torch.zeros(3, 4, 2)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 4\]"):
        cells.check_lengths(x, torch.tensor([4, 0, 2]))
    with pytest.raises(ValueError, match="lengths must lie in"):
        cells.check_lengths(x, torch.tensor([5, 1, 2]))
    with pytest.raises(ValueError, match=r"shape \[batch\]=3"):
        cells.check_lengths(x, torch.tensor([4, 1]))
    assert cells.check_lengths(x, torch.tensor([4, 4, 4])) is None  # nothing padded: the unpadded path
    given = torch.tensor([4, 1, 2], dtype=torch.int32)
    assert cells.check_lengths(x, given) is given


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_built_in_cell_refuses_a_zero_length_and_takes_any_integer_dtype(name):
    cell = cells.build_cell({"name": name, "hidden_size": 3, "num_layers": 2}, input_size=2).eval()
    x = torch.randn(3, 4, 2)
    with pytest.raises(ValueError, match="lengths must lie in"):
        cell(x, torch.tensor([4, 0, 2]))
    expected, _ = cell(x, torch.tensor([4, 1, 2]))
    for dtype in (torch.int32, torch.int16):
        outputs, _ = cell(x, torch.tensor([4, 1, 2], dtype=dtype))
        assert torch.equal(outputs, expected), dtype


def test_detach_state_keeps_the_layout_and_cuts_the_graph():
    h = torch.randn(2, 3, 4, requires_grad=True)
    state = (h * 2, [h * 3, h * 4])
    detached = cells.detach_state(state)
    assert isinstance(detached, tuple) and isinstance(detached[1], list)
    assert not detached[0].requires_grad and not detached[1][1].requires_grad
    assert cells.detach_state(None) is None


def test_the_sequence_module_defines_everything_before_listing_it():
    source = inspect.getsource(sequence)
    assert source.rstrip().endswith("]") and "__all__" in source.split("def ")[-1]  # __all__ comes last
    assert {"detach_state", "mask_padding", "last_step", "reverse_padded", "check_lengths"} <= set(sequence.__all__)
    assert all(hasattr(sequence, name) for name in sequence.__all__)


# --- the option checks ---------------------------------------------------------------------------------------------

CHECKS = ["one_of", "positive_int", "positive_float", "non_negative_float", "dropout_rate", "keep_probability"]


def test_rrn_app_cells_exports_the_option_checks_each_with_a_docstring():
    for name in [*CHECKS, "InvalidOption", "UserError"]:
        assert getattr(cells, name) is getattr(option_checks, name), name
        assert inspect.getdoc(getattr(cells, name)), f"{name} has no docstring"
        assert name in cells.__all__


@pytest.mark.parametrize(("check", "good", "returned", "bad"), [
    (lambda v: cells.positive_int("n", v), 3, 3, [0, -1, 2.5, True]),
    (lambda v: cells.positive_float("gain", v), 2, 2.0, [0, -0.1, "1", False]),
    (lambda v: cells.non_negative_float("decay", v), 0, 0.0, [-1e-9, None]),
    (lambda v: cells.dropout_rate("dropout", v), 0.0, 0.0, [1.0, -0.1, 1.5]),
    (lambda v: cells.keep_probability("keep_prob", v), 1, 1.0, [0.0, 1.01]),
    (lambda v: cells.one_of("activation", v, ("relu", "tanh")), "tanh", "tanh", ["sigmoid", None]),
])
def test_each_option_check_returns_a_good_value_and_refuses_a_bad_one_in_one_line(check, good, returned, bad):
    result = check(good)
    assert result == returned and type(result) is type(returned)
    for value in bad:
        with pytest.raises(cells.InvalidOption) as error:
            check(value)
        assert isinstance(error.value, cells.UserError) and "\n" not in str(error.value)
        assert str(error.value).startswith(f"{error.value.option}={value!r} is not allowed: ")


# --- the plugin guide's worked example ---------------------------------------------------------------------------


def guide_example() -> str:
    """The python block of docs/cells.md that defines the wrapped third-party layer (the `sru` cell)."""
    text = (REPO / "docs" / "cells.md").read_text()
    blocks = [block for block in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "class TinySRU" in block]
    assert len(blocks) == 1, "docs/cells.md should hold one `sru` example"
    return blocks[0]


@pytest.fixture
def sru():
    """The guide's example run as printed; its `sru` cell registered for the test only."""
    namespace: dict = {"__name__": "rrn_sru_guide"}
    exec(compile(guide_example(), "docs/cells.md (sru)", "exec"), namespace)
    try:
        yield namespace
    finally:
        registry._CELLS.pop("sru", None)


def test_the_guides_wrapped_third_party_layer_keeps_the_cell_contract(sru):
    check_cell("sru")
    check_cell("sru", bidirectional=True, num_layers=3, dropout=0.25)
    check_cell("sru", num_layers=1)


def test_the_guides_wrapper_converts_a_time_major_layer_and_its_state(sru):
    cell = cells.build_cell({"name": "sru", "hidden_size": 4, "num_layers": 2, "bidirectional": True}, input_size=3)
    x, lengths = torch.randn(5, 7, 3), torch.tensor([7, 2, 7, 5, 1])
    outputs, state = cell.eval()(x, lengths)
    assert outputs.shape == (5, 7, 8) and state.shape == (4, 5, 4)  # PyTorch's layout, not the layer's [2, 5, 8]
    _, c = cell.layer(x[:1].transpose(0, 1))  # the layer's own state for the full-length first sequence
    assert torch.allclose(state[:, 0], c[:, 0].view(2, 2, 4).reshape(4, 4), atol=1e-6)


def test_the_shortcut_the_guide_warns_of_fails_the_contract_where_it_says(sru):
    class MaskedAfterwards(sru["SRU"]):
        def forward(self, x, lengths=None, state=None):
            outputs, final = self.run(x, state)  # over the padding, then zeroed
            return cells.mask_padding(outputs, lengths), final

    broken = {result.rule for result in contract_results(MaskedAfterwards) if not result.passed}
    assert broken == {"padding: final state", "padding (bidirectional): outputs before each length"}
    with pytest.raises(CellContractError, match="padding"):
        check_cell(MaskedAfterwards)


# --- an option the chosen cell does not have ---------------------------------------------------------------------


@pytest.mark.parametrize("arguments", [["cell=res_lstm", "cell.residual=true"],
                                       ["--cfg", "job", "cell=res_lstm", "cell.residual=true"]])
def test_an_option_of_other_cells_names_the_known_ones_and_the_cells_that_have_it(arguments):
    from rrn_app.command_line import preflight

    with pytest.raises(cells.UserError) as error:
        preflight(arguments)
    message = str(error.value)
    assert message.startswith("unknown option cell.residual. Known options of cell (res_lstm): bidirectional, "
                              "dropout, hidden_size, keep_prob, name, num_layers, timestep_keep_prob.")
    assert message.endswith("The cells with a residual option: gres_rnn, gru, lstm, res_rnn, rnn.")
    assert "not in struct" not in message


def test_a_misspelt_option_still_names_the_closest_under_cfg():
    from rrn_app.command_line import preflight

    with pytest.raises(cells.UserError, match=r"unknown option cell.hiden_size. Did you mean cell.hidden_size\?"):
        preflight(["--cfg", "job", "cell=lstm", "cell.hiden_size=10"])


# --- names that say what they are ----------------------------------------------------------------------------------


def test_the_music_data_docstring_names_what_exists_and_the_lowest_note_is_defined_once():
    from rrn_app import music_stats
    from rrn_app.data import music

    named = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", music.__doc__))
    defined = {name for name in named if hasattr(music, name)}
    assert {"WindowSampler", "PieceWindows"} <= defined and "windowed_batches" not in named
    assert music_stats.LOWEST_NOTE is music.LOWEST_NOTE == 21
    assert "LOWEST_NOTE =" not in inspect.getsource(music_stats)
