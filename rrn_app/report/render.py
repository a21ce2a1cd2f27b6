"""A list of TaskReports -> the terminal (rich tables), report.md, report.csv and the pictures.

Our groups come first in each task's table, best mean per metric in bold; published rows follow, marked
`published [k]`, with their protocol listed under [k]. Runs that did not finish are listed, never averaged.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from rrn_app.report import format as fmt
from rrn_app.report.collect import Run, is_run_local
from rrn_app.report.plots import curve_picture, metric_picture
from rrn_app.report.table import Row, TaskReport

EXPLANATION = (
    "Each row of ours is a group of runs with the same settings (the resolved config without seed, paths, "
    "threads, logger and progress bar); columns show only the settings that differ. Cells: mean ± sample "
    "standard deviation (n runs); the best mean of our groups per metric in bold. Δ: the group's mean minus its "
    "baseline group's, with the 95% confidence interval (Welch–Satterthwaite) and Welch's t-test p-value. "
    "Published rows are the papers' numbers, never averaged with ours; [k] points to their protocol, and ≠ marks "
    "a protocol that differs from rrn's default (how is said under [k])."
)


def _baseline_text(report: TaskReport) -> str:
    if not report.baseline:
        return "no baseline"
    key, value = report.baseline
    return f"baseline {key}={value}" if any(row.is_baseline for row in report.rows) else \
        f"no group has {key}={value}, so no comparison"


def _published_label(index: int, entry) -> str:
    return f"published [{index}]" + ("" if entry.matches else " ≠")


def _key_columns(report: TaskReport) -> list[str]:
    return report.columns or ["group"]


def _our_cells(report: TaskReport, row: Row, index: int, bold) -> list[str]:
    label = report.cells(row) or ["all runs"]
    cells = []
    for metric in report.metrics:
        text = fmt.summary(row.summaries[metric.name], metric)
        cells.append(bold(text) if text and index in report.best.get(metric.name, ()) else text)
    source = f"ours G{index + 1}" + (" (baseline)" if row.is_baseline else "")
    return [source, *label, str(len(row.group.runs)), parameters_text(row.group), minutes_text(row.group), *cells]


def parameters_text(group) -> str:
    """The group's trainable parameter count (`95,064`; `95,064-96,000` if its runs differ)."""
    counts = group.parameters
    return "" if not counts else f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,}-{counts[-1]:,}"


def minutes_text(group) -> str:
    minutes = group.fit_minutes
    return "" if minutes is None else f"{minutes:.1f}"


def _shown(value) -> str:
    return "" if value is None else str(value)


def _published_cells(report: TaskReport, index: int, entry) -> list[str]:
    # the settings the published row is shown for (e.g. task.model.output=nade) go in their own columns, so a
    # row says which of our groups it compares with
    label = [_shown(entry.where.get(key)) for key in _key_columns(report)]
    label[0] = f"{label[0]}: {entry.model}" if label[0] else entry.model
    if "cell.name" in report.columns and entry.cell:
        position = report.columns.index("cell.name")
        label[position] = f"{entry.cell}: {entry.model}" if position == 0 else entry.cell
    cells = [fmt.published_value(entry.value, entry.sd, entry.decimals) if metric.name == entry.metric else ""
             for metric in report.metrics]
    return [_published_label(index, entry), *label, "", "", "", *cells]


def _comparison_rows(report: TaskReport) -> list[list[str]]:
    number = {id(row): index + 1 for index, row in enumerate(report.rows)}

    def short(row: Row) -> str:
        return f"G{number[id(row)]} ({report.cells(row)[0]})" if report.columns else f"G{number[id(row)]}"

    return [[short(row), short(row.baseline), *[fmt.difference(row.differences.get(m.name), m) for m in report.metrics]]
            for row in report.rows if row.baseline is not None]


def _protocol_rows(report: TaskReport) -> list[list[str]]:
    rows = []
    for index, entry in enumerate(report.published, 1):
        value = fmt.published_value(entry.value, entry.sd, entry.decimals)
        rows.append([f"[{index}]", f"{entry.citation}, {entry.table}", entry.model, f"{entry.metric} = {value}",
                     entry.protocol.split, entry.protocol.parameters, entry.protocol.selection,
                     entry.protocol.evaluation, ("matches: " if entry.matches else "") + entry.ours, entry.verified])
    return rows


