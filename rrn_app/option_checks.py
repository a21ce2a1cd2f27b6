"""Checks for user-facing settings. Each failure names the option, the value and what is allowed.

The message names the option as the component knows it (`keep_prob`); the command line adds the
config group in front (`cell.keep_prob`), so the user reads the exact key to fix.
"""

from __future__ import annotations


__all__ = [
    "UserError",
    "MissingDataError",
    "require_files",
    "InvalidOption",
    "positive_int",
    "positive_float",
    "non_negative_float",
    "keep_probability",
    "dropout_rate",
    "one_of",
    "constructor_parameters",
    "accepts_any_keyword",
    "fits",
    "describe_type",
    "type_label",
    "unknown_option",
    "check_annotated_options",
]

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
    """A bad option value: `InvalidOption("gain", -1, "must be positive")` reads "gain=-1 is not allowed: must be
    positive"; `with_prefix("cell")` names the full config key (cell.gain), as rrn-train does for a cell's."""

    def __init__(self, option: str, value: object, allowed: str):
        self.option, self.value, self.allowed = option, value, allowed
        super().__init__(f"{option}={value!r} is not allowed: {allowed}")

    def with_prefix(self, prefix: str) -> "InvalidOption":
        return InvalidOption(f"{prefix}.{self.option}", self.value, self.allowed)


def positive_int(option: str, value) -> int:
    """An integer > 0 (not a bool), returned as given; else InvalidOption."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidOption(option, value, "must be a positive integer")
    return value


def positive_float(option: str, value) -> float:
    """A number > 0 (an int or a float, not a bool), returned as a float; else InvalidOption."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidOption(option, value, "must be a number greater than 0")
    return float(value)


def non_negative_float(option: str, value) -> float:
    """A number >= 0 (not a bool), returned as a float; else InvalidOption."""
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
    """`value` if it is one of `choices` (e.g. ("relu", "tanh"), or (False, True) for a flag); else InvalidOption
    listing them."""
    if value not in choices:
        raise InvalidOption(option, value, f"must be one of {', '.join(map(repr, choices))}")
    return value


# --- options checked against a constructor's annotations -----------------------------------------------------------
# A cell's, task model's or data module's constructor is its schema: `bidirectional: bool = False` means the
# command line may give true or false and nothing else. Plugins get the same checks from their own signatures.


def constructor_parameters(cls: type) -> dict[str, tuple[object, object]]:
    """{name: (annotation, default)} of `cls(...)`'s keyword options; `inspect.Parameter.empty` where none.

    String annotations (`from __future__ import annotations`) are evaluated in the constructor's module; one
    that cannot be evaluated counts as unannotated (anything goes), so a checker never rejects what it cannot read.
    An unannotated option whose default is True or False counts as a bool.
    """
    import inspect
    import typing

    init = cls.__init__
    try:
        hints = typing.get_type_hints(init, include_extras=False)
    except Exception:  # an annotation naming something its module does not import: read them one by one
        hints = {}
        for name, annotation in getattr(init, "__annotations__", {}).items():
            try:
                hints[name] = eval(annotation, getattr(init, "__globals__", {})) if isinstance(annotation, str) \
                    else annotation
            except Exception:
                pass
    parameters = {}
    for name, parameter in inspect.signature(init).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        annotation = hints.get(name, inspect.Parameter.empty)
        if annotation is inspect.Parameter.empty and isinstance(parameter.default, bool):
            annotation = bool  # an unannotated flag (`bidirectional=False`) is a bool all the same
        parameters[name] = (annotation, parameter.default)
    return parameters


def accepts_any_keyword(cls: type) -> bool:
    """Whether `cls(...)` takes **options (then no option name is unknown to it)."""
    import inspect

    return any(parameter.kind is parameter.VAR_KEYWORD for parameter in inspect.signature(cls.__init__).parameters.values())


def _union_arguments(annotation) -> tuple | None:
    import types
    import typing

    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return None


