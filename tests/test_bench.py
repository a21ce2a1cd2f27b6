"""rrn-bench: a tiny run writes JSON and Markdown with the nn.LSTM ratio of every row; bad settings are clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import run_cli
from rrn_app import bench


@pytest.mark.slow  # a fresh process per model for its memory peak (about 6 s of CPU)
def test_tiny_run_writes_json_and_markdown_with_lstm_ratios(tmp_path, capsys):
    bench.main(["cells=res_rnn", "batch=2", "length=3", "input=4", "hidden=4", "threads=1", "warmup=1",
                "repeats=3", f"out={tmp_path}"])
    report = json.loads((tmp_path / "bench.json").read_text())
    rows = {row["cell"]: row for row in report["rows"]}
    assert list(rows) == ["nn.LSTM", "nn.GRU", "res_rnn"]  # the baselines always run, in the same configuration
    for row in rows.values():
        assert (row["threads"], row["batch"], row["length"], row["input"], row["hidden"]) == (1, 2, 3, 4, 4)
        for mode in ("train", "infer"):
            stats = row[mode]
            assert stats["tokens_per_second"] > 0 and stats["repeats"] == 3
            assert stats["tokens_per_second_min"] <= stats["tokens_per_second"] <= stats["tokens_per_second_max"]
            assert stats["peak_bytes"] is not None and stats["peak_bytes"] >= 0
    assert rows["nn.LSTM"]["train"]["ratio_to_lstm"] == 1.0
    assert rows["res_rnn"]["path"] in ("cpp", "python")  # hidden 4: ATen's GEMM (oneDNN's from 256, "cpp+oneDNN")
    assert rows["nn.LSTM"]["path"] == ("oneDNN" if torch.backends.mkldnn.is_available() else "aten")
    assert rows["nn.GRU"]["path"] == "aten"  # nn.GRU has no oneDNN kernel on CPU
    assert len(report["started"]["loadavg"]) == 3 and report["machine"]["torch"]
    markdown = (tmp_path / "bench.md").read_text()
    assert "rrn-bench cells=res_rnn" in markdown and "| vs nn.LSTM |" in markdown
    assert "| `res_rnn` |" in markdown and "| `nn.LSTM` |" in markdown and "1.00x" in markdown
    assert "nn.GRU" in capsys.readouterr().out  # the table is printed too


def test_the_ratio_is_each_rows_speed_over_its_groups_nn_lstm(tmp_path, monkeypatch):
    """With the timings fixed (nn.LSTM 1000 tokens/s, nn.GRU 2000, res_rnn 250 in training; each twice that at
    inference), the JSON ratios and the table's column are the known quotients."""
    from rrn_app.bench import cli, timing

    speeds = {"nn.LSTM": 1000.0, "nn.GRU": 2000.0, "res_rnn": 250.0}

    def fixed_timings(models, x, mode, warmup, repeats):
        tokens = x.shape[0] * x.shape[1]
        scale = 1.0 if mode == "train" else 2.0
        return {m.label: timing.summary([tokens / (speeds[m.label] * scale)] * repeats, tokens) for m in models}

    monkeypatch.setattr(cli, "time_models", fixed_timings)
    bench.main(["cells=res_rnn", "batch=2", "length=3", "input=4", "hidden=4", "threads=1", "warmup=0", "repeats=2",
                "memory=false", f"out={tmp_path}"])
    rows = {row["cell"]: row for row in json.loads((tmp_path / "bench.json").read_text())["rows"]}
    for mode in ("train", "infer"):
        ratios = {label: rows[label][mode]["ratio_to_lstm"] for label in speeds}
        assert ratios == pytest.approx({"nn.LSTM": 1.0, "nn.GRU": 2.0, "res_rnn": 0.25})
    table = [line for line in (tmp_path / "bench.md").read_text().splitlines() if "| `res_rnn` |" in line]
    assert table and all("0.25x" in line for line in table)


