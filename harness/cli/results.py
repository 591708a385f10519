"""The results commands of the `harness` CLI: `results list|show|export|import` and `report`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from harness.cli.common import (AMORTIZE_YEARS, DUTY_CYCLE, HOST_USD_PER_GPU, ON_PREM_USD_PER_GPU, USD_PER_KWH,
                                bounded_float, interruptible, on_prem_options,
                                print_json as _print_json, results_dir as _results_dir)

results_app = typer.Typer(no_args_is_help=True, help="The results database: list, show, export, import.")






_RESULTS_DIR = typer.Option(None, "--results-dir", help="Where runs are stored (default results/ or $HARNESS_RESULTS_DIR).")
_MODEL = typer.Option(None, "--model", help="Only this preset or family.")
_DEVICE = typer.Option(None, "--device", help="Only this device type (cpu, cuda) or device name part (H100).")
_DTYPE = typer.Option(None, "--dtype", help="Only this precision.")
_SINCE = typer.Option(None, "--since", help="Only runs created at or after this ISO date/datetime (UTC).")
_UNTIL = typer.Option(None, "--until", help="Only runs created at or before this ISO date/datetime (UTC).")


@results_app.command("list")
def results_list(
    model: Optional[str] = _MODEL, device: Optional[str] = _DEVICE, dtype: Optional[str] = _DTYPE,
    since: Optional[str] = _SINCE, until: Optional[str] = _UNTIL,
    results_dir: Optional[Path] = _RESULTS_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print the flat rows as JSON."),
) -> None:
    """List stored runs, oldest first, with their headline figures."""
    from harness.results.api import load

    frame = load(_results_dir(results_dir), model=model, device=device, dtype=dtype, since=since, until=until,
                 with_record=True)
    labels = [record.model_label for record in frame.pop("record")]  # "bert-base (layers=2)"
    if as_json:
        frame = frame.astype(object).where(frame.notna(), None)
        frame["created_at"] = [t.isoformat() for t in frame["created_at"]]
        _print_json(frame.to_dict(orient="records"))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(150, Console().width))
    if frame.empty:
        console.print(f"no stored runs in {_results_dir(results_dir)} match")
        return
    table = Table(title=f"{len(frame)} run(s) in {_results_dir(results_dir)}")
    for col in ("run", "created (UTC)", "model", "params", "device", "dtype", "median step", "tokens/s",
                "MFU meas.", "MFU sheet", "J/step"):
        table.add_column(col, justify="left" if col in ("run", "created (UTC)", "model", "device", "dtype") else "right")

    frame = frame.astype(object).where(frame.notna(), None)  # NaN → None: unknown stays unknown

    def fmt(value, spec: str, unit: str = "") -> str:
        return "n/a" if value is None else f"{value:{spec}}{unit}"

    for row, label in zip(frame.itertuples(), labels):
        table.add_row(row.run_id, row.created_at.strftime("%Y-%m-%d %H:%M"), label,
                      fmt(row.params and row.params / 1e6, ",.2f", "M"), str(row.device_name or row.device_type),
                      str(row.dtype), fmt(row.median_step_s and row.median_step_s * 1e3, ".3g", " ms"),
                      fmt(row.tokens_per_s, ",.0f"), fmt(row.mfu_measured, ".2%"), fmt(row.mfu_datasheet, ".2%"),
                      fmt(row.energy_j_per_step, ".3g"))
    console.print(table)


@results_app.command("show")
def results_show(
    run_id: str = typer.Argument(..., help="Run id or a unique prefix of it."),
    results_dir: Optional[Path] = _RESULTS_DIR,
) -> None:
    """Print one stored record (the full JSON)."""
    from harness.errors import ConfigError
    from harness.results.api import get

    try:
        record = get(run_id, _results_dir(results_dir))
    except ConfigError as err:  # the run is this command's RUN_ID argument, not --run
        raise ConfigError("RUN_ID", err.message) from None
    _print_json(record.to_dict())


@results_app.command("export")
def results_export(
    fmt: Optional[str] = typer.Option(None, "--format", help="csv or parquet (default: from --out's suffix)."),
    out: Path = typer.Option(..., "--out", help="File to write."),
    model: Optional[str] = _MODEL, device: Optional[str] = _DEVICE, dtype: Optional[str] = _DTYPE,
    since: Optional[str] = _SINCE, until: Optional[str] = _UNTIL,
    results_dir: Optional[Path] = _RESULTS_DIR,
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file that is not a CSV/Parquet file."),
) -> None:
    """Write stored runs as CSV or Parquet: flat columns plus record_json (the whole record)."""
    from harness.results.api import export

    n = export(_results_dir(results_dir), out, fmt, force=force, model=model, device=device, dtype=dtype,
               since=since, until=until)
    print(f"{n} run(s) written to {out}")


@results_app.command("import")
def results_import(
    files: List[Path] = typer.Argument(..., help="JSON records (one or a list per file) or CSV/Parquet exports."),
    results_dir: Optional[Path] = _RESULTS_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print what was added and skipped as JSON."),
) -> None:
    """Store records from other machines; run ids already stored are skipped. All or nothing."""
    from harness.results.api import import_files

    with interruptible():  # SIGTERM as Ctrl-C: the transaction and the files it wrote are undone
        result = import_files(files, _results_dir(results_dir))
    if as_json:
        _print_json({"added": list(result.added), "skipped": list(result.skipped), "files": list(result.files)})
        return
    print(f"imported {len(result.added)} run(s) from {len(result.files)} file(s) into {_results_dir(results_dir)}; "
          f"{len(result.skipped)} already stored, skipped")


def write_report(run_ids: list[str], *, all_runs: bool, out: Optional[Path], results_dir: Path,
                 corpus: Optional[str] = None, plan: Optional[str] = None, gpu: Optional[str] = None,
                 dtype: Optional[str] = None, on_prem: dict | None = None):
    """Select the runs, build the report and write it; returns harness.report.Written."""
    from harness.errors import ConfigError
    from harness.report import Options, build, write
    from harness.results.store import find_record, load_records

    from harness.files import check_output_path
    from harness.results.store import results_db

    if all_runs and run_ids:
        raise ConfigError("--all", "give RUN_ID ... or --all, not both")
    out = out or results_dir / "report"
    check_output_path(out, db_path=results_db(results_dir), kind="report")
    if not all_runs and not run_ids:
        raise ConfigError("RUN_ID", "give one or more run ids (or unique prefixes), or --all")
    stored = load_records(results_dir)
    if not stored:
        raise ConfigError("RUN_ID", f"no stored runs in {results_dir}; run `harness run` first")
    if all_runs:
        chosen = stored
    else:
        chosen = []
        for run_id in run_ids:
            try:
                record = find_record(results_dir, run_id)
            except ConfigError as err:
                raise ConfigError("RUN_ID", err.message) from None
            if record.run_id not in {r.run_id for r in chosen}:
                chosen.append(record)
    options = Options(**{k: v for k, v in (("corpus", corpus), ("plan", plan), ("gpu", gpu), ("dtype", dtype))
                         if v is not None},
                      on_prem=tuple((on_prem or {}).items()))
    _check_options(options)
    from harness.cost.calibrate import read_calibration

    report = build(chosen, all_records=stored, cache_dir=results_dir / "cache" / "prices", options=options,
                   calibration=read_calibration(results_dir))
    return write(report, out)


def _check_options(options) -> None:
    """Bad --corpus/--plan/--gpu/--dtype/on-premises figures fail before any figure is drawn."""
    from harness.cost.estimate import EstimateOptions
    from harness.hardware import datasheet_by_name, math_mode
    from harness.cost.plans import load_corpus, load_plan

    EstimateOptions.build(**dict(options.on_prem))

    load_corpus(options.corpus)
    if options.plan:
        load_plan(options.plan)
    datasheet_by_name(options.gpu, math_mode(options.dtype))


def report(
    run_ids: List[str] = typer.Argument(None, help="Run ids (or unique prefixes) to report."),
    all_runs: bool = typer.Option(False, "--all", help="Report every stored run."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for report.md, report.html and figures/ (default <results-dir>/report)."),
    corpus: Optional[str] = typer.Option(None, "--corpus", help="Corpus the cost section prices (default bert-wiki-books)."),
    plan: Optional[str] = typer.Option(None, "--plan", help="Plan (default: the corpus's recipe)."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="GPU that runs off a datasheet GPU are projected to (default A100)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Precision of that projection (default bf16)."),
    on_prem_usd_per_gpu: Optional[float] = ON_PREM_USD_PER_GPU,
    amortize_years: Optional[float] = AMORTIZE_YEARS,
    host_usd_per_gpu: Optional[float] = HOST_USD_PER_GPU,
    duty_cycle: Optional[float] = DUTY_CYCLE,
    usd_per_kwh: Optional[float] = typer.Option(None, "--usd-per-kwh", parser=bounded_float("--usd-per-kwh", *USD_PER_KWH), help="Electricity price, for the on-premises bill's energy."),
    goodput: Optional[float] = typer.Option(None, "--goodput", parser=bounded_float("--goodput", 0, 1, low_open=True), help="Share of the bill that is steady-state training (default 1.0: steady state only)."),
    results_dir: Optional[Path] = _RESULTS_DIR,
) -> None:
    """Write report.md and a self-contained report.html with plots of the chosen runs."""
    on_prem = on_prem_options(on_prem_usd_per_gpu=on_prem_usd_per_gpu, amortize_years=amortize_years,
                              host_usd_per_gpu=host_usd_per_gpu, duty_cycle=duty_cycle, usd_per_kwh=usd_per_kwh,
                              goodput=goodput)
    with interruptible():  # SIGTERM as Ctrl-C: the report appears whole or not at all
        written = write_report(list(run_ids or []), all_runs=all_runs, out=out,
                               results_dir=_results_dir(results_dir), corpus=corpus, plan=plan, gpu=gpu,
                               dtype=dtype, on_prem=on_prem)
    print(f"report written to {written.html} (and {written.markdown.name}, {len(written.figures)} figures)")


def register(app: typer.Typer) -> None:
    """Add the results and report commands to the main app."""
    app.add_typer(results_app, name="results")
    app.command("report")(report)
