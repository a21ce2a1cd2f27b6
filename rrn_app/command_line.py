"""rrn-train's command line before and after Hydra: checks that run before any run folder exists, and what a
job hands back.

`preflight(argv)` reads the arguments as Hydra will (its own argument and override parsers), rewrites
deprecated keys, and composes every job of the run (each combination of a multirun's swept values) to check
it: group names, misspelt keys (`cell.hiden_size`: the known options and the closest match, not Hydra's
"not in struct"), and option values against their constructors' annotations. Errors are one-line UserErrors;
anything else Hydra reports itself, as it would have.
"""

from __future__ import annotations

import itertools
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from rrn_app.config import (check_group_choices, check_options, choices, config_dir, config_groups, node_class,
                            parse_overrides)
from rrn_app.launchers import check_plugins
from rrn_app.option_checks import UserError, constructor_parameters, unknown_option

# old key -> new key; the old one still works, with a one-line note
DEPRECATED_KEYS = {"task.data.dataset": "task.dataset"}

# Keys of the root config and of `data` that rrn reads although config.yaml does not set them: `+key=value`
# for any other key there (`+lr=0.1`) would change nothing, so it is an error (check_added_keys).
READ_IF_ADDED = {"test_after_fit"}
# Nodes whose keys nothing but rrn's own code reads (others go to a constructor, which checks its options).
PLAIN_NODES = ("", "data", "task")

# Checking every job of a huge sweep would take long: past this many, each swept value is checked in one job.
MAX_CHECKED_JOBS = 256


def rewrite_deprecated(argument: str) -> str:
    """`task.data.dataset=ptb_char` -> `task.dataset=ptb_char` (with a note on stderr); others unchanged."""
    stripped = argument.lstrip("+~")
    key, sep, value = stripped.partition("=")
    if key not in DEPRECATED_KEYS:
        return argument
    new = DEPRECATED_KEYS[key]
    print(f"rrn-train: {key}= is deprecated, use {new}={value} (one key for every task with several datasets)",
          file=sys.stderr)
    return f"{argument[:len(argument) - len(stripped)]}{new}{sep}{value}"


def job_override_lists(overrides: list[str], multirun: bool) -> list[list[str]] | None:
    """The overrides of each job the run will start: the product of the swept values in a multirun (as
    Hydra's basic sweeper makes them). A sweep that cannot be enumerated (`interval(...)`, for a search
    sweeper) is left out: each job checks its own values. None if Hydra cannot parse the overrides; a
    UserError for a sweep without -m."""
    parsed = parse_overrides(overrides)
    if parsed is None:
        return None
    if not multirun:
        sweeps = [override.input_line for override in parsed if override.is_sweep_override()]
        if sweeps:
            raise UserError(f"{sweeps[0]} is a sweep: add -m (rrn-train -m ...) to run one job per value, or write "
                            "a list as key=[a,b]")
        return [list(overrides)]
    from hydra.core.override_parser.types import Glob

    groups = config_groups()
    per_key = []
    for override in parsed:
        if not override.is_sweep_override():
            per_key.append([override.input_line])
            continue
        key = override.get_key_element()
        value = override.value()
        if isinstance(value, Glob):
            if override.key_or_group not in groups:
                continue
            values = value.filter(choices(override.key_or_group))
        elif override.is_discrete_sweep():
            values = list(override.sweep_string_iterator())
        else:
            continue
        per_key.append([f"{key}={value}" for value in values])
    total = 1
    for values in per_key:
        total *= max(len(values), 1)
    if total <= MAX_CHECKED_JOBS:
        return [list(job) for job in itertools.product(*per_key)]
    longest = max(len(values) for values in per_key)  # every value of every key in at least one job
    return [[values[i % len(values)] for values in per_key if values] for i in range(longest)]


