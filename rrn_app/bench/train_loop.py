"""`rrn-bench mode=train-loop`: what Lightning and rrn-train's callbacks cost per training batch, measured against a
bare PyTorch loop over the same model, loader and optimizer.

    rrn-bench mode=train-loop                                   sst, atis, char_lm x res_rnn, lstm
    rrn-bench mode=train-loop tasks=sst cells=res_rnn batches=200 rounds=5 out=bench-loop/
    rrn-bench mode=train-loop tasks=char_lm cell.hidden_size=128 task.data.batch_size=32

For each task and cell the config is composed as rrn-train composes it (`task=<task> cell=<cell> logger=none`,
plus any `<group>.<key>=<value>` given here), and the task's data module and model are built from it with
rrn-train's own functions. Then, in `rounds` interleaved rounds (the order alternating, so a change in the
machine's load hits both alike), after `warmup` untimed batches each:

- rrn-train: `trainer.fit` with the Trainer rrn-train makes (its trainer options, the `callbacks` group, its own
  callbacks), stopped after `warmup + batches` training batches (no validation, no checkpoint is timed);
- bare: the loop a user would write: `zero_grad`, the task's own `training_step` (its forward and loss) with
  its torchmetrics updates and `self.log` switched off, `backward`, the configured gradient clipping, the
  optimizer's `step` (the task's `configure_optimizers`), over the same data module's training loader.

Both clocks run from the end of the last warm-up batch to the end of the last batch: loading counts on both
sides. Reported: batches/s of each (median over rounds), their ratio (rrn-train / bare; 1.0 is free) in wall
time and in the process's CPU time (all its threads, so a progress bar's drawing thread counts; on a machine
that other processes keep busy, wall time swings with their load and CPU time much less), and where
rrn-train's extra CPU milliseconds per batch go, from one more rrn-train run with a clock around each
per-batch callback hook, the task's `self.log` calls and its torchmetrics updates (the rest is Lightning's
own loop). One torch thread unless threads= says otherwise.

Options:
  tasks=sst,atis,char_lm       tasks (default sst,atis,char_lm);  cells=res_rnn,lstm (default)
  batches=100 warmup=10 rounds=5   timed batches per round, untimed batches before them, rounds
  threads=1                    torch threads;  data.root=DIR (as rrn-train's; default data)
  breakdown=true|false         the extra run that says where the milliseconds go (default true)
  <group>.<key>=<value>        any rrn-train override: cell.hidden_size=64, task.data.batch_size=32,
  <group>=<choice>             trainer.enable_progress_bar=false, callbacks=none, optimizer=adamw, ...
  out=DIR                      write DIR/train_loop.json and DIR/train_loop.md
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch

from rrn_app.keyvalue import KeyValueParser, Option
from rrn_app.option_checks import UserError

TASKS = ("sst", "atis", "imdb", "char_lm", "music")
DEFAULTS = {"mode": "train-loop", "tasks": "sst,atis,char_lm", "cells": "res_rnn,lstm", "batches": "100",
            "warmup": "10", "rounds": "5", "threads": "1", "data.root": "data", "breakdown": "true", "out": ""}


def rrn_train_key(key: str) -> bool:
    """`group.key` or a config group's name (`callbacks`, `optimizer`, ...): an rrn-train override."""
    from rrn_app.config import config_dir

    return "." in key or (config_dir() / key.lstrip("+~")).is_dir()


PARSER = KeyValueParser({key: Option(default, str) for key, default in DEFAULTS.items()}, __doc__,
                        usage="(rrn-bench mode=train-loop --help lists the keys)", noun="setting",
                        context=" for mode=train-loop", accept=rrn_train_key)
BATCH_HOOKS = ("on_train_batch_start", "on_before_backward", "on_after_backward", "on_before_optimizer_step",
               "on_before_zero_grad", "on_train_batch_end")


@dataclass
class Settings:
    """One `rrn-bench mode=train-loop` run."""

    tasks: list[str]
    cells: list[str]
    batches: int
    warmup: int
    rounds: int
    threads: int
    breakdown: bool
    overrides: list[str]
    out: Path | None
    argv: list[str] = field(default_factory=list)


def _whole(key: str, text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise UserError(f"{key}={text!r}: must be a whole number >= {least}, e.g. {key}={DEFAULTS[key]}")
    return value


def _names(key: str, text: str, known: tuple[str, ...] | None) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise UserError(f"{key}= is empty: give one or more names, e.g. {key}={DEFAULTS[key]}")
    for name in names if known else ():
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]}?" if close else ""
            raise UserError(f"{key}={text!r}: unknown task {name!r}.{hint} Known: {', '.join(known)}.")
    return names


