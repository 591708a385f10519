"""Price values: an Offer, one source's PriceTable, the PriceResult of a load, the error a source raises,
and `filter_offers` to pick among offers."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Iterable

from harness.errors import HarnessError
from harness.hardware import normalise_gpu


class PriceFetchError(HarnessError):
    """A price source could not be fetched or parsed; names the source and the reason."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


@dataclass(frozen=True)
class Offer:
    """One way to rent GPUs: an instance type in a region, on demand or spot, in USD per hour."""

    provider: str            # aws | gcp | azure | lambda | ...
    instance: str            # p5.48xlarge, Standard_ND96isr_H100_v5, "A100 x1 (GPU only; host VM extra)"
    region: str              # us-east-1, eastus ("" when the source has none)
    gpu: str                 # normalised model name (see `harness.hardware.normalise_gpu`)
    gpus_per_instance: int
    usd_per_hour: float      # whole instance
    usd_per_gpu_hour: float  # usd_per_hour / gpus_per_instance
    spot: bool
    as_of: str               # ISO date the price is from
    source: str              # URL fetched, or "<snapshot file> (<row's source URL>)"
    provenance: str          # "fetched" | "cache" | "snapshot"
    form: str | None = None  # "SXM" | "PCIe" | "NVL" when the instance type tells it (see `forms`); None: unknown
    local_zone: str | None = None  # the AWS Local or Wavelength Zone the price is from; `region` is its parent
    gpu_only: bool = False   # the price is for the GPUs alone: the host VM is extra and not in the catalog
    host_usd_per_hour: float | None = None  # the host VM's part of usd_per_hour (GCP: GPU row + VM row)

    @property
    def labels(self) -> tuple[str, ...]:
        """What a reader must know beside the price: GPU only, host VM added, Local Zone."""
        out = []
        if self.gpu_only:
            out.append("GPU only; host VM extra")
        if self.host_usd_per_hour is not None:
            out.append(f"GPUs {round(self.usd_per_hour - self.host_usd_per_hour, 6)} + host VM "
                       f"{round(self.host_usd_per_hour, 6)} $/h")
        if self.local_zone:
            out.append(f"Local Zone {self.local_zone}")
        return tuple(out)


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
    rejected_reasons: tuple[tuple[str, int], ...] = ()  # (reason, count), sorted by reason

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
