"""`rrn-probe`: how the gradient flows through a model's layers and timesteps, on real batches of its task's data.

    rrn-probe ckpt=runs/sst/lstm/<run>/checkpoints/last.ckpt           # a model rrn-train trained
    rrn-probe task=sst cell=res_lstm cell.num_layers=8                  # the same model at initialisation
    rrn-probe task=char_lm cell=res_rnn cell.output_activation=identity task.data.seq_length=1000 batches=1
    rrn-probe compare=a/probe.json,b/probe.json labels=lstm,res_lstm out=cmp/   # several probes side by side

On `batches` batches of the split (validation by default; the embedded data needs no data.root), with the model
in evaluation mode (no dropout) and every recurrent state starting at zero, the cell is replayed layer by
layer and step by step from its own parameters (rrn_app/probe/replay.py; its outputs are checked against the
cell's own forward), the task's training loss is back-propagated, and the probe records, per layer and
timestep, averaged over the batch's real positions:

- the gradient of the loss with respect to the layer's state h_t (the total one: through the layers above and
  through the layer's own later steps), as log10 of the mean norm;
- the norm of h_t;
- on the first batch, the singular values of each layer's step Jacobian d state_t / d state_{t-1} (input held
  fixed; an LSTM's state is (h_t, c_t)) for the `jacobian_sequences` longest sequences at `jacobian_steps`
  steps.

Writes `probe.json` (every number, the config, the command) and gradient_heatmap.png, gradient_curves.png,
state_norm.png, jacobian.png in `out` (default: `<run>/probe/` beside a checkpoint, `runs/probe/<task>_<cell>_
<time>/` for a model at initialisation; an existing folder gets -1, -2 ...). Prints the folder.

Keys: ckpt, task, cell, out, split, batches, align, min_positions (timesteps with fewer real positions over the
batches are left out), jacobian_sequences, jacobian_steps, threads, seed,
trust_checkpoint, compare, labels; any dotted key (`cell.num_layers=8`, `data.root=...`, `task.data.batch_size=32`)
overrides the run's config (with ckpt=: the run's own config, the checkpoint's weights).
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path

from rrn_app.keyvalue import KeyValueParser, Option
from rrn_app.option_checks import UserError

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

LOADERS = {"validation": "val_dataloader", "train": "train_dataloader", "test": "test_dataloader"}


def _choice(key: str, allowed: tuple[str, ...]):
    def check(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return text

    check.__name__ = key
    return check


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be a whole number of at least 1")
    return value


OPTIONS = {
    "ckpt": Option(None, str, "a checkpoint rrn-train wrote (<run>/checkpoints/<name>.ckpt)"),
    "task": Option(None, str, "without ckpt: the task of a model at initialisation"),
    "cell": Option(None, str, "without ckpt: its cell"),
    "out": Option(None, str, "the output folder"),
    "split": Option("validation", _choice("split", tuple(LOADERS)), "the batches' split"),
    "batches": Option(4, _positive, "how many batches"),
    "align": Option("start", _choice("align", ("start", "end")),
                    "timesteps from each sequence's start, or back from its last step (-1)"),
    "min_positions": Option(1, _positive, "leave out timesteps with fewer real positions than this"),
    "jacobian_sequences": Option(4, _positive, "sequences whose step Jacobians are taken"),
    "jacobian_steps": Option(5, _positive, "steps at which they are taken"),
    "threads": Option(1, _positive, "torch CPU threads"),
    "seed": Option(0, int, "the seed of a model at initialisation"),
    "trust_checkpoint": Option(None, str, "true: load a checkpoint that needs classes beyond rrn's allow-list"),
    "compare": Option(None, str, "comma list of probe.json files to draw side by side"),
    "labels": Option(None, str, "their labels, comma separated"),
}

USAGE = ("usage: rrn-probe ckpt=<run>/checkpoints/<name>.ckpt | task=<name> cell=<name> [key=value ...] "
         "(rrn-probe --help)")
PARSER = KeyValueParser(OPTIONS, __doc__, USAGE, noun="key", accept=lambda key: "." in key,
                        shown=("<config key>.<option>",))


# --- the model and its data ---------------------------------------------------------------------------------------


def missing_checkpoint(path: Path) -> UserError:
    return UserError(f"checkpoint {path} not found: give ckpt=<run>/checkpoints/<name>.ckpt written by rrn-train "
                     "(e.g. rrn-train task=sst cell=lstm writes runs/sst/lstm/<time>/checkpoints/last.ckpt), or "
                     "task=<name> cell=<name> to probe a model at initialisation.")


def checkpoint_config(path: Path, overrides: dict, trust: str | None):
    """(config, checkpoint, run folder) of a trained model: the run's own config with the overrides."""
    from rrn_app.evaluate import read_lightning_checkpoint, run_config, run_folder
    from rrn_app.generate import trust_option

    if not path.is_file():
        raise missing_checkpoint(path)
    checkpoint = read_lightning_checkpoint(path, trust_option(trust))
    run = run_folder(path)
    return run_config(run, checkpoint, overrides), checkpoint, run


