"""task=char_lm: the corpora, stream batching for truncated BPTT, state carried across windows, per-character
metrics, sampling."""

from __future__ import annotations

import math
import random

import lightning as L
import pytest
import torch
from torch import nn

from helpers import located
from rrn_app.cells import BUILT_IN, all_cell_infos
from rrn_app.data.char_lm import CharLMDataModule, StreamWindows, read_ptb_char
from rrn_app.tasks.language_model import CharLanguageModel, detach_state
from rrn_app.train import train
from rrn_app.option_checks import InvalidOption, MissingDataError, UserError

TINY_CELL = {"name": "lstm", "hidden_size": 8, "num_layers": 1}


def corpus(tmp_path, text: str):
    """A data root holding tinyshakespeare/input.txt = text."""
    folder = tmp_path / "data" / "tinyshakespeare"
    folder.mkdir(parents=True)
    (folder / "input.txt").write_text(text)
    return tmp_path / "data"


def expected_streams(n_pairs: int, streams: int) -> list[tuple[int, int]]:
    """(offset, length) of each stream, by hand: nearly equal contiguous pieces, the first ones one longer."""
    base, extra = divmod(n_pairs, streams)
    pieces, offset = [], 0
    for s in range(streams):
        length = base + (s < extra)
        pieces.append((offset, length))
        offset += length
    return pieces


def stream_concatenation(windows: StreamWindows, key: str) -> list[list[int]]:
    rows = [[] for _ in range(len(windows.lengths))]
    for k in range(len(windows)):
        batch = windows[k]
        for b, length in enumerate(batch["lengths"].tolist()):
            rows[b] += batch[key][b, :length].tolist()
    return rows


@pytest.mark.parametrize("n, batch_size, seq_length", [(103, 4, 5), (41, 4, 10), (64, 3, 7), (22, 7, 3)])
def test_windows_of_each_stream_concatenate_to_its_piece_of_the_corpus(n, batch_size, seq_length):
    ids = torch.arange(n) * 10
    windows = StreamWindows(ids, batch_size, seq_length)
    inputs, targets = stream_concatenation(windows, "ids"), stream_concatenation(windows, "targets")
    pieces = expected_streams(n - 1, batch_size)
    for b, (offset, length) in enumerate(pieces):
        assert inputs[b] == ids[offset:offset + length].tolist()
        assert targets[b] == ids[offset + 1:offset + length + 1].tolist()  # the next character
    assert sum(inputs, []) == ids[:-1].tolist()  # every character once, in order
    widths = [windows[k]["ids"].shape[1] for k in range(len(windows))]
    assert all(w == seq_length for w in widths[:-1]) and 1 <= widths[-1] <= seq_length + 1
    assert all((windows[k]["lengths"] >= 1).all() for k in range(len(windows)))  # no empty stream in a window
    assert [windows[k]["window"] for k in range(len(windows))] == list(range(len(windows)))
    assert [windows[k]["reset"] for k in range(len(windows))] == [True] + [False] * (len(windows) - 1)


def test_ddp_ranks_read_their_own_contiguous_streams():
    ids = torch.arange(201)
    ranks = [StreamWindows(ids, 3, 8, rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1])  # the same number of steps on every rank
    rows = [stream_concatenation(w, "ids") for w in ranks]
    assert sum(rows[0] + rows[1], []) == ids[:-1].tolist()  # rank 0: streams 0-2, rank 1: streams 3-5
    assert rows[1][0][0] == sum(length for _, length in expected_streams(200, 6)[:3])


def test_a_split_too_short_for_the_streams_says_so():
    with pytest.raises(UserError, match="too short for 8 streams .* lower task.data.batch_size"):
        StreamWindows(torch.arange(5), 8, 4)


