"""Checkpoints written by an earlier rrn still load: rrn-eval gives the metrics they gave when they were made, and
rrn-generate the same samples.

tests/fixtures/checkpoints/ holds one tiny checkpoint per task family (classifier, tagger, character language
model, music), written by rrn-train before the task modules were rebuilt on one base class (tasks/base.py) and
the optimizer and scheduler became config groups; tests/fixtures/make_checkpoints.py made them and printed the
numbers below. They are read from copies (rrn-eval and rrn-generate write beside the checkpoint), on the data
every machine has: the copies shipped with rrn (an empty data.root) or tests/fixtures/atis.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from helpers import FIXTURES

CHECKPOINTS = FIXTURES / "checkpoints"

# what each checkpoint gave when it was made (rrn-eval, test split; rrn-generate with these options)
EXPECTED = {
    "sst_lstm": {"data": "empty", "metrics": {
        "test/acc": 0.2421875, "test/f1_class0": 0.0, "test/f1_class1": 0.0, "test/f1_class2": 0.3899371027946472,
        "test/f1_class3": 0.0, "test/f1_class4": 0.0, "test/f1_macro": 0.0779874175786972,
        "test/loss": 1.589153528213501}},
    "atis_gru": {"data": "fixtures", "metrics": {
        "test/intent_acc": 0.09375, "test/intent_loss": 2.4937965869903564, "test/loss": 6.647404670715332,
        "test/sentence_acc": 0.0, "test/slot_f1": 0.0211267601698637, "test/slot_loss": 4.153608322143555,
        "test/slot_precision": 0.014285714365541935, "test/slot_recall": 0.04054053872823715,
        "test/token_acc": 0.057915057986974716}},
    "char_lm_res_rnn": {"data": "empty", "metrics": {
        "test/bpc": 6.158660888671875, "test/loss": 4.268858432769775, "test/perplexity": 71.44003295898438},
        "generate": ["length=40", "temperature=0.8", "seed=3", "prime=ROMEO:"],
        "files": {".txt": "ROMEO:TAwmZnHGKOeUsQwIRaWa3\n-UXVBOETrBtkRUvKs,"}},
    "music_gru": {"data": "empty", "metrics": {"test/frame_acc": 0.04177049919962883, "test/nll": 59.35445022583008},
                  "generate": ["length=16", "seed=2", "prime=none", "wav=false"],
                  "files": {".mid": "7169b41d5623125f4c984322cc328c5657db87104cd82728067daa08c9adb2ed"}},
}


def copied(name: str, tmp_path: Path) -> tuple[Path, Path]:
    """(a copy of the checkpoint, the data root it was made on), both under tmp_path."""
    checkpoint = tmp_path / "run" / f"{name}.ckpt"
    checkpoint.parent.mkdir()
    shutil.copyfile(CHECKPOINTS / f"{name}.ckpt", checkpoint)
    root = tmp_path / "data"
    root.mkdir()
    if EXPECTED[name]["data"] == "fixtures":
        shutil.copytree(FIXTURES / "atis", root / "atis")
    return checkpoint, root


def test_every_fixture_checkpoint_is_small_and_checked():
    assert sorted(path.stem for path in CHECKPOINTS.glob("*.ckpt")) == sorted(EXPECTED)
    assert all(path.stat().st_size < 300_000 for path in CHECKPOINTS.glob("*.ckpt"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rrn_eval_gives_the_metrics_the_old_checkpoint_gave(name, tmp_path):
    from rrn_app.evaluate import evaluate

    checkpoint, root = copied(name, tmp_path)
    written = evaluate([f"ckpt={checkpoint}", f"data.root={root}", "threads=1"])
    metrics = json.loads(written.read_text())["metrics"]
    assert metrics == pytest.approx(EXPECTED[name]["metrics"], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name", sorted(name for name in EXPECTED if "generate" in EXPECTED[name]))
def test_rrn_generate_samples_what_the_old_checkpoint_sampled(name, tmp_path):
    from rrn_app.generate import generate

    checkpoint, _ = copied(name, tmp_path)
    written = generate([f"ckpt={checkpoint}", f"out={tmp_path / 'samples'}", "threads=1", *EXPECTED[name]["generate"]])
    files = {}
    for path in written:
        if path.suffix == ".txt":
            files[".txt"] = path.read_text()
        elif path.suffix == ".mid":
            files[".mid"] = hashlib.sha256(path.read_bytes()).hexdigest()
    assert files == EXPECTED[name]["files"]
