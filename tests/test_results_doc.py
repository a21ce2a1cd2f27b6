"""docs/results.md and README's headline are generated from results/ by tools/results_doc.py, not typed: what
they show is what the kept runs give today."""

from __future__ import annotations

import importlib.util

import pytest

from helpers import REPO, run_main


def _results_doc():
    spec = importlib.util.spec_from_file_location("results_doc", REPO / "tools" / "results_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _between(text: str, begin: str, end: str) -> str:
    return text.split(begin, 1)[1].split(end, 1)[0].strip()


def test_the_readme_headline_is_what_the_kept_runs_give():
    doc = _results_doc()
    shown = _between((REPO / "README.md").read_text(), doc.HEADLINE_BEGIN, doc.HEADLINE_END)
    assert shown == doc.headline().strip(), "README's headline is stale: run python tools/results_doc.py"


@pytest.mark.slow  # reads and reports every kept run
def test_every_row_of_ours_in_docs_results_is_what_rrn_report_gives(tmp_path):
    from rrn_app.report.cli import main as rrn_report

    done = run_main(rrn_report, "rrn-report", REPO / "results", f"out={tmp_path}")
    assert done.returncode == 0, done.stderr
    report_rows = {line for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("| ours ")}
    doc = _results_doc()
    shown = _between((REPO / "docs" / "results.md").read_text(), doc.BEGIN, doc.END)
    shown_rows = {line for line in shown.splitlines() if line.startswith("| ours ")}
    assert report_rows and shown_rows == report_rows, "docs/results.md is stale: run python tools/results_doc.py"
