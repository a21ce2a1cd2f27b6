"""`rrn-train task=<task> cell=<cell> [key=value ...]`: train, test on the best checkpoint, write results.json.

The run directory (printed as the last line) holds checkpoints/{best-*,last}.ckpt, results.json, the
resolved config (.hydra/), and the logger's files.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path

from rrn_app.validation import InvalidOption, UserError

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
    """Check the cell's options against its constructor's annotations, then build it once, small, so a bad
    option fails before any data is read."""
    from omegaconf import OmegaConf

    from rrn_app.cells import cell_info
    from rrn_app.validation import check_annotated_options

    options = OmegaConf.to_container(cell_config, resolve=True) if OmegaConf.is_config(cell_config) \
        else dict(cell_config)
    name = options.pop("name")
    info = cell_info(name)
    check_annotated_options("cell", info.cls, options, owner=name)
    try:
        info.cls(input_size=8, **options)
    except InvalidOption as error:
        raise error.with_prefix("cell") from None
    except TypeError as error:
        known = ", ".join(option for option in info.options())
        raise UserError(f"cell {name!r} rejected its options ({error}). Its options are: {known}.") from None


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
    if not logger_config or "_target_" not in logger_config:
        return False
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    options = OmegaConf.to_container(logger_config, resolve=True)
    if options["_target_"].endswith("WandbLogger"):
        if options.get("offline", "auto") == "auto":
            options["offline"] = not wandb_key_configured()
        os.environ.setdefault("WANDB_SILENT", "true")
    logger = instantiate(options)
    logger.log_hyperparams(config_dict)  # the whole resolved config, beside the model's own hyper-parameters
    return logger


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
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def print_summary(results: dict) -> None:
    metrics = results["metrics"]
    names = sorted({name.split("/", 1)[1] for name in metrics if "/" in name})
    rows = [(name, metrics.get(f"val/{name}"), metrics.get(f"test/{name}")) for name in names]
    number = lambda value: "" if value is None else f"{value:.4f}"  # noqa: E731
    print(f"\n{'metric':<14}{'val':>10}{'test':>10}")
    for name, val, test in rows:
        print(f"{name:<14}{number(val):>10}{number(test):>10}")
    print(f"\n{results['task']} / {results['cell']}: {results['parameters']:,} parameters, "
          f"{results['epochs']} epochs in {results['wall_time_seconds']:.0f} s, "
          f"{results['train_tokens_per_second']:,.0f} training tokens/s")
    print(f"best checkpoint: {results['best_checkpoint']}")


def train(cfg) -> Path:
    """Run one training job as configured; returns the run directory."""
    start = time.time()
    from omegaconf import OmegaConf

    check_cell(cfg.cell)
    check_precision(cfg.trainer)

    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from rrn_app.callbacks import Throughput

    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")  # Lightning vs torch 2.13 noise
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_dict = OmegaConf.to_container(cfg, resolve=True)

    datamodule = build(cfg.task.data, "task.data")
    datamodule.setup("fit")
    model = build(cfg.task.model, "task.model", cell=config_dict["cell"], **datamodule.model_arguments())

    monitor, mode = cfg.task.monitor, cfg.task.monitor_mode
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best-epoch{epoch:02d}", monitor=monitor,
                                 mode=mode, save_top_k=1, save_last=True, auto_insert_metric_name=False)
    throughput = Throughput()
    callbacks = [checkpoint, throughput, EarlyStopping(monitor=monitor, mode=mode, patience=cfg.task.patience)]
    trainer_options = OmegaConf.to_container(cfg.trainer, resolve=True)
    if trainer_options.get("strategy") == "auto" and str(trainer_options.get("devices")) not in ("1", "auto"):
        trainer_options["strategy"] = "ddp"  # not Lightning's CPU default ddp_spawn, which does not mix with Hydra
    if trainer_options.get("strategy") == "ddp" and cfg.cell.get("keep_prob", 1.0) < 1.0:
        trainer_options["strategy"] = "ddp_find_unused_parameters_true"  # a dropped layer gets no gradient
    trainer = L.Trainer(**trainer_options, logger=make_logger(cfg.logger, run_dir, config_dict),
                        callbacks=callbacks, default_root_dir=run_dir)

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    fit_seconds = time.time() - start
    best = checkpoint.best_model_path or None
    metrics = {}
    for evaluate in (trainer.validate, trainer.test):
        for result in evaluate(model, datamodule=datamodule, ckpt_path=best, verbose=False):
            metrics.update(result)
    tokens_per_second = throughput.tokens_per_second(trainer)
    if trainer.is_global_zero:
        results = {
            "task": cfg.task.name,
            "cell": cfg.cell.name,
            "metrics": {name: float(value) for name, value in sorted(metrics.items())},
            **(model.extra_results() if hasattr(model, "extra_results") else {}),
            "parameters": sum(p.numel() for p in model.parameters()),
            "epochs": trainer.current_epoch,
            "wall_time_seconds": time.time() - start,
            "fit_seconds": fit_seconds,
            "train_tokens_per_second": tokens_per_second,
            "best_checkpoint": str(Path(best).resolve()) if best else None,
            "last_checkpoint": str((run_dir / "checkpoints" / "last.ckpt").resolve()),
            "config": config_dict,
        }
        write_results(run_dir, results)
        print_summary(results)
    if trainer.logger and hasattr(trainer.logger, "experiment") and cfg.logger.get("_target_", "").endswith("WandbLogger"):
        import wandb

        wandb.finish()
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
            command_line.remove_unused_run_dir(Path(cfg.run_dir))  # rejected before training: leave no folder
            print(f"rrn-train: error: {error}", file=sys.stderr)
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

    def check_job(cfg):
        check_cell(cfg.cell)
        check_precision(cfg.trainer)

    try:
        register_plugin_cells()
        sys.argv[1:] = preflight(sys.argv[1:], check_job=check_job)
    except UserError as error:
        print(f"rrn-train: error: {error}", file=sys.stderr)
        sys.exit(2)
    _hydra_entry()


if __name__ == "__main__":
    main()
