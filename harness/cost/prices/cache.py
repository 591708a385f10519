"""The price cache: one JSON file per source, ``<cache_dir>/<source>.json``, written atomically."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.cost.prices.offer import Offer, PriceTable
from harness.files import write_json_atomic

MAX_CACHE_BYTES = 256 * 2**20  # no cache of a real catalog comes near (the offers, not the CSV)
CACHE_SCHEMA = 2  # 2: offers carry form, local_zone, gpu_only, host_usd_per_hour (schema 1 caches are refetched)
# An offer's cached fields: all but its provenance, which the reader decides.
_OFFER_FIELDS = frozenset(f.name for f in fields(Offer)) - {"provenance"}


def cache_path(cache_dir: Path, source: str) -> Path:
    """Where `source`'s cached table lives."""
    return Path(cache_dir) / f"{source}.json"


def table_to_dict(table: PriceTable) -> dict:
    """A PriceTable as plain JSON (offers without their provenance, which the reader decides)."""
    offers = []
    for offer in table.offers:
        row = asdict(offer)
        row.pop("provenance")
        offers.append(row)
    return {"schema": CACHE_SCHEMA, "source": table.source, "url": table.url,
            "fetched_at": table.fetched_at, "rejected": table.rejected,
            "rejected_reasons": [list(r) for r in table.rejected_reasons], "offers": offers}


def table_from_dict(data: Any, provenance: str = "cache") -> PriceTable:
    """Inverse of `table_to_dict`; raises ValueError on anything malformed."""
    if not isinstance(data, dict) or data.get("schema") != CACHE_SCHEMA:
        raise ValueError(f"not a price cache of schema {CACHE_SCHEMA}")
    offers = []
    for row in data["offers"]:
        if not isinstance(row, dict) or set(row) != _OFFER_FIELDS:
            raise ValueError("an offer has missing or extra fields")
        offer = Offer(**row, provenance=provenance)
        if not (isinstance(offer.gpus_per_instance, int) and not isinstance(offer.gpus_per_instance, bool)
                and offer.gpus_per_instance >= 1
                and isinstance(offer.usd_per_hour, (int, float)) and 0 < offer.usd_per_hour < math.inf
                and isinstance(offer.usd_per_gpu_hour, (int, float)) and 0 < offer.usd_per_gpu_hour < math.inf
                and isinstance(offer.spot, bool) and isinstance(offer.gpu_only, bool)):
            raise ValueError(f"an offer has bad values: {row}")
        offers.append(offer)
    datetime.fromisoformat(data["fetched_at"])
    reasons = tuple((str(r), int(n)) for r, n in data.get("rejected_reasons", []))
    return PriceTable(source=str(data["source"]), url=str(data["url"]), fetched_at=data["fetched_at"],
                      offers=tuple(offers), rejected=int(data["rejected"]), rejected_reasons=reasons)


def read_cache(cache_dir: Path, source: str) -> tuple[PriceTable | None, str | None]:
    """(table, None) from the cache; (None, None) when there is none; (None, warning) when the
    file is unreadable or corrupt (it is then ignored, never trusted and never a crash)."""
    path = cache_path(cache_dir, source)
    if not path.exists():
        return None, None
    try:
        size = path.stat().st_size
        if size > MAX_CACHE_BYTES:
            return None, f"{source}: cache file {path} is {size:,} bytes, over {MAX_CACHE_BYTES:,}; ignoring it"
        return table_from_dict(json.loads(path.read_text(encoding="utf-8"))), None
    except RecursionError:
        return None, f"{source}: cache file {path} is unreadable (JSON nested too deeply); ignoring it"
    except (OSError, ValueError, KeyError, TypeError, OverflowError) as err:
        return None, f"{source}: cache file {path} is unreadable ({err.__class__.__name__}: {err}); ignoring it"


def write_cache(cache_dir: Path, table: PriceTable) -> Path:
    """Write `table` to the cache atomically (temp file in the same folder, then rename)."""
    path = cache_path(cache_dir, table.source)
    write_json_atomic(path, table_to_dict(table))
    return path


def staleness(table: PriceTable, url: str, now: datetime, ttl_s: float) -> str:
    """Empty when `table` is a fresh cache of `url`; else why it is not."""
    if table.url != url:
        return f"the cache is of {table.url}, not of the URL expected, {url}"
    fetched = datetime.fromisoformat(table.fetched_at)
    if fetched.tzinfo is None:
        fetched = fetched.replace(tzinfo=timezone.utc)
    if (now - fetched).total_seconds() >= ttl_s:
        return f"stale: older than {ttl_s / 3600:g} h"
    return ""
