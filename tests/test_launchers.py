"""`rrn-train -m` with Hydra's launchers: jobs one after the other (basic, the default), several at once on one
machine (joblib, each job with its share of the cores), each job a process of its own (submitit_local, what
submitit_slurm does on a cluster); the plugins are the extra `rrn[sweep]`, named when one is missing. W&B runs
of one multirun share a group and carry their overrides as tags.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from helpers import QUICK, run_cli
from rrn_app.command_line import preflight
from rrn_app.launchers import check_plugins, cores, parallel_jobs
from rrn_app.option_checks import UserError

# the quick run's budget; `threads` is left out on purpose where a launcher chooses it
TINY = [override for override in QUICK if not override.startswith("threads=")]


def sweep_results(sweep_dir: Path) -> list[dict]:
    """Every job's results.json of a multirun folder, in job order."""
    return [json.loads(path.read_text()) for path in sorted(sweep_dir.glob("*/results.json"))]


# --- which launcher, and how many threads its jobs get ------------------------------------------------------------


def test_the_basic_launcher_is_the_default():
    from hydra import compose, initialize_config_dir

    from rrn_app.config import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
    assert cfg.threads is None  # PyTorch's own default, unless a parallel launcher shares out the cores


@pytest.mark.parametrize("n_jobs, expected", [(2, 2), (1, 1), (-1, "cores"), (-2, "cores-1")])
def test_a_joblib_launcher_runs_n_jobs_at_once_with_joblibs_negative_counts(n_jobs, expected):
    launcher = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": n_jobs}
    wanted = {"cores": cores(), "cores-1": max(cores() - 1, 1)}.get(expected, expected)
    assert parallel_jobs(launcher) == wanted


def test_other_launchers_leave_the_threads_to_pytorch():
    assert parallel_jobs({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}) is None
    assert parallel_jobs(None) is None


