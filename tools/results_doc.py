"""Regenerate the report part of docs/results.md from the runs kept in results/ (nothing in it is typed by hand).

    python tools/results_doc.py            # runs `rrn-report results out=<temp>` and splices its report.md in

The report goes between the markers `<!-- report:begin -->` and `<!-- report:end -->` of docs/results.md; its
pictures go to docs/img/results/. The text around the markers (how to reproduce, older single runs) is kept.
README.md's headline table (between `<!-- headline:begin -->` and `<!-- headline:end -->`) is made from the same
runs and groups: one line per task, dataset and output, one column per cell, the first headline test metric's
mean ± sample sd (n) and the cell's parameters.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "results.md"
IMAGES = REPO / "docs" / "img" / "results"
README = REPO / "README.md"
BEGIN, END = "<!-- report:begin -->", "<!-- report:end -->"
HEADLINE_BEGIN, HEADLINE_END = "<!-- headline:begin -->", "<!-- headline:end -->"


def splice(path: Path, begin: str, end: str, body: str) -> None:
    """Replace what stands between the markers `begin` and `end` in `path` with `body`."""
    text = path.read_text()
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{body.strip()}\n{end}{tail}")


def headline() -> str:
    """One line per task, dataset and output, one column per cell: the first headline test metric's mean ± sample
    sd (n) and the cell's parameters."""
    from rrn_app.report.collect import collect_runs, group_runs
    from rrn_app.report.headline import describe, headline_metrics
    from rrn_app.report.stats import summarize

    groups = group_runs(collect_runs([REPO / "results"]))
    known = ["lstm", "gru", "res_lstm", "res_rnn", "gres_rnn"]
    cells = known + sorted({str(group.settings.get("cell.name")) for group in groups} - set(known))
    used = [cell for cell in cells if any(group.settings.get("cell.name") == cell for group in groups)]
    rows: dict[tuple, dict[str, str]] = {}
    for group in sorted(groups, key=lambda group: (group.task, str(group.settings.get("task.dataset")))):
        logged = {name for run in group.runs for name in run.metrics}
        tests = [name for name in headline_metrics(group.task, logged) if name.startswith("test/")]
        if not tests:
            continue
        metric = describe(tests[0], group.task)
        summary = summarize(value * metric.scale for value in group.values(metric.name))
        output = group.settings.get("task.model.output") or ("independent" if group.task == "music" else "")
        key = (group.task, group.settings.get("task.dataset") or "", output, metric.label)
        spread = f" ± {summary.sd:.2f}" if summary.n > 1 else ""
        rows.setdefault(key, {})[str(group.settings.get("cell.name"))] = (
            f"{summary.mean:.2f}{spread} ({summary.n}), {group.runs[0].parameters / 1000:.0f}k")
    lines = ["| task | dataset | output | test metric | " + " | ".join(f"`{cell}`" for cell in used) + " |",
             "| --- | --- | --- | --- | " + " | ".join("---" for _ in used) + " |"]
    for (task, dataset, output, label), values in rows.items():
        lines.append(f"| {task} | {dataset} | {output} | {label} | "
                     + " | ".join(values.get(cell, "") for cell in used) + " |")
    return "\n".join(lines)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "report"
        command = ["rrn-report", "results", f"out={out}"]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(done.stderr.strip() or done.stdout.strip())
        report = (out / "report.md").read_text()
        IMAGES.mkdir(parents=True, exist_ok=True)
        for picture in out.glob("*.png"):
            shutil.copyfile(picture, IMAGES / picture.name)
    report = report.split("\n", 1)[1]  # its own "# rrn-report" title: docs/results.md has one
    report = report.replace(f"out={out}", "out=<folder>")
    report = re.sub(r"\]\(([\w.-]+\.png)\)", r"](img/results/\1)", report)
    report = re.sub(r"^## ", "### ", report, flags=re.MULTILINE)
    splice(DOC, BEGIN, END, report)
    splice(README, HEADLINE_BEGIN, HEADLINE_END, headline())
    print(f"wrote {DOC.relative_to(REPO)}, {IMAGES.relative_to(REPO)}/ and README.md's headline table")


if __name__ == "__main__":
    main()
