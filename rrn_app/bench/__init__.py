"""`rrn-bench`: training and inference speed of recurrent cells, always next to torch.nn.LSTM and torch.nn.GRU
(`rrn-bench --help`: settings.HELP).

The package: `settings` (the command line), `models` (what is timed, its baselines and its path), `timing`,
`memory`, `report` (the tables) and `cli` (the run); `data` is mode=data. `python -m rrn_app.bench` is rrn-bench.
"""

from rrn_app.bench.cli import main, run
from rrn_app.bench.models import Model, build, has_fast_path, model_list, path_of
from rrn_app.bench.report import column_floor, format_rows, headers, machine, markdown, row_cells, scaling_table
from rrn_app.bench.settings import BenchError, Settings, parse_arguments

__all__ = ["BenchError", "Model", "Settings", "build", "column_floor", "format_rows", "has_fast_path", "headers",
           "machine", "main", "markdown", "model_list", "parse_arguments", "path_of", "row_cells", "run",
           "scaling_table"]
