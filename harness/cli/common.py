"""What every `harness` command module shares: where results live, JSON on stdout, SIGTERM, the
flag that stands for an engine's config field in an error, and the bounded numeric options."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer

from harness.errors import ConfigError, HarnessError, Interrupted, shorten


def results_dir(value: Optional[Path]) -> Path:
    """--results-dir, else $HARNESS_RESULTS_DIR, else results/."""
    return value or Path(os.environ.get("HARNESS_RESULTS_DIR", "results"))


def to_json(data: Any) -> str:
    """`data` as indented JSON (dates and paths as strings): strict JSON, so a figure that is not
    finite (NaN, infinity) is a HarnessError naming it rather than a `NaN` no JSON reader takes."""
    try:
        return json.dumps(data, indent=2, default=str, allow_nan=False)
    except ValueError:
        where = _non_finite(data)
        raise HarnessError(f"a figure of the output is not finite ({where or 'unknown field'}); "
                           "nothing was printed") from None


def _non_finite(data: Any, path: str = "") -> str | None:
    """The dotted path of the first non-finite float in `data`."""
    if isinstance(data, float) and not math.isfinite(data):
        return path or "value"
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, (list, tuple)):
        items = enumerate(data)
    else:
        return None
    for key, value in items:
        found = _non_finite(value, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None


def print_json(data: Any) -> None:
    """`data` as indented, strict JSON on stdout (see :func:`to_json`)."""
    sys.stdout.write(to_json(data) + "\n")
    sys.stdout.flush()


# Numeric options: `typer.Option(..., parser=bounded_float("--pue", 1, 10))`. A value outside the
# range, not finite, or not a number is a ConfigError naming the flag (one line, exit 2).
def _number(flag: str, text: Any, kind: type) -> Any:
    if isinstance(text, bool):
        raise ConfigError(flag, f"expected a number, got {text!r}")
    if isinstance(text, (int, float)):
        return kind(text) if kind is float or isinstance(text, int) else text
    raw = str(text).strip()
    try:
        if kind is int:
            if len(raw) > 20:  # 64-bit integers have at most 19 digits and a sign
                raise ValueError
            return int(raw)
        return float(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(flag, f"expected {what}, got {shorten(str(text))}") from None


def bounded_float(flag: str, low: float, high: float, *, low_open: bool = False) -> Callable[[Any], float]:
    """A parser for a finite real in [low, high] (or (low, high] with `low_open`)."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"

    def parse(text: Any) -> float:
        value = _number(flag, text, float)
        if not math.isfinite(value):
            raise ConfigError(flag, f"must be finite; allowed: {interval}")
        if value < low or (low_open and value == low) or value > high:
            raise ConfigError(flag, f"{value:g} is out of range; allowed: {interval}")
        return value

    return parse


def bounded_int(flag: str, low: int, high: int) -> Callable[[Any], int]:
    """A parser for an integer in low..high."""

    def parse(text: Any) -> int:
        value = _number(flag, text, int)
        if not low <= value <= high:
            raise ConfigError(flag, f"{shorten(value, 24)} is out of range; allowed: {low:,}..{high:,}")
        return value

    return parse


def int_list(flag: str, text: str, low: int, high: int, *, max_items: int = 16) -> list[int]:
    """``"1,2,4"`` → [1, 2, 4], each in low..high, at most `max_items` of them."""
    parts = [part.strip() for part in str(text).split(",") if part.strip()]
    if not parts:
        raise ConfigError(flag, f"expected integers separated by commas (e.g. 1,2,4), got {shorten(text)}")
    if len(parts) > max_items:
        raise ConfigError(flag, f"{len(parts)} values; allowed: up to {max_items}")
    parse = bounded_int(flag, low, high)
    return [parse(part) for part in parts]


MAX_DEVICES = 2**20  # data-parallel devices of one job (the largest published runs use ~2**15)


def _on_sigterm(signum, frame):
    """SIGTERM handler: raise KeyboardInterrupt, so that a run stops the way Ctrl-C stops it."""
    raise KeyboardInterrupt


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Around a long command: SIGTERM stops it as Ctrl-C does, and either becomes Interrupted
    (exit 130, "no record was written"); stored data is written all or nothing underneath."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted from None


# The engine's errors name config fields; the command line names its flags. Fields not listed
# here are shown as they are (config paths such as train.seq_len are what --set takes).
FLAG_OF_FIELD = {
    "estimate.devices": "--devices", "estimate.gpu": "--gpu", "estimate.dtype": "--dtype",
    "estimate.utilization": "--utilization", "estimate.scaling_efficiency": "--scaling-efficiency",
    "estimate.fully_loaded_multiplier": "--fully-loaded-multiplier", "estimate.pue": "--pue",
    "estimate.carbon_region": "--carbon-region", "estimate.carbon_intensity_kg_per_kwh": "--carbon-intensity",
    "estimate.usd_per_kwh": "--usd-per-kwh", "gpu": "--gpu", "dtype": "--dtype",
    "prices.url": "--url", "prices.source": "--source", "reproduce.utilization": "--utilization",
    "overrides": "--set", "slices.depths": "--depth-slices", "slices.repeats": "--slice-repeats",
    "corpus.file": "--corpus", "plan.file": "--plan", "results.since": "--since", "results.until": "--until",
    "results.run": "--run", "export.format": "--format", "export.out": "--out", "sweep.resume": "--resume",
    "launch.nproc": "--nproc", "launch.nnodes": "--nnodes", "launch.node_rank": "--node-rank",
    "launch.rdzv_endpoint": "--rdzv-endpoint", "estimate.micro_batch": "--micro-batch",
    "estimate.on_prem_usd_per_gpu": "--on-prem-usd-per-gpu", "estimate.amortize_years": "--amortize-years",
    "estimate.host_usd_per_gpu": "--host-usd-per-gpu", "estimate.duty_cycle": "--duty-cycle",
    "estimate.goodput": "--goodput",
}


def as_flags(err: ConfigError) -> ConfigError:
    """`err` with its field named as the command line's flag, where it has one."""
    flag = FLAG_OF_FIELD.get(err.field)
    return err if flag is None else ConfigError(flag, err.message)


# The owned-hardware options `estimate` and `report` share; `on_prem_options` turns them into
# estimate options, leaving out those not given (their defaults are then said to be defaults).
ON_PREM_USD_PER_GPU = typer.Option(None, "--on-prem-usd-per-gpu", parser=bounded_float("--on-prem-usd-per-gpu", 0, 1e8, low_open=True), help="Purchase price of one owned GPU: adds the on-premises bill.")
AMORTIZE_YEARS = typer.Option(None, "--amortize-years", parser=bounded_float("--amortize-years", 0, 100, low_open=True), help="Years the owned hardware is amortised over (default 4).")
HOST_USD_PER_GPU = typer.Option(None, "--host-usd-per-gpu", parser=bounded_float("--host-usd-per-gpu", 0, 1e8), help="Each GPU's share of the server, network and storage price (default 0).")
DUTY_CYCLE = typer.Option(None, "--duty-cycle", parser=bounded_float("--duty-cycle", 0.01, 1), help="Share of its hours the owned hardware does paid work (default 1).")
USD_PER_KWH = (0.0, 100.0)  # the range of --usd-per-kwh (estimate, report)


def on_prem_options(**values: Optional[float]) -> dict[str, float]:
    """The on-premises options that were given (None: not given)."""
    return {name: value for name, value in values.items() if value is not None}
