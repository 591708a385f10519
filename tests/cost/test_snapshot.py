"""The bundled price snapshot (harness/data/prices/snapshot.csv) against its own provenance rules and
against the numbers transcribed, by hand, from the pinned SkyPilot catalog files (its README)."""

from __future__ import annotations

import csv
import re
from datetime import date

import pytest

from harness.cost.prices import SNAPSHOT_PATH, SOURCES, load_snapshot
from harness.hardware import normalise_gpu

README_PATH = SNAPSHOT_PATH.parent / "README.md"
PINNED = re.compile(r"^https://raw\.githubusercontent\.com/skypilot-org/skypilot-catalog/(?P<commit>[0-9a-f]{40})/"
                    r"catalogs/(?P<schema>v\d+)/(?P<cloud>[a-z]+)/vms\.csv$")


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with SNAPSHOT_PATH.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def keyed(rows) -> dict[tuple[str, str, str, bool], float]:
    table = {(r["provider"], r["instance"], r["region"], r["spot"] == "true"): float(r["usd_per_hour"]) for r in rows}
    assert len(table) == len(rows)  # one row per (provider, instance, region, kind)
    return table


def test_every_row_loads_and_none_is_dropped(rows):
    table = load_snapshot()
    assert len(table.offers) == len(rows) and table.rejected == 0
    assert {(o.provider, o.instance, o.region, o.spot) for o in table.offers} == {
        (r["provider"], r["instance"], r["region"], r["spot"] == "true") for r in rows}
    assert all(o.provenance == "snapshot" for o in table.offers)


def test_gpu_names_are_what_normalise_gpu_gives(rows):
    for row in rows:
        assert normalise_gpu(row["gpu"]) == row["gpu"], row
    assert normalise_gpu("MI300X") == "MI300X"  # the `gpu` an MI300X row would carry (README)


def test_source_urls_pin_the_file_the_project_fetches(rows):
    """Each row's URL is its provider's `sources.py` URL with `master` replaced by a 40-hex commit, and
    each commit carries one `as_of` (the first day a copy of it was read), not after today."""
    as_of_by_commit: dict[str, set[str]] = {}
    for row in rows:
        match = PINNED.match(row["source_url"])
        assert match, row["source_url"]
        assert match["cloud"] == row["provider"]
        live = SOURCES[f"skypilot-{row['provider']}"].url
        assert row["source_url"] == live.replace("/master/", f"/{match['commit']}/")
        assert date.fromisoformat(row["as_of"]) <= date.today()
        as_of_by_commit.setdefault(match["commit"], set()).add(row["as_of"])
    assert all(len(days) == 1 for days in as_of_by_commit.values()), as_of_by_commit


def test_one_commit_per_provider_and_the_readme_table_names_it(rows):
    pairs = {(r["provider"], PINNED.match(r["source_url"])["commit"]) for r in rows}
    assert {p for p, _ in pairs} == {"aws", "gcp", "azure", "lambda"}
    assert len(pairs) == 4  # the refresh read one file per provider
    table_lines = [line for line in README_PATH.read_text(encoding="utf-8").splitlines()
                   if line.startswith("| ") and "vms.csv" in line]
    for provider, commit in pairs:
        assert any(line.startswith(f"| {provider} |") and f"`{commit}`" in line for line in table_lines), \
            (provider, commit)


def test_spot_is_below_on_demand_wherever_both_are_given(keyed):
    both = [(key, usd, keyed[key[:3] + (False,)]) for key, usd in keyed.items()
            if key[3] and key[:3] + (False,) in keyed]
    assert len(both) >= 20
    for key, spot, on_demand in both:
        assert 0 < spot < on_demand, key


def test_rows_re_read_on_2026_12_02_match_the_catalog_by_hand(keyed):
    """Spot = the lowest SpotPrice over the region's zones (the zone prices as the README lists them,
    from aws vms.csv e385a0d3); GCP = GPU row + paired host VM row (gcp vms.csv 8427bbff)."""
    aws = {inst: (keyed[("aws", inst, "us-east-1", False)], keyed[("aws", inst, "us-east-1", True)])
           for inst in ("g4dn.xlarge", "g5.xlarge", "g6.xlarge", "g6e.12xlarge")}
    assert aws["g4dn.xlarge"] == (0.526, min(0.2190, 0.2132, 0.2131, 0.2069, 0.2118))
    assert aws["g5.xlarge"] == (1.006, min(0.5070, 0.4591, 0.4886, 0.4670, 0.4905))
    assert aws["g6.xlarge"] == (0.8048, min(0.4386, 0.4102, 0.4007, 0.4064))
    assert aws["g6e.12xlarge"] == (10.49264, min(3.2906, 6.5969, 4.4468, 4.4182))
    v100 = "V100 x1 (GPU only; host VM extra)"
    assert (keyed[("gcp", v100, "us-central1", False)], keyed[("gcp", v100, "us-central1", True)]) == (2.48, 1.1458)
    assert keyed[("gcp", "a3-ultragpu-8g", "us-central1", False)] == pytest.approx(74.49392 + 12.266)


def test_gcp_host_parts_add_up(rows):
    completed = [r for r in rows if r["host_usd_per_hour"]]
    assert {r["provider"] for r in completed} == {"gcp"} and len(completed) >= 10
    for row in completed:
        assert 0 < float(row["host_usd_per_hour"]) < float(row["usd_per_hour"])


def test_newer_gpus_are_there_and_mi300x_is_said_to_be_listed_nowhere(rows):
    by_gpu: dict[str, set[str]] = {}
    for row in rows:
        by_gpu.setdefault(row["gpu"], set()).add(row["provider"])
    assert by_gpu["H200"] == {"aws", "gcp"}
    assert by_gpu["B200"] == {"aws", "gcp", "lambda"}
    assert by_gpu["GH200"] == {"lambda"}
    assert "MI300X" not in by_gpu
    readme = README_PATH.read_text(encoding="utf-8")
    (mi300x,) = [line for line in readme.splitlines() if line.startswith("| MI300X |")]
    assert "| none |" in mi300x and "listed nowhere the project can load" in mi300x
