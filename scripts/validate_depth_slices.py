#!/usr/bin/env python
"""How close depth-sliced predictions come, on models that fit: each model is measured at
slices of its depth (default 1, 2, 4 layers) and at its full depth (default 8), every run in a
fresh process, and the predicted step time, peak memory and hardware FLOPs are compared with
the measured ones. Target on this CPU machine: within 5%.

    python scripts/validate_depth_slices.py [--families gpt2,bert,llama,t5] [--widths 256,512]
                                            [--slices 1,2,4] [--layers 8] [--steps 5]
                                            [--repeats 3] [--threads N] [--json FILE]

Each depth, the full one included, is run `--repeats` times, round by round (1, 2, 4, 8, 1, 2,
...), and each depth's figures are combined as `harness run --slice-repeats` combines a slice's:
the median over its runs of their median step time, and of their peak memory.

Peak memory on CPU is the process's peak RSS in a short run of each depth with glibc's mmap
threshold fixed (see harness.measure.slices.FIXED_MMAP_ENV), the full model's too, so its total includes
the runtime (Python, torch, about 0.4 GB) that every slice shares; the "beyond" column is the error on the part the slices
did not see (predicted - largest slice vs measured - largest slice), the harder test.

Timing on a shared machine: the "other" column is the CPU time other processes (not this script's
runs) took while a model's runs went on, as a share of all cores. On 2 cores, one busy core of
someone else's slows torch's default 2 OpenMP threads many times over (a thread that waits on a
descheduled peer), so predictions compare steps timed under different loads. `--threads 1`
(OMP_NUM_THREADS=1 for every run) leaves one core to the others: slower, but steady.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.config import RunSpec, build_spec  # noqa: E402
from harness.measure.slices import (check_slices, depth_sliced_record, extrapolate, measure_depths,  # noqa: E402
                                    parse_slices)
from harness.results.record import RunRecord  # noqa: E402

TARGET = 0.05  # relative error, step time and peak memory


def model_spec(family: str, hidden: int, layers: int, steps: int) -> RunSpec:
    """A small model of `family` at width `hidden` that steps in well under a second on 2 cores."""
    heads = hidden // 64
    model = {"family": family, "layers": layers, "hidden": hidden, "heads": heads, "ffn": 4 * hidden,
             "vocab": 8192, "dropout": 0.0}
    if family == "llama":
        model.update(kv_heads=heads, ffn=hidden * 8 // 3 // 64 * 64)  # SwiGLU's 8/3 ratio, as Llama
    if family != "t5":
        model["max_positions"] = 512
    return build_spec({"model": model, "train": {"batch_size": 8, "seq_len": 128},
                       "measure": {"warmup_steps": 2, "steps": steps, "energy": False}, "device": "cpu"})


def _busy_s() -> tuple[float, float] | None:
    """(CPU-seconds busy on all cores, CPU-seconds elapsed on all cores) from /proc/stat."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _error(predicted: float, measured: float) -> float:
    return (predicted - measured) / measured


