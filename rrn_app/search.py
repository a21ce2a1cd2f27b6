"""The files of a hyper-parameter search (`rrn-train -m hparams_search=<task>_<cell>`, conf/hparams_search/).

A search is Hydra's Optuna sweeper: each trial is one training job that returns the task's monitored
validation metric. Its study lives in `<sweep dir>/optuna.db` (SQLite), so running the same command again
continues the study instead of starting over; when the search ends, Optuna's sweeper writes the best trial
to `<sweep dir>/optimization_results.yaml`. `SearchFiles`, a Hydra callback the search configs add, makes the
sweep folder before the study opens its database there and prints where the best parameters are.
"""

from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback

RESULTS = "optimization_results.yaml"


def completed_trials(storage: str, study_name: str) -> int | None:
    """How many trials of the study have finished (a continued search counts the earlier ones too)."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # no such study in the database
        return None
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


class SearchFiles(Callback):
    """Makes the sweep folder before Optuna opens its SQLite study there; at the end, prints the path of the
    best parameters and how many trials the study holds."""

    def on_multirun_start(self, config, **kwargs) -> None:
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)

    def on_multirun_end(self, config, **kwargs) -> None:
        results = Path(config.hydra.sweep.dir) / RESULTS
        if not results.is_file():
            return
        sweeper = config.hydra.sweeper
        trials = completed_trials(sweeper.storage, sweeper.study_name) if sweeper.get("storage") else None
        of = "" if trials is None else f" ({trials} finished trials in the study {sweeper.study_name!r})"
        print(f"rrn-train: the search's best parameters{of}: {results.resolve()}", flush=True)
