"""The cell conformance kit (rrn_app.testing.check_cell): every built-in cell and the IndRNN plugin keep the cell
contract, and a cell that breaks one rule is caught by that rule, named, with how far off it is.

The cells under test at the bottom are a minGRU (Feng et al. 2024, "Were RNNs All We Needed?": z_t = σ(W_z x_t),
h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ W_h x_t), written as a plain nn.Module the way a plugin author would: `MinGRU`
keeps the contract, and each subclass breaks exactly one rule.
"""

from __future__ import annotations


import pytest
import torch
from torch import nn

from helpers import run_cli
from rrn_app import option_checks
from rrn_app.cells import registry
from rrn_app.cells.cli import main as rrn_cells
from rrn_app.cells.stack import reverse_within_lengths
from rrn_app.testing import RULES, CellContractError, check_cell, contract_results
from indrnn_source import indrnn_registered  # noqa: F401 (autouse: the plugin from its source)

BUILT_IN = [
    ("rnn", {}), ("lstm", {}), ("gru", {}), ("res_lstm", {}), ("rrn", {}), ("res_rnn", {}), ("gres_rnn", {}),
    ("lstm", {"bidirectional": True, "num_layers": 2}), ("gru", {"num_layers": 2, "residual": True}),
    ("rnn", {"nonlinearity": "relu", "bidirectional": True}),
    ("res_lstm", {"bidirectional": True, "keep_prob": 0.75, "timestep_keep_prob": 0.8}),
    ("rrn", {"layer_sizes": [4, 4, 6]}), ("rrn", {"peephole": True, "num_layers": 2}),
    ("res_rnn", {"num_layers": 2, "batch_norm": True}), ("res_rnn", {"projection": "linear", "residual": True}),
    ("gres_rnn", {"bidirectional": True, "batch_norm": True, "output_activation": "tanh"}),
]


@pytest.mark.parametrize(("name", "options"), BUILT_IN, ids=lambda value: str(value))
def test_every_built_in_cell_keeps_the_contract(name, options):
    results = check_cell(name, **options)
    assert [result.rule for result in results] == list(RULES) and all(result.passed for result in results)


def test_the_indrnn_plugin_keeps_the_contract():
    check_cell("indrnn")
    check_cell("indrnn", bidirectional=True, residual=True, activation="tanh")


# --- a plain nn.Module cell, and one broken variant per rule ---------------------------------------------------------


class MinGRU(nn.Module):
    """minGRU as a plain nn.Module that keeps the contract: it stops each sequence at its length and zeroes the rest.

    Options:
        hidden_size: width of h_t
        dropout: dropout probability on the outputs, in training
        bidirectional: a second minGRU reads each sequence backwards
    """

    def __init__(self, input_size: int, hidden_size: int, dropout: float = 0.0, bidirectional: bool = False):
        super().__init__()
        self.hidden_size = option_checks.positive_int("hidden_size", hidden_size)
        self.dropout = option_checks.dropout_rate("dropout", dropout)
        self.bidirectional = bool(option_checks.one_of("bidirectional", bidirectional, (False, True)))
        self.num_layers, directions = 1, 2 if bidirectional else 1
        self.output_size = hidden_size * directions
        self.gates = nn.ModuleList(nn.Linear(input_size, 2 * hidden_size) for _ in range(directions))

    def run(self, direction: int, x, lengths, h):
        z, candidate = self.gates[direction](x).chunk(2, dim=-1)
        z = torch.sigmoid(z)
        running = torch.ones(x.shape[:2], dtype=torch.bool) if lengths is None else \
            torch.arange(x.shape[1])[None, :] < lengths[:, None]
        outputs = []
        for t in range(x.shape[1]):
            h = torch.where(running[:, t, None], (1 - z[:, t]) * h + z[:, t] * candidate[:, t], h)
            outputs.append(h * running[:, t, None])
        return torch.stack(outputs, dim=1), h

    def forward(self, x, lengths=None, state=None):
        outputs, finals = [], []
        for direction in range(len(self.gates)):
            h = x.new_zeros(x.shape[0], self.hidden_size) if state is None else state[direction]
            inputs = x if direction == 0 else reverse_within_lengths(x, lengths)
            output, final = self.run(direction, inputs, lengths, h)
            outputs.append(output if direction == 0 else reverse_within_lengths(output, lengths))
            finals.append(final)
        outputs = torch.cat(outputs, dim=-1)
        return nn.functional.dropout(outputs, self.dropout, self.training), torch.stack(finals)


