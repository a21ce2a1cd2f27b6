"""The interface of a task that rrn-generate samples from, and the sampling options it checks.

A generative task (char_lm, music) subclasses `Generative`: `GENERATE_OPTIONS` lists its rrn-generate options
besides the common ones (length, temperature, top_k, seed, prime), with their defaults (it may also change a
common one's default), and `generate_files(out_dir, options)` writes the samples and returns their paths.
rrn-generate refuses a checkpoint whose class is not a `Generative`.

The primer of a music sample (`parse_prime`): `none`, `random`, or `<train|valid|test>:<piece>[:<frames>]`.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rrn_app import option_checks
from rrn_app.option_checks import InvalidOption

PRIME_SPLITS = {"train": "train", "valid": "validation", "test": "test"}
DEFAULT_PRIME_FRAMES = 16


class Generative:
    """A task rrn-generate can sample from."""

    GENERATE_OPTIONS: ClassVar[dict] = {}  # rrn-generate options of this task besides the common ones

    def generate_files(self, out_dir: Path, options: dict) -> list[Path]:
        """Sample with `options` (the common ones and GENERATE_OPTIONS, typed), write the files under `out_dir`
        (never over an earlier sample: rrn_app/sample_io.py's unused_stem), return their paths."""
        raise NotImplementedError


def is_generative(cls) -> bool:
    return isinstance(cls, type) and issubclass(cls, Generative)


def check_sampling(length, temperature, top_k, seed) -> None:
    """char_lm's sampling options: length >= 1, an integer seed, temperature > 0, top_k null or >= 1."""
    option_checks.positive_int("length", length)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidOption("seed", seed, "must be an integer")
    option_checks.positive_float("temperature", temperature)
    if top_k is not None:
        option_checks.positive_int("top_k", top_k)


def parse_prime(prime, option: str = "prime") -> tuple[str, int | None, int | None]:
    """`none` | `random` | `<train|valid|test>:<piece>[:<frames>]` -> (kind, piece index, frames)."""
    text = "none" if prime is None else str(prime).strip()
    if text in ("", "none", "random"):
        return (text or "none", None, None)
    parts = text.split(":")
    try:
        if parts[0] not in PRIME_SPLITS or len(parts) not in (2, 3):
            raise ValueError
        index = int(parts[1])
        frames = int(parts[2]) if len(parts) == 3 else DEFAULT_PRIME_FRAMES
        if index < 0 or frames < 1:
            raise ValueError
    except ValueError:
        raise InvalidOption(option, prime, "must be none, random, or <train|valid|test>:<piece>[:<frames>] "
                            f"(e.g. test:0:{DEFAULT_PRIME_FRAMES}: the opening of the first test piece)") from None
    return (parts[0], index, frames)
