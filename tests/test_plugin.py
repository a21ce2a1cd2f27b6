"""The real plugin, plugins/rrn-indrnn: installed as a user would, found through its entry point, trained on SST.

The package is pip-installed into a temporary folder that the rrn-train and rrn-cells processes get on their
PYTHONPATH, so the test environment itself is left as it was. Its math (h_t = act(W x_t + u ⊙ h_{t-1} + b))
is checked in-process against the plugin's own step-by-step reference.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.autograd import gradcheck

from helpers import REPO, run_cli, run_dir_of
from rrn_app.cells import registry
from rrn_app.tasks.classifier import SequenceClassifier

PLUGIN = REPO / "plugins" / "rrn-indrnn"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """A folder holding the installed plugin (its package and its dist-info with the entry point)."""
    root = tmp_path_factory.mktemp("plugin")
    source = root / "rrn-indrnn"
    # install from a copy: the build's own files (build/, *.egg-info) stay out of the repository
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    offline = ["--no-build-isolation", "--no-index"] if importlib.util.find_spec("setuptools") else []
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", *offline,
               "--target", str(root / "site"), str(source)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return root / "site"


@pytest.fixture
def indrnn(monkeypatch):
    """The plugin's module imported in this process (from its source), its cell registered for the test only."""
    monkeypatch.syspath_prepend(str(PLUGIN))
    module = __import__("rrn_indrnn")
    yield module
    registry._CELLS.pop("indrnn", None)
    sys.modules.pop("rrn_indrnn", None)


@pytest.mark.slow  # pip-installs the plugin (test_registry's entry-point test is the fast check of discovery)
def test_rrn_cells_shows_the_plugin_and_where_it_came_from(plugin_site):
    result = run_cli("rrn-cells", "--json", env={"PYTHONPATH": str(plugin_site)})
    assert result.returncode == 0, result.stderr
    cells = {cell["name"]: cell for cell in json.loads(result.stdout)}
    assert cells["indrnn"]["source"] == "plugin rrn-indrnn 0.1.0 (entry point indrnn = rrn_indrnn)"
    assert cells["indrnn"]["imported"] is False  # listed from its entry point alone
    assert {"res_rnn", "gres_rnn", "rrn", "lstm"} <= set(cells)
    result = run_cli("rrn-cells", "show", "indrnn", "--json", env={"PYTHONPATH": str(plugin_site)})
    assert result.returncode == 0, result.stderr
    indrnn = json.loads(result.stdout)
    assert indrnn["source"] == "plugin rrn-indrnn 0.1.0 (entry point indrnn = rrn_indrnn)"
    assert indrnn["options"] == {
        "hidden_size": "required", "num_layers": 2, "dropout": 0.0, "bidirectional": False, "residual": False,
        "activation": "relu", "clip_gain": 2.0, "clip_steps": 64,
    }


@pytest.mark.slow
def test_installed_plugin_trains_on_sst_with_its_options_reaching_the_cell(plugin_site, data_root, tmp_path, quick,
                                                                          indrnn):
    """No yaml ships with the plugin: its config node comes from its constructor; every option given on the command
    line is in the model the run saved (read back from the best checkpoint, not from the run's own config)."""
    result = run_cli(
        "rrn-train", "task=sst", "cell=indrnn", "cell.hidden_size=16", "cell.num_layers=3", "cell.bidirectional=true",
        "cell.residual=true", "cell.activation=tanh", "cell.clip_gain=4.0", "cell.clip_steps=2",
        f"data.root={data_root}", "task.data.train_on=sentences", *quick,
        env={"PYTHONPATH": str(plugin_site)}, cwd=tmp_path, timeout=300,
    )
    results = json.loads((run_dir_of(result) / "results.json").read_text())
    assert results["cell"] == "indrnn" and results["status"] == "finished"
    checkpoint = torch.load(results["best_checkpoint"], weights_only=True, map_location="cpu")
    model = SequenceClassifier.load_from_checkpoint(results["best_checkpoint"], map_location="cpu", weights_only=True)
    cell = model.encoder
    assert type(cell) is indrnn.IndRNN and cell.output_size == 32 and len(cell.layers) == 3
    assert all(len(directions) == 2 for directions in cell.layers)  # bidirectional
    assert cell.links == {2: 1, 3: 2}  # residual: each layer after the first adds its input
    layer = cell.layers[0][0]
    assert layer.hidden_size == 16 and layer.activation is torch.tanh
    assert layer.recurrent_max == pytest.approx(4.0 ** (1 / 2))  # clip_gain ** (1 / clip_steps)
    assert checkpoint["state_dict"]["encoder.layers.2.1.weight_hh"].shape == (16,)
    # trained with the clip options: each u starts uniform in [0, 4 ** (1 / 2) = 2] and is clipped to 2; with
    # clip_gain's default it could not pass 2 ** (1 / 2) = 1.41 (1.011 with both defaults). Of the 96 values,
    # none above 1.5 has a chance of 0.75 ** 96 = 1e-12.
    recurrent = torch.cat([value for key, value in checkpoint["state_dict"].items() if key.endswith("weight_hh")])
    assert 1.5 < recurrent.abs().max() <= 2.0 + 1e-6


