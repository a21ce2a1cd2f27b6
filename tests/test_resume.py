"""Exact resume: a run killed with SIGKILL and resumed with `rrn-train ckpt_path=<run>/checkpoints/<x>.ckpt` alone
ends bit-identical to the run that was never interrupted (trainer.deterministic=true), for sst, char_lm and music,
whether it was killed in the middle of an epoch (resumed from a checkpoint written every few training steps) or
right after one (resumed from last.ckpt); also sst on two DDP processes killed mid-epoch. Plus the pieces that
make it so: the loaders' state, the replayed config, and the one-line error for a resume that changes the
model's shape.

`KillAt` is the test's own callback: it kills its process (SIGKILL, no clean-up) at a training step or at the
start of an epoch when RRN_TEST_KILL_AT says so, and does nothing otherwise (the resumed run has it too).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from helpers import QUICK, run_cli, run_dir_of

TESTS = Path(__file__).resolve().parent


class KillAt(L.Callback):
    """SIGKILL this process at `RRN_TEST_KILL_AT`: `step=N` (after training step N, before any checkpoint of
    that step is written) or `epoch=N` (as epoch N starts: the end-of-epoch checkpoints of N - 1 are written)."""

    def __init__(self):
        kind, _, number = os.environ.get("RRN_TEST_KILL_AT", "").partition("=")
        self.kind, self.number = kind, int(number) if number else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.kind == "step" and trainer.global_step == self.number:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_epoch_start(self, trainer, pl_module):
        if self.kind == "epoch" and trainer.current_epoch == self.number:
            os.kill(os.getpid(), signal.SIGKILL)


TINY = [*QUICK, "seed=3", "trainer.deterministic=true", "trainer.limit_train_batches=6", "cell=lstm",
        "cell.hidden_size=16"]  # TASKS set each task's epochs
TASKS = {
    "sst": ["task=sst", "trainer.max_epochs=3", "task.data.batch_size=32"],
    "char_lm": ["task=char_lm", "trainer.max_epochs=3", "task.data.batch_size=8", "task.data.seq_length=20"],
    # lr 0.2: a validation loss that goes up once, so the plateau scheduler's state matters
    "music": ["task=music", "trainer.max_epochs=4", "task.data.batch_size=4", "task.data.window=20",
              "task.model.lr=0.2", "task.model.sample_every_epoch=false"],
}
# two CPU processes (DDP): each rank its own random states and its share of the batches
DDP = {"sst_ddp": [*TASKS["sst"], "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]}
KILLER = ["+callbacks.kill._target_=test_resume.KillAt"]
EVERY_4_STEPS = ["+callbacks.steps._target_=lightning.pytorch.callbacks.ModelCheckpoint",
                 "+callbacks.steps.dirpath=${run_dir}/checkpoints", '+callbacks.steps.filename="step{step}"',
                 "+callbacks.steps.auto_insert_metric_name=false", "+callbacks.steps.every_n_train_steps=4",
                 "+callbacks.steps.save_top_k=-1"]
# (kill point, extra overrides, checkpoint to resume from): step 9 is epoch 1's fourth batch (6 a epoch), one
# step after the checkpoint of step 8; epoch=2 kills as epoch 2 starts, after epoch 1's last.ckpt
KILLS = {"mid_epoch": ("step=9", EVERY_4_STEPS, "step8.ckpt"), "after_epoch": ("epoch=2", [], "last.ckpt")}


def train(*overrides: str, cwd: Path, kill: str = ""):
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
           "RRN_TEST_KILL_AT": kill}
    return run_cli("rrn-train", *overrides, env=env, cwd=cwd, timeout=300)


def checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_same_training_state(expected: Path, actual: Path) -> None:
    """Two checkpoints of the same point of training: the same weights, optimizer and schedulers, bit for bit."""
    first, second = checkpoint(expected), checkpoint(actual)
    assert first["global_step"] == second["global_step"] and first["epoch"] == second["epoch"]
    assert first["state_dict"].keys() == second["state_dict"].keys()
    for name, tensor in first["state_dict"].items():
        assert torch.equal(tensor, second["state_dict"][name]), f"{name} differs"
    for one, other in zip(first["optimizer_states"], second["optimizer_states"]):
        for key, state in one["state"].items():
            for field, value in state.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(other["state"][key][field])), field
    assert first["lr_schedulers"] == second["lr_schedulers"]


@pytest.fixture(scope="module")
def uninterrupted(data_root, tmp_path_factory):
    """Each task's run that was never interrupted (its folder), made once."""
    made = {}

    def run(task: str) -> Path:
        if task not in made:
            folder = tmp_path_factory.mktemp(f"{task}-whole")
            made[task] = run_dir_of(train(*TINY, *{**TASKS, **DDP}[task], f"data.root={data_root}",
                                          f"hydra.run.dir={folder / 'run'}", cwd=folder))
        return made[task]

    return run


