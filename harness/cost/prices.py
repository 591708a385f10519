"""Price: GPU instance offers ($/hour) from public price lists, a local cache and a bundled snapshot.

Sources that need no credentials (REFERENCE.md §5):

- ``skypilot-<cloud>``: SkyPilot's catalog CSVs (aws, gcp, azure, lambda), parsed by column name.
- ``azure-retail``: the Azure Retail Prices API, paged JSON, GPU VM sizes only.

Every number says where it came from: an Offer carries ``provenance`` ("fetched", "cache" or
"snapshot"), ``source`` (the URL, or the snapshot file and the row's own URL) and ``as_of``.
Rows that cannot be priced honestly are dropped and counted (`PriceTable.rejected`), never guessed.

Network trouble never crashes `load_prices`: a failed fetch falls back to a stale cache, then to the
bundled snapshot, each with a warning. A cache file is written whole (temp file + rename) or not at all.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import math
import re
import time
from dataclasses import asdict, dataclass, fields, replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import quote, urlsplit

import httpx

from harness.data import data_path
from harness.errors import ConfigError, HarnessError
from harness.results.store import write_json_atomic


class PriceFetchError(HarnessError):
    """A price source could not be fetched or parsed; names the source and the reason."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


# ---------------------------------------------------------------------------------------------
# Value types


@dataclass(frozen=True)
class Offer:
    """One way to rent GPUs: an instance type in a region, on demand or spot, in USD per hour."""

    provider: str            # aws | gcp | azure | lambda | ...
    instance: str            # p5.48xlarge, Standard_ND96isr_H100_v5, "A100 x1 (GPU only; host VM extra)"
    region: str              # us-east-1, eastus ("" when the source has none)
    gpu: str                 # normalised model name (see `normalise_gpu`)
    gpus_per_instance: int
    usd_per_hour: float      # whole instance
    usd_per_gpu_hour: float  # usd_per_hour / gpus_per_instance
    spot: bool
    as_of: str               # ISO date the price is from
    source: str              # URL fetched, or "<snapshot file> (<row's source URL>)"
    provenance: str          # "fetched" | "cache" | "snapshot"


@dataclass(frozen=True)
class PriceTable:
    """The offers one source yielded, when, and how many entries were dropped and why."""

    source: str              # source name, e.g. "skypilot-aws"
    url: str
    fetched_at: str          # ISO datetime UTC
    offers: tuple[Offer, ...]
    rejected: int            # entries dropped (see `parse_skypilot_csv`, `parse_azure_page`)
    rejected_reasons: tuple[tuple[str, int], ...] = ()  # (reason, count), sorted by reason


@dataclass(frozen=True)
class TableSummary:
    """Where one source's offers in a `PriceResult` came from."""

    name: str
    url: str
    provenance: str          # "fetched" | "cache" | "snapshot" | "none"
    as_of: str               # ISO date of the prices
    fetched_at: str          # ISO datetime UTC of the fetch ("" for the snapshot)
    n_offers: int
    rejected: int

    # Reads as a mapping too, for JSON output: dict(summary), summary["name"]. Unknown keys raise.
    def keys(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self))

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)


@dataclass(frozen=True)
class PriceResult:
    """Offers from all requested sources, the warnings raised getting them, one summary per source."""

    offers: tuple[Offer, ...]
    warnings: tuple[str, ...]
    tables: tuple[TableSummary, ...]


# ---------------------------------------------------------------------------------------------
# Sources and policy

SKYPILOT_URL = "https://raw.githubusercontent.com/skypilot-org/skypilot-catalog/master/catalogs/v8/{cloud}/vms.csv"
AZURE_RETAIL_API = "https://prices.azure.com/api/retail/prices"

