"""The residual cells of the papers (res_rnn, gres_rnn, rrn), recurrent batch norm, and the options all cells share.

The math is checked against the plain step-by-step oracles of rrn_app/cells/reference.py, which are themselves
checked with float64 gradcheck, and on hand-made tiny weights; the padding contract against each sequence alone.
"""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf
from torch.autograd import gradcheck

from rrn_app.cells import all_cell_infos, cell_info, final_output, get_cell, reference
from rrn_app.cells.batch_norm import RecurrentBatchNorm
from rrn_app.cells.rrn import skip_links
from rrn_app.cells.stack import reverse_within_lengths
from rrn_app.option_checks import InvalidOption

LENGTHS = torch.tensor([7, 3, 5, 1])
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "identity": reference.identity}

# the configurations the contract tests (shapes, padding, both directions) run on: every built-in cell
CONFIGS = {
    "rnn": ("rnn", {}),
    "lstm": ("lstm", {}),
    "gru": ("gru", {}),
    "res_lstm": ("res_lstm", {}),
    "res_rnn": ("res_rnn", {}),
    "res_rnn linear relu tanh": ("res_rnn", dict(projection="linear", activation="relu", output_activation="tanh")),
    "res_rnn batch_norm": ("res_rnn", dict(batch_norm=True)),
    "res_rnn residual": ("res_rnn", dict(residual=True, dropout=0.3)),
    "gres_rnn": ("gres_rnn", {}),
    "gres_rnn batch_norm": ("gres_rnn", dict(batch_norm=True, batch_norm_max_length=4)),
    "rrn": ("rrn", dict(skip=1)),
    "rrn widths": ("rrn", dict(layer_sizes=[4, 6, 3], skip=2)),
    "rrn peephole": ("rrn", dict(peephole=True)),
    "lstm residual": ("lstm", dict(residual=True)),
    "gru residual": ("gru", dict(residual=True)),
}


def make(config: str, bidirectional: bool = False, num_layers: int = 3):
    name, options = CONFIGS[config]
    torch.manual_seed(0)
    return get_cell(name)(input_size=5, hidden_size=6, num_layers=num_layers, bidirectional=bidirectional, **options)


def state_parts(state) -> list[torch.Tensor]:
    """Every tensor of a final state, each [rows, batch, width]: h_n (and c_n), or one per layer when widths differ."""
    parts = state if isinstance(state, tuple) else (state,)
    return [tensor for part in parts for tensor in (part if isinstance(part, list) else [part])]


def assign(layer, **values):
    with torch.no_grad():
        for name, value in values.items():
            getattr(layer, name).copy_(value)


# --- the options every cell shares -------------------------------------------------------------------------------


def test_every_cell_takes_the_shared_options():
    for info in all_cell_infos():
        assert {"hidden_size", "num_layers", "dropout", "bidirectional"} <= set(info.options()), info.name
    for name in ("rnn", "lstm", "gru", "res_rnn", "gres_rnn"):  # res_lstm is residual by design, rrn has `skip`
        assert cell_info(name).options()["residual"] is False


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("config", CONFIGS)
def test_output_and_state_shapes(config, bidirectional):
    cell = make(config, bidirectional)
    outputs, state = cell(torch.randn(4, 7, 5), LENGTHS)
    directions = 2 if bidirectional else 1
    if config == "rrn widths":
        assert cell.output_size == 3 * directions and outputs.shape == (4, 7, 3 * directions)
        h_n, c_n = state  # widths differ: one [directions, batch, width] per layer
        assert [tuple(h.shape) for h in h_n] == [(directions, 4, width) for width in (4, 6, 3)]
        return
    assert cell.output_size == 6 * directions and outputs.shape == (4, 7, 6 * directions)
    assert cell.bidirectional == bidirectional and cell.num_layers == 3 and cell.hidden_size == 6
    for part in state_parts(state):
        assert part.shape == (3 * directions, 4, 6)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("config", CONFIGS)
