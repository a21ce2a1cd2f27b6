"""Plugin cells are known by their entry points' names and imported only when their cell is used.

Each throwaway plugin here writes a line to a marker file when it is imported, so the tests read what was imported
from the marker, not from timing: listing the cells (rrn-cells) and a run of another cell (rrn-train --cfg job
cell=lstm) import nothing; building the cell, showing it or composing `cell=<plugin>` imports it once. A plugin
that fails to import is a warning, and its cell a one-line error naming the plugin; older plugins whose one entry
point registers cells of other names keep working.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from helpers import make_plugin, run_cli

MARKED_CELL = """
    import os
    from pathlib import Path

    from torch import nn
    from rrn_app.cells import register_cell

    with Path(os.environ["RRN_TEST_MARKER"]).open("a") as marker:  # one line per import
        marker.write("{module}\\n")


    @register_cell("{cell}")
    class Marked(nn.Module):
        '''A plugin cell that notes each import of its module.

        Options:
            gain: scales the outputs
        '''

        def __init__(self, input_size, hidden_size, num_layers=1, dropout=0.0, bidirectional=False, gain: float = 1.0):
            super().__init__()
            self.rnn = nn.RNN(input_size, hidden_size, batch_first=True)
            self.output_size, self.bidirectional, self.gain = hidden_size, False, gain

        def forward(self, x, lengths=None, state=None):
            outputs, state = self.rnn(x, state)
            return outputs * self.gain, state
"""

OLD_STYLE = """
    from torch import nn
    from rrn_app.cells import register_cell


    class Base(nn.Module):
        '''An older plugin: one entry point, two cells of other names.'''

        def __init__(self, input_size, hidden_size, num_layers=1, width: int = 3):
            super().__init__()
            self.output_size = hidden_size


    register_cell("old_a")(type("OldA", (Base,), {}))
    register_cell("old_b")(type("OldB", (Base,), {}))
"""

PLAIN_CLASS = """
    from torch import nn


    class Plain(nn.Module):
        '''A class named by its entry point (`module:Class`) and registered by nobody.'''

        def __init__(self, input_size, hidden_size, num_layers=1, depth: int = 2):
            super().__init__()
            self.output_size = hidden_size
"""


@pytest.fixture
def plugins(tmp_path):
    """Throwaway plugins on a PYTHONPATH folder: `marked` (writes the marker when imported), `broken` (fails to
    import), `oldpack` (registers old_a and old_b) and `plain` (an entry point naming a class). Yields the env
    for the subprocesses and the marker file."""
    site = tmp_path / "site"
    site.mkdir()
    make_plugin(site, "rrn-marked", "rrn_marked", MARKED_CELL.format(module="rrn_marked", cell="marked"),
                {"marked": "rrn_marked"})
    make_plugin(site, "rrn-broken", "rrn_broken", "raise ImportError('needs libfoo')\n", {"broken": "rrn_broken"})
    make_plugin(site, "rrn-oldpack", "rrn_oldpack", OLD_STYLE, {"oldpack": "rrn_oldpack"})
    make_plugin(site, "rrn-plain", "rrn_plain", PLAIN_CLASS, {"plain": "rrn_plain:Plain"})
    marker = tmp_path / "imported.txt"
    env = {"PYTHONPATH": str(site), "RRN_TEST_MARKER": str(marker), "OMP_NUM_THREADS": "1"}
    yield env, marker


def imports(marker) -> list[str]:
    return marker.read_text().split() if marker.exists() else []


def in_process(code: str, env: dict) -> subprocess.CompletedProcess:
    import os

    # run from the plugins' folder, not the repository: `python -c` puts the working directory first on sys.path,
    # and the source tree's rrn_app (without rrn_app.conf, which installing maps from conf/) would shadow the
    # installed package
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env},
                          cwd=env["PYTHONPATH"], timeout=300)


def test_the_registry_lists_plugin_cells_by_entry_point_name_without_importing_them(plugins):
    env, marker = plugins
    result = in_process("from rrn_app.cells import list_cells; print(' '.join(list_cells()))", env)
    assert result.returncode == 0, result.stderr
    names = result.stdout.split()
    assert {"marked", "broken", "oldpack", "plain", "lstm", "res_rnn"} <= set(names)
    assert imports(marker) == [] and "failed to load" not in result.stderr  # nothing imported, no warning


def test_building_a_plugin_cell_imports_its_module_once_and_no_other(plugins):
    env, marker = plugins
    code = """
