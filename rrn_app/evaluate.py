"""`rrn-eval ckpt=<path> [split=test|validation] [key=value ...]`: evaluate a checkpoint of rrn-train on one split.

The data module and the model are rebuilt from the run's own config, `<run>/.hydra/config.yaml` (the run being
the folder that holds `checkpoints/`; for a checkpoint moved out of its run, the copy of that config inside the
checkpoint), with the key=value pairs given here on top: `data.root=<folder>` where
the data lives now, `threads=1`, `trainer.accelerator=cpu`, `task.data.batch_size=64`, ... The weights and the
data module's state (the vocabulary, checked) come from the checkpoint; it runs on one device. The checkpoint is
loaded with weights_only=True and rrn's allow-list (rrn_app/checkpoints.py); `trust_checkpoint=true` loads one
that needs other classes in full, which can run code stored in it (never the default).

Prints the metric table, then the path of the `eval-<split>.json` it wrote beside the run's results.json
(`eval-<split>-1.json`, `-2` ... when that exists: nothing is overwritten). Files the task writes while
evaluating (ATIS's predictions, the confusion-matrix picture) go to the folder of the same name,
`<run>/eval-<split>[-N]/`.

`protocol=nanogpt` (task=char_lm): instead of rrn's streamed evaluation, nanoGPT's estimate_loss on the split
(random 256-character windows, no carried state; rrn_app/eval_protocols.py), written to
`eval-<split>-nanogpt.json`. nanoGPT's 1.4697 is that number on the last 10% of Tiny Shakespeare: the
validation split of a run trained with `task.data.split=[0.9,0.1,0.0]`.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
import time
from pathlib import Path

from rrn_app.option_checks import UserError

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SPLITS = {"test": "test", "validation": "val"}  # split= -> the metrics' prefix
USAGE = ("usage: rrn-eval ckpt=<run>/checkpoints/<name>.ckpt [split=test|validation] [data.root=<folder>] "
         "[threads=N] [trust_checkpoint=false] [protocol=nanogpt [eval_iters=200] [batch_size=64] "
         "[block_size=256] [window_seed=1337]] [<config key>=<value> ...]")


def parse_arguments(arguments: list[str]) -> dict[str, str]:
    """key=value arguments -> {key: value as written}."""
    options = {}
    for argument in arguments:
        key, sep, value = argument.partition("=")
        if not sep or not key:
            raise UserError(f"expected key=value, got {argument!r}. {USAGE}")
        options[key] = value
    return options


def read_lightning_checkpoint(path: Path, trust: bool = False) -> dict:
    """The checkpoint as a dict, loaded safely (rrn_app/checkpoints.py), or a UserError when the file is missing,
    truncated, crafted or not a Lightning checkpoint."""
    from rrn_app.generate import read_checkpoint

    checkpoint = read_checkpoint(path, trust)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"{path} is not a Lightning checkpoint (no state_dict in it); give ckpt=<run>/checkpoints/"
                        "<name>.ckpt written by rrn-train.")
    return checkpoint


def run_folder(path: Path) -> Path:
    """The run a checkpoint belongs to: `<run>/checkpoints/x.ckpt` -> `<run>`; a checkpoint elsewhere -> its folder."""
    folder = path.resolve().parent
    return folder.parent if folder.name == "checkpoints" else folder


def leaf_keys(config: dict, prefix: str = "") -> list[str]:
    """Every dotted key of a config as a plain dict (`task.data.batch_size`), for the closest-match hint."""
    keys = []
    for key, value in config.items():
        keys.extend(leaf_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"])
    return keys


def run_config(run: Path, checkpoint: dict, overrides: dict[str, str]):
    """The run's composed config (`<run>/.hydra/config.yaml`, else the copy rrn-train keeps in the checkpoint),
    with `run_dir` set to the run and the given overrides applied."""
    import yaml
    from omegaconf import OmegaConf

    path = run / ".hydra" / "config.yaml"
    if path.is_file():
        cfg = OmegaConf.load(path)
    elif isinstance(checkpoint.get("rrn_config"), dict):
        cfg, path = OmegaConf.create(checkpoint["rrn_config"]), "the checkpoint's config"
    else:
        raise UserError(f"{path} not found: rrn-eval rebuilds the data and model from the config rrn-train saved "
                        "in the run folder around the checkpoint (<run>/checkpoints/<name>.ckpt); keep the "
                        "checkpoint inside its run folder.")
    cfg.run_dir = str(run)  # was ${hydra:runtime.output_dir}
    known = leaf_keys(OmegaConf.to_container(cfg, resolve=False))
    for key, value in overrides.items():
        if OmegaConf.select(cfg, key, default=KeyError) is KeyError:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {close[0]}=?" if close else ""
            raise UserError(f"unknown key {key!r} in the run's config.{hint} Give split=, ckpt=, or a key of "
                            f"{path} (data.root, threads, trainer.accelerator, task.data.batch_size, ...).")
        try:
            typed = yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError:
            typed = value
        OmegaConf.update(cfg, key, typed, merge=True)
    return cfg


def load_weights(checkpoint: dict, model, datamodule, path: Path) -> None:
    """The checkpoint's weights into the model, its data state (the vocabulary, checked) into the data module."""
    state = checkpoint.get(type(datamodule).__qualname__)
    if state is not None:
        datamodule.load_state_dict(state)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:  # missing or unexpected keys, other shapes
        first = str(error).strip().splitlines()
        raise UserError(f"{path} does not fit the model its run's config builds ({first[0] if first else error}); "
                        "was the config changed, or the checkpoint moved into another run?") from None


