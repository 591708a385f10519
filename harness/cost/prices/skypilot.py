"""SkyPilot's catalog CSVs (``vms.csv`` per cloud: aws, gcp, azure, lambda), parsed by column name."""

from __future__ import annotations

import csv
import io
import re

from harness.cost.prices.client import Get
from harness.cost.prices.forms import instance_form
from harness.cost.prices.offer import Offer, PriceFetchError, PriceTable
from harness.cost.prices.rules import Rejects, cheapest, local_zone, spot_problem, usable_price
from harness.hardware import normalise_gpu

_CATALOG_URL = "https://raw.githubusercontent.com/skypilot-org/skypilot-catalog/master/catalogs/{schema}/{cloud}/vms.csv"

# Accelerators that are not GPUs: TPUs, Inferentia, Trainium, Gaudi, FPGAs, media/AI cards.
_NOT_GPU = re.compile(r"tpu|inferentia|trainium|gaudi|vu9p|qualcomm|ai100|^u30$", re.IGNORECASE)

# GCP lists attachable GPUs as rows without an InstanceType; their price is for the GPUs alone.
GPU_ONLY_SUFFIX = "(GPU only; host VM extra)"

# The VM types GCP pairs with each GPU (https://cloud.google.com/compute/docs/gpus): the GPU's
# machine family, and the number of GPUs each type carries. SkyPilot's GCP file lists these VM
# rows with no accelerator: their price is the host alone (vCPUs, memory, local SSD), and a GPU
# row of the same zone prices the GPUs. A GPU row of count n is completed with the cheapest VM
# type of its family that carries n GPUs, in the same zone; where the zone has none, the row stays
# GPU-only (`Offer.gpu_only`). T4, V100, P100 and P4 attach to N1 VMs of any shape: no one VM type
# goes with them, so their rows stay GPU-only.
_G2_GPUS = {"4": 1, "8": 1, "12": 1, "16": 1, "32": 1, "24": 2, "48": 4, "96": 8}
GCP_HOST_FAMILIES: dict[str, re.Pattern] = {
    "A100": re.compile(r"a2-(highgpu-(?P<n>1|2|4|8)g|megagpu-(?P<m>16)g)"),
    "A100-80GB": re.compile(r"a2-ultragpu-(?P<n>1|2|4|8)g"),
    "H100": re.compile(r"a3-(highgpu-(?P<n>1|2|4|8)g|edgegpu-(?P<m>8)g)"),
    "H100-MEGA": re.compile(r"a3-megagpu-(?P<n>8)g"),
    "H200": re.compile(r"a3-ultragpu-(?P<n>8)g"),
    "B200": re.compile(r"a4-highgpu-(?P<n>8)g"),
    "L4": re.compile(r"g2-standard-(?P<g2>4|8|12|16|24|32|48|96)"),
}


def gcp_host_gpus(instance: str) -> tuple[str, int] | None:
    """(GPU model, GPUs carried) of a GCP VM type that `GCP_HOST_FAMILIES` pairs with GPUs, or None."""
    for gpu, pattern in GCP_HOST_FAMILIES.items():
        match = pattern.fullmatch(instance)
        if match:
            groups = match.groupdict()
            if groups.get("g2"):
                return gpu, _G2_GPUS[groups["g2"]]
            return gpu, int(groups.get("n") or groups.get("m"))
    return None


def catalog_url(cloud: str, schema: str = "v8") -> str:
    """The catalog file of `cloud` under catalog schema `schema`."""
    return _CATALOG_URL.format(schema=schema, cloud=cloud)


def _gpu_memory_gib(gpu_info: str) -> float | None:
    """Per-GPU memory from SkyPilot's GpuInfo column ("...'SizeInMiB': 81920..."), if present."""
    match = re.search(r"'SizeInMiB':\s*([0-9.]+)", gpu_info or "")
    return float(match.group(1)) / 1024 if match else None


def _rows(text: str, url: str, source: str) -> tuple[list[str], list[list[str]]]:
    """Header (lower-cased) and rows of a whole CSV body; PriceFetchError on a truncated or malformed one."""
    if not text.strip():
        raise PriceFetchError(source, f"empty body from {url}")
    if not text.endswith(("\n", "\r")):
        raise PriceFetchError(source, f"body from {url} is truncated (no final newline)")
    try:
        rows = list(csv.reader(io.StringIO(text), strict=True))
    except csv.Error as err:
        raise PriceFetchError(source, f"body from {url} is not valid CSV ({err})") from None
    header = [name.strip().lower() for name in rows[0]]
    required = ("instancetype", "acceleratorname", "acceleratorcount", "price", "region")
    missing = [name for name in required if name not in header]
    if missing:
        raise PriceFetchError(source, f"CSV from {url} lacks column(s) {', '.join(missing)} "
                                      f"(has: {', '.join(rows[0])})")
    body = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise PriceFetchError(source, f"CSV from {url} is truncated or malformed: line {line_no} "
                                          f"has {len(row)} fields, the header {len(header)}")
        body.append(row)
    return header, body


