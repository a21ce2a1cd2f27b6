"""`rrn-cells`: the cells, where each comes from, and its options with their defaults and help;
`rrn-cells show NAME` describes one (importing its plugin); `rrn-cells check NAME [key=value ...]` holds one to
the cell contract (rrn_app.testing.check_cell).

Listing imports no plugin: a plugin cell's options are shown once something in this process imported it
(`--import` imports them all first). Imports only torch and the cells (no Lightning, Hydra or datasets), so it
answers in about a second.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys

NOT_IMPORTED = "not imported yet: rrn-cells show {name} (or rrn-cells --import) imports it and shows its options"


def describe_cell(name: str) -> dict:
    """One cell: name, source, class, summary, its options' Python defaults ("required" where none), their types,
    one line of help each, and `rrn_train`: the config `cell=<name>` starts from (config.cell_node). Imports the
    cell's plugin where it is one not imported yet (a PluginImportError if it fails to)."""
    from rrn_app.cells import cell_info
    from rrn_app.config import cell_node

    info = cell_info(name)
    node = cell_node(info.name)
    node.pop("name")
    return {
        "name": info.name,
        "source": info.source,
        "imported": True,
        "class": f"{info.cls.__module__}.{info.cls.__qualname__}",
        "summary": info.summary,
        "options": {
            option: ("required" if default is inspect.Parameter.empty else default)
            for option, default in info.options().items()
        },
        "types": info.option_types(),
        "help": info.option_help(),
        "rrn_train": node,
    }


def describe(import_plugins: bool = False) -> list[dict]:
    """Every cell (describe_cell), without importing any plugin: a plugin cell not imported yet is only its name,
    source, `imported: false` and a note; one that failed to import has `import_error`. `import_plugins`: import
    every plugin first, so each is described in full."""
    from rrn_app.cells import registry

    if import_plugins:
        registry.load_plugins()
    cells = []
    for name in registry.list_cells():
        if registry.is_imported(name):
            cells.append(describe_cell(name))
            continue
        entry = registry.plugin_entries()[name]
        cell = {"name": name, "source": entry.source, "imported": False, "summary": NOT_IMPORTED.format(name=name),
                "options": None}
        if registry.import_error(name):
            cell["import_error"] = registry.import_error(name)
            cell["summary"] = f"failed to import: {registry.import_error(name)}"
        cells.append(cell)
    return cells


def show(value) -> str:
    return json.dumps(value) if isinstance(value, (bool, type(None))) else str(value)


def print_cell(cell: dict) -> None:
    print(f"{cell['name']:<12} {cell['summary']}")
    where = f" ({cell['class']})" if cell.get("class") else ""
    print(f"{'':<12} from: {cell['source']}{where}")
    for name, default in (cell["options"] or {}).items():
        app = cell["rrn_train"].get(name)
        differs = app != default and not (default == "required" and app == "???")
        setting = f"{name}={show(default)}" + (f" (rrn-train: {show(app)})" if differs else "")
        kind = f" [{cell['types'][name]}]" if cell["types"].get(name) else ""
        print(f"{'':<14}{setting + kind:<44} {cell['help'].get(name, '')}".rstrip())


def list_cells(as_json: bool, import_plugins: bool = False) -> None:
    cells = describe(import_plugins)
    if as_json:
        print(json.dumps(cells, indent=2, default=str))
        return
    for cell in cells:
        print_cell(cell)
    print("\nPython defaults; rrn-train's where they differ (rrn_app.config.CELL_DEFAULTS). Use one with: rrn-train "
          "cell=<name> cell.<option>=<value> (each value is checked against the option's type before any data is "
          "read). Check a cell against the cell contract: rrn-cells check <name> [option=value ...]")


def parse_options(pairs: list[str]) -> dict:
    """`num_layers=2 layer_sizes=[4,8] bidirectional=true` -> {...}, each value read as YAML (as Hydra does)."""
    import yaml

    from rrn_app.option_checks import UserError

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"{pair!r} is not an option: write option=value, e.g. num_layers=2")
        options[key.removeprefix("cell.")] = yaml.safe_load(value) if value else ""
    return options


def check(name: str, pairs: list[str]) -> int:
    """Run the cell contract on one cell; print each rule as passed or failed. 0 if all pass, 1 if not."""
    from rrn_app.testing import contract_results

    options = parse_options(pairs)
    results = contract_results(name, **options)
    given = " ".join(f"{key}={show(value)}" for key, value in options.items())
    print(f"cell contract of {name}{' ' + given if given else ''}:")
    for result in results:
        mark = "passed" if result.passed else "FAILED"
        note = f"  ({result.detail})" if result.detail and result.passed else ""
        print(f"  {mark:<7} {result.rule}{note}")
        if not result.passed:
            print(f"          {result.detail}")
    failed = sum(not result.passed for result in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> None:
    from rrn_app.option_checks import UserError

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] == "check":
            parser = argparse.ArgumentParser(prog="rrn-cells check", description="Hold a cell to the cell contract "
                                             "(rrn_app.testing.check_cell): each rule passed or failed; exit 1 on "
                                             "failure.")
            parser.add_argument("name", help="a cell name (rrn-cells lists them)")
            parser.add_argument("options", nargs="*", metavar="option=value",
                                help="constructor options, e.g. num_layers=2")
            arguments = parser.parse_args(argv[1:])
            sys.exit(check(arguments.name, arguments.options))
        if argv and argv[0] == "show":
            parser = argparse.ArgumentParser(prog="rrn-cells show", description="Describe one cell: where it comes "
                                             "from, its options, their defaults and help (imports its plugin).")
            parser.add_argument("name", help="a cell name (rrn-cells lists them)")
            parser.add_argument("--json", action="store_true", help="print it as JSON")
            arguments = parser.parse_args(argv[1:])
            cell = describe_cell(arguments.name)
            print(json.dumps(cell, indent=2, default=str)) if arguments.json else print_cell(cell)
            return
        parser = argparse.ArgumentParser(prog="rrn-cells", description=__doc__.splitlines()[0],
                                         epilog="rrn-cells show NAME: one cell in full; rrn-cells check NAME "
                                                "[option=value ...]: hold one cell to the contract")
        parser.add_argument("--json", action="store_true", help="print the list as JSON")
        parser.add_argument("--import", dest="import_plugins", action="store_true",
                            help="import every plugin first, to show each plugin cell's options")
        arguments = parser.parse_args(argv)
        list_cells(arguments.json, arguments.import_plugins)
    except UserError as error:
        print(f"rrn-cells: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