def test_padding_never_leaks(config, bidirectional):
    """A padded batch gives exactly what each sequence gives alone, final states included, and zeros past each length."""
    cell = make(config, bidirectional).eval()
    x = torch.randn(4, 7, 5)
    x_noisy_padding = x.clone()
    for row, length in enumerate(LENGTHS.tolist()):
        x_noisy_padding[row, length:] = 1e3  # garbage in the padding must change nothing
    outputs, state = cell(x_noisy_padding, LENGTHS)
    for row, length in enumerate(LENGTHS.tolist()):
        alone, alone_state = cell(x[row : row + 1, :length])
        torch.testing.assert_close(outputs[row, :length], alone[0], atol=1e-6, rtol=1e-5)
        for batched, single in zip(state_parts(state), state_parts(alone_state), strict=True):
            torch.testing.assert_close(batched[:, row], single[:, 0], atol=1e-6, rtol=1e-5)
        assert torch.all(outputs[row, length:] == 0)


def test_reverse_within_lengths_keeps_the_padding_in_place():
    x = torch.arange(1.0, 6.0).repeat(2, 1)[:, :, None]
    reversed_x = reverse_within_lengths(x, torch.tensor([5, 3]))
    assert reversed_x[:, :, 0].tolist() == [[5, 4, 3, 2, 1], [3, 2, 1, 4, 5]]


@pytest.mark.parametrize("config", ["res_rnn", "gres_rnn batch_norm", "rrn peephole", "lstm residual", "gru residual"])
def test_backward_direction_reads_each_sequence_reversed_within_its_length(config):
    cell = make(config, bidirectional=True, num_layers=1).eval()
    forward_layer, backward_layer = getattr(cell, "rnn", cell).layers[0]  # residual lstm, gru: a stack inside
    x = torch.randn(4, 7, 5)
    outputs, state = cell(x, LENGTHS)
    h_n = state_parts(state)[0]
    for row, length in enumerate(LENGTHS.tolist()):
        sequence = x[row : row + 1, :length]
        forward = forward_layer(sequence)[0][0]
        backward = backward_layer(sequence.flip(1))[0][0].flip(0)  # the layer alone, on the sequence reversed
        torch.testing.assert_close(outputs[row, :length, :6], forward)
        torch.testing.assert_close(outputs[row, :length, 6:], backward)
        torch.testing.assert_close(h_n[0, row], forward[-1])
        torch.testing.assert_close(h_n[1, row], backward[0])  # the backward direction ends at step 0
    torch.testing.assert_close(final_output(outputs, LENGTHS, bidirectional=True), torch.cat([h_n[0], h_n[1]], dim=1))


def layer_outputs(cell, index: int, x):
    """The outputs of layer `index` of a one-direction cell, run by itself on x."""
    layers = cell.rnn.layers if hasattr(cell, "rnn") else cell.layers  # lstm/gru wrap a RecurrentStack
    layer = layers[index]
    return (layer[0] if isinstance(layer, torch.nn.ModuleList) else layer)(x)[0]


@pytest.mark.parametrize("name, options, scale", [
    ("res_lstm", {}, 1.0),
    ("res_lstm", dict(keep_prob=0.5), 0.5),  # stochastic depth: at evaluation each residual is scaled by keep_prob
    ("res_rnn", dict(residual=True), 1.0),
    ("gru", dict(residual=True), 1.0),
])
def test_residual_stream_is_rebuilt_by_hand_from_the_layers(name, options, scale):
    """x^(2) = h^(1), x^(l+1) = x^(l) + keep_prob h^(l): res_lstm's stacking, and residual=true's for any cell."""
    torch.manual_seed(0)
    cell = get_cell(name)(input_size=5, hidden_size=6, num_layers=3, **options).eval()
    x = torch.randn(2, 4, 5)
    stream = layer_outputs(cell, 0, x)
    for index in (1, 2):
        stream = stream + scale * layer_outputs(cell, index, stream)
    torch.testing.assert_close(cell(x)[0], stream)
    torch.testing.assert_close(cell(x)[0], cell(x)[0])  # no randomness at evaluation


def test_lstm_with_residual_is_res_lstm():
    torch.manual_seed(0)
    res_lstm = get_cell("res_lstm")(input_size=5, hidden_size=6, num_layers=3).eval()
    lstm = get_cell("lstm")(input_size=5, hidden_size=6, num_layers=3, residual=True).eval()
    for kernel, (layer,) in zip(res_lstm.layers, lstm.rnn.layers):
        layer.kernel.load_state_dict(kernel.state_dict())
    x = torch.randn(4, 7, 5)
    for expected, actual in zip(res_lstm(x, LENGTHS), lstm(x, LENGTHS)):
        torch.testing.assert_close(actual, expected)


