"""`rrn-bench mode=data`: how long each task's training waits for its first batch, and what each batch after it costs.

    rrn-bench mode=data                                              every task, cold and warm, data.root=data
    rrn-bench mode=data tasks=sst,imdb data.root=~/data batches=200 out=bench-data/

Time to first batch is taken from the real command, started afresh as a user starts it:

    rrn-train task=<task> cell=lstm threads=1 logger=none data.root=<root> data.cache_dir=<cache> trainer.max_epochs=1
        +callbacks.first_batch._target_=rrn_app.bench.data.FirstBatchClock +callbacks.first_batch.path=<file>

The callback notes the time when rrn-train has made its callbacks (after Python's start, the imports and the
config), when fitting starts (after the data are read, the vocabulary and embeddings built, the model and the
Trainer made) and when the first training batch arrives (after Lightning's sanity-check validation batches),
and ends the process there. Launch to first batch is everything the user waits for. `cold`: a fresh datasets
cache (data.cache_dir) and a fresh rrn cache (RRN_CACHE_DIR, where the embedded datasets are unpacked), so
every data file is parsed from scratch; `warm`: the same command again with both caches filled. The
operating system's file cache is warm in both. `import lightning` alone is timed too (a fresh process, once).

Then, in this process, each task's DataModule (the same config, the warm cache) is set up and its training
loader runs `batches` batches, its validation loader as many: milliseconds per batch of loading alone (what
a bare PyTorch loop over the loader pays), the median over the batches after the first.

Options:
  tasks=sst,atis,imdb,char_lm,music   the tasks (default all);  cache=cold,warm (default both)
  data.root=DIR                       the data folder (default: data, as rrn-train's data.root)
  batches=100                         batches timed per loader;  cell=lstm;  threads=1 (torch threads)
  timeout=900                         seconds allowed per rrn-train run
  out=DIR                             write DIR/data.json and DIR/data.md
"""

from __future__ import annotations

import difflib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L

from rrn_app.keyvalue import KeyValueParser, Option
from rrn_app.option_checks import UserError

TASKS = ("sst", "atis", "imdb", "char_lm", "music")
CACHES = ("cold", "warm")
DEFAULTS = {"mode": "data", "tasks": ",".join(TASKS), "cache": ",".join(CACHES), "data.root": "data",
            "batches": "100", "cell": "lstm", "threads": "1", "timeout": "900", "out": ""}
PARSER = KeyValueParser({key: Option(default, str) for key, default in DEFAULTS.items()}, __doc__,
                        usage="(rrn-bench mode=data --help lists the keys)", noun="setting", context=" for mode=data")
PHASES = ("startup_s", "setup_s", "first_batch_s")  # launch -> callbacks made -> fit start -> first batch


class FirstBatchClock(L.Callback):
    """Writes {created, fit_start, first_batch} (time.time() of each) to `path` at the first training batch, then
    ends the process (rrn-bench mode=data needs nothing after it)."""

    def __init__(self, path: str):
        self.path, self.created, self.fit_start = path, time.time(), None

    def on_fit_start(self, trainer, pl_module) -> None:
        self.fit_start = time.time()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        record = {"created": self.created, "fit_start": self.fit_start, "first_batch": time.time()}
        Path(self.path).write_text(json.dumps(record))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@dataclass
class Settings:
    tasks: list[str]
    caches: list[str]
    root: str
    batches: int
    cell: str
    threads: int
    timeout: float
    out: Path | None
    argv: list[str] = field(default_factory=list)


def _whole(key: str, text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise UserError(f"{key}={text!r}: must be a whole number >= {least}, e.g. {key}={DEFAULTS[key]}")
    return value


def _names(key: str, text: str, known: tuple[str, ...]) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]}?" if close else ""
            raise UserError(f"{key}={text!r}: unknown {key[:-1] if key.endswith('s') else key} {name!r}.{hint} "
                            f"Known: {', '.join(known)}.")
    if not names:
        raise UserError(f"{key}= is empty: give one or more of {', '.join(known)}.")
    return names


