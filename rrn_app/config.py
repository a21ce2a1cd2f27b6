"""Where the configs live, plugin cells as config choices, and early checks of the command line."""

from __future__ import annotations

import difflib
import inspect
from importlib.resources import files
from pathlib import Path

from rrn_app.validation import UserError

# Options every cell config starts from when a plugin ships no yaml; the cell's own defaults override these.
CELL_DEFAULTS = {"hidden_size": 80, "num_layers": 2, "dropout": 0.0, "bidirectional": False}


def config_dir() -> Path:
    """The folder of yaml configs: conf/ of the repository, installed as the package rrn_app.conf."""
    return Path(str(files("rrn_app.conf")))


def choices(group: str) -> list[str]:
    """The names a config group offers: its yaml files, plus (for `cell`) every registered cell."""
    names = {path.stem for path in (config_dir() / group).glob("*.yaml")}
    if group == "cell":
        from rrn_app.cells import list_cells

        names |= set(list_cells())
    return sorted(names)


def register_plugin_cells() -> None:
    """Put a config node in Hydra's ConfigStore for every registered cell without a yaml in conf/cell/.

    This is what makes `cell=<plugin cell>` and `cell.<option>=...` work for third-party cells.
    """
    from hydra.core.config_store import ConfigStore

    from rrn_app.cells import all_cell_infos

    have_yaml = {path.stem for path in (config_dir() / "cell").glob("*.yaml")}
    store = ConfigStore.instance()
    for info in all_cell_infos():
        if info.name in have_yaml:
            continue
        node = {"name": info.name, **CELL_DEFAULTS}
        for option, default in info.options().items():
            if default is not inspect.Parameter.empty:
                node[option] = default
            elif option not in node:
                node[option] = "???"  # required: the user must give cell.<option>=...
        store.store(group="cell", name=info.name, node=node)


def check_group_choices(overrides: list[str]) -> None:
    """Fail early, with the known names and a close match, on `task=`/`cell=`/... values that do not exist."""
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if not sep or key not in ("task", "cell", "logger", "trainer", "experiment") or value in ("", "null"):
            continue
        known = choices(key)
        if value not in known:
            close = difflib.get_close_matches(value, known, n=1)
            hint = f" Did you mean {key}={close[0]}?" if close else ""
            raise UserError(f"unknown {key} {value!r}.{hint} Known {key} choices: {', '.join(known)}.")
