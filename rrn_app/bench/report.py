"""`rrn-bench`'s tables: the terminal table (printed one group of rows at a time), the Markdown report with its
scaling table, and the machine they were measured on."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from rrn_app.bench.models import UNKNOWN_PATH, Model
from rrn_app.bench.settings import Settings


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = dict(cpu=cpu, cpu_count=os.cpu_count(), platform=platform.platform(), python=platform.python_version(),
                torch=torch.__version__)
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name()
        info["cudnn"] = torch.backends.cudnn.version()
    return info


COLUMNS = ["threads", "B", "T", "I", "H", "cell", "path"]


def _fraction(value) -> str:
    return "" if value is None else f"{value:.2f}"


def _mib(value) -> str:
    return "" if value is None else f"{value / 2**20:.1f}"


def row_cells(row: dict, modes: list[str]) -> list[str]:
    cells = [str(row["threads"]), str(row["batch"]), str(row["length"]), str(row["input"]), str(row["hidden"]),
             row["cell"], row["path"]]
    for mode in modes:
        stats = row[mode]
        cells += [f"{stats['tokens_per_second']:,.0f}", f"{stats['iqr_rel']:.0%}",
                  f"{stats['ratio_to_lstm']:.2f}x", _fraction(stats.get("gemm_fraction")), _mib(stats.get("peak_bytes"))]
    return cells


def headers(modes: list[str]) -> list[str]:
    result = list(COLUMNS)
    for mode in modes:
        result += [f"{mode} tok/s", "IQR", "vs nn.LSTM", "of GEMM", f"{mode} peak MiB"]
    return result


def format_rows(rows: list[dict], modes: list[str], header: bool = True, floor: list[int] | None = None) -> str:
    """The terminal table: each column as wide as its widest entry, header included, and at least `floor`
    (`run` prints one group of rows at a time, under the header of the first: its floor, from every value the
    settings can give, keeps their columns in line). Names left-aligned, numbers right-aligned."""
    names = headers(modes)
    table = [row_cells(row, modes) for row in rows]
    floor = floor or [0] * len(names)
    widths = [max(len(name), floor[i], *(len(cells[i]) for cells in table)) for i, name in enumerate(names)]
    lines = ([names] if header else []) + table
    return "\n".join("  ".join(cell.ljust(width) if i in (5, 6) else cell.rjust(width)
                               for i, (cell, width) in enumerate(zip(cells, widths))).rstrip() for cells in lines)


def column_floor(settings: Settings, groups: list[list[Model]]) -> list[int]:
    """Widths every group's rows fit: the settings' sizes and threads, the models' labels, the longest path name,
    13 characters of tokens/s ("1,234,567,890"), a spread ("1000%"), a ratio ("12.34x") and MiB ("12345.6")."""
    sizes = [settings.threads, settings.batch, settings.length, settings.input, settings.hidden]
    floor = [max(len(str(value)) for value in values) for values in sizes]
    floor += [max(14, *(len(model.label) for group in groups for model in group)), len("python/autograd")]
    return floor + [13, 5, 6, 5, 7] * len(settings.modes)


def markdown(report: dict) -> str:
    modes = [m for m in ("train", "infer") if report["rows"] and m in report["rows"][0]]
    lines = [f"`{report['command']}`", "",
             f"Machine: {report['machine']['cpu']} ({report['machine']['cpu_count']} CPUs), torch "
             f"{report['machine']['torch']}" + (f", {report['machine']['cuda_device']}" if 'cuda_device' in
                                                report['machine'] else "") + ".",
             f"Load average (1, 5, 15 min) at the start {', '.join(f'{v:.2f}' for v in report['started']['loadavg'])}"
             f", at the end {', '.join(f'{v:.2f}' for v in report['finished']['loadavg'])}; `others CPU`: CPUs "
             f"used by other processes during each configuration. Median of {report['settings']['repeats']} "
             f"calls after {report['settings']['warmup']} warm-up calls; IQR relative to the median; training = "
             f"forward + backward. `of GEMM`: the row's matrix-product FLOP rate (2 x its weight matrices' "
             f"elements per token, 3 x that in training) over the machine's rate for a [B, H] x [H, H] product, "
             f"measured in the same run ({gemm_rates(report)}).", ""]
    head = headers(modes) + ["others CPU"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(" --- " if i in (5, 6) else " ---: " for i in range(len(head))) + "|")
    for row in report["rows"]:
        cells = row_cells(row, modes) + ["" if row["others_cpu"] is None else f"{row['others_cpu']:.2f}"]
        cells[5] = f"`{cells[5]}`"
        lines.append("| " + " | ".join(cells) + " |")
    scaling = report["settings"].get("scaling")
    if scaling:
        lines += ["", scaling_table(report, scaling)]
    if report["warnings"]:
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in report["warnings"]]
    unknown = unknown_paths(report["rows"])
    if unknown:
        lines += ["", unknown_paths_note(unknown)]
    if report.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def gemm_rates(report: dict) -> str:
    """The GEMM rates of a report's configurations, in GFLOP/s, once per (threads, B, H)."""
    rates = {}
    for row in report["rows"]:
        if row.get("gemm_flops_per_s"):
            rates.setdefault((row["threads"], row["batch"], row["hidden"]), row["gemm_flops_per_s"])
    return "; ".join(f"threads={t} B={b} H={h}: {rate / 1e9:,.1f} GFLOP/s" for (t, b, h), rate in rates.items())


def scaling_table(report: dict, scaling: str) -> str:
    """Training tokens/s (and inference) of each cell against the scaled size, one line per cell and threads."""
    values = sorted({row[scaling] for row in report["rows"]})
    modes = [m for m in ("train", "infer") if m in report["rows"][0]]
    lines = []
    for mode in modes:
        lines.append(f"{mode} tokens/s against {scaling} (x nn.LSTM):")
        lines.append("")
        lines.append("| cell | threads | " + " | ".join(f"{scaling}={v}" for v in values) + " |")
        lines.append("| --- | ---: |" + " ---: |" * len(values))
        seen = {}
        for row in report["rows"]:
            seen.setdefault((row["cell"], row["threads"]), {})[row[scaling]] = row[mode]
        for (cell, threads), by_value in seen.items():
            cells = [f"{by_value[v]['tokens_per_second']:,.0f} ({by_value[v]['ratio_to_lstm']:.2f}x)"
                     if v in by_value else "" for v in values]
            lines.append(f"| `{cell}` | {threads} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def unknown_paths(rows: list[dict]) -> list[str]:
    """The cells whose path rrn-bench could not identify, once each, in the order of the rows."""
    return list(dict.fromkeys(row["cell"] for row in rows if row["path"] == UNKNOWN_PATH))


def unknown_paths_note(cells: list[str]) -> str:
    """The line under the tables saying which paths are unknown and why."""
    return (f"Path unknown for {', '.join(cells)}: no rrn fast path, step-wise Recurrence or torch.nn recurrent "
            f"kernel inside, so rrn-bench cannot tell what runs it (a plugin's own kernel, say).")
