"""`rrn-train -m`: sweeps over any config group and any value, checked before anything runs.

Every swept value is checked (group names with the closest match, keys, values against their annotations),
Hydra's launch lines are shown, each job's folder says its overrides, two multiruns never share a folder,
and each job hands Hydra its monitored validation metric (what a sweeper such as Optuna optimises).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from helpers import QUICK, REPO, run_cli
from rrn_app.command_line import job_override_lists, preflight
from rrn_app.config import check_group_choices, choices, config_dir, job_folder_name
from rrn_app.option_checks import UserError

TINY = ["seed=1", *QUICK]


class RecordReturn(Callback):
    """A Hydra callback (loaded by the rrn-train process from this file): writes each job's return value into
    its folder, so the test reads what a sweeper would get."""

    def on_job_end(self, config, job_return, **kwargs) -> None:
        folder = Path(config.hydra.runtime.output_dir)
        (folder / "return_value.json").write_text(json.dumps(job_return.return_value))


# --- which jobs a multirun starts, and the check of every swept value ----------------------------------------------


@pytest.mark.parametrize("overrides, jobs", [
    (["cell=lstm,res_lstm", "seed=1,2"], [["cell=lstm", "seed=1"], ["cell=lstm", "seed=2"],
                                          ["cell=res_lstm", "seed=1"], ["cell=res_lstm", "seed=2"]]),
    (["task=choice(sst,atis)", "logger=none"], [["task=sst", "logger=none"], ["task=atis", "logger=none"]]),
    (["cell=glob(res_*)"], [["cell=res_lstm"], ["cell=res_rnn"]]),
    (["seed=range(1,4)"], [["seed=1"], ["seed=2"], ["seed=3"]]),
    (["experiment=sst_stochastic_depth,sst_res_lstm_paper"],
     [["experiment=sst_stochastic_depth"], ["experiment=sst_res_lstm_paper"]]),
    (["task.model.lr=interval(0.01,0.1)", "seed=3"], [["seed=3"]]),  # a search sweeper's range: each job checks it
])
def test_the_jobs_of_a_multirun(overrides, jobs):
    assert job_override_lists(overrides, multirun=True) == jobs


def test_a_single_run_is_one_job():
    assert job_override_lists(["cell=res_lstm", "seed=2"], multirun=False) == [["cell=res_lstm", "seed=2"]]


def test_a_sweep_without_multirun_says_to_add_m():
    with pytest.raises(UserError, match=r"^cell=lstm,gru is a sweep: add -m \(rrn-train -m ...\)"):
        job_override_lists(["cell=lstm,gru", "seed=2"], multirun=False)


@pytest.mark.parametrize("override, message", [
    ("cell=lstm,res_lstn", "unknown cell 'res_lstn' (in cell=lstm,res_lstn). Did you mean cell=res_lstm?"),
    ("cell=choice(gru,lstn)", "unknown cell 'lstn' (in cell=choice(gru,lstn)). Did you mean cell=lstm?"),
    ("task=sst,atsi", "unknown task 'atsi' (in task=sst,atsi). Did you mean task=atis?"),
    ("experiment=sst_stochastic_dept,sst_res_lstm_paper", "Did you mean experiment=sst_stochastic_depth?"),
    ("cell=glob(lsmt*)", "cell=glob(lsmt*) matches no cell choice. Known cell choices:"),
    ("logger=csv,wandbb", "unknown logger 'wandbb' (in logger=csv,wandbb). Did you mean logger=wandb?"),
])
def test_every_swept_group_value_is_checked(override, message):
    with pytest.raises(UserError) as error:
        check_group_choices([override])
    assert message in str(error.value)


def test_good_sweeps_pass_the_early_checks():
    arguments = ["-m", "task=sst,atis", "cell=glob(res_*)", "seed=1,2", "cell.hidden_size=8,16"]
    assert preflight(arguments) == arguments
    assert preflight(["-m", "experiment=sst_stochastic_depth,sst_res_lstm_paper"])


@pytest.mark.parametrize("arguments, message", [
    (["cell=lstm,gru", "cell.bidirectinal=true"], "unknown option cell.bidirectinal. Did you mean cell.bidirectional?"),
    (["cell=lstm,res_lstm", "cell.keep_prob=0.5"],  # res_lstm has it, lstm not
     "unknown option cell.keep_prob. Known options of cell (lstm): bidirectional, dropout, hidden_size, name, "
     "num_layers, residual. The cells with a keep_prob option: res_lstm. (in the job cell=lstm)"),
    (["cell=choice(lstm,gru)", "cell.bidirectional=maybe,true"],
     "cell.bidirectional='maybe' is not allowed: must be true or false (in the job cell=lstm cell.bidirectional=maybe)"),
    (["task=sst,music", "task.model.lr=1,fast"], "task.model.lr='fast' is not allowed: must be a number"),
])
def test_each_job_of_a_sweep_is_composed_and_checked(arguments, message):
    with pytest.raises(UserError) as error:
        preflight(["-m", *arguments])
    assert message in str(error.value)


@pytest.mark.slow
def test_a_misspelt_value_in_a_sweep_list_on_the_command_line(tmp_path):
    result = run_cli("rrn-train", "-m", "task=sst", "cell=lstm,res_lstn", "seed=1,2", cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("rrn-train: error:")]
    assert errors == [f"rrn-train: error: unknown cell 'res_lstn' (in cell=lstm,res_lstn). Did you mean "
                      f"cell=res_lstm? Known cell choices: {', '.join(choices('cell'))}."]
    assert "Traceback" not in result.stderr and "Launching" not in result.stdout
    assert not any(tmp_path.iterdir())  # no runs/, no multirun folder


# --- job folders ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("number, overrides, name", [
    (3, "cell=res_lstm,seed=1", "3_cell=res_lstm,seed=1"),
    (0, "", "0"),
    (1, "task.data.vectors=/x/glove.txt,cell=rrn", "1_task.data.vectors=_x_glove.txt,cell=rrn"),
    (2, "cell.layer_sizes=[16\\,32]", "2_cell.layer_sizes=_16_,32_"),
])
def test_a_job_folder_says_its_overrides_safely(number, overrides, name):
    assert job_folder_name(number, overrides) == name


def test_long_job_folder_names_are_cut_but_stay_distinct():
    first = job_folder_name(0, ",".join(f"task.model.option{i}={i}" for i in range(40)))
    second = job_folder_name(0, ",".join(f"task.model.option{i}={i + 1}" for i in range(40)))
    assert len(first) <= 160 and len(second) <= 160 and first != second


def hydra_settings():
    from hydra import compose, initialize_config_dir

    from rrn_app.config import register_plugin_cells

    register_plugin_cells()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return OmegaConf.to_container(compose(config_name="config", return_hydra_config=True).hydra)  # as written


def test_two_multiruns_in_the_same_second_get_two_folders():
    pattern = re.fullmatch(r"runs/multirun/\$\{now:(.+)\}", hydra_settings()["sweep"]["dir"]).group(1)
    moment = datetime(2026, 12, 1, 16, 0, 0, 1)
    assert moment.strftime(pattern) != moment.replace(microsecond=2).strftime(pattern)


def test_folder_names_leave_out_the_keys_that_only_say_where_and_how_a_run_ran():
    settings = hydra_settings()
    assert settings["sweep"]["subdir"] == "${rrn_job_folder:${hydra:job.num},${hydra:job.override_dirname}}"
    excluded = set(settings["job"]["config"]["override_dirname"]["exclude_keys"])
    assert {"data.root", "data.cache_dir", "threads", "logger", "trainer.enable_progress_bar", "ckpt_path"} <= excluded
    assert "seed" not in excluded and "cell" not in excluded


def test_hydras_own_launch_lines_are_not_switched_off():
    config = OmegaConf.load(REPO / "conf" / "config.yaml")
    assert not any("hydra/hydra_logging" in str(entry) for entry in config.defaults)
    assert (hydra_settings()["hydra_logging"].get("root") or {}).get("handlers")  # Hydra's default: "Launching N jobs", "#0 : ..."


# --- real sweeps on a tiny budget ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_sweep_over_task_and_cell(data_root, tmp_path):
    """task=sst,atis x cell=lstm,res_rnn: four jobs, each in a folder named after its overrides, each the right
    task and cell, each handing Hydra its monitored validation metric."""
    sweep = tmp_path / "multi"
    result = run_cli("rrn-train", "-m", "task=sst,atis", "cell=lstm,res_rnn", *TINY, f"data.root={data_root}",
                     f"hydra.sweep.dir={sweep}", "+hydra.callbacks.record._target_=test_sweeps.RecordReturn",
                     env={"PYTHONPATH": str(Path(__file__).parent)}, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Launching 4 jobs locally" in result.stdout
    assert "#0 : task=sst cell=lstm seed=1" in result.stdout and "#3 : task=atis cell=res_rnn seed=1" in result.stdout
    rest = "trainer.limit_test_batches=2,trainer.limit_train_batches=2,trainer.limit_val_batches=2,trainer.max_epochs=1"
    jobs = [("sst", "lstm"), ("sst", "res_rnn"), ("atis", "lstm"), ("atis", "res_rnn")]
    names = [f"{number}_cell={cell},seed=1,task={task},{rest}" for number, (task, cell) in enumerate(jobs)]
    assert sorted(path.name for path in sweep.iterdir() if path.is_dir()) == sorted(names)
    assert (sweep / "multirun.yaml").is_file()
    for name, (task, cell) in zip(names, jobs):
        results = json.loads((sweep / name / "results.json").read_text())
        assert (results["task"], results["cell"], results["config"]["seed"]) == (task, cell, 1)
        monitor = results["config"]["task"]["monitor"]
        returned = json.loads((sweep / name / "return_value.json").read_text())
        assert isinstance(returned, float) and returned == results["metrics"][monitor]
        assert str(sweep / name) in result.stdout  # each job prints its folder


@pytest.mark.slow
def test_a_real_sweep_over_cells_with_seeds(data_root, tmp_path):
    sweep = tmp_path / "multi"
    result = run_cli("rrn-train", "-m", "task=sst", "cell=glob(res_*)", *TINY, f"data.root={data_root}",
                     f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Launching 2 jobs locally" in result.stdout
    for number, cell in enumerate(["res_lstm", "res_rnn"]):
        (folder,) = sweep.glob(f"{number}_cell={cell},seed=1,task=sst,*")
        results = json.loads((folder / "results.json").read_text())
        assert results["cell"] == cell and results["task"] == "sst"
        assert "data.root" not in folder.name and "logger" not in folder.name and "threads" not in folder.name