import sys
from rrn_app.cells import build_cell, get_cell, registry
cell = build_cell({"name": "marked", "hidden_size": 3, "gain": 2.0}, input_size=2)
assert get_cell("marked") is type(cell) and cell.gain == 2.0
build_cell({"name": "lstm", "hidden_size": 3}, input_size=2)
print(registry.cell_info("marked").source)
print(sorted(m for m in sys.modules if m.startswith("rrn_") and m != "rrn_app" and not m.startswith("rrn_app.")))
"""
    result = in_process(code, env)
    assert result.returncode == 0, result.stderr
    source, modules = result.stdout.splitlines()
    assert source == "plugin rrn-marked 0.3 (entry point marked = rrn_marked)"
    assert modules == "['rrn_marked']" and imports(marker) == ["rrn_marked"]


@pytest.mark.slow  # two rrn-cells processes (the registry's listing without imports is checked above, fast)
def test_rrn_cells_lists_plugins_without_importing_them(plugins):
    env, marker = plugins
    result = run_cli("rrn-cells", "--json", env=env)
    assert result.returncode == 0, result.stderr
    cells = {cell["name"]: cell for cell in json.loads(result.stdout)}
    assert cells["marked"]["imported"] is False and cells["marked"]["options"] is None
    assert cells["marked"]["source"] == "plugin rrn-marked 0.3 (entry point marked = rrn_marked)"
    assert "not imported yet" in cells["marked"]["summary"] and "rrn-cells show marked" in cells["marked"]["summary"]
    assert cells["lstm"]["imported"] is True and cells["lstm"]["options"]["hidden_size"] == "required"
    result = run_cli("rrn-cells", env=env)
    assert result.returncode == 0, result.stderr
    assert "marked       not imported yet" in result.stdout
    assert imports(marker) == []


@pytest.mark.slow  # two rrn-cells processes
def test_rrn_cells_show_and_import_import_the_plugin(plugins):
    env, marker = plugins
    result = run_cli("rrn-cells", "show", "marked", "--json", env=env)
    assert result.returncode == 0, result.stderr
    marked = json.loads(result.stdout)
    assert marked["options"]["gain"] == 1.0 and marked["help"]["gain"] == "scales the outputs"
    assert marked["rrn_train"]["hidden_size"] == 80  # the app layer on a plugin cell too
    assert imports(marker) == ["rrn_marked"]
    result = run_cli("rrn-cells", "--import", "--json", env=env)
    assert result.returncode == 0, result.stderr
    cells = {cell["name"]: cell for cell in json.loads(result.stdout)}
    assert cells["marked"]["options"]["gain"] == 1.0
    assert cells["broken"]["import_error"] == "ImportError: needs libfoo"
    assert "cell plugin 'broken' (rrn-broken 0.3) failed to load" in result.stderr


@pytest.mark.slow  # an rrn-cells process and another Python (test_registry's entry-point test checks the warning, fast)
def test_a_plugin_that_fails_to_import_is_one_line_naming_it_and_the_others_work(plugins):
    env, marker = plugins
    result = run_cli("rrn-cells", "show", "broken", env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "rrn-cells: error: cell 'broken' comes from the plugin rrn-broken 0.3 (entry point broken = rrn_broken), "
        "which failed to import: ImportError: needs libfoo. Fix that package's installation, or uninstall it "
        "(pip uninstall rrn-broken) to hide the cell.")
    code = """
from rrn_app.cells import PluginImportError, UserError, build_cell
try:
    build_cell({"name": "broken", "hidden_size": 3}, input_size=2)
except PluginImportError as error:
    assert isinstance(error, UserError)
    print(error)