class LeaksPadding(MinGRU):
    """The cell the issue tried: it ignores `lengths` and runs over the padded steps."""

    def forward(self, x, lengths=None, state=None):
        return super().forward(x, None, state)


class MasksOutputsOnly(MinGRU):
    """Zeroes the outputs past each length but keeps running the state over the padding."""

    def forward(self, x, lengths=None, state=None):
        outputs, state = super().forward(x, None, state)
        if lengths is not None:
            outputs = outputs * (torch.arange(x.shape[1])[None, :, None] < lengths[:, None, None])
        return outputs, state


class IgnoresState(MinGRU):
    def forward(self, x, lengths=None, state=None):
        return super().forward(x, lengths, None)


class RandomInEval(MinGRU):
    def forward(self, x, lengths=None, state=None):
        outputs, state = super().forward(x, lengths, state)
        return outputs + 1e-3 * torch.randn_like(outputs) * (outputs != 0), state


class DropoutAlways(MinGRU):
    def forward(self, x, lengths=None, state=None):
        outputs, state = super().forward(x, lengths, state)
        return nn.functional.dropout(outputs, self.dropout, training=True), state


class DropoutNever(MinGRU):
    def forward(self, x, lengths=None, state=None):
        training, self.training = self.training, False
        try:
            return super().forward(x, lengths, state)
        finally:
            self.training = training


class UnusedParameter(MinGRU):
    def __init__(self, input_size: int, hidden_size: int, dropout: float = 0.0, bidirectional: bool = False):
        super().__init__(input_size, hidden_size, dropout, bidirectional)
        self.forget = nn.Parameter(torch.zeros(hidden_size))  # declared, never used


class ScaleNotInStateDict(MinGRU):
    def __init__(self, input_size: int, hidden_size: int, dropout: float = 0.0, bidirectional: bool = False):
        super().__init__(input_size, hidden_size, dropout, bidirectional)
        self.scale = torch.rand(hidden_size)  # a plain attribute: neither a parameter nor a buffer

    def forward(self, x, lengths=None, state=None):
        outputs, state = super().forward(x, lengths, state)
        return outputs * self.scale.to(outputs.dtype).repeat(len(self.gates)), state


class BatchFirstState(MinGRU):
    def forward(self, x, lengths=None, state=None):
        outputs, state = super().forward(x, lengths, None if state is None else state.transpose(0, 1))
        return outputs, state.transpose(0, 1)  # [batch, directions, hidden]


class NoOutputSize(MinGRU):
    def __init__(self, input_size: int, hidden_size: int, dropout: float = 0.0, bidirectional: bool = False):
        super().__init__(input_size, hidden_size, dropout, bidirectional)
        del self.output_size


class AcceptsAnything(MinGRU):
    def __init__(self, input_size: int, hidden_size: int, dropout: float = 0.0, bidirectional: bool = False):
        nn.Module.__init__(self)
        self.hidden_size, self.dropout, self.bidirectional, self.num_layers = hidden_size, dropout, bidirectional, 1
        directions = 2 if bidirectional else 1
        self.output_size = hidden_size * directions
        self.gates = nn.ModuleList(nn.Linear(input_size, 2 * hidden_size) for _ in range(directions))


def test_a_plain_module_that_keeps_the_contract_passes():
    check_cell(MinGRU)
    check_cell(MinGRU, bidirectional=True, dropout=0.2)


def failures(cell, **options) -> dict[str, CellContractError]:
    return {result.rule: result.error for result in contract_results(cell, **options) if not result.passed}


def test_a_cell_that_leaks_padding_fails_and_says_by_how_much():
    with pytest.raises(CellContractError, match="'padding: zeros after each length' broken") as error:
        check_cell(LeaksPadding)
    assert error.value.rule == "padding: zeros after each length" and error.value.difference > 1e-3
    assert "padding (bidirectional): outputs before each length" in str(error.value)  # also broken
    broken = failures(LeaksPadding)
    assert set(broken) == {"padding: zeros after each length", "padding (bidirectional): outputs before each length"}
    assert broken["padding (bidirectional): outputs before each length"].difference > 1e-3


