"""rrn-probe: the replay computes each cell's own function, its per-layer gradients are the ones a hand-written
back-propagation through time gives, its step Jacobians' singular values are the ones written by hand, and the
console script writes its json and pictures (one-line errors for bad input)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from rrn_app.cells import get_cell
from rrn_app.probe.cli import main, probe_model
from rrn_app.probe.replay import Replay
from rrn_app.tasks.classifier import SequenceClassifier

LENGTHS = torch.tensor([6, 4, 3])


def classifier(cell: dict, seed: int = 0) -> SequenceClassifier:
    torch.manual_seed(seed)
    return SequenceClassifier(vocab_size=20, num_classes=3, embedding_dim=4, cell=cell).eval()


def batch(seed: int = 1) -> dict:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 20, (3, 6), generator=generator)
    ids[torch.arange(6)[None, :] >= LENGTHS[:, None]] = 0
    return {"ids": ids, "lengths": LENGTHS, "label": torch.tensor([0, 2, 1])}


@pytest.mark.parametrize("name, options", [
    ("lstm", {}), ("gru", {"bidirectional": True}), ("rnn", {"residual": True}),
    ("res_lstm", {"num_layers": 3, "keep_prob": 0.75}), ("res_rnn", {"batch_norm": True}),
    ("res_rnn", {"residual": True, "bidirectional": True}), ("gres_rnn", {}),
    ("rrn", {"layer_sizes": [5, 5, 7], "skip": 2}), ("rrn", {"num_layers": 2, "skip": 2, "peephole": True}),
])
def test_the_replay_computes_the_cells_own_outputs(name, options):
    torch.manual_seed(0)
    cell = get_cell(name)(input_size=4, hidden_size=5, **{"num_layers": 2, **options}).eval()
    x = torch.randn(3, 6, 4)
    replay = Replay(cell)
    assert replay.check(x, LENGTHS) < 1e-5
    assert replay.check(x, None) < 1e-5
    assert len(replay.layers_run) == replay.num_layers and len(replay.layers_run[0]) == replay.directions


def mean_norms_by_hand(states: list[list[torch.Tensor]]) -> torch.Tensor:
    """[layers, time] mean over the real positions of ||dL/dh_t|| from per-layer lists of retained h_t."""
    rows = []
    for layer in states:
        norms = torch.stack([h.grad.norm(dim=-1) for h in layer], dim=1)  # [batch, time]
        real = torch.arange(norms.shape[1])[None, :] < LENGTHS[:, None]
        rows.append(torch.stack([norms[real[:, t], t].mean() for t in range(norms.shape[1])]))
    return torch.stack(rows)


def head_loss(model: SequenceClassifier, top: list[torch.Tensor], data: dict) -> torch.Tensor:
    """The classifier's loss read from the top layer's output at each sequence's last step."""
    outputs = torch.stack(top, dim=1)
    last = outputs[torch.arange(3), data["lengths"] - 1]
    return nn.functional.cross_entropy(model.classifier(last), data["label"])


def test_per_layer_gradients_are_those_of_a_hand_written_lstm():
    model, data = classifier({"name": "lstm", "hidden_size": 5, "num_layers": 2}), batch()
    kernel = model.encoder.rnn
    layer_input = model.embedding(data["ids"])
    states = []
    for layer in range(2):
        w_ih, w_hh = getattr(kernel, f"weight_ih_l{layer}"), getattr(kernel, f"weight_hh_l{layer}")
        bias = getattr(kernel, f"bias_ih_l{layer}") + getattr(kernel, f"bias_hh_l{layer}")
        h, c, hs = torch.zeros(3, 5), torch.zeros(3, 5), []
        for t in range(6):
            i, f, g, o = (layer_input[:, t] @ w_ih.T + h @ w_hh.T + bias).chunk(4, dim=-1)
            new_c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            new_h = torch.sigmoid(o) * torch.tanh(new_c)
            running = (t < data["lengths"])[:, None]
            h, c = torch.where(running, new_h, h), torch.where(running, new_c, c)
            h.retain_grad()
            hs.append(h)
        states.append(hs)
        layer_input = torch.stack(hs, dim=1) * (torch.arange(6)[None, :, None] < data["lengths"][:, None, None])
    head_loss(model, states[-1], data).backward()
    expected = mean_norms_by_hand(states)
    model.zero_grad()
    result = probe_model(model, [data])
    assert result["gradient"]["steps"] == list(range(6)) and result["rows"] == ["layer 1", "layer 2"]
    assert torch.allclose(10 ** torch.tensor(result["gradient"]["log10_norm"], dtype=torch.float64), expected.double(), rtol=1e-4)
    assert result["gradient"]["positions"] == [3, 3, 3, 2, 1, 1]


