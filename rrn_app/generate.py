"""`rrn-generate ckpt=<path> [length=500 temperature=1.0 top_k=null seed=0 prime="..." threads=1 out=<dir>]`: sample
from a generative task's checkpoint (char_lm, music). `rrn-generate --help` lists the options.

The checkpoint names its LightningModule class (`checkpoint["rrn_module"]`, written by the module's
`on_save_checkpoint`); a class that declares itself generative (rrn_app/tasks/generative.py: `Generative`) is
loaded on the CPU and its `generate_files(out_dir, options)` writes the samples and returns their paths.
`options` holds length, temperature, top_k, seed and prime, plus the task's own keys: a class lists those, with
their defaults, in `GENERATE_OPTIONS` (which may also change the defaults of the common ones). Values are typed as YAML (null, 0.8, 200, false), except prime and options whose
default is text, which are taken as written. The default out dir is `<run dir>/samples/`, the run dir being the checkpoint
folder's parent.

Sampling runs under `torch.inference_mode()` with `threads` torch threads, default 1: sampling is one small step
at a time, which threads only slow down (sharing one small matrix product between threads costs more than
it saves; on a busy machine, much more). Measured in docs/speed.md ("Sampling speed").
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from rrn_app import keyvalue
from rrn_app.option_checks import UserError

COMMON_OPTIONS = {"length": 500, "temperature": 1.0, "top_k": None, "seed": 0, "prime": None}
USAGE = ("usage: rrn-generate ckpt=<path> [length=500 temperature=1.0 top_k=null seed=0 prime='...' threads=1 "
         "out=<dir>]  (rrn-generate --help: every option)")
GENERATIVE_TASKS = "char_lm, music"
DEFAULT_THREADS = 1
HELP = f"""{USAGE.split("  (")[0]}

Samples from a checkpoint of a generative task ({GENERATIVE_TASKS}) written by rrn-train, prints it (char_lm) and
saves it under out (never overwriting an earlier sample).

