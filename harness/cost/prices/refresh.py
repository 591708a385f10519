"""Refresh the bundled price snapshot from SkyPilot's catalog, each file at its latest commit.

For each provider the snapshot keeps, `refresh` asks the GitHub REST API for the latest commit
that touched the catalog file `sources.py` fetches (``GET /repos/skypilot-org/skypilot-catalog/
commits?path=<file>&per_page=1``: its ``sha`` and ``commit.committer.date``), fetches the file at
that commit (``raw.githubusercontent.com/skypilot-org/skypilot-catalog/<sha>/<file>``), parses it
with `skypilot.parse_skypilot_csv` (placeholders and spot prices equal to or above on-demand
rejected there, zones of a region merged into the cheapest, GCP GPU rows completed with their
host VM row) and keeps the rows `SELECTION` names. Every row it produces carries the commit date
(UTC, YYYY-MM-DD) as ``as_of`` and the raw file at the commit as ``source_url``.

`diff` compares two sets of rows; `render` writes them in `snapshot.SNAPSHOT_COLUMNS` order;
`write` checks the text with `load_snapshot` and writes it atomically. Any failure (HTTP, JSON,
CSV, a commit without a sha or date, a file with none of the selected rows) raises
PriceFetchError or ConfigError: never a partial snapshot.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable
from urllib.parse import quote

from harness.cost.prices.azure import AZURE_GPU_SKUS
from harness.cost.prices.client import DEFAULT_TIMEOUT_S, Get, check_url, session
from harness.cost.prices.offer import Offer, PriceFetchError
from harness.cost.prices.skypilot import parse_skypilot_csv
from harness.cost.prices.snapshot import SNAPSHOT_COLUMNS, SNAPSHOT_PATH, load_snapshot
from harness.cost.prices.sources import SOURCES
from harness.errors import ConfigError
from harness.files import write_atomic

REPO = "skypilot-org/skypilot-catalog"
API_BASE = "https://api.github.com"
RAW_BASE = "https://raw.githubusercontent.com"
PROVIDERS = ("aws", "gcp", "azure", "lambda")  # the snapshot's order
PRICE_FIELDS = ("gpu", "gpus_per_instance", "usd_per_hour", "host_usd_per_hour")  # what a row prices
_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Selection:
    """Which offers of one provider's file the snapshot keeps: one region, and either instance
    types by name or, for GCP, (GPU, GPUs per instance) pairs, each priced by its host VM when the
    file pairs one with it (`GCP_HOST_FAMILIES`), else kept GPU-only."""

    region: str
    instances: tuple[str, ...] = ()
    gpus: tuple[tuple[str, int], ...] = ()


# The rows the snapshot has kept since 2026-11-24 (README: "Where the rows come from").
SELECTION: dict[str, Selection] = {
    "aws": Selection("us-east-1", instances=(
        "p5.48xlarge", "p5.4xlarge", "p5en.48xlarge", "p6-b200.48xlarge", "p4d.24xlarge", "p4de.24xlarge",
        "p3.16xlarge", "p3dn.24xlarge", "g4dn.xlarge", "g5.xlarge", "g6.xlarge", "g6e.12xlarge")),
    "gcp": Selection("us-central1", gpus=(
        ("A100", 8), ("A100-80GB", 8), ("H100", 1), ("H100", 8), ("H200", 8), ("B200", 8), ("L4", 1),
        ("T4", 1), ("V100", 1))),
    "azure": Selection("eastus", instances=(
        "Standard_NC6s_v3", "Standard_NC24s_v3", "Standard_ND40rs_v2", "Standard_NC4as_T4_v3",
        "Standard_NC24ads_A100_v4", "Standard_ND96asr_v4", "Standard_ND96amsr_A100_v4",
        "Standard_NC40ads_H100_v5", "Standard_ND96isr_H100_v5", "Standard_NV36ads_A10_v5")),
    "lambda": Selection("us-east-1", instances=(
        "gpu_1x_h100_sxm5", "gpu_8x_h100_sxm5", "gpu_1x_h100_pcie", "gpu_1x_a100", "gpu_8x_a100_80gb_sxm4",
        "gpu_8x_v100", "gpu_1x_a10", "gpu_1x_b200_sxm6", "gpu_8x_b200_sxm6", "gpu_1x_gh200")),
}


@dataclass(frozen=True)
class SnapshotRow:
    """One row of snapshot.csv, as text (the file's own spelling, so that a diff is exact)."""

    provider: str
    instance: str
    region: str
    gpu: str
    gpus_per_instance: str
    usd_per_hour: str
    host_usd_per_hour: str
    spot: str
    as_of: str
    source_url: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.provider, self.instance, self.region, self.spot)

    def describe(self) -> str:
        kind = "spot" if self.spot == "true" else "on-demand"
        return f"{self.provider} {self.instance} {self.region} {kind}"


