"""Pictures of a task report (matplotlib, no display needed): every seed's value per group with the mean and
sample standard deviation, and validation curves per epoch (mean and ±1 sd band over seeds) from results.json's
`history`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rrn_app.report.headline import describe
from rrn_app.report.table import OTHER, TaskReport


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def short_label(report: TaskReport, index: int) -> str:
    """`G1` (the group's id in the tables) and its first two shown settings, shortened."""
    row = report.rows[index]
    values = [value for key, value in zip(report.columns, report.cells(row)) if key != OTHER][:2]
    return "\n".join([f"G{index + 1}", *(value if len(value) <= 18 else value[:17] + "…" for value in values)])


def metric_picture(report: TaskReport, path: Path) -> Path | None:
    """One panel per metric: a dot per seed (jittered sideways), the mean as a bar with ±1 sd."""
    if not report.metrics or not report.rows:
        return None
    plt = _pyplot()
    panels = len(report.metrics)
    figure, axes = plt.subplots(1, panels, figsize=(max(3.2, 1.0 + 1.1 * len(report.rows)) * panels, 4.2),
                                squeeze=False)
    random = np.random.default_rng(0)
    for axis, metric in zip(axes[0], report.metrics):
        for position, row in enumerate(report.rows):
            values = np.array(row.group.values(metric.name)) * metric.scale
            if not values.size:
                continue
            axis.scatter(position + random.uniform(-0.12, 0.12, values.size), values, s=18, alpha=0.7, zorder=3)
            spread = values.std(ddof=1) if values.size > 1 else 0.0
            axis.errorbar(position, values.mean(), yerr=spread, fmt="_", color="black", markersize=22,
                          capsize=4, zorder=4)
        axis.set_xticks(range(len(report.rows)), [short_label(report, i) for i in range(len(report.rows))], fontsize=7)
        axis.set_xlim(-0.6, len(report.rows) - 0.4)
        arrow = "higher is better" if metric.higher_is_better else "lower is better"
        axis.set_title(f"{metric.label}\n{arrow}", fontsize=9)
        axis.grid(axis="y", alpha=0.3)
    figure.suptitle(f"{report.task}: every seed (dots), mean ± sd (bars)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def curve_picture(report: TaskReport, path: Path) -> Path | None:
    """One panel per validation metric in the runs' history: each group's mean per epoch and a ±1 sd band."""
    names = sorted({name for row in report.rows for run in row.group.runs for name in run.history
                    if name.startswith("val/") and "_class" not in name})
    headline = [m.name for m in report.metrics if m.name in names]
    names = headline or names
    if not names:
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 3.8), squeeze=False)
    for axis, name in zip(axes[0], names):
        metric = describe(name, report.task)
        for index, row in enumerate(report.rows):
            by_epoch: dict[int, list[float]] = {}
            for run in row.group.runs:
                epochs, values = run.history.get("epoch"), run.history.get(name)
                if not isinstance(values, list):
                    continue
                epochs = epochs if isinstance(epochs, list) and len(epochs) == len(values) else range(len(values))
                for epoch, value in zip(epochs, values):
                    if isinstance(value, (int, float)) and np.isfinite(value):
                        by_epoch.setdefault(int(epoch), []).append(float(value) * metric.scale)
            if not by_epoch:
                continue
            with_history = sum(isinstance(run.history.get(name), list) for run in row.group.runs)
            epochs = sorted(by_epoch)
            mean = np.array([np.mean(by_epoch[e]) for e in epochs])
            spread = np.array([np.std(by_epoch[e], ddof=1) if len(by_epoch[e]) > 1 else 0.0 for e in epochs])
            line, = axis.plot(epochs, mean, marker="o", markersize=3,
                              label=f"{short_label(report, index).replace(chr(10), ' ')} (n={with_history})")
            axis.fill_between(epochs, mean - spread, mean + spread, color=line.get_color(), alpha=0.2)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_title(metric.label, fontsize=9)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle(f"{report.task}: validation per epoch, mean ± sd over seeds", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
