"""rrn-report on hand-made results.json sets: statistics, grouping, failed runs, published rows, outputs, CLI."""

from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from helpers import QUICK, run_cli, run_main
from rrn_app.report.collect import collect_runs, differing_keys, group_runs
from rrn_app.report.published import PUBLISHED
from rrn_app.report.render import write_all
from rrn_app.report.table import build

BASE_CONFIG = {
    "cell": {"name": "lstm", "hidden_size": 80, "num_layers": 2, "dropout": 0.0, "bidirectional": False},
    "ckpt_path": None,
    "data": {"cache_dir": None, "root": "/somewhere/data"},
    "logger": {},
    "run_dir": "/somewhere/runs/x",
    "seed": 0,
    "threads": 1,
    "task": {"name": "sst", "monitor": "val/loss", "monitor_mode": "min", "patience": 2,
             "data": {"classes": 5, "train_on": "phrases", "batch_size": 128, "root": "/somewhere/data",
                      "cache_dir": None, "num_workers": 0, "seed": 0,
                      "vectors": "/somewhere/data/glove/glove.6B.50d.filtered.txt.gz"},
             "model": {"dropout": 0.5, "lr": 0.05}},
    "trainer": {"max_epochs": 10, "enable_progress_bar": True, "devices": 1},
}


def make_config(seed=0, **changes) -> dict:
    """BASE_CONFIG with a seed and dotted-key changes (`cell__hidden_size=160` sets cell.hidden_size)."""
    config = copy.deepcopy(BASE_CONFIG)
    config["seed"] = config["task"]["data"]["seed"] = seed
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = config
        for parent in parents:
            node = node[parent]
        node[last] = value
    return config


def write_run(folder: Path, config: dict, metrics: dict, **extra) -> Path:
    folder.mkdir(parents=True)
    (folder / ".hydra").mkdir()
    results = {"task": config["task"]["name"], "cell": config["cell"]["name"], "metrics": metrics,
               "parameters": 1000, "epochs": 3, "config": config, **extra}
    (folder / "results.json").write_text(json.dumps(results))
    return folder


LSTM_ACC = [0.4579, 0.4643, 0.4724, 0.4611]
RES_ACC = [0.4548, 0.4570, 0.4783]


@pytest.fixture
def two_cells(tmp_path) -> Path:
    """4 lstm seeds and 3 res_lstm seeds on SST, with per-epoch history."""
    for seed, acc in enumerate(LSTM_ACC):
        write_run(tmp_path / f"lstm{seed}", make_config(seed, run_dir=f"/elsewhere/{seed}", threads=seed + 1),
                  {"test/acc": acc, "val/acc": acc + 0.01, "test/f1_macro": acc - 0.05, "val/f1_macro": acc - 0.04},
                  status="finished", overrides=[f"seed={seed}", "cell=lstm", "data.root=/somewhere/data", "threads=1"],
                  history={"epoch": [0, 1, 2], "val/acc": [0.3, 0.4, acc + 0.01]})
    for seed, acc in enumerate(RES_ACC):
        write_run(tmp_path / f"res{seed}", make_config(seed, cell__name="res_lstm"),
                  {"test/acc": acc, "val/acc": acc, "test/f1_macro": acc - 0.05, "val/f1_macro": acc - 0.04},
                  history={"epoch": [0, 1], "val/acc": [0.35, acc]})
    return tmp_path


def test_mean_and_sample_sd_per_group_match_numpy(two_cells):
    reports = build(group_runs(collect_runs([two_cells])), ("cell", "lstm"))
    rows = {row.group.settings["cell.name"]: row for row in reports[0].rows}
    for cell, values in (("lstm", LSTM_ACC), ("res_lstm", RES_ACC)):
        summary = rows[cell].summaries["test/acc"]
        assert summary.n == len(values)
        assert summary.mean == pytest.approx(100 * np.mean(values))
        assert summary.sd == pytest.approx(100 * np.std(values, ddof=1))


