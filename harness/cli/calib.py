"""The calibration commands of the `harness` CLI: `sweep` and `calibrate`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness.cli.common import interruptible, print_json, results_dir as _results_dir


def sweep(
    sweep_file: Path = typer.Argument(..., help="Sweep YAML: name, base, grid of dotted keys → value lists."),
    resume: bool = typer.Option(False, "--resume", help="Skip points already measured (by config hash) or failed."),
    results_dir: Optional[Path] = typer.Option(None, "--results-dir", help="Where records and the sweep state go."),
    as_json: bool = typer.Option(False, "--json", help="Print the sweep state as JSON at the end."),
    yes: bool = typer.Option(False, "--yes", help="Run a grid of more than 1,000 points."),
) -> None:
    """Measure a grid of configurations; out-of-memory points are recorded as failed."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from harness.results.store import load_runs
    from harness.measure.sweep import load_sweep, run_sweep, state_path

    plan = load_sweep(sweep_file, confirmed=yes)
    root = _results_dir(results_dir)
    measured = [h for h in load_runs(root)["config_hash"].tolist() if h] if resume else []
    console = Console(stderr=True)
    columns = (TextColumn("sweep {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with interruptible(), Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(plan.name, total=len(plan.points))

        def on_point(entry):
            status = entry["status"] + (f" ({entry['note']})" if entry.get("note") else "")
            progress.console.print(f"point {entry['index']}: {', '.join(entry['overrides'])} → {status}"
                                   + (f" {entry['error']}" if entry.get("error") else ""))
            progress.advance(task)

        state = run_sweep(plan, results_dir=root, resume=resume, source=str(sweep_file),
                          measured_hashes=measured, on_point=on_point,
                          measure=_quiet_measure)
    counts = {s: sum(p["status"] == s for p in state.points) for s in ("measured", "failed")}
    console.print(f"sweep {plan.name}: {counts['measured']} measured, {counts['failed']} failed; "
                  f"state in {state_path(root, plan.name)}")
    if as_json:
        print_json(state.to_dict())


def _quiet_measure(spec):
    from harness.measure.run import measure

    return measure(spec, log=lambda message: None)


def calibrate(
    device: Optional[str] = typer.Option(None, "--device", help="Only devices whose name contains this."),
    with_published: bool = typer.Option(False, "--with-published", help="Fit the published measurements (harness/data/published) beside the local runs, each marked."),
    results_dir: Optional[Path] = typer.Option(None, "--results-dir", help="Where the records are; the table goes here."),
    as_json: bool = typer.Option(False, "--json", help="Print the fits as JSON."),
) -> None:
    """Fit MFU against width, tokens per step and length (those the runs vary) per device and dtype; write the table."""
    from rich.console import Console
    from rich.table import Table

    from harness.cost.calibrate import FEATURES, MIN_RUNS, calibrate as fit, write_calibration
    from harness.errors import ConfigError
    from harness.results.store import load_records

    root = _results_dir(results_dir)
    fits = fit(load_records(root), device=device, published=with_published)
    if not fits:
        raise ConfigError("--device" if device else "results", f"no device and dtype with at least {MIN_RUNS} "
                          f"stored runs in {root}" + ("" if with_published else "; run a sweep first, or add "
                                                      "--with-published"))
    path = write_calibration(fits, root)
    if as_json:
        print_json({"path": str(path), "fits": [f.to_dict() for f in fits]})
        return
    table = Table(title="MFU = a + b ln(hidden) + c ln(tokens/step) + d ln(seq); b, c >= 0; "
                        "— : not fitted (the runs do not determine it)")
    for col in ("device", "dtype", "basis", "runs", "of them published", "a", "b", "c", "d", "RMSE", "LOO RMSE", "hidden", "tokens/step",
                "seq"):
        table.add_column(col, justify="left" if col in ("device", "dtype", "basis") else "right")
    for f in fits:
        c = f.coef
        terms = [f"{c[k]:.4f}" if k in f.features_used else "—" for k in FEATURES]
        r = f.ranges
        table.add_row(f.gpu or f.device, f.dtype, f.mfu_basis, str(f.n), str(len(f.published)), f"{c['intercept']:.4f}", *terms,
                      f"{f.rmse:.4f}", "unknown (< 3 runs)" if f.loo_rmse is None else f"{f.loo_rmse:.4f}",
                      f"{r['hidden'][0]}–{r['hidden'][1]}",
                      f"{r['tokens_per_step'][0]:g}–{r['tokens_per_step'][1]:g}", f"{r['seq_len'][0]}–{r['seq_len'][1]}")
    console = Console(width=max(150, Console().width))
    console.print(table)
    for f in fits:
        if f.published:
            console.print(f"{f.gpu or f.device} {f.dtype}: {len(f.published)} published point(s), MFU in this "
                          f"project's FLOP convention: {', '.join(p.removeprefix('published:') for p in f.published)}",
                          soft_wrap=True)
        for name, why in f.features_dropped.items():
            console.print(f"{f.gpu or f.device} {f.dtype}: {name} not fitted: {why}")
    console.print(f"calibration table written to {path}; `harness estimate` uses it for sizes not measured")


def register(app: typer.Typer) -> None:
    """Add the calibration commands to the main app."""
    app.command("sweep")(sweep)
    app.command("calibrate")(calibrate)