# Azure sizes whose GPUs we know (Azure's size documentation; the payload carries no GPU model or
# count). Unknown sizes are rejected, never guessed. Fractional-GPU sizes (NVads A10 v5 below
# NV36, NCads A10 v4) are left out on purpose: they do not rent a whole GPU.
AZURE_GPU_SKUS: dict[str, tuple[str, int]] = {
    "Standard_NC6s_v3": ("V100", 1),
    "Standard_NC12s_v3": ("V100", 2),
    "Standard_NC24s_v3": ("V100", 4),
    "Standard_NC24rs_v3": ("V100", 4),
    "Standard_ND40rs_v2": ("V100-32GB", 8),
    "Standard_NC4as_T4_v3": ("T4", 1),
    "Standard_NC8as_T4_v3": ("T4", 1),
    "Standard_NC16as_T4_v3": ("T4", 1),
    "Standard_NC64as_T4_v3": ("T4", 4),
    "Standard_NC24ads_A100_v4": ("A100-80GB", 1),
    "Standard_NC48ads_A100_v4": ("A100-80GB", 2),
    "Standard_NC96ads_A100_v4": ("A100-80GB", 4),
    "Standard_ND96asr_v4": ("A100", 8),
    "Standard_ND96amsr_A100_v4": ("A100-80GB", 8),
    "Standard_NC40ads_H100_v5": ("H100", 1),    # H100 NVL
    "Standard_NC80adis_H100_v5": ("H100", 2),   # H100 NVL
    "Standard_ND96isr_H100_v5": ("H100", 8),
    "Standard_ND96isr_H200_v5": ("H200", 8),
    "Standard_NV36ads_A10_v5": ("A10", 1),
    "Standard_NV36adms_A10_v5": ("A10", 1),
    "Standard_NV72ads_A10_v5": ("A10", 2),
    "Standard_ND96is_MI300X_v5": ("MI300X", 8),
}

# Only the sizes above, pay-as-you-go; Windows, Spot and Low Priority meters come back too and
# are sorted out by `parse_azure_page`.
AZURE_FILTER = ("serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and ("
                + " or ".join(f"armSkuName eq '{sku}'" for sku in sorted(AZURE_GPU_SKUS)) + ")")

SOURCES: dict[str, str] = {
    "skypilot-aws": SKYPILOT_URL.format(cloud="aws"),
    "skypilot-gcp": SKYPILOT_URL.format(cloud="gcp"),
    # The catalog publishes no Azure file after schema v6 (none under v7 or v8); v6's is the
    # latest and is no longer refreshed, so `azure-retail` is the default Azure source.
    "skypilot-azure": SKYPILOT_URL.replace("/v8/", "/v6/").format(cloud="azure"),
    "skypilot-lambda": SKYPILOT_URL.format(cloud="lambda"),
    "azure-retail": f"{AZURE_RETAIL_API}?$filter={quote(AZURE_FILTER, safe=chr(39) + '()_')}",
}
DEFAULT_SOURCES = ("skypilot-aws", "skypilot-gcp", "skypilot-lambda", "azure-retail")
SOURCE_PROVIDER: dict[str, str] = {
    "skypilot-aws": "aws", "skypilot-gcp": "gcp", "skypilot-azure": "azure",
    "skypilot-lambda": "lambda", "azure-retail": "azure",
}

DEFAULT_TTL_S = 7 * 3600          # SkyPilot re-pulls its catalogs every 7 hours
DEFAULT_CACHE_DIR = Path("results/cache/prices")
DEFAULT_TIMEOUT_S = 20.0
MAX_AZURE_PAGES = 200             # a filter for ~20 sizes fits in far fewer; more means a loop
_RETRY_BACKOFF_S = (0.25, 1.0)    # sleeps before the 2nd and 3rd try (connection errors, HTTP 5xx)

# Placeholder rule: SkyPilot writes exactly 700.0 $/h where it has no price; and no GPU rents for
# more than 100 $/GPU-hour (list prices top out near 15), so anything above is a placeholder too.
PLACEHOLDER_USD_PER_HOUR = 700.0
MAX_USD_PER_GPU_HOUR = 100.0

# Accelerators that are not GPUs: TPUs, Inferentia, Trainium, Gaudi, FPGAs, media/AI cards.
_NOT_GPU = re.compile(r"tpu|inferentia|trainium|gaudi|vu9p|qualcomm|ai100|^u30$", re.IGNORECASE)

# GCP lists attachable GPUs as rows without an InstanceType; their price is for the GPUs alone.
GPU_ONLY_SUFFIX = "(GPU only; host VM extra)"

