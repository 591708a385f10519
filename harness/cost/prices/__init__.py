"""Price: GPU instance offers ($/hour) from public price lists, a local cache and a bundled snapshot.

Sources that need no credentials (REFERENCE.md §5), one module each, registered by name in
`SOURCES`:

- ``skypilot-<cloud>`` (`skypilot`): SkyPilot's catalog CSVs (aws, gcp, azure, lambda).
- ``azure-retail`` (`azure`): the Azure Retail Prices API, paged JSON, GPU VM sizes only.

Every number says where it came from: an Offer carries ``provenance`` ("fetched", "cache" or
"snapshot"), ``source`` (the URL, or the snapshot file and the row's own URL) and ``as_of``; and
what else a reader must know: its ``form`` (SXM, PCIe, NVL, or None when the instance does not
tell, `forms`), a ``local_zone``, ``gpu_only`` (GCP GPUs without their host VM) or the
``host_usd_per_hour`` its price includes. Rows that cannot be priced honestly are dropped and
counted by reason (`PriceTable.rejected_reasons`), never guessed: placeholders, spot prices equal
to or above on-demand (`rules`).

Network trouble never crashes `load_prices`: a failed fetch falls back to a stale cache, then to the
bundled snapshot, each with a warning. A cache file is written whole (temp file + rename) or not at all.
"""

from __future__ import annotations

from harness.cost.prices.azure import AZURE_GPU_SKUS, parse_azure_page
from harness.cost.prices.cache import cache_path, read_cache, write_cache
from harness.cost.prices.client import check_url
from harness.cost.prices.forms import FORMS, datasheet_form, instance_form
from harness.cost.prices.load import DEFAULT_TTL_S, load_prices, update
from harness.cost.prices.offer import (Offer, PriceFetchError, PriceResult, PriceTable, TableSummary,
                                       filter_offers)
from harness.cost.prices.skypilot import GCP_HOST_FAMILIES, GPU_ONLY_SUFFIX, parse_skypilot_csv
from harness.cost.prices.snapshot import SNAPSHOT_COLUMNS, SNAPSHOT_PATH, load_snapshot
from harness.cost.prices.sources import DEFAULT_SOURCES, SOURCES, Source, fetch, source_named

__all__ = [
    "AZURE_GPU_SKUS", "DEFAULT_SOURCES", "DEFAULT_TTL_S", "FORMS", "GCP_HOST_FAMILIES", "GPU_ONLY_SUFFIX",
    "Offer", "PriceFetchError", "datasheet_form", "instance_form",
    "PriceResult", "PriceTable", "SNAPSHOT_COLUMNS", "SNAPSHOT_PATH", "SOURCES", "Source", "TableSummary",
    "cache_path", "check_url", "fetch", "filter_offers", "load_prices", "load_snapshot", "parse_azure_page",
    "parse_skypilot_csv", "read_cache", "source_named", "update", "write_cache",
]
