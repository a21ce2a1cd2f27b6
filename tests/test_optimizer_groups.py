"""The optimizer and scheduler config groups (conf/optimizer/, conf/scheduler/): one override on every task changes
the optimizer or the schedule the task builds, each task keeps its own default, the old keys still work, and a
bad value is one line naming the key."""

from __future__ import annotations

import math

import pytest
import torch

from rrn_app.option_checks import UserError
from rrn_app.tasks import optim, schedules
from rrn_app.tasks.base import CarriedState, SequenceTask, may_leave_parameters_unused

TASK_DEFAULTS = {"sst": torch.optim.Adagrad, "imdb": torch.optim.RMSprop, "atis": torch.optim.RMSprop,
                 "char_lm": torch.optim.Adam, "music": torch.optim.Adam}


class Tiny(SequenceTask):
    """A task of one linear layer with the base's optimizer handling, for building optimizers without data."""

    def __init__(self, optimizer="adam", lr: float = 0.01, weight_decay: float = 0.0, scheduler=None):
        super().__init__()
        self.check_training_options(optimizer=optimizer, lr=lr, weight_decay=weight_decay, scheduler=scheduler)
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(3, 2)


class FakeTrainer:
    estimated_stepping_batches, max_epochs, checkpoint_callback = 40, 4, None


def configured(model: Tiny):
    model._trainer = FakeTrainer()
    return model.configure_optimizers()


def model_node(cfg) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg.task.model, resolve=True)


@pytest.mark.parametrize("task", sorted(TASK_DEFAULTS))
def test_each_task_keeps_its_optimizer_and_a_constant_rate_unless_told(compose_config, task):
    node = model_node(compose_config(f"task={task}"))
    cls, _ = optim.optimizer_class(node["optimizer"])
    assert cls is TASK_DEFAULTS[task] and schedules.is_task_default(node["scheduler"])


@pytest.mark.parametrize("task", sorted(TASK_DEFAULTS))
def test_one_override_changes_the_optimizer_and_schedule_on_every_task(compose_config, task):
    node = model_node(compose_config(f"task={task}", "optimizer=adamw", "scheduler=cosine"))
    cls, _ = optim.optimizer_class(node["optimizer"])
    assert cls is torch.optim.AdamW and node["scheduler"]["_target_"] == "rrn_app.tasks.schedules.cosine_with_warmup"


def test_sst_model_builds_the_chosen_optimizer_and_scheduler(compose_config, data_root):
    """optimizer=adamw scheduler=cosine on sst: the built objects are AdamW over the embedding/rest groups (their
    learning rates kept) and a per-step cosine schedule."""
    from rrn_app.train import build

    cfg = compose_config("task=sst", "cell=lstm", "cell.hidden_size=8", f"data.root={data_root}", "optimizer=adamw",
                         "scheduler=cosine", "task.data.vectors=null", "task.data.embedding_dim=4")
    model = build(cfg.task.model, "task.model", cell={"name": "lstm", "hidden_size": 8}, vocab_size=30,
                  num_classes=5, embedding_dim=4)
    model._trainer = FakeTrainer()
    configured_ = model.configure_optimizers()
    optimizer, schedule = configured_["optimizer"], configured_["lr_scheduler"]
    assert type(optimizer) is torch.optim.AdamW
    assert [group["initial_lr"] for group in optimizer.param_groups] == [0.1, 0.05]  # embedding_lr, lr
    assert [group["weight_decay"] for group in optimizer.param_groups] == [1e-4, 1e-4]
    assert schedule["interval"] == "step" and isinstance(schedule["scheduler"], torch.optim.lr_scheduler.LambdaLR)


def test_the_old_optimizer_names_still_work(compose_config):
    node = model_node(compose_config("task=atis", "task.model.optimizer=adam", "task.model.lr=0.003"))
    optimizer = configured(Tiny(node["optimizer"], node["lr"]))
    assert type(optimizer) is torch.optim.Adam and optimizer.param_groups[0]["lr"] == 0.003
    assert Tiny("sgd").hparams.optimizer == "sgd"  # a checkpoint from before the group names its optimizer so


def test_an_optimizer_option_reaches_the_optimizer():
    optimizer = configured(Tiny({"_target_": "torch.optim.SGD", "_partial_": True, "momentum": 0.9, "nesterov": True}))
    assert optimizer.param_groups[0]["momentum"] == 0.9 and optimizer.param_groups[0]["nesterov"] is True
    nadam = configured(Tiny({"_target_": "torch.optim.NAdam", "_partial_": True}))  # any torch.optim class
    assert type(nadam) is torch.optim.NAdam


def test_on_cpu_the_fastest_measured_implementation_is_used_unless_the_config_says():
    assert configured(Tiny("adagrad")).param_groups[0]["fused"] is True
    assert configured(Tiny("rmsprop")).param_groups[0]["foreach"] is True
    loop = configured(Tiny({"_target_": "torch.optim.Adam", "_partial_": True, "fused": False, "foreach": False}))
    assert loop.param_groups[0]["fused"] is False and loop.param_groups[0]["foreach"] is False


@pytest.mark.parametrize(("spec", "message"), [
    ({"_target_": "torch.optim.Adamm", "_partial_": True}, "optimizer._target_='torch.optim.Adamm' is not an "
     "optimizer class .* Did you mean optimizer._target_=torch.optim.Adam\\?"),
    ({"_target_": "torch.nn.Linear", "_partial_": True}, "optimizer._target_='torch.nn.Linear' is not an optimizer"),
    ({"_target_": "torch.optim.SGD", "momentun": 0.9}, "unknown option optimizer.momentun. Did you mean "
     "optimizer.momentum\\?"),
    ({"_target_": "torch.optim.Adam", "lr": 0.1}, "optimizer.lr is not read: that is task.model.lr"),
    ({"_target_": "torch.optim.Adam", "betas": [0.9, 2.0]}, "optimizer \\(Adam\\) refuses its options .*beta"),
    ("adagard", "optimizer='adagard' is not allowed: must be one of 'adagrad', 'adam'"),
])
def test_a_bad_optimizer_is_one_line_naming_the_key(spec, message):
    with pytest.raises(UserError, match=message) as error:
        Tiny(spec)
    assert "\n" not in str(error.value)