class CopyEncoder(nn.Module):
    """Outputs its inputs; its state is (the last input of each stream, steps seen so far). Records every call."""

    def __init__(self, width: int):
        super().__init__()
        self.output_size, self.bidirectional, self.calls = width, False, []

    def forward(self, x, lengths=None, state=None):
        lengths = torch.full((len(x),), x.shape[1]) if lengths is None else lengths
        last = x[torch.arange(len(x)), lengths - 1]
        seen = lengths if state is None else state[1] + lengths
        self.calls.append({"training": self.training, "state_in": state, "ids": x.argmax(-1),
                           "lengths": lengths, "state_out": (last, seen)})
        return x, (last, seen)


def copying_model(vocabulary):
    """A CharLanguageModel whose embedding is one-hot (frozen) and whose encoder only copies and carries."""
    model = CharLanguageModel(vocabulary, TINY_CELL, embedding_dim=len(vocabulary))
    model.embedding.weight.data = torch.eye(len(vocabulary))
    model.embedding.weight.requires_grad_(False)
    model.encoder = CopyEncoder(len(vocabulary))
    model.decoder = nn.Linear(len(vocabulary), len(vocabulary))
    return model


def quiet_trainer(**options):
    return L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, accelerator="cpu", **options)


def test_training_reads_the_corpus_in_order_and_carries_the_state_between_windows(tmp_path):
    text = "".join(random.Random(0).choice("abcdefghij\n ") for _ in range(700))
    data = CharLMDataModule(root=str(corpus(tmp_path, text)), batch_size=4, seq_length=9)
    data.setup()
    model = copying_model(data.vocabulary)
    quiet_trainer(max_epochs=2).fit(model, datamodule=data)
    train_ids, calls = data.ids["train"], model.encoder.calls
    for training, split in ((True, "train"), (False, "validation")):
        ids = data.ids[split]
        windows = len(StreamWindows(ids, 4, 9))
        epochs = [c for c in calls if c["training"] == training]
        assert len(epochs) == 2 * windows  # two epochs, two validations
        for epoch in (epochs[:windows], epochs[windows:]):
            assert epoch[0]["state_in"] is None  # reset at every epoch start
            for before, after in zip(epoch, epoch[1:]):  # state in of window k + 1 == state out of window k
                assert torch.equal(after["state_in"][0], before["state_out"][0])
                assert torch.equal(after["state_in"][1], before["state_out"][1])
                assert not after["state_in"][0].requires_grad  # detached
            for b, (offset, length) in enumerate(expected_streams(len(ids) - 1, 4)):
                read = sum((c["ids"][b, :c["lengths"][b]].tolist() for c in epoch), [])
                assert read == ids[offset:offset + length].tolist()  # stream b of the corpus, exactly
    assert len(train_ids) == int(len(text) * 0.9)


def test_per_character_loss_bits_and_perplexity_on_a_hand_computed_example(tmp_path):
    # a model that always predicts p(a) = 1/4, p(b) = 3/4; text "abbba": targets b, b, b, a
    text = "ababababab" + "abbba" + "babab"  # validation: the middle quarter
    data = CharLMDataModule(root=str(corpus(tmp_path, text)), split=[0.5, 0.25, 0.25], batch_size=3, seq_length=1)
    model = copying_model(["a", "b"])
    model.decoder.weight.data.zero_()
    model.decoder.bias.data = torch.tensor([0.0, math.log(3)])
    metrics = quiet_trainer().validate(model, datamodule=data, verbose=False)[0]
    nats = (3 * -math.log(3 / 4) - math.log(1 / 4)) / 4  # 0.5623 nats per character
    assert metrics["val/loss"] == pytest.approx(nats, rel=1e-6)
    assert metrics["val/bpc"] == pytest.approx(nats / math.log(2), rel=1e-6)  # 0.8113 bits
    assert metrics["val/perplexity"] == pytest.approx(math.exp(nats), rel=1e-6)


