"""Recurrent cells and their registry.

    from rrn_app.cells import build_cell, get_cell, list_cells, register_cell
    encoder = get_cell("res_lstm")(input_size=50, hidden_size=80, num_layers=2, keep_prob=0.75)
    encoder = build_cell({"name": "res_lstm", "hidden_size": 80, "keep_prob": 0.75}, input_size=50)  # from a config
    outputs, state = encoder(x, lengths)     # x: [batch, time, input_size]

Every cell is an nn.Module with `output_size` (hidden_size times directions), called as
`module(x, lengths=None, state=None) -> (outputs [batch, time, output_size], final state)`.
"""

from rrn_app.cells.registry import (
    BUILT_IN, CellInfo, UnknownCellError, all_cell_infos, build_cell, cell_info, get_cell, list_cells, option_help,
    register_cell,
)
from rrn_app.cells.sequence import final_output
from rrn_app.cells import gres_rnn, res_lstm, res_rnn, rrn, torch_rnns  # noqa: F401  (built-in cells register on import)

__all__ = [
    "BUILT_IN", "CellInfo", "UnknownCellError", "all_cell_infos", "build_cell", "cell_info", "get_cell", "list_cells",
    "option_help", "register_cell", "final_output",
]
