"""rrn-report: many runs' results.json -> groups of seeds -> mean ± sd, Welch comparisons, published numbers.

collect.py reads runs from disk and groups them by their settings; stats.py holds the statistics; headline.py
names each task's headline metrics; published.py the papers' numbers with their protocols; table.py assembles
one report per task; render.py writes it to the terminal, report.md, report.csv and pictures; cli.py is the
command line.
"""

from rrn_app.report.collect import Group, Run, collect_runs, group_runs
from rrn_app.report.stats import Difference, Summary, summarize, welch

__all__ = ["Difference", "Group", "Run", "Summary", "collect_runs", "group_runs", "summarize", "welch"]
