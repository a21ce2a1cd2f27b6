"""Options are checked from their constructors' annotations, before any data is read and before any run folder.

A cell's, task model's or data module's signature is its schema (bool, int, float, str, Literal, Optional,
unions, lists); plugins get the same checks from their own signatures. Misspelt keys name the known options
and the closest match. One key, task.dataset, picks the dataset of every multi-dataset task.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional

import pytest
from omegaconf import OmegaConf

from helpers import REPO, make_plugin, run_cli
from rrn_app.cells.cli import main as rrn_cells
from rrn_app.command_line import remove_unused_run_dir
from rrn_app.config import check_options, choices
from rrn_app.option_checks import InvalidOption, UserError, check_annotated_options, describe_type, fits

# --- what an annotation allows ----------------------------------------------------------------------------------


@pytest.mark.parametrize("annotation, allowed, refused", [
    (bool, [True, False], ["maybe", 1, 0, "true", None]),
    (int, [3, -1, 0], [True, 2.5, "3", None]),
    (float, [0.5, 2, 0], [False, "abc", None]),
    (str, ["tanh", ""], [1, 1.5, True, None]),
    (Literal["tanh", "relu"], ["tanh", "relu"], ["sigmoid", 1, None]),
    (Literal[1, 2], [1, 2], [True, 3, "1"]),
    (Optional[int], [None, 4], [4.5, "x"]),
    (int | str | None, [1, "a", None], [1.5, False, [1]]),
    (list[int] | None, [[1, 2], [], None], [[1, "x"], 3, "1,2"]),
    (tuple[float, ...], [[0.9, 0.05, 0.05], (1, 2)], [0.9, ["a"]]),
    (dict[str, int], [{"a": 1}, {}], [[1], {"a": "b"}]),
])
def test_an_annotation_decides_which_values_fit(annotation, allowed, refused):
    assert all(fits(value, annotation) for value in allowed)
    assert not any(fits(value, annotation) for value in refused)


@pytest.mark.parametrize("annotation, words", [
    (bool, "true or false"), (int, "an integer"), (float, "a number"), (str, "a string"),
    (Literal["a", "b"], "one of 'a', 'b'"), (Optional[float], "a number or null"),
    (int | str, "an integer or a string"), (list[int] | None, "a list of integers or null"),
])
def test_what_an_annotation_allows_in_the_command_lines_words(annotation, words):
    assert describe_type(annotation) == words


class Toy:
    """A constructor with every kind of annotation; unannotated flags count as bools."""

    def __init__(self, input_size: int, hidden_size: int, mode: Literal["fast", "exact"] = "fast",
                 gate_bias: float = 1.0, sizes: list[int] | None = None, flag=False, anything=None):
        pass


@pytest.mark.parametrize("options, message", [
    ({"mode": "quick"}, "cell.mode='quick' is not allowed: must be one of 'fast', 'exact'"),
    ({"gate_bias": "abc"}, "cell.gate_bias='abc' is not allowed: must be a number"),
    ({"sizes": [1, 2.5]}, "cell.sizes=[1, 2.5] is not allowed: must be a list of integers or null"),
    ({"flag": "maybe"}, "cell.flag='maybe' is not allowed: must be true or false"),
    ({"hidden_size": "???"}, "cell.hidden_size has no value: give it with cell.hidden_size=<an integer>"),
    ({"gate_bais": 1.0}, "unknown option cell.gate_bais. Did you mean cell.gate_bias? Known options of cell (toy): "
                         "anything, flag, gate_bias, hidden_size, mode, sizes."),
])
def test_options_are_checked_against_the_constructor(options, message):
    with pytest.raises(UserError) as error:
        check_annotated_options("cell", Toy, options, owner="toy")
    assert str(error.value) == message


def test_fitting_options_pass():
    check_annotated_options("cell", Toy, {"hidden_size": 8, "mode": "exact", "gate_bias": 2, "sizes": None,
                                          "flag": True, "anything": object(), "_target_": "x.Toy"})


@pytest.mark.slow
def test_every_shipped_config_passes_its_own_checks(compose_config):
    """Each task with each cell, and each experiment: the defaults we ship fit their constructors."""
    for task in choices("task"):
        for cell in choices("cell"):
            check_options(compose_config(f"task={task}", f"cell={cell}"))
    for experiment in choices("experiment"):
        check_options(compose_config(f"experiment={experiment}"))


@pytest.mark.parametrize("override, message", [
    ("cell.bidirectional=maybe", "cell.bidirectional='maybe' is not allowed: must be true or false"),
    ("cell.hidden_size=10.5", "cell.hidden_size=10.5 is not allowed: must be an integer"),
    ("task.model.lr=fast", "task.model.lr='fast' is not allowed: must be a number"),
    ("task.data.lowercase=yes", "task.data.lowercase='yes' is not allowed: must be true or false"),
])
def test_composed_configs_are_checked_key_by_key(compose_config, override, message):
    with pytest.raises(InvalidOption) as error:
        check_options(compose_config("task=sst", override))
    assert str(error.value) == message


# --- from the command line: one line, exit 2, no traceback, no run folder -------------------------------------------


def rejected(result, *parts: str, folder: Path) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("rrn-train: error:")]
    assert len(lines) == 1, result.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    assert "Traceback" not in result.stderr and "not in struct" not in result.stderr
    assert not folder.exists(), sorted(folder.rglob("*"))


@pytest.mark.slow
@pytest.mark.parametrize("arguments, parts", [
    (["cell.bidirectional=maybe"], ["cell.bidirectional='maybe' is not allowed: must be true or false"]),
    (["cell=res_rnn", "cell.activation=1"], ["cell.activation=1 is not allowed: must be a string"]),
    (["cell.hiden_size=10"], ["unknown option cell.hiden_size. Did you mean cell.hidden_size? Known options of cell "
                              "(lstm): bidirectional, dropout, hidden_size, name, num_layers, residual."]),
    (["task.model.lrr=1"], ["unknown option task.model.lrr. Did you mean task.model.lr?",
                            "Known options of task.model (SequenceClassifier):"]),
    (["task.modle.lr=1"], ["unknown option task.modle. Did you mean task.model?"]),
    (["trainer.max_epoch=3"], ["unknown option trainer.max_epoch. Did you mean trainer.max_epochs?"]),
    (["task.model.pooling=mean"], ["task.model.pooling is an option of SequenceClassifier that this config does "
                                   "not set: add it with +task.model.pooling=mean"]),
])
def test_bad_options_on_the_command_line(tmp_path, arguments, parts):
    result = run_cli("rrn-train", *arguments, f"hydra.run.dir={tmp_path / 'run'}", "logger=none", cwd=tmp_path)
    rejected(result, *parts, folder=tmp_path / "run")
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_plugin_gets_the_checks_from_its_signature_alone(tmp_path):
    """A third-party cell with nothing but annotations: `gate_bias: float` given `abc`, a Literal given a typo."""
    make_plugin(tmp_path, "rrn-gated", "rrn_gated", GATED_PLUGIN, {"gated": "rrn_gated"})
    env = {"PYTHONPATH": str(tmp_path)}
    for argument, message in [
        ("cell.gate_bias=abc", "cell.gate_bias='abc' is not allowed: must be a number"),
        ("cell.mode=fsat", "cell.mode='fsat' is not allowed: must be one of 'fast', 'exact'"),
        ("cell.gate_bais=1", "unknown option cell.gate_bais. Did you mean cell.gate_bias?"),
    ]:
        result = run_cli("rrn-train", "cell=gated", argument, f"hydra.run.dir={tmp_path / 'run'}", "logger=none",
                         env=env, cwd=tmp_path)
        rejected(result, message, folder=tmp_path / "run")


GATED_PLUGIN = """
    from typing import Literal

    from torch import nn
    from rrn_app.cells import register_cell

    @register_cell("gated")
    class Gated(nn.Module):
        '''A plugin cell with typed options and no checks of its own.'''

        def __init__(self, input_size: int, hidden_size: int = 16, num_layers: int = 1, dropout: float = 0.0,
                     bidirectional: bool = False, gate_bias: float = 1.0, mode: Literal["fast", "exact"] = "fast"):
            super().__init__()
            self.rnn = nn.RNN(input_size, hidden_size, batch_first=True)
            self.output_size, self.bidirectional = hidden_size, False

        def forward(self, x, lengths=None, state=None):
            return self.rnn(x, state)
