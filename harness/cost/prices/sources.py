"""The price sources by name (`SOURCES`, a registry of `Source` values) and `fetch`: one source, now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Callable

from harness.cost.prices import azure, skypilot
from harness.cost.prices.client import DEFAULT_TIMEOUT_S, Get, check_url, session
from harness.cost.prices.offer import PriceFetchError, PriceTable
from harness.errors import ConfigError


@dataclass(frozen=True)
class Source:
    """A price list: its name, the provider its offers are for (which snapshot rows stand in for it),
    its default URL, and `read(get, url, as_of, fetched_at)`, which fetches and parses it."""

    name: str
    provider: str
    url: str
    read: Callable[[Get, str, str, str], PriceTable]


def _skypilot(cloud: str, schema: str = "v8") -> Source:
    return Source(f"skypilot-{cloud}", cloud, skypilot.catalog_url(cloud, schema),
                  partial(skypilot.read, provider=cloud))


SOURCES: dict[str, Source] = {source.name: source for source in (
    _skypilot("aws"),
    _skypilot("gcp"),
    # The catalog publishes no Azure file after schema v6 (none under v7 or v8); v6's is the
    # latest and is no longer refreshed, so `azure-retail` is the default Azure source.
    _skypilot("azure", schema="v6"),
    _skypilot("lambda"),
    Source(azure.NAME, "azure", azure.URL, azure.read),
)}
DEFAULT_SOURCES = ("skypilot-aws", "skypilot-gcp", "skypilot-lambda", "azure-retail")


def source_named(name: str) -> Source:
    """The registered source `name`; else ConfigError("prices.source") listing the known ones."""
    if name not in SOURCES:
        raise ConfigError("prices.source", f"unknown price source {name!r}; known: {', '.join(SOURCES)}")
    return SOURCES[name]


def utc(now: datetime | None) -> datetime:
    """`now` as an aware UTC datetime (the current time when None; naive means UTC)."""
    if now is None:
        return datetime.now(timezone.utc)
    return now if now.tzinfo else now.replace(tzinfo=timezone.utc)


def _iso(now: datetime) -> str:
    return now.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def fetch(source: str, url: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S,
          now: datetime | None = None, deadline_s: float | None = None) -> PriceTable:
    """Fetch and parse one source now (default URL from `SOURCES`). Any failure (connection,
    DNS, timeout per read or past `deadline_s` for the whole fetch, HTTP status other than 200, a
    body over the size limits, bad JSON or CSV, a truncated body, zero usable offers) raises
    PriceFetchError naming the source and the reason."""
    spec = source_named(source)
    url = check_url(url or spec.url)
    now = utc(now)
    with session(source, timeout_s, deadline_s) as get:
        table = spec.read(get, url, now.date().isoformat(), _iso(now))
    if not table.offers:
        raise PriceFetchError(source, f"zero usable offers from {url} ({table.rejected} entries rejected)")
    return table