# after each group's settings: its runs, trainable parameters, mean training minutes (fit, as each run measured it)
COUNT_COLUMNS = ["n", "params", "train min"]

PROTOCOL_HEADER = ["", "source", "model", "number", "split", "parameters", "model selection", "evaluation",
                   "rrn's default protocol", "where the number was read"]


def _footnotes(report: TaskReport) -> list[str]:
    """One line per distinct (source, protocol note), naming every [k] it covers."""
    notes: dict[str, list[int]] = {}
    for index, entry in enumerate(report.published, 1):
        text = (f"{entry.citation}, {entry.table}. rrn's default protocol: {entry.ours.rstrip('.')}. "
                f"Read: {entry.verified.rstrip('.')}.")
        notes.setdefault(text, []).append(index)
    return [f"[{', '.join(map(str, indices))}] {text}" for text, indices in notes.items()]


def terminal(reports: list[TaskReport], failed: list[Run], console=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    def bold(text: str) -> str:
        return f"[bold]{escape(text)}[/bold]"

    def plain(cells: list[str]) -> list[str]:  # settings such as [0.9, 0.05, 0.05] are text, not rich markup
        return [cell if cell.startswith("[bold]") else escape(cell) for cell in cells]

    if console is None:
        console = Console()
        if not console.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
            console = Console(width=180)  # piped into a file or a log: wide lines, no folding (COLUMNS= wins)
    for report in reports:
        table = Table(title=f"{report.task}: {len(report.rows)} groups, {report.runs} runs ({_baseline_text(report)})",
                      title_justify="left", show_lines=False)
        for column in ["source", *_key_columns(report), *COUNT_COLUMNS, *[m.label for m in report.metrics]]:
            table.add_column(column, overflow="fold")
        for index, row in enumerate(report.rows):
            table.add_row(*plain(_our_cells(report, row, index, bold)))
        for index, entry in enumerate(report.published, 1):
            table.add_row(*plain(_published_cells(report, index, entry)), style="dim italic")
        console.print(table)
        comparisons = _comparison_rows(report)
        if comparisons:
            compare = Table(title=f"{report.task}: difference from the baseline group, 95% CI, Welch's p",
                            title_justify="left")
            for column in ["group", "baseline", *[f"Δ {m.label}" for m in report.metrics]]:
                compare.add_column(column, overflow="fold")
            for cells in comparisons:
                compare.add_row(*plain(cells))
            console.print(compare)
        for note in _footnotes(report):
            console.print(f"[dim]{escape(note)}[/dim]", highlight=False)
    if failed:
        table = Table(title="not averaged: unfinished or failed runs", title_justify="left")
        for column in ("run", "task", "cell", "status", "why"):
            table.add_column(column, overflow="fold")
        for run in failed:
            table.add_row(*plain([shown_path(run.path), run.task, run.cell, run.status, run.reason]))
        console.print(table)


def shown_path(path: Path) -> str:
    """A run folder relative to the working directory when it is below it (reports stay machine-independent)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def shown_overrides(run: Run) -> str:
    """The run's overrides without the run-local ones (data.root=..., threads=..., logger=...)."""
    return " ".join(item for item in run.overrides if not is_run_local(item.partition("=")[0].lstrip("+~")))


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    escape = lambda text: str(text).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(map(escape, header)) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(map(escape, row)) + " |" for row in rows]
    return lines + [""]


