"""The cell registry: built-in cells register on import, third-party packages through entry points.

    @register_cell("my_cell")
    class MyCell(nn.Module): ...

    get_cell("my_cell")(input_size=..., hidden_size=..., num_layers=..., **options)
    build_cell({"name": "my_cell", "hidden_size": 80}, input_size=50)   # what every task and rrn-train use
    list_cells()  # sorted names

A third-party package declares, in its pyproject.toml,

    [project.entry-points."rrn_app.cells"]
    my_cell = "my_package.cells"      # a module whose import registers cells, or the class itself

and its cells appear the first time the registry is asked for a cell. A plugin that fails to load
gives a warning naming it and the error; every other cell keeps working.
"""

from __future__ import annotations

import difflib
import inspect
import re
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points

from rrn_app.option_checks import UserError

ENTRY_POINT_GROUP = "rrn_app.cells"
BUILT_IN = "built-in (rrn_app)"


class UnknownCellError(UserError, KeyError):
    """Raised by `get_cell` for a name nobody registered; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


@dataclass(frozen=True)
class CellInfo:
    name: str
    cls: type
    source: str  # BUILT_IN, or "plugin <distribution> <version> (entry point <name>)"

    def options(self) -> dict[str, object]:
        """Constructor options beyond `input_size`, with their defaults (`inspect.Parameter.empty` if required)."""
        parameters = inspect.signature(self.cls.__init__).parameters
        return {
            name: parameter.default
            for name, parameter in parameters.items()
            if name not in ("self", "input_size") and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        }

    def option_types(self) -> dict[str, str]:
        """Each option's annotation as text (`bool`, `int | None`, `Literal['tanh', 'relu']`; "" if none):
        rrn-train checks command-line values against these before any data is read."""
        from rrn_app.option_checks import constructor_parameters, type_label

        return {name: type_label(annotation) for name, (annotation, _) in constructor_parameters(self.cls).items()
                if name in self.options()}

    def option_help(self) -> dict[str, str]:
        """One line of help per option, read from the docstrings (see `option_help`)."""
        return option_help(self.cls, list(self.options()))

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.cls) or ""
        return doc.splitlines()[0] if doc else ""


_OPTION_LINE = re.compile(r"^\s*(\w+)\s*(?:\([^)]*\))?\s*:\s+(\S.*)$")  # `name: text`, `name (type): text`


def option_help(cls: type, options: list[str]) -> dict[str, str]:
    """{option: one line of help} from docstring lines of the form `name: text` (Google style `Args:`/`Options:`;
    `name (type): text` too), read from the class and its constructor's docstrings, the class's own before its
    bases' (a subclass overrides a line by writing its own). Only the first line of each entry is kept;
    options no docstring describes are left out."""
    wanted, found = set(options), {}
    for klass in inspect.getmro(cls):
        for doc in (klass.__dict__.get("__doc__"), getattr(klass.__dict__.get("__init__"), "__doc__", None)):
            for line in inspect.cleandoc(doc or "").splitlines():
                match = _OPTION_LINE.match(line)
                if match and match.group(1) in wanted and match.group(1) not in found:
                    found[match.group(1)] = match.group(2).strip()
    return {option: found[option] for option in options if option in found}


_CELLS: dict[str, CellInfo] = {}
_current_source = BUILT_IN
_plugins_loaded = False


def register_cell(name: str):
    """Class decorator that adds a cell to the registry under `name`; a name can be registered once."""

    def decorator(cls: type) -> type:
        if name in _CELLS:
            raise ValueError(
                f"cell name {name!r} is already registered by {_CELLS[name].source} "
                f"({_CELLS[name].cls.__module__}.{_CELLS[name].cls.__qualname__}); choose another name"
            )
        _CELLS[name] = CellInfo(name=name, cls=cls, source=_current_source)
        cls.cell_name = name
        return cls

    return decorator


def load_plugins() -> None:
    """Import every `rrn_app.cells` entry point once; failures become warnings, not errors."""
    global _plugins_loaded, _current_source
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        distribution = getattr(entry_point, "dist", None)
        where = f"{distribution.name} {distribution.version}" if distribution else entry_point.value
        _current_source = f"plugin {where} (entry point {entry_point.name} = {entry_point.value})"
        try:
            entry_point.load()
        except Exception as error:  # a broken plugin must not take the other cells down
            warnings.warn(
                f"rrn: the cell plugin {entry_point.name!r} ({where}) failed to load and is skipped: "
                f"{type(error).__name__}: {error}",
                RuntimeWarning,
                stacklevel=2,
            )
        finally:
            _current_source = BUILT_IN


def cell_info(name: str) -> CellInfo:
    load_plugins()
    if name not in _CELLS:
        known = sorted(_CELLS)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownCellError(f"unknown cell {name!r}.{hint} Known cells: {', '.join(known)}.")
    return _CELLS[name]


def get_cell(name: str) -> type:
    """The cell class registered under `name`; call it with input_size, hidden_size, num_layers, **options."""
    return cell_info(name).cls


def build_cell(config, input_size: int, prefix: str = "cell"):
    """The cell a config node describes (`{"name": "res_lstm", "hidden_size": 80, ...}`: a dict or an OmegaConf
    node, e.g. rrn-train's `cell`), built for inputs of width `input_size`.

    The one way rrn's tasks and rrn-train's early check build a cell. Options are checked against the
    constructor's annotations first; a bad one is a one-line UserError naming `<prefix>.<option>` (an
    InvalidOption for a bad value, the known options for an unknown one).
    """
    from omegaconf import OmegaConf

    from rrn_app.option_checks import InvalidOption, check_annotated_options

    options = OmegaConf.to_container(config, resolve=True) if OmegaConf.is_config(config) else dict(config)
    if "name" not in options:
        raise UserError(f"{prefix}.name is missing: choose a cell with {prefix}=<name> (Known cells: "
                        f"{', '.join(list_cells())}).")
    name = options.pop("name")
    info = cell_info(name)
    check_annotated_options(prefix, info.cls, options, owner=name)
    try:
        return info.cls(input_size=input_size, **options)
    except InvalidOption as error:
        raise error.with_prefix(prefix) from None
    except TypeError as error:  # e.g. a required option the config does not give
        known = ", ".join(info.options())
        raise UserError(f"cell {name!r} rejected its options ({error}). Its options are: {known}.") from None


def list_cells() -> list[str]:
    load_plugins()
    return sorted(_CELLS)


def all_cell_infos() -> list[CellInfo]:
    return [_CELLS[name] for name in list_cells()]
