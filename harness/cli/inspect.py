"""`harness count`, `harness models` and `harness hw`: what a model costs in FLOPs, which presets
exist, and what this machine's device can do."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List, Optional

import typer

from harness.cli.common import MAX_DEVICES, bounded_float, bounded_int, print_json as _print_json, results_dir as _results_dir
from harness.errors import ConfigError
from harness.units import si as _si


def _count_table(report) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, Console().width))
    from harness.config import ModelSpec

    conv = report.conventions
    console.print(f"[bold]{ModelSpec.model_validate(report.model).label}[/bold] · {report.params:,} params "
                  f"({report.params_non_embedding:,} non-embedding) · {report.mode} · batch "
                  f"{report.batch_size} x seq {report.seq_len} x accum {report.grad_accum}")
    console.print(f"conventions: FLOP = {conv['flop']}; causal halving "
                  f"{'on' if conv['causal_halving'] else 'off'}; recomputation not counted")
    if report.moe:
        moe = report.moe
        console.print(f"mixture of experts: {report.params_active:,} active params "
                      f"({report.params_active_non_embedding:,} non-embedding) of {report.params:,} total · "
                      f"{moe['experts']} experts, {moe['experts_per_token']} per token, {moe['moe_layers']} MoE "
                      f"layers · expert FLOPs {moe['expert_flops']:,} (at balanced routing: "
                      f"{moe['expert_flops_at_balanced_routing']:,}) · expert load: {moe['expert_load_reason']}")
        console.print(f"routing: {moe['routing']}")
    for key, note in report.attention.items():
        if key.endswith("_counted") or key == "packing":
            console.print(f"attention ({key.removesuffix('_counted')}): {note}")
        else:
            console.print(f"attention: {key} = {note}")
    console.print(f"counted per optimizer step: forward {report.forward_flops:,} · "
                  f"forward + backward {report.train_flops:,}")
    table = Table(title="FLOPs per optimizer step, reconciled", show_lines=False)
    for col in ("figure", "FLOPs", "vs primary", "reason (named gaps to the primary)", "unexplained"):
        table.add_column(col, justify="left" if col == "figure" or col.startswith("reason") else "right")
    for f in report.figures:
        table.add_row(f.name, f"{f.flops:,}", f"{f.delta_pct:+.2f}%", f.reason, f"{f.unexplained:,}")
    console.print(table)
    top = Table(title="top modules")
    top.add_column("module")
    top.add_column("FLOPs", justify="right")
    top.add_column("share", justify="right")
    for name, flops in list(report.by_module.items())[:10]:
        top.add_row(name, f"{flops:,}", f"{flops / report.primary_flops:.1%}" if report.primary_flops else "")
    console.print(top)
    ops = ", ".join(f"{k} {v:,}" for k, v in report.by_operator.items())
    console.print(f"by operator: {ops}")
    console.print("arithmetic with no formula (real work, not counted): "
                  + ", ".join(f"{k} x{v}" for k, v in report.uncounted_ops.items()))
    console.print(f"no arithmetic (views, copies, indexing, comparisons): {len(report.data_movement_ops)} ops, "
                  f"{sum(report.data_movement_ops.values()):,} calls")
    if report.fvcore_unsupported_ops is not None:
        console.print("fvcore, no handle (not counted by fvcore): "
                      + ", ".join(f"{k} x{v}" for k, v in report.fvcore_unsupported_ops.items()))
    if report.mfu:
        u = report.mfu
        console.print(f"[bold]MFU {u['mfu']:.2%}[/bold]: {u['model_flops_per_step']:,} FLOPs/step over "
                      f"{u['step_s']} s = {_si(u['achieved_flops_per_s'], 'FLOP/s')} vs "
                      f"{_si(u['peak_flops_per_s'], 'FLOP/s')} peak ({u['gpu']} {u['dtype']} x "
                      f"{u['devices']}, datasheet: {u['source']})")


def _write_csv(report, path: Path) -> None:
    import csv
    import io

    from harness.files import write_atomic

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["kind", "name", "flops", "delta_pct", "unexplained", "reason"])
    for f in report.figures:
        writer.writerow(["figure", f.name, f.flops, f"{f.delta_pct:.4f}", f.unexplained, f.reason])
    for name, flops in report.by_module.items():
        writer.writerow(["module", name, flops, "", "", ""])
    for name, flops in report.by_operator.items():
        writer.writerow(["operator", name, flops, "", "", ""])
    for name, calls in report.uncounted_ops.items():
        writer.writerow(["uncounted_op", name, "", "", "", f"{calls} calls, arithmetic with no formula"])
    for name, calls in report.data_movement_ops.items():
        writer.writerow(["data_movement_op", name, "", "", "", f"{calls} calls, no arithmetic"])
    for name, calls in (report.fvcore_unsupported_ops or {}).items():
        writer.writerow(["fvcore_unsupported_op", name, "", "", "", f"{calls} calls, no fvcore handle"])
    write_atomic(path, buffer.getvalue())


def count(
    model: str = typer.Argument(..., help="Preset name or config file."),
    set_: List[str] = typer.Option([], "--set", help="Override a config key: --set model.layers=2"),
    batch: Optional[int] = typer.Option(None, "--batch", help="Sequences per micro-batch (per device)."),
    seq: Optional[int] = typer.Option(None, "--seq", help="Sequence length (T5: encoder)."),
    decoder_seq: Optional[int] = typer.Option(None, "--decoder-seq", help="T5 decoder length."),
    mode: str = typer.Option("train", "--mode", help="forward or train (forward + backward)."),
    depth: int = typer.Option(2, "--depth", parser=bounded_int("--depth", 0, 64), help="Module breakdown depth."),
    causal_halving: bool = typer.Option(False, "--causal-halving", help="Halve causal attention matmuls (Megatron code, MaxText); off as in PaLM and torch."),
    fvcore: bool = typer.Option(False, "--fvcore", help="Also count the forward with fvcore (traced on meta tensors)."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write figures and breakdowns as CSV."),
    step_time: Optional[float] = typer.Option(None, "--step-time", parser=bounded_float("--step-time", 0, 1e7, low_open=True), help="Measured seconds per optimizer step, for MFU."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="GPU for the datasheet peak (A100, H100 SXM, ...)."),
    dtype: str = typer.Option("bf16", "--dtype", help="Precision of the datasheet peak: fp32, tf32, bf16, fp16."),
    grad_accum: int = typer.Option(1, "--grad-accum", parser=bounded_int("--grad-accum", 1, 10**5), help="Micro-batches per optimizer step."),
    devices: int = typer.Option(1, "--devices", parser=bounded_int("--devices", 1, MAX_DEVICES), help="Data-parallel devices (batch is per device)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    force: bool = typer.Option(False, "--force", help="Let --csv overwrite an existing file that is not text."),
    device_memory_gb: Optional[float] = typer.Option(None, "--device-memory-gb", parser=bounded_float("--device-memory-gb", 0, 2**20, low_open=True), help="Say whether a training step fits on a device of this many GiB (e.g. 80)."),
) -> None:
    """Count FLOPs of any model at any size (fake tensors: no memory), reconciled with formulas."""
    from harness.config import load_spec
    from harness.files import check_output_path

    if csv_out is not None:  # before counting: never the results database, a folder or a binary file
        check_output_path(csv_out, force=force, db_path=_results_dir(None) / "harness.db", field="--csv")

    if mode not in ("forward", "train"):
        raise ConfigError("--mode", f"{mode!r} is not allowed; allowed: forward, train")
    for name, value in (("--depth", depth + 1), ("--grad-accum", grad_accum), ("--devices", devices)):
        if value < 1:
            raise ConfigError(name, "must be positive")
    if (step_time is None) != (gpu is None):
        raise ConfigError("--step-time" if step_time is None else "--gpu", "--step-time and --gpu go together")
    if step_time is not None and step_time <= 0:
        raise ConfigError("--step-time", "must be > 0 seconds")
    overrides = list(set_) + [f"train.grad_accum={grad_accum}"]
    for key, value in (("train.batch_size", batch), ("train.seq_len", seq), ("train.decoder_seq_len", decoder_seq)):
        if value is not None:
            overrides.append(f"{key}={value}")
    spec = load_spec(Path(model), overrides)
    peak = None
    if gpu is not None:
        from harness.hardware import datasheet_by_name

        peak = datasheet_by_name(gpu, dtype)

    from harness.flops.reconcile import mfu_from_outside, reconcile

    fv_count = None
    if fvcore:
        from harness.flops.fvcount import count_fvcore_forward

        fv_count = count_fvcore_forward(spec)
    report = reconcile(spec, mode=mode, depth=depth, causal_halving=causal_halving, fvcore_count=fv_count)
    if peak is not None:
        if mode != "train":
            raise ConfigError("--mode", "MFU needs --mode train (model FLOPs of a training step)")
        row, flops_per_s = peak
        mfu = mfu_from_outside(report.primary_flops, step_time, flops_per_s, devices)
        report = dataclasses.replace(report, mfu={**mfu, "step_s": step_time, "gpu": row.gpu,
                                                  "dtype": dtype, "devices": devices, "source": row.source})
    memory, memory_line = _memory(spec, devices, device_memory_gb)
    if csv_out is not None:
        _write_csv(report, csv_out)
    if as_json:
        _print_json({**report.to_dict(), **memory})
    else:
        _count_table(report)
        print(memory_line)


def _memory(spec, devices: int, device_memory_gb: float | None) -> tuple[dict, str]:
    """The training step's memory estimate (harness.measure.fit) as count's JSON keys and one line."""
    from harness.measure.fit import GIB, USABLE_FRACTION, MemoryLimit, estimate_memory, fit_message

    estimate = estimate_memory(spec, world_size=devices)
    out = {"memory_estimate_bytes": estimate.total_bytes, "memory_estimate": estimate.to_dict()}
    line = f"memory per device (training step, estimated): {estimate.total_bytes / GIB:.2f} GiB"
    if device_memory_gb is not None:
        limit = MemoryLimit(int(device_memory_gb * GIB), f"--device-memory-gb {device_memory_gb:g}")
        message = fit_message(spec, estimate, limit, "the device")
        out["memory_fit"] = {"device_memory_bytes": limit.bytes, "fits": message is None, "message": message,
                             "layers_that_fit": min(estimate.layers_that_fit(limit.bytes * USABLE_FRACTION),
                                                    spec.model.layers)}
        line += f"; {message or f'fits in {device_memory_gb:g} GiB'}"
    return out, line


def models(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the model presets with their parameter counts (counted on the meta device)."""
    from harness.build import build_model, count_params
    from harness.config import ModelSection, resolve_model
    from harness.presets import PRESETS

    rows = []
    for name in PRESETS:
        spec = resolve_model(ModelSection(preset=name))
        counts = count_params(build_model(spec, "meta"))
        rows.append({"preset": name, **spec.model_dump(exclude={"preset", "attention", "config"}),
                     "params": counts.total, "params_non_embedding": counts.non_embedding,
                     "params_active": counts.active})
    if as_json:
        _print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="model presets (random weights, published shapes)")
    for col in ("preset", "family", "layers", "hidden", "heads", "kv", "ffn", "vocab", "params", "non-emb"):
        table.add_column(col, justify="left" if col in ("preset", "family") else "right")
    for r in rows:
        table.add_row(r["preset"], r["family"], str(r["layers"]), str(r["hidden"]), str(r["heads"]),
                      str(r["kv_heads"]), str(r["ffn"]), str(r["vocab"]), f"{r['params'] / 1e6:,.1f}M",
                      f"{r['params_non_embedding'] / 1e6:,.1f}M")
    Console().print(table)