def validate(spec: RunSpec, slices: tuple[int, ...], repeats: int) -> dict[str, Any]:
    """Predict `spec` from its slices (the depth-sliced record `harness estimate` would use),
    measure it at full depth, and compare. The slices and the full model are measured alike:
    `repeats` runs each, round by round, combined by the same rule (SliceResult)."""
    started = time.perf_counter()
    busy0, own0 = _busy_s(), _children_cpu_s()
    slices = check_slices(spec, slices)
    measured = measure_depths(spec, [*slices, spec.model.layers], repeats=repeats)
    results = [measured[d] for d in slices]
    full = measured[spec.model.layers]
    extrapolation = extrapolate(spec, results)
    busy1, own1 = _busy_s(), _children_cpu_s()
    other = None
    if busy0 is not None and busy1 is not None and busy1[1] > busy0[1]:
        other = max(0.0, (busy1[0] - busy0[0]) - (own1 - own0)) / (busy1[1] - busy0[1])
    largest = results[-1]
    record = depth_sliced_record(spec, results, extrapolation)
    predicted_s, measured_s = extrapolation.predicted_step_s, full.step_s
    predicted_b, measured_b = extrapolation.predicted_peak_memory_bytes, full.peak_memory_bytes
    return {
        "model": f"{spec.model.family} h{spec.model.hidden} L{spec.model.layers}",
        "slices": list(slices),
        "predicted_step_s": predicted_s, "measured_step_s": measured_s,
        "step_error": _error(predicted_s, measured_s),
        "step_error_beyond": _error(predicted_s - largest.step_s, measured_s - largest.step_s),
        "measured_cv_step": full.record.cv_step, "repeats": repeats,
        "measured_step_s_runs": [r.median_step_s for r in full.runs],
        "predicted_peak_memory_bytes": predicted_b, "measured_peak_memory_bytes": measured_b,
        "peak_memory_method": full.memory_method,
        "memory_error": _error(predicted_b, measured_b),
        "memory_error_beyond": _error(predicted_b - largest.peak_memory_bytes,
                                      measured_b - largest.peak_memory_bytes)
        if measured_b != largest.peak_memory_bytes else None,
        "hardware_flops_error": _error(record.hardware_flops_per_step, full.record.hardware_flops_per_step),
        "model_flops_error": _error(record.model_flops_per_step, full.record.model_flops_per_step),
        "other_cpu_load": other, "torch_threads": getattr(full.record.env, "torch_threads", None),
        "residual_step": extrapolation.residual, "residual_memory": extrapolation.residual_memory,
        "slice_points": [s.model_dump(mode="json") for s in extrapolation.slices],
        "fit": extrapolation.fit.model_dump(mode="json"),
        "full_run_ids": [r.run_id for r in full.runs],
        "slice_run_ids": [run.run_id for r in results for run in r.runs],
        "wall_s": time.perf_counter() - started,
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"


def print_rows(rows: list[dict[str, Any]]) -> None:
    header = (f"{'model':<18} {'step pred':>10} {'meas':>9} {'err':>7} {'beyond':>7} {'cv':>5} | "
              f"{'mem pred':>9} {'meas':>9} {'err':>7} {'beyond':>7} | {'hwFLOP':>7} | {'resid t/m':>11} {'other':>5}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['model']:<18} {r['predicted_step_s'] * 1e3:>8.1f}ms {r['measured_step_s'] * 1e3:>7.1f}ms "
              f"{_pct(r['step_error']):>7} {_pct(r['step_error_beyond']):>7} {r['measured_cv_step']:>5.1%} | "
              f"{r['predicted_peak_memory_bytes'] / 2**20:>6.0f}MiB {r['measured_peak_memory_bytes'] / 2**20:>6.0f}MiB "
              f"{_pct(r['memory_error']):>7} {_pct(r['memory_error_beyond']):>7} | "
              f"{_pct(r['hardware_flops_error']):>7} | {r['residual_step']:>5.1%}/{r['residual_memory']:<5.1%} "
              f"{'?' if r['other_cpu_load'] is None else format(r['other_cpu_load'], '.0%'):>5}")


def summarize(rows: list[dict[str, Any]], target: float = TARGET) -> dict[str, Any]:
    """Worst and median absolute errors, and how many models met the target, per quantity."""
    out: dict[str, Any] = {"target": target, "models": len(rows)}
    for key in ("step_error", "memory_error"):
        errors = [abs(r[key]) for r in rows]
        out[key] = {"max_abs": max(errors), "median_abs": statistics.median(errors),
                    "within_target": sum(e <= target for e in errors)}
    return out


def print_summary(summary: dict[str, Any]) -> None:
    n, t = summary["models"], summary["target"]
    s, m = summary["step_error"], summary["memory_error"]
    print(f"summary: step time within {t:.0%} for {s['within_target']}/{n} models (median |err| "
          f"{s['median_abs']:.1%}, worst {s['max_abs']:.1%}); peak memory within {t:.0%} for "
          f"{m['within_target']}/{n} (median |err| {m['median_abs']:.1%}, worst {m['max_abs']:.1%})")


def validate_calibration(results_dir: Path, every: int = 4) -> int:
    """Hold out every `every`-th stored run of each device and dtype, fit the calibration on the
    rest, and print predicted vs measured MFU on the held-out runs."""
    from harness.cost.calibrate import _mfu, calibrate
    from harness.results.store import load_records

    records = [r for r in load_records(results_dir) if _mfu(r)[0] is not None and r.depth_extrapolation is None]
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for r in records:
        groups.setdefault((r.device.name, r.dtype), []).append(r)
    errors = []
    print(f"calibration hold-out from {results_dir}: every {every}th run of each device and dtype held out")
    for (device, dtype), rows in sorted(groups.items()):
        held = rows[every - 1::every]
        train = [r for r in rows if r not in held]
        fits = calibrate(train)
        if not held or not fits:
            print(f"  {device} {dtype}: {len(rows)} runs, too few to hold any out")
            continue
        fit = fits[0]
        for r in held:
            tokens = r.tokens_per_device_step
            predicted, measured = fit.predict(r.model.hidden, tokens, r.seq_len), _mfu(r)[0]
            errors.append(predicted - measured)
            print(f"  {device} {dtype} hidden {r.model.hidden} tokens/step {tokens:g} seq {r.seq_len}: "
                  f"MFU predicted {predicted:.4f} measured {measured:.4f} ({100 * (predicted - measured) / measured:+.1f}%)")
    if errors:
        rmse = (sum(e * e for e in errors) / len(errors)) ** 0.5
        print(f"summary: {len(errors)} held-out runs, RMSE {rmse:.4f} MFU")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="gpt2,bert,llama", help="comma-separated families")
    parser.add_argument("--widths", default="256,512", help="comma-separated hidden sizes (multiples of 64)")
    parser.add_argument("--slices", default="1,2,4", help="slice depths")
    parser.add_argument("--layers", type=int, default=8, help="full depth")
    parser.add_argument("--steps", type=int, default=5, help="measured steps per run")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each depth, slices and full model alike, round by round: median step time "
                             "and peak memory over them (as `harness run --slice-repeats`)")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for every run (default: as set)")
    parser.add_argument("--json", type=Path, help="also write the rows and summary as JSON here")
    parser.add_argument("--sweep-results", type=Path,
                        help="instead: validate the calibration fit on held-out runs stored in this results folder")
    args = parser.parse_args(argv)
    if args.sweep_results is not None:
        return validate_calibration(args.sweep_results)

    slices = parse_slices(args.slices)
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the runs are child processes: they inherit it
    print(f"torch threads per run: {os.environ.get('OMP_NUM_THREADS', 'torch default')}; "
          f"{os.cpu_count()} CPUs; {args.repeats} runs of each depth", flush=True)
    rows = []
    for family in args.families.split(","):
        for width in (int(w) for w in args.widths.split(",")):
            spec = model_spec(family.strip(), width, args.layers, args.steps)
            print(f"{family} h{width}: slices {list(slices)} and the full {args.layers} layers ...",
                  file=sys.stderr, flush=True)
            rows.append(validate(spec, slices, args.repeats))
    print_rows(rows)
    summary = summarize(rows)
    print_summary(summary)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
