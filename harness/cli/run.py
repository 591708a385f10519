"""`harness run`: measure one configuration (or its depth slices, or its scaling over world sizes),
store the record, print its summary."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from harness.cli.common import (bounded_int, int_list, interruptible, print_json as _print_json,
                                results_dir as _results_dir)
from harness.errors import ConfigError
from harness.units import si as _si

MAX_NPROC = 1024   # processes per node
MAX_NNODES = 4096


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
    if len(r.utilization) > 2:  # an fp8 run: MFU against each named peak, FP8 and bf16
        at = next(i for i, row in enumerate(rows) if row[0].startswith("MFU vs")) + 1
        rows[at:at] = [(f"MFU vs {u.peak}", _pct(u.mfu), "derived") for u in r.utilization]
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


def run(
    config: Optional[Path] = typer.Argument(None, help="YAML config or preset name (default: the packaged harness/data/default.yaml)."),
    set_: List[str] = typer.Option([], "--set", help="Override a config key: --set model.layers=2"),
    as_json: bool = typer.Option(False, "--json", help="Print the record alone on stdout."),
    results_dir: Optional[Path] = typer.Option(None, "--results-dir", help="Where records go (default results/ or $HARNESS_RESULTS_DIR)."),
    report: bool = typer.Option(False, "--report", help="Then write the report of this run (<results-dir>/report/) and print its path."),
    nproc: int = typer.Option(1, "--nproc", parser=bounded_int("--nproc", 1, MAX_NPROC), help="Processes (devices) per node: launches torchrun; strategy from distributed.strategy."),
    nnodes: int = typer.Option(1, "--nnodes", parser=bounded_int("--nnodes", 1, MAX_NNODES), help="Nodes (with --rdzv-endpoint)."),
    node_rank: int = typer.Option(0, "--node-rank", parser=bounded_int("--node-rank", 0, MAX_NNODES - 1), help="This node's rank among --nnodes."),
    rdzv_endpoint: Optional[str] = typer.Option(None, "--rdzv-endpoint", help="HOST:PORT of the rendezvous (multi-node)."),
    scaling: Optional[str] = typer.Option(None, "--scaling", help="World sizes to measure in turn, e.g. 1,2: weak-scaling efficiency."),
    depth_slices: Optional[str] = typer.Option(None, "--depth-slices", help="Measure these numbers of layers at full width (e.g. 1,2,4) and predict the full depth."),
    slice_repeats: Optional[int] = typer.Option(None, "--slice-repeats", parser=bounded_int("--slice-repeats", 1, 100), help="With --depth-slices: runs of each slice, round by round; the fit takes each slice's median step time and peak memory over its runs (default 1)."),
    yes: bool = typer.Option(False, "--yes", help="Run even when the steps are estimated to take longer than a day (or measure.max_minutes)."),
) -> None:
    """Measure training steps of a model and write the record."""
    from harness.config import load_spec
    from harness.measure.distributed import dist_env, launch

    spec = load_spec(config, set_)
    if slice_repeats is not None and depth_slices is None:
        raise ConfigError("--slice-repeats", "only with --depth-slices (runs of each slice)")
    if node_rank >= nnodes:
        raise ConfigError("--node-rank", f"{node_rank} is out of range; allowed: 0..{nnodes - 1} (below --nnodes)")
    from harness.measure.run import measure
    from harness.results.store import check, save

    root = _results_dir(results_dir)
    check(root)  # a database that is not ours fails now, not after the measurement
    forward = ["run", *([str(config)] if config is not None else []), *[a for s in set_ for a in ("--set", s)],
               "--results-dir", str(root), *(["--yes"] if yes else [])]
    if scaling is not None:
        _scaling(_world_sizes(scaling), forward, as_json, nnodes=nnodes, node_rank=node_rank,
                 rdzv_endpoint=rdzv_endpoint)
        return
    if depth_slices is not None:
        _depth_sliced(spec, depth_slices, 1 if slice_repeats is None else slice_repeats, root, as_json, report)
        return
    if (nproc > 1 or nnodes > 1) and dist_env() is None:
        from harness.measure.fit import check_fits
        from harness.measure.train import resolve_device

        kind = resolve_device(spec.device).type  # before launching: the ranks of a CPU node share its memory
        check_fits(spec, kind, world_size=nproc * nnodes, processes=nproc if kind == "cpu" else 1)
        sys.stdout.write(launch(forward + (["--json"] if as_json else []) + (["--report"] if report else []),
                                nproc=nproc, nnodes=nnodes, node_rank=node_rank, rdzv_endpoint=rdzv_endpoint))
        sys.stdout.flush()
        return
    with interruptible():
        with _StepProgress(spec.measure.warmup_steps + spec.measure.steps) as progress:
            record = measure(spec, log=progress.log, on_step=progress.on_step, confirmed=yes)
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

    if text.count(",") >= 16:  # each slice is a run of its own
        raise ConfigError("--depth-slices", f"{text.count(',') + 1:,} slices; allowed: up to 16")
    slices = check_slices(spec, parse_slices(text))
    check_repeats(repeats)
    from harness.measure.fit import check_fits
    from harness.measure.slices import slice_spec
    from harness.measure.train import resolve_device

    check_fits(slice_spec(spec, max(slices)), resolve_device(spec.device).type)  # before any slice runs
    with interruptible():
        results = measure_slices(spec, slices, repeats=repeats, log=lambda m: print(m, file=sys.stderr, flush=True))
        save_many([run for r in results for run in r.runs], root)
        record = depth_sliced_record(spec, results)
        json_path = save(record, root)
    _show(record, json_path, root, as_json=as_json, report=report)


def _world_sizes(text: str) -> list[int]:
    sizes = int_list("--scaling", text, 1, MAX_NPROC)
    if 1 not in sizes:
        raise ConfigError("--scaling", "world sizes must include 1 (the baseline)")
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


def register(app: typer.Typer) -> None:
    """Add `run` to the main app."""
    app.command("run")(run)