assert tuple(f.name for f in fields(SnapshotRow)) == SNAPSHOT_COLUMNS


@dataclass(frozen=True)
class Commit:
    """The latest commit touching one catalog file: its id and its committer date (UTC)."""

    provider: str
    path: str           # catalogs/v8/aws/vms.csv
    sha: str
    date: str           # YYYY-MM-DD, UTC

    @property
    def source_url(self) -> str:
        """The raw file at this commit (what every row from it names, whichever host served it)."""
        return f"{RAW_BASE}/{REPO}/{self.sha}/{self.path}"


@dataclass(frozen=True)
class ProviderRefresh:
    """One provider's new rows, the commit they are from, the selected offers the file lacks,
    and the corrections applied (each said in words)."""

    commit: Commit
    rows: tuple[SnapshotRow, ...]
    missing: tuple[str, ...]
    corrections: tuple[str, ...]


@dataclass(frozen=True)
class Diff:
    """Rows only in the new set, only in the old one, and in both with other values."""

    added: tuple[SnapshotRow, ...]
    removed: tuple[SnapshotRow, ...]
    changed: tuple[tuple[SnapshotRow, SnapshotRow], ...]  # (old, new)
    unchanged: int


def catalog_path(provider: str) -> str:
    """The catalog file `sources.py` fetches for `provider`, relative to the repository root."""
    url = SOURCES[f"skypilot-{provider}"].url
    return url.split("/master/", 1)[1]


def _base(base_url: str | None, default: str) -> str:
    return check_url(base_url).rstrip("/") if base_url else default


def latest_commit(get: Get, provider: str, api_base: str = API_BASE) -> Commit:
    """The latest commit of `provider`'s catalog file, from the GitHub commits API."""
    path = catalog_path(provider)
    url = f"{api_base}/repos/{REPO}/commits?path={quote(path, safe='/')}&per_page=1"
    try:
        payload = get(url).json()
    except ValueError:
        raise PriceFetchError(get.source, f"response from {url} is not JSON") from None
    if not isinstance(payload, list) or not payload:
        raise PriceFetchError(get.source, f"response from {url} lists no commit of {path}")

    def field(value: object, name: str) -> object:
        return value.get(name) if isinstance(value, dict) else None

    head = payload[0]
    sha, raw_date = field(head, "sha"), field(field(field(head, "commit"), "committer"), "date")
    if not isinstance(sha, str) or not _SHA.match(sha):
        raise PriceFetchError(get.source, f"response from {url} has no 40-hex commit sha (got {sha!r})")
    try:
        when = datetime.fromisoformat(str(raw_date).replace("Z", "+00:00"))
        if when.tzinfo is None:
            raise ValueError
    except ValueError:
        raise PriceFetchError(get.source, f"response from {url} has no ISO commit.committer.date with a "
                                          f"time zone (got {raw_date!r})") from None
    return Commit(provider, path, sha, when.astimezone(timezone.utc).date().isoformat())


def _num(usd: float) -> str:
    # Sums of two catalog prices (GCP GPUs + host VM) carry float noise: 23.47126 + 5.91582.
    return repr(round(usd, 9))


def _row(offer: Offer, commit: Commit, gpu: str, gpus: int) -> SnapshotRow:
    host = "" if offer.host_usd_per_hour is None else _num(offer.host_usd_per_hour)
    return SnapshotRow(offer.provider, offer.instance, offer.region, gpu, str(gpus), _num(offer.usd_per_hour),
                       host, "true" if offer.spot else "false", commit.date, commit.source_url)


def select(offers: Iterable[Offer], provider: str, commit: Commit) -> ProviderRefresh:
    """The rows `SELECTION[provider]` keeps from parsed `offers`: per pick its on-demand row then its
    spot row (when the file has a real spot price). Azure sizes whose GPU count the file misstates
    take `AZURE_GPU_SKUS`'s (Azure's size documentation), said in `corrections`."""
    choice = SELECTION[provider]
    here = [o for o in offers if o.region == choice.region and o.local_zone is None]
    rows: list[SnapshotRow] = []
    missing: list[str] = []
    corrections: list[str] = []

    def add(instance_offers: list[Offer]) -> None:
        for offer in sorted(instance_offers, key=lambda o: o.spot):
            gpu, gpus = offer.gpu, offer.gpus_per_instance
            documented = AZURE_GPU_SKUS.get(offer.instance) if provider == "azure" else None
            if documented is not None and documented != (gpu, gpus):
                gpu, gpus = documented
                note = (f"{offer.instance}: the file says {offer.gpus_per_instance} x {offer.gpu}; "
                        f"Azure's size documentation (AZURE_GPU_SKUS) says {gpus} x {gpu}, which the row uses")
                if note not in corrections:
                    corrections.append(note)
            rows.append(_row(offer, commit, gpu, gpus))

    for instance in choice.instances:
        found = [o for o in here if o.instance == instance]
        if found:
            add(found)
        else:
            missing.append(f"{provider} {instance} in {choice.region}")
    for gpu, gpus in choice.gpus:
        found = [o for o in here if o.gpu == gpu and o.gpus_per_instance == gpus]
        # A whole instance (GPU row + its host VM) before a GPU-only row; the cheapest on demand.
        ranked = sorted(found, key=lambda o: (o.gpu_only, o.spot, o.usd_per_hour))
        if not ranked:
            missing.append(f"{provider} {gpu} x{gpus} in {choice.region}")
            continue
        add([o for o in found if o.instance == ranked[0].instance])
    return ProviderRefresh(commit, tuple(rows), tuple(missing), tuple(corrections))


