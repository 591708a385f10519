"""SkyPilot's catalog CSVs (``vms.csv`` per cloud: aws, gcp, azure, lambda), parsed by column name."""

from __future__ import annotations

import csv
import io
import re

from harness.cost.prices.client import Get
from harness.cost.prices.offer import Offer, PriceFetchError, PriceTable
from harness.cost.prices.rules import Rejects, cheapest, usable_price
from harness.hardware import normalise_gpu

_CATALOG_URL = "https://raw.githubusercontent.com/skypilot-org/skypilot-catalog/master/catalogs/{schema}/{cloud}/vms.csv"

# Accelerators that are not GPUs: TPUs, Inferentia, Trainium, Gaudi, FPGAs, media/AI cards.
_NOT_GPU = re.compile(r"tpu|inferentia|trainium|gaudi|vu9p|qualcomm|ai100|^u30$", re.IGNORECASE)

# GCP lists attachable GPUs as rows without an InstanceType; their price is for the GPUs alone.
GPU_ONLY_SUFFIX = "(GPU only; host VM extra)"


def catalog_url(cloud: str, schema: str = "v8") -> str:
    """The catalog file of `cloud` under catalog schema `schema`."""
    return _CATALOG_URL.format(schema=schema, cloud=cloud)


def _gpu_memory_gib(gpu_info: str) -> float | None:
    """Per-GPU memory from SkyPilot's GpuInfo column ("...'SizeInMiB': 81920..."), if present."""
    match = re.search(r"'SizeInMiB':\s*([0-9.]+)", gpu_info or "")
    return float(match.group(1)) / 1024 if match else None


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

    rejects = Rejects()
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
            usd, why = usable_price(raw, gpus)
            if why:
                rejects.add(why)
                continue
            offers.append(Offer(provider=provider, instance=instance, region=get("region"), gpu=gpu,
                                gpus_per_instance=gpus, usd_per_hour=usd, usd_per_gpu_hour=usd / gpus,
                                spot=spot, as_of=as_of, source=url, provenance="fetched"))
    return PriceTable(source=source, url=url, fetched_at=fetched_at or f"{as_of}T00:00:00Z",
                      offers=tuple(cheapest(offers)), rejected=rejects.total,
                      rejected_reasons=rejects.items())


def read(get: Get, url: str, as_of: str, fetched_at: str, *, provider: str) -> PriceTable:
    """`provider`'s catalog fetched from `url` and parsed."""
    return parse_skypilot_csv(get(url).text, provider, url, as_of, fetched_at=fetched_at, source=get.source)