def _explain_missing_key(full_key: str, base_cfg, value: str) -> UserError:
    """The error for a key the composed config does not have: the known options where the path stops, the
    closest match, and (for a constructor option the yaml does not set) how to add it."""
    from omegaconf import OmegaConf

    parts = full_key.split(".")
    node = base_cfg
    for depth, part in enumerate(parts):
        if OmegaConf.is_dict(node) and part in node:
            node = node[part]
            continue
        parent = ".".join(parts[:depth])
        known = set(node.keys()) if OmegaConf.is_dict(node) else set()
        cls, label = node_class(base_cfg, parent) if parent else (None, None)
        owner = ""
        if cls is not None:
            parameters = constructor_parameters(cls)
            settable = set(parameters) - {"input_size"}
            owner = f" ({label})"
            if part in settable and depth == len(parts) - 1:
                return UserError(f"{full_key} is an option of {label} that this config does not set: add it with "
                                 f"+{full_key}={value}")
        known = {name for name in known if not name.startswith("_")}
        error = unknown_option(".".join(parts[: depth + 1]), known, owner)
        if parent == "cell" and depth == len(parts) - 1:
            error = UserError(f"{error}{_cells_with_option(part)}")
        return error
    return UserError(f"{full_key}: Hydra could not set it")


def _cells_with_option(option: str) -> str:
    """" The cells that have it: gru, lstm, ..." for an option some other cell has (of the cells imported now:
    naming them imports no plugin), else ""."""
    from rrn_app.cells import registry

    having = [name for name in registry.list_cells() if registry.is_imported(name)
              and option in registry.cell_info(name).options()]
    return f" The cells with a {option} option: {', '.join(having)}." if having else ""


def check_added_keys(overrides: list[str], cfg) -> None:
    """`+key=value` where no component reads `key` (the root config, `data.*`, `task.<key>`): a UserError with
    the key it probably meant (`+lr=0.1` -> task.model.lr), instead of a run that silently ignores it."""
    import difflib

    from omegaconf import OmegaConf

    groups = set(config_groups())
    for override in parse_overrides(overrides) or []:
        if not (override.is_add() or override.is_force_add()) or override.is_hydra_override():
            continue
        key = override.key_or_group
        parent, _, name = key.rpartition(".")
        if key in groups or parent not in PLAIN_NODES or key in READ_IF_ADDED:
            continue
        leaves = [leaf for leaf in _leaf_keys(OmegaConf.to_container(cfg, resolve=False)) if leaf != key]
        same_name = [leaf for leaf in leaves if leaf.rpartition(".")[2] == name]
        close = same_name or difflib.get_close_matches(key, leaves, n=1)
        value = override.input_line.partition("=")[2]
        hint = f" Did you mean {close[0]}={value}?" if close else ""
        raise UserError(f"{override.input_line}: no part of rrn reads {key}, so it would change nothing.{hint}")


def _leaf_keys(node, prefix: str = "") -> list[str]:
    if not isinstance(node, dict):
        return [prefix[:-1]]
    return [leaf for key, value in node.items() if key != "hydra" for leaf in _leaf_keys(value, f"{prefix}{key}.")]


def _compose(overrides: list[str], config_name: str):
    """Compose one job's config as Hydra will; a UserError for a misspelt key, None for anything Hydra itself
    should report (a missing launcher plugin, a bad hydra.* key, ...)."""
    from hydra import compose
    from hydra.errors import ConfigCompositionException, HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return compose(config_name=config_name, overrides=overrides)
    except ConfigCompositionException as error:
        cause = error.__cause__
        full_key = getattr(cause, "full_key", None)
        if not full_key or not isinstance(cause, OmegaConfBaseException) or full_key.startswith("hydra"):
            return None
        parsed = parse_overrides(overrides) or []
        groups = set(config_groups())
        structural = [o.input_line for o in parsed if o.key_or_group in groups or o.is_add() or o.is_force_add()
                      or "/" in o.key_or_group]
        value = next((o.input_line.partition("=")[2] for o in parsed if o.key_or_group == full_key), "...")
        try:
            base = compose(config_name=config_name, overrides=structural)
        except HydraException:
            return None
        raise _explain_missing_key(full_key, base, value) from None
    except HydraException:
        return None


