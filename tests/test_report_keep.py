"""`rrn-report keep`: finished runs' results.json copied without machine paths, never overwritten. (rrn-report's
main runs in this process: test_report.py runs the console script itself.)"""

from __future__ import annotations

import json

from helpers import run_main
from rrn_app.report.cli import main


def rrn_report(*arguments):
    """rrn-report's `main` in this process, as its console script runs it."""
    return run_main(main, "rrn-report", *arguments)


def _run(folder, seed, status="finished", root="/data/full"):
    folder.mkdir(parents=True)
    results = {"task": "sst", "cell": "lstm", "status": status, "metrics": {"test/acc": 0.4 + seed / 100},
               "best_checkpoint": f"{folder}/checkpoints/best-epoch01.ckpt",
               "config": {"seed": seed, "run_dir": str(folder), "data": {"root": root},
                          "task": {"data": {"vectors": f"{root}/glove/g.txt.gz"}}}}
    (folder / "results.json").write_text(json.dumps(results))


def test_keep_takes_out_paths_skips_unfinished_and_never_overwrites(tmp_path):
    runs = tmp_path / "multirun"
    _run(runs / "0_seed=1", 1)
    _run(runs / "1_seed=2", 2)
    _run(runs / "2_seed=3", 3, status="failed")
    kept = tmp_path / "results" / "suite"
    done = rrn_report("keep", runs, f"to={kept}")
    assert done.returncode == 0, done.stderr
    assert sorted(path.name for path in kept.iterdir()) == ["0_seed=1", "1_seed=2"]
    text = (kept / "0_seed=1" / "results.json").read_text()
    assert str(tmp_path) not in text and "/data/full" not in text
    copy = json.loads(text)
    assert copy["config"]["data"]["root"] == "<data.root>"
    assert copy["config"]["task"]["data"]["vectors"] == "<data.root>/glove/g.txt.gz"
    assert copy["best_checkpoint"] == "<run>/checkpoints/best-epoch01.ckpt"
    assert copy["metrics"] == {"test/acc": 0.4 + 1 / 100}
    report = rrn_report(kept, f"out={tmp_path / 'report'}")
    assert report.returncode == 0, report.stderr
    assert "2 runs" in report.stdout
    (kept / "1_seed=2" / "results.json").write_text("{}")  # a kept copy is never replaced
    again = rrn_report("keep", runs, f"to={kept}")
    assert again.returncode == 0 and "kept 0 run(s)" in again.stdout
    assert (kept / "1_seed=2" / "results.json").read_text() == "{}"


def test_keep_without_destination_is_a_one_line_error(tmp_path):
    done = rrn_report("keep", tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "to=DIR" in done.stderr
