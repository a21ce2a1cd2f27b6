"""task=music's output distributions (rrn_app/tasks/heads.py): each is a normalised distribution over frames, its
vectorised NLL is the chain rule key by key, sampling draws from it, padding costs nothing and carried state
is one pass over the piece; output=nade trains with rrn-train and rrn-generate writes its MIDI, picture and sound."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from scipy import stats

from helpers import run_cli, run_dir_of
from rrn_app.data.music import KEYS, PieceWindows, WindowSampler, collate
from rrn_app.tasks.heads import IndependentHead, NADEHead, build_head
from rrn_app.tasks.music import FrameMetrics, MusicModel
from rrn_app.option_checks import UserError

CELL = {"name": "gru", "hidden_size": 16, "num_layers": 1, "dropout": 0.0, "bidirectional": False, "residual": False}
STATE, FEW_KEYS = 5, 4


def tiny_head(kind: str, keys: int = FEW_KEYS, seed: int = 0) -> torch.nn.Module:
    """A small head in float64 with large random weights, so the keys depend strongly on each other."""
    torch.manual_seed(seed)
    head = build_head(kind, STATE, keys, nade_hidden=6).double()
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.normal_(0, 1.5)
    return head


def every_frame(keys: int) -> torch.Tensor:
    """All 2^keys frames, [2^keys, keys], float64."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=keys)), dtype=torch.float64)


def exact_probabilities(head, state: torch.Tensor) -> torch.Tensor:
    """[states, 2^keys] probability of every frame given each state, from the head's NLL."""
    frames = every_frame(head.keys if isinstance(head, NADEHead) else head.out_features)
    expanded = state[:, None].expand(len(state), len(frames), state.shape[-1])
    with torch.no_grad():
        return torch.exp(-head.nll(expanded, frames[None].expand(len(state), *frames.shape)))


@pytest.mark.parametrize("kind", ["independent", "nade"])
def test_the_probabilities_of_all_frames_sum_to_one(kind):
    head = tiny_head(kind)
    state = torch.randn(7, STATE, dtype=torch.float64) * 2
    probabilities = exact_probabilities(head, state)
    assert probabilities.shape == (7, 2 ** FEW_KEYS)
    assert torch.allclose(probabilities.sum(1), torch.ones(7, dtype=torch.float64), atol=1e-6)


def test_nade_nll_is_the_chain_rule_key_by_key():
    # RNN-NADE: h_i = sigmoid(b_h + W[:, :i] v_<i), p(v_i = 1 | v_<i) = sigmoid(b_v[i] + V[i] . h_i)
    head = tiny_head("nade", keys=6)
    state = torch.randn(3, 2, STATE, dtype=torch.float64)
    frames = (torch.rand(3, 2, 6) < 0.5).double()
    with torch.no_grad():
        fast = head.nll(state, frames)
        b_v, b_h = head.visible_bias(state), head.hidden_bias(state)
        slow = torch.zeros(3, 2, dtype=torch.float64)
        for key in range(6):
            hidden = torch.sigmoid(b_h + frames[..., :key] @ head.W[:, :key].t())
            p_on = torch.sigmoid(b_v[..., key] + hidden @ head.V[key])
            slow -= torch.where(frames[..., key] > 0, p_on, 1 - p_on).log()
    assert torch.allclose(fast, slow, atol=1e-10)


def test_nade_nll_of_many_frames_at_once_equals_each_frame_alone():
    """The NLL runs NADE_CHUNK frames at a time: chunk boundaries and padding in between change nothing."""
    from rrn_app.tasks.heads import NADE_CHUNK

    head = tiny_head("nade", keys=KEYS)
    frames_count = 2 * NADE_CHUNK + 7
    state = torch.randn(1, frames_count, STATE, dtype=torch.float64)
    frames = (torch.rand(1, frames_count, KEYS) < 0.1).double()
    mask = torch.rand(1, frames_count) < 0.8
    with torch.no_grad():
        together = head.nll(state, frames, mask)[0]
        alone = torch.stack([head.nll(state[:, t:t + 1], frames[:, t:t + 1])[0, 0] for t in range(frames_count)])
    assert torch.allclose(together, alone * mask[0], atol=1e-10)


