"""The key=value parser rrn-bench and rrn-generate share: values typed YAML-style or by the option's declared type,
an unknown key refused in one line with the closest known key, --help answered with the command's help."""

from __future__ import annotations

import pytest

from rrn_app.keyvalue import KeyValueParser, Option, check_keys, parse_value, split, typed
from rrn_app.option_checks import UserError

PARSER = KeyValueParser({"length": Option(500, int, "samples"), "temperature": Option(1.0),
                         "prime": Option("", str), "top_k": Option(None)},
                        help="usage: demo length=N\n\nOptions: length, temperature, prime, top_k\n",
                        usage="(demo --help lists the keys)")


@pytest.mark.parametrize("text, value", [
    ("true", True), ("False", False), ("null", None), ("none", None), ("~", None), ("", None),
    ("200", 200), ("-3", -3), ("0.8", 0.8), ("1e-3", 0.001), ("[1, 2]", [1, 2]), ("{a: 1}", {"a": 1}),
    ("ROMEO: hi", "ROMEO: hi"), ("#x", "#x"), ("runs/a.ckpt", "runs/a.ckpt"), (" word ", "word"), ("[1,", "[1,"),
])
def test_values_are_typed_the_yaml_way(text, value):
    result = parse_value(text)
    assert result == value and type(result) is type(value)


def test_a_declared_type_wins_over_yaml():
    assert typed("007", Option("", str)) == "007"  # text options are taken as written
    assert typed("007", Option(0, int)) == 7
    assert typed("007", Option(0)) == 7
    assert typed("null", Option("x", str)) == "null"


def test_parse_fills_the_defaults_and_types_what_is_given():
    assert PARSER.parse(["length=30", "prime=ROMEO: 1"]) == {"length": 30, "temperature": 1.0, "prime": "ROMEO: 1",
                                                              "top_k": None}
    assert PARSER.parse(["top_k=5", "top_k=7"])["top_k"] == 7  # a key given twice: the last one


def test_a_value_its_type_refuses_is_a_one_line_error_naming_the_key():
    with pytest.raises(UserError) as error:
        PARSER.parse(["length=many"])
    assert str(error.value).startswith("length='many' is not allowed: ") and "\n" not in str(error.value)


def test_an_unknown_key_names_the_closest_known_one():
    with pytest.raises(UserError) as error:
        PARSER.parse(["lenght=30"])
    assert str(error.value) == ("unknown option 'lenght'. Did you mean length=? Known options: length, temperature, "
                                "prime, top_k.")
    with pytest.raises(UserError, match=r"^unknown options 'zzz', 'qqq'. Known options: length, temperature, prime, "
                                        r"top_k.$"):
        PARSER.parse(["zzz=1", "qqq=2"])  # nothing close: no hint


def test_how_a_command_names_its_keys_in_errors():
    with pytest.raises(UserError) as error:
        check_keys(["batch"], ["batches", "tasks"], noun="setting", context=" for mode=data")
    assert str(error.value) == "unknown setting 'batch' for mode=data. Did you mean batches=? Known settings: " \
                               "batches, tasks."
    with pytest.raises(UserError, match=r"^unknown option lenght\. Did you mean length=\?"):
        check_keys(["lenght"], ["length"], quote=False)


def test_accepted_patterns_pass_through_as_written_and_are_listed():
    parser = KeyValueParser({"cells": Option("", str)}, help="", noun="setting", accept=lambda key: "." in key,
                            shown=("cell.<option>",))
    assert parser.parse(["cell.num_layers=1,2"]) == {"cells": "", "cell.num_layers": "1,2"}
    with pytest.raises(UserError, match=r"Known settings: cells, cell.<option>\.$"):
        parser.parse(["cels=x"])


@pytest.mark.parametrize("argument", ["oops", "=5"])
def test_an_argument_without_a_key_and_a_value_is_refused(argument):
    with pytest.raises(UserError) as error:
        split([argument], "(demo --help lists the keys)")
    assert str(error.value) == f"expected key=value, got {argument!r}. (demo --help lists the keys)"


@pytest.mark.parametrize("flag", ["-h", "--help", "help"])
def test_help_prints_the_commands_help_and_exits_0(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        PARSER.parse(["lenght=1", flag])  # help wins over a bad key
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == "usage: demo length=N\n\nOptions: length, temperature, prime, top_k\n"


def test_rrn_bench_and_rrn_generate_use_it():
    """One parser: both commands' errors come from it, in its wording."""
    from rrn_app import generate
    from rrn_app.bench import settings

    with pytest.raises(UserError, match=r"^expected key=value, got 'oops'\. usage: rrn-generate"):
        generate.parse_arguments(["oops"])
    with pytest.raises(UserError, match=r"^unknown setting 'hiden'\. Did you mean hidden=\? Known settings: .*"
                                        r"cell\.<option>, <cell>\.<option>\.$"):
        settings.parse_arguments(["hiden=128"])
    assert generate.typed("0.8", 1.0) == 0.8 and generate.typed("0.8", "x") == "0.8"