def markdown(reports: list[TaskReport], failed: list[Run], out: Path, command: str, pictures: dict) -> Path:
    lines = ["# rrn-report", "", f"Made by `{command}`.", "", EXPLANATION, ""]
    for report in reports:
        lines += [f"## {report.task}", "",
                  f"{len(report.rows)} groups, {report.runs} runs; {_baseline_text(report)}.", ""]
        header = ["source", *_key_columns(report), *COUNT_COLUMNS, *[m.label for m in report.metrics]]
        rows = [_our_cells(report, row, index, lambda text: f"**{text}**") for index, row in enumerate(report.rows)]
        rows += [_published_cells(report, index, entry) for index, entry in enumerate(report.published, 1)]
        lines += _md_table(header, rows)
        comparisons = _comparison_rows(report)
        if comparisons:
            lines += ["Difference from the baseline group (G*n* as in the table above): Δ [95% CI] and Welch's p.", ""]
            lines += _md_table(["group", "baseline", *[f"Δ {m.label}" for m in report.metrics]], comparisons)
        if report.published:
            lines += ["Published numbers and their protocols:", ""]
            lines += _md_table(PROTOCOL_HEADER, _protocol_rows(report))
        for name in pictures.get(report.task, []):
            lines += [f"![{report.task}]({name})", ""]
        if not any(run.history for row in report.rows for run in row.group.runs):
            lines += ["No validation curves: these results.json files have no per-epoch `history`.", ""]
        lines += ["Runs:", ""]
        run_rows = [[f"G{index + 1}", str(run.seed), shown_path(run.path), shown_overrides(run),
                     *[fmt.number(run.metrics.get(m.name, float("nan")) * m.scale, fmt.decimals(m))
                       for m in report.metrics]]
                    for index, row in enumerate(report.rows) for run in row.group.runs]
        lines += _md_table(["group", "seed", "run", "overrides", *[m.label for m in report.metrics]], run_rows)
    if failed:
        lines += ["## Not averaged: unfinished or failed runs", ""]
        lines += _md_table(["run", "task", "cell", "status", "why"],
                           [[shown_path(run.path), run.task, run.cell, run.status, run.reason] for run in failed])
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


CSV_HEADER = ["task", "source", "group", "settings", "metric", "n", "parameters", "fit_minutes", "mean", "sd", "baseline", "difference",
              "ci_low", "ci_high", "p_value", "df", "citation", "protocol_matches", "read_in"]


def csv_file(reports: list[TaskReport], failed: list[Run], out: Path) -> Path:
    """One line per (group, metric) and per published number; unfinished runs as source=not_averaged."""
    path = out / "report.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_HEADER)
        for report in reports:
            for row in report.rows:
                settings = "; ".join(f"{k}={v}" for k, v in row.label.items())
                for metric in report.metrics:
                    summary = row.summaries[metric.name]
                    difference = row.differences.get(metric.name)
                    baseline = (report.name(row.baseline) if row.baseline
                                else "(is baseline)" if row.is_baseline else "")
                    writer.writerow([report.task, "ours", report.name(row), settings, metric.name, summary.n,
                                     "/".join(map(str, row.group.parameters)),
                                     "" if row.group.fit_minutes is None else round(row.group.fit_minutes, 2),
                                     summary.mean, summary.sd, baseline,
                                     *([difference.difference, difference.low, difference.high, difference.p_value,
                                        difference.df] if difference else ["", "", "", "", ""]), "", "", ""])
            for entry in report.published:
                writer.writerow([report.task, "published", entry.model, entry.cell or "", entry.metric, entry.n or "",
                                 "", "", entry.value, "" if entry.sd is None else entry.sd, "", "", "", "", "", "",
                                 f"{entry.citation}, {entry.table}", entry.matches, entry.verified])
        for run in failed:
            writer.writerow([run.task, "not_averaged", shown_path(run.path), run.status, "", "", "", "", "", "", "", "", "",
                             "", "", "", "", "", run.reason])
    return path


def write_all(reports: list[TaskReport], failed: list[Run], out: Path, command: str) -> list[Path]:
    """report.md, report.csv and <task>_metrics.png / <task>_curves.png in `out`; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    pictures: dict[str, list[str]] = {}
    written = []
    for report in reports:
        for make, suffix in ((metric_picture, "metrics"), (curve_picture, "curves")):
            path = make(report, out / f"{report.task}_{suffix}.png")
            if path:
                pictures.setdefault(report.task, []).append(path.name)
                written.append(path)
    return [markdown(reports, failed, out, command, pictures), csv_file(reports, failed, out), *written]