def hw(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda (ROCm GPUs are cuda devices)."),
) -> None:
    """Show the device and its peak matmul FLOP/s in each precision it trains in: measured here
    beside the dense datasheet figure (unknown for CPUs and unlisted GPUs), so that MFU against
    either is honest."""
    import torch

    from harness.measure.env import collect_env
    from harness.hardware import datasheet_peak
    from harness.measure.peak import measure_peak
    from harness.measure.train import resolve_device, supported_dtypes

    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError("--device", f"{device!r} is not allowed; allowed: auto, cpu, cuda")
    dev = resolve_device(device)
    env = collect_env(dev.type)
    peaks = []
    for dtype in supported_dtypes(dev):
        measured = measure_peak(dev.type, dtype)
        sheet = datasheet_peak(dev.type, env["device"]["name"], dtype, env["tf32_matmul"])
        peaks.append({"dtype": dtype, "measured_flops_per_s": measured.flops_per_s,
                      "matmul_size": measured.size, "datasheet_flops_per_s": sheet.flops_per_s,
                      "datasheet_source": sheet.source, "datasheet_gpu": sheet.gpu, "datasheet_mode": sheet.mode,
                      "measured_over_datasheet": (measured.flops_per_s / sheet.flops_per_s
                                                  if sheet.flops_per_s else None)})
    platform = "ROCm " + torch.version.hip if dev.type == "cuda" and torch.version.hip else (
        "CUDA " + str(torch.version.cuda) if dev.type == "cuda" else "cpu")
    if as_json:
        _print_json({"env": env, "platform": platform, "peaks": peaks})
        return
    from rich.console import Console
    from rich.table import Table

    d = env["device"]
    table = Table(title=f"{d['type']} ({platform}): {d['name']} · {d['memory_bytes'] / 2**30:.1f} GiB · "
                        f"torch {env['torch_version']} · {env['torch_threads']} threads")
    for col in ("dtype", "measured peak", "matmul size", "datasheet peak", "datasheet column", "measured / datasheet"):
        table.add_column(col, justify="right")
    for p in peaks:
        ratio = p["measured_over_datasheet"]
        table.add_row(p["dtype"], _si(p["measured_flops_per_s"], "FLOP/s"), f"{p['matmul_size']}³",
                      _si(p["datasheet_flops_per_s"], "FLOP/s") if p["datasheet_flops_per_s"] else "unknown",
                      f"{p['datasheet_gpu']} {p['datasheet_mode']}" if p["datasheet_gpu"] else "no row for this device",
                      f"{ratio:.1%}" if ratio is not None else "n/a")
    console = Console()
    console.print(table)
    sources = sorted({p["datasheet_source"] for p in peaks if p["datasheet_source"]})
    for source in sources:
        console.print(f"datasheet: {source}")
    if not sources:
        console.print("datasheet: none for this device (its peak is unknown, never another part's)")
    if not env["nvml"]["available"]:
        console.print(f"NVML: absent ({env['nvml']['reason']})")


def register(app: typer.Typer) -> None:
    """Add the inspection commands to the main app."""
    app.command("count")(count)
    app.command("models")(models)
    app.command("hw")(hw)
