"""The device check: on a machine with a CUDA GPU, rrn's CUDA tests and rrn-bench on CUDA in one command that
finishes within a time limit (8 minutes by default), writing JSON and Markdown to an output folder.

    python tools/device_check.py --out device_check/            # --limit 480 (seconds, all parts together)

Parts, in order, each under its own timeout (cut to what is left of the limit; a part that runs over is killed
and marked "timed out", its log kept, and the next part runs):

1. `pytest -m cuda`: tests/test_cuda.py (fast path against the CPU, 16-mixed and bf16-mixed autocast, a plugin's
   compiled step, rrn-train in both mixed precisions, two-GPU DDP where there are two) and every other test
   marked `cuda`;
2. the Triton kernel's and mixed precision's own test files (tests/test_triton_kernel.py,
   tests/test_fast_precision.py), whose GPU tests run where there is a GPU;
3. rrn-bench on CUDA, T = 100: res_rnn and gres_rnn against cuDNN's nn.LSTM and nn.GRU, float32 and 16-mixed,
   H = 128, 512, 1024, B = 64, I = 128, training and inference;
4. the same at T = 1000.

Written to the output folder: device_check.json (the machine, each part's command, status, seconds, exit code
and log file), device_check.md (the same as a table, then each benchmark's bench.md), one log per part, and
each benchmark's bench.json/bench.md in its own folder. On a machine without a CUDA device it says so, writes
device_check.json with status "no-cuda" and exits 0: nothing is measured, nothing is claimed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMIT = 480  # seconds: the whole check must finish in 8 minutes
BENCH = ["cells=res_rnn,gres_rnn", "device=cuda", "precision=32-true,16-mixed", "batch=64", "input=128",
         "hidden=128,512,1024", "mode=train,infer", "warmup=3"]


@dataclass
class Part:
    name: str
    command: list[str]
    timeout: float  # seconds, before the overall limit cuts it
    folder: str = ""  # where the part writes its own results, relative to the output folder
    status: str = "not run"  # passed, failed, timed out, skipped, not run
    seconds: float = 0.0
    returncode: int | None = None
    log: str = ""
    note: str = ""
    extra: dict = field(default_factory=dict)


def console_script(name: str) -> str:
    """The console script installed next to this Python (rrn-bench), else its name on PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else name


def plan(out: Path) -> list[Part]:
    """The parts of the check, in the order they run."""
    pytest = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"]
    own_tests = [name for name in ("tests/test_triton_kernel.py", "tests/test_fast_precision.py")
                 if (REPO / name).is_file()]
    bench = [console_script("rrn-bench"), *BENCH]
    return [
        Part("cuda tests", [*pytest, "-m", "cuda", "tests", f"--junitxml={out / 'cuda_tests.xml'}"], 150),
        Part("triton and precision tests", [*pytest, *own_tests, f"--junitxml={out / 'kernel_tests.xml'}"]
             if own_tests else [], 90, note="" if own_tests else "no test files of the Triton kernel or precision"),
        Part("rrn-bench T=100", [*bench, "length=100", "repeats=10", f"out={out / 'bench_T100'}"], 100,
             folder="bench_T100"),
        Part("rrn-bench T=1000", [*bench, "length=1000", "repeats=5", f"out={out / 'bench_T1000'}"], 130,
             folder="bench_T1000"),
    ]


def run_part(part: Part, out: Path, timeout: float) -> Part:
    """Run one part under `timeout` seconds (its process group killed past it), its output in out/<name>.log."""
    part.log = part.name.replace(" ", "_").replace("=", "") + ".log"
    if not part.command:
        part.status = "skipped"
        return part
    if timeout < 5:
        part.status, part.note = "skipped", "the time limit was used up by the parts before"
        return part
    begin = time.monotonic()
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "4"), HF_DATASETS_OFFLINE="1",
               HF_HUB_OFFLINE="1", WANDB_MODE="offline", PYTHONUNBUFFERED="1")
    with open(out / part.log, "w") as log:
        log.write("$ " + " ".join(part.command) + "\n")
        log.flush()
        process = subprocess.Popen(part.command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        try:
            part.returncode = process.wait(timeout=timeout)
            part.status = "passed" if part.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            part.status, part.note = "timed out", f"killed after {timeout:.0f} s; its log keeps what it printed"
    part.seconds = round(time.monotonic() - begin, 1)
    return part


def machine() -> dict:
    import torch

    info = dict(python=platform.python_version(), torch=torch.__version__, cuda_build=torch.version.cuda,
                cuda_devices=torch.cuda.device_count() if torch.cuda.is_available() else 0)
    if info["cuda_devices"]:
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(info["cuda_devices"])]
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def markdown(report: dict, out: Path) -> str:
    lines = [f"Device check {report['started']}: {', '.join(report['machine'].get('gpus', [])) or 'no GPU'}, "
             f"torch {report['machine']['torch']} (CUDA {report['machine']['cuda_build']}); status "
             f"{report['status']}, {report['seconds']:.0f} s of a {report['limit']} s limit.", "",
             "| part | status | seconds | exit | log | note |", "| --- | --- | ---: | ---: | --- | --- |"]
    for part in report["parts"]:
        lines.append(f"| {part['name']} | {part['status']} | {part['seconds']:.0f} | "
                     f"{'' if part['returncode'] is None else part['returncode']} | {part['log']} | {part['note']} |")
    for part in report["parts"]:
        table = out / part["folder"] / "bench.md" if part["folder"] else None
        if table is not None and table.is_file():
            lines += ["", f"## {part['name']}", "", table.read_text().rstrip()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("device_check"), help="output folder (default: device_check)")
    parser.add_argument("--limit", type=float, default=LIMIT, help=f"seconds for all parts (default {LIMIT})")
    args = parser.parse_args(argv)
    started, begin = time.strftime("%Y-%m-%d %H:%M:%S %Z"), time.monotonic()
    info = machine()
    args.out.mkdir(parents=True, exist_ok=True)
    report = dict(started=started, limit=args.limit, machine=info, parts=[])
    if not info["cuda_devices"]:
        report.update(status="no-cuda", seconds=0.0)
        (args.out / "device_check.json").write_text(json.dumps(report, indent=2))
        print(f"device check: no CUDA device (torch {info['torch']}, CUDA build {info['cuda_build']}): nothing run, "
              f"nothing measured; run it on a machine with an NVIDIA GPU")
        return 0
    out = args.out.resolve()
    for part in plan(out):
        left = args.limit - (time.monotonic() - begin) - 5  # 5 s to write the report
        run_part(part, out, min(part.timeout, left))
        print(f"device check: {part.name}: {part.status} in {part.seconds:.0f} s ({out / part.log})", flush=True)
        report["parts"].append(asdict(part))
    statuses = {part["status"] for part in report["parts"]}
    report.update(status="passed" if statuses <= {"passed", "skipped"} else "incomplete",
                  seconds=round(time.monotonic() - begin, 1))
    (out / "device_check.json").write_text(json.dumps(report, indent=2))
    (out / "device_check.md").write_text(markdown(report, out))
    print(f"device check: {report['status']} in {report['seconds']:.0f} s; wrote {out / 'device_check.json'} and "
          f"{out / 'device_check.md'}")
    return 0 if report["status"] == "passed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
