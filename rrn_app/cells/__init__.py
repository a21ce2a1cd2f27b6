"""Recurrent cells, their registry, and the public API for writing one (built in or as a plugin).

    from rrn_app.cells import build_cell, get_cell, list_cells, register_cell
    encoder = get_cell("res_lstm")(input_size=50, hidden_size=80, num_layers=2, keep_prob=0.75)
    encoder = build_cell({"name": "res_lstm", "hidden_size": 80, "keep_prob": 0.75}, input_size=50)  # from a config
    outputs, state = encoder(x, lengths)     # x: [batch, time, input_size]

Every cell is an nn.Module with `output_size` (hidden_size times directions), called as
`module(x, lengths=None, state=None) -> (outputs [batch, time, output_size], final state)`; docs/cells.md has
the whole contract and `rrn_app.testing.check_cell` checks it.

For a cell's own code (all of it stable, public API):

- padding helpers, for `lengths` a 1-d integer tensor [batch] (int64 from the tasks; on the CPU or x's device;
  each length in 1 .. time, 0 refused): `check_lengths`, `length_mask`, `mask_padding` (zeros past each
  length), `last_step` (each sequence's value at its own last step: a final state per length), `final_output`,
  `reverse_padded` (each sequence reversed within its length, the padding left in place) and `detach_state`;
- option checks, each returning the value or raising `InvalidOption` (a one-line UserError naming the option,
  the value and what is allowed; the command line puts the config key in front: `cell.gain`): `positive_int`,
  `positive_float`, `non_negative_float`, `dropout_rate` ([0, 1)), `keep_probability` ((0, 1]) and `one_of`;
- `Recurrence` (write one time step) and `RecurrentStack` (layers, directions, dropout, residual links).
"""

from rrn_app.cells.registry import (
    BUILT_IN, CellInfo, PluginEntry, PluginImportError, UnknownCellError, all_cell_infos, build_cell, cell_info,
    get_cell, list_cells, option_help, plugin_entries, register_cell,
)
from rrn_app.cells.sequence import (
    check_lengths, detach_state, final_output, last_step, length_mask, mask_padding, reverse_padded,
)
from rrn_app.option_checks import (
    InvalidOption, UserError, dropout_rate, keep_probability, non_negative_float, one_of, positive_float, positive_int,
)
from rrn_app.cells import gres_rnn, res_lstm, res_rnn, rrn, torch_rnns  # noqa: F401  (built-in cells register on import)
from rrn_app.cells.recurrence import Recurrence
from rrn_app.cells.stack import RecurrentStack

__all__ = [
    # the registry
    "BUILT_IN", "CellInfo", "PluginEntry", "PluginImportError", "UnknownCellError", "all_cell_infos", "build_cell",
    "cell_info", "get_cell", "list_cells", "option_help", "plugin_entries", "register_cell",
    # padding helpers
    "check_lengths", "detach_state", "final_output", "last_step", "length_mask", "mask_padding", "reverse_padded",
    # option checks
    "InvalidOption", "UserError", "dropout_rate", "keep_probability", "non_negative_float", "one_of",
    "positive_float", "positive_int",
    # base classes
    "Recurrence", "RecurrentStack",
]