def test_unknown_cell_lists_the_known_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["cells=res_rnn,nope"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "unknown cell 'nope'" in error and "res_rnn" in error and "gres_rnn" in error


@pytest.mark.parametrize("argument, message", [
    ("hiden=128", "unknown setting 'hiden'"),
    ("hidden=0", "hidden="),
    ("mode=fit", "mode="),
    ("scaling=width", "scaling="),
    ("threads=a", "threads='a'"),
    ("threads=0", "threads='0'"),
    ("repeats=x", "repeats='x'"),
    ("warmup=-1", "warmup='-1'"),
    ("seed=1.5", "seed='1.5'"),
])
def test_bad_settings_are_clear_errors(argument, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["cells=res_rnn", argument])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error and error.startswith("rrn-bench: error: ") and error.count("\n") == 1, error


def test_cell_options_make_variants():
    settings = bench.parse_arguments(["cells=res_lstm,res_rnn", "cell.num_layers=12", "res_lstm.keep_prob=1.0,0.75",
                                      "backend=python,step"])
    (group,) = bench.model_list(settings)
    labels = {model.label: model.options for model in group}
    assert labels == {
        "nn.LSTM": {"num_layers": 12}, "nn.GRU": {"num_layers": 12},
        "res_lstm[keep_prob=1.0]": {"num_layers": 12, "keep_prob": 1.0},
        "res_lstm[keep_prob=0.75]": {"num_layers": 12, "keep_prob": 0.75},
        "res_rnn[backend=python]": {"num_layers": 12}, "res_rnn[backend=step]": {"num_layers": 12},
    }
    with pytest.raises(bench.BenchError, match="res_rnn has no option 'keep_prob'"):
        bench.model_list(bench.parse_arguments(["cells=res_rnn", "res_rnn.keep_prob=0.5"]))


def test_scaling_sets_the_grid():
    assert bench.parse_arguments(["cells=res_rnn", "scaling=length"]).length == [100, 250, 500, 1000, 2000]
    assert bench.parse_arguments(["cells=res_rnn", "scaling=hidden"]).hidden == [64, 128, 256, 512, 1024]
    assert bench.parse_arguments(["cells=res_rnn", "scaling=length", "length=10,20"]).length == [10, 20]
    # an option whose name ends in "length" is not the length setting
    assert bench.parse_arguments(["cells=gres_rnn", "scaling=length", "gres_rnn.batch_norm_max_length=4"]).length \
        == [100, 250, 500, 1000, 2000]


def test_a_cell_option_list_makes_groups_whose_rows_name_their_values():
    settings = bench.parse_arguments(["cells=res_rnn", "cell.num_layers=1,2", "scaling=hidden"])
    groups = bench.model_list(settings)
    assert [[model.label for model in group] for group in groups] == [
        ["nn.LSTM[num_layers=1]", "nn.GRU[num_layers=1]", "res_rnn[num_layers=1]"],
        ["nn.LSTM[num_layers=2]", "nn.GRU[num_layers=2]", "res_rnn[num_layers=2]"],
    ]
    rows = [dict(cell=label, threads=1, hidden=64, train=dict(tokens_per_second=float(n), ratio_to_lstm=1.0))
            for n, label in enumerate(["res_rnn[num_layers=1]", "res_rnn[num_layers=2]"])]
    table = bench.scaling_table(dict(rows=rows), "hidden")
    assert "| `res_rnn[num_layers=1]` | 1 | 0 (1.00x) |" in table and "| `res_rnn[num_layers=2]` | 1 | 1 (1.00x) |" in table


@pytest.mark.parametrize("kind, options, path", [
    ("nn.LSTM", {}, "oneDNN"), ("nn.GRU", {}, "aten"), ("lstm", {}, "oneDNN"), ("res_lstm", {}, "oneDNN"),
    ("rrn", {}, "oneDNN"), ("rrn", {"peephole": True}, "python/autograd"), ("gru", {}, "aten"),
])
def test_the_path_column_says_what_runs_the_model(kind, options, path):
    """Read off the model's modules: nn.LSTM kernels (oneDNN's on CPU in float32), ATen's, a Python step."""
    if path == "oneDNN" and not torch.backends.mkldnn.is_available():
        path = "aten"
    model = bench.Model(kind, kind, options, None)
    model.module = bench.build(model, 4, 4, "cpu", torch.float32, 0)
    assert bench.path_of(model, torch.randn(2, 3, 4)) == path
    assert not bench.has_fast_path(kind) or kind == "res_rnn"
    assert bench.has_fast_path("res_rnn") and bench.has_fast_path("gres_rnn")


def column_ends(line: str, cells: list[str], left: set[int]) -> list[int]:
    """Where each cell of a table line sits: its start for left-aligned columns, its end for the others."""
    positions, at = [], 0
    for i, cell in enumerate(cells):
        start = line.index(cell, at)
        at = start + len(cell)
        positions.append(start if i in left else at)
    return positions


def fake_row(cell: str, batch: int, length: int, tokens: float, iqr: float) -> dict:
    stats = dict(tokens_per_second=tokens, iqr_rel=iqr, ratio_to_lstm=tokens / 1000, gemm_fraction=tokens / 2e6,
                 peak_bytes=3 * 2**20)
    return dict(threads=1, batch=batch, length=length, input=128, hidden=1024, cell=cell, path="python/autograd",
                train=stats, infer=stats)


def test_the_terminal_table_header_lines_up_with_its_columns():
    """Columns as wide as their widest entry (the old header was as wide as B, T, I, H: one character); groups
    printed one at a time under the first group's header line up through the shared floor."""
    modes = ["train", "infer"]
    settings = bench.parse_arguments(["cells=res_rnn", "batch=8,64", "length=1000", "hidden=1024", "memory=false"])
    floor = bench.column_floor(settings, bench.model_list(settings))
    first = bench.format_rows([fake_row("nn.LSTM", 8, 1000, 1234567.0, 0.05)], modes, header=True, floor=floor)
    second = bench.format_rows([fake_row("res_rnn", 64, 1000, 12.0, 12.5)], modes, header=False, floor=floor)
    header, *rows = (first + "\n" + second).splitlines()
    names = bench.headers(modes)
    expected = column_ends(header, names, {5, 6})
    for line, row in zip(rows, [fake_row("nn.LSTM", 8, 1000, 1234567.0, 0.05), fake_row("res_rnn", 64, 1000, 12.0,
                                                                                           12.5)]):
        assert column_ends(line, bench.row_cells(row, modes), {5, 6}) == expected


@pytest.fixture(scope="module")
def data_bench(tmp_path_factory):
    """A tiny rrn-bench mode=data run: char_lm on its embedded Tiny Shakespeare (data.root holds nothing), cold and
    warm, two batches per loader."""
    out = tmp_path_factory.mktemp("data-bench")
    empty = tmp_path_factory.mktemp("empty-root")
    result = run_cli("rrn-bench", "mode=data", "tasks=char_lm", f"data.root={empty}", "batches=2", f"out={out}",
                     timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


@pytest.mark.slow  # rrn-bench mode=data runs rrn-train twice (about 20 s of CPU)
def test_data_mode_times_the_first_batch_cold_and_warm_and_writes_its_table(data_bench):
    out, result = data_bench
    report = json.loads((out / "data.json").read_text())
    assert report["command"].startswith("rrn-bench mode=data tasks=char_lm") and report["caches"] == ["cold", "warm"]
    [row] = report["rows"]
    assert row["task"] == "char_lm"
    for kind in ("cold", "warm"):
        part = row[kind]
        assert "error" not in part and 0 < part["startup_s"] < part["seconds"] and part["cpu_s"] > 0
        assert part["startup_s"] + part["setup_s"] + part["first_batch_s"] == pytest.approx(part["seconds"])
    assert row["train_ms"] > 0 and row["val_ms"] > 0 and report["import_lightning_s"] > 0
    markdown = (out / "data.md").read_text()
    header = ("| task | cold s | warm s | warm CPU s | startup s | setup s | to batch s | train ms/batch | "
              "val ms/batch |")
    assert header in markdown and "| char_lm | " in markdown and "`rrn-bench mode=data tasks=char_lm" in markdown
    printed = result.stdout.splitlines()
    header = next(line for line in printed if line.startswith("task "))
    line = next(line for line in printed if line.startswith("char_lm "))
    assert len(header) == len(line)  # the columns line up


@pytest.mark.parametrize("argument, message", [
    ("tasks=sst,imbd", "unknown task 'imbd'. Did you mean imdb?"),
    ("cache=hot", "unknown cache 'hot'"),
    ("batches=0", "batches='0': must be a whole number >= 1"),
    ("threads=x", "threads='x'"),
    ("timeout=-1", "timeout='-1'"),
    ("batch=3", "unknown setting 'batch' for mode=data. Did you mean batches=?"),
])
def test_data_mode_bad_settings_are_one_line_errors(argument, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["mode=data", argument])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1


def test_data_mode_help_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["mode=data", "--help"])
    assert exit_info.value.code == 0 and "time to first batch" in capsys.readouterr().out.lower()


@pytest.mark.slow  # runs rrn-train on a data root without ATIS (about 11 s of CPU)
def test_a_task_without_its_data_is_reported_not_a_crash(tmp_path, capsys):
    from rrn_app.bench import data as bench_data

    settings = bench_data.parse_arguments(["mode=data", "tasks=atis", f"data.root={tmp_path}", "cache=warm"])
    report = bench_data.run(settings, log=lambda line: None)
    [row] = report["rows"]
    assert "error" in row["warm"] and "rrn-data get atis" in row["warm"]["error"]
    markdown = bench_data.markdown(report)
    assert "| atis | failed |" in markdown and "Not measured:" in markdown and "- atis: " in markdown


def test_a_crashed_run_is_reported_by_its_error_line_not_hydras_hint():
    from rrn_app.bench.data import failure

    crash = ("Traceback (most recent call last):\n  File \"x.py\", line 1\nhydra.errors.InstantiationException: "
             "Error in call to target 'X':\nModuleNotFoundError('no rich')\nfull_key: callbacks.rich_progress_bar\n")
    assert failure(crash) == ("hydra.errors.InstantiationException: Error in call to target 'X': "
                              "ModuleNotFoundError('no rich')")
    assert failure("noise\nrrn-train: error: atis not found: /x/atis\n") == "rrn-train: error: atis not found: /x/atis"
    assert failure("") is None


# --- baselines of the cell's shape, and paths rrn-bench cannot tell ----------------------------------------------


class OwnKernelCell(torch.nn.Module):
    """A plugin-style cell: two layers by default and its own recurrence (no torch.nn RNN, no Recurrence inside)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 2, bidirectional: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        self.projection = torch.nn.Linear(input_size, hidden_size * (2 if bidirectional else 1))

    def forward(self, x, lengths=None, state=None):
        outputs = torch.cumsum(self.projection(x), dim=1).tanh()
        return outputs, outputs[:, -1]


@pytest.fixture
def own_kernel_cell():
    from rrn_app.cells import registry

    registry.register_cell("test_own_kernel")(OwnKernelCell)
    yield "test_own_kernel"
    registry._CELLS.pop("test_own_kernel", None)


def labels_and_options(settings_argv: list[str]) -> list[dict]:
    return [{model.label: model.options for model in group} for group in bench.model_list(bench.parse_arguments(
        settings_argv))]


def test_baselines_take_the_layer_count_and_direction_of_the_cell_under_test(own_kernel_cell):
    """A two-layer default is met by two-layer baselines, labelled so; a direction given to the cell reaches them."""
    assert labels_and_options([f"cells={own_kernel_cell}"]) == [{
        "nn.LSTM[num_layers=2]": {"num_layers": 2}, "nn.GRU[num_layers=2]": {"num_layers": 2},
        own_kernel_cell: {}}]
    assert labels_and_options([f"cells={own_kernel_cell}", f"{own_kernel_cell}.bidirectional=true"]) == [{
        "nn.LSTM[num_layers=2,bidirectional=True]": {"num_layers": 2, "bidirectional": True},
        "nn.GRU[num_layers=2,bidirectional=True]": {"num_layers": 2, "bidirectional": True},
        f"{own_kernel_cell}[bidirectional=True]": {"bidirectional": True}}]
    # set for every cell by cell.<option>: the command line shows it, the labels stay plain
    assert labels_and_options([f"cells={own_kernel_cell}", "cell.num_layers=3"]) == [{
        "nn.LSTM": {"num_layers": 3}, "nn.GRU": {"num_layers": 3}, own_kernel_cell: {"num_layers": 3}}]
    [group] = bench.model_list(bench.parse_arguments([f"cells={own_kernel_cell}", "cell.bidirectional=true"]))
    lstm = bench.build(group[0], 4, 5, "cpu", torch.float32, 0)
    assert isinstance(lstm, torch.nn.LSTM) and lstm.num_layers == 2 and lstm.bidirectional


def test_cells_of_different_shapes_are_each_compared_with_baselines_of_their_own(own_kernel_cell):
    [group] = bench.model_list(bench.parse_arguments([f"cells=res_rnn,{own_kernel_cell}", "res_rnn.num_layers=1"]))
    assert [(model.label, model.reference) for model in group] == [
        ("nn.LSTM", "nn.LSTM"), ("nn.GRU", "nn.LSTM"), ("res_rnn[num_layers=1]", "nn.LSTM"),
        ("nn.LSTM[num_layers=2]", "nn.LSTM[num_layers=2]"), ("nn.GRU[num_layers=2]", "nn.LSTM[num_layers=2]"),
        (own_kernel_cell, "nn.LSTM[num_layers=2]")]


def test_a_path_rrn_bench_cannot_tell_is_unknown_and_its_ratio_is_to_its_own_baseline(own_kernel_cell, tmp_path,
                                                                                       capsys):
    model = bench.Model(own_kernel_cell, own_kernel_cell, {}, None)
    model.module = bench.build(model, 4, 4, "cpu", torch.float32, 0)
    assert bench.path_of(model, torch.randn(2, 3, 4)) == "unknown"  # not "aten": nothing of ATen's RNNs inside
    bench.main([f"cells=res_rnn,{own_kernel_cell}", "res_rnn.num_layers=1", "batch=2", "length=3", "input=4",
                "hidden=4", "threads=1", "warmup=1", "repeats=3", "mode=train", "memory=false", f"out={tmp_path}"])
    report = json.loads((tmp_path / "bench.json").read_text())
    rows = {row["cell"]: row for row in report["rows"]}
    assert rows[own_kernel_cell]["path"] == "unknown" and rows["res_rnn[num_layers=1]"]["path"] != "unknown"
    two_layer_lstm = rows["nn.LSTM[num_layers=2]"]["train"]["tokens_per_second"]
    # against the two-layer nn.LSTM of its group, not the one-layer one of res_rnn
    assert rows[own_kernel_cell]["train"]["ratio_to_lstm"] == pytest.approx(
        rows[own_kernel_cell]["train"]["tokens_per_second"] / two_layer_lstm)
    assert rows["nn.LSTM[num_layers=2]"]["train"]["ratio_to_lstm"] == 1.0
    note = f"Path unknown for {own_kernel_cell}: "
    assert note in (tmp_path / "bench.md").read_text() and note in capsys.readouterr().out
