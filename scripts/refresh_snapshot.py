#!/usr/bin/env python3
"""Refresh harness/data/prices/snapshot.csv from SkyPilot's catalog, each file at its latest commit.

    scripts/refresh_snapshot.py [--providers aws,gcp,azure,lambda] [--dry-run]
                                [--snapshot PATH] [--base-url URL] [--timeout-s S]

For each provider: the latest commit of its catalog file (GitHub commits API), the file at that
commit, the rows the snapshot keeps (`harness.cost.prices.refresh.SELECTION`), dated with the
commit date and pinned to the commit. Providers not named keep their rows as they are. Prints
the commits and what changes (rows added, removed, changed); `--dry-run` writes nothing.
`--base-url` replaces both https://api.github.com and https://raw.githubusercontent.com (https,
or http to a loopback address only).

Exit 0: written (or, with --dry-run, compared); 2: bad input or a failed fetch, one line on
stderr, nothing written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cost.prices.client import DEFAULT_TIMEOUT_S
from harness.cost.prices.refresh import (PRICE_FIELDS, PROVIDERS, describe_change, diff, merge, read_rows,
                                         refresh_provider, write)
from harness.cost.prices.snapshot import SNAPSHOT_PATH
from harness.errors import ConfigError, HarnessError


def _providers(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [p for p in names if p not in PROVIDERS]
    if unknown or not names:
        raise ConfigError("--providers", f"{text!r}: give a comma-separated list of {', '.join(PROVIDERS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--providers", default=",".join(PROVIDERS), help="comma-separated (default: all)")
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT_PATH, help="the snapshot file to refresh")
    parser.add_argument("--base-url", default=None, help="one host standing for the GitHub API and raw hosts")
    parser.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S)
    parser.add_argument("--dry-run", action="store_true", help="print what would change; write nothing")
    args = parser.parse_args(argv)
    try:
        providers = _providers(args.providers)
        if not args.timeout_s > 0:
            raise ConfigError("--timeout-s", f"must be > 0, not {args.timeout_s:g}")
        old = read_rows(args.snapshot)
        refreshed = [refresh_provider(p, base_url=args.base_url, timeout_s=args.timeout_s) for p in providers]
        new = merge(old, refreshed)
        change = diff(old, new)
        if not args.dry_run:
            write(new, args.snapshot)
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for r in refreshed:
        print(f"{r.commit.provider}: {r.commit.path} at {r.commit.sha} ({r.commit.date}): {len(r.rows)} rows")
        for note in r.corrections:
            print(f"  corrected: {note}")
        for what in r.missing:
            print(f"  not in the file: {what}")
    priced = [(a, b) for a, b in change.changed if any(getattr(a, f) != getattr(b, f) for f in PRICE_FIELDS)]
    print(f"rows: {len(change.added)} added, {len(change.removed)} removed, {len(change.changed)} changed "
          f"({len(priced)} in price or GPUs, {len(change.changed) - len(priced)} only in as_of or source_url), "
          f"{change.unchanged} unchanged")
    for row in change.added:
        print(f"+ {row.describe()}: {row.usd_per_hour} $/h")
    for row in change.removed:
        print(f"- {row.describe()}: {row.usd_per_hour} $/h")
    for old_row, new_row in priced:
        print(f"~ {describe_change(old_row, new_row)}")
    if args.dry_run:
        print(f"dry run: {args.snapshot} not written")
    else:
        print(f"wrote {args.snapshot} ({len(new)} rows); update the commit table in its README.md to match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
