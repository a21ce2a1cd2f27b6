"""`key=value` command lines: the one parser behind `rrn-bench` and `rrn-generate`.

A command declares its keys as `Option`s (a default, how its value is typed, one line of help) in a
`KeyValueParser`. The parser splits the arguments, answers `-h`/`--help`/`help` with the command's help text,
refuses an argument without `=` and an unknown key with one line naming the closest known key, and types each
value:

- `type=str`: the value as written (text options, comma lists a command reads itself);
- another callable: `type(value)`, e.g. `int`; a ValueError or TypeError is a one-line error;
- no type: YAML-style (`parse_value`): true/false, null/none/~, whole numbers, decimal numbers (`1e-3` too),
  `[1, 2]` and `{a: 1}` flow collections; anything else as written.

A command whose keys are only known later (`rrn-generate` learns a task's keys from the checkpoint) splits
first (`split`) and checks the keys when it knows them (`check_keys`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from rrn_app.option_checks import UserError

HELP_FLAGS = ("-h", "--help", "help")


@dataclass(frozen=True)
class Option:
    """One key of a command: its default, how its value is typed (None: YAML-style, str: as written, or any
    callable taking the text) and one line of help."""

    default: Any = None
    type: Callable[[str], Any] | None = None
    help: str = ""


def parse_value(text: str) -> Any:
    """A value typed the YAML way for the scalars and collections a command line holds: true/false, null (or none,
    ~), whole and decimal numbers (`1e-3` too, which YAML 1.1 leaves as text), `[...]`/`{...}` flow collections;
    anything else (a word, `a: b`, `#x`, a path) is the text, stripped of surrounding blanks."""
    import yaml

    stripped = text.strip()
    lowered = stripped.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none", "~", ""):
        return None
    for kind in (int, float):
        try:
            return kind(stripped)
        except ValueError:
            pass
    if stripped[:1] in ("[", "{"):
        try:
            return yaml.safe_load(stripped)
        except yaml.YAMLError:
            return stripped
    return stripped


def typed(text: str, option: Option) -> Any:
    """`text` typed as `option` declares: as written (str), by its callable, else YAML-style (`parse_value`)."""
    if option.type is str:
        return text
    if option.type is None:
        return parse_value(text)
    return option.type(text)


def wants_help(argv: Iterable[str]) -> bool:
    """Whether the arguments ask for the help text (-h, --help or help)."""
    return any(argument in HELP_FLAGS for argument in argv)


def split(argv: Iterable[str], usage: str = "") -> dict[str, str]:
    """key=value arguments -> {key: the value as written} (a key given twice: the last one). An argument without
    `=` or with an empty key is a one-line UserError ending in `usage`."""
    values = {}
    for argument in argv:
        key, sep, value = argument.partition("=")
        if not sep or not key:
            raise UserError(f"expected key=value, got {argument!r}." + (f" {usage}" if usage else ""))
        values[key] = value
    return values


def closest(key: str, known: Iterable[str]) -> str | None:
    """The known key most like `key` (difflib's closest match), or None when none is close."""
    matches = difflib.get_close_matches(key, list(known), n=1)
    return matches[0] if matches else None


def unknown_keys_error(keys: list[str], known: list[str], noun: str = "option", context: str = "",
                       quote: bool = True) -> UserError:
    """`unknown option 'x'. Did you mean y=? Known options: ...` for the keys given (the hint for the first);
    `context` follows the names (" for mode=data"); `quote=False` writes the names bare."""
    shown = ", ".join(repr(key) if quote else key for key in keys)
    hint = closest(keys[0], known)
    return UserError(f"unknown {noun}{'s' if len(keys) > 1 else ''} {shown}{context}."
                     + (f" Did you mean {hint}=?" if hint else "") + f" Known {noun}s: {', '.join(known)}.")


def check_keys(given: Iterable[str], known: Iterable[str], noun: str = "option", context: str = "",
               quote: bool = True, accept: Callable[[str], bool] | None = None, shown: Iterable[str] = ()) -> None:
    """A UserError (`unknown_keys_error`) when a given key is neither known nor accepted by `accept` (e.g. dotted
    keys a command reads itself); `shown` adds patterns to the known list (`cell.<option>`)."""
    known = list(known)
    unknown = [key for key in given if key not in known and not (accept and accept(key))]
    if unknown:
        raise unknown_keys_error(unknown, known + list(shown), noun, context, quote)


class KeyValueParser:
    """A command's `key=value` line: its `Option`s, help text and how it names its keys in errors.

    `parse(argv)` returns every declared key, typed: given values over the defaults; keys that `accept` lets
    through (e.g. `cell.num_layers`) come back as written. `--help` prints `help` and exits 0.
    """

    def __init__(self, options: dict[str, Option], help: str, usage: str = "", noun: str = "option",
                 context: str = "", quote: bool = True, accept: Callable[[str], bool] | None = None,
                 shown: Iterable[str] = ()):
        self.options, self.help, self.usage = dict(options), help, usage
        self.noun, self.context, self.quote, self.accept, self.shown = noun, context, quote, accept, tuple(shown)

    def split(self, argv: list[str]) -> dict[str, str]:
        """The arguments as written ({key: text}), after answering --help; keys are not checked."""
        if wants_help(argv):
            print(self.help.rstrip("\n"))
            raise SystemExit(0)
        return split(argv, self.usage)

    def check(self, keys: Iterable[str], extra: Iterable[str] = ()) -> None:
        """A one-line UserError for the first key that is neither declared, in `extra`, nor accepted."""
        check_keys(keys, [*self.options, *extra], self.noun, self.context, self.quote, self.accept, self.shown)

    def parse(self, argv: list[str]) -> dict[str, Any]:
        """Every declared key typed (the defaults for those not given), plus the accepted extra keys as written."""
        given = self.split(argv)
        self.check(given)
        values = {key: option.default for key, option in self.options.items()}
        for key, text in given.items():
            if key not in self.options:
                values[key] = text
                continue
            try:
                values[key] = typed(text, self.options[key])
            except (TypeError, ValueError) as error:
                raise UserError(f"{key}={text!r} is not allowed: {error}") from None
        return values