def test_per_layer_gradients_are_those_of_a_hand_written_residual_res_rnn():
    """Res-RNN s_t = s_{t-1} + tanh(W x_t + U s_{t-1} + b) in two layers joined by a residual link z2 = h2 + z1:
    the gradient reaching s_t of layer 1 comes through its later steps, layer 2 and the link."""
    model, data = classifier({"name": "res_rnn", "hidden_size": 5, "num_layers": 2, "residual": True}), batch(2)
    layers = [directions[0] for directions in model.encoder.layers]
    layer_input, states, stream = model.embedding(data["ids"]), [], []
    for index, layer in enumerate(layers):
        s, hs = torch.zeros(3, 5), []
        for t in range(6):
            new = s + torch.tanh(layer_input[:, t] @ layer.weight_ih.T + s @ layer.weight_hh.T + layer.bias)
            s = torch.where((t < data["lengths"])[:, None], new, s)
            s.retain_grad()
            hs.append(s)
        states.append(hs)
        h = torch.stack(hs, dim=1) * (torch.arange(6)[None, :, None] < data["lengths"][:, None, None])
        layer_input = h if index == 0 else h + stream[-1]
        stream.append(layer_input)
    head_loss(model, list(stream[-1].unbind(1)), data).backward()
    expected = mean_norms_by_hand(states)
    result = probe_model(model, [data])
    assert torch.allclose(10 ** torch.tensor(result["gradient"]["log10_norm"], dtype=torch.float64), expected.double(), rtol=1e-4)
    assert result["replay_max_difference"] < 1e-5
    assert result["align"] == "start"


def test_gradients_aligned_on_the_last_step_count_back_from_each_length():
    model, data = classifier({"name": "rnn", "hidden_size": 5, "num_layers": 1}), batch()
    result = probe_model(model, [data], align="end")
    assert result["gradient"]["steps"] == [-6, -5, -4, -3, -2, -1]
    assert result["gradient"]["positions"] == [1, 1, 2, 3, 3, 3]
    # at each sequence's last step the gradient is the classifier head's alone: W^T (softmax - one hot) / batch
    with torch.no_grad():
        logits = model(data["ids"], data["lengths"])
        error = (torch.softmax(logits, -1) - nn.functional.one_hot(data["label"], 3)) / 3
        expected = (error @ model.classifier.weight).norm(dim=-1).mean()
    assert 10 ** result["gradient"]["log10_norm"][0][-1] == pytest.approx(float(expected), rel=1e-5)
    trimmed = probe_model(model, [data], align="end", min_positions=2)  # steps only one sequence reaches left out
    assert trimmed["gradient"]["steps"] == [-4, -3, -2, -1] and trimmed["state_norm"]["steps"] == [-4, -3, -2, -1]
    assert trimmed["gradient"]["log10_norm"][0] == result["gradient"]["log10_norm"][0][2:]


def test_the_jacobian_of_a_linear_res_rnn_step_is_identity_plus_U():
    """With relu and a large bias every pre-activation is positive: s_t = s_{t-1} + W x_t + U s_{t-1} + b,
    whose step Jacobian is I + U at every step, so the probe's singular values are those of I + U."""
    model = classifier({"name": "res_rnn", "hidden_size": 5, "num_layers": 1, "activation": "relu"})
    layer = model.encoder.layers[0][0]
    with torch.no_grad():
        layer.bias.fill_(1000.0)
    result = probe_model(model, [batch()], jacobian_sequences=3, jacobian_steps=4)
    expected = torch.linalg.svdvals(torch.eye(5) + layer.weight_hh.detach()).double()
    jacobian = result["jacobian"]
    assert jacobian["steps"] == [1, 2] and sorted(jacobian["sequences"]) == [0, 1, 2]  # up to the shortest, 3
    for spectrum in jacobian["layers"][0]["spectrum"]:
        assert torch.allclose(torch.tensor(spectrum, dtype=torch.float64), expected, rtol=1e-5)
    assert jacobian["layers"][0]["top"][0] == pytest.approx(float(expected[0]))
    assert jacobian["layers"][0]["bottom"][0] == pytest.approx(float(expected[-1]))