def test_indrnn_matches_its_reference_and_gets_the_shared_options(indrnn):
    torch.manual_seed(0)
    x = torch.randn(4, 7, 5)
    lengths = torch.tensor([7, 3, 5, 1])
    outputs, h_n = indrnn.IndRNN(input_size=5, hidden_size=6, num_layers=3, bidirectional=True)(x, lengths)
    assert outputs.shape == (4, 7, 12) and h_n.shape == (6, 4, 6)
    cell = indrnn.IndRNN(input_size=5, hidden_size=6, num_layers=1, bidirectional=True).eval()
    outputs, _ = cell(x, lengths)
    ((forward, backward),) = cell.layers
    for row, length in enumerate(lengths.tolist()):
        sequence = x[row : row + 1, :length]
        expected, _ = indrnn.reference(sequence, forward.weight_ih, forward.weight_hh, forward.bias)
        torch.testing.assert_close(outputs[row, :length, :6], expected[0])
        expected, _ = indrnn.reference(sequence.flip(1), backward.weight_ih, backward.weight_hh, backward.bias)
        torch.testing.assert_close(outputs[row, :length, 6:], expected[0].flip(0))
        assert torch.all(outputs[row, length:] == 0)


def test_indrnn_step_by_hand_and_its_reference_gradcheck(indrnn):
    """h_t = relu(W x_t + u ⊙ h_{t-1} + b), u elementwise."""
    cell = indrnn.IndRNN(input_size=1, hidden_size=2, num_layers=1)
    ((layer,),) = cell.layers
    with torch.no_grad():
        layer.weight_ih.copy_(torch.tensor([[1.0], [-1.0]]))
        layer.weight_hh.copy_(torch.tensor([0.5, 1.0]))
        layer.bias.copy_(torch.tensor([0.0, 2.0]))
    outputs, _ = cell.eval()(torch.tensor([[[1.0], [3.0]]]))
    torch.testing.assert_close(outputs[0], torch.tensor([[1.0, 1.0], [3.5, 0.0]]))  # relu(-3 + 1 + 2) = 0
    generator = torch.Generator().manual_seed(0)
    x, W, u, b = [torch.randn(*shape, generator=generator, dtype=torch.float64).requires_grad_()
                  for shape in ((2, 4, 3), (4, 3), (4,), (4,))]
    assert gradcheck(lambda *a: indrnn.reference(*a, activation=torch.tanh)[0], (x, W, u, b))


def test_indrnn_recurrent_weights_are_clipped_in_training(indrnn):
    cell = indrnn.IndRNN(input_size=3, hidden_size=4, num_layers=1, clip_gain=2.0, clip_steps=10)
    ((layer,),) = cell.layers
    bound = 2.0 ** (1 / 10)
    assert torch.all((layer.weight_hh >= 0) & (layer.weight_hh <= bound))  # initialised in [0, bound]
    with torch.no_grad():
        layer.weight_hh.copy_(torch.tensor([3.0, -3.0, 0.5, -0.5]))
    cell.eval()(torch.randn(2, 3, 3))
    assert layer.weight_hh.tolist() == [3.0, -3.0, 0.5, -0.5]  # evaluation changes no weight
    cell.train()(torch.randn(2, 3, 3))
    torch.testing.assert_close(layer.weight_hh, torch.tensor([bound, -bound, 0.5, -0.5]))
