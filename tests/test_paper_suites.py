"""The paper suites: one experiment config per row setting of a published table (conf/experiment/, named after the
paper), swept over cells and seeds by one multirun command, turned into the table by one rrn-report command;
docs/results.md's "How to reproduce" gives both for each suite, and those commands pass rrn-train's checks.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest

from helpers import REPO, run_cli
from rrn_app.command_line import job_override_lists, preflight
from rrn_app.report.cli import parse as parse_report_arguments
from rrn_app.train import check_cell, check_precision

PAPER_EXPERIMENTS = ["pradhan_longpre_sst_lstm", "pradhan_longpre_sst_res_lstm",
                     "pradhan_longpre_sst_stochastic_timesteps", "pradhan_longpre_sst_stochastic_depth",
                     "yue_fu_liang_atis", "yue_fu_liang_imdb", "yue_fu_liang_music", "rrn_paper_7_layers",
                     "rrn_paper_lstm"]


def check_job(cfg):
    check_cell(cfg.cell)
    check_precision(cfg.trainer)


def documented_commands() -> list[list[str]]:
    """The commands of docs/results.md's "How to reproduce" section, split as a shell would."""
    text = (REPO / "docs" / "results.md").read_text()
    section = text[text.index("\n## How to reproduce"):]
    section = section[:section.find("\n## ", 1)] if "\n## " in section[1:] else section
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [shlex.split(line) for block in blocks for line in block.splitlines() if line.strip()]


# --- each row is the paper's setting -----------------------------------------------------------------------------------


@pytest.mark.parametrize("experiment, expected", [
    ("pradhan_longpre_sst_lstm", {"cell.name": "lstm", "cell.num_layers": 4, "cell.hidden_size": 120}),
    ("pradhan_longpre_sst_res_lstm", {"cell.name": "res_lstm", "cell.num_layers": 2, "cell.hidden_size": 80,
                                      "cell.keep_prob": 1.0, "cell.timestep_keep_prob": 1.0}),
    ("pradhan_longpre_sst_stochastic_timesteps", {"cell.name": "res_lstm", "cell.num_layers": 4,
                                                  "cell.hidden_size": 160, "cell.timestep_keep_prob": 0.5}),
    ("pradhan_longpre_sst_stochastic_depth", {"cell.name": "res_lstm", "cell.num_layers": 4, "cell.hidden_size": 160,
                                              "cell.keep_prob": 0.75}),
    ("yue_fu_liang_atis", {"task.name": "atis", "cell.hidden_size": 100, "cell.num_layers": 1,
                           "task.data.embedding_dim": 100, "trainer.max_epochs": 100}),
    ("yue_fu_liang_imdb", {"task.name": "imdb", "cell.hidden_size": 128, "cell.num_layers": 1,
                           "task.data.embedding_dim": 64, "task.model.pooling": "final", "trainer.max_epochs": 20}),
    ("yue_fu_liang_music", {"task.name": "music", "cell.hidden_size": 128, "cell.num_layers": 1}),
    ("rrn_paper_lstm", {"task.name": "char_lm", "cell.name": "lstm", "cell.hidden_size": 50, "cell.num_layers": 2,
                        "cell.dropout": 0.5, "task.model.optimizer": "rmsprop", "task.data.batch_size": 50,
                        "task.data.seq_length": 50, "trainer.gradient_clip_val": 5.0}),
])
def test_each_row_is_the_papers_setting(compose_config, experiment, expected):
    from omegaconf import OmegaConf

    cfg = compose_config(f"experiment={experiment}")
    assert {key: OmegaConf.select(cfg, key) for key in expected} == expected


@pytest.mark.parametrize("cell", ["lstm", "gru", "res_rnn", "gres_rnn"])
def test_the_yue_suites_keep_the_cells_setting_for_every_cell(compose_config, cell):
    """The cell is the comparison's variable: each of the four gets the paper's size, and res_rnn its task_cell."""
    cfg = compose_config("experiment=yue_fu_liang_imdb", f"cell={cell}")
    assert (cfg.cell.name, cfg.cell.hidden_size, cfg.cell.num_layers) == (cell, 128, 1)
    assert cfg.cell.get("batch_norm", False) is (cell == "res_rnn")  # conf/task_cell/imdb_res_rnn.yaml


@pytest.mark.slow
@pytest.mark.parametrize("experiment", PAPER_EXPERIMENTS)
def test_each_paper_experiment_composes_on_the_command_line(experiment, tmp_path):
    result = run_cli("rrn-train", f"experiment={experiment}", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cell:" in result.stdout and "${" not in result.stdout  # resolved, as a run will use it


@pytest.mark.slow
def test_a_paper_experiment_trains(data_root, tmp_path, quick):
    result = run_cli("rrn-train", "experiment=yue_fu_liang_atis", "cell=gres_rnn", "seed=1", *quick,
                     f"data.root={data_root}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert (results["task"], results["cell"], results["status"]) == ("atis", "gres_rnn", "finished")
    assert results["config"]["cell"]["hidden_size"] == 100 and "test/slot_f1" in results["metrics"]


# --- the documented commands -------------------------------------------------------------------------------------


def test_results_md_gives_one_multirun_and_one_report_per_suite():
    commands = documented_commands()
    trains = [command for command in commands if command[0] == "rrn-train"]
    reports = [command for command in commands if command[0] == "rrn-report"]
    assert len(trains) == len(reports) == 5
    assert all(command[1] == "-m" for command in trains)
    experiments = " ".join(" ".join(command) for command in trains)
    for name in PAPER_EXPERIMENTS:
        assert name in experiments or (name.startswith("pradhan_longpre_sst_")
                                       and "glob(pradhan_longpre_sst_*)" in experiments)


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in documented_commands() if c[0] == "rrn-train"],
                         ids=lambda command: next(a for a in command if a.startswith("experiment=")))
def test_each_documented_multirun_passes_rrn_trains_checks(command):
    arguments = preflight(command[1:], check_job=check_job)  # every job of the sweep composed and checked
    overrides = [a for a in arguments if not a.startswith("-")]
    jobs = job_override_lists(overrides, multirun=True)
    seeds = next(a for a in overrides if a.startswith("seed=")).count(",") + 1
    assert len(jobs) % seeds == 0 and len(jobs) >= 2 * seeds  # at least two rows, every seed of each


def test_the_pradhan_longpre_glob_is_its_four_rows():
    jobs = job_override_lists(["experiment=glob(pradhan_longpre_sst_*)"], multirun=True)
    assert sorted(job[0] for job in jobs) == sorted(f"experiment={name}" for name in PAPER_EXPERIMENTS[:4])


@pytest.mark.parametrize("command", [c for c in documented_commands() if c[0] == "rrn-report"],
                         ids=lambda command: command[1])
def test_each_documented_report_reads_its_suites_folder(command):
    trains = [c for c in documented_commands() if c[0] == "rrn-train"]
    paths, options = parse_report_arguments(command[1:])
    assert options == {"baseline": "cell=lstm"}
    sweep_dirs = [a.partition("=")[2] for c in trains for a in c if a.startswith("hydra.sweep.dir=")]
    assert any(sweep_dir.startswith(paths[0] + "/") for sweep_dir in sweep_dirs)  # the folder its multirun fills
