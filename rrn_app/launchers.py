"""The Hydra plugins behind `rrn-train -m`'s launchers and search, and the torch threads of a parallel job.

`hydra/launcher=joblib` (several jobs at once on this machine), `hydra/launcher=submitit_local|submitit_slurm`
(each job a process of its own, or a SLURM job) and `hparams_search=...` (Optuna's sweeper) come from Hydra
plugins, installed with `pip install 'rrn[sweep]'`; without one the command line stops at once with a line
that says so. A joblib job whose `threads` is null gets cores // n_jobs torch threads (at least one), so that
n_jobs jobs share the machine's cores instead of each taking all of them; a submitit job, the cpus_per_task it
asked for (docs/sweeps.md).
"""

from __future__ import annotations

import importlib.util
import os

from rrn_app.option_checks import UserError

EXTRA = "pip install 'rrn[sweep]'"

# (command-line group, choice) -> (the Hydra plugin's module, its PyPI name)
PLUGINS = {
    ("hydra/launcher", "joblib"): ("hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher"),
    ("hydra/launcher", "submitit_local"): ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher"),
    ("hydra/launcher", "submitit_slurm"): ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher"),
    ("hydra/sweeper", "optuna"): ("hydra_plugins.hydra_optuna_sweeper", "hydra-optuna-sweeper"),
    ("hparams_search", None): ("hydra_plugins.hydra_optuna_sweeper", "hydra-optuna-sweeper"),  # any search
}


def installed(module: str) -> bool:
    """Whether a plugin's module can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module hidden in sys.modules
        return False


def check_plugins(overrides: list[str]) -> None:
    """A one-line UserError naming `rrn[sweep]` when the command line chooses a launcher or sweeper whose Hydra
    plugin is not installed (e.g. `hydra/launcher=joblib` without hydra-joblib-launcher)."""
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if not sep:
            continue
        key = key.removeprefix("override ").strip()
        plugin = PLUGINS.get((key, value)) or PLUGINS.get((key, None))
        if plugin is None or not value or value == "null":
            continue
        module, package = plugin
        if not installed(module):
            raise UserError(f"{key}={value} needs the Hydra plugin {package}, which is not installed: {EXTRA}")


def cores() -> int:
    """The CPU cores this process may use (its affinity mask where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def parallel_jobs(launcher) -> int | None:
    """How many jobs a joblib launcher (its Hydra config) runs at once: n_jobs, with joblib's meaning of
    negative values (-1: one per core, -2: all cores but one, ...); None for any other launcher."""
    if launcher is None or not str(launcher.get("_target_", "")).endswith("JoblibLauncher"):
        return None
    n_jobs = int(launcher.get("n_jobs") or 1)
    return max(cores() + 1 + n_jobs, 1) if n_jobs < 0 else n_jobs


def default_threads(threads) -> int | None:
    """The torch threads of this job: `threads` if set; with `threads: null`, in a joblib multirun the cores
    shared out among the jobs that run at once (cores // n_jobs, at least 1), under submitit the job's
    `hydra.launcher.cpus_per_task` if given; else None (PyTorch's default)."""
    if threads:
        return int(threads)
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().get("launcher")
    jobs = parallel_jobs(launcher)
    if jobs is not None:
        return max(cores() // jobs, 1)
    if launcher is not None and "submitit" in str(launcher.get("_target_", "")) and launcher.get("cpus_per_task"):
        return int(launcher.cpus_per_task)
    return None
