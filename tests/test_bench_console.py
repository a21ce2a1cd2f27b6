"""rrn-bench as the console script users run: a tiny run writes its report, a bad setting is one line and exit 2."""

from __future__ import annotations

import json

import pytest

from helpers import run_cli


@pytest.mark.slow
def test_rrn_bench_runs_as_a_console_script(tmp_path):
    result = run_cli("rrn-bench", "cells=res_rnn", "batch=2", "length=3", "input=4", "hidden=4", "threads=1",
                     "warmup=0", "repeats=2", "memory=false", f"out={tmp_path}", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert [row["cell"] for row in rows] == ["nn.LSTM", "nn.GRU", "res_rnn"]
    assert "| `res_rnn` |" in (tmp_path / "bench.md").read_text() and "res_rnn" in result.stdout
    wrong = run_cli("rrn-bench", "cells=res_rnn", "hiden=4", timeout=300)
    assert wrong.returncode == 2 and wrong.stderr.startswith("rrn-bench: error: unknown setting 'hiden'")
    assert wrong.stderr.count("\n") == 1 and "Traceback" not in wrong.stderr, wrong.stderr
