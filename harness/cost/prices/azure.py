"""The Azure Retail Prices API: paged JSON, GPU VM sizes only (Linux, pay-as-you-go and spot)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import quote

from harness.cost.prices.client import Get, check_url
from harness.cost.prices.forms import instance_form
from harness.cost.prices.offer import Offer, PriceFetchError, PriceTable
from harness.cost.prices.rules import Rejects, cheapest, drop_bad_spot, usable_price
from harness.errors import ConfigError

NAME = "azure-retail"
API = "https://prices.azure.com/api/retail/prices"
MAX_PAGES = 200                   # a filter for ~20 sizes fits in far fewer; more means a loop

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
_FILTER = ("serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and ("
           + " or ".join(f"armSkuName eq '{sku}'" for sku in sorted(AZURE_GPU_SKUS)) + ")")
URL = f"{API}?$filter={quote(_FILTER, safe=chr(39) + '()_')}"


def _page(payload: Any, url: str, as_of: str) -> tuple[list[Offer], Rejects, str | None]:
    if not isinstance(payload, dict):
        raise PriceFetchError(NAME, f"response from {url} is not a JSON object")
    items, next_link = payload.get("Items"), payload.get("NextPageLink", ...)
    if not isinstance(items, list):
        raise PriceFetchError(NAME, f"response from {url} has no Items list")
    if next_link is ... or not (next_link is None or isinstance(next_link, str)):
        raise PriceFetchError(NAME, f"response from {url} has no valid NextPageLink")
    rejects = Rejects()
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
            usd, why = usable_price(item.get("retailPrice"), gpus)
            if why:
                rejects.add(why)
                continue
            offers.append(Offer(provider="azure", instance=arm_sku, region=str(item.get("armRegionName", "")),
                                gpu=gpu, gpus_per_instance=gpus, usd_per_hour=usd, usd_per_gpu_hour=usd / gpus,
                                spot=" Spot" in sku_name, as_of=as_of, source=url, provenance="fetched",
                                form=instance_form("azure", arm_sku)))
    return offers, rejects, next_link or None


def parse_azure_page(payload: dict, url: str, as_of: str) -> tuple[list[Offer], int, str | None]:
    """(offers, rejected, next_link) from one page of the Azure Retail Prices API.

    Kept: type "Consumption", currencyCode "USD", unitOfMeasure "1 Hour", a size in
    `AZURE_GPU_SKUS` (the payload has no GPU model or count). skuName with " Spot" is a spot
    offer. Rejected, one count per item: Windows (productName), " Low Priority" (another tier),
    a non-primary meter (a duplicate), an unknown size, a zero, missing or placeholder price.
    (`read` merges offers repeated across pages into the cheapest, like zones in a CSV, then drops
    the spot offers not below the on-demand price of the same size and region, counted by reason.)
    A payload without an Items list or NextPageLink raises PriceFetchError."""
    offers, rejects, next_link = _page(payload, url, as_of)
    return offers, rejects.total, next_link


def read(get: Get, url: str, as_of: str, fetched_at: str) -> PriceTable:
    """Every page from `url` on, following NextPageLink (only to URLs `check_url` allows)."""
    offers: list[Offer] = []
    rejects = Rejects()
    page_url: str | None = url
    pages = 0
    while page_url:
        pages += 1
        if pages > MAX_PAGES:
            raise PriceFetchError(get.source, f"more than {MAX_PAGES} pages from {url}; giving up")
        payload = get(page_url).json()
        page_offers, page_rejects, next_link = _page(payload, page_url, as_of)
        offers += page_offers
        for reason, n in page_rejects.items():
            rejects.add(reason, n)
        if next_link:
            try:
                check_url(next_link)
            except ConfigError as err:  # not https, a bad port, a control character...
                raise PriceFetchError(get.source, f"NextPageLink not followed: {err.message}") from None
        page_url = next_link
    # Offers keep the first page's URL as their source: later pages are its continuation.
    offers = drop_bad_spot(cheapest(replace(o, source=url) for o in offers), rejects)
    return PriceTable(source=get.source, url=url, fetched_at=fetched_at, offers=tuple(offers),
                      rejected=rejects.total, rejected_reasons=rejects.items())