@pytest.mark.parametrize("cell", [*(i.name for i in all_cell_infos() if i.source == BUILT_IN), "rrn_widths"])
def test_every_cell_carries_its_state_across_windows(cell):
    options = {"name": cell, "hidden_size": 6, "num_layers": 2}
    if cell == "rrn_widths":  # layers of different widths: the state is lists of tensors
        options = {"name": "rrn", "hidden_size": 6, "layer_sizes": [6, 9, 9]}
    torch.manual_seed(0)
    model = CharLanguageModel(list("abcd"), options, embedding_dim=5).eval()
    ids = torch.randint(0, 4, (3, 7))
    first = {"ids": ids, "targets": ids, "lengths": torch.tensor([7, 7, 7]), "window": 0, "reset": True}
    second = {"ids": ids, "targets": ids, "lengths": torch.tensor([7, 6, 5]), "window": 1, "reset": False}
    model._window(first, "val")
    carried = model._window(second, "val")
    fresh = model._window({**second, "window": 0, "reset": True}, "val")
    assert carried.shape == fresh.shape == (18,)
    assert not torch.allclose(carried, fresh)  # the carried state was used
    # two windows with the state carried == one window over both
    whole = model._window({"ids": torch.cat([ids, ids], 1), "targets": torch.cat([ids, ids], 1),
                           "lengths": torch.tensor([14, 13, 12]), "window": 0, "reset": True}, "test")
    first_losses = model._window(first, "test").view(3, 7)
    second_losses = model._window(second, "test").split([7, 6, 5])
    expected = torch.cat([torch.cat([first_losses[b], second_losses[b]]) for b in range(3)])
    assert torch.allclose(whole, expected, atol=1e-5)


def test_detach_state_keeps_every_layout():
    h = torch.ones(2, 3, requires_grad=True) * 2
    for state in (h, (h, h), [h, h], ([h, h], [h, h])):  # h_n; (h_n, c_n); rrn's per-layer lists
        detached = detach_state(state)
        assert type(detached) is type(state)
        leaves = [detached]
        while not all(isinstance(leaf, torch.Tensor) for leaf in leaves):
            leaves = [part for leaf in leaves for part in ([leaf] if isinstance(leaf, torch.Tensor) else leaf)]
        assert all(torch.equal(leaf, h) and not leaf.requires_grad for leaf in leaves)


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return CharLanguageModel(list("\n :ABCabc"), {"name": "lstm", "hidden_size": 16, "num_layers": 2}, embedding_dim=8)


def test_sampling_is_deterministic_under_a_seed(small_model):
    first = small_model.sample(length=200, seed=3)
    assert small_model.sample(length=200, seed=3) == first
    assert small_model.sample(length=200, seed=4) != first
    assert len(first) == 200 and set(first) <= set(small_model.vocabulary)


def test_top_k_1_is_greedy(small_model):
    prime = "AB:"
    ids = small_model.encode(prime)
    with torch.no_grad():
        logits, state = small_model.eval()(torch.tensor([ids]))
        greedy = []
        for _ in range(40):
            greedy.append(int(logits[0, -1].argmax()))
            logits, state = small_model(torch.tensor([[greedy[-1]]]), None, state)
    expected = prime + small_model.decode(greedy)
    assert small_model.sample(length=40, top_k=1, seed=0, prime=prime) == expected
    assert small_model.sample(length=40, top_k=1, seed=9, prime=prime) == expected  # no randomness left


def test_priming_text_is_continued_not_replaced(small_model):
    text = small_model.sample(length=30, seed=0, prime="Abc:\n")
    assert text.startswith("Abc:\n") and len(text) == len("Abc:\n") + 30
    with pytest.raises(UserError, match="prime has characters the model never saw: 'Z'"):
        small_model.sample(length=5, prime="Zab")


def test_word_boundary_corpora_take_and_give_spaces():
    model = CharLanguageModel(list("\n_abc"), TINY_CELL, word_boundary="_")
    assert model.encode("ab c") == model.encode("ab_c")
    assert model.sample(length=20, seed=0, prime="ab c").startswith("ab c") and "_" not in model.sample(length=50)


@pytest.mark.parametrize("option, value, message", [
    ("temperature", 0, "temperature=0 is not allowed: must be a number greater than 0"),
    ("top_k", 0, "top_k=0 is not allowed: must be a positive integer"),
    ("length", -1, "length=-1 is not allowed: must be a positive integer"),
    ("seed", 1.5, "seed=1.5 is not allowed: must be an integer"),
])
def test_bad_sampling_options_name_the_option(small_model, option, value, message):
    with pytest.raises(InvalidOption, match=message):
        small_model.sample(**{option: value})


