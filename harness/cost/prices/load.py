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
from harness.cost.prices.sources import DEFAULT_SOURCES, SOURCES, fetch, source_named, utc
from harness.errors import ConfigError

DEFAULT_TTL_S = 7 * 3600          # SkyPilot re-pulls its catalogs every 7 hours


def _cached_sources(cache_dir: Path) -> list[str]:
    """Registered sources with a cache file in `cache_dir` (fetched once by `prices update --source`)."""
    return [name for name in SOURCES if cache_path(cache_dir, name).exists()]


def load_prices(sources: Iterable[str] | None = None, *, cache_dir: Path | str,
                urls: Mapping[str, str] | None = None, ttl_s: float = DEFAULT_TTL_S,
                offline: bool = False, now: datetime | None = None,
                snapshot_path: Path | str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                force: bool = False) -> PriceResult:
    """Offers from `sources` (default: `DEFAULT_SOURCES` and every other source with a cache file
    in `cache_dir`, so that a table once fetched is used), each from the best place available:

    1. a cache younger than `ttl_s` for the same URL ("cache"), unless `force`;
    2. unless `offline`: a fetch, written to the cache ("fetched");
    3. a cache of any age, with a warning naming the source, why (stale, or cached from another
       URL than the one expected, both named), and the cache's date;
    4. the bundled snapshot's rows for the source's provider, with a warning naming its date;
       never when another source already gave that provider's prices from a fetch or a cache
       (stale snapshot rows do not stand beside fetched ones), and once per provider.

    Offline never touches the network. Network trouble is a warning, never an exception; bad
    arguments (unknown source, disallowed URL) and a malformed snapshot raise ConfigError."""
    cache_dir = Path(cache_dir)
    if sources is None:
        sources = list(DEFAULT_SOURCES) + [n for n in _cached_sources(cache_dir) if n not in DEFAULT_SOURCES]
    chosen = [source_named(name) for name in sources]
    urls = dict(urls or {})
    for name, url in urls.items():
        if name not in SOURCES:
            raise ConfigError("prices.url", f"URL given for unknown source {name!r}")
        check_url(url)
    now = utc(now)

    # First every source from a fetch or a cache; then the snapshot where neither gave anything,
    # knowing by then which providers have live or cached prices.
    got: dict[str, tuple[PriceTable, str] | str] = {}   # name -> (table, provenance) | why it has none
    notes: dict[str, list[str]] = {source.name: [] for source in chosen}
    for source in chosen:
        name = source.name
        url = urls.get(name, source.url)
        cached, warning = read_cache(cache_dir, name)
        if warning:
            notes[name].append(warning)
        stale = staleness(cached, url, now, ttl_s) if cached is not None else "no cache"
        if not stale and not force:
            got[name] = (cached, "cache")
            continue
        if offline:
            if cached is not None:
                notes[name].append(f"{name}: offline; using cached prices fetched {cached.fetched_at} "
                                   f"from {cached.url} ({stale})")
                got[name] = (cached, "cache")
            else:
                got[name] = "offline and no cache"
            continue
        try:
            table = fetch(name, url, timeout_s=timeout_s, now=now)
        except PriceFetchError as err:
            if cached is not None:
                note = f" ({stale})" if stale else ""
                notes[name].append(f"{name}: fetch failed ({err.reason}); using cached prices fetched "
                                   f"{cached.fetched_at} from {cached.url}{note}")
                got[name] = (cached, "cache")
            else:
                got[name] = f"fetch failed ({err.reason}) and there is no cache"
            continue
        try:
            write_cache(cache_dir, table)
        except OSError as err:
            notes[name].append(f"{name}: could not write the cache {cache_path(cache_dir, name)} ({err}); "
                               "prices are used but not cached")
        got[name] = (table, "fetched")

    live = {}  # provider -> the first source that gave its prices from a fetch or a cache
    for source in chosen:
        if isinstance(got[source.name], tuple):
            live.setdefault(source.provider, source.name)

    snapshot: PriceTable | None = None
    snapshot_providers: set[str] = set()
    offers: list[Offer] = []
    warnings: list[str] = []
    tables: list[TableSummary] = []
    for source in chosen:
        name, provider, outcome = source.name, source.provider, got[source.name]
        warnings.extend(notes[name])
        if isinstance(outcome, tuple):
            table, provenance = outcome
            rows = [replace(o, provenance=provenance) for o in table.offers]
            offers.extend(rows)
            tables.append(TableSummary(name=name, url=table.url, provenance=provenance,
                                       as_of=table.fetched_at[:10], fetched_at=table.fetched_at,
                                       n_offers=len(rows), rejected=table.rejected,
                                       rejected_reasons=table.rejected_reasons))
            continue
        why = outcome
        if provider in live:
            warnings.append(f"{name}: {why}; {provider} prices come from {live[provider]} "
                            "(no snapshot rows beside them)")
            tables.append(TableSummary(name=name, url=urls.get(name, source.url), provenance="none", as_of="",
                                       fetched_at="", n_offers=0, rejected=0))
            continue
        if snapshot is None:
            snapshot = load_snapshot(snapshot_path)
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

    return PriceResult(offers=tuple(offers), warnings=tuple(warnings), tables=tuple(tables))


def update(sources: Iterable[str] | None = None, *, cache_dir: Path | str,
           urls: Mapping[str, str] | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
           now: datetime | None = None, snapshot_path: Path | str | None = None) -> PriceResult:
    """Fetch every source now, ignoring the TTL; the same fallbacks as `load_prices`."""
    return load_prices(sources, cache_dir=cache_dir, urls=urls, now=now, timeout_s=timeout_s,
                       snapshot_path=snapshot_path, force=True)
