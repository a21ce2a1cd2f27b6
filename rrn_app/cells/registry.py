"""The cell registry: built-in cells register on import, third-party packages through entry points.

    @register_cell("my_cell")
    class MyCell(nn.Module): ...

    get_cell("my_cell")(input_size=..., hidden_size=..., num_layers=..., **options)
    build_cell({"name": "my_cell", "hidden_size": 80}, input_size=50)   # what every task and rrn-train use
    list_cells()  # sorted names, plugin cells included, without importing any plugin

A third-party package declares, in its pyproject.toml, one entry point per cell, named as the cell:

    [project.entry-points."rrn_app.cells"]
    my_cell = "my_package.cells"            # a module whose import registers the cell `my_cell`
    my_other = "my_package.other:MyOther"   # or the class itself (registered under the entry point's name)

The registry knows plugin cells by these names without importing anything: a plugin's module is imported
the first time its cell is asked for (`get_cell`, `build_cell`, `cell_info`), so an installed plugin whose
import is slow (compiling a kernel, say) costs nothing to the commands and runs that do not use it.

A plugin that fails to import gives a warning naming it and the error, and asking for its cell is a one-line
`PluginImportError` (a UserError) naming the plugin and the import error; every other cell keeps working.
Older plugins whose one entry point registers several cells under other names keep working: a name nobody
declared imports the plugins not imported yet before it is called unknown.
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


class PluginImportError(UserError, ImportError):
    """The plugin that declares a cell failed to import: the message names the plugin and the import error."""


@dataclass(frozen=True)
class PluginEntry:
    """A cell a plugin declares (an entry point of the group `rrn_app.cells`), known without importing it."""

    name: str          # the entry point's name: the cell's name
    value: str         # what it loads: "package.module" or "package.module:Class"
    distribution: str  # "<distribution> <version>" of the package declaring it, or the value where unknown
    entry_point: object

    @property
    def source(self) -> str:
        return f"plugin {self.distribution} (entry point {self.name} = {self.value})"


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
_entries: dict[str, PluginEntry] | None = None  # found once per process (reading metadata, importing nothing)
_import_errors: dict[str, str] = {}              # entry name -> "ImportError: ..." of a plugin that failed
_not_cells: set[str] = set()                     # entry names whose import registered cells of other names only


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


def plugin_entries() -> dict[str, PluginEntry]:
    """{cell name: PluginEntry} of every installed plugin's entry points, read from the packages' metadata
    without importing them. Where two packages declare one name the first on sys.path wins."""
    global _entries
    if _entries is None:
        _entries = {}
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            distribution = getattr(entry_point, "dist", None)
            where = f"{distribution.name} {distribution.version}" if distribution else entry_point.value
            _entries.setdefault(entry_point.name, PluginEntry(entry_point.name, entry_point.value, where, entry_point))
    return _entries


def is_imported(name: str) -> bool:
    """Whether the cell `name` is registered in this process (built-in, or a plugin already imported)."""
    return name in _CELLS


def import_error(name: str) -> str | None:
    """The error the plugin declaring `name` failed to import with ("ImportError: needs libfoo"), if it did."""
    return _import_errors.get(name)


def load_plugin(name: str) -> bool:
    """Import the plugin behind the entry point `name` (once; a module already imported is not imported again);
    True if it imported. A failure is a warning naming the plugin and the error, remembered for `cell_info`.
    An entry point that loads a class not registered yet registers it under the entry point's name."""
    global _current_source
    entry = plugin_entries().get(name)
    if entry is None or name in _import_errors:
        return False
    _current_source = entry.source
    try:
        loaded = entry.entry_point.load()
        if isinstance(loaded, type) and name not in _CELLS and getattr(loaded, "cell_name", None) not in _CELLS:
            register_cell(name)(loaded)
    except Exception as error:  # a broken plugin must not take the other cells down
        _import_errors[name] = f"{type(error).__name__}: {' '.join(str(error).split())}"  # one line
        warnings.warn(f"rrn: the cell plugin {name!r} ({entry.distribution}) failed to load and is skipped: "
                      f"{_import_errors[name]}", RuntimeWarning, stacklevel=3)
        return False
    finally:
        _current_source = BUILT_IN
    if name not in _CELLS:
        _not_cells.add(name)  # an older plugin: its one entry point registers cells of other names
    return True


def load_plugins() -> None:
    """Import every plugin not imported yet (what `rrn-cells --import` and a name nobody declared do)."""
    for name in plugin_entries():
        if name not in _CELLS:
            load_plugin(name)


def _import_failure(name: str) -> PluginImportError:
    entry = plugin_entries()[name]
    package = entry.distribution.split()[0]
    return PluginImportError(
        f"cell {name!r} comes from the plugin {entry.distribution} (entry point {entry.name} = {entry.value}), "
        f"which failed to import: {_import_errors[name]}. Fix that package's installation, or uninstall it "
        f"(pip uninstall {package}) to hide the cell.")


def cell_info(name: str) -> CellInfo:
    """The registered cell `name`, its plugin imported first where it is one not imported yet."""
    if name in _CELLS:
        return _CELLS[name]
    if name in plugin_entries():
        load_plugin(name)
        if name in _import_errors:
            raise _import_failure(name)
    if name not in _CELLS:
        load_plugins()  # an older plugin may register it under a name of its own
    if name not in _CELLS:
        known = list_cells()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        declared = f" (the plugin entry point {name!r} registers no cell of that name)" if name in _not_cells else ""
        raise UnknownCellError(f"unknown cell {name!r}{declared}.{hint} Known cells: {', '.join(known)}.")
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
    """Every cell name: the registered cells and the cells installed plugins declare, none of them imported."""
    return sorted(set(_CELLS) | {name for name in plugin_entries() if name not in _not_cells})


def all_cell_infos() -> list[CellInfo]:
    """Every cell's CellInfo, every plugin imported first (one that fails is a warning, and left out)."""
    load_plugins()
    return [_CELLS[name] for name in sorted(_CELLS)]
