"""`rrn-train -m hparams_search=<task>_<cell>`: Hydra's Optuna sweeper over a search space in conf/hparams_search/.

Each trial returns the task's monitored validation metric, optimised in the direction of the task's monitor_mode;
test metrics are never computed; the study is kept in SQLite under the sweep folder, so the same command again
continues it; the best parameters land in <sweep dir>/optimization_results.yaml, whose path the search prints.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from helpers import QUICK, run_cli
from rrn_app.config import check_options, choices, config_dir
from rrn_app.train import check_cell

SEARCHES = choices("hparams_search")
TINY = ["seed=1", *QUICK]


def compose_search(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", return_hydra_config=True,
                       overrides=[f"hparams_search={name}", *overrides])


def test_the_searches_we_ship():
    assert {"sst_lstm", "sst_res_lstm", "sst_res_rnn", "atis_lstm", "music_gru", "char_lm_lstm"} <= set(SEARCHES)


@pytest.mark.parametrize("name", SEARCHES)
def test_a_search_is_optuna_over_its_task_and_cell(name):
    cfg = compose_search(name)
    assert f"{cfg.task.name}_{cfg.cell.name}" == name
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert sweeper.direction == {"min": "minimize", "max": "maximize"}[cfg.task.monitor_mode]
    # the study lives under the sweep folder, under a fixed name, so that the same command continues it
    assert sweeper.storage == f"sqlite:///{cfg.hydra.sweep.dir}/optuna.db"
    assert "${now:" not in OmegaConf.to_container(cfg.hydra.sweep, resolve=False)["dir"]
    assert sweeper.study_name and sweeper.n_trials > 0
    assert cfg.test_after_fit is False  # a search never looks at test metrics


@pytest.mark.parametrize("name", SEARCHES)
def test_every_value_of_a_search_space_fits_the_config(name):
    """Each searched key exists in the composed config, and each value it can take (every choice, both ends of an
    interval) passes the checks a job runs before training."""
    params = OmegaConf.to_container(compose_search(name).hydra.sweeper.params)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"hparams_search={name}"])  # what a trial's job gets
    assert {"task.model.lr", "task.model.dropout", "task.model.weight_decay", "trainer.gradient_clip_val",
            "cell.hidden_size"} <= set(params)
    for key, text in params.items():
        assert OmegaConf.select(cfg, key, default="missing") != "missing", f"{name}: {key} is not a config key"
        override = OverridesParser.create().parse_overrides([f"{key}={text}"])[0]
        value = override.value()
        values = list(override.sweep_iterator()) if override.is_discrete_sweep() else [value.start, value.end]
        for value in values:
            job = cfg.copy()
            OmegaConf.update(job, key, value)
            check_options(job)
            check_cell(job.cell)


@pytest.mark.slow
def test_a_two_trial_search_writes_its_best_parameters_and_a_second_run_continues_it(data_root, tmp_path):
    import optuna

    sweep = tmp_path / "search"
    command = ["rrn-train", "-m", "hparams_search=sst_lstm", "hydra.sweeper.n_trials=2", *TINY,
               f"data.root={data_root}", f"hydra.sweep.dir={sweep}"]
    first = run_cli(*command, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    best = sweep / "optimization_results.yaml"
    assert f"rrn-train: the search's best parameters (2 finished trials in the study 'sst_lstm'): {best}" \
        in first.stdout.splitlines()
    results = yaml.safe_load(best.read_text())
    assert set(results["best_params"]) == set(compose_search("sst_lstm").hydra.sweeper.params)
    # the best value is the best trial's validation loss (the task's monitor), not a test number
    trials = [json.loads(path.read_text()) for path in sorted(sweep.glob("*/results.json"))]
    assert len(trials) == 2
    assert results["best_value"] == pytest.approx(min(trial["metrics"]["val/loss"] for trial in trials))
    assert not any(name.startswith("test/") for trial in trials for name in trial["metrics"])

    second = run_cli(*command, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Using an existing study with name 'sst_lstm'" in second.stdout + second.stderr
    assert "(4 finished trials in the study 'sst_lstm')" in second.stdout
    study = optuna.load_study(study_name="sst_lstm", storage=f"sqlite:///{sweep}/optuna.db")
    assert len(study.trials) == 4
    assert yaml.safe_load(best.read_text())["best_value"] == pytest.approx(study.best_value)
    assert re.search(r"\[HYDRA\] Best value: ", second.stdout + second.stderr)