SNAPSHOT_PATH = data_path("prices", "snapshot.csv")
SNAPSHOT_COLUMNS = ("provider", "instance", "region", "gpu", "gpus_per_instance", "usd_per_hour",
                    "spot", "as_of", "source_url")


def check_url(url: str) -> str:
    """Return `url` if it is https, or http to a loopback host (127.0.0.0/8, ::1, localhost);
    else raise ConfigError("--url")."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as err:
        raise ConfigError("--url", f"{url!r} is not a URL ({err})") from None
    if not host:
        raise ConfigError("--url", f"{url!r} has no host")
    scheme = parts.scheme.lower()
    if scheme == "https" or (scheme == "http" and _is_loopback(host)):
        return url
    raise ConfigError("--url", f"{url!r} is not allowed: use https, or http only to a loopback "
                               "address (127.0.0.0/8, ::1, localhost)")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# GPU names

# First match wins, on the upper-cased name with "NVIDIA"/"Tesla" removed. Form factors (SXM,
# PCIe, NVL) are not distinguished: catalogs rarely say. Memory variants are: "A100-80GB" when the
# name says 80 GB or the card has >= 60 GiB, "V100-32GB" when it says 32 GB or has >= 24 GiB.
_GPU_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"GH200", "GH200"),
    (r"GB200", "GB200"),
    (r"B200", "B200"),
    (r"H100.*MEGA", "H100-MEGA"),
    (r"H100", "H100"),
    (r"H200", "H200"),
    (r"A100", "A100"),
    (r"V100", "V100"),
    (r"A10G", "A10G"),
    (r"(?<![A-Z0-9])A10(?![0-9G])", "A10"),
    (r"L40S", "L40S"),
    (r"(?<![A-Z0-9])L40(?![0-9S])", "L40"),
    (r"(?<![A-Z0-9])L4(?![0-9])", "L4"),
    (r"(?<![A-Z0-9])T4G?(?![0-9])", "T4"),   # T4g (AWS g5g) is the same T4 on an Arm host
)


def normalise_gpu(name: str, memory_gib: float | None = None) -> str:
    """A catalog's GPU name as one canonical model name: "H100", "H100-MEGA", "H200", "B200",
    "A100", "A100-80GB", "V100", "V100-32GB", "A10G", "A10", "L40S", "L40", "L4", "T4", ...

    Names outside the table are upper-cased with spaces and underscores turned into "-"
    (e.g. "RTX6000", "MI300X"). `memory_gib` (per GPU) splits A100/A100-80GB and V100/V100-32GB
    when the name does not."""
    raw = re.sub(r"\b(NVIDIA|TESLA)\b", " ", name.upper()).strip()
    for pattern, model in _GPU_PATTERNS:
        if re.search(pattern, raw):
            if model == "A100" and (re.search(r"80\s*GB?", raw) or (memory_gib or 0) >= 60):
                return "A100-80GB"
            if model == "V100" and (re.search(r"32\s*GB?", raw) or (memory_gib or 0) >= 24):
                return "V100-32GB"
            return model
    return re.sub(r"[\s_]+", "-", raw)


def _gpu_memory_gib(gpu_info: str) -> float | None:
    """Per-GPU memory from SkyPilot's GpuInfo column ("...'SizeInMiB': 81920..."), if present."""
    match = re.search(r"'SizeInMiB':\s*([0-9.]+)", gpu_info or "")
    return float(match.group(1)) / 1024 if match else None


# ---------------------------------------------------------------------------------------------
# Parsers (pure: text or JSON in, values out)


class _Rejects:
    """Counts dropped entries by reason."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def add(self, reason: str, n: int = 1) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + n

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def items(self) -> tuple[tuple[str, int], ...]:
        return tuple(sorted(self.counts.items()))


def _price(raw: Any, gpus: int) -> tuple[float | None, str | None]:
    """(usd_per_hour, None) for a usable price, else (None, reason)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None, "missing price"
    try:
        usd = float(raw)
    except (TypeError, ValueError):
        return None, "non-numeric price"
    if not math.isfinite(usd):
        return None, "non-numeric price"
    if usd <= 0:
        return None, "zero or negative price"
    if usd == PLACEHOLDER_USD_PER_HOUR or usd / gpus > MAX_USD_PER_GPU_HOUR:
        return None, "placeholder price"
    return usd, None