"""


@pytest.mark.slow
def test_the_indrnn_plugin_option_given_a_word(tmp_path):
    """The example plugin (plugins/rrn-indrnn), found through its entry point: `clip_gain: float` given `abc`."""
    (tmp_path / "rrn_indrnn").symlink_to(REPO / "plugins" / "rrn-indrnn" / "rrn_indrnn")
    make_plugin(tmp_path, "rrn-indrnn-copy", "rrn_indrnn_entry", "import rrn_indrnn\n", {"indrnn": "rrn_indrnn_entry"})
    # (where the plugin is installed here as well, its second entry point only warns: one indrnn either way)
    result = run_cli("rrn-train", "cell=indrnn", "cell.clip_gain=abc", f"hydra.run.dir={tmp_path / 'run'}",
                     "logger=none", env={"PYTHONPATH": str(tmp_path)}, cwd=tmp_path)
    rejected(result, "cell.clip_gain='abc' is not allowed: must be a number", folder=tmp_path / "run")


@pytest.mark.slow
def test_a_run_rejected_inside_training_leaves_no_folder(data_root, tmp_path):
    """A value its annotation allows but the data module refuses: the run folder Hydra made is removed again."""
    result = run_cli("rrn-train", "task.data.batch_size=-4", f"data.root={data_root}", "logger=none",
                     f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    rejected(result, "task.data.batch_size=-4 is not allowed: must be a positive integer", folder=tmp_path / "run")


def test_only_a_folder_holding_nothing_but_hydra_files_is_removed(tmp_path):
    empty, used = tmp_path / "empty", tmp_path / "used"
    for folder in (empty, used):
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (used / "results.json").write_text("{}")
    assert remove_unused_run_dir(empty) and not empty.exists()
    assert not remove_unused_run_dir(used) and (used / "results.json").is_file()
    sweep = tmp_path / "sweep"
    (sweep / "0" / ".hydra").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("{}")
    assert remove_unused_run_dir(sweep / "0", sweep) and not sweep.exists()


# --- one key for the dataset of a multi-dataset task ---------------------------------------------------------------


@pytest.mark.parametrize("task, dataset", [("char_lm", "ptb_char"), ("music", "nottingham")])
def test_task_dataset_picks_the_dataset_of_every_multi_dataset_task(compose_config, task, dataset):
    cfg = compose_config(f"task={task}", f"task.dataset={dataset}")
    assert cfg.task.dataset == dataset and cfg.task.data.dataset == dataset


@pytest.mark.slow
@pytest.mark.parametrize("task, dataset", [("char_lm", "ptb_char"), ("music", "nottingham")])
def test_the_old_key_still_works_with_a_deprecation_line(task, dataset):
    result = run_cli("rrn-train", f"task={task}", f"task.data.dataset={dataset}", "--cfg", "job")
    assert result.returncode == 0, result.stderr
    assert f"task.data.dataset= is deprecated, use task.dataset={dataset}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    cfg = OmegaConf.create(result.stdout)
    assert cfg.task.dataset == dataset and cfg.task.data.dataset == dataset


@pytest.mark.slow
def test_cfg_job_shows_resolved_values(tmp_path):
    result = run_cli("rrn-train", "--cfg", "job", "task=char_lm", f"data.root={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert "${" not in result.stdout
    cfg = OmegaConf.create(result.stdout)
    assert cfg.task.data.root == str(tmp_path) and cfg.task.data.dataset == "tinyshakespeare"


def test_rrn_cells_shows_each_options_type(capsys):
    rrn_cells(["--json"])  # what the console script runs
    cells = {cell["name"]: cell for cell in json.loads(capsys.readouterr().out)}
    assert cells["lstm"]["types"]["bidirectional"] == "bool" and cells["lstm"]["types"]["hidden_size"] == "int"
    assert cells["rrn"]["types"]["layer_sizes"] == "list[int] | None"
