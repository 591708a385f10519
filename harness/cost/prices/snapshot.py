"""The bundled price snapshot (``harness/data/prices/snapshot.csv``): dated, sourced rows, the last fallback."""

from __future__ import annotations

import csv
import io
import math
from datetime import date
from pathlib import Path

from harness.cost.prices.forms import instance_form
from harness.cost.prices.offer import Offer, PriceTable
from harness.cost.prices.rules import Rejects, drop_bad_spot
from harness.cost.prices.skypilot import GPU_ONLY_SUFFIX
from harness.data import data_path
from harness.errors import ConfigError

SNAPSHOT_PATH = data_path("prices", "snapshot.csv")
SNAPSHOT_COLUMNS = ("provider", "instance", "region", "gpu", "gpus_per_instance", "usd_per_hour",
                    "host_usd_per_hour", "spot", "as_of", "source_url")


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_snapshot(path: Path | str | None = None) -> PriceTable:
    """The bundled snapshot (`SNAPSHOT_COLUMNS`) as a PriceTable of provenance "snapshot".

    `host_usd_per_hour` is the host VM's part of `usd_per_hour` (GCP rows completed from a GPU
    row and its VM row), empty for a whole instance. The form comes from the instance type (as
    for fetched rows); an instance ending "(GPU only; host VM extra)" is GPU-only. Spot rows not
    below the on-demand row of the same instance and region are dropped and counted, as in the
    parsers. A malformed file raises ConfigError naming the file and the row."""
    path = Path(path) if path is not None else SNAPSHOT_PATH
    where = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(where, f"cannot read the price snapshot ({err})") from None
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != SNAPSHOT_COLUMNS:
        raise ConfigError(where, f"header must be {','.join(SNAPSHOT_COLUMNS)}; got {','.join(reader.fieldnames or [])}")
    offers = []
    for row_no, row in enumerate(reader, start=2):
        def bad(message: str) -> ConfigError:
            return ConfigError(where, f"row {row_no}: {message}")

        if None in row or any(v is None for v in row.values()):
            raise bad("wrong number of fields")
        row = {k: v.strip() for k, v in row.items()}
        for name in ("provider", "instance", "gpu"):
            if not row[name]:
                raise bad(f"{name} is empty")
        try:
            gpus = int(row["gpus_per_instance"])
            usd = float(row["usd_per_hour"])
        except ValueError:
            raise bad("gpus_per_instance must be an integer and usd_per_hour a number") from None
        if gpus < 1 or not math.isfinite(usd) or usd <= 0:
            raise bad("gpus_per_instance must be >= 1 and usd_per_hour > 0")
        try:
            host = float(row["host_usd_per_hour"]) if row["host_usd_per_hour"] else None
        except ValueError:
            raise bad("host_usd_per_hour must be a number or empty") from None
        if host is not None and not (math.isfinite(host) and 0 < host < usd):
            raise bad("host_usd_per_hour must be > 0 and below usd_per_hour")
        if row["spot"] not in ("true", "false"):
            raise bad(f"spot must be true or false, not {row['spot']!r}")
        try:
            if len(row["as_of"]) != 10:
                raise ValueError
            date.fromisoformat(row["as_of"])
        except ValueError:
            raise bad(f"as_of must be an ISO date (YYYY-MM-DD), not {row['as_of']!r}") from None
        if not row["source_url"].startswith("https://"):
            raise bad(f"source_url must be an https:// URL, not {row['source_url']!r}")
        offers.append(Offer(provider=row["provider"], instance=row["instance"], region=row["region"],
                            gpu=row["gpu"], gpus_per_instance=gpus, usd_per_hour=usd,
                            usd_per_gpu_hour=usd / gpus, spot=row["spot"] == "true", as_of=row["as_of"],
                            source=f"{where} ({row['source_url']})", provenance="snapshot",
                            form=instance_form(row["provider"], row["instance"]),
                            gpu_only=row["instance"].endswith(GPU_ONLY_SUFFIX), host_usd_per_hour=host))
    if not offers:
        raise ConfigError(where, "the price snapshot has no rows")
    latest = max(o.as_of for o in offers)
    rejects = Rejects()
    offers = drop_bad_spot(offers, rejects)
    return PriceTable(source="snapshot", url=where, fetched_at=f"{latest}T00:00:00Z",
                      offers=tuple(offers), rejected=rejects.total, rejected_reasons=rejects.items())
