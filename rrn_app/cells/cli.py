"""`rrn-cells`: the registered cells, where each comes from, and its options with their defaults.

Imports only torch and the cells (no Lightning, Hydra or datasets), so it answers in about a second.
"""

from __future__ import annotations

import argparse
import inspect
import json


def describe() -> list[dict]:
    from rrn_app.cells import all_cell_infos

    return [
        {
            "name": info.name,
            "source": info.source,
            "class": f"{info.cls.__module__}.{info.cls.__qualname__}",
            "summary": info.summary,
            "options": {
                option: ("required" if default is inspect.Parameter.empty else default)
                for option, default in info.options().items()
            },
            "types": info.option_types(),
        }
        for info in all_cell_infos()
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="rrn-cells", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    arguments = parser.parse_args(argv)
    cells = describe()
    if arguments.json:
        print(json.dumps(cells, indent=2, default=str))
        return
    for cell in cells:
        options = ", ".join(f"{name}={value}" + (f" ({cell['types'][name]})" if cell["types"].get(name) else "")
                            for name, value in cell["options"].items())
        print(f"{cell['name']:<12} {cell['summary']}")
        print(f"{'':<12} from: {cell['source']} ({cell['class']})")
        print(f"{'':<12} options: {options}")
    print("\nUse one with: rrn-train cell=<name> cell.<option>=<value> (each value is checked against the option's "
          "type before any data is read)")


if __name__ == "__main__":
    main()
