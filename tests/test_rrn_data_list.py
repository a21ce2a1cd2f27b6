"""`rrn-data list`, `--help` and bad arguments, run as a user would: where each dataset is read from, its files,
sizes, counts and whether each checksum is the canonical one."""

from __future__ import annotations

import pytest

from helpers import FULL_DATA, run_cli
from rrn_app.data.catalog import DATASETS
from rrn_app.data.cli import checksum_state, count


def table(stdout: str) -> dict[str, list[list[str]]]:
    """The table's rows by dataset: [read from, file, size, count, checksum] for each file."""
    rows: dict[str, list[list[str]]] = {}
    current = None
    for line in stdout.splitlines():
        if not line.startswith("│"):
            continue
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        current = cells[0] or current
        rows.setdefault(current, []).append(cells[1:])
    return rows


def test_list_on_the_test_data_root(data_root):
    result = run_cli("rrn-data", "list", f"root={data_root}")
    assert result.returncode == 0, result.stderr
    rows = table(result.stdout)
    assert list(rows) == list(DATASETS)
    for name, dataset in DATASETS.items():
        assert [row[1] for row in rows[name]] == list(dataset.files)
        assert all(row[2] != "-" and row[3] != "-" for row in rows[name])  # every dataset is there: sizes, counts
        where = rows[name][0][0]
        if FULL_DATA:
            assert where.startswith("data.root") and {row[4] for row in rows[name]} == {"ok"}
        elif dataset.embedded:  # the fixtures' root lacks these: the embedded copies, with the canonical files
            assert where.startswith("embedded copy") and {row[4] for row in rows[name]} == {"ok"}
        else:  # the fixtures are samples: read from data.root, checksums not the canonical ones
            assert where == f"data.root ({data_root / dataset.folder})" and {row[4] for row in rows[name]} == {"differs"}
    assert rows["sst"][0][3] == "8,544 sentences" and rows["jsb_chorales"][0][3] == "229 / 76 / 77 pieces"
    assert rows["tinyshakespeare"][0][3] == "1,115,394 characters"
    assert rows["glove"][0][3] == ("103,017 words" if FULL_DATA else "17,773 words")
    utterances = len((data_root / "atis" / "test" / "label").read_text().splitlines())
    assert rows["atis"][-1][3] == f"{utterances:,} utterances"


def test_list_without_a_data_folder(tmp_path):
    result = run_cli("rrn-data", "list", cwd=tmp_path)  # root defaults to ./data, which is not there
    assert result.returncode == 0, result.stderr
    rows = table(result.stdout)
    assert "data.root = data" in result.stdout
    for name, dataset in DATASETS.items():
        if dataset.embedded:
            assert rows[name][0][0].startswith("embedded copy") and rows[name][0][4] == "ok"
        else:
            assert rows[name][0][0] == f"missing (rrn-data get {name})"
            assert all(row[2:] == ["-", "-", "missing"] for row in rows[name])
    assert not (tmp_path / "data").exists()  # listing writes nothing into the data root


def test_checksum_states(tmp_path):
    sst = DATASETS["sst"]
    path = tmp_path / "dev.txt"
    path.write_text("(2 (2 changed))\n")
    assert checksum_state(sst, "sst/dev.txt", path, embedded=False) == "differs"
    assert checksum_state(sst, "sst/other.txt", path, embedded=False) == "unknown"
    assert count(sst, path) == "1 sentences"


@pytest.mark.parametrize("arguments, message", [
    (["get", "imbd"], "unknown dataset 'imbd'. Did you mean imdb? Known datasets: sst, glove, imdb"),
    (["list", "rot=x"], "unknown option rot=; this command takes root=."),
    (["fetch", "sst"], "unknown command 'fetch'; rrn-data takes list, get or prepare."),
    (["prepare", "imdb"], "expected 2 argument(s) before the options, got 1"),
])
def test_bad_arguments_are_one_line_errors(arguments, message):
    result = run_cli("rrn-data", *arguments)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("rrn-data: error: ")
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("arguments", [["--help"], ["-h"], [], ["get", "--help"]])
def test_help(arguments):
    result = run_cli("rrn-data", *arguments)
    assert result.returncode == 0 and "rrn-data list [root=DIR]" in result.stdout and "rrn-data get NAME" in result.stdout
