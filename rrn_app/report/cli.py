"""`rrn-report PATH... [baseline=KEY=VALUE] [metrics=NAME,...] [out=DIR]`: compare runs with their spread.

PATH: run folders, multirun folders, any folder above them (e.g. runs/ or results/sst), or results.json files.
baseline: the group every other group is compared with (default cell=lstm; any dotted config key works, e.g.
baseline=cell.hidden_size=80); metrics: the metrics to show instead of each task's headline ones; out: where
report.md, report.csv and the pictures go (default: <first PATH>/report).

`rrn-report keep PATH... to=DIR` copies the finished runs' results.json into DIR (e.g. results/<suite>/, kept
in git), with this machine's paths taken out; `rrn-report DIR` then reports them as it did the originals.
"""

from __future__ import annotations

import difflib
import shlex
import subprocess
import sys
from pathlib import Path

from rrn_app.option_checks import UserError

OPTIONS = ("baseline", "metrics", "out")
USAGE = "usage: rrn-report PATH... [baseline=KEY=VALUE] [metrics=NAME,...] [out=DIR]"


def parse(arguments: list[str]) -> tuple[list[str], dict[str, str]]:
    """Split the command line into paths and key=value options; unknown options name the closest known one."""
    paths, options = [], {}
    for argument in arguments:
        key, sep, value = argument.partition("=")
        if sep and key in OPTIONS:
            if not value:
                raise UserError(f"{key}= needs a value ({USAGE}).")
            options[key] = value
        elif sep and not Path(argument).exists():
            close = difflib.get_close_matches(key, OPTIONS, n=1)
            hint = f" Did you mean {close[0]}=?" if close else ""
            raise UserError(f"unknown option {key!r}.{hint} Options: {', '.join(OPTIONS)} ({USAGE}).")
        else:
            paths.append(argument)
    if not paths:
        raise UserError(f"give at least one PATH: a run folder, a multirun folder or results.json ({USAGE}).")
    return paths, options


def commit() -> str:
    """The git commit of the working directory, if it is a repository (for the report's provenance line)."""
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def run(arguments: list[str]) -> list[Path]:
    """The whole command: collect, group, compare, print, write; returns the files written."""
    from rrn_app.report.collect import collect_runs, group_runs
    from rrn_app.report.render import terminal, write_all
    from rrn_app.report.table import DEFAULT_BASELINE, build, check_baseline, parse_baseline

    paths, options = parse(arguments)
    runs = collect_runs(paths)
    if not runs:
        raise UserError(f"no runs under {', '.join(paths)}: no results.json and no run folder (.hydra/). "
                        "Train with rrn-train first, or point at the folder that holds the runs.")
    groups = group_runs(runs)
    baseline = parse_baseline(options["baseline"]) if "baseline" in options else DEFAULT_BASELINE
    if "baseline" in options and groups:
        check_baseline(groups, baseline)
    metrics = [name.strip() for name in options["metrics"].split(",") if name.strip()] if "metrics" in options else None
    reports = build(groups, baseline, metrics)
    failed = [run for run in runs if not run.finished]
    terminal(reports, failed)
    first = Path(paths[0])
    out = Path(options["out"]) if "out" in options else (first.parent if first.is_file() else first) / "report"
    made = "rrn-report " + " ".join(shlex.quote(argument) for argument in arguments)
    revision = commit()
    written = write_all(reports, failed, out, made + (f"` at commit `{revision}" if revision else ""))
    print(f"wrote {', '.join(str(path) for path in written)}")
    return written


def main() -> None:
    arguments = sys.argv[1:]
    if arguments and arguments[0] in ("-h", "--help"):
        print(__doc__.strip())
        return
    try:
        if arguments and arguments[0] == "keep":
            from rrn_app.report.keep import keep

            keep(arguments[1:])
            return
        run(arguments)
    except UserError as error:
        print(f"rrn-report: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