def test_a_state_run_over_the_padding_fails_the_final_state_rule():
    broken = failures(MasksOutputsOnly)
    assert set(broken) == {"padding: final state", "padding (bidirectional): outputs before each length"}
    assert broken["padding: final state"].difference > 1e-3


@pytest.mark.parametrize(("cell", "rule"), [
    (IgnoresState, "initial state"),
    (DropoutAlways, "dropout only in training"),
    (DropoutNever, "dropout only in training"),
    (UnusedParameter, "gradients"),
    (ScaleNotInStateDict, "state_dict round trip"),
    (BatchFirstState, "state layout"),
    (NoOutputSize, "output_size"),
    (AcceptsAnything, "bad options rejected"),
], ids=lambda value: getattr(value, "__name__", value))
def test_each_rule_catches_the_cell_that_breaks_it(cell, rule):
    broken = failures(cell)
    assert set(broken) == {rule}, {name: str(error) for name, error in broken.items()}
    assert str(broken[rule]).startswith(f"cell contract rule '{rule}' broken:")


def test_a_cell_random_in_evaluation_is_named_for_that_first():
    with pytest.raises(CellContractError, match="'deterministic eval' broken") as error:
        check_cell(RandomInEval)  # it breaks every comparison after that rule too
    assert error.value.difference > 0


def test_the_broken_rules_message_names_the_parameter_or_option():
    assert "forget" in str(failures(UnusedParameter)["gradients"])
    assert "hidden_size=0 is accepted" in str(failures(AcceptsAnything)["bad options rejected"])


def test_the_kit_leaves_the_callers_random_state_alone():
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    check_cell("gru")
    assert torch.equal(torch.rand(3), expected)


# --- rrn-cells check -------------------------------------------------------------------------------------------------


@pytest.fixture
def registered():
    names = []

    def register(name, cls):
        registry.register_cell(name)(cls)
        names.append(name)

    yield register
    for name in names:
        registry._CELLS.pop(name, None)


def test_rrn_cells_check_prints_each_rule_and_exits_1_on_a_failure(registered, capsys):
    registered("test_leaky_min_gru", LeaksPadding)
    with pytest.raises(SystemExit) as exit_code:
        rrn_cells(["check", "test_leaky_min_gru", "hidden_size=3"])
    assert exit_code.value.code == 1
    out = capsys.readouterr().out
    assert "FAILED  padding: zeros after each length" in out and "passed  initial state" in out
    assert "max abs difference" in out and "9 passed, 2 failed" in out


def test_rrn_cells_check_passes_a_good_cell_with_options(registered, capsys):
    registered("test_min_gru", MinGRU)
    with pytest.raises(SystemExit) as exit_code:
        rrn_cells(["check", "test_min_gru", "bidirectional=true", "dropout=0.1"])
    out = capsys.readouterr().out
    assert exit_code.value.code == 0, out
    assert "cell contract of test_min_gru bidirectional=true dropout=0.1:" in out and "11 passed, 0 failed" in out


@pytest.mark.slow  # two rrn-cells processes (the same checks run in-process above)
def test_rrn_cells_check_as_a_console_script():
    result = run_cli("rrn-cells", "check", "res_rnn", "num_layers=2", "batch_norm=true")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed  padding (bidirectional)" in result.stdout
    result = run_cli("rrn-cells", "check", "res_rnn", "dropout=1.5")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "rrn-cells: error: cell.dropout=1.5 is not allowed: must be a dropout probability in [0, 1) (0 turns it off)"]


def test_rrn_cells_check_of_an_unknown_cell_names_a_close_one(capsys):
    with pytest.raises(SystemExit) as exit_code:
        rrn_cells(["check", "res_rnm"])
    assert exit_code.value.code == 2 and "Did you mean 'res_rnn'?" in capsys.readouterr().err


def test_a_class_is_checked_as_itself_whatever_its_parent_is_registered_as(registered):
    registered("test_min_gru_parent", MinGRU)  # register_cell sets MinGRU.cell_name, which subclasses inherit
    assert set(failures(IgnoresState)) == {"initial state"}  # built as IgnoresState, not as the registered MinGRU
