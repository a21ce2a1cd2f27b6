"""`rrn-cells`: the registered cells, where each comes from, and its options with their defaults and help;
`rrn-cells check NAME [key=value ...]` holds one to the cell contract (rrn_app.testing.check_cell).

Imports only torch and the cells (no Lightning, Hydra or datasets), so it answers in about a second.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys


def describe() -> list[dict]:
    """Each cell: name, source, class, summary, its options' Python defaults ("required" where none), their
    types, one line of help each, and `rrn_train`: the config `cell=<name>` starts from (config.cell_node)."""
    from rrn_app.cells import all_cell_infos
    from rrn_app.config import cell_node

    cells = []
    for info in all_cell_infos():
        node = cell_node(info.name)
        node.pop("name")
        cells.append({
            "name": info.name,
            "source": info.source,
            "class": f"{info.cls.__module__}.{info.cls.__qualname__}",
            "summary": info.summary,
            "options": {
                option: ("required" if default is inspect.Parameter.empty else default)
                for option, default in info.options().items()
            },
            "types": info.option_types(),
            "help": info.option_help(),
            "rrn_train": node,
        })
    return cells


def show(value) -> str:
    return json.dumps(value) if isinstance(value, (bool, type(None))) else str(value)


def list_cells(as_json: bool) -> None:
    cells = describe()
    if as_json:
        print(json.dumps(cells, indent=2, default=str))
        return
    for cell in cells:
        print(f"{cell['name']:<12} {cell['summary']}")
        print(f"{'':<12} from: {cell['source']} ({cell['class']})")
        for name, default in cell["options"].items():
            app = cell["rrn_train"].get(name)
            differs = app != default and not (default == "required" and app == "???")
            setting = f"{name}={show(default)}" + (f" (rrn-train: {show(app)})" if differs else "")
            kind = f" [{cell['types'][name]}]" if cell["types"].get(name) else ""
            print(f"{'':<14}{setting + kind:<44} {cell['help'].get(name, '')}".rstrip())
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
    if argv and argv[0] == "check":
        parser = argparse.ArgumentParser(prog="rrn-cells check", description="Hold a cell to the cell contract "
                                         "(rrn_app.testing.check_cell): each rule passed or failed; exit 1 on failure.")
        parser.add_argument("name", help="a registered cell name (rrn-cells lists them)")
        parser.add_argument("options", nargs="*", metavar="option=value", help="constructor options, e.g. num_layers=2")
        arguments = parser.parse_args(argv[1:])
        try:
            sys.exit(check(arguments.name, arguments.options))
        except UserError as error:
            print(f"rrn-cells: error: {error}", file=sys.stderr)
            sys.exit(2)
    parser = argparse.ArgumentParser(prog="rrn-cells", description=__doc__.splitlines()[0],
                                     epilog="rrn-cells check NAME [option=value ...]: hold one cell to the contract")
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    arguments = parser.parse_args(argv)
    list_cells(arguments.json)


if __name__ == "__main__":
    main()
