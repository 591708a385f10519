"""Loading prices: each source from the best place available (fresh cache, fetch, stale cache,
snapshot), with a warning for every fallback."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Iterable, Mapping

from harness.cost.prices.cache import cache_path, read_cache, staleness, write_cache
from harness.cost.prices.client import DEFAULT_TIMEOUT_S, check_url
from harness.cost.prices.offer import Offer, PriceFetchError, PriceResult, PriceTable, TableSummary
from harness.cost.prices.snapshot import load_snapshot
from harness.cost.prices.sources import DEFAULT_SOURCES, SOURCES, Source, fetch, source_named, utc
from harness.errors import ConfigError

DEFAULT_TTL_S = 7 * 3600          # SkyPilot re-pulls its catalogs every 7 hours


def load_prices(sources: Iterable[str] | None = None, *, cache_dir: Path | str,
                urls: Mapping[str, str] | None = None, ttl_s: float = DEFAULT_TTL_S,
                offline: bool = False, now: datetime | None = None,
                snapshot_path: Path | str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                force: bool = False) -> PriceResult:
    """Offers from `sources` (default `DEFAULT_SOURCES`), each from the best place available:

    1. a cache younger than `ttl_s` for the same URL ("cache"), unless `force`;
    2. unless `offline`: a fetch, written to the cache ("fetched");
    3. a cache of any age, with a warning naming the source, why, and the cache's date;
    4. the bundled snapshot's rows for the source's provider, with a warning naming its date.

    Offline never touches the network. Network trouble is a warning, never an exception; bad
    arguments (unknown source, disallowed URL) and a malformed snapshot raise ConfigError."""
    chosen = [source_named(name) for name in (sources if sources is not None else DEFAULT_SOURCES)]
    urls = dict(urls or {})
    for name, url in urls.items():
        if name not in SOURCES:
            raise ConfigError("prices.url", f"URL given for unknown source {name!r}")
        check_url(url)
    cache_dir = Path(cache_dir)
    now = utc(now)

    snapshot: PriceTable | None = None
    snapshot_providers: set[str] = set()
    offers: list[Offer] = []
    warnings: list[str] = []
    tables: list[TableSummary] = []

    def use_table(name: str, table: PriceTable, provenance: str) -> None:
        got = [replace(o, provenance=provenance) for o in table.offers]
        offers.extend(got)
        tables.append(TableSummary(name=name, url=table.url, provenance=provenance,
                                   as_of=table.fetched_at[:10], fetched_at=table.fetched_at,
                                   n_offers=len(got), rejected=table.rejected))

    def use_snapshot(source: Source, why: str) -> None:
        nonlocal snapshot
        if snapshot is None:
            snapshot = load_snapshot(snapshot_path)
        name, provider = source.name, source.provider
        rows = [o for o in snapshot.offers if o.provider == provider]
        as_of = max((o.as_of for o in rows), default="")
        if not rows:
            warnings.append(f"{name}: {why}; the bundled snapshot {snapshot.url} has no {provider} rows either")
        elif provider in snapshot_providers:
            warnings.append(f"{name}: {why}; the snapshot's {provider} rows are already included")
            rows = []
        else:
            warnings.append(f"{name}: {why}; using the bundled snapshot {snapshot.url} for {provider} "
                            f"(prices as of {as_of})")
            snapshot_providers.add(provider)
        offers.extend(rows)
        tables.append(TableSummary(name=name, url=snapshot.url, provenance="snapshot" if rows else "none",
                                   as_of=as_of, fetched_at="", n_offers=len(rows), rejected=0))

    for source in chosen:
        name = source.name
        url = urls.get(name, source.url)
        cached, warning = read_cache(cache_dir, name)
        if warning:
            warnings.append(warning)
        stale = staleness(cached, url, now, ttl_s) if cached is not None else "no cache"
        if not stale and not force:
            use_table(name, cached, "cache")
            continue
        if offline:
            if cached is not None:
                if stale:
                    warnings.append(f"{name}: offline; using cached prices fetched {cached.fetched_at} "
                                    f"from {cached.url} ({stale})")
                use_table(name, cached, "cache")
            else:
                use_snapshot(source, "offline and no cache")
            continue
        try:
            table = fetch(name, url, timeout_s=timeout_s, now=now)
        except PriceFetchError as err:
            if cached is not None:
                note = f" ({stale})" if stale else ""
                warnings.append(f"{name}: fetch failed ({err.reason}); using cached prices fetched "
                                f"{cached.fetched_at} from {cached.url}{note}")
                use_table(name, cached, "cache")
            else:
                use_snapshot(source, f"fetch failed ({err.reason}) and there is no cache")
            continue
        try:
            write_cache(cache_dir, table)
        except OSError as err:
            warnings.append(f"{name}: could not write the cache {cache_path(cache_dir, name)} ({err}); "
                            "prices are used but not cached")
        use_table(name, table, "fetched")

    return PriceResult(offers=tuple(offers), warnings=tuple(warnings), tables=tuple(tables))


def update(sources: Iterable[str] | None = None, *, cache_dir: Path | str,
           urls: Mapping[str, str] | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
           now: datetime | None = None, snapshot_path: Path | str | None = None) -> PriceResult:
    """Fetch every source now, ignoring the TTL; the same fallbacks as `load_prices`."""
    return load_prices(sources, cache_dir=cache_dir, urls=urls, now=now, timeout_s=timeout_s,
                       snapshot_path=snapshot_path, force=True)