def test_difference_from_baseline_has_welch_interval_and_p_value(two_cells):
    reports = build(group_runs(collect_runs([two_cells])), ("cell", "lstm"))
    res = next(row for row in reports[0].rows if row.group.settings["cell.name"] == "res_lstm")
    assert res.baseline.group.settings["cell.name"] == "lstm"
    a, b = 100 * np.array(RES_ACC), 100 * np.array(LSTM_ACC)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    difference = res.differences["test/acc"]
    assert difference.difference == pytest.approx(a.mean() - b.mean())
    assert (difference.low, difference.high) == pytest.approx((a.mean() - b.mean() - half, a.mean() - b.mean() + half))
    assert difference.df == pytest.approx(df)
    assert difference.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)


def test_runs_that_differ_only_in_seed_and_run_local_keys_are_one_group(tmp_path):
    write_run(tmp_path / "a", make_config(0), {"test/acc": 0.4})
    write_run(tmp_path / "b", make_config(7, run_dir="/other/run", threads=2, ckpt_path="/x.ckpt",
                                          trainer__enable_progress_bar=False, logger={"_target_": "csv"},
                                          data={"root": "/other/data", "cache_dir": "/tmp/cache"},
                                          task__data__root="/other/data",
                                          task__data__vectors="/other/data/glove/glove.6B.50d.filtered.txt.gz"),
              {"test/acc": 0.5})
    groups = group_runs(collect_runs([tmp_path]))
    assert len(groups) == 1 and sorted(groups[0].seeds) == [0, 7]


@pytest.mark.parametrize("change", [{"cell__hidden_size": 160}, {"task__data__train_on": "sentences"},
                                    {"trainer__max_epochs": 3}, {"task__model__lr": 0.1}])
def test_runs_that_differ_in_any_other_key_are_two_groups(tmp_path, change):
    write_run(tmp_path / "a", make_config(0), {"test/acc": 0.4})
    write_run(tmp_path / "b", make_config(0, **change), {"test/acc": 0.5})
    groups = group_runs(collect_runs([tmp_path]))
    assert len(groups) == 2
    assert differing_keys(groups) == [next(iter(change)).replace("__", ".")]


def test_unfinished_failed_and_non_finite_runs_are_listed_not_averaged(tmp_path):
    write_run(tmp_path / "good", make_config(0), {"test/acc": 0.4})
    (tmp_path / "crashed" / ".hydra").mkdir(parents=True)
    write_run(tmp_path / "stopped", make_config(1), {"test/acc": 0.9}, status="failed")
    write_run(tmp_path / "diverged", make_config(2), {"test/acc": 0.3, "test/loss": float("nan")})
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "results.json").write_text("{not json")
    runs = collect_runs([tmp_path])
    status = {run.path.name: run.status for run in runs}
    assert status == {"good": "finished", "crashed": "unfinished", "stopped": "failed", "diverged": "failed",
                      "corrupt": "failed"}
    groups = group_runs(runs)
    assert len(groups) == 1 and groups[0].values("test/acc") == [0.4]
    failed = [run for run in runs if not run.finished]
    paths = write_all(build(groups), failed, tmp_path / "out", "rrn-report test")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "Not averaged" in text and all(name in text for name in ("crashed", "stopped", "diverged", "corrupt"))
    assert "1 groups, 1 runs" in text
    assert any(path.name == "report.csv" for path in paths)


def test_results_json_without_history_status_or_overrides_is_averaged(tmp_path):
    write_run(tmp_path / "old", make_config(0), {"test/acc": 0.4, "val/acc": 0.41})
    runs = collect_runs([tmp_path / "old" / "results.json"])
    assert runs[0].finished and runs[0].history == {} and runs[0].overrides == []


def test_baseline_is_matched_on_the_other_differing_settings(tmp_path):
    for cell in ("lstm", "res_lstm"):
        for size in (80, 160):
            for seed in (0, 1):
                write_run(tmp_path / f"{cell}{size}_{seed}", make_config(seed, cell__name=cell, cell__hidden_size=size),
                          {"test/acc": 0.4 + 0.01 * seed + size / 1e4})
    report = build(group_runs(collect_runs([tmp_path])), ("cell", "lstm"))[0]
    for row in report.rows:
        if not row.is_baseline:
            assert row.baseline.group.settings["cell.hidden_size"] == row.group.settings["cell.hidden_size"]
            assert row.baseline.group.settings["cell.name"] == "lstm"