@pytest.mark.slow
def test_joblib_runs_two_jobs_at_once_each_with_its_share_of_the_cores(data_root, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("rrn-train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "task=sst", "cell=lstm",
                     "seed=1,2", *TINY, f"data.root={data_root}", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2," in result.stdout  # Hydra's line: two at once
    runs = sweep_results(sweep)
    assert [run["status"] for run in runs] == ["finished", "finished"]
    assert sorted(run["config"]["seed"] for run in runs) == [1, 2]
    # torch.get_num_threads() of each job, as it recorded it: cores // 2 (1 on a 2-core machine)
    assert [run["config"]["threads"] for run in runs] == [max(cores() // 2, 1)] * 2


@pytest.mark.parametrize("launcher, threads, expected", [
    ("joblib", None, "share"),   # threads=null: the cores shared out among the jobs running at once
    ("joblib", 1, 1),            # an explicit setting wins
    ("basic", None, None),       # one job at a time: PyTorch's default
    ("basic", 3, 3),
    ("submitit_slurm", None, 4),  # the cores the SLURM job asked for (hydra.launcher.cpus_per_task=4)
    ("submitit_local", None, None),
])
def test_the_threads_of_a_job(launcher, threads, expected):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from rrn_app.config import config_dir
    from rrn_app.launchers import default_threads

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=[f"hydra/launcher={launcher}", *{"joblib": ["hydra.launcher.n_jobs=2"],
                                                           "submitit_slurm": ["hydra.launcher.cpus_per_task=4"]
                                                           }.get(launcher, [])])
    HydraConfig.instance().set_config(cfg)  # as in a job of that launcher
    try:
        assert default_threads(threads) == (max(cores() // 2, 1) if expected == "share" else expected)
    finally:
        HydraConfig.instance().cfg = None  # the other tests run outside Hydra
    assert default_threads(threads) == threads  # outside Hydra: as configured


@pytest.mark.slow
def test_submitit_local_runs_each_job_as_its_own_process(data_root, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("rrn-train", "-m", "hydra/launcher=submitit_local", "task=sst", "cell=lstm,res_lstm", "seed=1",
                     "threads=1", *TINY, f"data.root={data_root}", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sweep_results(sweep)
    assert sorted(run["cell"] for run in runs) == ["lstm", "res_lstm"]
    assert all(run["status"] == "finished" and "test/acc" in run["metrics"] for run in runs)
    assert all("seed=1" in run["overrides"] for run in runs)
    assert len(list((sweep / ".submitit").glob("*/*_log.out"))) == 2  # submitit's own record of each process


# --- a missing plugin is one line naming the extra --------------------------------------------------------------------


@pytest.mark.parametrize("argument, module, package", [
    ("hydra/launcher=joblib", "hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher"),
    ("hydra/launcher=submitit_slurm", "hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher"),
    ("hydra/sweeper=optuna", "hydra_plugins.hydra_optuna_sweeper", "hydra-optuna-sweeper"),
    ("hparams_search=sst_lstm", "hydra_plugins.hydra_optuna_sweeper", "hydra-optuna-sweeper"),
])
def test_a_missing_plugin_names_the_extra(monkeypatch, argument, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    with pytest.raises(UserError) as caught:
        preflight(["-m", argument, "seed=1,2"])
    assert str(caught.value) == (f"{argument} needs the Hydra plugin {package}, which is not installed: "
                                 "pip install 'rrn[sweep]'")


def test_installed_plugins_pass_the_check():
    check_plugins(["hydra/launcher=joblib", "hydra/launcher=submitit_local", "hparams_search=sst_lstm"])
    check_plugins(["hydra/launcher=basic", "cell=lstm", "hparams_search=null"])  # nothing to install


@pytest.mark.slow
def test_rrn_train_without_the_joblib_plugin_stops_with_one_line(tmp_path):
    hide = ("import sys; sys.modules['hydra_plugins.hydra_joblib_launcher'] = None; "
            "sys.argv = ['rrn-train', '-m', 'hydra/launcher=joblib', 'seed=1,2']; "
            "from rrn_app.train import main; main()")
    result = run_cli("python", "-c", hide, cwd=tmp_path)  # the venv's python, beside rrn-train
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "rrn-train: error: hydra/launcher=joblib needs the Hydra plugin hydra-joblib-launcher, which is not "
        "installed: pip install 'rrn[sweep]'"]
    assert not (tmp_path / "runs").exists()  # stopped before Hydra made any folder


# --- W&B: one group per multirun, the overrides as tags --------------------------------------------------------------


@pytest.mark.slow
def test_wandb_runs_of_a_multirun_share_a_group_and_carry_their_overrides_as_tags(tmp_path, monkeypatch):
    import wandb
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from rrn_app.config import config_dir
    from rrn_app.train import make_logger

    monkeypatch.setenv("WANDB_MODE", "offline")
    sweep = tmp_path / "2026-12-01_10-00-00-000000"
    overrides = ["cell=res_lstm", "seed=2", f"data.root={tmp_path}", "threads=1", "logger=wandb"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=[*overrides, f"run_dir={sweep / '0'}", "hydra.mode=MULTIRUN", f"hydra.sweep.dir={sweep}"])
    run_dir = sweep / "0"
    run_dir.mkdir(parents=True)
    HydraConfig.instance().set_config(cfg)  # as in a job of that multirun
    try:
        logger = make_logger(cfg.logger, run_dir, {"seed": 2})
        assert logger.experiment.group == sweep.name
        # the overrides that tell the jobs apart; data.root, threads and logger only say where or how it ran
        assert list(logger.experiment.tags) == ["cell=res_lstm", "seed=2"]
    finally:
        wandb.finish()
        HydraConfig.instance().cfg = None  # the other tests run outside Hydra


def test_a_single_run_gets_no_wandb_group():
    from rrn_app.train import wandb_sweep_labels

    assert wandb_sweep_labels() == {}  # outside a multirun (here: outside Hydra altogether)