def parse_arguments(argv: list[str]) -> Settings:
    values = PARSER.parse(argv)
    if values["mode"] != "data":
        raise UserError(f"mode={values['mode']!r}: this is rrn-bench's data mode (mode=data)")
    try:
        timeout = float(values["timeout"])
    except ValueError:
        timeout = 0.0
    if timeout <= 0:
        raise UserError(f"timeout={values['timeout']!r}: must be a number of seconds > 0, e.g. timeout=900")
    root = Path(values["data.root"]).expanduser().resolve()  # rrn-train runs in a temporary folder
    return Settings(tasks=_names("tasks", values["tasks"], TASKS), caches=_names("cache", values["cache"], CACHES),
                    root=str(root), batches=_whole("batches", values["batches"], 1), cell=values["cell"],
                    threads=_whole("threads", values["threads"], 1), timeout=timeout,
                    out=Path(values["out"]) if values["out"] else None, argv=list(argv))


# --- time to first batch: the real command, in a fresh process -------------------------------------------------


def rrn_train() -> list[str]:
    """The rrn-train console script beside this Python, else the module."""
    script = Path(sys.executable).with_name("rrn-train")
    return [str(script)] if script.exists() else [sys.executable, "-m", "rrn_app.train"]


def train_command(task: str, settings: Settings, cache: Path, clock: Path) -> list[str]:
    return [*rrn_train(), f"task={task}", f"cell={settings.cell}", f"threads={settings.threads}", "logger=none",
            f"data.root={settings.root}", f"data.cache_dir={cache / 'datasets'}", "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false", f"hydra.run.dir={cache / 'run'}",
            "+callbacks.first_batch._target_=rrn_app.bench.data.FirstBatchClock",
            f"+callbacks.first_batch.path={clock}"]


def environment(settings: Settings, cache: Path) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(settings.threads), "HF_DATASETS_OFFLINE": "1",
            "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "RRN_CACHE_DIR": str(cache / "rrn"),
            "HYDRA_FULL_ERROR": "1"}  # a crash ends on its exception's line (the report's), not Hydra's hint


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def first_batch(task: str, settings: Settings, cache: Path) -> dict:
    """One timed rrn-train run: {"seconds", "cpu_s", "startup_s", "setup_s", "first_batch_s"}, or {"error": ...}.

    cpu_s: the CPU time the process used until its first batch; on a busy machine wall time grows with the
    load, CPU time much less."""
    clock = cache / "clock.json"
    clock.unlink(missing_ok=True)
    shutil.rmtree(cache / "run", ignore_errors=True)
    cpu, launched = children_cpu(), time.time()
    try:
        done = subprocess.run(train_command(task, settings, cache, clock), capture_output=True, text=True,
                              env=environment(settings, cache), cwd=cache, timeout=settings.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"no first batch within timeout={settings.timeout:g} s"}
    cpu = children_cpu() - cpu
    if not clock.is_file():
        return {"error": failure(done.stderr + done.stdout) or f"rrn-train exited with {done.returncode} before "
                                                                "its first batch"}
    marks = json.loads(clock.read_text())
    return {"seconds": marks["first_batch"] - launched, "cpu_s": cpu, "startup_s": marks["created"] - launched,
            "setup_s": (marks["fit_start"] or marks["created"]) - marks["created"],
            "first_batch_s": marks["first_batch"] - (marks["fit_start"] or marks["created"])}


