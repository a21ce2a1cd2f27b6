"""Checks for user-facing settings. Each failure names the option, the value and what is allowed.

The message names the option as the component knows it (`keep_prob`); the command line adds the
config group in front (`cell.keep_prob`), so the user reads the exact key to fix.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's settings or files: the command line prints the message, no traceback."""


class MissingDataError(UserError, FileNotFoundError):
    pass


def require_files(paths, what: str, fix: str) -> None:
    """Each of `paths` must be a file, else "<what> file not found: <path>. <fix>" (checked before reading any)."""
    for path in paths:
        if not path.is_file():
            raise MissingDataError(f"{what} file not found: {path}. {fix}")


class InvalidOption(UserError, ValueError):
    def __init__(self, option: str, value: object, allowed: str):
        self.option, self.value, self.allowed = option, value, allowed
        super().__init__(f"{option}={value!r} is not allowed: {allowed}")

    def with_prefix(self, prefix: str) -> "InvalidOption":
        return InvalidOption(f"{prefix}.{self.option}", self.value, self.allowed)


def positive_int(option: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidOption(option, value, "must be a positive integer")
    return value


def positive_float(option: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidOption(option, value, "must be a number greater than 0")
    return float(value)


def non_negative_float(option: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InvalidOption(option, value, "must be a number >= 0")
    return float(value)


def keep_probability(option: str, value) -> float:
    """A probability of keeping something: in (0, 1]; 1 means never drop."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise InvalidOption(option, value, "must be a probability in (0, 1] (1 keeps everything)")
    return float(value)


def dropout_rate(option: str, value) -> float:
    """A probability of dropping something: in [0, 1); 0 means no dropout."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise InvalidOption(option, value, "must be a dropout probability in [0, 1) (0 turns it off)")
    return float(value)


def one_of(option: str, value, choices) -> object:
    if value not in choices:
        raise InvalidOption(option, value, f"must be one of {', '.join(map(repr, choices))}")
    return value
