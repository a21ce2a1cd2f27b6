"""The fused cells' and res_lstm's math on small synthetic inputs (the `module(x, lengths) -> (outputs, state)`
contract of every built-in cell, shapes and padding, the residual stream and the options' range checks are in
test_residual_cells.py)."""

from __future__ import annotations

import pytest
import torch

from rrn_app.cells import final_output, get_cell, list_cells
from rrn_app.cells.res_lstm import drop_timesteps

BUILT_IN = ["rnn", "lstm", "gru", "res_lstm"]


def make(name, bidirectional=False, **options):
    torch.manual_seed(0)
    return get_cell(name)(input_size=5, hidden_size=6, num_layers=3, bidirectional=bidirectional, **options)


def test_built_in_cells_are_registered():
    assert set(BUILT_IN) <= set(list_cells())


def test_final_output_reads_last_real_step_and_backward_start():
    outputs = torch.arange(2 * 4 * 4, dtype=torch.float).view(2, 4, 4)
    lengths = torch.tensor([4, 2])
    forward_only = final_output(outputs, lengths, bidirectional=False)
    torch.testing.assert_close(forward_only, torch.stack([outputs[0, 3], outputs[1, 1]]))
    both = final_output(outputs, lengths, bidirectional=True)
    torch.testing.assert_close(both[:, :2], torch.stack([outputs[0, 3, :2], outputs[1, 1, :2]]))
    torch.testing.assert_close(both[:, 2:], outputs[:, 0, 2:])


@pytest.mark.parametrize("keep_prob", [0.5, 0.8])
def test_stochastic_depth_drops_layers_in_training_only_and_a_dropped_layer_computes_nothing(keep_prob):
    cell = make("res_lstm", keep_prob=keep_prob)
    calls = [0, 0, 0]
    for index, layer in enumerate(cell.layers):
        layer.register_forward_hook(lambda *args, index=index: calls.__setitem__(index, calls[index] + 1))
    x = torch.randn(2, 1, 5)
    torch.manual_seed(1)
    cell.train()
    trials = 2000
    for _ in range(trials):
        cell(x)
    assert calls[0] == trials  # the first layer always runs
    # each residual layer runs Binomial(trials, keep_prob) times: mean n p, standard deviation sqrt(n p (1 - p))
    # (22 at p = 0.5, 18 at 0.8). 4.5 standard deviations either side (a chance of 7e-6 of failing a correct
    # cell) accepts only keep probabilities within about 0.05 of the one given.
    spread = 4.5 * (trials * keep_prob * (1 - keep_prob)) ** 0.5
    for kept in calls[1:]:
        assert abs(kept - trials * keep_prob) < spread, (kept, trials * keep_prob)
    calls[:] = [0, 0, 0]
    cell.eval()
    for _ in range(10):
        cell(x)
    assert calls == [10, 10, 10]


def test_dropped_layer_passes_the_stream_through():
    cell = make("res_lstm", keep_prob=0.5).train()
    cell.layer_kept = lambda index: index != 2  # drop the last layer
    x = torch.randn(2, 4, 5)
    stream = cell.layers[0](x)[0]
    stream = stream + cell.layers[1](stream)[0]
    outputs, (h_n, c_n) = cell(x)
    torch.testing.assert_close(outputs, stream)
    assert torch.all(h_n[2] == 0) and torch.all(c_n[2] == 0)


def test_drop_timesteps_compacts_and_restores_positions():
    torch.manual_seed(3)
    x = torch.arange(1, 9, dtype=torch.float).view(1, 8, 1).repeat(64, 1, 1)
    lengths = torch.full((64,), 6)
    compacted, new_lengths, position = drop_timesteps(x, lengths, keep_prob=0.5)
    assert torch.all(compacted[:, 0, 0] == 1)  # the first step is never dropped
    assert torch.all(new_lengths <= 6) and torch.all(new_lengths >= 1)
    assert 2.0 < new_lengths.float().mean() < 5.0  # about 1 + 5 * 0.5 kept
    for row in range(64):
        kept = compacted[row, : new_lengths[row], 0]
        assert torch.all(kept[1:] > kept[:-1])  # order preserved
        assert set(kept.tolist()) <= set(range(1, 7))  # never a padded step
        restored = compacted[row, :, 0][position[row, :6]]
        expected = [max(v for v in kept.tolist() if v <= t) for t in range(1, 7)]
        assert restored.tolist() == expected  # a dropped step shows the last kept one


def test_stochastic_timesteps_only_in_training():
    cell = make("res_lstm", timestep_keep_prob=0.5)
    x = torch.randn(3, 9, 5)
    lengths = torch.tensor([9, 4, 6])
    cell.eval()
    torch.testing.assert_close(cell(x, lengths)[0], cell(x, lengths)[0])
    cell.train()
    torch.manual_seed(0)
    first = cell(x, lengths)[0]
    second = cell(x, lengths)[0]
    assert not torch.allclose(first, second)
    assert torch.all(first[1, 4:] == 0) and torch.all(first[2, 6:] == 0)  # padding stays zero
    cell.timestep_keep_prob = 1.0
    torch.testing.assert_close(cell(x, lengths)[0], cell.eval()(x, lengths)[0])
