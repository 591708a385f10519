"""The `harness` command line. Errors in input: one line on stderr, exit code 2, nothing written."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import List, Optional

import typer

from harness.errors import ConfigError, HarnessError, Interrupted
from harness.cli.common import interruptible, print_json as _print_json
from harness.cli.common import as_flags, results_dir as _results_dir
from harness.units import si as _si

try:  # recent typer vendors click; older versions use click itself
    from typer._click.exceptions import ClickException as _ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException as _ClickException

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Empirical FLOPs profiler and benchmark harness for transformer training.")

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130








def _pct(value: float | None) -> str:
    return "n/a (no datasheet peak)" if value is None else f"{value:.2%}"


def _summary(record, json_path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    r = record
    title = f"{r.model_label} · {r.params / 1e6:.2f}M params · {r.device.type} ({r.device.name}) · {r.dtype}"
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("source")
    rows = [
        ("batch x seq x accum", f"{r.batch_size} x {r.seq_len} x {r.grad_accum}", "config"),
        ("median step", f"{r.median_step_s * 1e3:.2f} ms (IQR {r.iqr_step_s * 1e3:.2f} ms, CV {r.cv_step:.1%})",
         f"measured, {len(r.step_times_s)} steps") if r.depth_extrapolation is None else
        ("step (predicted)", f"{r.median_step_s * 1e3:.2f} ms (fit residual {r.depth_extrapolation.residual:.1%})",
         f"depth slices {', '.join(str(x.layers) for x in r.depth_extrapolation.slices)}"),
        ("throughput", f"{r.tokens_per_s:,.0f} tokens/s · {r.samples_per_s:,.2f} samples/s", "measured"),
        ("model FLOPs / step", _si(r.model_flops_per_step, "FLOP"), "counted (2*MAC)"),
        ("hardware FLOPs / step", _si(r.hardware_flops_per_step, "FLOP"), "counted, recompute incl."),
        ("6N / PaLM FLOPs / step", f"{_si(r.flops.analytic.six_n_per_step, 'FLOP')} / "
         f"{_si(r.flops.analytic.palm_per_step, 'FLOP')}", "analytic"),
        ("achieved", _si(r.achieved_flops_per_s, "FLOP/s"), "model FLOPs / measured time"),
        ("peak (measured matmul)", _si(r.peak_flops_measured, "FLOP/s"), "measured"),
        ("peak (datasheet)", _si(r.peak_flops_datasheet, "FLOP/s"), r.peaks.datasheet.gpu or "none for this device"),
        ("MFU vs measured / datasheet", f"{_pct(r.mfu_measured)} / {_pct(r.mfu_datasheet)}", "derived"),
        ("HFU vs measured / datasheet", f"{_pct(r.hfu_measured)} / {_pct(r.hfu_datasheet)}", "derived"),
        ("peak memory", _si(r.peak_memory_bytes, "B"), r.peak_memory_method),
    ]
    if r.energy is not None:
        methods = ", ".join(f"{k} {v}" for k, v in r.energy.methods.items())
        rows.append(("energy / step", f"{r.energy.joules_per_step:.3g} J", methods or "record"))
    if r.world_size > 1:
        rows.append(("world size", f"{r.world_size} ranks", "FLOPs, tokens and MFU are for all of them"))
    if r.depth_extrapolation is not None:  # nothing here was timed at full depth
        rows = [(q, v, "predicted from depth slices" if src.startswith(("measured", "model FLOPs / measured"))
                 else src) for q, v, src in rows]
    for row in rows:
        table.add_row(*row)
    console = Console()
    console.print(table)
    for warning in r.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    console.print(f"record written to {json_path}")


class _StepProgress:
    """A rich progress bar on stderr over the warm-up and measured steps, with the run's log
    lines printed above it. It never draws on its own: no refresh thread competes with the
    timed steps. It draws only from `on_step`, which the timer calls after a step's clock has
    stopped and before the next one starts, so drawing is outside every timed window. It
    appears with the first step, so that bad input found before any step stays one line."""

    def __init__(self, total_steps: int):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[last]}"), TimeElapsedColumn(),
                                  console=Console(stderr=True), auto_refresh=False)
        self._task = self._progress.add_task("steps", total=total_steps, last="")
        self._started = False

    def __enter__(self) -> "_StepProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self._started:
            self._progress.stop()

    def log(self, message: str) -> None:
        if self._started:
            self._progress.console.print(message, markup=False, highlight=False, soft_wrap=True)
            self._progress.refresh()
        else:
            print(message, file=sys.stderr, flush=True)

    def on_step(self, phase: str, index: int, seconds: float) -> None:
        if not self._started:
            self._progress.start()
            self._started = True
        name = "warm-up" if phase == "warmup" else "measured"
        self._progress.update(self._task, advance=1, description=f"{name} step {index + 1}",
                              last=f"last {seconds * 1e3:.1f} ms")
        self._progress.refresh()


@app.command()
def run(
    config: Optional[Path] = typer.Argument(None, help="YAML config or preset name (default: the packaged harness/data/default.yaml)."),
    set_: List[str] = typer.Option([], "--set", help="Override a config key: --set model.layers=2"),
    as_json: bool = typer.Option(False, "--json", help="Print the record alone on stdout."),
    results_dir: Optional[Path] = typer.Option(None, "--results-dir", help="Where records go (default results/ or $HARNESS_RESULTS_DIR)."),
    report: bool = typer.Option(False, "--report", help="Then write the report of this run (<results-dir>/report/) and print its path."),
    nproc: int = typer.Option(1, "--nproc", help="Processes (devices) per node: launches torchrun; strategy from distributed.strategy."),
    nnodes: int = typer.Option(1, "--nnodes", help="Nodes (with --rdzv-endpoint)."),
    node_rank: int = typer.Option(0, "--node-rank", help="This node's rank among --nnodes."),
    rdzv_endpoint: Optional[str] = typer.Option(None, "--rdzv-endpoint", help="HOST:PORT of the rendezvous (multi-node)."),
    scaling: Optional[str] = typer.Option(None, "--scaling", help="World sizes to measure in turn, e.g. 1,2: weak-scaling efficiency."),
    depth_slices: Optional[str] = typer.Option(None, "--depth-slices", help="Measure these numbers of layers at full width (e.g. 1,2,4) and predict the full depth."),
    slice_repeats: Optional[int] = typer.Option(None, "--slice-repeats", help="With --depth-slices: runs of each slice, round by round; the fit takes each slice's median step time and peak memory over its runs (default 1)."),
) -> None:
    """Measure training steps of a model and write the record."""
    from harness.config import load_spec
    from harness.measure.distributed import dist_env, launch

    spec = load_spec(config, set_)
    if slice_repeats is not None and depth_slices is None:

        raise ConfigError("--slice-repeats", "only with --depth-slices (runs of each slice)")
    from harness.measure.run import measure
    from harness.results.store import check, save

    root = _results_dir(results_dir)
    check(root)  # a database that is not ours fails now, not after the measurement
    forward = ["run", *([str(config)] if config is not None else []), *[a for s in set_ for a in ("--set", s)],
               "--results-dir", str(root)]
    if scaling is not None:
        _scaling(_world_sizes(scaling), forward, as_json, nnodes=nnodes, node_rank=node_rank,
                 rdzv_endpoint=rdzv_endpoint)
        return
    if depth_slices is not None:
        _depth_sliced(spec, depth_slices, 1 if slice_repeats is None else slice_repeats, root, as_json, report)
        return
    if (nproc > 1 or nnodes > 1) and dist_env() is None:
        sys.stdout.write(launch(forward + (["--json"] if as_json else []) + (["--report"] if report else []),
                                nproc=nproc, nnodes=nnodes, node_rank=node_rank, rdzv_endpoint=rdzv_endpoint))
        sys.stdout.flush()
        return
    with interruptible():
        with _StepProgress(spec.measure.warmup_steps + spec.measure.steps) as progress:
            record = measure(spec, log=progress.log, on_step=progress.on_step)
        if record is None:  # a rank other than 0 of a distributed run: rank 0 stores and reports
            return
        if record.world_size > 1:
            from harness.results.store import load_records

            record = record.evolve(scaling=_scaling_of(record, load_records(root)))
        json_path = save(record, root)
    _show(record, json_path, root, as_json=as_json, report=report)


def _show(record, json_path: Path, root: Path, *, as_json: bool, report: bool) -> None:
    """Print the stored record (JSON or the summary table), then write its report if asked."""
    if as_json:
        _print_json(record.to_dict())
    else:
        _summary(record, json_path)
    if report:
        from harness.cli.results import write_report

        written = write_report([record.run_id], all_runs=False, out=None, results_dir=root)
        print(f"report written to {written.html}", file=sys.stderr if as_json else sys.stdout, flush=True)


def _depth_sliced(spec, text: str, repeats: int, root: Path, as_json: bool, report: bool) -> None:
    """Measure the slices (each in a fresh process), store them, then store the full-depth record
    predicted from them."""
    from harness.measure.slices import check_repeats, check_slices, depth_sliced_record, measure_slices, parse_slices
    from harness.results.store import save, save_many

    slices = check_slices(spec, parse_slices(text))
    check_repeats(repeats)
    with interruptible():
        results = measure_slices(spec, slices, repeats=repeats, log=lambda m: print(m, file=sys.stderr, flush=True))
        save_many([run for r in results for run in r.runs], root)
        record = depth_sliced_record(spec, results)
        json_path = save(record, root)
    _show(record, json_path, root, as_json=as_json, report=report)


def _world_sizes(text: str) -> list[int]:

    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError("--scaling", f"expected world sizes like 1,2,4, got {text!r}") from None
    if not sizes or any(n < 1 for n in sizes) or 1 not in sizes:
        raise ConfigError("--scaling", "world sizes must be positive and include 1 (the baseline)")
    return sorted(set(sizes))


def _scaling_of(record, records: list):
    """Weak-scaling efficiency of a multi-device record against a stored single-device run of the
    same model, dtype, device and per-device batch: T(1)·N / T(N) in tokens/s."""
    from harness.cost.estimate import measured_scaling
    from harness.results.record import Scaling

    found = measured_scaling(record, [*records, record], record.world_size)
    if found is None:
        return Scaling(world_size=record.world_size,
                       reason="no single-device run of this config is stored; measure one (--scaling 1,N)")
    return Scaling(efficiency=found.value, world_size=record.world_size, source=found.source,
                   definition="weak scaling: tokens/s(N) / (N x tokens/s(1)), same per-device batch")


def _scaling(sizes: list[int], forward: list[str], as_json: bool, **launch_kwargs) -> None:
    """Measure the same per-device batch at each world size in turn, then print the efficiencies."""
    from harness.measure.launch import child_record

    rows = []
    for n in sizes:
        print(f"harness: scaling: measuring world size {n}", file=sys.stderr, flush=True)
        rows.append(child_record(forward, nproc=n, **(launch_kwargs if n > 1 else {})))
    base = rows[0].tokens_per_s
    table = [{"world_size": r.world_size, "run_id": r.run_id, "tokens_per_s": r.tokens_per_s,
              "per_device_tokens_per_s": r.per_device_tokens_per_s,
              "efficiency": r.tokens_per_s / (r.world_size * base)} for r in rows]
    if as_json:
        _print_json({"definition": "weak scaling: tokens/s(N) / (N x tokens/s(1)), same per-device batch",
                     "points": table})
        return
    for t in table:
        print(f"N={t['world_size']}: {t['tokens_per_s']:,.0f} tokens/s ({t['per_device_tokens_per_s']:,.0f} per device), "
              f"weak-scaling efficiency {t['efficiency']:.3f}  [run {t['run_id']}]")


def _count_table(report) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, Console().width))
    m = report.model
    conv = report.conventions
    console.print(f"[bold]{m['preset'] or m['family']}[/bold] · {report.params:,} params "
                  f"({report.params_non_embedding:,} non-embedding) · {report.mode} · batch "
                  f"{report.batch_size} x seq {report.seq_len} x accum {report.grad_accum}")
    console.print(f"conventions: FLOP = {conv['flop']}; causal halving "
                  f"{'on' if conv['causal_halving'] else 'off'}; recomputation not counted")
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


@app.command()
def count(
    model: str = typer.Argument(..., help="Preset name or config file."),
    set_: List[str] = typer.Option([], "--set", help="Override a config key: --set model.layers=2"),
    batch: Optional[int] = typer.Option(None, "--batch", help="Sequences per micro-batch (per device)."),
    seq: Optional[int] = typer.Option(None, "--seq", help="Sequence length (T5: encoder)."),
    decoder_seq: Optional[int] = typer.Option(None, "--decoder-seq", help="T5 decoder length."),
    mode: str = typer.Option("train", "--mode", help="forward or train (forward + backward)."),
    depth: int = typer.Option(2, "--depth", help="Module breakdown depth."),
    causal_halving: bool = typer.Option(False, "--causal-halving", help="Halve causal attention matmuls (Megatron code, MaxText); off as in PaLM and torch."),
    fvcore: bool = typer.Option(False, "--fvcore", help="Also count the forward with fvcore (traced on meta tensors)."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write figures and breakdowns as CSV."),
    step_time: Optional[float] = typer.Option(None, "--step-time", help="Measured seconds per optimizer step, for MFU."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="GPU for the datasheet peak (A100, H100 SXM, ...)."),
    dtype: str = typer.Option("bf16", "--dtype", help="Precision of the datasheet peak: fp32, tf32, bf16, fp16."),
    grad_accum: int = typer.Option(1, "--grad-accum", help="Micro-batches per optimizer step."),
    devices: int = typer.Option(1, "--devices", help="Data-parallel devices (batch is per device)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Count FLOPs of any model at any size (fake tensors: no memory), reconciled with formulas."""
    from harness.config import load_spec

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
    if csv_out is not None:
        _write_csv(report, csv_out)
    if as_json:
        _print_json(report.to_dict())
    else:
        _count_table(report)


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the model presets with their parameter counts (counted on the meta device)."""
    from harness.build import build_model, count_params
    from harness.config import ModelSection, resolve_model
    from harness.presets import PRESETS

    rows = []
    for name in PRESETS:
        spec = resolve_model(ModelSection(preset=name))
        counts = count_params(build_model(spec, "meta"))
        rows.append({"preset": name, **spec.model_dump(exclude={"preset", "attention"}),
                     "params": counts.total, "params_non_embedding": counts.non_embedding})
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


@app.command()
def hw(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Show the device and its peak matmul FLOP/s, measured and from the datasheet."""
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
                      "datasheet_source": sheet.source})
    if as_json:
        _print_json({"env": env, "peaks": peaks})
        return
    from rich.console import Console
    from rich.table import Table

    d = env["device"]
    table = Table(title=f"{d['type']}: {d['name']} · {d['memory_bytes'] / 2**30:.1f} GiB · "
                        f"torch {env['torch_version']} · {env['torch_threads']} threads")
    for col in ("dtype", "measured peak", "matmul size", "datasheet peak"):
        table.add_column(col, justify="right")
    for p in peaks:
        table.add_row(p["dtype"], _si(p["measured_flops_per_s"], "FLOP/s"), str(p["matmul_size"]),
                      _si(p["datasheet_flops_per_s"], "FLOP/s"))
    Console().print(table)
    if not env["nvml"]["available"]:
        Console().print(f"NVML: absent ({env['nvml']['reason']})")


def main(argv: list[str] | None = None) -> int:
    """Entry point: maps input errors to exit 2 and interrupts to exit 130, without tracebacks."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="harness", standalone_mode=False)
    except HarnessError as err:
        print(f"harness: error: {as_flags(err) if isinstance(err, ConfigError) else err}", file=sys.stderr)
        return EXIT_USAGE
    except _ClickException as err:
        print(f"harness: error: {err.format_message()}", file=sys.stderr)
        return EXIT_USAGE
    except (Interrupted, KeyboardInterrupt, typer.Abort):
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED:  # typer turns a stray KeyboardInterrupt into exit code 130
        print("harness: interrupted; no record was written", file=sys.stderr)
    return code if isinstance(code, int) else 0

