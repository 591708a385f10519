"""What every `harness` command module shares: where results live, JSON on stdout, SIGTERM, and
the flag that stands for an engine's config field in an error."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

from harness.errors import ConfigError, Interrupted


def results_dir(value: Optional[Path]) -> Path:
    """--results-dir, else $HARNESS_RESULTS_DIR, else results/."""
    return value or Path(os.environ.get("HARNESS_RESULTS_DIR", "results"))


def print_json(data: Any) -> None:
    """`data` as indented JSON on stdout (dates and paths as strings)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


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
ON_PREM_USD_PER_GPU = typer.Option(None, "--on-prem-usd-per-gpu", help="Purchase price of one owned GPU: adds the on-premises bill.")
AMORTIZE_YEARS = typer.Option(None, "--amortize-years", help="Years the owned hardware is amortised over (default 4).")
HOST_USD_PER_GPU = typer.Option(None, "--host-usd-per-gpu", help="Each GPU's share of the server, network and storage price (default 0).")
DUTY_CYCLE = typer.Option(None, "--duty-cycle", help="Share of its hours the owned hardware does paid work (default 1).")


def on_prem_options(**values: Optional[float]) -> dict[str, float]:
    """The on-premises options that were given (None: not given)."""
    return {name: value for name, value in values.items() if value is not None}