def test_real_corpora_sizes_and_split(data_root):
    shakespeare = CharLMDataModule(root=str(data_root), dataset="tinyshakespeare")  # data.root's or the embedded copy
    shakespeare.setup()
    sizes = {split: len(text) for split, text in shakespeare.texts.items()}
    assert sizes == {"train": 1_003_854, "validation": 55_770, "test": 55_770}  # 90/5/5 of 1,115,394, in order
    assert len(shakespeare.vocabulary) == 65
    text = (located(data_root, "tinyshakespeare") / "tinyshakespeare" / "input.txt").read_text()
    assert "".join(shakespeare.texts.values()) == text
    ptb = {split: read_ptb_char(data_root / "ptb_char" / f"ptb.char.{split}.txt") for split in ("train", "valid", "test")}
    for split, read in ptb.items():  # each sentence: its symbols, spaces dropped, then a newline
        lines = (data_root / "ptb_char" / f"ptb.char.{split}.txt").read_text().splitlines()
        assert read == "".join(line.replace(" ", "") + "\n" for line in lines if line.strip())
    assert ptb["valid"].startswith("consumers_may_want_to_move_their_telephones_a_little_closer_to_the_tv_set\n")
    ptb_module = CharLMDataModule(root=str(data_root), dataset="ptb_char")
    ptb_module.setup()
    assert ptb_module.texts == {"train": ptb["train"], "validation": ptb["valid"], "test": ptb["test"]}


def test_ptb_char_published_sizes(full_data):
    ptb = {split: read_ptb_char(full_data / "ptb_char" / f"ptb.char.{split}.txt") for split in ("train", "valid", "test")}
    assert {split: len(text) for split, text in ptb.items()} == {"train": 5_017_482, "valid": 393_042, "test": 442_423}
    assert len(set("".join(ptb.values()))) == 50  # 49 symbols and the end of line


def test_missing_data_names_the_path_or_falls_back_to_the_embedded_copy(tmp_path, capsys):
    with pytest.raises(MissingDataError) as error:
        CharLMDataModule(root=str(tmp_path), dataset="ptb_char")
    assert str(tmp_path / "ptb_char" / "ptb.char.train.txt") in str(error.value)
    assert f"rrn-data get ptb_char root={tmp_path}" in str(error.value)
    module = CharLMDataModule(root=str(tmp_path))  # Tiny Shakespeare ships with rrn
    assert (module.root / "tinyshakespeare" / "input.txt").is_file() and module.root != tmp_path
    assert capsys.readouterr().err == (f"rrn: tinyshakespeare not found in {tmp_path / 'tinyshakespeare'}; using the "
                                       "embedded copy (rrn-data get tinyshakespeare for your own)\n")


@pytest.mark.parametrize("override, message", [
    ("task.data.seq_length=0", "task.data.seq_length=0 is not allowed: must be a positive integer"),
    ("task.data.dataset=shakespeare", "task.data.dataset='shakespeare' is not allowed: must be one of"),
    ("task.data.split=[0.9,0.2,0.05]", "task.data.split=[0.9, 0.2, 0.05] is not allowed: must be three fractions"),
    ("task.model.dropout=1.0", "task.model.dropout=1.0 is not allowed"),
    ("cell.bidirectional=true", "cell.bidirectional=true is not allowed: a language model reads left to right"),
])
def test_bad_options_fail_before_training_with_the_key(compose_config, data_root, override, message):
    with pytest.raises(UserError) as error:
        train(compose_config("task=char_lm", f"data.root={data_root}", "logger=none", override))
    assert message in str(error.value)


def test_res_rnn_on_char_lm_gets_a_bounded_output_by_itself(compose_config):
    assert compose_config("task=char_lm", "cell=res_rnn").cell.output_activation == "tanh"
    assert compose_config("task=char_lm", "cell=res_rnn", "cell.output_activation=identity").cell.output_activation == "identity"