def _cheapest(offers: Iterable[Offer]) -> list[Offer]:
    """One offer per (provider, instance, region, spot): the lowest price (zones of one region)."""
    best: dict[tuple, Offer] = {}
    for offer in offers:
        key = (offer.provider, offer.instance, offer.region, offer.spot)
        if key not in best or offer.usd_per_hour < best[key].usd_per_hour:
            best[key] = offer
    return sorted(best.values(), key=lambda o: (o.gpu, o.usd_per_gpu_hour, o.instance, o.region, o.spot))


def _iso_now(now: datetime) -> str:
    return now.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_skypilot_csv(text: str, provider: str, url: str, as_of: str, *,
                       fetched_at: str | None = None, source: str | None = None) -> PriceTable:
    """Offers from one SkyPilot ``vms.csv``, read by column name (column order differs by cloud).

    Each row gives an on-demand offer (Price) and, when SpotPrice is non-empty, a spot offer.
    Dropped and counted in `rejected`: a row with no AcceleratorName counts once (CPU rows, and
    GCP a2/a3 rows, which price the host VM only: their GPUs are separate rows), as does a row
    whose accelerator is not a GPU (TPU, Inferentia, Trainium...) or whose count is not a whole
    number >= 1; otherwise each price (on-demand, spot) that is missing, non-numeric, <= 0 or a
    placeholder (exactly 700.0 $/h, or above 100 $/GPU-hour) counts once.
    Rows of one region (its availability zones, AWS Local Zones included) merge into the cheapest.
    GCP rows without an InstanceType price attachable GPUs alone: their instance reads
    "<gpu> x<n> (GPU only; host VM extra)".
    A truncated or malformed body (missing columns, a short row, no final newline, broken
    quoting) raises PriceFetchError: never a partial table.
    """
    source = source or f"skypilot-{provider}"
    if not text.strip():
        raise PriceFetchError(source, f"empty body from {url}")
    if not text.endswith(("\n", "\r")):
        raise PriceFetchError(source, f"body from {url} is truncated (no final newline)")
    try:
        rows = list(csv.reader(io.StringIO(text), strict=True))
    except csv.Error as err:
        raise PriceFetchError(source, f"body from {url} is not valid CSV ({err})") from None
    header = [name.strip().lower() for name in rows[0]]
    col = {name: i for i, name in enumerate(header)}
    required = ("instancetype", "acceleratorname", "acceleratorcount", "price", "region")
    missing = [name for name in required if name not in col]
    if missing:
        raise PriceFetchError(source, f"CSV from {url} lacks column(s) {', '.join(missing)} "
                                      f"(has: {', '.join(rows[0])})")

    rejects = _Rejects()
    offers: list[Offer] = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise PriceFetchError(source, f"CSV from {url} is truncated or malformed: line {line_no} "
                                          f"has {len(row)} fields, the header {len(header)}")

        def get(name: str) -> str:
            return row[col[name]].strip() if name in col else ""

        accelerator = get("acceleratorname")
        if not accelerator:
            rejects.add("no accelerator")
            continue
        if _NOT_GPU.search(accelerator):
            rejects.add("not a GPU")
            continue
        try:
            count_f = float(get("acceleratorcount"))
        except ValueError:
            count_f = 0.0
        if not (count_f >= 1 and count_f.is_integer()):
            rejects.add("bad accelerator count")
            continue
        gpus = int(count_f)
        gpu = normalise_gpu(accelerator, _gpu_memory_gib(get("gpuinfo")))
        instance = get("instancetype") or f"{gpu} x{gpus} {GPU_ONLY_SUFFIX}"
        entries = [(False, get("price"))]
        if get("spotprice"):
            entries.append((True, get("spotprice")))
        for spot, raw in entries:
            usd, why = _price(raw, gpus)
            if why:
                rejects.add(why)
                continue
            offers.append(Offer(provider=provider, instance=instance, region=get("region"), gpu=gpu,
                                gpus_per_instance=gpus, usd_per_hour=usd, usd_per_gpu_hour=usd / gpus,
                                spot=spot, as_of=as_of, source=url, provenance="fetched"))
    return PriceTable(source=source, url=url, fetched_at=fetched_at or f"{as_of}T00:00:00Z",
                      offers=tuple(_cheapest(offers)), rejected=rejects.total,
                      rejected_reasons=rejects.items())


