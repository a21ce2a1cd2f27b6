"""The `rrn-bench` command: parse the settings, run every configuration (time, meter the load, measure memory),
print the table as it goes, write bench.json and bench.md; mode=data goes to rrn_app/bench/data.py,
mode=train-loop to rrn_app/bench/train_loop.py."""

from __future__ import annotations

import itertools
import json
import os
import statistics
import sys
import time

import torch

from rrn_app.bench import gemm, memory, peers, report
from rrn_app.bench.models import backend_context, build, has_fast_path, model_list, path_of
from rrn_app.bench.settings import Settings, parse_arguments
from rrn_app.bench.timing import SPREAD_WARNING, LoadMeter, time_models
from rrn_app.option_checks import UserError


def group_gemm_rate(group, batch: int, hidden: int, device, dtype) -> float:
    """The GEMM rate of gemm.py under the group's precision (its first model's autocast)."""
    with backend_context(group[0]):
        return gemm.gemm_rate(batch, hidden, device, dtype)


def run(settings: Settings, log=print) -> dict:
    from rrn_app.cells import fast

    groups = model_list(settings)
    device, cuda = torch.device(settings.device), settings.device.startswith("cuda")
    started = dict(time=time.strftime("%Y-%m-%d %H:%M:%S %Z"), loadavg=list(os.getloadavg()))
    if any(has_fast_path(m.kind) for group in groups for m in group):
        fast.backend()  # build the C++ extension before any timing
    rows, warnings_ = [], []
    configs = list(itertools.product(settings.threads, settings.batch, settings.length, settings.input,
                                     settings.hidden))
    memory_done: dict[tuple, dict] = {}
    floor = report.column_floor(settings, groups)
    for threads, batch, length, input_size, hidden in configs:
        torch.set_num_threads(threads)
        for group in groups:
            meter = LoadMeter()
            load_before = os.getloadavg()[0]
            for model in group:
                model.module = build(model, input_size, hidden, device, settings.dtype, settings.seed)
            generator = torch.Generator().manual_seed(settings.seed)
            x = torch.randn(batch, length, input_size, generator=generator, dtype=settings.dtype).to(device)
            results, rates = {}, []
            for mode in settings.modes:  # the limit (gemm.py) sampled before, between and after the modes' timings
                rates.append(group_gemm_rate(group, batch, hidden, device, settings.dtype))
                results[mode] = time_models(group, x, mode, settings.warmup, settings.repeats)
            rates.append(group_gemm_rate(group, batch, hidden, device, settings.dtype))
            rate = statistics.median(rates)
            others = meter.others()
            peaks = {}
            if settings.memory:
                if cuda:
                    peaks = {m.label: {mode: memory.cuda_peak(m, x, mode) for mode in settings.modes} for m in group}
                else:
                    key = (batch, length, input_size, hidden, tuple(m.label for m in group),
                           json.dumps([m.options for m in group], sort_keys=True, default=str))
                    if key not in memory_done:  # threads barely change memory: measured once
                        spec = dict(threads=threads, batch=batch, length=length, input=input_size, hidden=hidden,
                                    dtype=str(settings.dtype).replace("torch.", ""), seed=settings.seed,
                                    modes=settings.modes)
                        memory_done[key] = memory.cpu_peaks(group, spec)
                    peaks = memory_done[key]
            free_cores = max(0, (os.cpu_count() or 1) - (0 if cuda else threads))
            busy = others if others is not None else load_before
            config = dict(device=str(device), threads=threads, batch=batch, length=length, input=input_size,
                          hidden=hidden, others_cpu=None if others is None else round(others, 2),
                          loadavg=round(load_before, 2), gemm_flops_per_s=rate)
            if not cuda and busy > free_cores + 0.25:
                warnings_.append(f"threads={threads} B={batch} T={length} I={input_size} H={hidden}: other "
                                 f"processes used {busy:.2f} CPUs while {free_cores} were free: timings are "
                                 f"contended")
            group_rows = []
            for model in group:
                row = dict(config, cell=model.label, kind=model.kind, options=model.options,
                           precision=model.precision, path=path_of(model, x))
                for mode in settings.modes:
                    stats = results[mode][model.label]
                    base = results[mode][model.reference or group[0].label]["tokens_per_second"]  # its nn.LSTM
                    flops = gemm.mode_flops(model.module, mode)
                    row[mode] = dict(stats, ratio_to_lstm=stats["tokens_per_second"] / base,
                                     peak_bytes=peaks.get(model.label, {}).get(mode), flops_per_token=flops,
                                     gemm_fraction=gemm.fraction(flops, stats["tokens_per_second"], rate))
                    if stats["iqr_rel"] > SPREAD_WARNING:
                        warnings_.append(f"{model.label} {mode} threads={threads} B={batch} T={length} "
                                         f"I={input_size} H={hidden}: spread (IQR/median) {stats['iqr_rel']:.0%}: "
                                         f"the machine is busy or the run too short; repeat it")
                group_rows.append(row)
                model.module = None
            log(report.format_rows(group_rows, settings.modes, header=not rows, floor=floor)
                + f"\n{'':4}(other processes used {'?' if others is None else config['others_cpu']} CPUs, load average "
                f"{config['loadavg']})")
            rows += group_rows
    finished = dict(time=time.strftime("%Y-%m-%d %H:%M:%S %Z"), loadavg=list(os.getloadavg()))
    for warning in warnings_:
        log(f"WARNING: {warning}")
    notes = peers.available(settings.peers)[1]
    for note in notes:
        log(f"note: {note}")
    unknown = report.unknown_paths(rows)
    if unknown:
        log(report.unknown_paths_note(unknown))
    return dict(command="rrn-bench " + " ".join(settings.argv), machine=report.machine(), started=started,
                finished=finished, fast_backend=fast.backend() if any(has_fast_path(c) for c in settings.cells)
                else None, settings=dict(warmup=settings.warmup, repeats=settings.repeats, dtype=str(settings.dtype),
                                         scaling=settings.scaling or None),
                rows=rows, warnings=warnings_, notes=notes)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--probe-memory"]:
        print(json.dumps(memory.probe_memory(json.loads(argv[1]))))
        return
    if "mode=data" in argv:
        from rrn_app.bench import data

        return data.main(argv)
    if "mode=train-loop" in argv:
        from rrn_app.bench import train_loop

        return train_loop.main(argv)
    try:
        settings = parse_arguments(argv)
        results = run(settings)
    except UserError as error:
        print(f"rrn-bench: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if results["settings"]["scaling"]:
        print()
        print(report.scaling_table(results, results["settings"]["scaling"]))
    if settings.out is not None:
        settings.out.mkdir(parents=True, exist_ok=True)
        (settings.out / "bench.json").write_text(json.dumps(results, indent=2, default=str))
        (settings.out / "bench.md").write_text(report.markdown(results))
        print(f"wrote {settings.out / 'bench.json'} and {settings.out / 'bench.md'}")