@pytest.mark.slow
@pytest.mark.parametrize("kill", sorted(KILLS))
@pytest.mark.parametrize("task", sorted(TASKS))
def test_a_run_killed_and_resumed_ends_as_the_uninterrupted_run(task, kill, uninterrupted, data_root, tmp_path):
    kill_and_resume(task, kill, uninterrupted, data_root, tmp_path)


@pytest.mark.slow
def test_a_ddp_run_killed_mid_epoch_and_resumed_ends_as_the_uninterrupted_run(uninterrupted, data_root, tmp_path):
    kill_and_resume("sst_ddp", "mid_epoch", uninterrupted, data_root, tmp_path)


def kill_and_resume(task, kill, uninterrupted, data_root, tmp_path):
    point, extra, resume_from = KILLS[kill]
    run = tmp_path / "run"
    killed = train(*TINY, *{**TASKS, **DDP}[task], f"data.root={data_root}", f"hydra.run.dir={run}", *KILLER, *extra,
                   cwd=tmp_path, kill=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (run / "results.json").exists()

    resumed = train(f"ckpt_path={run / 'checkpoints' / resume_from}", cwd=tmp_path)  # alone: the run's own options

    assert run_dir_of(resumed).resolve() == run.resolve()  # it continued in the original folder
    whole = uninterrupted(task)
    expected, actual = (json.loads((folder / "results.json").read_text()) for folder in (whole, run))
    assert actual["metrics"] == expected["metrics"]  # bit-identical: floats compared exactly
    assert actual["history"] == expected["history"]
    assert actual["epochs"] == expected["epochs"]
    assert_same_training_state(whole / "checkpoints" / "last.ckpt", run / "checkpoints" / "last.ckpt")
    assert "not resumable" not in resumed.stderr


@pytest.mark.slow
def test_a_resume_that_changes_the_models_shape_is_a_one_line_error(data_root, tmp_path):
    run = tmp_path / "run"
    killed = train(*TINY, *TASKS["sst"], f"data.root={data_root}", f"hydra.run.dir={run}", *KILLER, cwd=tmp_path,
                   kill="epoch=1")
    assert killed.returncode == -signal.SIGKILL

    resumed = train(f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "cell.hidden_size=24", cwd=tmp_path)

    assert resumed.returncode == 2
    lines = resumed.stderr.strip().splitlines()
    assert lines[-1].startswith("rrn-train: error: ckpt_path=") and "Traceback" not in resumed.stderr
    assert "cell.hidden_size (16 -> 24)" in lines[-1] and "another shape" in lines[-1]


# ---- the pieces ----

def test_the_run_s_own_overrides_come_first_and_the_command_line_wins(tmp_path):
    from rrn_app.resume import resume_arguments

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text("- task=sst\n- cell.hidden_size=16\n- trainer.max_epochs=3\n")
    last = run / "checkpoints" / "last.ckpt"
    ckpt = f"ckpt_path={last}"

    # a checkpoint from before the overrides were kept in it: the run's .hydra/overrides.yaml
    assert resume_arguments([ckpt]) == ["task=sst", "cell.hidden_size=16", "trainer.max_epochs=3", ckpt]
    assert resume_arguments([ckpt, "trainer.max_epochs=5"]) == ["task=sst", "cell.hidden_size=16", ckpt,
                                                                 "trainer.max_epochs=5"]
    # the overrides of the job that wrote the checkpoint (a resume that trained longer), kept in it, win
    torch.save({"state_dict": {}, "rrn_overrides": ["task=sst", "cell.hidden_size=16", "trainer.max_epochs=5"]}, last)
    assert resume_arguments([ckpt]) == ["task=sst", "cell.hidden_size=16", "trainer.max_epochs=5", ckpt]
    assert resume_arguments(["task=sst"]) == ["task=sst"]  # no ckpt_path: nothing replayed
    elsewhere = f"ckpt_path={tmp_path / 'elsewhere.ckpt'}"
    assert resume_arguments([elsewhere]) == [elsewhere]  # nothing to replay: as given


def loader(size=20, batch_size=4, seed=5):
    from rrn_app.data.batching import BucketBatchSampler
    from rrn_app.data.resumable import ResumableLoader

    lengths = torch.arange(size) % 7 + 1
    return ResumableLoader(list(range(size)), batch_sampler=BucketBatchSampler(lengths, batch_size, shuffle=True,
                                                                               seed=seed), collate_fn=list)


def test_a_loader_iterates_the_epoch_set_after_its_iterator_was_made():
    reference = loader()
    reference.batch_sampler.set_epoch(2)
    expected = list(reference)
    made = loader()
    iterator = iter(made)  # as Lightning does: iterator first, set_epoch after
    made.batch_sampler.set_epoch(2)
    assert list(iterator) == expected
    assert expected != list(loader())  # epoch 0's order is another


def test_a_loader_resumed_mid_epoch_gives_the_rest_of_that_epoch_then_the_next():
    original = loader()
    original.batch_sampler.set_epoch(1)
    iterator = iter(original)
    first = [next(iterator) for _ in range(2)]
    state = original.state_dict()
    rest = list(iterator)
    original.batch_sampler.set_epoch(2)
    following = list(original)

    resumed = loader()
    resumed.load_state_dict(state)
    iterator = iter(resumed)
    resumed.batch_sampler.set_epoch(1)  # Lightning sets the same epoch again: the skip stays
    assert list(iterator) == rest and len(first) + len(rest) == len(original)
    resumed.batch_sampler.set_epoch(2)
    assert list(resumed) == following


def test_a_loader_resumed_at_an_epochs_end_starts_the_next_epoch_from_its_first_batch():
    original = loader()
    original.batch_sampler.set_epoch(1)
    list(original)
    state = original.state_dict()
    original.batch_sampler.set_epoch(2)
    following = list(original)

    resumed = loader()
    resumed.load_state_dict(state)
    resumed.batch_sampler.set_epoch(2)
    assert list(resumed) == following


def test_loading_draws_nothing_from_the_global_torch_generator():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    list(loader())
    assert torch.equal(torch.get_rng_state(), before)


def test_char_lm_windows_and_music_windows_resume_where_they_stopped():
    from rrn_app.data.music import WindowSampler
    from rrn_app.data.resumable import InOrder

    windows = InOrder(10)
    windows.resume_at(4)
    assert list(windows) == [4, 5, 6, 7, 8, 9] and list(windows) == list(range(10))  # the skip is taken once

    music = WindowSampler([30, 45, 12, 60, 25], batch_size=2, window=10, shuffle=True, seed=1)
    music.set_epoch(3)
    whole = list(music)
    music.resume_at(5)
    assert list(music) == whole[5:]
    music.resume_at(5)
    music.set_epoch(4)  # another epoch: from its start
    assert len(list(music)) == len(music)


class WorkerSeeds(torch.utils.data.Dataset):
    """Item i and the torch seed of the worker process that read it."""

    def __len__(self):
        return 40

    def __getitem__(self, index):
        return index, torch.initial_seed()


def test_persistent_workers_resumed_mid_epoch_read_the_same_batches_with_the_same_seeds():
    from rrn_app.data.batching import BucketBatchSampler
    from rrn_app.data.resumable import ResumableLoader

    def make():
        sampler = BucketBatchSampler(torch.arange(40) % 5 + 1, 4, shuffle=True, seed=2)
        return ResumableLoader(WorkerSeeds(), batch_sampler=sampler, collate_fn=list, num_workers=2,
                               persistent_workers=True, seed=7)

    original = make()
    list(original)  # epoch 0: the workers are made, their seeds drawn
    original.batch_sampler.set_epoch(1)
    iterator = iter(original)
    [next(iterator) for _ in range(3)]
    state = original.state_dict()
    rest = list(iterator)

    resumed = make()
    resumed.load_state_dict(state)
    iterator = iter(resumed)
    resumed.batch_sampler.set_epoch(1)
    again = list(iterator)
    assert [[index for index, _ in batch] for batch in again] == [[index for index, _ in batch] for batch in rest]
    seeds = lambda batches: {seed for batch in batches for _, seed in batch}  # noqa: E731
    assert seeds(again) == seeds(rest)  # which worker reads which batch may differ; rrn's datasets draw nothing


def test_random_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np

    from rrn_app.resume import RandomStates

    callback = RandomStates()
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    state = callback.state_dict()
    torch.save({"state": state}, tmp_path / "states.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(2), np.random.seed(2), random.seed(2)

    callback.load_state_dict(torch.load(tmp_path / "states.pt", weights_only=True)["state"])
    callback.on_train_start(None, None)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and (expected[1] == again[1]).all() and expected[2] == again[2]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