def _azure_page(payload: Any, url: str, as_of: str) -> tuple[list[Offer], _Rejects, str | None]:
    if not isinstance(payload, dict):
        raise PriceFetchError("azure-retail", f"response from {url} is not a JSON object")
    items, next_link = payload.get("Items"), payload.get("NextPageLink", ...)
    if not isinstance(items, list):
        raise PriceFetchError("azure-retail", f"response from {url} has no Items list")
    if next_link is ... or not (next_link is None or isinstance(next_link, str)):
        raise PriceFetchError("azure-retail", f"response from {url} has no valid NextPageLink")
    rejects = _Rejects()
    offers: list[Offer] = []
    for item in items:
        if not isinstance(item, dict):
            rejects.add("unparsable item")
            continue
        sku_name = str(item.get("skuName", ""))
        arm_sku = str(item.get("armSkuName", ""))
        if item.get("currencyCode") != "USD":
            rejects.add("not USD")
        elif item.get("unitOfMeasure") != "1 Hour":
            rejects.add("not per hour")
        elif item.get("type") != "Consumption":
            rejects.add("not Consumption")
        elif "Windows" in str(item.get("productName", "")):
            rejects.add("Windows")
        elif " Low Priority" in sku_name:
            rejects.add("Low Priority")
        elif item.get("isPrimaryMeterRegion") is False:
            rejects.add("non-primary meter")
        elif arm_sku not in AZURE_GPU_SKUS:
            rejects.add("unknown SKU")
        else:
            gpu, gpus = AZURE_GPU_SKUS[arm_sku]
            usd, why = _price(item.get("retailPrice"), gpus)
            if why:
                rejects.add(why)
                continue
            offers.append(Offer(provider="azure", instance=arm_sku, region=str(item.get("armRegionName", "")),
                                gpu=gpu, gpus_per_instance=gpus, usd_per_hour=usd, usd_per_gpu_hour=usd / gpus,
                                spot=" Spot" in sku_name, as_of=as_of, source=url, provenance="fetched"))
    return offers, rejects, next_link or None


def parse_azure_page(payload: dict, url: str, as_of: str) -> tuple[list[Offer], int, str | None]:
    """(offers, rejected, next_link) from one page of the Azure Retail Prices API.

    Kept: type "Consumption", currencyCode "USD", unitOfMeasure "1 Hour", a size in
    `AZURE_GPU_SKUS` (the payload has no GPU model or count). skuName with " Spot" is a spot
    offer. Rejected, one count per item: Windows (productName), " Low Priority" (another tier),
    a non-primary meter (a duplicate), an unknown size, a zero, missing or placeholder price.
    (`fetch` merges offers repeated across pages into the cheapest, like zones in a CSV.)
    A payload without an Items list or NextPageLink raises PriceFetchError."""
    offers, rejects, next_link = _azure_page(payload, url, as_of)
    return offers, rejects.total, next_link


# ---------------------------------------------------------------------------------------------
# Fetching


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    return now if now.tzinfo else now.replace(tzinfo=timezone.utc)


def _get(client: httpx.Client, url: str, source: str, timeout_s: float) -> httpx.Response:
    """GET `url`; retry connection errors and HTTP 5xx (not timeouts: a slow server stays slow)."""
    for attempt in range(len(_RETRY_BACKOFF_S) + 1):
        last = attempt == len(_RETRY_BACKOFF_S)
        try:
            response = client.get(url)
        except httpx.TimeoutException:
            raise PriceFetchError(source, f"timed out after {timeout_s:g} s fetching {url}") from None
        except httpx.ConnectError as err:
            if last:
                raise PriceFetchError(source, f"cannot connect to {url} ({err})") from None
        except httpx.TransportError as err:  # body cut short, protocol error, read error
            raise PriceFetchError(source, f"transfer from {url} failed ({err.__class__.__name__}: {err})") from None
        except httpx.HTTPError as err:  # e.g. a body that does not decompress
            raise PriceFetchError(source, f"request to {url} failed ({err.__class__.__name__}: {err})") from None
        else:
            if response.status_code == 200:
                return response
            if response.status_code < 500 or last:
                raise PriceFetchError(source, f"HTTP {response.status_code} from {url}")
        time.sleep(_RETRY_BACKOFF_S[attempt])
    raise AssertionError("unreachable")