def preflight(argv: list[str], check_job: Callable | None = None) -> list[str]:
    """Check rrn-train's arguments before Hydra starts (and before it makes a run folder); returns the
    arguments to hand Hydra: deprecated keys rewritten, and `--cfg` showing resolved values (`--resolve`).

    `check_job(cfg)` runs on every job's composed config after the annotation checks (rrn-train builds the
    cell there, small, so a bad value fails now rather than after the data is read).
    """
    from hydra._internal.utils import get_args_parser

    if "--version" in argv:
        return argv  # Hydra answers it
    try:
        arguments, _ = get_args_parser().parse_known_args(argv)
    except SystemExit:  # a flag Hydra's parser refuses: Hydra reports it
        return argv
    overrides = [rewrite_deprecated(override) for override in arguments.overrides]
    renamed = dict(zip(arguments.overrides, overrides))
    argv = [renamed.get(argument, argument) for argument in argv]
    if arguments.cfg == "job" and not arguments.resolve:
        argv.append("--resolve")  # show the values a run will use, not `${data.root}` (Hydra's own settings
        # under --cfg hydra/all name run-time values such as the job's number, so those stay as written)
    check_group_choices(overrides)
    check_plugins(overrides)  # hydra/launcher=joblib, hparams_search=... without their plugins: `rrn[sweep]`
    if arguments.cfg and not (arguments.help or arguments.hydra_help or arguments.config_path):
        _check_keys(overrides, arguments)  # --cfg job shows the config: a misspelt key is the one-line error too
    if (arguments.help or arguments.hydra_help or arguments.cfg or arguments.shell_completion
            or getattr(arguments, "info", None) or arguments.config_path or getattr(arguments, "experimental_rerun", None)):
        return argv
    jobs = job_override_lists(overrides, arguments.multirun)
    if not jobs:
        return argv
    from rrn_app.run_folders import check_run_folder_arguments

    check_run_folder_arguments(overrides, arguments.multirun)  # before Hydra makes (or reuses) the folder
    from hydra import initialize_config_dir

    swept = {o.get_key_element() for o in parse_overrides(overrides) or [] if o.is_sweep_override()}
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="rrn-train"):
        for job in jobs:
            try:
                cfg = _compose(job, arguments.config_name or "config")
                if cfg is None:
                    return argv
                check_options(cfg)
                check_added_keys(job, cfg)
                if check_job is not None:
                    check_job(cfg)
            except UserError as error:
                if len(jobs) == 1 or not swept:
                    raise
                label = " ".join(o for o in job if o.partition("=")[0] in swept)
                raise UserError(f"{error} (in the job {label})") from None
    return argv


def _check_keys(overrides: list[str], arguments) -> None:
    """Compose each job (as --cfg will) only to turn a key the config does not have (`cell.residual=true` for a
    cell without that option) into the one-line error naming the known options, not Hydra's "not in struct"."""
    from hydra import initialize_config_dir

    jobs = job_override_lists(overrides, arguments.multirun)
    if not jobs:
        return
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="rrn-train"):
        for job in jobs:
            _compose(job, arguments.config_name or "config")


def remove_unused_run_dir(run_dir: Path, sweep_dir: Path | None = None) -> bool:
    """Remove a run folder that holds nothing but Hydra's `.hydra/` (a run rejected before training); True if
    removed. A folder with anything else in it (checkpoints, results, logs) is left alone. `sweep_dir`: the
    multirun folder around it, removed too when it then holds nothing but Hydra's multirun.yaml."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or any(entry.name != ".hydra" for entry in run_dir.iterdir()):
        return False
    shutil.rmtree(run_dir)
    if sweep_dir is not None and Path(sweep_dir).is_dir() and \
            all(entry.name == "multirun.yaml" for entry in Path(sweep_dir).iterdir()):
        shutil.rmtree(sweep_dir)
    return True


def sweep_dir_of_this_job() -> Path | None:
    """The multirun folder of the running Hydra job; None for a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_config = HydraConfig.get()
    return Path(hydra_config.sweep.dir) if hydra_config.mode == RunMode.MULTIRUN else None


def monitored_metric(run_dir: Path, monitor: str) -> float | None:
    """The task's monitored validation metric (`val/loss`, `val/acc`, ...) of the run's results.json, for a
    sweeper to optimise; None where the run wrote none (a DDP rank other than 0)."""
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        return None
    value = json.loads(path.read_text())["metrics"].get(monitor)
    return None if value is None else float(value)