def test_published_rows_carry_citation_protocol_and_where_they_were_read():
    for entry in PUBLISHED:
        assert entry.citation and entry.table and entry.verified and entry.ours
        assert all([entry.protocol.split, entry.protocol.parameters, entry.protocol.selection,
                    entry.protocol.evaluation])
        assert entry.metric.startswith(("test/", "val/")) and math.isfinite(entry.value)


def test_outputs_show_published_rows_beside_ours_never_averaged(two_cells):
    out = two_cells / "report"
    groups = group_runs(collect_runs([two_cells]))
    written = write_all(build(groups, ("cell", "lstm")), [], out, "rrn-report test")
    assert {path.name for path in written} == {"report.md", "report.csv", "sst_metrics.png", "sst_curves.png"}
    text = (out / "report.md").read_text()
    assert "published [1]" in text and "Pradhan & Longpre" in text and "| 50.6 |" in text
    best = f"**{100 * np.mean(LSTM_ACC):.2f} ± {100 * np.std(LSTM_ACC, ddof=1):.2f} (4)**"
    assert best in text  # lstm has the better mean test accuracy: bold
    assert "| cell=lstm |" in text and "/somewhere" not in text  # overrides shown without the run-local ones
    rows = list(csv.DictReader((out / "report.csv").open()))
    ours = [row for row in rows if row["source"] == "ours" and row["metric"] == "test/acc"]
    assert sorted(int(row["n"]) for row in ours) == [3, 4]
    published = [row for row in rows if row["source"] == "published"]
    assert published and all(row["citation"] for row in published)
    assert float(next(row for row in published if row["mean"] == "50.6")["mean"]) == 50.6


def rrn_report(*arguments):
    """rrn-report's main in this process (what its console script runs; the test below runs the script)."""
    from rrn_app.report.cli import main

    return run_main(main, "rrn-report", *arguments)


@pytest.mark.slow  # another Python (the in-process runs below check the same output)
def test_console_script_prints_the_table_and_writes_the_report(two_cells, tmp_path):
    done = run_cli("rrn-report", two_cells, "baseline=cell=lstm", "metrics=test/acc,val/acc", f"out={tmp_path / 'o'}")
    assert done.returncode == 0, done.stderr
    assert "res_lstm" in done.stdout and "published [1]" in done.stdout and "p=" in done.stdout
    assert (tmp_path / "o" / "report.md").is_file()


@pytest.mark.parametrize("arguments, message", [
    (["basline=cell=lstm"], "Did you mean baseline"),
    (["baseline=cell=gru"], "no group of runs has cell=gru"),
    (["metrics=test/accuracy"], "Did you mean test/acc"),
])
def test_a_bad_argument_is_a_one_line_error_with_exit_2(two_cells, arguments, message):
    done = rrn_report(two_cells, *arguments)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr and done.stderr.startswith("rrn-report: error:")


def test_a_missing_path_is_a_one_line_error(tmp_path):
    done = rrn_report(tmp_path / "nowhere")
    assert done.returncode == 2 and "no such file or folder" in done.stderr


@pytest.mark.parametrize("dataset_key", ["task.dataset", "task.data.dataset"])
def test_published_rows_follow_the_dataset_of_the_groups(dataset_key):
    from rrn_app.report.published import published_for

    settings = {"task.name": "char_lm", dataset_key: "tinyshakespeare", "task.data.split": [0.9, 0.1, 0.0]}
    assert [entry.value for entry in published_for("char_lm", [settings])] == [1.4697]
    assert published_for("char_lm", [{**settings, "task.data.split": [0.9, 0.05, 0.05]}]) == []  # another split
    assert published_for("char_lm", [{**settings, dataset_key: "ptb_char"}]) == []
    music = published_for("music", [{"task.name": "music", "task.dataset": "jsb_chorales"}])
    assert {entry.citation.split(",")[0] for entry in music} == {"Yue", "Chung"}