def refresh_provider(provider: str, *, base_url: str | None = None,
                     timeout_s: float = DEFAULT_TIMEOUT_S) -> ProviderRefresh:
    """`provider`'s rows from its catalog file at the file's latest commit. `base_url` stands for
    both api.github.com and raw.githubusercontent.com (a loopback server in tests); the rows'
    `source_url` always names the raw GitHub file at the commit."""
    if provider not in SELECTION:
        raise ConfigError("refresh.providers", f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}")
    api, raw = _base(base_url, API_BASE), _base(base_url, RAW_BASE)
    with session(f"skypilot-{provider}", timeout_s) as get:
        commit = latest_commit(get, provider, api)
        url = f"{raw}/{REPO}/{commit.sha}/{commit.path}"
        table = parse_skypilot_csv(get(url).text(), provider, commit.source_url, commit.date)
    if not table.offers:
        raise PriceFetchError(get.source, f"zero usable offers in {url} ({table.rejected} entries rejected)")
    result = select(table.offers, provider, commit)
    if not result.rows:
        raise PriceFetchError(get.source, f"none of the selected offers is in {url} "
                                          f"(lacks: {'; '.join(result.missing)})")
    return result


def read_rows(path: Path | str = SNAPSHOT_PATH) -> list[SnapshotRow]:
    """The rows of a snapshot file (checked by `load_snapshot` first)."""
    load_snapshot(path)
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return [SnapshotRow(**{k: v.strip() for k, v in row.items()}) for row in csv.DictReader(handle)]


def merge(old: Iterable[SnapshotRow], refreshed: Iterable[ProviderRefresh]) -> list[SnapshotRow]:
    """The new snapshot: each refreshed provider's rows in place of its old ones, the other
    providers' rows as they were, providers in `PROVIDERS` order."""
    new = {r.commit.provider: list(r.rows) for r in refreshed}
    kept: dict[str, list[SnapshotRow]] = {}
    for row in old:
        kept.setdefault(row.provider, []).append(row)
    order = list(PROVIDERS) + sorted(set(kept) - set(PROVIDERS))
    return [row for p in order for row in new.get(p, kept.get(p, []))]


def diff(old: Iterable[SnapshotRow], new: Iterable[SnapshotRow]) -> Diff:
    """What changes from `old` to `new`, rows matched by (provider, instance, region, spot)."""
    before = {r.key: r for r in old}
    after = {r.key: r for r in new}
    added = tuple(r for k, r in after.items() if k not in before)
    removed = tuple(r for k, r in before.items() if k not in after)
    both = [(before[k], r) for k, r in after.items() if k in before]
    changed = tuple((a, b) for a, b in both if a != b)
    return Diff(added, removed, changed, len(both) - len(changed))


def describe_change(old: SnapshotRow, new: SnapshotRow) -> str:
    """"<row>: field old -> new; ..." for the fields that differ."""
    parts = [f"{name} {getattr(old, name) or '(empty)'} -> {getattr(new, name) or '(empty)'}"
             for name in SNAPSHOT_COLUMNS if getattr(old, name) != getattr(new, name)]
    return f"{new.describe()}: {'; '.join(parts)}"


def render(rows: Iterable[SnapshotRow]) -> str:
    """snapshot.csv text: the header, then one line per row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SNAPSHOT_COLUMNS)
    for row in rows:
        writer.writerow([getattr(row, name) for name in SNAPSHOT_COLUMNS])
    return out.getvalue()


def write(rows: list[SnapshotRow], path: Path | str = SNAPSHOT_PATH) -> None:
    """Write `rows` to `path` atomically, after checking that `load_snapshot` reads every one of
    them back and drops none."""
    text = render(rows)
    with tempfile.TemporaryDirectory() as tmp:
        check = Path(tmp) / "snapshot.csv"
        check.write_text(text, encoding="utf-8")
        table = load_snapshot(check)
    if table.rejected or len(table.offers) != len(rows):
        raise ConfigError("refresh.snapshot", f"the refreshed rows do not load whole: {len(rows)} written, "
                                              f"{len(table.offers)} read, rejected {dict(table.rejected_reasons)}")
    write_atomic(Path(path), text)