def test_dropout_acts_between_layers_in_training_only():
    x = torch.randn(3, 5, 5)
    one_layer = get_cell("res_rnn")(input_size=5, hidden_size=6, num_layers=1, dropout=0.5).train()
    torch.testing.assert_close(one_layer(x)[0], one_layer(x)[0])  # never on the input of the first layer
    two_layers = get_cell("res_rnn")(input_size=5, hidden_size=6, num_layers=2, dropout=0.5).train()
    assert not torch.allclose(two_layers(x)[0], two_layers(x)[0])
    two_layers.eval()
    torch.testing.assert_close(two_layers(x)[0], two_layers(x)[0])


# --- res_rnn and gres_rnn: the equations ------------------------------------------------------------------------


def test_res_rnn_with_zero_residual_follows_the_projection_exactly():
    """F = 0 (W = U = 0, b = 0): y = W_im s_{t-1}, so s_t = W_im^t s_0."""
    cell = get_cell("res_rnn")(input_size=3, hidden_size=2, projection="linear")
    rotation = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    assign(cell.layers[0][0], weight_ih=torch.zeros(2, 3), weight_hh=torch.zeros(2, 2), bias=torch.zeros(2),
           weight_im=rotation)
    s0 = torch.tensor([1.0, 2.0])
    outputs, h_n = cell(torch.randn(1, 4, 3), state=s0.view(1, 1, 2))
    expected = torch.stack([torch.linalg.matrix_power(rotation, t) @ s0 for t in range(1, 5)])
    torch.testing.assert_close(outputs[0], expected)
    torch.testing.assert_close(h_n[0, 0], expected[-1])
    identity = get_cell("res_rnn")(input_size=3, hidden_size=2)  # W_im = I: the state holds still
    assign(identity.layers[0][0], weight_ih=torch.zeros(2, 3), weight_hh=torch.zeros(2, 2))
    torch.testing.assert_close(identity(torch.randn(1, 4, 3), state=s0.view(1, 1, 2))[0][0], s0.expand(4, 2))


def test_res_rnn_state_is_the_sum_of_the_residuals():
    """Eqs. (11) and (17): with W_im = I and f the identity, s_t = s_{t-1} + F; with W = I, U = 0, F = tanh(x_t)."""
    cell = get_cell("res_rnn")(input_size=2, hidden_size=2)
    assign(cell.layers[0][0], weight_ih=torch.eye(2), weight_hh=torch.zeros(2, 2), bias=torch.zeros(2))
    x = torch.randn(1, 5, 2)
    torch.testing.assert_close(cell(x)[0][0], torch.tanh(x[0]).cumsum(dim=0))


