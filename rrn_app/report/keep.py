"""`rrn-report keep PATH... to=DIR`: copy the results.json of finished runs into a folder kept in git.

What a published table rests on must outlive the run folders (checkpoints, logs) it came from. Each finished
run's results.json is copied to `DIR/<run folder name>/results.json` with the machine's paths taken out: the
data root becomes `<data.root>`, the run folder `<run>`, so the files say nothing of where they were made
and `rrn-report DIR` groups them exactly as it grouped the originals (those keys are run-local). The code's
git commit is recorded as `commit` when the working directory is a repository. An existing copy is never
overwritten (a run already kept is skipped, and said so).
"""

from __future__ import annotations

import json
from pathlib import Path

from rrn_app.option_checks import UserError

USAGE = "usage: rrn-report keep PATH... to=DIR"


def _replace(value, old: str, new: str):
    """`value` with every string's `old` prefix or infix replaced by `new`, through dicts and lists."""
    if isinstance(value, str):
        return value.replace(old, new) if old else value
    if isinstance(value, dict):
        return {key: _replace(item, old, new) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace(item, old, new) for item in value]
    return value


def portable(results: dict, run_dir: Path, commit: str = "") -> dict:
    """results.json without this machine's paths: data root -> <data.root>, run folder -> <run>."""
    config = results.get("config") or {}
    data_root = str((config.get("data") or {}).get("root") or "")
    kept = dict(results)
    for old in sorted({str(run_dir.resolve()), str(run_dir), str(config.get("run_dir") or "")} - {""}, key=len,
                      reverse=True):
        kept = _replace(kept, old, "<run>")
    if data_root:
        kept = _replace(kept, str(Path(data_root).resolve()), "<data.root>")
        kept = _replace(kept, data_root, "<data.root>")
    if commit and "commit" not in kept:
        kept["commit"] = commit
    return kept


def keep(arguments: list[str]) -> list[Path]:
    """The whole subcommand; returns the files written."""
    from rrn_app.report.cli import commit as git_commit

    paths = [argument for argument in arguments if not argument.startswith("to=")]
    targets = [argument[3:] for argument in arguments if argument.startswith("to=")]
    if len(targets) != 1 or not targets[0] or not paths:
        raise UserError(f"give the runs and one destination folder ({USAGE}).")
    destination = Path(targets[0])
    revision = git_commit()
    written = []
    for given in map(Path, paths):
        if not given.exists():
            raise UserError(f"{given}: no such file or folder ({USAGE}).")
        for source in sorted([given] if given.is_file() else given.rglob("results.json")):
            try:
                results = json.loads(source.read_text())
            except (OSError, ValueError) as error:
                raise UserError(f"{source} is not a readable results.json ({error}); skip it or re-run it.") from None
            if results.get("status", "finished") != "finished":
                print(f"skipped {source}: status {results.get('status')!r}")
                continue
            target = destination / source.parent.name / "results.json"
            if target.exists():
                print(f"kept already: {target}")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(portable(results, source.parent, revision), indent=1) + "\n")
            written.append(target)
    print(f"kept {len(written)} run(s) in {destination}")
    return written