Options (key=value):
  ckpt=PATH          the checkpoint, e.g. runs/char_lm/lstm/<time>/checkpoints/last.ckpt (required)
  length=N           characters to sample (char_lm, default 500) or frames after the primer (music, default 128)
  temperature=T      > 0; lower is more conservative (default 1.0)
  top_k=K            char_lm: sample from the K most likely characters only; 1 is greedy (default null: all)
  seed=S             the same seed gives the same sample (default 0)
  prime=TEXT         char_lm: text to continue (default: start after a newline);
                     music: none, random, or <train|valid|test>:<piece>[:<frames>] (default none)
  threads=N          torch CPU threads (default {DEFAULT_THREADS}: faster than more for one step at a time;
                     null: PyTorch's default)
  out=DIR            where the files go (default <run dir>/samples/, beside the checkpoints folder)
  trust_checkpoint=true  load a checkpoint that needs classes rrn's checkpoints never hold (default false:
                     refused in one line; true unpickles it in full, which can run code stored in it)
  music only: name=STEM (file names, default sample-seed<seed>), data_root=DIR (the folder holding polyphonic/,
              for a primer; default the training run's data), wav=true|false (write the WAV too, default true),
              samples=N (N pieces, seeds seed, seed+1, ...; default 1), stats=true (also stats.json and stats.png:
              notes per frame, polyphony, pitch range and chord types of the samples against the corpus)

Examples:
  rrn-generate ckpt=runs/char_lm/lstm/<time>/checkpoints/last.ckpt length=300 temperature=0.8 prime="ROMEO:"
  rrn-generate ckpt=runs/music/lstm/<time>/checkpoints/last.ckpt prime=test:0:16 wav=false
  (music: samples=20 stats=true wav=false writes 20 pieces and their statistics against the corpus)
"""


def unused_stem(directory: Path, name: str, suffixes: tuple[str, ...]) -> Path:
    """rrn_app.sample_io.unused_stem (its former home; imported when called, so that `--help` stays quick)."""
    from rrn_app.sample_io import unused_stem as first_free

    return first_free(directory, name, suffixes)


def parse_arguments(arguments: list[str]) -> dict:
    """key=value arguments -> {key: the value as written} (the parser rrn-bench shares: rrn_app/keyvalue.py)."""
    return keyvalue.split(arguments, USAGE)


def typed(value: str, default):
    """A command-line value typed YAML-style (null, 0.8, 200, false: keyvalue.parse_value), or as written where the
    default is text."""
    return keyvalue.typed(value, keyvalue.Option(default, str if isinstance(default, str) else None))


def read_checkpoint(path: Path, trust: bool = False) -> dict:
    """The checkpoint, loaded safely (rrn_app/checkpoints.py: weights_only=True and rrn's allow-list; in full only
    with trust_checkpoint=true); a missing, truncated, foreign or crafted file is a one-line UserError."""
    from rrn_app.checkpoints import read_checkpoint as read

    return read(path, trust=trust)


def trust_option(value: str | None) -> bool:
    """trust_checkpoint=true|false (default false): load a checkpoint that needs classes beyond rrn's allow-list."""
    if value is None:
        return False
    if value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise UserError(f"trust_checkpoint={value!r} is not allowed: must be true or false (default false).")


def module_class(checkpoint: dict, path: Path):
    name = checkpoint.get("rrn_module") if isinstance(checkpoint, dict) else None
    if not name:
        raise UserError(f"{path} is not a generative task checkpoint ({GENERATIVE_TASKS}): it names no model to "
                        "sample from (checkpoint['rrn_module']).")
    module_name, _, class_name = name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise UserError(f"{path} was written by {name}, which cannot be imported here ({error}).") from None
    from rrn_app.tasks.generative import is_generative

    if not is_generative(cls):
        raise UserError(f"{path} is not a generative task checkpoint ({GENERATIVE_TASKS}): its model, {class_name}, "
                        "has nothing to sample (rrn_app.tasks.generative.Generative).")
    return cls


def generate(arguments: list[str]) -> list[Path]:
    """Parse, load, sample; returns the written files."""
    options = parse_arguments(arguments)
    if "ckpt" not in options or options["ckpt"] in (None, ""):
        raise UserError(f"ckpt=<path> is required. {USAGE}")
    path = Path(str(options.pop("ckpt"))).expanduser()
    out = options.pop("out", None)
    threads = thread_count(options.pop("threads", str(DEFAULT_THREADS)))
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    trust = trust_option(options.pop("trust_checkpoint", None))
    checkpoint = read_checkpoint(path, trust)
    cls = module_class(checkpoint, path)
    defaults = {**COMMON_OPTIONS, **cls.GENERATE_OPTIONS}
    keyvalue.check_keys(sorted(options), ["ckpt", *defaults, "threads", "out", "trust_checkpoint"], quote=False)
    options = {**defaults, **{key: value if key == "prime" else typed(value, defaults[key])  # prime: text as written
                              for key, value in options.items()}}
    model = load_module(cls, path, trust)
    out_dir = Path(out) if out else path.resolve().parent.parent / "samples"
    with torch.inference_mode():
        return model.generate_files(out_dir, options)


def load_module(cls, path: Path, trust: bool):
    """The LightningModule of a checkpoint already read by read_checkpoint: loaded the same safe way."""
    import torch

    from rrn_app.checkpoints import ALLOWED_GLOBALS

    with torch.serialization.safe_globals(ALLOWED_GLOBALS):
        return cls.load_from_checkpoint(path, map_location="cpu", weights_only=not trust)


def thread_count(value: str) -> int | None:
    """threads=N: a whole number >= 1, or null for PyTorch's default."""
    if value.strip().lower() in ("null", "none", "~"):
        return None
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise UserError(f"threads={value!r} is not allowed: must be a whole number >= 1 (torch CPU threads; default "
                        f"{DEFAULT_THREADS}), or null for PyTorch's default. E.g. threads=2")
    return threads


def main() -> None:
    if keyvalue.wants_help(sys.argv[1:]):
        print(HELP, end="")
        sys.exit(0)
    try:
        written = generate(sys.argv[1:])
    except UserError as error:
        print(f"rrn-generate: error: {error}", file=sys.stderr)
        sys.exit(2)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
