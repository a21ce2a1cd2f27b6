"""One source of truth for a cell's options: the constructor's signature, plus one app-level layer.

`cell=<name>` in rrn-train is the constructor's defaults with rrn_app.config.CELL_DEFAULTS on top (for the
options the cell has), made in Hydra's ConfigStore; conf/cell/ holds no yaml. These tests build each cell both
ways and compare the modules, and check that the layer and the task_cell overrides still reach the cell.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from rrn_app.cells import UnknownCellError, build_cell, get_cell, list_cells, option_help, register_cell, registry
from rrn_app.cells.cli import describe
from rrn_app.config import CELL_DEFAULTS, cell_node, config_dir
from rrn_app.option_checks import InvalidOption, UserError
from indrnn_source import indrnn_registered  # noqa: F401 (autouse: the plugin from its source)

EVERY_CELL = ["gres_rnn", "gru", "indrnn", "lstm", "res_lstm", "res_rnn", "rnn", "rrn"]


def test_every_cell_is_under_test():
    assert set(EVERY_CELL) <= set(list_cells())  # indrnn: the plugin installed in the dev environment


def app_layer(name: str) -> dict:
    """CELL_DEFAULTS restricted to the options the cell has: the documented app-level layer."""
    options = registry.cell_info(name).options()
    return {option: value for option, value in CELL_DEFAULTS.items() if option in options}


@pytest.mark.parametrize("name", EVERY_CELL)
def test_cell_equals_name_builds_what_the_python_api_builds_with_the_app_layer(compose_config, name):
    cfg = compose_config(f"cell={name}")
    torch.manual_seed(0)
    from_config = build_cell(cfg.cell, input_size=5).eval()
    torch.manual_seed(0)
    from_python = get_cell(name)(input_size=5, **app_layer(name)).eval()
    expected = {key: value.shape for key, value in from_python.state_dict().items()}
    assert {key: value.shape for key, value in from_config.state_dict().items()} == expected
    for key, value in from_python.state_dict().items():
        assert torch.equal(from_config.state_dict()[key], value), key
    x, lengths = torch.randn(3, 4, 5), torch.tensor([4, 2, 3])
    assert torch.equal(from_config(x, lengths)[0], from_python(x, lengths)[0])
    # and option by option: the node is the signature's defaults, then the app layer
    defaults = {option: default for option, default in registry.cell_info(name).options().items()
                if default is not inspect.Parameter.empty}
    assert OmegaConf.to_container(cfg.cell) == {"name": name, **defaults, **app_layer(name)}


def test_the_app_layer_is_what_rrn_train_used_before_the_yaml_went():
    # conf/cell/<name>.yaml gave every built-in cell hidden_size 80 and num_layers 2 and otherwise its Python defaults
    assert CELL_DEFAULTS == {"hidden_size": 80, "num_layers": 2}
    for name in ("rnn", "lstm", "gru", "res_lstm", "res_rnn", "gres_rnn", "rrn"):
        node = cell_node(name)
        assert node["hidden_size"] == 80 and node["num_layers"] == 2 and node["dropout"] == 0.0
        assert node["bidirectional"] is False


def test_no_default_is_written_twice():
    assert not list((config_dir() / "cell").glob("*.yaml"))
    for option, value in CELL_DEFAULTS.items():  # each entry of the layer changes some cell's Python default
        python_defaults = [registry.cell_info(name).options().get(option) for name in EVERY_CELL]
        assert any(default != value for default in python_defaults), option


def test_the_default_cell_comes_from_the_config_store(compose_config):
    cfg = compose_config()
    assert cfg.cell.name == "lstm"  # config.yaml's defaults list: `cell: lstm`, a ConfigStore node
    assert OmegaConf.to_container(cfg.cell) == cell_node("lstm")


@pytest.mark.parametrize(("overrides", "key", "value"), [
    (["task=music", "cell=res_rnn"], "output_activation", "tanh"),   # conf/task_cell/music_res_rnn.yaml
    (["task=imdb", "cell=res_rnn"], "batch_norm", True),             # conf/task_cell/imdb_res_rnn.yaml
    (["task=imdb", "cell=res_rnn", "cell.batch_norm=false"], "batch_norm", False),  # the command line still wins
    (["cell=res_lstm", "cell.keep_prob=0.75"], "keep_prob", 0.75),
])
def test_task_cell_overrides_and_the_command_line_still_reach_the_node(compose_config, overrides, key, value):
    assert compose_config(*overrides).cell[key] == value


@pytest.fixture
def test_cells():
    names = []

    def register(name):
        def decorator(cls):
            register_cell(name)(cls)
            names.append(name)
            return cls
        return decorator

    yield register
    for name in names:
        registry._CELLS.pop(name, None)


def test_a_cell_registered_later_gets_its_node_with_the_layer_for_the_options_it_has(test_cells, compose_config):
    @test_cells("test_wide_cell")
    class Wide(nn.Module):
        def __init__(self, input_size: int, hidden_size: int = 32, num_layers: int = 1, gain: float = 0.5):
            super().__init__()

    @test_cells("test_flat_cell")
    class Flat(nn.Module):
        def __init__(self, input_size: int, width: int = 7, scale: float = 1.0):
            super().__init__()

    assert OmegaConf.to_container(compose_config("cell=test_wide_cell").cell) == {
        "name": "test_wide_cell", "hidden_size": 80, "num_layers": 2, "gain": 0.5}
    assert OmegaConf.to_container(compose_config("cell=test_flat_cell").cell) == {
        "name": "test_flat_cell", "width": 7, "scale": 1.0}  # no hidden_size or num_layers forced on it


def test_a_required_option_is_hydras_missing_value(test_cells):
    @test_cells("test_needy_cell")
    class Needy(nn.Module):
        def __init__(self, input_size: int, hidden_size: int, rank: int):
            super().__init__()

    assert cell_node("test_needy_cell") == {"name": "test_needy_cell", "hidden_size": 80, "rank": "???"}


def test_build_cell_takes_a_dict_or_a_config_node_and_checks_the_options():
    node = OmegaConf.create({"name": "gru", "hidden_size": 6, "num_layers": 2, "width": "${.hidden_size}"})
    with pytest.raises(UserError, match=r"unknown option cell\.width\. .*Known options of cell \(gru\): "):
        build_cell(node, input_size=3)
    cell = build_cell({"name": "gru", "hidden_size": 6, "bidirectional": True}, input_size=3)
    assert cell.output_size == 12 and cell.num_layers == 1
    with pytest.raises(InvalidOption, match=r"^cell\.hidden_size=0 is not allowed: must be a positive integer$"):
        build_cell({"name": "gru", "hidden_size": 0}, input_size=3)
    with pytest.raises(InvalidOption, match=r"^cell\.bidirectional='yes' is not allowed: must be true or false$"):
        build_cell({"name": "gru", "hidden_size": 2, "bidirectional": "yes"}, input_size=3)
    with pytest.raises(UnknownCellError, match="Did you mean 'gru'"):
        build_cell({"name": "gruu"}, input_size=3)
    with pytest.raises(UserError, match="cell.name is missing"):
        build_cell({"hidden_size": 3}, input_size=3)


def test_every_task_and_the_early_check_build_through_build_cell():
    from pathlib import Path

    import rrn_app

    root = Path(rrn_app.__file__).parent
    for path in [*sorted((root / "tasks").glob("*.py")), root / "train.py"]:
        assert "get_cell(" not in path.read_text(), path


def test_option_help_reads_name_text_lines_own_class_first():
    class Base(nn.Module):
        """A base.

        Args:
            depth (int): how many layers
            width: how wide
        """

    class Child(Base):
        """A child.

        Options:
            width: how wide, the child's words
        """

        def __init__(self, input_size: int, width: int = 2, depth: int = 1, quiet: bool = False):
            """Build it.

            quiet: say nothing
                (a second line is not part of the help)
            """
            super().__init__()

    assert option_help(Child, ["width", "depth", "quiet", "missing"]) == {
        "width": "how wide, the child's words", "depth": "how many layers", "quiet": "say nothing"}


def test_rrn_cells_describes_every_option_with_help_and_rrn_trains_value():
    cells = {cell["name"]: cell for cell in describe()}
    for name in EVERY_CELL:
        options, helps = cells[name]["options"], cells[name]["help"]
        assert set(helps) == set(options), f"{name}: no help for {set(options) - set(helps)}"
    lstm = cells["lstm"]
    assert lstm["options"]["num_layers"] == 1 and lstm["rrn_train"]["num_layers"] == 2
    assert lstm["options"]["hidden_size"] == "required" and lstm["rrn_train"]["hidden_size"] == 80
    assert cells["res_lstm"]["help"]["keep_prob"].startswith("stochastic depth")


def test_rrn_cells_text_shows_python_and_rrn_train_defaults(capsys):
    from rrn_app.cells.cli import main

    main([])
    out = capsys.readouterr().out
    assert "num_layers=1 (rrn-train: 2) [int]" in out and "keep_prob=1.0 [float]" in out
    assert "stochastic depth: probability of keeping each residual layer" in out


def test_a_cell_that_rejects_its_options_stops_rrn_trains_early_check(test_cells, compose_config):
    from rrn_app import option_checks
    from rrn_app.train import check_cell

    @test_cells("test_picky_cell")
    class Picky(nn.Module):
        def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, heads: int = 2):
            super().__init__()
            if hidden_size % heads:
                raise option_checks.InvalidOption("heads", heads, f"must divide hidden_size={hidden_size}")

    check_cell(compose_config("cell=test_picky_cell").cell)  # 80 % 2 == 0
    with pytest.raises(InvalidOption, match=r"^cell\.heads=3 is not allowed: must divide hidden_size=80$"):
        check_cell(compose_config("cell=test_picky_cell", "cell.heads=3").cell)
    with pytest.raises(InvalidOption, match=r"^cell\.heads='two' is not allowed: must be an integer$"):
        check_cell(compose_config("cell=test_picky_cell", "cell.heads=two").cell)