def failure(output: str) -> str | None:
    """Why a run failed, from its output: rrn-train's one-line error, else the last exception line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for number in range(len(lines) - 1, -1, -1):
        line = lines[number]
        if line.startswith("rrn-train: error:") or re.match(r"^[\w.]*(Error|Exception)\b[^ ]*:", line):
            follows = line.endswith(":") and number + 1 < len(lines)
            return f"{line} {lines[number + 1]}" if follows else line
    return lines[-1] if lines else None


def import_lightning_seconds() -> tuple[float, float]:
    """(wall, CPU) seconds of a fresh `python -c "import lightning"` (timed after the rrn-train runs, so its files
    are in the file cache as they were for the warm runs)."""
    cpu, started = children_cpu(), time.time()
    subprocess.run([sys.executable, "-c", "import lightning"], capture_output=True, check=False)
    return time.time() - started, children_cpu() - cpu


# --- loading per batch: the DataModule's loaders, in this process -----------------------------------------------


def data_module(task: str, settings: Settings, cache: Path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from rrn_app.config import config_dir

    overrides = [f"task={task}", f"cell={settings.cell}", f"data.root={settings.root}",
                 f"data.cache_dir={cache / 'datasets'}", f"run_dir={cache / 'run'}"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return instantiate(cfg.task.data)


def milliseconds_per_batch(loader, batches: int) -> float | None:
    """Median wall time of fetching each batch after the first (None if the loader has fewer than two)."""
    times, iterator = [], iter(loader)
    try:
        next(iterator)
        for _ in range(batches):
            started = time.perf_counter()
            next(iterator)
            times.append(time.perf_counter() - started)
    except StopIteration:
        pass
    return 1000 * statistics.median(times) if times else None


def loading(task: str, settings: Settings, cache: Path) -> dict:
    import torch

    previous, os.environ["RRN_CACHE_DIR"] = os.environ.get("RRN_CACHE_DIR"), str(cache / "rrn")
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        module = data_module(task, settings, cache)
        module.setup("fit")
        return {"train_ms": milliseconds_per_batch(module.train_dataloader(), settings.batches),
                "val_ms": milliseconds_per_batch(module.val_dataloader(), settings.batches)}
    except UserError as error:
        return {"error": str(error)}
    finally:
        torch.set_num_threads(threads)
        if previous is None:
            os.environ.pop("RRN_CACHE_DIR", None)
        else:
            os.environ["RRN_CACHE_DIR"] = previous


# --- the run and its table ---------------------------------------------------------------------------------------


def run(settings: Settings, log=print) -> dict:
    from rrn_app.bench.report import machine

    started = dict(time=time.strftime("%Y-%m-%d %H:%M:%S %Z"), loadavg=list(os.getloadavg()))
    rows = []
    for task in settings.tasks:
        cache = Path(tempfile.mkdtemp(prefix=f"rrn-bench-data-{task}-"))
        try:
            row = {"task": task}
            filled = first_batch(task, settings, cache)  # cold: fresh caches (untimed if only warm is asked for)
            if "cold" in settings.caches or "error" in filled:
                row["cold" if "cold" in settings.caches else "warm"] = filled
            if "warm" in settings.caches and "error" not in filled:
                row["warm"] = first_batch(task, settings, cache)
            if not any("error" in row.get(kind, {}) for kind in CACHES):
                row.update(loading(task, settings, cache))
            rows.append(row)
            log(format_rows([row], settings.caches, header=len(rows) == 1))
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    lightning_s, lightning_cpu_s = import_lightning_seconds()
    log(f"import lightning alone: {lightning_s:.1f} s ({lightning_cpu_s:.1f} s CPU; a fresh process)")
    finished = dict(time=time.strftime("%Y-%m-%d %H:%M:%S %Z"), loadavg=list(os.getloadavg()))
    for line in errors(rows):
        log(line)
    return dict(command="rrn-bench " + " ".join(settings.argv), machine=machine(), started=started,
                finished=finished, import_lightning_s=lightning_s, import_lightning_cpu_s=lightning_cpu_s,
                batches=settings.batches, threads=settings.threads, caches=settings.caches, rows=rows)


def errors(rows: list[dict]) -> list[str]:
    """"<task>: <why>" for each task that could not be measured (its first error)."""
    found = []
    for row in rows:
        parts = [part for part in (row.get("cold", {}), row.get("warm", {}), row) if "error" in part]
        if parts:
            found.append(f"{row['task']}: {parts[0]['error']}")
    return found


def headers(caches: list[str]) -> list[str]:
    result = ["task"]
    if "cold" in caches:
        result.append("cold s")
    if "warm" in caches:
        result += ["warm s", "warm CPU s", "startup s", "setup s", "to batch s"]
    return result + ["train ms/batch", "val ms/batch"]


def _seconds(part: dict | None, key: str = "seconds") -> str:
    if not part:
        return ""
    return "failed" if "error" in part else f"{part[key]:.1f}"


def _ms(value) -> str:
    return "" if value is None else f"{value:.2f}"


def row_cells(row: dict, caches: list[str]) -> list[str]:
    cells = [row["task"]]
    if "cold" in caches:
        cells.append(_seconds(row.get("cold")))
    if "warm" in caches:
        warm = row.get("warm")
        cells += [_seconds(warm)] + [_seconds(warm, key) if warm and "error" not in warm else ""
                                     for key in ("cpu_s", *PHASES)]
    return cells + [_ms(row.get("train_ms")), _ms(row.get("val_ms"))]


def format_rows(rows: list[dict], caches: list[str], header: bool = True) -> str:
    """Terminal table: each column as wide as its header, at least 8 characters (rows printed one at a time
    line up with the header printed above them)."""
    names = headers(caches)
    widths = [max(len(name), 8, *(len(row_cells(row, caches)[i]) for row in rows)) for i, name in enumerate(names)]
    lines = [names] if header else []
    lines += [row_cells(row, caches) for row in rows]
    return "\n".join("  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                               for i, (cell, width) in enumerate(zip(cells, widths))) for cells in lines)


def markdown(report: dict) -> str:
    machine, caches, load = report["machine"], report["caches"], report["started"]["loadavg"]
    phases = (" (warm CPU: the CPU time it used; startup: Python, imports and config; setup: data, vocabulary, "
              "embeddings, model and Trainer; to batch: Lightning's sanity-check validation and the first batch)")
    lines = [f"`{report['command']}`", "",
             f"Machine: {machine['cpu']} ({machine['cpu_count']} CPUs), torch {machine['torch']}, Python "
             f"{machine['python']}; load average (1, 5, 15 min) at the start {', '.join(f'{v:.2f}' for v in load)}, "
             f"at the end {', '.join(f'{v:.2f}' for v in report['finished']['loadavg'])}. `import lightning` "
             f"alone: {report['import_lightning_s']:.1f} s ({report['import_lightning_cpu_s']:.1f} s CPU). Seconds "
             "from launching rrn-train to its first training batch" + (phases if "warm" in caches else "")
             + f"; loading: median ms per batch over {report['batches']} batches, {report['threads']} torch "
             "thread(s).", ""]
    names = headers(caches)
    lines.append("| " + " | ".join(names) + " |")
    lines.append("| --- |" + " ---: |" * (len(names) - 1))
    for row in report["rows"]:
        lines.append("| " + " | ".join(row_cells(row, caches)) + " |")
    if errors(report["rows"]):
        lines += ["", "Not measured:", "", *(f"- {line}" for line in errors(report["rows"]))]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    """rrn-bench's entry for mode=data (rrn_app.bench.cli.main hands it the arguments)."""
    try:
        settings = parse_arguments(argv)
        report = run(settings)
    except UserError as error:
        print(f"rrn-bench: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.out is not None:
        settings.out.mkdir(parents=True, exist_ok=True)
        (settings.out / "data.json").write_text(json.dumps(report, indent=2, default=str))
        (settings.out / "data.md").write_text(markdown(report))
        print(f"wrote {settings.out / 'data.json'} and {settings.out / 'data.md'}")
