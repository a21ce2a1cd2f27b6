"""tools/device_check.py: on a machine without CUDA it says so and exits 0 having run nothing; with CUDA its parts
(the CUDA tests, the kernel tests, rrn-bench at T=100 and T=1000) each run under their own timeout within the
8-minute limit, a part past its timeout is killed with its log kept, and the results are written as JSON and
Markdown. The GPU side is exercised here with stand-in parts."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from rrn_app.bench import settings as bench_settings

spec = importlib.util.spec_from_file_location("device_check", REPO / "tools" / "device_check.py")
device_check = sys.modules["device_check"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(device_check)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_without_cuda_it_says_so_runs_nothing_and_exits_0(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "tools" / "device_check.py"), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "no CUDA device" in result.stdout and "nothing run" in result.stdout
    report = json.loads((tmp_path / "device_check.json").read_text())
    assert report["status"] == "no-cuda" and report["parts"] == [] and report["machine"]["cuda_devices"] == 0


def test_the_plan_covers_the_grid_and_fits_the_limit(tmp_path):
    parts = device_check.plan(tmp_path)
    assert [p.name for p in parts] == ["cuda tests", "triton and precision tests", "rrn-bench T=100",
                                       "rrn-bench T=1000"]
    assert sum(p.timeout for p in parts) <= device_check.LIMIT - 5
    assert "-m" in parts[0].command and "cuda" in parts[0].command
    for part, length in zip(parts[2:], (100, 1000)):
        command = part.command[1:]
        assert f"length={length}" in command and "hidden=128,512,1024" in command and "batch=64" in command
        assert "precision=32-true,16-mixed" in command and "cells=res_rnn,gres_rnn" in command
        assert "device=cuda" in command and any(a.startswith(f"out={tmp_path}") for a in command)
        assert {a.split("=", 1)[0] for a in command} <= set(bench_settings.OPTIONS)  # all real rrn-bench keys


@pytest.mark.slow  # waits seconds for a part to pass its timeout
def test_a_part_past_its_timeout_is_killed_and_its_log_kept(tmp_path):
    part = device_check.Part("sleepy part", [sys.executable, "-c",
                                             "import time; print('partial result', flush=True); time.sleep(60)"], 60)
    device_check.run_part(part, tmp_path, timeout=6)
    assert part.status == "timed out" and part.seconds < 20
    assert "partial result" in (tmp_path / part.log).read_text()


def test_with_cuda_every_part_runs_in_turn_and_the_results_are_json_and_markdown(tmp_path, monkeypatch, capsys):
    """Stand-in parts: one passes and writes a bench.md, one fails, one finds the limit used up."""
    bench_out = tmp_path / "bench_fake"
    parts = [
        device_check.Part("bench", [sys.executable, "-c", f"import pathlib; p = pathlib.Path({str(bench_out)!r}); "
                                    "p.mkdir(); (p / 'bench.md').write_text('| cell |\\n| nn.LSTM |')"], 30,
                          folder="bench_fake"),
        device_check.Part("failing", [sys.executable, "-c", "import sys, time; time.sleep(3); sys.exit(3)"], 30),
        device_check.Part("late", [sys.executable, "-c", "print('never')"], 30),
    ]
    monkeypatch.setattr(device_check, "machine", lambda: dict(torch="x", cuda_build="12.4", cuda_devices=1,
                                                              gpus=["Fake GPU"]))
    monkeypatch.setattr(device_check, "plan", lambda out: parts)
    code = device_check.main(["--out", str(tmp_path), "--limit", "13"])  # the third part finds < 5 s left
    assert code == 1
    report = json.loads((tmp_path / "device_check.json").read_text())
    assert [(p["name"], p["status"]) for p in report["parts"]] == [("bench", "passed"), ("failing", "failed"),
                                                                   ("late", "skipped")]
    assert report["parts"][1]["returncode"] == 3 and report["status"] == "incomplete"
    markdown = (tmp_path / "device_check.md").read_text()
    assert "Fake GPU" in markdown and "| failing | failed |" in markdown and "| nn.LSTM |" in markdown
    assert "device check: failing: failed" in capsys.readouterr().out