def fresh_config(task: str, cell: str, overrides: dict, out: Path):
    """The config rrn-train would compose for task=... cell=... and the overrides."""
    from hydra import initialize_config_dir

    from rrn_app.command_line import _compose
    from rrn_app.config import check_group_choices, check_options, config_dir

    lines = [f"task={task}", f"cell={cell}", *(f"{key}={value}" for key, value in overrides.items()),
             f"run_dir={out}"]
    check_group_choices(lines)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="rrn-probe"):
        cfg = _compose(lines, "config")
    if cfg is None:
        raise UserError(f"the config of {' '.join(lines[:-1])} could not be composed; check the keys with "
                        f"rrn-train {' '.join(lines[:-1])} --cfg job.")
    check_options(cfg)
    return cfg


def build_model(cfg, checkpoint: dict | None, path: Path | None):
    """(model in evaluation mode, data module set up) from a composed config, with the checkpoint's weights."""
    import lightning as L
    from omegaconf import OmegaConf

    from rrn_app.evaluate import load_weights
    from rrn_app.train import build

    L.seed_everything(int(cfg.get("seed", 0) or 0), workers=True, verbose=False)
    config_dict = OmegaConf.to_container(cfg, resolve=True)
    datamodule = build(cfg.task.data, "task.data")
    if checkpoint is not None:
        saved = checkpoint.get(type(datamodule).__qualname__)
        if saved is not None:
            datamodule.load_state_dict(saved)
    datamodule.setup("fit")
    model = build(cfg.task.model, "task.model", cell=config_dict["cell"], **datamodule.model_arguments())
    if checkpoint is not None:
        load_weights(checkpoint, model, datamodule, path)
    return model.eval(), datamodule


def batches_of(datamodule, split: str, count: int) -> list:
    loader = getattr(datamodule, LOADERS[split])()
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == count:
            break
    if not batches:
        raise UserError(f"the {split} split has no batches to probe; choose another with split=.")
    return batches


def batch_loss(model, batch):
    """The task's training loss of one batch, in evaluation mode, every carried state reset (a char_lm window
    or a music window then starts from zero)."""
    model.on_train_epoch_start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log() without a Trainer
        loss = model.training_step(batch, 0)
    return loss["loss"] if isinstance(loss, dict) else loss


# --- the probe ----------------------------------------------------------------------------------------------------


def row_labels(replay) -> list[str]:
    if replay.directions == 1:
        return [f"layer {layer + 1}" for layer in range(replay.num_layers)]
    return [f"layer {layer + 1} {side}" for layer in range(replay.num_layers) for side in ("fwd", "bwd")]


def _finite(values):
    import math

    return [[v if math.isfinite(v) else None for v in row] for row in values]


def probe_model(model, batches: list, align: str = "start", jacobian_sequences: int = 4,
                jacobian_steps: int = 5, min_positions: int = 1) -> dict:
    """Every number the probe reports (module docstring) for `model` (its `encoder` replayed) on `batches`."""
    import numpy as np
    import torch

    from rrn_app.probe.measure import LayerTimeMean, gradient_norms, state_norms, step_jacobians
    from rrn_app.probe.replay import Replay

    cell = model.encoder
    replay = Replay(cell)
    captured = {}

    def capture(module, arguments, keywords):  # the encoder's input and lengths, for the replay's check
        lengths = arguments[1] if len(arguments) > 1 else keywords.get("lengths")
        captured.setdefault("x", arguments[0].detach())
        captured.setdefault("lengths", lengths)
        captured["last_lengths"] = lengths

    gradients, norms, losses, jacobians = LayerTimeMean(align), LayerTimeMean(align), [], None
    handle = replay.register_forward_pre_hook(capture, with_kwargs=True)
    model.encoder = replay
    try:
        with torch.enable_grad():
            for index, batch in enumerate(batches):
                model.zero_grad(set_to_none=True)
                loss = batch_loss(model, batch)
                loss.backward()
                losses.append(float(loss.detach()))
                lengths = captured["last_lengths"]
                gradients.add(gradient_norms(replay), lengths)
                norms.add(state_norms(replay), lengths)
                if index == 0:
                    jacobians = step_jacobians(replay, lengths, jacobian_sequences, jacobian_steps)
        difference = replay.check(captured["x"], captured["lengths"])
    finally:
        handle.remove()
        model.encoder = cell
        model.zero_grad(set_to_none=True)
    steps, gradient_means, counts = gradients.table()
    _, state_means, _ = norms.table()
    kept = [index for index, count in enumerate(counts) if count >= min_positions]
    if not kept:
        raise UserError(f"no timestep has {min_positions} real positions (min_positions=); the batches have at "
                        f"most {max(counts)}: lower it or give more batches.")
    steps, counts = [steps[i] for i in kept], [counts[i] for i in kept]
    gradient_means, state_means = gradient_means[:, kept], state_means[:, kept]
    with np.errstate(divide="ignore"):
        log_norms = np.log10(gradient_means)
    return {
        "rows": row_labels(replay),
        "align": align,
        "batches": len(batches),
        "min_positions": min_positions,
        "loss": float(np.mean(losses)),
        "replay_max_difference": difference,
        "replay_output_max_abs": replay.checked_scale,
        "gradient": {"steps": steps, "log10_norm": _finite(log_norms.tolist()), "positions": counts},
        "state_norm": {"steps": steps, "mean": _finite(state_means.tolist())},
        "jacobian": jacobians,
    }


