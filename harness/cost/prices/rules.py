"""What every price parser applies: which prices are usable, which spot prices are real, AWS
Local Zones told apart, rejects counted by reason, and one offer (the cheapest) per instance,
region (or Local Zone) and pricing kind."""

from __future__ import annotations

import math
import re
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
    if isinstance(raw, bool):
        return None, "non-numeric price"
    try:
        usd = float(raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer such as 10**400
        return None, "non-numeric price"
    if not math.isfinite(usd):
        return None, "non-numeric price"
    if usd <= 0:
        return None, "zero or negative price"
    if usd == PLACEHOLDER_USD_PER_HOUR or usd / gpus > MAX_USD_PER_GPU_HOUR:
        return None, "placeholder price"
    return usd, None


SPOT_EQUALS_ON_DEMAND = "spot price equals on-demand (a filled-in value)"
SPOT_ABOVE_ON_DEMAND = "spot price above on-demand"


def spot_problem(spot_usd: float, on_demand_usd: float | None) -> str | None:
    """Why a spot price is not a spot market price, or None: equal to the on-demand price of the
    same instance (catalogs fill it in where there is no spot market) or above it (no one rents
    spot for more; a stale or mismatched row)."""
    if on_demand_usd is None:
        return None
    if spot_usd == on_demand_usd:
        return SPOT_EQUALS_ON_DEMAND
    if spot_usd > on_demand_usd:
        return SPOT_ABOVE_ON_DEMAND
    return None


def drop_bad_spot(offers: Iterable[Offer], rejects: Rejects) -> list[Offer]:
    """`offers` without the spot offers whose price is not below the on-demand price of the same
    instance in the same region (or Local Zone); each dropped one counted by reason. For sources
    that list the two kinds apart (Azure); SkyPilot rows carry both and are checked row by row."""
    offers = list(offers)
    on_demand = {(o.provider, o.instance, o.region, o.local_zone): o.usd_per_hour for o in offers if not o.spot}
    kept = []
    for o in offers:
        why = spot_problem(o.usd_per_hour, on_demand.get((o.provider, o.instance, o.region, o.local_zone))) \
            if o.spot else None
        if why:
            rejects.add(why)
        else:
            kept.append(o)
    return kept


# AWS Local Zones and Wavelength Zones: by name (us-east-1-bos-1a, us-east-1-wl1-bos-wlz-1) or by
# zone ID (use1-bos1-az1, use1-wl1-bos-wlz1), as SkyPilot's AvailabilityZone column or a Region
# column may hold them. Their prices differ from the parent region's (often higher, sometimes
# lower); they are kept as offers of their own, labelled, never merged into the region's.
_ZONE_NAME = re.compile(r"^(?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d+)-(?:[a-z]{3}-\d+[a-z]?|wl\d+-[a-z]{3}-wlz-\d+)$")
_ZONE_ID = re.compile(r"^[a-z]{2,5}\d+-(?:[a-z]{3}\d+-az\d+|wl\d+-[a-z]{3}-wlz\d+)$")


def local_zone(region: str, zone: str) -> tuple[str, str | None]:
    """(parent region, Local/Wavelength Zone or None) of a catalog row's Region and zone columns."""
    match = _ZONE_NAME.match(region)
    if match:
        return match.group("region"), region
    if _ZONE_NAME.match(zone) or _ZONE_ID.match(zone):
        return region, zone
    return region, None


def cheapest(offers: Iterable[Offer]) -> list[Offer]:
    """One offer per (provider, instance, region, Local Zone, spot): the lowest price (the
    availability zones of one region merge; a Local Zone stays apart)."""
    best: dict[tuple, Offer] = {}
    for offer in offers:
        key = (offer.provider, offer.instance, offer.region, offer.local_zone, offer.spot)
        if key not in best or offer.usd_per_hour < best[key].usd_per_hour:
            best[key] = offer
    return sorted(best.values(), key=lambda o: (o.gpu, o.usd_per_gpu_hour, o.instance, o.region, o.spot))