print(type(build_cell({"name": "marked", "hidden_size": 3}, input_size=2)).__name__)
"""
    result = in_process(code, env)
    assert result.returncode == 0, result.stderr
    message, other = result.stdout.splitlines()
    assert message.startswith("cell 'broken' comes from the plugin rrn-broken 0.3") and "needs libfoo" in message
    assert other == "Marked"
    assert "cell plugin 'broken' (rrn-broken 0.3) failed to load and is skipped" in result.stderr


def test_an_older_plugin_registering_cells_of_other_names_still_works(plugins):
    env, marker = plugins
    code = """
from rrn_app.cells import UnknownCellError, build_cell, list_cells
assert "oldpack" in list_cells() and "old_a" not in list_cells()   # only its entry point is known before its import
cell = build_cell({"name": "old_b", "hidden_size": 3, "width": 5}, input_size=2)   # a name nobody declared
print(type(cell).__name__, "old_a" in list_cells(), "oldpack" in list_cells())
try:
    build_cell({"name": "oldpack", "hidden_size": 3}, input_size=2)
except UnknownCellError as error:
    print(error)
"""
    result = in_process(code, env)
    assert result.returncode == 0, result.stderr
    built, message = result.stdout.splitlines()
    assert built == "OldB True False"
    assert message.startswith("unknown cell 'oldpack' (the plugin entry point 'oldpack' registers no cell of that name)")
    assert "old_a, old_b" in message


def test_an_entry_point_naming_a_class_registers_it_under_the_entry_points_name(plugins):
    env, _ = plugins
    code = """
from rrn_app.cells import build_cell, cell_info
cell = build_cell({"name": "plain", "hidden_size": 3, "depth": 4}, input_size=2)
print(type(cell).__name__, cell_info("plain").source, type(cell).cell_name)
"""
    result = in_process(code, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Plain plugin rrn-plain 0.3 (entry point plain = rrn_plain:Plain) plain"


def test_composing_another_cell_imports_no_plugin_and_composing_the_plugin_imports_it(plugins):
    """The config store holds every cell's node, each made from its constructor only when Hydra loads it."""
    env, marker = plugins
    code = """
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from rrn_app.config import config_dir
with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
    print(OmegaConf.to_container(compose(config_name="config", overrides=["cell=res_rnn"]).cell)["name"])
    import pathlib, os
    print(pathlib.Path(os.environ["RRN_TEST_MARKER"]).exists())
    print(OmegaConf.to_container(compose(config_name="config", overrides=["cell=marked", "cell.gain=3.0"]).cell))
"""
    result = in_process(code, env)
    assert result.returncode == 0, result.stderr
    name, imported_before, node = result.stdout.splitlines()
    assert name == "res_rnn" and imported_before == "False"
    assert OmegaConf.create(node) == {"name": "marked", "hidden_size": 80, "num_layers": 2, "dropout": 0.0,
                                      "bidirectional": False, "gain": 3.0}
    assert imports(marker) == ["rrn_marked"]


@pytest.mark.slow  # rrn-train processes of a few seconds each
def test_rrn_train_imports_only_the_chosen_cells_plugin(plugins, tmp_path):
    env, marker = plugins
    result = run_cli("rrn-train", "--cfg", "job", "task=sst", "cell=lstm", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert OmegaConf.create(result.stdout).cell.name == "lstm"
    assert imports(marker) == [] and "failed to load" not in result.stderr
    result = run_cli("rrn-train", "--cfg", "job", "task=sst", "cell=marked", "cell.gain=2.5", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert OmegaConf.create(result.stdout).cell.gain == 2.5
    assert imports(marker) == ["rrn_marked"]
    result = run_cli("rrn-train", "--cfg", "job", "cell=old_a", "cell.width=7", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert OmegaConf.create(result.stdout).cell.width == 7


@pytest.mark.slow
def test_rrn_train_with_a_broken_plugin_chosen_is_one_line_naming_it(plugins, tmp_path):
    env, _ = plugins
    result = run_cli("rrn-train", "--cfg", "job", "cell=broken", env=env, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "rrn-train: error: cell 'broken' comes from the plugin rrn-broken 0.3 (entry point broken = rrn_broken), "
        "which failed to import: ImportError: needs libfoo.")