def default_out(run: Path | None, task: str, cell: str) -> Path:
    base = run / "probe" if run is not None else Path("runs") / "probe" / f"{task}_{cell}_{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    path, number = base, 1
    while path.exists():
        path, number = base.with_name(f"{base.name}-{number}"), number + 1
    return path


def read_probe(path: str) -> dict:
    file = Path(path)
    if file.is_dir():
        file = file / "probe.json"
    try:
        result = json.loads(file.read_text())
    except FileNotFoundError:
        raise UserError(f"{file} not found: compare= takes probe.json files (or their folders) written by "
                        "rrn-probe.") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{file} is not a probe's json ({error}); run rrn-probe again to write it.") from None
    if "gradient" not in result or "jacobian" not in result:
        raise UserError(f"{file} is not a probe's json (no gradient or jacobian in it); give rrn-probe's "
                        "probe.json.")
    return result


def compare_probes(values: dict) -> Path:
    from rrn_app.probe.plots import compare

    paths = [p for p in values["compare"].split(",") if p]
    results = [read_probe(p) for p in paths]
    labels = values["labels"].split(",") if values["labels"] else [r["title"] for r in results]
    if len(labels) != len(results):
        raise UserError(f"labels= gives {len(labels)} labels for {len(results)} probes in compare=; give one each.")
    out = Path(values["out"]) if values["out"] else default_out(None, "compare", str(len(results)))
    compare(results, labels, out)
    return out


def probe(argv: list[str]) -> Path:
    """Parse, build, probe, write; returns the output folder."""
    given = PARSER.split(argv)
    PARSER.check(given)
    values = PARSER.parse(argv)
    if values["compare"]:
        return compare_probes(values)
    overrides = {key: text for key, text in given.items() if "." in key}
    if values["ckpt"]:
        if values["task"] or values["cell"]:
            raise UserError("give ckpt= or task= cell=, not both: a checkpoint's run config names its own task and "
                            "cell (override its cell options with cell.<option>=...).")
        path = Path(values["ckpt"]).expanduser()
        cfg, checkpoint, run = checkpoint_config(path, overrides, values["trust_checkpoint"])
        out = Path(values["out"]) if values["out"] else default_out(run, cfg.task.name, cfg.cell.name)
    elif values["task"] and values["cell"]:
        checkpoint = path = None
        out = Path(values["out"]) if values["out"] else default_out(None, values["task"], values["cell"])
        cfg = fresh_config(values["task"], values["cell"], {**overrides, "seed": values["seed"]}, out.resolve())
    else:
        raise UserError(f"give ckpt=<path> (a model rrn-train trained) or task=<name> cell=<name> (one at "
                        f"initialisation). {USAGE}")
    import torch
    from omegaconf import OmegaConf

    from rrn_app.noise import quiet
    from rrn_app.probe.plots import one_run

    quiet()
    torch.set_num_threads(values["threads"])
    model, datamodule = build_model(cfg, checkpoint, path)
    batches = batches_of(datamodule, values["split"], values["batches"])
    result = probe_model(model, batches, values["align"], values["jacobian_sequences"], values["jacobian_steps"],
                         values["min_positions"])
    state = f"checkpoint {path.name}" if path is not None else "initialisation"
    cell_node = OmegaConf.to_container(cfg.cell, resolve=True)
    result = {
        "title": f"{cfg.task.name} / {cfg.cell.name}, {state}",
        "task": cfg.task.name, "cell": cfg.cell.name, "cell_config": cell_node,
        "checkpoint": str(path.resolve()) if path is not None else None,
        "global_step": checkpoint.get("global_step") if checkpoint is not None else 0,
        "split": values["split"], "command": "rrn-probe " + " ".join(argv), **result,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "probe.json").write_text(json.dumps(result, indent=1) + "\n")
    one_run(result, out)
    return out


def main(argv: list[str] | None = None) -> None:
    try:
        out = probe(sys.argv[1:] if argv is None else argv)
    except UserError as error:
        print(f"rrn-probe: error: {error}", file=sys.stderr)
        sys.exit(2)
    print(out, flush=True)


if __name__ == "__main__":
    main()
