"""Where the configs live, plugin cells as config choices, and the checks of a composed config.

A composed config is checked before any data is read: every group choice must exist (each value of a sweep
too), and the options of the cell, the task model and the data module must fit their constructors'
annotations (`bidirectional: bool` takes true or false, nothing else). The command line's own checks, which
run before Hydra makes a run folder, are in rrn_app/command_line.py.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import re
from importlib.resources import files
from pathlib import Path

from omegaconf import OmegaConf

from rrn_app.option_checks import UserError, check_annotated_options

# The app-level layer of every cell's config: where rrn-train wants other values than the Python API. A cell's
# config node (`cell=<name>`) is its constructor's defaults with these on top, for the options the cell has: the
# Python API builds one layer (`get_cell("lstm")(input_size=50, hidden_size=80)`), rrn-train two layers of 80
# units, for built-in and plugin cells alike. Nothing else in rrn writes a cell default (conf/cell/ holds no yaml).
CELL_DEFAULTS = {"hidden_size": 80, "num_layers": 2}

# Constructor-backed nodes of the config: (config key, where the class is named).
CHECKED_NODES = ("task.model", "task.data")

# A job folder name longer than this (most file systems allow 255 bytes) is cut and given a hash of the whole.
MAX_FOLDER_NAME = 160


def config_dir() -> Path:
    """The folder of yaml configs: conf/ of the repository, installed as the package rrn_app.conf.

    The config tree is this folder plus the cells' nodes, which are made from their constructors: asking for the
    folder registers them (`register_cell_configs`), so whoever composes from it finds `cell=<name>`.
    """
    register_cell_configs()
    return Path(str(files("rrn_app.conf")))


def config_groups() -> list[str]:
    """The config groups rrn offers (folders of conf/ holding yaml files), plus `cell` for plugin cells."""
    groups = {path.name for path in config_dir().iterdir() if path.is_dir() and any(path.rglob("*.yaml"))}
    return sorted(groups | {"cell"})


def choices(group: str) -> list[str]:
    """The names a config group offers: its yaml files (sub/folder/name for nested ones), plus (for `cell`)
    every registered cell."""
    folder = config_dir() / group
    names = {path.relative_to(folder).with_suffix("").as_posix() for path in folder.rglob("*.yaml")} \
        if folder.is_dir() else set()
    if group == "cell":
        from rrn_app.cells import list_cells

        names |= set(list_cells())
    return sorted(names)


def cell_node(name: str) -> dict:
    """The config node of `cell=<name>`: `name`, the constructor's defaults, then CELL_DEFAULTS for the options the
    cell has (all of them if it takes **options); "???" (Hydra's missing value) for an option without a default."""
    from rrn_app.cells import cell_info
    from rrn_app.option_checks import accepts_any_keyword

    info = cell_info(name)
    options = info.options()
    node = {"name": name}
    for option, default in options.items():
        node[option] = "???" if default is inspect.Parameter.empty else default
    open_ended = accepts_any_keyword(info.cls)
    node.update({option: value for option, value in CELL_DEFAULTS.items() if option in options or open_ended})
    return node


def register_cell_configs() -> None:
    """Put the config node of every cell, built-in or plugin, in Hydra's ConfigStore (group `cell`), each made
    from its constructor only when Hydra loads it (`CellConfigNode`): composing `cell=lstm` imports no plugin.

    conf/cell/ holds no yaml: `cell=<name>`, `cell.<option>=...` and config.yaml's default `cell: lstm` all
    resolve to these nodes. Safe to call again (a cell registered since gets its node too).
    """
    global _stored_cells
    from hydra.core.config_store import ConfigStore

    from rrn_app.cell_config_nodes import CellConfigNode
    from rrn_app.cells import list_cells

    cells = tuple(list_cells())
    if cells == _stored_cells:
        return  # nothing registered since the last call (config_dir() calls this every time)
    group = ConfigStore.instance().repo.setdefault("cell", {})
    for name in cells:
        group[f"{name}.yaml"] = CellConfigNode(name)
    _stored_cells = cells


_stored_cells: tuple = ()


register_plugin_cells = register_cell_configs  # the older name



def parse_overrides(overrides: list[str]):
    """The command line's key=value arguments as Hydra's parser reads them; None if Hydra would reject them
    (then Hydra itself reports the syntax error)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        return None


def group_values(override) -> list:
    """The group choices one override stands for: one, or each value of a sweep (`a,b`, `choice(a,b)`,
    `glob(res_*)`, ...). A list value (`callbacks=[a,b]`) stands for each of its names."""
    from hydra.core.override_parser.types import Glob

    value = override.value()
    if isinstance(value, Glob):
        values = value.filter(choices(override.key_or_group))
    elif override.is_discrete_sweep():
        values = list(override.sweep_iterator())
    elif override.is_sweep_override():
        values = []  # an interval: no names to check
    else:
        values = [value]
    flat = []
    for value in values:
        flat.extend(value if isinstance(value, list) else [value])
    return [str(value) for value in flat if value is not None and str(value) != "null"]


def check_group_choices(overrides: list[str]) -> None:
    """Fail early, with the known names and a close match, on `task=`/`cell=`/... values that do not exist,
    each value of a sweep (`cell=lstm,res_lstn`) included."""
    parsed = parse_overrides(overrides)
    if parsed is None:
        return
    groups = config_groups()
    for override in parsed:
        key = override.key_or_group
        if override.is_delete() or override.is_hydra_override() or key not in groups:
            continue
        known = choices(key)
        values = group_values(override)
        if not values and override.is_choice_sweep():
            raise UserError(f"{override.input_line} matches no {key} choice. Known {key} choices: {', '.join(known)}.")
        for value in values:
            if value not in known and key == "cell":
                known = _cell_choices_with_every_plugin()  # an older plugin's cells show up once it is imported
            if value not in known:
                close = difflib.get_close_matches(value, known, n=1)
                hint = f" Did you mean {key}={close[0]}?" if close else ""
                where = f" (in {override.input_line})" if override.is_sweep_override() else ""
                raise UserError(f"unknown {key} {value!r}{where}.{hint} Known {key} choices: {', '.join(known)}.")
            if key == "cell":
                from rrn_app.cells import cell_info

                cell_info(value)  # the chosen plugin imported now: one that fails to is a one-line error


def _cell_choices_with_every_plugin() -> list[str]:
    """The `cell` choices once every plugin is imported (older plugins register cells under names of their own)."""
    from rrn_app.cells.registry import load_plugins

    load_plugins()
    register_cell_configs()
    return choices("cell")


def _node_options(node) -> dict:
    """A config node as plain Python values, interpolations resolved where they can be (a value that cannot be
    resolved here, e.g. one naming Hydra's run-time settings, is left out)."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(node, resolve=True)
    except OmegaConfBaseException:
        options = {}
        for key in node:
            try:
                value = node[key]
                options[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
            except OmegaConfBaseException:
                continue
        return options


def node_class(cfg, key: str):
    """(class, label) behind a constructor-backed node (`cell`, `task.model`, `task.data`), or (None, None)."""
    node = OmegaConf.select(cfg, key)
    if node is None or not OmegaConf.is_dict(node):
        return None, None
    if key == "cell":
        from rrn_app.cells import cell_info

        name = node.get("name")
        return (cell_info(name).cls, name) if name else (None, None)
    target = node.get("_target_")
    if not target:
        return None, None
    from hydra.utils import get_class

    try:
        return get_class(target), target.rpartition(".")[2]
    except Exception:  # a _target_ that does not import: instantiate reports it with its own message
        return None, None


def check_options(cfg) -> None:
    """The cell's, the task model's and the data module's options against their constructors' annotations,
    before any data is read: a one-line UserError naming the full key and what it may be."""
    cls, _ = node_class(cfg, "cell")
    if cls is not None:
        options = _node_options(cfg.cell)
        name = options.pop("name")
        check_annotated_options("cell", cls, options, owner=name)
    for key in CHECKED_NODES:
        cls, label = node_class(cfg, key)
        if cls is not None:
            check_annotated_options(key, cls, _node_options(OmegaConf.select(cfg, key)), owner=label)


def job_folder_name(number, overrides="") -> str:
    """A multirun job's folder: `3_cell=res_lstm,seed=1` (its number and its overrides), made safe for a file
    system: characters other than letters, digits and `=,._+-` become `_`, and a long name is cut, keeping a
    hash of the whole so that two jobs never share a folder."""
    name = f"{number}_{overrides}" if overrides else str(number)
    safe = re.sub(r"[^A-Za-z0-9=,._+\-]", "_", name)
    if len(safe) > MAX_FOLDER_NAME:
        safe = f"{safe[:MAX_FOLDER_NAME - 9]}~{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return safe


def register_resolvers() -> None:
    """`${rrn_job_folder:...}` for conf/config.yaml's hydra.sweep.subdir (registered on import of this module:
    a launcher's worker process that unpickles the task function imports it too)."""
    if not OmegaConf.has_resolver("rrn_job_folder"):
        OmegaConf.register_new_resolver("rrn_job_folder", job_folder_name)


register_resolvers()