def test_the_jacobian_of_an_elman_step_is_diag_one_minus_h_squared_times_W_hh():
    model = classifier({"name": "rnn", "hidden_size": 5, "num_layers": 1})
    data = batch()
    result = probe_model(model, [data], jacobian_sequences=2, jacobian_steps=3)
    kernel = model.encoder.rnn
    with torch.no_grad():
        outputs, _ = kernel(model.embedding(data["ids"]))  # unpadded: the two longest sequences are real here
    jacobian = result["jacobian"]
    assert jacobian["sequences"] == [0, 1] and jacobian["steps"] == [1, 2, 3]
    for index, t in enumerate(jacobian["steps"]):
        spectra = [torch.linalg.svdvals(torch.diag(1 - outputs[b, t] ** 2) @ kernel.weight_hh_l0) for b in (0, 1)]
        expected = torch.stack(spectra).mean(0).double()
        assert torch.allclose(torch.tensor(jacobian["layers"][0]["spectrum"][index], dtype=torch.float64), expected, rtol=1e-4)


def test_an_lstm_jacobian_is_of_the_whole_state():
    model = classifier({"name": "lstm", "hidden_size": 5, "num_layers": 2})
    result = probe_model(model, [batch()], jacobian_sequences=1, jacobian_steps=2)
    assert [layer["width"] for layer in result["jacobian"]["layers"]] == [10, 10]  # (h_t, c_t)


@pytest.mark.slow
def test_rrn_probe_writes_its_json_and_pictures_and_compares_two_probes(tmp_path, capsys):
    out = tmp_path / "probe"
    main(["task=sst", "cell=res_rnn", "cell.hidden_size=8", "cell.num_layers=2", "batches=1",
          "jacobian_steps=2", "jacobian_sequences=2", f"out={out}"])
    assert capsys.readouterr().out.strip() == str(out)
    result = json.loads((out / "probe.json").read_text())
    assert result["task"] == "sst" and result["cell"] == "res_rnn" and result["checkpoint"] is None
    assert result["rows"] == ["layer 1", "layer 2"] and result["replay_max_difference"] < 1e-4
    assert len(result["gradient"]["log10_norm"][0]) == len(result["gradient"]["steps"]) > 1
    assert result["cell_config"]["hidden_size"] == 8
    for name in ("gradient_heatmap.png", "gradient_curves.png", "state_norm.png", "jacobian.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    main([f"compare={out},{out / 'probe.json'}", "labels=a,b", f"out={tmp_path / 'both'}"])
    for name in ("gradient_heatmaps.png", "gradient_curves.png", "state_norms.png", "jacobians.png"):
        assert (tmp_path / "both" / name).is_file()


def one_line_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error, error
    return error


def test_bad_input_is_one_line(capsys, tmp_path):
    missing = one_line_error(capsys, [f"ckpt={tmp_path / 'nope.ckpt'}"])
    assert missing.startswith(f"rrn-probe: error: checkpoint {tmp_path / 'nope.ckpt'} not found") and \
        "rrn-train" in missing
    assert "Did you mean batches=?" in one_line_error(capsys, ["task=sst", "cell=lstm", "batchs=2"])
    assert "give ckpt=<path>" in one_line_error(capsys, ["task=sst"])
    assert "align='middle' is not allowed" in one_line_error(capsys, ["task=sst", "cell=lstm", "align=middle"])
    assert "not found" in one_line_error(capsys, [f"compare={tmp_path}"])


def test_help_is_the_module_docstring(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "rrn-probe ckpt=" in capsys.readouterr().out
