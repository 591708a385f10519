"""What every price parser applies: which prices are usable, rejects counted by reason, and one
offer (the cheapest) per instance, region and pricing kind."""

from __future__ import annotations

import math
from typing import Any, Iterable

from harness.cost.prices.offer import Offer

# Placeholder rule: SkyPilot writes exactly 700.0 $/h where it has no price; and no GPU rents for
# more than 100 $/GPU-hour (list prices top out near 15), so anything above is a placeholder too.
PLACEHOLDER_USD_PER_HOUR = 700.0
MAX_USD_PER_GPU_HOUR = 100.0


class Rejects:
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


def usable_price(raw: Any, gpus: int) -> tuple[float | None, str | None]:
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


def cheapest(offers: Iterable[Offer]) -> list[Offer]:
    """One offer per (provider, instance, region, spot): the lowest price (zones of one region)."""
    best: dict[tuple, Offer] = {}
    for offer in offers:
        key = (offer.provider, offer.instance, offer.region, offer.spot)
        if key not in best or offer.usd_per_hour < best[key].usd_per_hour:
            best[key] = offer
    return sorted(best.values(), key=lambda o: (o.gpu, o.usd_per_gpu_hour, o.instance, o.region, o.spot))
