"""The cell registry: names, errors, and third-party cells found through entry points."""

from __future__ import annotations

import json

import pytest
from torch import nn

from helpers import make_plugin, run_cli
from rrn_app.cells import UnknownCellError, get_cell, list_cells, register_cell
from rrn_app.cells import registry
from rrn_app.cells.cli import main as rrn_cells


def test_duplicate_name_is_an_error():
    with pytest.raises(ValueError, match="'lstm' is already registered by built-in"):
        @register_cell("lstm")
        class Another(nn.Module):
            pass


def test_unknown_cell_names_the_known_ones_and_a_close_match():
    with pytest.raises(UnknownCellError) as error:
        get_cell("lstn")
    message = str(error.value)
    assert "unknown cell 'lstn'" in message and "Did you mean 'lstm'?" in message
    for name in ("gru", "lstm", "res_lstm", "rnn"):
        assert name in message


def test_register_and_get_a_new_cell():
    @register_cell("test_identity_cell")
    class Identity(nn.Module):
        """Returns its input."""

        def __init__(self, input_size, hidden_size, num_layers=1, scale: float = 1.0):
            super().__init__()

        def forward(self, x, lengths=None, state=None):
            return x, None

    try:
        assert get_cell("test_identity_cell") is Identity
        assert "test_identity_cell" in list_cells()
        info = registry.cell_info("test_identity_cell")
        assert info.source == registry.BUILT_IN  # registered by code, not through an entry point
        assert info.options()["scale"] == 1.0 and info.summary == "Returns its input."
    finally:
        del registry._CELLS["test_identity_cell"]


PLUGIN_CELL = """
    import torch
    from torch import nn
    from rrn_app.cells import register_cell

    @register_cell("toy_tanh")
    class ToyTanh(nn.Module):
        '''A toy plugin cell: h_t = tanh(W x_t + U h_{t-1}).'''

        def __init__(self, input_size, hidden_size, num_layers=1, dropout=0.0, bidirectional=False, gain: float = 1.0):
            super().__init__()
            self.rnn = nn.RNN(input_size, hidden_size, batch_first=True)
            self.output_size, self.bidirectional, self.gain = hidden_size, False, gain

        def forward(self, x, lengths=None, state=None):
            outputs, state = self.rnn(x, state)
            return outputs * self.gain, state
"""


def test_entry_point_plugin_is_discovered_and_a_broken_one_only_warns(tmp_path):
    make_plugin(tmp_path, "rrn-toy", "rrn_toy", PLUGIN_CELL, {"toy_tanh": "rrn_toy"})
    make_plugin(tmp_path, "rrn-broken", "rrn_broken", "raise ImportError('needs libfoo')\n", {"broken": "rrn_broken"})
    result = run_cli("rrn-cells", "--import", "--json", env={"PYTHONPATH": str(tmp_path)})  # import every plugin
    assert result.returncode == 0, result.stderr
    cells = {cell["name"]: cell for cell in json.loads(result.stdout)}
    assert cells["toy_tanh"]["source"] == "plugin rrn-toy 0.3 (entry point toy_tanh = rrn_toy)"
    assert cells["toy_tanh"]["options"]["gain"] == 1.0
    assert cells["broken"]["import_error"] == "ImportError: needs libfoo" and cells["broken"]["options"] is None
    assert {"rnn", "lstm", "gru", "res_lstm"} <= set(cells)  # the others still work
    assert "cell plugin 'broken' (rrn-broken 0.3) failed to load" in result.stderr
    assert "needs libfoo" in result.stderr


def test_rrn_cells_lists_sources_and_options(capsys):
    rrn_cells([])  # what the console script runs (the entry-point test above runs it as one)
    listed = capsys.readouterr().out
    assert "res_lstm" in listed and "keep_prob=1.0" in listed
    assert "built-in (rrn_app)" in listed


def test_rrn_cells_does_not_import_lightning():
    import subprocess
    import sys

    code = "import sys, rrn_app.cells.cli as c; c.describe(); print('lightning' in sys.modules, 'hydra' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["False", "False"], result.stderr
