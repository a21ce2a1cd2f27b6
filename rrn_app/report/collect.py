"""Runs on disk -> Run records -> Groups of runs that differ only in their seed.

A run is a folder with results.json (what `rrn-train` writes at the end) or a folder with `.hydra/` but no
results.json (a run that never finished). Runs are grouped by their resolved config with the seed and the
run-local keys removed: paths, threads, logger, progress bar, run directory. Paths under the run's `data.root`
or its run folder are written relative to them, so the same settings on two machines are one group. An earlier
result kept beside results.json when a run folder was reused (results-1.json, ...) is not read.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rrn_app.option_checks import UserError

# Keys (dotted, and every key below them) that say where or how a run ran, or what it logged, not what it
# computed: paths, threads, logging, progress bars, throughput measurement.
RUN_LOCAL_KEYS = ("run_dir", "data.root", "data.cache_dir", "ckpt_path", "threads", "logger", "hydra",
                  "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.default_root_dir",
                  "callbacks.learning_rate_monitor", "callbacks.throughput")
# Last parts of keys that are the seed or a path/worker count wherever they appear (task.data.seed is ${seed}).
RUN_LOCAL_LEAVES = ("seed", "root", "cache_dir", "num_workers")
FINISHED = "finished"

# Settings added to rrn after some kept runs were made, with the value that is what those runs did: a run whose
# config lacks one is grouped as if it had that value, so a new key alone never splits runs that computed the
# same thing. (task.name, key) -> value; task None for every task.
ADDED_LATER = {
    ("music", "task.model.output"): "independent",      # the only output before task.model.output=nade
    ("music", "task.model.nade_hidden"): 150,           # unused by the independent output
    ("music", "task.model.skip_first_frame"): False,    # every frame was scored before the option
    ("sst", "task.data.vocabulary"): "train",           # training words only, before vocabulary=vectors
    ("sst", "task.data.train_on"): "phrases",           # the distinct labelled phrases, before train_on
    (None, "trust_checkpoint"): False,                  # loading checkpoints only (not training)
    (None, "callbacks.divergence._target_"): "rrn_app.divergence.DivergenceGuard",  # the guard only stops a
    (None, "callbacks.divergence.patience"): 0,          # run that diverged: a finished run never met it
}
# Keys that moved: old dotted name -> new one.
RENAMED = {"task.data.dataset": "task.dataset"}


@dataclass
class Run:
    """One run folder and what its results.json says (status `finished`, or why it is not averaged)."""

    path: Path
    status: str
    reason: str = ""
    task: str = "?"
    cell: str = "?"
    seed: object = None
    metrics: dict[str, float] = field(default_factory=dict)
    history: dict[str, list] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    settings: dict[str, object] = field(default_factory=dict)
    parameters: int | None = None
    epochs: int | None = None
    fit_seconds: float | None = None  # training time (fit) as the run measured it; machines differ

    @property
    def finished(self) -> bool:
        return self.status == FINISHED


@dataclass
class Group:
    """Finished runs with the same settings (they differ at most in their seed)."""

    task: str
    settings: dict[str, object]
    runs: list[Run]

    def values(self, metric: str) -> list[float]:
        return [run.metrics[metric] for run in self.runs if metric in run.metrics]

    @property
    def seeds(self) -> list:
        return [run.seed for run in self.runs]

    @property
    def parameters(self) -> list[int]:
        """The distinct parameter counts of the runs (one, unless a setting the grouping ignores changed it)."""
        return sorted({run.parameters for run in self.runs if run.parameters is not None})

    @property
    def fit_minutes(self) -> float | None:
        """The mean training (fit) time of the runs in minutes, None if no run recorded it."""
        seconds = [run.fit_seconds for run in self.runs if run.fit_seconds is not None]
        return sum(seconds) / len(seconds) / 60 if seconds else None


def flatten(config: dict, prefix: str = "") -> dict[str, object]:
    """{"cell": {"name": "lstm"}} -> {"cell.name": "lstm"}; lists stay values."""
    flat: dict[str, object] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def is_run_local(key: str) -> bool:
    if any(key == local or key.startswith(local + ".") for local in RUN_LOCAL_KEYS):
        return True
    if any("progress_bar" in part for part in key.split(".")):  # callbacks.rich_progress_bar, ...
        return True
    return key.rsplit(".", 1)[-1] in RUN_LOCAL_LEAVES


def settings_of(config: dict) -> dict[str, object]:
    """The grouping key of a run: its flattened config without seed and run-local keys; paths inside the run
    folder or the data folder written relative to them (`<run_dir>/checkpoints`, `<data.root>/glove/...`)."""
    places = (("run_dir", config.get("run_dir")), ("data.root", (config.get("data") or {}).get("root")))
    bases = [(f"<{name}>/", base.rstrip("/") + "/") for name, base in places
             if isinstance(base, str) and base.strip("/")]
    settings = {}
    for key, value in flatten(config).items():
        if is_run_local(key):
            continue
        for name, base in bases:
            if isinstance(value, str) and (value.startswith(base) or value == base.rstrip("/")):
                value = name + value[len(base):]
                break
        settings[RENAMED.get(key, key)] = value
    task = settings.get("task.name")
    for (for_task, key), value in ADDED_LATER.items():
        # the divergence guard joined the default callbacks: fill it only where the run had the default group
        had_callbacks = any(name.startswith("callbacks.model_checkpoint") for name in settings)
        if for_task in (None, task) and (not key.startswith("callbacks.") or had_callbacks):
            settings.setdefault(key, value)
    return settings


def read_run(results: Path) -> Run:
    """A Run from one results.json; unreadable, unfinished or non-finite results make a Run that is not averaged."""
    folder = results.parent
    try:
        data = json.loads(results.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as error:
        return Run(folder, "failed", f"results.json unreadable ({error})")
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    task = data.get("task") or (config.get("task") or {}).get("name") or "?"
    cell = data.get("cell") or (config.get("cell") or {}).get("name") or "?"
    history = data.get("history") if isinstance(data.get("history"), dict) else {}
    overrides = data.get("overrides") if isinstance(data.get("overrides"), list) else []
    run = Run(folder, FINISHED, task=str(task), cell=str(cell), seed=config.get("seed"), history=history,
              overrides=[str(item) for item in overrides], settings=settings_of(config),
              parameters=data.get("parameters"), epochs=data.get("epochs"), fit_seconds=data.get("fit_seconds"))
    status = data.get("status", FINISHED)  # results.json from before the status field: written at the end
    metrics = data.get("metrics")
    if status != FINISHED:
        run.status, run.reason = str(status), f"status is {status!r}"
    elif not isinstance(metrics, dict) or not metrics:
        run.status, run.reason = "failed", "results.json has no metrics"
    elif not config:
        run.status, run.reason = "failed", "results.json has no config, so it cannot be grouped"
    else:
        bad = [f"{name}={value}" for name, value in sorted(metrics.items())
               if not isinstance(value, (int, float)) or not math.isfinite(value)]
        if bad:
            run.status, run.reason = "failed", "non-finite metrics: " + ", ".join(bad[:3])
    if isinstance(metrics, dict):
        run.metrics = {name: float(value) for name, value in metrics.items()
                       if isinstance(value, (int, float)) and math.isfinite(value)}
    return run


def unfinished_run(folder: Path) -> Run:
    """A run folder Hydra made (`.hydra/`) in which training never wrote results.json."""
    task = cell = "?"
    overrides: list[str] = []
    try:
        loaded = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text()) or []
        overrides = [str(item) for item in loaded]
        for item in overrides:
            key, _, value = item.partition("=")
            if key.lstrip("+~") == "task":
                task = value
            if key.lstrip("+~") == "cell":
                cell = value
    except (OSError, ValueError, yaml.YAMLError):  # an unreadable overrides file only costs the labels
        pass
    return Run(folder, "unfinished", "no results.json (the run stopped before the end, or is still running)",
               task=task, cell=cell, overrides=overrides)


def collect_runs(paths) -> list[Run]:
    """Every run under `paths` (run folders, multirun folders, folders of folders, or results.json files)."""
    runs: dict[Path, Run] = {}
    for given in map(Path, paths):
        if not given.exists():
            raise UserError(f"{given}: no such file or folder. Give run folders, multirun folders or results.json "
                            "files (e.g. rrn-report runs/ or rrn-report results/sst).")
        if given.is_file():
            if given.suffix != ".json":
                raise UserError(f"{given} is not a results.json file; give the run folder or its results.json.")
            runs.setdefault(given.parent.resolve(), read_run(given))
            continue
        for results in sorted(given.rglob("results.json")):
            runs.setdefault(results.parent.resolve(), read_run(results))
        for hydra_dir in sorted(given.rglob(".hydra")):
            folder = hydra_dir.parent
            if hydra_dir.is_dir() and not (folder / "results.json").exists():
                runs.setdefault(folder.resolve(), unfinished_run(folder))
    return sorted(runs.values(), key=lambda run: str(run.path))


def group_runs(runs: list[Run]) -> list[Group]:
    """Finished runs grouped by settings (seed and run-local keys left out), in order of first appearance."""
    groups: dict[str, Group] = {}
    for run in runs:
        if not run.finished:
            continue
        key = json.dumps(run.settings, sort_keys=True, default=str)
        if key not in groups:
            groups[key] = Group(run.task, run.settings, [])
        groups[key].runs.append(run)
    return list(groups.values())


def _column_rank(key: str) -> tuple:
    """Which differing settings come first as columns: task, cell, the cell's options, the task's, the trainer's,
    the rest, callbacks last."""
    order = ("task.name", "cell.name", "cell.", "task.", "trainer.")
    rank = next((place for place, prefix in enumerate(order) if key == prefix or
                 (prefix.endswith(".") and key.startswith(prefix))), len(order) + key.startswith("callbacks."))
    return rank, key


def differing_keys(groups: list[Group]) -> list[str]:
    """Settings keys whose value is not the same in every group (absent counts as a value), most telling first."""
    keys = {key for group in groups for key in group.settings}

    def shown(group: Group, key: str) -> str:
        return json.dumps(group.settings[key], default=str) if key in group.settings else "<absent>"

    return sorted((key for key in keys if len({shown(group, key) for group in groups}) > 1), key=_column_rank)