def parse_arguments(argv: list[str]) -> Settings:
    """The Settings of an `rrn-bench mode=train-loop` command line (a bad one: a one-line UserError)."""
    from rrn_app.cells import cell_info

    values = PARSER.parse(argv)
    if values["mode"] != "train-loop":
        raise UserError(f"mode={values['mode']!r}: this is rrn-bench's training-loop mode (mode=train-loop)")
    cells = _names("cells", values["cells"], None)
    for name in cells:
        cell_info(name)  # an unknown cell: the registry's error, listing the known ones
    breakdown = values["breakdown"].strip().lower()
    if breakdown not in ("true", "false"):
        raise UserError(f"breakdown={values['breakdown']!r}: true or false")
    root = Path(values["data.root"]).expanduser().resolve()
    overrides = [f"data.root={root}"] + [f"{key}={value}" for key, value in values.items()
                                         if key not in DEFAULTS]
    return Settings(tasks=_names("tasks", values["tasks"], TASKS), cells=cells,
                    batches=_whole("batches", values["batches"], 1), warmup=_whole("warmup", values["warmup"], 1),
                    rounds=_whole("rounds", values["rounds"], 1), threads=_whole("threads", values["threads"], 1),
                    breakdown=breakdown == "true", overrides=overrides,
                    out=Path(values["out"]) if values["out"] else None, argv=list(argv))


# --- the parts, built as rrn-train builds them ----------------------------------------------------------------


def compose(task: str, cell: str, overrides: list[str], run_dir: Path):
    """rrn-train's config for `task=<task> cell=<cell> logger=none` plus the overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from rrn_app.config import config_dir, register_plugin_cells

    from hydra.errors import HydraException

    register_plugin_cells()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        try:
            return hydra_compose(config_name="config", overrides=[f"task={task}", f"cell={cell}", "logger=none",
                                                                  f"run_dir={run_dir}", *overrides])
        except HydraException as error:  # an override rrn-train would refuse: its reason, in one line
            raise UserError(" ".join(str(error).split())) from None


def build_parts(cfg):
    """(data module set up for fitting, model): `build` of task.data and task.model, as rrn-train does."""
    from omegaconf import OmegaConf

    from rrn_app.train import build, check_cell

    check_cell(cfg.cell)
    datamodule = build(cfg.task.data, "task.data")
    datamodule.setup("fit")
    model = build(cfg.task.model, "task.model", cell=OmegaConf.to_container(cfg.cell, resolve=True),
                  **datamodule.model_arguments())
    return datamodule, model


def first_optimizer(configured):
    """The optimizer (and the step-interval schedulers) of what `configure_optimizers` returned."""
    if isinstance(configured, torch.optim.Optimizer):
        return configured, []
    if isinstance(configured, dict):
        scheduler = configured.get("lr_scheduler")
        if isinstance(scheduler, dict):
            scheduler = scheduler["scheduler"] if scheduler.get("interval", "epoch") == "step" else None
        else:
            scheduler = None  # Lightning steps a bare scheduler once an epoch
        return configured["optimizer"], [scheduler] if scheduler is not None else []
    if isinstance(configured, (list, tuple)) and configured:
        return first_optimizer(configured[0][0] if isinstance(configured[0], (list, tuple)) else configured[0])
    raise UserError(f"configure_optimizers returned {type(configured).__name__}; mode=train-loop needs one optimizer")


class Finished(Exception):
    """Raised by `BatchClock` after the last timed batch: ends trainer.fit before the epoch's end."""