def test_the_schedules_step_as_configured():
    cosine = configured(Tiny(scheduler={"_target_": "rrn_app.tasks.schedules.cosine_with_warmup", "_partial_": True,
                                        "warmup": 0.1, "final_lr": 0.0, "interval": "step"}))
    scheduler = cosine["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(40):
        rates.append(cosine["optimizer"].param_groups[0]["lr"])
        cosine["optimizer"].step()
        scheduler.step()
    assert rates[0] == pytest.approx(0.01 / 4) and rates[3] == pytest.approx(0.01)  # 4 warm-up steps of 40
    assert rates[-1] < 1e-4 and all(a >= b for a, b in zip(rates[3:], rates[4:]))
    onecycle = configured(Tiny(scheduler={"_target_": "torch.optim.lr_scheduler.OneCycleLR", "_partial_": True,
                                          "interval": "step"}))
    assert onecycle["lr_scheduler"]["scheduler"].total_steps == 40  # the run's steps, filled in
    plateau = configured(Tiny(scheduler={"_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau", "_partial_": True,
                                         "factor": 0.5, "monitor": "val/acc", "mode": "max"}))
    assert plateau["lr_scheduler"]["monitor"] == "val/acc" and plateau["lr_scheduler"]["interval"] == "epoch"
    assert isinstance(configured(Tiny(scheduler={"_target_": None})), torch.optim.Adam)  # scheduler=none


def test_music_keeps_its_plateau_schedule_by_default_and_none_turns_it_off(compose_config):
    from rrn_app.tasks.music import MusicModel

    cell = {"name": "gru", "hidden_size": 4}
    default = MusicModel(cell, sample_every_epoch=False)
    default._trainer = FakeTrainer()
    schedule = default.configure_optimizers()["lr_scheduler"]
    assert isinstance(schedule["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert schedule["scheduler"].factor == 0.5 and schedule["monitor"] == "val/nll"
    constant = MusicModel(cell, sample_every_epoch=False, scheduler={"_target_": None})
    constant._trainer = FakeTrainer()
    assert isinstance(constant.configure_optimizers(), torch.optim.Adam)
    plateau = model_node(compose_config("task=music", "scheduler=plateau"))["scheduler"]
    assert plateau["monitor"] == "val/nll" and plateau["mode"] == "min"  # the task's monitor


@pytest.mark.parametrize(("spec", "message"), [
    ({"_target_": "torch.optim.lr_scheduler.CosineAnealingLR"}, "scheduler._target_=.*is not a scheduler"),
    ({"_target_": "rrn_app.tasks.schedules.cosine_with_warmup", "warmup": 1.5}, "scheduler.warmup=1.5 is not allowed"),
    ({"_target_": "torch.optim.lr_scheduler.StepLR", "step_size": 2, "interval": "week"},
     "scheduler.interval='week' is not allowed: must be step or epoch"),
    ({"_target_": "torch.optim.lr_scheduler.StepLR", "step_sise": 2}, "unknown option scheduler.step_sise"),
])
def test_a_bad_scheduler_is_one_line_naming_the_key(spec, message):
    with pytest.raises(UserError, match=message) as error:
        Tiny(scheduler=spec)
    assert "\n" not in str(error.value)


def test_a_schedule_over_the_run_needs_a_known_length():
    model = Tiny(scheduler={"_target_": "torch.optim.lr_scheduler.OneCycleLR", "interval": "step"})
    model._trainer = FakeTrainer()
    model._trainer.estimated_stepping_batches = math.inf
    with pytest.raises(UserError, match="needs the run's length: set trainer.max_epochs or trainer.max_steps"):
        model.configure_optimizers()


def test_carried_state_starts_afresh_on_a_reset_and_is_detached():
    carried = CarriedState()
    state = torch.ones(2, requires_grad=True) * 2
    carried.carry(state, "train")
    assert not carried.get("train").requires_grad
    assert carried.start({"reset": False}, "train") is carried.get("train")
    assert carried.start({"reset": True}, "train") is None
    carried.clear("train")
    assert carried.start({"reset": False}, "train") is None


def test_the_cell_says_whether_ddp_must_look_for_unused_parameters():
    from rrn_app.cells import build_cell

    assert may_leave_parameters_unused(build_cell({"name": "res_lstm", "hidden_size": 4, "keep_prob": 0.5}, 3))
    assert not may_leave_parameters_unused(build_cell({"name": "res_lstm", "hidden_size": 4}, 3))
    assert not may_leave_parameters_unused(build_cell({"name": "lstm", "hidden_size": 4}, 3))


def test_every_task_tags_its_checkpoints_and_only_generative_ones_are_sampled():
    from rrn_app.tasks.classifier import SequenceClassifier
    from rrn_app.tasks.generative import is_generative
    from rrn_app.tasks.language_model import CharLanguageModel
    from rrn_app.tasks.music import MusicModel
    from rrn_app.tasks.tagger import JointSlotIntentTagger

    checkpoint = {}
    Tiny().on_save_checkpoint(checkpoint)
    assert checkpoint["rrn_module"].endswith("test_optimizer_groups.Tiny")
    assert is_generative(CharLanguageModel) and is_generative(MusicModel)
    assert not is_generative(SequenceClassifier) and not is_generative(JointSlotIntentTagger)