def fetch(source: str, url: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S,
          now: datetime | None = None) -> PriceTable:
    """Fetch and parse one source now (default URL from `SOURCES`). Any failure (connection,
    DNS, timeout, HTTP status other than 200, bad JSON or CSV, a truncated body, zero usable
    offers) raises PriceFetchError naming the source and the reason."""
    if source not in SOURCES:
        raise ConfigError("--source", f"unknown price source {source!r}; known: {', '.join(SOURCES)}")
    url = check_url(url or SOURCES[source])
    now = _utc(now)
    as_of, fetched_at = now.date().isoformat(), _iso_now(now)
    headers = {"User-Agent": "harness-prices/0.1"}
    with httpx.Client(timeout=timeout_s, follow_redirects=False, headers=headers) as client:
        if source == "azure-retail":
            table = _fetch_azure(client, source, url, as_of, fetched_at, timeout_s)
        else:
            response = _get(client, url, source, timeout_s)
            table = parse_skypilot_csv(response.text, SOURCE_PROVIDER[source], url, as_of,
                                       fetched_at=fetched_at, source=source)
    if not table.offers:
        raise PriceFetchError(source, f"zero usable offers from {url} ({table.rejected} entries rejected)")
    return table


def _fetch_azure(client: httpx.Client, source: str, url: str, as_of: str, fetched_at: str,
                 timeout_s: float) -> PriceTable:
    offers: list[Offer] = []
    rejects = _Rejects()
    page_url: str | None = url
    pages = 0
    while page_url:
        pages += 1
        if pages > MAX_AZURE_PAGES:
            raise PriceFetchError(source, f"more than {MAX_AZURE_PAGES} pages from {url}; giving up")
        response = _get(client, page_url, source, timeout_s)
        try:
            payload = response.json()
        except ValueError as err:
            raise PriceFetchError(source, f"response from {page_url} is not valid JSON ({err})") from None
        page_offers, page_rejects, next_link = _azure_page(payload, page_url, as_of)
        offers += page_offers
        for reason, n in page_rejects.items():
            rejects.add(reason, n)
        if next_link:
            try:
                check_url(next_link)
            except ConfigError as err:
                raise PriceFetchError(source, f"NextPageLink not followed: {err.message}") from None
        page_url = next_link
    # Offers keep the first page's URL as their source: later pages are its continuation.
    offers = [replace(o, source=url) for o in offers]
    return PriceTable(source=source, url=url, fetched_at=fetched_at, offers=tuple(_cheapest(offers)),
                      rejected=rejects.total, rejected_reasons=rejects.items())


# ---------------------------------------------------------------------------------------------
# Cache: <cache_dir>/<source>.json, written atomically

CACHE_SCHEMA = 1


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
        raise ValueError("not a price cache of schema 1")
    fields = ("provider", "instance", "region", "gpu", "gpus_per_instance", "usd_per_hour",
              "usd_per_gpu_hour", "spot", "as_of", "source")
    offers = []
    for row in data["offers"]:
        if not isinstance(row, dict) or set(row) != set(fields):
            raise ValueError("an offer has missing or extra fields")
        offer = Offer(**row, provenance=provenance)
        if not (isinstance(offer.gpus_per_instance, int) and offer.gpus_per_instance >= 1
                and isinstance(offer.usd_per_hour, (int, float)) and offer.usd_per_hour > 0
                and isinstance(offer.spot, bool)):
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
        return table_from_dict(json.loads(path.read_text(encoding="utf-8"))), None
    except (OSError, ValueError, KeyError, TypeError) as err:
        return None, f"{source}: cache file {path} is unreadable ({err.__class__.__name__}: {err}); ignoring it"


