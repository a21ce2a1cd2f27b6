"""`rrn-train task=<task> cell=<cell> [key=value ...]`: train, test on the best checkpoint, write results.json.

The run directory (printed as the last line) holds checkpoints/{best-*,last}.ckpt, results.json, the
resolved config (.hydra/), and the logger's files.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

from rrn_app.option_checks import InvalidOption, UserError

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # nothing here may wait on the network
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build(config, prefix: str, **arguments):
    """hydra.utils.instantiate, with a user error naming the full config key (`task.data.batch_size`)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(config, _convert_="all", **arguments)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, InvalidOption):
            raise cause.with_prefix(prefix) from None
        if isinstance(cause, UserError):
            raise cause from None
        raise


def check_cell(cell_config) -> None:
    """Build the cell once, small, as the task will (`build_cell`: its options against the constructor's
    annotations, then the constructor's own checks), so a bad option fails before any data is read."""
    from rrn_app.cells import build_cell

    build_cell(cell_config, input_size=8)


def check_precision(trainer_config) -> None:
    """Half precision where the hardware cannot do it: a clear error instead of a crash inside oneDNN or cuDNN."""
    import torch

    precision = str(trainer_config.get("precision", "32-true"))
    accelerator = str(trainer_config.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(f"trainer.accelerator={accelerator} but no CUDA GPU is visible; use trainer.accelerator=auto or cpu.")
    on_cpu = accelerator == "cpu" or not torch.cuda.is_available()
    if on_cpu and precision in ("16-true", "16"):
        raise UserError(f"trainer.precision={precision} (pure float16) needs a CUDA GPU; on CPU use 32-true or bf16-mixed.")
    if on_cpu and precision in ("16-mixed", "bf16-mixed", "bf16-true", "bf16"):
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            raise UserError(
                f"trainer.precision={precision} on CPU runs in bfloat16 (Lightning turns 16-mixed into bf16-mixed on "
                "CPU), and this CPU lacks bfloat16 support (AVX512-BF16 or AMX). Use trainer.precision=32-true, "
                "or a GPU."
            )
    if not on_cpu and precision.startswith("bf16") and not torch.cuda.is_bf16_supported():
        raise UserError(f"trainer.precision={precision}: this GPU has no bfloat16 (it needs Ampere or newer); "
                        "use trainer.precision=16-mixed.")


def make_logger(logger_config, run_dir: Path, config_dict: dict):
    """The configured Lightning logger (conf/logger/), with the whole resolved config as its hyper-parameters;
    False for logger=none. W&B is offline unless a key is configured; a CSV logger whose folder already holds a
    metrics.csv (a resumed run) writes the next `version_N` beside it instead of deleting it."""
    if not logger_config or "_target_" not in logger_config:
        return False
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from rrn_app.noise import drop_wandb_anonymous

    options = OmegaConf.to_container(logger_config, resolve=True)
    target = options["_target_"]
    if target.endswith("WandbLogger"):
        if options.get("offline", "auto") == "auto":
            options["offline"] = not wandb_key_configured()
        os.environ.setdefault("WANDB_SILENT", "true")
        for key, value in wandb_sweep_labels().items():  # a multirun's jobs: one group, their overrides as tags
            if options.get(key) is None:
                options[key] = value
    if target.endswith("CSVLogger") and options.get("version") in ("", None):
        folder = Path(options["save_dir"]) / options.get("name", "lightning_logs")
        number = 0
        while (folder / (f"version_{number}" if number else "") / "metrics.csv").exists():
            number += 1
        options["version"] = f"version_{number}" if number else ""
    logger = instantiate(options)
    if target.endswith("WandbLogger"):
        drop_wandb_anonymous(logger)
    logger.log_hyperparams(config_dict)  # the whole resolved config, beside the model's own hyper-parameters
    return logger


def wandb_sweep_labels() -> dict:
    """W&B's `group` and `tags` for a job of a multirun: the multirun folder's name (shared by its jobs) and the
    job's overrides (`cell=res_lstm`, `seed=2`; not those that only say where or how it ran, as in its folder
    name), each cut to W&B's 64 characters. Empty outside a multirun."""
    from hydra.core.hydra_config import HydraConfig

    from rrn_app.command_line import sweep_dir_of_this_job

    sweep_dir = sweep_dir_of_this_job()
    if sweep_dir is None:
        return {}
    excluded = set(HydraConfig.get().job.config.override_dirname.exclude_keys)
    tags = [override[:64] for override in task_overrides() if override.lstrip("+~").partition("=")[0] not in excluded]
    return {"group": sweep_dir.name, "tags": tags}


def finish_wandb(logger) -> str | None:
    """Close the W&B run; for an offline run, the line that says so and how to upload it."""
    from lightning.pytorch.loggers import WandbLogger

    if not isinstance(logger, WandbLogger):
        return None
    import wandb

    run = logger.experiment  # made by make_logger's log_hyperparams
    offline, sync_dir = getattr(run, "offline", False), getattr(run, "sync_dir", None)
    wandb.finish()
    if offline is not True or not isinstance(sync_dir, str):
        return None
    why = "WANDB_MODE=offline" if os.environ.get("WANDB_MODE") in ("offline", "dryrun") else "no W&B API key"
    return f"W&B run saved offline ({why}); upload it with: wandb sync {Path(sync_dir).resolve()}"


def wandb_key_configured() -> bool:
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") == "online":
        return True
    import netrc

    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def write_results(run_dir: Path, results: dict) -> Path:
    """results.json, never overwriting an earlier one in the same directory (it becomes results-1.json ...)."""
    path = run_dir / "results.json"
    if path.exists():
        number = 1
        while (run_dir / f"results-{number}.json").exists():
            number += 1
        path.rename(run_dir / f"results-{number}.json")
    path.write_text(json.dumps(finite_or_null(results), indent=2, allow_nan=False) + "\n")
    return path


def finite_or_null(value):
    """`value` with every NaN or infinite number made None (JSON's null): results.json is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(item) for item in value]
    return value


def number_cell(value) -> str:
    """A metric as the summary table shows it, at most 11 characters for any magnitude: 0.4217, 13500.1234,
    1.0000e+38, nan, inf; empty for None."""
    if value is None:
        return ""
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e5 else f"{value:.4e}"


def metrics_table(metrics: dict, stages: tuple[str, ...] = ("val", "test")) -> str:
    """`metric  val  test` rows, one per metric name (`val/acc`, `test/acc` -> the row `acc`)."""
    names = sorted({name.split("/", 1)[1] for name in metrics if name.split("/", 1)[0] in stages and "/" in name})
    lines = [f"{'metric':<14}" + "".join(f"{stage:>12}" for stage in stages)]
    for name in names:  # each column 12 wide, its number at most 11 characters: a space always separates them
        lines.append(f"{name:<14}" + "".join(f"{number_cell(metrics.get(f'{stage}/{name}')):>12}" for stage in stages))
    return "\n".join(lines)


def print_summary(results: dict) -> None:
    print("\n" + metrics_table(results["metrics"]))
    speed = results.get("train_tokens_per_second")
    speed = "" if speed is None else f", {speed:,.0f} training tokens/s"
    print(f"\n{results['task']} / {results['cell']}: {results['parameters']:,} parameters, "
          f"{results['epochs']} epochs in {results['wall_time_seconds']:.0f} s{speed}")
    print(f"best checkpoint: {results['best_checkpoint']}")


def write_diverged_results(cfg, trainer, error, history, config_dict: dict, seconds: float) -> None:
    """results.json of a run that diverged: `"status": "diverged"`, what happened under `diverged`, no metrics, and
    the checkpoints saved before (their weights are finite: rrn_app/divergence.py refuses any other)."""
    if not trainer.is_global_zero:
        return
    checkpoint = trainer.checkpoint_callback
    best = (checkpoint.best_model_path or None) if checkpoint else None
    last = (getattr(checkpoint, "last_model_path", "") or None) if checkpoint else None
    write_results(Path(cfg.run_dir), {
        "task": cfg.task.name,
        "cell": cfg.cell.name,
        "status": "diverged",
        "diverged": error.details,
        "overrides": task_overrides(),
        "metrics": {},
        "history": history.history,
        "epochs": trainer.current_epoch,
        "wall_time_seconds": seconds,
        "best_checkpoint": str(Path(best).resolve()) if best and Path(best).is_file() else None,
        "last_checkpoint": str(Path(last).resolve()) if last and Path(last).is_file() else None,
        "config": config_dict,
    })


def resumed_run_dir(cfg) -> Path | None:
    """The run folder a resumed training continues in: with ckpt_path=<run>/checkpoints/<name>.ckpt from rrn-train
    and run_dir left to Hydra, that <run>; else None (a new run folder). `run_dir=<dir>` chooses another."""
    from omegaconf import OmegaConf

    if not cfg.get("ckpt_path") or not OmegaConf.is_interpolation(cfg, "run_dir"):
        return None
    folder = Path(str(cfg.ckpt_path)).expanduser().resolve().parent
    run = folder.parent
    if folder.name == "checkpoints" and ((run / ".hydra").is_dir() or (run / "results.json").is_file()):
        return run
    return None


def fold_into_resumed_run(new_dir: Path, run_dir: Path) -> None:
    """Hydra made a new folder for the resumed job before train() ran: its .hydra/ (the resumed job's config and
    overrides) moves to <run>/.hydra/resumed-N/, and the folder, then empty, is removed."""
    if new_dir.resolve() == run_dir.resolve() or not new_dir.is_dir():
        return
    if {path.name for path in new_dir.iterdir()} - {".hydra"}:
        return  # something else was written there: leave it
    if (new_dir / ".hydra").is_dir():
        number = 1
        while (run_dir / ".hydra" / f"resumed-{number}").exists():
            number += 1
        (run_dir / ".hydra").mkdir(exist_ok=True)
        (new_dir / ".hydra").rename(run_dir / ".hydra" / f"resumed-{number}")
    new_dir.rmdir()


def task_overrides() -> list[str]:
    """The Hydra overrides of this job (`cell=res_lstm`, `seed=2`), or [] outside a Hydra run."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def train(cfg) -> Path:
    """Run one training job as configured; returns the run directory."""
    start = time.time()
    from omegaconf import OmegaConf, open_dict

    check_cell(cfg.cell)
    check_precision(cfg.trainer)
    if cfg.get("ckpt_path"):  # missing, truncated, crafted or foreign: one line before any data is read
        from rrn_app.checkpoints import check_resumable

        check_resumable(cfg.ckpt_path, trust=bool(cfg.get("trust_checkpoint", False)))
    trainer_options = OmegaConf.to_container(cfg.trainer, resolve=True)
    if "callbacks" in trainer_options:
        from rrn_app.callbacks import trainer_callbacks_error

        raise trainer_callbacks_error(trainer_options["callbacks"])

    import lightning as L
    import torch

    from rrn_app.callbacks import ConfigInCheckpoint, Throughput, ValidationHistory, build_callbacks, find
    from rrn_app.divergence import Diverged
    from rrn_app.launchers import default_threads
    from rrn_app.noise import quiet
    from rrn_app.resume import OverridesInCheckpoint, PlateauCatchUp, RandomStates, check_same_model

    quiet()  # Lightning's LitLogger tip and its treespec deprecation warning (rrn_app/noise.py)
    threads = default_threads(cfg.threads)  # threads=null in a joblib multirun: cores // n_jobs (rrn_app/launchers.py)
    if threads:
        torch.set_num_threads(threads)
        with open_dict(cfg):
            cfg.threads = torch.get_num_threads()  # results.json records the threads the job ran with
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    hydra_dir, resumed = Path(cfg.run_dir), resumed_run_dir(cfg)
    if resumed is not None:
        with open_dict(cfg):
            cfg.run_dir = str(resumed)  # the callbacks' and loggers' ${run_dir} too
        if int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0:
            fold_into_resumed_run(hydra_dir, resumed)  # now, so a run rejected below leaves no stray folder
    run_dir = Path(cfg.run_dir)
    from rrn_app import ddp
    from rrn_app.run_folders import agree_on_run_dir, check_fresh_run_dir, make_run_dir

    if ddp.join_process_group(cfg.trainer) is not None:  # torchrun / SLURM ranks: rank 0's folder for all
        run_dir = agree_on_run_dir(run_dir)
        with open_dict(cfg):
            cfg.run_dir = str(run_dir)  # the callbacks' and loggers' ${run_dir} too
    ddp.install(run_dir / "checkpoints")  # a DDP rank that dies ends the job in one line (rrn_app/ddp.py)
    from rrn_app.checkpoints import AtomicCheckpointIO, remove_stale_temporaries

    make_run_dir(run_dir)
    if not cfg.get("ckpt_path"):
        check_fresh_run_dir(run_dir)  # a re-run into a folder with checkpoints would overwrite them
    config_dict = OmegaConf.to_container(cfg, resolve=True)
    logger_config = cfg.get("logger")
    callbacks = build_callbacks(cfg.get("callbacks"), has_logger=bool(logger_config) and "_target_" in logger_config,
                                progress_bar=trainer_options.get("enable_progress_bar", True) is not False)
    history = ValidationHistory()

    datamodule = build(cfg.task.data, "task.data")
    datamodule.setup("fit")
    model = build(cfg.task.model, "task.model", cell=config_dict["cell"], **datamodule.model_arguments())

    if trainer_options.get("strategy") == "auto" and str(trainer_options.get("devices")) not in ("1", "auto"):
        trainer_options["strategy"] = "ddp"  # not Lightning's CPU default ddp_spawn, which does not mix with Hydra
    from rrn_app.tasks.base import may_leave_parameters_unused

    if trainer_options.get("strategy") == "ddp" and may_leave_parameters_unused(model):
        trainer_options["strategy"] = "ddp_find_unused_parameters_true"  # the cell says a step may skip parameters
    logger = make_logger(logger_config, run_dir, config_dict)
    own = [history, ConfigInCheckpoint(OmegaConf.to_container(cfg, resolve=False)),  # results.json's, rrn-eval's
           RandomStates(), PlateauCatchUp(), OverridesInCheckpoint(task_overrides()),  # exact resume: rrn_app/resume.py
           ddp.RankLossWatch()]
    checkpoint_io = AtomicCheckpointIO(trust=bool(cfg.get("trust_checkpoint", False)))  # rrn_app/checkpoints.py
    trainer = L.Trainer(**trainer_options, logger=logger, callbacks=[*callbacks, *own], default_root_dir=run_dir,
                        plugins=[checkpoint_io])
    for folder in {run_dir / "checkpoints", *(Path(c.dirpath) for c in trainer.checkpoint_callbacks if c.dirpath)}:
        remove_stale_temporaries(folder)  # what a save killed mid-write left behind

    checkpoints = (run_dir / "checkpoints").resolve()
    resuming_here = bool(cfg.ckpt_path) and Path(str(cfg.ckpt_path)).resolve().parent == checkpoints
    with warnings.catch_warnings():
        if resuming_here:  # continuing in its own folder: of course its checkpoints are there
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        if cfg.ckpt_path:
            check_same_model(model, str(cfg.ckpt_path), OmegaConf.to_container(cfg, resolve=False),
                             trust=bool(cfg.get("trust_checkpoint", False)))
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
        except Diverged as error:
            write_diverged_results(cfg, trainer, error, history, config_dict, time.time() - start)
            raise
    fit_seconds = time.time() - start
    checkpoint = trainer.checkpoint_callback  # the first ModelCheckpoint (Lightning's own with callbacks=none)
    best = (checkpoint.best_model_path or None) if checkpoint else None
    last = (getattr(checkpoint, "last_model_path", "") or None) if checkpoint else None
    metrics = {}
    # a hyper-parameter search (conf/hparams_search/) sets test_after_fit: false: it never sees test metrics
    for evaluate in (trainer.validate, trainer.test) if cfg.get("test_after_fit", True) else (trainer.validate,):
        for result in evaluate(model, datamodule=datamodule, ckpt_path=best, verbose=False):
            metrics.update(result)
    throughput = find(trainer.callbacks, Throughput)
    tokens_per_second = throughput.tokens_per_second(trainer) if throughput else None
    if trainer.is_global_zero:
        results = {
            "task": cfg.task.name,
            "cell": cfg.cell.name,
            "status": "finished",
            "overrides": task_overrides(),
            "metrics": {name: float(value) for name, value in sorted(metrics.items())},
            "history": history.history,
            **(model.extra_results() if hasattr(model, "extra_results") else {}),
            "parameters": sum(p.numel() for p in model.parameters()),
            "epochs": trainer.current_epoch,
            "wall_time_seconds": time.time() - start,
            "fit_seconds": fit_seconds,
            "train_tokens_per_second": tokens_per_second,
            "best_checkpoint": str(Path(best).resolve()) if best else None,
            "last_checkpoint": str(Path(last).resolve()) if last else None,
            "config": config_dict,
        }
        write_results(run_dir, results)
        print_summary(results)
    offline_line = finish_wandb(trainer.logger) if trainer.is_global_zero else None
    if offline_line:
        print(offline_line)
    if resumed is not None and trainer.is_global_zero:
        fold_into_resumed_run(hydra_dir, run_dir)  # the empty folder DDP's other processes made again, if any
    return run_dir


def _hydra_entry():
    """Hand the (checked) command line to Hydra; each job trains and returns its monitored validation metric."""
    import hydra

    from rrn_app import command_line, config  # imported here, this also registers the job-folder resolver

    @hydra.main(config_path=str(config.config_dir()), config_name="config", version_base="1.3")
    def run(cfg):
        try:
            config.check_options(cfg)  # values a sweeper chose (e.g. Optuna's) were not seen by the early check
            returned = train(cfg)
        except UserError as error:
            # rejected before training: leave no folder (nor an empty multirun folder)
            command_line.remove_unused_run_dir(Path(cfg.run_dir), command_line.sweep_dir_of_this_job())
            print(f"rrn-train: error: {error}", file=sys.stderr)
            sys.exit(2)
        except OSError as error:
            from rrn_app.run_folders import disk_full_message

            message = disk_full_message(error, Path(cfg.run_dir))
            if message is None:
                raise
            print(f"rrn-train: error: {message}", file=sys.stderr)
            sys.exit(2)
        run_dir = Path(returned) if isinstance(returned, (str, os.PathLike)) else Path(cfg.run_dir)
        if int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0:
            print(run_dir.resolve(), flush=True)
        if isinstance(returned, (int, float)) and not isinstance(returned, bool):
            return float(returned)
        return command_line.monitored_metric(run_dir, cfg.task.monitor)  # what a sweeper (Optuna) optimises

    run()


def main() -> None:
    """rrn-train: check the command line (every job of a multirun) before Hydra makes any folder, then run."""
    from rrn_app.command_line import preflight
    from rrn_app.config import register_plugin_cells
    from rrn_app.resume import resume_arguments

    def check_job(cfg):
        check_cell(cfg.cell)
        check_precision(cfg.trainer)

    try:
        register_plugin_cells()
        sys.argv[1:] = preflight(resume_arguments(sys.argv[1:]), check_job=check_job)  # ckpt_path= alone: the run's own options
    except UserError as error:
        print(f"rrn-train: error: {error}", file=sys.stderr)
        sys.exit(2)
    _hydra_entry()


if __name__ == "__main__":
    main()