def unused_path(run: Path, split: str) -> Path:
    """`<run>/eval-<split>.json`, or `eval-<split>-1.json`, `-2` ...: the first that does not exist."""
    path, number = run / f"eval-{split}.json", 1
    while path.exists():
        path, number = run / f"eval-{split}-{number}.json", number + 1
    return path


def nanogpt_metrics(model, datamodule, split: str, settings: dict, device) -> dict[str, float]:
    """`val/loss`, `val/bpc`, `val/perplexity` (or test/) by nanoGPT's estimate_loss (rrn_app/eval_protocols.py)."""
    import torch

    from rrn_app.eval_protocols import nanogpt_loss
    from rrn_app.tasks.language_model import per_character_metrics

    if not hasattr(datamodule, "ids"):
        raise UserError("protocol=nanogpt is for task=char_lm checkpoints (character language models); leave "
                        "protocol= out for this task.")
    loss = nanogpt_loss(model, datamodule.ids[split], device=device, **settings)
    return {name: float(value) for name, value in
            per_character_metrics(torch.tensor(loss, dtype=torch.float64), SPLITS[split]).items()}


def evaluate(arguments: list[str]) -> Path:
    """Parse, rebuild, evaluate, print the table; returns the eval-<split>.json written."""
    start = time.time()
    options = parse_arguments(arguments)
    if not options.get("ckpt"):
        raise UserError(f"ckpt=<path> is required. {USAGE}")
    path = Path(options.pop("ckpt")).expanduser()
    split = options.pop("split", "test")
    protocol = options.pop("protocol", None)
    from rrn_app.eval_protocols import PROTOCOLS, nanogpt_options

    if protocol is not None and protocol not in PROTOCOLS:
        close = difflib.get_close_matches(protocol, list(PROTOCOLS), n=1)
        hint = f" Did you mean protocol={close[0]}?" if close else ""
        raise UserError(f"protocol={protocol!r} is not known: must be one of {', '.join(PROTOCOLS)}, or left out "
                        f"for rrn's own evaluation.{hint}")
    protocol_settings = nanogpt_options(options) if protocol == "nanogpt" else None
    if split not in SPLITS:
        close = difflib.get_close_matches(split, list(SPLITS), n=1)
        hint = f" Did you mean split={close[0]}?" if close else ""
        raise UserError(f"split={split!r} is not allowed: must be one of {', '.join(SPLITS)}.{hint}")
    from rrn_app.generate import trust_option

    checkpoint = read_lightning_checkpoint(path, trust_option(options.pop("trust_checkpoint", None)))
    run = run_folder(path)
    cfg = run_config(run, checkpoint, options)
    out = unused_path(run, f"{split}-{protocol}" if protocol else split)

    import lightning as L
    import torch
    from omegaconf import OmegaConf

    from rrn_app.noise import quiet
    from rrn_app.train import build, metrics_table

    quiet()
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    L.seed_everything(cfg.get("seed", 0), workers=True, verbose=False)
    config_dict = OmegaConf.to_container(cfg, resolve=True)
    datamodule = build(cfg.task.data, "task.data")
    saved_state = checkpoint.get(type(datamodule).__qualname__)
    if saved_state is not None:  # the checkpoint's vocabulary, before setup: SST then uses it as it is
        datamodule.load_state_dict(saved_state)
    datamodule.setup("fit")  # otherwise the vocabulary is built from the data, checked against the checkpoint's
    model = build(cfg.task.model, "task.model", cell=config_dict["cell"], **datamodule.model_arguments())
    load_weights(checkpoint, model, datamodule, path)
    trainer_options = {**config_dict["trainer"], "devices": 1, "strategy": "auto"}
    trainer_options.pop("num_nodes", None)
    files = out.with_suffix("")  # the task's own files (predictions, pictures) go here
    trainer = L.Trainer(**trainer_options, logger=False, callbacks=[], enable_checkpointing=False,
                        enable_model_summary=False, default_root_dir=files)
    run_split = trainer.test if split == "test" else trainer.validate
    metrics = {}
    if protocol == "nanogpt":
        metrics = nanogpt_metrics(model, datamodule, split, protocol_settings, trainer.strategy.root_device)
    else:
        for result in run_split(model, datamodule=datamodule, verbose=False):
            metrics.update(result)
    if files.is_dir() and not any(files.iterdir()):
        files.rmdir()
    results = {
        "task": cfg.task.name,
        "cell": cfg.cell.name,
        "checkpoint": str(path.resolve()),
        "split": split,
        **({"protocol": protocol, "protocol_settings": protocol_settings} if protocol else {}),
        "overrides": [f"{key}={value}" for key, value in options.items()],
        "metrics": {name: float(value) for name, value in sorted(metrics.items())},
        **(model.extra_results() if hasattr(model, "extra_results") else {}),
        "wall_time_seconds": time.time() - start,
        "config": config_dict,
    }
    out.write_text(json.dumps(results, indent=2) + "\n")
    print("\n" + metrics_table(results["metrics"], (SPLITS[split],)))
    print(f"\n{results['task']} / {results['cell']} on {split}: {path.resolve()}")
    return out


def main() -> None:
    if any(argument in ("-h", "--help", "help") for argument in sys.argv[1:]):
        print(f"{USAGE}\n\n{__doc__.strip()}")
        return
    try:
        written = evaluate(sys.argv[1:])
    except UserError as error:
        print(f"rrn-eval: error: {error}", file=sys.stderr)
        sys.exit(2)
    print(written, flush=True)


if __name__ == "__main__":
    main()