def test_a_key_added_later_does_not_split_runs_that_computed_the_same(tmp_path):
    """A music run made before task.model.output / skip_first_frame existed (and with the old task.data.dataset
    key) groups with a new run that has the values it implied; a new run with another value is its own group."""
    def music(seed, **model):
        config = make_config(seed, cell__name="gru")
        config["task"] = {"name": "music", "monitor": "val/nll", "monitor_mode": "min", "model": {"lr": 1e-3, **model},
                          "data": {"seed": seed}}
        return config

    old = music(1)
    old["task"]["data"]["dataset"] = "nottingham"
    new = music(2, output="independent", skip_first_frame=False)
    new["task"]["dataset"] = "nottingham"
    other = music(3, output="independent", skip_first_frame=True)
    other["task"]["dataset"] = "nottingham"
    for name, config in (("old", old), ("new", new), ("other", other)):
        write_run(tmp_path / name, config, {"test/nll": 3.0, "val/nll": 3.0})
    groups = group_runs(collect_runs([tmp_path]))
    assert sorted(sorted(run.path.name for run in group.runs) for group in groups) == [["new", "old"], ["other"]]

def test_music_published_rows_are_compared_only_with_their_own_kind_of_output(tmp_path):
    """Chung et al.'s independent-output numbers sit beside independent-output groups (and music runs made before
    task.model.output existed), Boulanger-Lewandowski's RNN-NADE beside nade groups; a mixed report labels each
    published row with the output it is for."""
    from rrn_app.report.published import published_for

    old = {"task.name": "music", "task.dataset": "jsb_chorales"}
    independent = {**old, "task.model.output": "independent"}
    nade = {**old, "task.model.output": "nade"}
    citations = lambda entries: {entry.citation.split(",")[0] for entry in entries}  # noqa: E731
    assert citations(published_for("music", [old])) == citations(published_for("music", [independent])) \
        == {"Yue", "Chung"}
    assert [(entry.model, entry.value) for entry in published_for("music", [nade])] == [("RNN-NADE", 5.19)]
    assert [entry.value for entry in published_for("music", [{**nade, "task.dataset": "nottingham"}])] == [2.31]

    for output, nll in (("independent", [8.5, 8.6, 8.4]), ("nade", [5.6, 5.5, 5.7])):
        for seed, value in enumerate(nll):
            config = make_config(seed, cell__name="gru")
            config["task"] = {"name": "music", "dataset": "jsb_chorales", "monitor": "val/nll", "monitor_mode": "min",
                              "model": {"output": output}, "data": {"seed": seed}}
            write_run(tmp_path / f"{output}{seed}", config, {"test/nll": value, "val/nll": value})
    out = tmp_path / "report"
    assert run_cli("rrn-report", str(tmp_path), f"out={out}").returncode == 0
    lines = (out / "report.md").read_text().splitlines()
    nade_row = next(line for line in lines if "RNN-NADE" in line and line.startswith("| published"))
    chung_row = next(line for line in lines if "| 8.54 |" in line and line.startswith("| published"))
    assert "| nade: RNN-NADE |" in nade_row and "| independent: GRU |" in chung_row  # the column of the output
    header = next(line for line in lines if line.startswith("| source |"))
    assert "| n | params | train min |" in header  # parameters per row, for matched-size comparisons
    assert all("| 3 | 1,000 |" in line for line in lines if line.startswith("| ours G"))

@pytest.mark.slow
def test_a_real_two_cell_two_seed_multirun_then_rrn_report(data_root, tmp_path):
    sweep = tmp_path / "multi"
    tiny = [*QUICK, "trainer.max_epochs=2"]
    trained = run_cli("rrn-train", "-m", "task=sst", "cell=lstm,res_lstm", "seed=1,2", *tiny, f"data.root={data_root}",
                      f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=900)
    assert trained.returncode == 0, trained.stderr[-3000:]
    done = rrn_report(sweep, f"out={tmp_path / 'report'}")
    assert done.returncode == 0, done.stderr
    assert "sst: 2 groups, 4 runs (baseline cell=lstm)" in done.stdout
    rows = list(csv.DictReader((tmp_path / "report" / "report.csv").open()))
    ours = {row["group"]: row for row in rows if row["source"] == "ours" and row["metric"] == "test/acc"}
    assert len(ours) == 2 and all(row["n"] == "2" for row in ours.values())
    res = next(row for name, row in ours.items() if "res_lstm" in name)
    assert res["baseline"].startswith("cell.name=lstm") and res["p_value"] != ""
    assert (tmp_path / "report" / "sst_curves.png").is_file()  # from results.json's per-epoch history
