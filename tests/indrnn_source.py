"""The example plugin (plugins/rrn-indrnn) registered from its source for one test module, when not installed.

`pytest` must pass on a machine with only rrn installed (the README's set-up); where the plugin is installed
(pip install -e plugins/rrn-indrnn) its entry point has registered it already and nothing changes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "rrn-indrnn"


@pytest.fixture(scope="module", autouse=True)
def indrnn_registered():
    from rrn_app.cells import list_cells, registry

    if "indrnn" in list_cells():
        registry.cell_info("indrnn")  # the installed plugin's entry point, imported now as building it would
        yield
        return
    sys.path.insert(0, str(PLUGIN))
    try:
        __import__("rrn_indrnn")
        yield
    finally:
        registry._CELLS.pop("indrnn", None)
        sys.modules.pop("rrn_indrnn", None)
        sys.path.remove(str(PLUGIN))