def write_cache(cache_dir: Path, table: PriceTable) -> Path:
    """Write `table` to the cache atomically (temp file in the same folder, then rename)."""
    path = cache_path(cache_dir, table.source)
    write_json_atomic(path, table_to_dict(table))
    return path


def _staleness(table: PriceTable, url: str, now: datetime, ttl_s: float) -> str:
    """Empty when `table` is a fresh cache of `url`; else why it is not."""
    if table.url != url:
        return f"it is for another URL, {table.url}"
    fetched = datetime.fromisoformat(table.fetched_at)
    if fetched.tzinfo is None:
        fetched = fetched.replace(tzinfo=timezone.utc)
    if (now - fetched).total_seconds() >= ttl_s:
        return f"stale: older than {ttl_s / 3600:g} h"
    return ""


# ---------------------------------------------------------------------------------------------
# Snapshot: harness/data/prices/snapshot.csv


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_snapshot(path: Path | str | None = None) -> PriceTable:
    """The bundled snapshot (`SNAPSHOT_COLUMNS`) as a PriceTable of provenance "snapshot".
    A malformed file raises ConfigError naming the file and the row."""
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
                            source=f"{where} ({row['source_url']})", provenance="snapshot"))
    if not offers:
        raise ConfigError(where, "the price snapshot has no rows")
    latest = max(o.as_of for o in offers)
    return PriceTable(source="snapshot", url=where, fetched_at=f"{latest}T00:00:00Z",
                      offers=tuple(offers), rejected=0)


# ---------------------------------------------------------------------------------------------
# Orchestration


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
    names = list(sources) if sources is not None else list(DEFAULT_SOURCES)
    for name in names:
        if name not in SOURCES:
            raise ConfigError("--source", f"unknown price source {name!r}; known: {', '.join(SOURCES)}")
    urls = dict(urls or {})
    for name, url in urls.items():
        if name not in SOURCES:
            raise ConfigError("--url", f"URL given for unknown source {name!r}")
        check_url(url)
    cache_dir = Path(cache_dir)
    now = _utc(now)

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

    def use_snapshot(name: str, why: str) -> None:
        nonlocal snapshot
        if snapshot is None:
            snapshot = load_snapshot(snapshot_path)
        provider = SOURCE_PROVIDER[name]
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

    for name in names:
        url = urls.get(name, SOURCES[name])
        cached, warning = read_cache(cache_dir, name)
        if warning:
            warnings.append(warning)
        stale = _staleness(cached, url, now, ttl_s) if cached is not None else "no cache"
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
                use_snapshot(name, "offline and no cache")
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
                use_snapshot(name, f"fetch failed ({err.reason}) and there is no cache")
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


def filter_offers(offers: Iterable[Offer], gpu: str | None = None, spot: bool | None = None) -> list[Offer]:
    """Offers for a GPU and/or pricing kind, cheapest per GPU-hour first.

    `gpu` is normalised, then names a family: "A100" matches A100 and A100-80GB, "H100" matches
    H100 and H100-MEGA, "V100" matches V100 and V100-32GB; "A100-80GB" matches only itself;
    "A10" matches neither A100 nor A10G. Case does not matter."""
    want = normalise_gpu(gpu).upper() if gpu else None
    kept = [o for o in offers
            if (want is None or o.gpu.upper() == want or o.gpu.upper().startswith(want + "-"))
            and (spot is None or o.spot == spot)]
    return sorted(kept, key=lambda o: (o.usd_per_gpu_hour, o.provider, o.instance, o.region))


__all__ = [
    "AZURE_GPU_SKUS", "DEFAULT_CACHE_DIR", "DEFAULT_SOURCES", "DEFAULT_TTL_S", "GPU_ONLY_SUFFIX", "Offer", "PriceFetchError", "PriceResult",
    "PriceTable", "SNAPSHOT_PATH", "SOURCES", "TableSummary", "cache_path", "check_url", "fetch",
    "filter_offers", "load_prices", "load_snapshot", "normalise_gpu", "parse_azure_page",
    "parse_skypilot_csv", "read_cache", "update", "write_cache",
]
