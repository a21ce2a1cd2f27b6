"""`rrn-generate ckpt=<path> [length=500 temperature=1.0 top_k=null seed=0 prime="..." out=<dir>]`: sample from a
generative task's checkpoint (char_lm, music).

The checkpoint names its LightningModule class (`checkpoint["rrn_module"]`, written by the module's
`on_save_checkpoint`); that class is loaded on the CPU and its `generate_files(out_dir, options)` writes the
samples and returns their paths. `options` holds length, temperature, top_k, seed and prime, plus the
task's own keys: a class lists those, with their defaults, in `GENERATE_OPTIONS` (which may also change the
defaults of the common ones). Values are typed as YAML (null, 0.8, 200, false), except prime and options whose
default is text, which are taken as written. The default out dir is `<run dir>/samples/`, the run dir being the checkpoint
folder's parent.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from pathlib import Path

from rrn_app.validation import UserError

COMMON_OPTIONS = {"length": 500, "temperature": 1.0, "top_k": None, "seed": 0, "prime": None}
USAGE = "usage: rrn-generate ckpt=<path> [length=500 temperature=1.0 top_k=null seed=0 prime='...' out=<dir>]"
GENERATIVE_TASKS = "char_lm, music"


def unused_stem(directory: Path, name: str, suffixes: tuple[str, ...]) -> Path:
    """directory/name, or directory/name-1, -2, ... : the first whose files (name + each suffix) do not exist yet,
    so a new sample never overwrites an earlier one."""
    stem, number = directory / name, 1
    while any(stem.with_suffix(suffix).exists() for suffix in suffixes):
        stem, number = directory / f"{name}-{number}", number + 1
    return stem


def parse_arguments(arguments: list[str]) -> dict:
    """key=value arguments -> {key: the value as written}."""
    options = {}
    for argument in arguments:
        key, sep, value = argument.partition("=")
        if not sep or not key:
            raise UserError(f"expected key=value, got {argument!r}. {USAGE}")
        options[key] = value
    return options


def typed(value: str, default):
    """A command-line value as YAML types it (null, 0.8, 200, false), or as written where the default is text."""
    import yaml

    if isinstance(default, str):
        return value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def read_checkpoint(path: Path) -> dict:
    import torch

    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}. Give ckpt=<run dir>/checkpoints/<name>.ckpt from rrn-train.")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # a truncated zip, a pickle of something else, not a torch file at all
        raise UserError(f"could not read checkpoint {path} ({type(error).__name__}: {error}); is it a .ckpt "
                        "written by rrn-train, and complete?") from None


def module_class(checkpoint: dict, path: Path):
    name = checkpoint.get("rrn_module") if isinstance(checkpoint, dict) else None
    if not name:
        raise UserError(f"{path} is not a generative task checkpoint ({GENERATIVE_TASKS}): it names no model to "
                        "sample from (checkpoint['rrn_module']).")
    module_name, _, class_name = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise UserError(f"{path} was written by {name}, which cannot be imported here ({error}).") from None


def generate(arguments: list[str]) -> list[Path]:
    """Parse, load, sample; returns the written files."""
    options = parse_arguments(arguments)
    if "ckpt" not in options or options["ckpt"] in (None, ""):
        raise UserError(f"ckpt=<path> is required. {USAGE}")
    path = Path(str(options.pop("ckpt"))).expanduser()
    out = options.pop("out", None)
    checkpoint = read_checkpoint(path)
    cls = module_class(checkpoint, path)
    defaults = {**COMMON_OPTIONS, **getattr(cls, "GENERATE_OPTIONS", {})}
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        known = ["ckpt", *defaults, "out"]
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" Did you mean {close[0]}=?" if close else ""
        raise UserError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}.{hint} "
                        f"Known options: {', '.join(known)}.")
    options = {**defaults, **{key: value if key == "prime" else typed(value, defaults[key])  # prime: text as written
                              for key, value in options.items()}}
    model = cls.load_from_checkpoint(path, map_location="cpu")
    out_dir = Path(out) if out else path.resolve().parent.parent / "samples"
    return model.generate_files(out_dir, options)


def main() -> None:
    try:
        written = generate(sys.argv[1:])
    except UserError as error:
        print(f"rrn-generate: error: {error}", file=sys.stderr)
        sys.exit(2)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