def fits(value, annotation) -> bool:
    """Whether a config value (int, float, str, bool, None, list, dict) is allowed by a type annotation.

    bool takes only true/false; int takes integers but not booleans; float takes any number; str takes strings;
    Literal[...] its values; Optional/unions any of their members; list/tuple/dict their container (and their
    element types where given). Annotations it does not know (a tensor, a callable, Any) allow anything.
    """
    import collections.abc
    import inspect
    import os
    import typing

    if annotation is inspect.Parameter.empty or annotation is typing.Any:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    members = _union_arguments(annotation)
    if members is not None:
        return any(fits(value, member) for member in members)
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return any(value == choice and isinstance(value, bool) == isinstance(choice, bool) for choice in arguments)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if annotation in (os.PathLike,) or (isinstance(annotation, type) and issubclass(annotation, os.PathLike)):
        return isinstance(value, (str, os.PathLike))
    container = origin or annotation
    if container in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        if container is tuple and arguments and arguments[-1] is not Ellipsis:
            return len(value) == len(arguments) and all(map(fits, value, arguments))
        element = arguments[0] if arguments else inspect.Parameter.empty
        return all(fits(item, element) for item in value)
    if container in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            return False
        if len(arguments) == 2:
            return all(fits(k, arguments[0]) and fits(v, arguments[1]) for k, v in value.items())
        return True
    return True  # a class a config value cannot be (a tensor, a module): the constructor itself decides


def describe_type(annotation) -> str:
    """What an annotation allows, in the words of the command line: `true or false`, `an integer or null`."""
    import inspect
    import typing

    if annotation is None or annotation is type(None):
        return "null"
    members = _union_arguments(annotation)
    if members is not None:
        nulls = [member for member in members if member is type(None)]
        words = [describe_type(member) for member in members if member is not type(None)]
        return " or ".join(dict.fromkeys(words + ["null"] * bool(nulls)))
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(choice).lower() if isinstance(choice, bool) else repr(choice)
                                     for choice in arguments)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if annotation in names:
        return names[annotation]
    container = origin or annotation
    if container in (list, tuple) or getattr(container, "__name__", "") == "Sequence":
        if arguments and (container is not tuple or len(arguments) == 1 or arguments[-1] is Ellipsis):
            return f"a list of {_plural(arguments[0])}"
        if arguments:
            return f"a list of {len(arguments)} values"
        return "a list (e.g. [1,2])"
    if container is dict:
        return "a mapping (e.g. {a:1})"
    if annotation is inspect.Parameter.empty:
        return "anything"
    return getattr(annotation, "__name__", str(annotation))


def _plural(annotation) -> str:
    words = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}
    return words.get(annotation, describe_type(annotation))


def type_label(annotation) -> str:
    """A short name for an annotation as `rrn-cells` shows it: `bool`, `int | None`, `Literal['a', 'b']`."""
    import inspect

    if annotation is inspect.Parameter.empty:
        return ""
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def unknown_option(key: str, known, hint: str = "") -> UserError:
    """`unknown option cell.hiden_size. Did you mean cell.hidden_size? Known options of cell: ...`."""
    import difflib

    prefix, _, name = key.rpartition(".")
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    where = f" of {prefix}" if prefix else ""
    suggestion = f" Did you mean {prefix + '.' if prefix else ''}{close[0]}?" if close else ""
    return UserError(f"unknown option {key}.{suggestion} Known options{where}{hint}: {', '.join(known)}.")


def check_annotated_options(prefix: str, cls: type, options: dict, owner: str | None = None) -> None:
    """Every option must be a constructor parameter of `cls` and fit its annotation, else a one-line UserError.

    `prefix` is the config key of the node (`cell`, `task.model`), so the message names the full key:
    `cell.bidirectional='maybe' is not allowed: must be true or false`. Keys starting with `_` (Hydra's
    `_target_`, `_partial_`) are Hydra's, not options.
    """
    parameters = constructor_parameters(cls)
    open_ended = accepts_any_keyword(cls)
    owner = owner or cls.__qualname__
    for name, value in options.items():
        if name.startswith("_"):
            continue
        if name not in parameters:
            if open_ended:
                continue
            raise unknown_option(f"{prefix}.{name}", [p for p in parameters if p != "input_size"], f" ({owner})")
        annotation, _ = parameters[name]
        if value == "???":  # Hydra's mark for a value nobody gave (a plugin option without a default)
            raise UserError(f"{prefix}.{name} has no value: give it with {prefix}.{name}=<{describe_type(annotation)}>")
        if not fits(value, annotation):
            raise InvalidOption(f"{prefix}.{name}", value, f"must be {describe_type(annotation)}")