def test_res_rnn_one_step_by_hand():
    """s_t = f(W_im s_{t-1} + act(W x_t + U s_{t-1} + b)) with every weight chosen."""
    cell = get_cell("res_rnn")(input_size=1, hidden_size=2, projection="linear", activation="relu",
                               output_activation="tanh")
    assign(cell.layers[0][0], weight_ih=torch.tensor([[1.0], [-1.0]]), weight_hh=torch.tensor([[0.5, 0.0], [0.0, 2.0]]),
           bias=torch.tensor([0.1, 0.2]), weight_im=torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    s0 = torch.tensor([0.4, -0.3])
    x = torch.tensor([[[0.7]]])
    residual = torch.relu(torch.tensor([0.7 + 0.5 * 0.4 + 0.1, -0.7 + 2.0 * -0.3 + 0.2]))
    expected = torch.tanh(torch.tensor([-0.3, 0.4]) + residual)
    torch.testing.assert_close(cell(x, state=s0.view(1, 1, 2))[0][0, 0], expected)


def test_gres_rnn_gate_scales_the_residual():
    """y = W_linear s_{t-1} + g ⊙ F: g = σ(0) = 1/2 halves F; a closed gate keeps the state; an open one is res_rnn."""
    cell = get_cell("gres_rnn")(input_size=2, hidden_size=2)
    layer = cell.layers[0][0]  # rows [F ; gate]: weight_ih = [W; W_g], weight_hh = [U; U_g], bias = [b; b_g]
    assign(layer, weight_ih=torch.cat([torch.eye(2), torch.zeros(2, 2)]), weight_hh=torch.zeros(4, 2),
           bias=torch.zeros(4))
    x = torch.randn(1, 5, 2)
    torch.testing.assert_close(cell(x)[0][0], (torch.tanh(x[0]) / 2).cumsum(dim=0))
    s0 = torch.tensor([0.3, -0.2])
    assign(layer, bias=torch.tensor([0.0, 0.0, -100.0, -100.0]))
    torch.testing.assert_close(cell(x, state=s0.view(1, 1, 2))[0][0], s0.expand(5, 2))
    assign(layer, bias=torch.tensor([0.0, 0.0, 100.0, 100.0]))
    torch.testing.assert_close(cell(x)[0][0], torch.tanh(x[0]).cumsum(dim=0))


def test_res_rnn_starts_near_the_identity_mapping():
    """W_im = I, b = 0, |U| <= 0.1/sqrt(H): one step's Jacobian ds_t/ds_{t-1} is within 0.1/sqrt(H) of I."""
    torch.manual_seed(0)
    cell = get_cell("res_rnn")(input_size=5, hidden_size=16, projection="linear")
    layer = cell.layers[0][0]
    bound = 0.1 / 16**0.5
    assert torch.equal(layer.weight_im, torch.eye(16)) and torch.all(layer.bias == 0)
    assert layer.weight_hh.abs().max() <= bound
    inputs = layer.project_inputs(torch.randn(1, 1, 5))[:, 0]
    jacobian = torch.autograd.functional.jacobian(lambda s: layer.step(inputs, s, 0, None), torch.randn(1, 16))
    assert (jacobian[0, :, 0, :] - torch.eye(16)).abs().max() <= bound


@pytest.mark.parametrize("options", [
    {}, dict(projection="linear", output_activation="tanh"), dict(activation="relu"), dict(batch_norm=True),
])
def test_res_rnn_matches_the_reference(options):
    torch.manual_seed(0)
    cell = get_cell("res_rnn")(input_size=5, hidden_size=6, **options).train()  # batch norm: batch statistics
    layer = cell.layers[0][0]
    if layer.weight_im is not None:
        assign(layer, weight_im=torch.eye(6) + 0.3 * torch.randn(6, 6))
    x = torch.randn(4, 7, 5)
    expected, s_T = reference.res_rnn(
        x, layer.weight_ih, layer.weight_hh, layer.bias, layer.weight_im,
        activation=ACTIVATIONS[options.get("activation", "tanh")],
        output_activation=ACTIVATIONS[options.get("output_activation", "identity")],
        gamma=None if layer.norm is None else layer.norm.weight,
    )
    outputs, h_n = cell(x)
    torch.testing.assert_close(outputs, expected)
    torch.testing.assert_close(h_n[0], s_T)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_gres_rnn_matches_the_reference(batch_norm):
    torch.manual_seed(0)
    cell = get_cell("gres_rnn")(input_size=5, hidden_size=6, projection="linear", batch_norm=batch_norm).train()
    layer = cell.layers[0][0]
    assign(layer, weight_im=torch.eye(6) + 0.3 * torch.randn(6, 6))
    W, W_g = layer.weight_ih.chunk(2)
    U, U_g = layer.weight_hh.chunk(2)
    b, b_g = layer.bias.chunk(2)
    gamma, gamma_g = layer.norm.weight.chunk(2) if batch_norm else (None, None)
    x = torch.randn(4, 7, 5)
    expected, _ = reference.gres_rnn(x, W, U, b, W_g, U_g, b_g, layer.weight_im, gamma=gamma, gamma_g=gamma_g)
    torch.testing.assert_close(cell(x)[0], expected)


# --- rrn --------------------------------------------------------------------------------------------------------


def test_skip_links_join_every_skip_layers_from_the_input():
    assert skip_links(7, 2) == {2: 0, 4: 2, 6: 4}
    assert skip_links(7, 3) == {3: 0, 6: 3}
    assert skip_links(3, 1) == {1: 0, 2: 1, 3: 2}


def lstm_weights(layer):
    """(W, U, b, V_o) of an rrn layer: a fused nn.LSTM (two biases, no peephole) or a peephole layer."""
    if hasattr(layer, "kernel"):
        kernel = layer.kernel
        return kernel.weight_ih_l0, kernel.weight_hh_l0, kernel.bias_ih_l0 + kernel.bias_hh_l0, None
    return layer.weight_ih, layer.weight_hh, layer.bias, layer.weight_co


@pytest.mark.parametrize("peephole", [False, True])
def test_rrn_matches_the_reference(peephole):
    """z^(l) = h^(l) + P_l z^(l-2) for l = 2, 4, 6; P_l the identity where the widths match, else linear."""
    torch.manual_seed(0)
    cell = get_cell("rrn")(input_size=5, hidden_size=6, layer_sizes=[5, 5, 3, 3, 3, 3, 4], peephole=peephole).eval()
    projections = {int(end): projection.weight for end, projection in cell.projections.items()}
    assert cell.links == {2: 0, 4: 2, 6: 4} and set(projections) == {4}  # only 5 -> 3 needs a projection
    x = torch.randn(3, 6, 5)
    expected = reference.rrn(x, [lstm_weights(layer) for (layer,) in cell.layers], projections, skip=2)
    torch.testing.assert_close(cell(x)[0], expected)


def test_rrn_peephole_reaches_the_output_gate_only():
    """Eq. (1) with V_o = 0 is the LSTM of PyTorch's kernel."""
    torch.manual_seed(0)
    fused = get_cell("rrn")(input_size=5, hidden_size=6, num_layers=2).eval()
    peephole = get_cell("rrn")(input_size=5, hidden_size=6, num_layers=2, peephole=True).eval()
    for (source,), (target,) in zip(fused.layers, peephole.layers):
        W, U, b, _ = lstm_weights(source)
        assign(target, weight_ih=W, weight_hh=U, bias=b, weight_co=torch.zeros(6, 6))
    peephole.projections.load_state_dict(fused.projections.state_dict())  # the link x -> z^(2) (5 -> 6)
    x = torch.randn(4, 7, 5)
    torch.testing.assert_close(peephole(x, LENGTHS)[0], fused(x, LENGTHS)[0])


def test_rrn_paper_experiment_builds_the_7_layer_model(compose_config):
    cfg = compose_config("experiment=rrn_paper_7_layers")
    options = OmegaConf.to_container(cfg.cell)
    cell = get_cell(options.pop("name"))(input_size=50, **options)
    assert cell.layer_sizes == [80, 80, 160, 320, 800, 50, 50] and cell.num_layers == 7 and cell.output_size == 50
    assert cell.links == {2: 0, 4: 2, 6: 4} and sorted(cell.projections) == ["2", "4", "6"]
    assert cfg.trainer.gradient_clip_val == 5.0 and cfg.task.model.optimizer == "rmsprop"
    assert cfg.task.name == "char_lm" and cfg.task.model.embedding_dim == 50
    assert (cfg.task.data.batch_size, cfg.task.data.seq_length) == (50, 50)


def test_layer_sizes_from_the_command_line(compose_config):
    from rrn_app.train import check_cell

    cfg = compose_config("cell=rrn", "cell.layer_sizes=[16,32]")
    check_cell(cfg.cell)  # a Hydra list, not a Python list, on its way in
    options = OmegaConf.to_container(cfg.cell)
    assert get_cell(options.pop("name"))(input_size=8, **options).layer_sizes == [16, 32]


# --- recurrent batch norm ---------------------------------------------------------------------------------------


def test_batch_norm_gamma_starts_at_a_tenth_and_there_is_no_beta():
    cell = get_cell("gres_rnn")(input_size=5, hidden_size=6, batch_norm=True)
    norm = cell.layers[0][0].norm
    assert [name for name, _ in norm.named_parameters()] == ["weight"]
    assert norm.weight.shape == (12,) and torch.all(norm.weight == 0.1)  # U s_{t-1} and U_g s_{t-1}


def test_batch_norm_in_training_uses_the_sequences_still_running_at_each_step():
    norm = RecurrentBatchNorm(3, max_length=2).train()
    z = torch.randn(5, 3) * 4 + 1
    running = torch.tensor([True, True, True, False, False])[:, None]
    out = norm(z, 0, running)
    real = z[:3]
    mean, var = real.mean(0), real.var(0, unbiased=False)
    torch.testing.assert_close(out[:3], 0.1 * (real - mean) / torch.sqrt(var + 1e-5))
    torch.testing.assert_close(norm.running_mean[0], 0.1 * mean)  # momentum 0.1 from 0
    torch.testing.assert_close(norm.running_var[0], 0.9 + 0.1 * real.var(0, unbiased=True))
    assert torch.all(norm.running_mean[1] == 0) and torch.all(norm.running_var[1] == 1)  # step 1's are its own


def test_batch_norm_statistics_are_per_timestep_and_shared_beyond_max_length():
    norm = RecurrentBatchNorm(2, max_length=3).train()
    base = torch.randn(64, 2)
    base -= base.mean(0)
    for t in range(5):
        norm(base + 10.0 * t, t)  # the batch mean at step t is 10 t
    # steps 0, 1 own slots 0, 1; steps 2, 3, 4 share slot 2: 0.1 * 20, then 0.9 * 2 + 0.1 * 30, then ... + 0.1 * 40
    torch.testing.assert_close(norm.running_mean[:, 0], torch.tensor([0.0, 1.0, 0.9 * (0.9 * 2.0 + 3.0) + 4.0]))


def test_batch_norm_in_evaluation_uses_the_running_statistics():
    norm = RecurrentBatchNorm(2, max_length=3)
    with torch.no_grad():
        norm.running_mean.copy_(torch.tensor([[0.0, 0.0], [1.0, -1.0], [2.0, 3.0]]))
        norm.running_var.copy_(torch.tensor([[1.0, 1.0], [4.0, 0.25], [9.0, 1.0]]))
    norm.eval()
    z = torch.randn(4, 2)
    mean, var = torch.tensor([1.0, -1.0]), torch.tensor([4.0, 0.25])
    torch.testing.assert_close(norm(z, 1), 0.1 * (z - mean) / torch.sqrt(var + 1e-5))
    torch.testing.assert_close(norm(z, 7), norm(z, 2))  # past max_length: the last step's statistics
    torch.testing.assert_close(norm(z[:1], 1), norm(z, 1)[:1])  # no dependence on the rest of the batch
    assert norm.running_mean[1].tolist() == [1.0, -1.0]  # evaluation updates nothing


def test_batch_norm_cell_depends_on_the_batch_in_training_only():
    torch.manual_seed(0)
    cell = get_cell("res_rnn")(input_size=5, hidden_size=6, batch_norm=True)
    x = torch.randn(4, 6, 5)
    other = torch.cat([x[:1], torch.randn(3, 6, 5)])  # the same first sequence among different ones
    cell.train()
    assert not torch.allclose(cell(x)[0][0], cell(other)[0][0])
    statistics = cell.layers[0][0].norm.running_mean.clone()
    cell.eval()
    torch.testing.assert_close(cell(x)[0][0], cell(other)[0][0])
    assert torch.equal(cell.layers[0][0].norm.running_mean, statistics)


@pytest.mark.parametrize("config", ["res_rnn batch_norm", "gres_rnn batch_norm"])
def test_padding_takes_no_part_in_batch_statistics(config):
    x = torch.randn(4, 7, 5)
    x_noisy_padding = x.clone()
    for row, length in enumerate(LENGTHS.tolist()):
        x_noisy_padding[row, length:] = 1e3
    clean, noisy = make(config, bidirectional=True).train(), make(config, bidirectional=True).train()
    torch.testing.assert_close(noisy(x_noisy_padding, LENGTHS)[0], clean(x, LENGTHS)[0])
    for (name, a), (_, b) in zip(clean.named_buffers(), noisy.named_buffers()):
        torch.testing.assert_close(a, b, msg=name)


# --- the oracles: float64 gradcheck -----------------------------------------------------------------------------


def tensors(*shapes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [(0.5 * torch.randn(*shape, generator=generator, dtype=torch.float64)).requires_grad_() for shape in shapes]


def test_reference_res_rnn_gradcheck():
    x, W, U, b, W_im, gamma = tensors((3, 4, 3), (4, 3), (4, 4), (4,), (4, 4), (4,))
    assert gradcheck(lambda *a: reference.res_rnn(*a[:5], output_activation=torch.tanh)[0], (x, W, U, b, W_im))
    assert gradcheck(lambda *a: reference.res_rnn(*a[:4], gamma=a[4])[0], (x, W, U, b, gamma))


def test_reference_gres_rnn_gradcheck():
    x, W, U, b, W_g, U_g, b_g, W_linear, gamma, gamma_g = tensors(
        (3, 4, 3), (4, 3), (4, 4), (4,), (4, 3), (4, 4), (4,), (4, 4), (4,), (4,))
    assert gradcheck(lambda *a: reference.gres_rnn(*a)[0], (x, W, U, b, W_g, U_g, b_g, W_linear))
    assert gradcheck(lambda *a: reference.gres_rnn(*a[:7], gamma=a[7], gamma_g=a[8])[0],
                     (x, W, U, b, W_g, U_g, b_g, gamma, gamma_g))


def test_reference_rrn_gradcheck():
    x, W1, U1, b1, V1, W2, U2, b2, P = tensors((2, 4, 3), (8, 3), (8, 2), (8,), (2, 2), (12, 2), (12, 3), (12,), (3, 3))
    assert gradcheck(lambda *a: reference.rrn(a[0], [a[1:5], (*a[5:8], None)], {2: a[8]}, skip=2),
                     (x, W1, U1, b1, V1, W2, U2, b2, P))


@pytest.mark.parametrize("config", ["res_rnn batch_norm", "gres_rnn", "rrn peephole"])
def test_cells_gradcheck_on_padded_batches(config):
    """The cells themselves, masks, reversal and batch statistics included, in float64."""
    name, options = CONFIGS[config]
    torch.manual_seed(0)
    cell = get_cell(name)(input_size=3, hidden_size=2, num_layers=2, bidirectional=True, **options).double().train()
    x = torch.randn(3, 4, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([4, 2, 3])
    assert gradcheck(lambda x: cell(x, lengths)[0], (x,))


# --- options and end to end -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, options, key", [
    ("res_rnn", dict(activation="sigmoid"), "activation"),
    ("res_rnn", dict(output_activation="relu"), "output_activation"),
    ("gres_rnn", dict(projection="conv"), "projection"),
    ("res_rnn", dict(batch_norm="yes"), "batch_norm"),
    ("gres_rnn", dict(batch_norm=True, batch_norm_max_length=0), "batch_norm_max_length"),
    ("res_rnn", dict(residual="yes"), "residual"),
    ("gru", dict(residual="yes"), "residual"),
    ("rrn", dict(layer_sizes=[80, 0]), "layer_sizes"),
    ("rrn", dict(layer_sizes=[]), "layer_sizes"),
    ("rrn", dict(layer_sizes=80), "layer_sizes"),
    ("rrn", dict(skip=0), "skip"),
    ("rrn", dict(dropout=1.0), "dropout"),
    ("res_lstm", dict(hidden_size=0), "hidden_size"),
    ("res_lstm", dict(num_layers=-1), "num_layers"),
    ("res_lstm", dict(dropout=1.0), "dropout"),
    ("res_lstm", dict(keep_prob=0.0), "keep_prob"),
    ("res_lstm", dict(keep_prob=1.5), "keep_prob"),
    ("res_lstm", dict(timestep_keep_prob=-0.1), "timestep_keep_prob"),
])
def test_out_of_range_options_name_the_option(name, options, key):
    with pytest.raises(InvalidOption, match=rf"^{key}=.* not allowed"):
        get_cell(name)(input_size=4, **{"hidden_size": 8, **options})


@pytest.mark.parametrize("overrides, built", [
    (["cell=res_rnn", "cell.batch_norm=true", "cell.residual=true"],
     lambda cell: (cell.links == {2: 1} and any(isinstance(m, RecurrentBatchNorm) for m in cell.modules())
                   and not cell.bidirectional)),
    (["cell=rrn", "cell.layer_sizes=[16,24]", "cell.bidirectional=true"],
     lambda cell: cell.layer_sizes == [16, 24] and cell.bidirectional and cell.output_size == 48),
])
@pytest.mark.slow
def test_new_cells_train_on_sst_and_the_saved_model_has_their_options(compose_config, data_root, quick, overrides,
                                                                      built):
    from rrn_app.tasks.classifier import SequenceClassifier
    from rrn_app.train import train

    cfg = compose_config("task=sst", *overrides, f"data.root={data_root}", "cell.hidden_size=16",
                         "task.data.train_on=sentences", *quick)
    results = json.loads((train(cfg) / "results.json").read_text())
    assert results["cell"] == overrides[0].split("=")[1] and results["status"] == "finished"
    model = SequenceClassifier.load_from_checkpoint(results["best_checkpoint"], map_location="cpu", weights_only=True)
    assert type(model.encoder) is get_cell(results["cell"]) and built(model.encoder)
    assert model.classifier.in_features == model.encoder.output_size
