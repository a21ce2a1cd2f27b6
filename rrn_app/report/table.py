"""Groups -> one report per task: the differing settings, every headline metric's summary per group, the best
group per metric, each group against its baseline group, and the published rows that belong beside them."""

from __future__ import annotations

import difflib
import json
from collections import Counter
from dataclasses import dataclass, field

import yaml

from rrn_app.report.collect import Group, differing_keys
from rrn_app.report.headline import Metric, describe, headline_metrics
from rrn_app.report.published import Published, published_for
from rrn_app.report.stats import Difference, Summary, summarize, welch
from rrn_app.option_checks import UserError

DEFAULT_BASELINE = ("cell", "lstm")
MAX_COLUMNS = 6  # more differing settings than this: the first ones as columns, the rest in one "other settings"
OTHER = "other settings"


@dataclass(eq=False)  # rows are compared by identity
class Row:
    """One group of ours: its label (differing settings), summaries, and comparison with its baseline group."""

    group: Group
    label: dict[str, str]
    summaries: dict[str, Summary]
    is_baseline: bool = False
    baseline: "Row | None" = None
    differences: dict[str, Difference | None] = field(default_factory=dict)


@dataclass
class TaskReport:
    task: str
    keys: list[str]  # the settings that differ between this task's groups: the table's columns
    metrics: list[Metric]
    rows: list[Row]
    published: list[Published]
    baseline: tuple[str, str] | None
    best: dict[str, set[int]] = field(default_factory=dict)  # metric -> indices of the best rows (ties: all)

    @property
    def runs(self) -> int:
        return sum(len(row.group.runs) for row in self.rows)

    @property
    def columns(self) -> list[str]:
        """The settings shown as columns: all differing ones, or the first MAX_COLUMNS - 1 and "other settings"."""
        if len(self.keys) <= MAX_COLUMNS:
            return list(self.keys)
        return [*self.keys[:MAX_COLUMNS - 1], OTHER]

    def name(self, row: Row) -> str:
        """A short name for `row`: its shown columns as key=value, then its other settings."""
        parts = [f"{key}={value}" if key != OTHER else value for key, value in zip(self.columns, self.cells(row))]
        return ", ".join(part for part in parts if part) or "all runs"

    def cells(self, row: Row) -> list[str]:
        """`row`'s value in each of `columns`; "other settings" lists where it departs from the most common value."""
        shown_keys = [key for key in self.columns if key != OTHER]
        cells = [row.label[key] for key in shown_keys]
        if OTHER in self.columns:
            cells.append(other_settings(self, row, self.keys[len(shown_keys):]))
        return cells


def other_settings(report: "TaskReport", row: Row, keys: list[str]) -> str:
    """`key=value; ...` for the keys where `row` differs from the value most groups have; a config subtree the
    row lacks entirely is one `subtree=—` entry."""
    departures = []
    for key in keys:
        common = Counter(other.label[key] for other in report.rows).most_common(1)[0][0]
        if row.label[key] != common:
            departures.append((key, row.label[key]))
    absent = {key for key, value in departures if value == "—"}
    parts, folded = [], set()
    for key, value in departures:
        top = key.split(".")[0]
        whole = [k for k in keys if k.split(".")[0] == top]
        if key in absent and all(k in absent for k in whole) and len(whole) > 1:
            if top not in folded:
                folded.add(top)
                parts.append(f"{top}=—")
            continue
        parts.append(f"{key}={value}")
    return "; ".join(parts)