def parse_skypilot_csv(text: str, provider: str, url: str, as_of: str, *,
                       fetched_at: str | None = None, source: str | None = None) -> PriceTable:
    """Offers from one SkyPilot ``vms.csv``, read by column name (column order differs by cloud).

    Each row gives an on-demand offer (Price) and, when SpotPrice is non-empty, a spot offer.
    Dropped and counted in `rejected`, by reason: a row with no AcceleratorName (CPU rows; a GCP
    host VM row that completes no GPU row), one whose accelerator is not a GPU (TPU, Inferentia,
    Trainium...) or whose count is not a whole number >= 1; otherwise each price (on-demand, spot)
    that is missing, non-numeric, <= 0 or a placeholder (exactly 700.0 $/h, or above 100
    $/GPU-hour); a spot price equal to the row's on-demand price (filled in: no spot market) or
    above it.
    The availability zones of one region merge into the cheapest offer; an AWS Local Zone
    (`rules.local_zone`) stays an offer of its own, labelled with the zone.
    GCP rows without an InstanceType price attachable GPUs alone: each is completed with the host
    VM row GCP pairs with it in the same zone (`GCP_HOST_FAMILIES`; the offer is named by the VM
    type, `host_usd_per_hour` its part), else kept as "<gpu> x<n> (GPU only; host VM extra)"
    with `gpu_only` set. Offers carry the form factor the instance type tells (`forms`).
    A truncated or malformed body (missing columns, a short row, no final newline, broken
    quoting) raises PriceFetchError: never a partial table.
    """
    source = source or f"skypilot-{provider}"
    header, rows = _rows(text, url, source)
    col = {name: i for i, name in enumerate(header)}

    rejects = Rejects()
    offers: list[Offer] = []
    # GCP host VM rows, by zone: (region, zone, gpu) -> [(gpus, instance, price, spot price)]
    hosts: dict[tuple[str, str, str], list[tuple[int, str, float, float | None]]] = {}
    gpu_rows: list[tuple] = []
    for row in rows:
        def get(name: str) -> str:
            return row[col[name]].strip() if name in col else ""

        instance, accelerator = get("instancetype"), get("acceleratorname")
        region, zone = local_zone(get("region"), get("availabilityzone"))
        zone_key = get("availabilityzone") or region
        if not accelerator:
            host = gcp_host_gpus(instance) if provider == "gcp" else None
            if host is None:
                rejects.add("no accelerator")
                continue
            usd, why = usable_price(get("price"), host[1])
            if why:
                rejects.add(f"host VM: {why}")  # e.g. a4-highgpu-8g listed at 0.0: its B200 rows stay GPU-only
                continue
            spot_usd, _ = usable_price(get("spotprice"), host[1]) if get("spotprice") else (None, None)
            if spot_usd is not None and spot_problem(spot_usd, usd):
                spot_usd = None
            hosts.setdefault((region, zone_key, host[0]), []).append((host[1], instance, usd, spot_usd))
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
        on_demand, why = usable_price(get("price"), gpus)
        if why:
            rejects.add(why)
        spot = None
        if get("spotprice"):
            spot, why = usable_price(get("spotprice"), gpus)
            why = why or spot_problem(spot, on_demand)
            if why:
                rejects.add(why)
                spot = None
        if on_demand is None and spot is None:
            continue
        if not instance and provider == "gcp":
            gpu_rows.append((gpu, gpus, region, zone_key, on_demand, spot))
            continue
        common = dict(provider=provider, instance=instance, region=region, gpu=gpu, gpus_per_instance=gpus,
                      as_of=as_of, source=url, provenance="fetched", form=instance_form(provider, instance),
                      local_zone=zone)
        for is_spot, usd in ((False, on_demand), (True, spot)):
            if usd is not None:
                offers.append(Offer(**common, usd_per_hour=usd, usd_per_gpu_hour=usd / gpus, spot=is_spot))

    used: set[tuple[str, str, str, str]] = set()
    for gpu, gpus, region, zone_key, on_demand, spot in gpu_rows:
        paired = sorted((h for h in hosts.get((region, zone_key, gpu), ()) if h[0] == gpus), key=lambda h: h[2])
        if not paired:
            common = dict(provider=provider, instance=f"{gpu} x{gpus} {GPU_ONLY_SUFFIX}", region=region, gpu=gpu,
                          gpus_per_instance=gpus, as_of=as_of, source=url, provenance="fetched", gpu_only=True)
            for is_spot, usd in ((False, on_demand), (True, spot)):
                if usd is not None:
                    offers.append(Offer(**common, usd_per_hour=usd, usd_per_gpu_hour=usd / gpus, spot=is_spot))
            continue
        _, vm, host_usd, host_spot = paired[0]
        used.add((region, zone_key, gpu, vm))
        common = dict(provider=provider, instance=vm, region=region, gpu=gpu, gpus_per_instance=gpus, as_of=as_of,
                      source=url, provenance="fetched", form=instance_form(provider, vm))
        if on_demand is not None:
            total = on_demand + host_usd
            offers.append(Offer(**common, usd_per_hour=total, usd_per_gpu_hour=total / gpus, spot=False,
                                host_usd_per_hour=host_usd))
        if spot is not None:
            if host_spot is None:
                rejects.add("spot GPU row without a host VM spot price")
                continue
            total = spot + host_spot
            why = spot_problem(total, None if on_demand is None else on_demand + host_usd)
            if why:
                rejects.add(why)
                continue
            offers.append(Offer(**common, usd_per_hour=total, usd_per_gpu_hour=total / gpus, spot=True,
                                host_usd_per_hour=host_spot))
    for (region, zone_key, gpu), rows_here in hosts.items():
        for _, vm, _, _ in rows_here:
            if (region, zone_key, gpu, vm) not in used:
                rejects.add("no accelerator")  # a host VM row no GPU row of its zone was completed with
    return PriceTable(source=source, url=url, fetched_at=fetched_at or f"{as_of}T00:00:00Z",
                      offers=tuple(cheapest(offers)), rejected=rejects.total,
                      rejected_reasons=rejects.items())


def read(get: Get, url: str, as_of: str, fetched_at: str, *, provider: str) -> PriceTable:
    """`provider`'s catalog fetched from `url` and parsed."""
    return parse_skypilot_csv(get(url).text(), provider, url, as_of, fetched_at=fetched_at, source=get.source)