def now() -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all its threads): a clock reading."""
    return time.perf_counter(), time.process_time()


def rates(ends: list[tuple[float, float]], warmup: int, batches: int) -> dict[str, float]:
    """{"wall": batches/s, "cpu": batches per CPU second} from the end of batch `warmup` - 1 to the last."""
    if len(ends) < warmup + batches:
        raise UserError(f"task.data's training loader has only {len(ends)} batches; ask for fewer "
                        f"(warmup + batches <= {len(ends)})")
    return {"wall": batches / (ends[-1][0] - ends[warmup - 1][0]),
            "cpu": batches / (ends[-1][1] - ends[warmup - 1][1])}


class BatchClock(L.Callback):
    """Notes the clocks at the end of every training batch; after `total` batches it ends the fit (`Finished`)."""

    def __init__(self, total: int):
        self.total, self.ends = total, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_index) -> None:
        self.ends.append(now())
        if len(self.ends) >= self.total:
            raise Finished


def make_trainer(cfg, run_dir: Path, total: int, clock: L.Callback):
    """The Trainer rrn-train makes for this config (trainer options, callbacks group, rrn-train's own callbacks),
    with no sanity check and the clock added last."""
    from omegaconf import OmegaConf

    from rrn_app import ddp
    from rrn_app.callbacks import ConfigInCheckpoint, ValidationHistory, build_callbacks
    from rrn_app.checkpoints import AtomicCheckpointIO
    from rrn_app.resume import OverridesInCheckpoint, PlateauCatchUp, RandomStates

    options = OmegaConf.to_container(cfg.trainer, resolve=True)
    options.update(num_sanity_val_steps=0, max_epochs=1, max_time=None, limit_train_batches=total + 1)
    callbacks = build_callbacks(cfg.get("callbacks"), has_logger=False,
                                progress_bar=options.get("enable_progress_bar", True) is not False)
    own = [ValidationHistory(), ConfigInCheckpoint(OmegaConf.to_container(cfg, resolve=False)), RandomStates(),
           PlateauCatchUp(), OverridesInCheckpoint([]), ddp.RankLossWatch()]
    options["enable_model_summary"] = False  # printed once before the first batch: nothing per batch
    return L.Trainer(**options, logger=False, callbacks=[*callbacks, *own, clock], default_root_dir=run_dir,
                     plugins=[AtomicCheckpointIO()])


def lightning_rate(cfg, model, datamodule, run_dir: Path, warmup: int, batches: int, wrap=None) -> dict:
    """Training batches per second (wall and CPU: `rates`) of rrn-train's trainer.fit over `batches` batches
    after `warmup`."""
    clock = BatchClock(warmup + batches)
    trainer = make_trainer(cfg, run_dir, warmup + batches, clock)
    with wrap(trainer, model) if wrap else contextlib.nullcontext():
        try:
            trainer.fit(model, datamodule=datamodule)
        except Finished:
            pass
    return rates(clock.ends, warmup, batches)


@contextlib.contextmanager
def metrics_and_log_off(model):
    """The model's torchmetrics updates and `self.log` made no-ops (what a bare loop does not do)."""
    import torchmetrics

    metrics = [m for m in model.modules() if isinstance(m, torchmetrics.Metric)]
    saved = [(m, m.__dict__.get("update"), m.__dict__.get("forward")) for m in metrics]
    for metric in metrics:
        metric.update = metric.forward = lambda *args, **kwargs: None
    model.log = model.log_dict = lambda *args, **kwargs: None
    try:
        yield
    finally:
        del model.log, model.log_dict
        for metric, update, forward in saved:
            for name, value in (("update", update), ("forward", forward)):
                if value is None:
                    metric.__dict__.pop(name, None)
                else:
                    setattr(metric, name, value)


def bare_rate(cfg, model, datamodule, optimizer, schedulers, warmup: int, batches: int) -> dict:
    """Training batches per second (wall and CPU) of the bare loop over the same loader: zero_grad,
    training_step, backward, clip, step."""
    clip = cfg.trainer.get("gradient_clip_val")
    by_value = cfg.trainer.get("gradient_clip_algorithm") == "value"
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    model.trainer = None  # detached: the step's self.log would otherwise write to the last fit's trainer
    model.train()
    ends = []
    with metrics_and_log_off(model), torch.enable_grad():
        model.on_train_epoch_start()  # a windowed task starts its carried state afresh, as in a fit
        for index, batch in enumerate(datamodule.train_dataloader()):
            optimizer.zero_grad(set_to_none=True)
            loss = model.training_step(batch, index)
            loss = loss["loss"] if isinstance(loss, dict) else loss
            loss.backward()
            if clip:
                if by_value:
                    torch.nn.utils.clip_grad_value_(parameters, clip)
                else:
                    torch.nn.utils.clip_grad_norm_(parameters, clip)
            optimizer.step()
            for scheduler in schedulers:
                scheduler.step()
            ends.append(now())
            if len(ends) == warmup + batches:
                break
    return rates(ends, warmup, batches)


# --- where the milliseconds go ----------------------------------------------------------------------------------


class Stopwatches:
    """CPU seconds of the calling thread spent in wrapped callables, by label (CPU time: what the call costs,
    not what other processes on a busy machine took meanwhile)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def wrap(self, label: str, function):
        def timed(*args, **kwargs):
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.thread_time() - started
        return timed


@contextlib.contextmanager
def stopwatches_on(watches: Stopwatches, trainer, model):
    """Clocks around each callback's per-batch hooks, the model's self.log and its torchmetrics updates."""
    import torchmetrics

    patched = []
    for callback in trainer.callbacks:
        if type(callback).__module__ == __name__:
            continue  # this benchmark's own clocks
        for hook in BATCH_HOOKS:
            if getattr(type(callback), hook) is not getattr(L.Callback, hook):  # the callback has this hook
                patched.append((callback, hook, callback.__dict__.get(hook)))
                setattr(callback, hook, watches.wrap(f"callback {type(callback).__name__}", getattr(callback, hook)))
    for metric in (m for m in model.modules() if isinstance(m, torchmetrics.Metric)):
        for name in ("update", "forward"):
            patched.append((metric, name, metric.__dict__.get(name)))
            setattr(metric, name, watches.wrap("task: torchmetrics updates", getattr(metric, name)))
    for name in ("log", "log_dict"):
        patched.append((model, name, None))
        setattr(model, name, watches.wrap("task: self.log", getattr(model, name)))
    try:
        yield
    finally:
        for owner, name, value in reversed(patched):
            if value is None:
                owner.__dict__.pop(name, None)
            else:
                setattr(owner, name, value)


def breakdown(cfg, model, datamodule, run_dir: Path, warmup: int, batches: int) -> dict:
    """{"ms_per_batch": that run's CPU ms per batch, "parts": {label: CPU ms per batch}}: the CPU milliseconds
    per batch in each per-batch callback, the task's self.log and its metric updates, from one more rrn-train
    run with a clock around each (warm-up batches excluded)."""
    watches = Stopwatches()

    class Restart(L.Callback):  # the clocks start from zero after the warm-up batches
        def on_train_batch_start(self, trainer, pl_module, batch, batch_index):
            if batch_index == warmup:
                watches.seconds = {}

    def wrap(trainer, module):
        trainer.callbacks.insert(0, Restart())
        return stopwatches_on(watches, trainer, module)

    rate = lightning_rate(cfg, model, datamodule, run_dir, warmup, batches, wrap=wrap)
    parts = {label: 1000 * seconds / batches for label, seconds in sorted(watches.seconds.items())}
    return {"ms_per_batch": 1000 / rate["cpu"], "parts": parts}


# --- one task and cell -------------------------------------------------------------------------------------------


def measure(task: str, cell: str, settings: Settings, log=print) -> dict:
    """The row of one task and cell: both rates per round, their medians and ratio, the breakdown."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"rrn-bench-loop-{task}-{cell}-"))
    cfg = compose(task, cell, settings.overrides, run_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, model = build_parts(cfg)
    optimizer, schedulers = first_optimizer(model.configure_optimizers())
    found = {"rrn-train": [], "bare": []}
    for number in range(settings.rounds):
        order = ("rrn-train", "bare") if number % 2 == 0 else ("bare", "rrn-train")
        for side in order:
            if side == "bare":
                found[side].append(bare_rate(cfg, model, datamodule, optimizer, schedulers, settings.warmup,
                                             settings.batches))
            else:
                found[side].append(lightning_rate(cfg, model, datamodule, run_dir, settings.warmup,
                                                  settings.batches))
    median = {(side, clock): statistics.median(r[clock] for r in values)
              for side, values in found.items() for clock in ("wall", "cpu")}
    row = {"task": task, "cell": cell, "batch_size": getattr(datamodule, "batch_size", None),
           "rrn_train_batches_per_s": median["rrn-train", "wall"], "bare_batches_per_s": median["bare", "wall"],
           "ratio": median["rrn-train", "wall"] / median["bare", "wall"],
           "cpu_ratio": median["rrn-train", "cpu"] / median["bare", "cpu"],
           "round_ratios": [a["wall"] / b["wall"] for a, b in zip(found["rrn-train"], found["bare"])],
           "round_cpu_ratios": [a["cpu"] / b["cpu"] for a, b in zip(found["rrn-train"], found["bare"])],
           "bare_cpu_ms_per_batch": 1000 / median["bare", "cpu"],
           "extra_cpu_ms_per_batch": 1000 / median["rrn-train", "cpu"] - 1000 / median["bare", "cpu"],
           "rates": found}
    if settings.breakdown:
        row["breakdown_ms"] = breakdown(cfg, model, datamodule, run_dir, settings.warmup, settings.batches)
    return row


def run(settings: Settings, log=print) -> dict:
    from rrn_app.bench.report import machine

    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    started = dict(time=time.strftime("%Y-%m-%d %H:%M:%S %Z"), loadavg=list(os.getloadavg()))
    rows = []
    try:
        for task in settings.tasks:
            for cell in settings.cells:
                rows.append(measure(task, cell, settings, log))
                log(format_rows(rows[-1:], header=len(rows) == 1))
    finally:
        torch.set_num_threads(threads)
    finished = dict(time=time.strftime("%Y-%m-%d %H:%M:%S %Z"), loadavg=list(os.getloadavg()))
    return dict(command="rrn-bench " + " ".join(settings.argv), machine=machine(), started=started,
                finished=finished, batches=settings.batches, warmup=settings.warmup, rounds=settings.rounds,
                threads=settings.threads, overrides=settings.overrides[1:], rows=rows)


# --- tables ------------------------------------------------------------------------------------------------------

HEADERS = ["task", "cell", "rrn-train b/s", "bare b/s", "ratio", "CPU ratio", "CPU min..max", "bare CPU ms/b",
           "extra CPU ms/b", "where (CPU ms/b)"]
TEXT_COLUMNS = (0, 1, 9)


def where(row: dict) -> str:
    """The breakdown as `RichProgressBar 0.41, DivergenceGuard 0.12, ..., rest (Lightning's loop) 0.30`: the
    rest is the breakdown run's ms per batch less the bare loop's and the named parts."""
    found = row.get("breakdown_ms")
    if found is None:
        return ""
    named = {label.replace("callback ", ""): ms for label, ms in found["parts"].items()}
    rest = found["ms_per_batch"] - row["bare_cpu_ms_per_batch"] - sum(named.values())
    shown = [f"{label} {ms:.2f}" for label, ms in sorted(named.items(), key=lambda item: -item[1]) if ms >= 0.005]
    return ", ".join(shown + [f"rest (Lightning's loop) {rest:.2f}"])


def row_cells(row: dict) -> list[str]:
    ratios = row["round_cpu_ratios"]
    return [row["task"], row["cell"], f"{row['rrn_train_batches_per_s']:.1f}", f"{row['bare_batches_per_s']:.1f}",
            f"{row['ratio']:.3f}", f"{row['cpu_ratio']:.3f}", f"{min(ratios):.2f}..{max(ratios):.2f}",
            f"{row['bare_cpu_ms_per_batch']:.2f}", f"{row['extra_cpu_ms_per_batch']:.2f}", where(row)]


def format_rows(rows: list[dict], header: bool = True) -> str:
    lines = [HEADERS] if header else []
    lines += [row_cells(row) for row in rows]
    widths = [max(len(name), 8) for name in HEADERS]
    return "\n".join("  ".join(cell.ljust(w) if i in TEXT_COLUMNS else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(cells, widths))).rstrip() for cells in lines)


def markdown(report: dict) -> str:
    machine, load = report["machine"], report["started"]["loadavg"]
    lines = [f"`{report['command']}`", "",
             f"Machine: {machine['cpu']} ({machine['cpu_count']} CPUs), torch {machine['torch']}, Python "
             f"{machine['python']}; {report['threads']} torch thread(s); load average (1, 5, 15 min) at the start "
             f"{', '.join(f'{v:.2f}' for v in load)}, at the end "
             f"{', '.join(f'{v:.2f}' for v in report['finished']['loadavg'])}. Training batches per second, median "
             f"of {report['rounds']} interleaved rounds of {report['batches']} batches after {report['warmup']} "
             "warm-up batches; ratio: rrn-train / bare loop in wall time, CPU ratio: the same in CPU time of the "
             "process (on a busy machine the steadier of the two); where: CPU ms per batch in each per-batch "
             "callback and the task's own calls, from one more run.", "",
             "| " + " | ".join(HEADERS) + " |", "| --- | --- |" + " ---: |" * 7 + " --- |"]
    lines += ["| " + " | ".join(row_cells(row)) + " |" for row in report["rows"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    """rrn-bench's entry for mode=train-loop (rrn_app.bench.cli.main hands it the arguments)."""
    try:
        settings = parse_arguments(argv)
        report = run(settings)
    except UserError as error:
        print(f"rrn-bench: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.out is not None:
        settings.out.mkdir(parents=True, exist_ok=True)
        (settings.out / "train_loop.json").write_text(json.dumps(report, indent=2, default=str))
        (settings.out / "train_loop.md").write_text(markdown(report))
        print(f"wrote {settings.out / 'train_loop.json'} and {settings.out / 'train_loop.md'}")
