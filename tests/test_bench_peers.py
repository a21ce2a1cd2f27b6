"""rrn-bench's peers and its limit: rows from other packages (peers=...) beside the cells, a note for a peer not
installed, and every row's matrix-product FLOP rate as a fraction of a GEMM rate measured in the same run, by the
convention of rrn_app/bench/gemm.py."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from rrn_app import bench
from rrn_app.bench import cli, gemm, peers, timing
from rrn_app.bench.models import train_call
from rrn_app.cells import get_cell
from indrnn_source import indrnn_registered  # noqa: F401 (autouse: the plugin from its source when not installed)

TINY = ["batch=2", "length=3", "input=4", "hidden=8", "threads=1", "warmup=0", "repeats=2", "memory=false"]


def fixed_speeds(monkeypatch, speed: float = 1000.0, rate: float = 1e9):
    """Every model at `speed` tokens/s in both modes, the GEMM rate at `rate` FLOP/s."""
    def timings(models, x, mode, warmup, repeats):
        tokens = x.shape[0] * x.shape[1]
        return {m.label: timing.summary([tokens / speed] * repeats, tokens) for m in models}

    monkeypatch.setattr(cli, "time_models", timings)
    monkeypatch.setattr(gemm, "gemm_rate", lambda *args, **kwargs: rate)


@pytest.mark.parametrize("make, train_flops", [
    (lambda: nn.LSTM(4, 8), 24 * (4 * 8 + 8 * 8)),
    (lambda: nn.GRU(4, 8), 18 * (4 * 8 + 8 * 8)),
    (lambda: get_cell("res_rnn")(input_size=4, hidden_size=8), 6 * (4 * 8 + 8 * 8)),
    (lambda: get_cell("gres_rnn")(input_size=4, hidden_size=8), 12 * (4 * 8 + 8 * 8)),
    (lambda: get_cell("res_rnn")(input_size=4, hidden_size=8, projection="linear"), 6 * (4 * 8 + 2 * 8 * 8)),
    (lambda: get_cell("indrnn")(input_size=4, hidden_size=8, num_layers=1), 6 * 4 * 8),  # u is a vector: not counted
])
def test_flops_per_token_count_each_weight_matrix_once_forward_and_three_times_in_training(make, train_flops):
    module = make()
    assert gemm.mode_flops(module, "train") == train_flops
    assert gemm.mode_flops(module, "infer") == train_flops // 3


def test_the_gemm_rate_is_a_positive_flop_rate():
    rate = gemm.gemm_rate(4, 8, "cpu", torch.float32)
    assert math.isfinite(rate) and rate > 0


def test_each_rows_gemm_fraction_is_its_flop_rate_over_the_runs_gemm_rate(tmp_path, monkeypatch):
    fixed_speeds(monkeypatch, speed=1000.0, rate=1e9)
    bench.main(["cells=res_rnn", *TINY, f"out={tmp_path}"])
    report = json.loads((tmp_path / "bench.json").read_text())
    rows = {row["cell"]: row for row in report["rows"]}
    for mode, factor in (("train", 6), ("infer", 2)):
        assert rows["res_rnn"][mode]["flops_per_token"] == factor * (4 * 8 + 8 * 8)
        assert rows["res_rnn"][mode]["gemm_fraction"] == pytest.approx(factor * 96 * 1000 / 1e9)
        assert rows["nn.LSTM"][mode]["gemm_fraction"] == pytest.approx(4 * factor * 96 * 1000 / 1e9)
    assert all(row["gemm_flops_per_s"] == 1e9 for row in rows.values())
    markdown = (tmp_path / "bench.md").read_text()
    assert "| of GEMM |" in markdown and "threads=1 B=2 H=8: 1.0 GFLOP/s" in markdown


def test_peers_join_beside_the_one_layer_nn_lstm_with_their_own_path(tmp_path, monkeypatch):
    pytest.importorskip("sru")
    pytest.importorskip("minGRU_pytorch")
    fixed_speeds(monkeypatch)
    bench.main(["cells=res_rnn", "peers=all", *TINY, f"out={tmp_path}"])
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert [row["cell"] for row in rows] == ["nn.LSTM", "nn.GRU", "sru.SRU", "minGRU", "res_rnn"]
    by_cell = {row["cell"]: row for row in rows}
    assert by_cell["sru.SRU"]["path"] == "sru/cpu" and by_cell["minGRU"]["path"] == "log-scan"
    assert by_cell["minGRU"]["train"]["flops_per_token"] == 6 * 2 * 4 * 8  # to_hidden_and_gate: [2H, I]
    assert by_cell["sru.SRU"]["train"]["ratio_to_lstm"] == 1.0


@pytest.mark.parametrize("peer", ["sru", "mingru"])
def test_each_peer_trains_through_rrn_benchs_call(peer):
    pytest.importorskip(peers.PEERS[peer].package)
    model = bench.Model(peers.PEERS[peer].label, peers.PEERS[peer].label, {}, None)
    model.module = bench.build(model, 4, 8, "cpu", torch.float32, 0)
    x = torch.randn(2, 3, 4)
    outputs = model.module(x)[0]
    assert outputs.shape == (2, 3, 8)
    train_call(model.module, x)
    assert all(p.grad is not None for p in model.module.parameters() if p.requires_grad)


def test_a_peer_not_installed_is_left_out_with_a_note_saying_how_to_install_it(tmp_path, monkeypatch, capsys):
    fixed_speeds(monkeypatch)
    monkeypatch.setattr(peers, "installed", lambda name: name != "sru")
    monkeypatch.setattr(peers, "PEERS", {"sru": peers.PEERS["sru"]})  # minGRU left out of this run altogether
    bench.main(["cells=res_rnn", "peers=sru", *TINY, f"out={tmp_path}"])
    report = json.loads((tmp_path / "bench.json").read_text())
    assert [row["cell"] for row in report["rows"]] == ["nn.LSTM", "nn.GRU", "res_rnn"]
    assert len(report["notes"]) == 1 and 'pip install "rrn[peers]"' in report["notes"][0]
    assert "sru.SRU left out" in report["notes"][0]
    assert "sru.SRU left out" in (tmp_path / "bench.md").read_text()
    assert "note: peer sru.SRU left out" in capsys.readouterr().out


def test_an_unknown_peer_is_one_line_naming_the_closest(capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.main(["peers=srru", *TINY])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "no peer 'srru'" in error and "did you mean 'sru'" in error and "mingru" in error


def test_the_path_of_a_plugin_with_a_compiled_step_is_compiled_and_off_it_is_python_autograd(monkeypatch):
    from mingru_plugin import MinGRU

    from rrn_app.cells import recurrence

    monkeypatch.setenv(recurrence.COMPILE_VARIABLE, "1")
    model = bench.Model("mingru", "mingru", {}, None, module=MinGRU(4, 8))
    assert bench.path_of(model, torch.randn(2, 3, 4)) == "compiled"
    for setting in ("0", "auto"):  # off; automatic: compiled on CUDA only
        monkeypatch.setenv(recurrence.COMPILE_VARIABLE, setting)
        assert bench.path_of(model, torch.randn(2, 3, 4)) == "python/autograd"
