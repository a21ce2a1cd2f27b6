"""rrn-bench: a tiny run writes JSON and Markdown with the nn.LSTM ratio of every row; bad settings are clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from rrn_app import bench


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
            assert stats["ratio_to_lstm"] == pytest.approx(stats["tokens_per_second"]
                                                           / rows["nn.LSTM"][mode]["tokens_per_second"])
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
    with pytest.raises(SystemExit):
        bench.main(["cells=res_rnn", argument])
    assert message in capsys.readouterr().err


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
