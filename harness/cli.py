"""The `harness` command line. Errors in input: one line on stderr, exit code 2, nothing written."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from harness.errors import HarnessError, Interrupted

try:  # recent typer vendors click; older versions use click itself
    from typer._click.exceptions import ClickException as _ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException as _ClickException

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Empirical FLOPs profiler and benchmark harness for transformer training.")

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _results_dir(value: Optional[Path]) -> Path:
    return value or Path(os.environ.get("HARNESS_RESULTS_DIR", "results"))


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def _si(value: float | None, unit: str) -> str:
    if value is None:
        return "unknown"
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _pct(value: float | None) -> str:
    return "n/a (no datasheet peak)" if value is None else f"{value:.2%}"


def _summary(record, json_path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    r = record
    model = r.model
    title = (f"{model['preset'] or model['family']} · {r.params / 1e6:.2f}M params · "
             f"{r.device['type']} ({r.device['name']}) · {r.dtype}")
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("source")
    rows = [
        ("batch x seq x accum", f"{r.batch_size} x {r.seq_len} x {r.grad_accum}", "config"),
        ("median step", f"{r.median_step_s * 1e3:.2f} ms (IQR {r.iqr_step_s * 1e3:.2f} ms, CV {r.cv_step:.1%})",
         f"measured, {len(r.step_times_s)} steps"),
        ("throughput", f"{r.tokens_per_s:,.0f} tokens/s · {r.samples_per_s:,.2f} samples/s", "measured"),
        ("model FLOPs / step", _si(r.model_flops_per_step, "FLOP"), "counted (2*MAC)"),
        ("hardware FLOPs / step", _si(r.hardware_flops_per_step, "FLOP"), "counted, recompute incl."),
        ("6N / PaLM FLOPs / step", f"{_si(r.flops['analytic']['six_n_per_step'], 'FLOP')} / "
         f"{_si(r.flops['analytic']['palm_per_step'], 'FLOP')}", "analytic"),
        ("achieved", _si(r.achieved_flops_per_s, "FLOP/s"), "model FLOPs / measured time"),
        ("peak (measured matmul)", _si(r.peak_flops_measured, "FLOP/s"), "measured"),
        ("peak (datasheet)", _si(r.peak_flops_datasheet, "FLOP/s"), r.peaks["datasheet"]["gpu"] or "none for this device"),
        ("MFU vs measured / datasheet", f"{_pct(r.mfu_measured)} / {_pct(r.mfu_datasheet)}", "derived"),
        ("HFU vs measured / datasheet", f"{_pct(r.hfu_measured)} / {_pct(r.hfu_datasheet)}", "derived"),
        ("peak memory", _si(r.peak_memory_bytes, "B"), r.peak_memory_method),
    ]
    for row in rows:
        table.add_row(*row)
    console = Console()
    console.print(table)
    for warning in r.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    console.print(f"record written to {json_path}")


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt


@app.command()
def run(
    config: Optional[Path] = typer.Argument(None, help="YAML config or preset name (default configs/default.yaml)."),
    set_: List[str] = typer.Option([], "--set", help="Override a config key: --set model.layers=2"),
    as_json: bool = typer.Option(False, "--json", help="Print the record alone on stdout."),
    results_dir: Optional[Path] = typer.Option(None, "--results-dir", help="Where records go (default results/ or $HARNESS_RESULTS_DIR)."),
) -> None:
    """Measure training steps of a model and write the record."""
    from harness.config import load_spec

    spec = load_spec(config, set_)
    from harness.run import measure
    from harness.store import save

    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        record = measure(spec)
        json_path = save(record, _results_dir(results_dir))
    except KeyboardInterrupt:
        raise Interrupted from None
    if as_json:
        _print_json(record.to_dict())
    else:
        _summary(record, json_path)


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
    from harness.config import DeviceKind  # noqa: F401  (documents the allowed values)
    from harness.env import collect_env
    from harness.errors import ConfigError
    from harness.peaks import datasheet_peak, measure_peak
    from harness.train import resolve_device, supported_dtypes

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
        print(f"harness: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except _ClickException as err:
        print(f"harness: error: {err.format_message()}", file=sys.stderr)
        return EXIT_USAGE
    except (Interrupted, KeyboardInterrupt, typer.Abort):
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED:  # typer turns a stray KeyboardInterrupt into exit code 130
        print("harness: interrupted; no record was written", file=sys.stderr)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