def test_nade_couples_the_keys_and_independent_does_not():
    """NADE's distribution of a frame is not the product of its keys' marginals; the independent head's is.
    (Measured as the total variation distance between the joint and that product, over all 16 frames.)"""
    state = torch.randn(8, STATE, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    frames = every_frame(FEW_KEYS)
    for kind, coupled in (("independent", False), ("nade", True)):
        joint = exact_probabilities(tiny_head(kind), state)  # [states, frames]
        on = joint @ frames  # each key's marginal probability of being on, per state
        product = torch.where(frames[None] > 0, on[:, None], 1 - on[:, None]).prod(-1)
        distance = 0.5 * (joint - product).abs().sum(-1).max().item()
        assert (distance > 0.01) == coupled and (coupled or distance < 1e-12)


@pytest.mark.parametrize("kind", ["independent", "nade"])
def test_samples_follow_the_exact_probabilities(kind):
    """200,000 frames from one state, counted per frame (16 cells): a chi-square goodness-of-fit test against the
    exact probabilities. The seed is fixed, so the test is deterministic; a wrong sampler (a key drawn from the
    wrong conditional, or a key's draw reused) gives chi-square in the thousands and p far below 1e-3."""
    head = tiny_head(kind)
    state = torch.randn(1, STATE, dtype=torch.float64)
    expected = exact_probabilities(head, state)[0]
    draws = 200_000
    with torch.no_grad():
        frames = head.sample(state.expand(draws, STATE), 1.0, torch.Generator().manual_seed(1))
    assert frames.dtype == torch.bool and frames.shape == (draws, FEW_KEYS)
    codes = (frames.long() * (2 ** torch.arange(FEW_KEYS - 1, -1, -1))).sum(1)  # the row of every_frame
    observed = torch.bincount(codes, minlength=2 ** FEW_KEYS).double()
    keep = expected * draws >= 5  # chi-square needs expected counts of 5 or more; the rest are pooled
    observed_cells = torch.cat([observed[keep], observed[~keep].sum()[None]])
    expected_cells = torch.cat([expected[keep], expected[~keep].sum()[None]]) * draws
    if not (~keep).any():
        observed_cells, expected_cells = observed_cells[:-1], expected_cells[:-1]
    assert stats.chisquare(observed_cells.numpy(), expected_cells.numpy()).pvalue > 1e-3
    # and no frame's frequency is off by more than 5 standard deviations of a binomial count
    assert ((observed / draws - expected).abs() <= 5 * (expected * (1 - expected) / draws).sqrt() + 1e-9).all()


@pytest.mark.parametrize("kind", ["independent", "nade"])
def test_temperature_zero_takes_each_keys_likelier_value_and_a_seed_repeats(kind):
    head = tiny_head(kind)
    state = torch.randn(50, STATE, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(head.sample(state, 0.0), head.predict(state))
        first = head.sample(state, 0.7, torch.Generator().manual_seed(3))
        assert torch.equal(first, head.sample(state, 0.7, torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("kind", ["independent", "nade"])
def test_padded_frames_cost_nothing_and_leave_the_real_ones_alone(kind):
    head = tiny_head(kind, keys=KEYS)
    state = torch.randn(2, 6, STATE, dtype=torch.float64)
    frames = (torch.rand(2, 6, KEYS) < 0.1).double()
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    garbage_state, garbage_frames = state.clone(), frames.clone()
    garbage_state[1, 3:], garbage_frames[1, 3:] = 1e6, 1.0  # whatever padding holds must not matter
    with torch.no_grad():
        clean, padded = head.nll(state, frames, mask), head.nll(garbage_state, garbage_frames, mask)
    assert (padded[1, 3:] == 0).all() and torch.allclose(clean, padded) and torch.isfinite(padded).all()
    assert torch.allclose(clean[mask], head.nll(state, frames)[mask])


def nade_model() -> MusicModel:
    torch.manual_seed(0)
    return MusicModel(CELL, output="nade", nade_hidden=12).eval()


def test_a_padded_batch_scores_as_its_pieces_one_by_one():
    model = nade_model()
    rolls = [torch.rand(n, KEYS) < 0.1 for n in (9, 4, 6)]
    pieces = PieceWindows(rolls, None)
    batched, alone = FrameMetrics(), FrameMetrics()
    with torch.no_grad():
        batch = collate([pieces[index] for index in range(3)])
        model.metrics["val/"] = batched
        model.validation_step(batch, 0)
        for index in range(3):
            model.metrics["val/"] = alone
            model.validation_step(collate([pieces[index]]), 0)
    for name in ("nll", "frame_acc"):
        assert batched.compute()[name].item() == pytest.approx(alone.compute()[name].item(), rel=1e-5)
    assert batched.frames.item() == 19


def test_nade_with_carried_state_over_windows_equals_one_pass_over_each_piece():
    model = nade_model()
    lengths = [7, 3, 12, 5]
    rolls = [torch.rand(n, KEYS) < 0.1 for n in lengths]
    sampler, windows = WindowSampler(lengths, batch_size=2, window=4, shuffle=True, seed=3), PieceWindows(rolls, 4)
    carried, state = {}, None
    with torch.no_grad():
        for keys in sampler:
            batch = collate([windows[key] for key in keys])
            conditions, state = model(batch["inputs"], batch["lengths"], None if batch["reset"] else state)
            mask = torch.arange(batch["targets"].shape[1])[None] < batch["lengths"][:, None]
            nll = model.output_layer.nll(conditions, batch["targets"], mask)
            for row, (index, _) in enumerate(keys):
                carried.setdefault(index, []).append(nll[row, : int(batch["lengths"][row])])
        for index in range(len(rolls)):
            whole = PieceWindows(rolls, None)[index]
            conditions, _ = model(whole["inputs"][None].float())
            assert torch.allclose(torch.cat(carried[index]), model.output_layer.nll(conditions, whole["targets"][None])[0],
                                  atol=1e-4)


def test_nade_samples_are_seeded_and_continue_the_primer():
    model = nade_model()
    primer = torch.rand(3, KEYS) < 0.05
    first, again = model.sample(primer, 10, 1.0, seed=4), model.sample(primer, 10, 1.0, seed=4)
    assert first.shape == (13, KEYS) and torch.equal(first, again) and torch.equal(first[:3], primer)
    assert not torch.equal(first, model.sample(primer, 10, 1.0, seed=5))


def test_checkpoints_from_before_the_choice_of_outputs_still_load():
    """The independent head is the old nn.Linear under the old name: the state dict keys did not change."""
    model = MusicModel(CELL)
    assert isinstance(model.output_layer, IndependentHead) and isinstance(model.output_layer, torch.nn.Linear)
    assert {"output_layer.weight", "output_layer.bias"} <= set(model.state_dict())


@pytest.mark.parametrize("option, value, message", [
    ("output", "rbm", "output='rbm' is not allowed: must be one of"),
    ("nade_hidden", 0, "nade_hidden=0 is not allowed"),
])
def test_bad_output_options_name_the_option(option, value, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MusicModel(CELL, **{option: value})


@pytest.mark.slow
def test_output_nade_trains_on_the_embedded_jsb_and_rrn_generate_writes_midi_picture_and_audio(tmp_path, quick):
    result = run_cli("rrn-train", "task=music", "cell=gru", "cell.hidden_size=16", "task.model.output=nade",
                     "task.model.nade_hidden=20", *quick, "task.model.sample_length=4",
                     f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, timeout=300)  # no data.root: the embedded JSB
    run_dir = run_dir_of(result)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["config"]["task"]["model"]["output"] == "nade"
    assert 0 < results["metrics"]["test/nll"] < 88 * math.log(2) and 0 <= results["metrics"]["test/frame_acc"] <= 1
    checkpoint = results["best_checkpoint"].replace("<run>", str(run_dir))
    generated = run_cli("rrn-generate", f"ckpt={checkpoint}", "length=6", "seed=2", f"out={tmp_path / 'gen'}",
                        timeout=120)
    assert generated.returncode == 0, generated.stderr[-3000:]
    written = sorted((tmp_path / "gen").glob("sample-seed2.*"))
    assert [path.suffix for path in written] == [".mid", ".png", ".wav"] and all(p.stat().st_size > 0 for p in written)
    model = MusicModel.load_from_checkpoint(checkpoint, map_location="cpu")
    assert isinstance(model.output_layer, NADEHead) and model.output_layer.hidden == 20
