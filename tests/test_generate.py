"""rrn-generate: sampling from a generative task's checkpoint (char_lm here), its options and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import run_cli, run_dir_of
from rrn_app.generate import generate
from rrn_app.option_checks import UserError


@pytest.fixture(scope="module")
def char_lm_run(data_root, tmp_path_factory) -> Path:
    """A tiny real char_lm training on Tiny Shakespeare (a few steps), run as a user would."""
    cwd = tmp_path_factory.mktemp("char_lm")
    result = run_cli("rrn-train", "task=char_lm", "cell=lstm", f"data.root={data_root}", "threads=1", "logger=none",
                     "cell.hidden_size=32", "task.data.batch_size=16", "task.data.seq_length=20", "trainer.max_epochs=1",
                     "trainer.limit_train_batches=30", "trainer.limit_val_batches=5", "trainer.limit_test_batches=5",
                     "trainer.enable_progress_bar=false", cwd=cwd, timeout=300)
    run_dir = run_dir_of(result)
    metrics = json.loads((run_dir / "results.json").read_text())["metrics"]
    assert {"val/loss", "val/bpc", "val/perplexity", "test/loss", "test/bpc", "test/perplexity"} <= set(metrics)
    return run_dir


@pytest.mark.slow  # trains a small char_lm first (a few seconds)
def test_checkpoint_names_its_module_and_carries_the_vocabulary(char_lm_run):
    checkpoint = torch.load(char_lm_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["rrn_module"] == "rrn_app.tasks.language_model.CharLanguageModel"
    assert len(checkpoint["vocabulary"]) == 65 and checkpoint["vocabulary"][:2] == ["\n", " "]


@pytest.mark.slow  # trains a small char_lm first (a few seconds)
def test_rrn_generate_prints_the_text_and_saves_it_in_the_run_directory(char_lm_run):
    ckpt = str(char_lm_run / "checkpoints" / "last.ckpt")
    result = run_cli("rrn-generate", f"ckpt={ckpt}", "length=80", "seed=1", "prime=ROMEO:", "temperature=0.8")
    assert result.returncode == 0, result.stderr[-3000:]
    saved = char_lm_run / "samples" / "sample-seed1.txt"
    text = saved.read_text()
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 80  # the prime, continued
    assert result.stdout.rstrip("\n") == text.rstrip("\n") and str(saved) in result.stderr
    again = run_cli("rrn-generate", f"ckpt={ckpt}", "length=80", "seed=1", "prime=ROMEO:", "temperature=0.8")
    assert again.returncode == 0 and (char_lm_run / "samples" / "sample-seed1-1.txt").read_text() == text  # same seed


@pytest.mark.slow  # trains a small char_lm first (a few seconds)
def test_out_top_k_and_defaults(char_lm_run, tmp_path):
    ckpt = char_lm_run / "checkpoints" / "last.ckpt"
    [path] = generate([f"ckpt={ckpt}", f"out={tmp_path / 'samples'}", "top_k=1", "length=30"])
    [other] = generate([f"ckpt={ckpt}", f"out={tmp_path / 'samples'}", "top_k=1", "length=30", "seed=5"])
    assert path.parent == tmp_path / "samples" and path.read_text() == other.read_text()  # greedy: no randomness
    [default] = generate([f"ckpt={ckpt}", f"out={tmp_path}"])
    assert len(default.read_text()) == 500


@pytest.mark.parametrize("arguments, message", [
    (["lenght=30"], "unknown option lenght. Did you mean length=? Known options: ckpt, length, temperature, top_k, "
                    "seed, prime, threads, out, trust_checkpoint."),
    (["temperature=0"], "temperature=0 is not allowed: must be a number greater than 0"),
    (["prime=ROMEO@"], "prime has characters the model never saw: '@'"),
])
@pytest.mark.slow  # trains a small char_lm first (a few seconds)
def test_bad_options_are_clear_errors(char_lm_run, arguments, message):
    with pytest.raises(UserError) as error:
        generate([f"ckpt={char_lm_run / 'checkpoints' / 'last.ckpt'}", *arguments])
    assert message in str(error.value)


def test_missing_corrupt_and_non_generative_checkpoints(tmp_path):
    with pytest.raises(UserError, match="ckpt=<path> is required"):
        generate(["length=5"])
    with pytest.raises(UserError, match=f"checkpoint not found: {tmp_path / 'none.ckpt'}"):
        generate([f"ckpt={tmp_path / 'none.ckpt'}"])
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UserError, match="could not read checkpoint .*corrupt.ckpt"):
        generate([f"ckpt={corrupt}"])
    sst_like = tmp_path / "sst.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"num_classes": 5}}, sst_like)
    with pytest.raises(UserError, match=r"not a generative task checkpoint \(char_lm, music\)"):
        generate([f"ckpt={sst_like}"])
    with pytest.raises(UserError, match="expected key=value, got 'oops'"):
        generate(["oops"])


@pytest.mark.slow
def test_command_line_errors_exit_2_without_a_traceback(tmp_path):
    result = run_cli("rrn-generate", f"ckpt={tmp_path / 'none.ckpt'}")
    assert result.returncode == 2
    assert "rrn-generate: error: checkpoint not found" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_sample_with_threads_given(char_lm_run, tmp_path):
    [path] = generate([f"ckpt={char_lm_run / 'checkpoints' / 'last.ckpt'}", f"out={tmp_path}", "length=20", "threads=2",
                       "top_k=1"])
    [one] = generate([f"ckpt={char_lm_run / 'checkpoints' / 'last.ckpt'}", f"out={tmp_path}", "length=20", "top_k=1"])
    assert len(path.read_text()) == 20 and path.read_text() == one.read_text()  # threads change the speed only
    assert torch.get_num_threads() == 1


@pytest.fixture
def recorded_threads(monkeypatch):
    """torch.set_num_threads, recorded instead of applied."""
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    return calls


@pytest.mark.parametrize("arguments, threads", [([], [1]), (["threads=3"], [3]), (["threads=null"], [])])
def test_threads_reach_torch_before_the_checkpoint_is_read(tmp_path, recorded_threads, arguments, threads):
    with pytest.raises(UserError, match="checkpoint not found"):  # threads are set first: no checkpoint needed
        generate([f"ckpt={tmp_path / 'none.ckpt'}", *arguments])
    assert recorded_threads == threads


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5", ""])
def test_a_bad_threads_value_is_a_one_line_error(tmp_path, recorded_threads, value):
    with pytest.raises(UserError) as error:
        generate([f"ckpt={tmp_path / 'none.ckpt'}", f"threads={value}"])
    message = str(error.value)
    assert message.startswith(f"threads={value!r} is not allowed: must be a whole number >= 1") and "\n" not in message
    assert "default 1" in message and "null" in message and recorded_threads == []


def test_a_bad_threads_value_on_the_command_line_exits_2_with_one_line():
    result = run_cli("rrn-generate", "ckpt=model.ckpt", "threads=many")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "rrn-generate: error: threads='many' is not allowed: must be a whole number >= 1 (torch CPU threads; "
        "default 1), or null for PyTorch's default. E.g. threads=2"]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_option_with_defaults_and_examples_and_exits_0(flag):
    from rrn_app.generate import COMMON_OPTIONS
    from rrn_app.tasks.music import MusicModel

    result = run_cli("rrn-generate", flag)
    assert result.returncode == 0 and result.stderr == ""
    text = result.stdout
    assert text.startswith("usage: rrn-generate ckpt=<path>")
    for option in ["ckpt", *COMMON_OPTIONS, "threads", "out", *MusicModel.GENERATE_OPTIONS]:
        assert f"{option}=" in text, option
    assert "default 1" in text and "default 500" in text and "default 128" in text and "Examples:" in text
    assert text.count("rrn-generate ckpt=runs/") == 2