def shown(value) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def parse_baseline(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise UserError(f"baseline={text!r} is not allowed: write baseline=KEY=VALUE, e.g. baseline=cell=lstm or "
                        "baseline=cell.hidden_size=80.")
    return key, value


def _matches(settings: dict, key: str, value: str) -> bool:
    """settings[key] == value, where `cell=lstm` means the group `cell` chose `lstm` (cell.name)."""
    for name in (key, f"{key}.name"):
        if name in settings:
            actual = settings[name]
            try:
                typed = yaml.safe_load(value)
            except yaml.YAMLError:
                typed = value
            return actual == typed or shown(actual) == value
    return False


def check_baseline(groups: list[Group], baseline: tuple[str, str]) -> None:
    """An explicit baseline must name a setting the runs have, and a value one group has."""
    key, value = baseline
    known = sorted({name for group in groups for name in group.settings})
    if not any(name in known for name in (key, f"{key}.name")):
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" Did you mean baseline={close[0]}={value}?" if close else ""
        raise UserError(f"baseline={key}={value}: no run has the setting {key!r}.{hint} Settings are dotted config "
                        "keys such as cell, cell.hidden_size, task.data.train_on.")
    if not any(_matches(group.settings, key, value) for group in groups):
        values = sorted({shown(group.settings.get(key, group.settings.get(f"{key}.name"))) for group in groups})
        raise UserError(f"baseline={key}={value}: no group of runs has {key}={value}; the runs have "
                        f"{key}={', '.join(values)}.")


def _closest_baseline(row: Row, candidates: list[Row], keys: list[str], baseline_key: str) -> Row:
    """The baseline group that agrees with `row` on the most other differing settings (settings only one of the
    two has, such as a res_lstm option an lstm lacks, do not count)."""
    others = [key for key in keys if key not in (baseline_key, f"{baseline_key}.name")]

    def agreement(candidate: Row) -> int:
        mine, theirs = row.group.settings, candidate.group.settings
        return sum(key in mine and key in theirs and mine[key] == theirs[key] for key in others)

    return max(candidates, key=agreement)  # max keeps the first of equals


def build_task(task: str, groups: list[Group], baseline: tuple[str, str] | None,
               metrics: list[str] | None) -> TaskReport:
    keys = differing_keys(groups)
    logged = {name for group in groups for run in group.runs for name in run.metrics}
    names = [name for name in metrics if name in logged] if metrics else headline_metrics(task, logged)
    described = [describe(name, task) for name in names]
    rows = []
    for group in groups:
        label = {key: shown(group.settings[key]) if key in group.settings else "—" for key in keys}
        summaries = {m.name: summarize(value * m.scale for value in group.values(m.name)) for m in described}
        rows.append(Row(group, label, summaries))
    published = [entry for entry in published_for(task, [group.settings for group in groups]) if entry.metric in names]
    report = TaskReport(task, keys, described, rows, published, baseline)
    for metric in described:
        scored = [(index, row.summaries[metric.name].mean) for index, row in enumerate(rows)
                  if row.summaries[metric.name].n]
        if scored:
            pick = max if metric.higher_is_better else min
            top = pick(mean for _, mean in scored)
            report.best[metric.name] = {index for index, mean in scored if mean == top}
    if baseline:
        key, value = baseline
        candidates = [row for row in rows if _matches(row.group.settings, key, value)]
        for row in rows:
            row.is_baseline = row in candidates
        for row in rows:
            if candidates and not row.is_baseline:
                row.baseline = _closest_baseline(row, candidates, keys, key)
                row.differences = {
                    m.name: welch([v * m.scale for v in row.group.values(m.name)],
                                  [v * m.scale for v in row.baseline.group.values(m.name)]) for m in described}
    return report


def build(groups: list[Group], baseline: tuple[str, str] | None = DEFAULT_BASELINE,
          metrics: list[str] | None = None) -> list[TaskReport]:
    """One TaskReport per task, in order of first appearance."""
    if metrics:
        logged = sorted({name for group in groups for run in group.runs for name in run.metrics
                         if "_class" not in name})
        for name in metrics:
            if name not in logged:
                close = difflib.get_close_matches(name, logged, n=1)
                hint = f" Did you mean {close[0]}?" if close else ""
                raise UserError(f"metrics: no run logged {name!r}.{hint} Logged: {', '.join(logged)}.")
    tasks: dict[str, list[Group]] = {}
    for group in groups:
        tasks.setdefault(group.task, []).append(group)
    return [build_task(task, members, baseline, metrics) for task, members in tasks.items()]
