"""harness.cost.prices against a real HTTP server on loopback, serving payloads in the real formats."""

from __future__ import annotations

import collections
import csv
import json
import socket
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from harness.cost import prices
from harness.cost.prices import (GPU_ONLY_SUFFIX, Offer, PriceFetchError, azure, check_url, client, fetch,
                                 filter_offers, load_prices, load_snapshot, parse_azure_page, parse_skypilot_csv,
                                 update, write_cache)
from harness.errors import ConfigError
from harness.hardware import normalise_gpu

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=timezone.utc)


# ------------------------------------------------------------------------------------------
# Payloads, transcribed from the formats of skypilot-catalog v8 and the Azure Retail Prices API


def aws_gpu_info(name: str, count: int, mib: int) -> str:
    return ('"{\'Gpus\': [{\'Name\': \'%s\', \'Manufacturer\': \'NVIDIA\', \'Count\': %d, '
            "'LogicalGpuCount': %d, 'GpuPartitionSize': 1.0, 'Workloads': ['ml-ai'], "
            "'MemoryInfo': {'SizeInMiB': %d}}], 'TotalGpuMemoryInMiB': %d}\"" % (name, count, count, mib, count * mib))


H100x8, A100x8, A100_80x8 = aws_gpu_info("H100", 8, 81920), aws_gpu_info("A100", 8, 40960), aws_gpu_info("A100", 8, 81920)
A10Gx1, V100x1, H200x8 = aws_gpu_info("A10G", 1, 22888), aws_gpu_info("V100", 1, 16384), aws_gpu_info("H200", 8, 144384)

AWS_CSV = f"""InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone,Arch
m5.large,,,2.0,8.0,,0.096,0.040000,us-east-1,use1-az1,x86_64
p5.48xlarge,H100,8.0,192.0,2048.0,{H100x8},55.04,19.253100,us-east-1,use1-az2,x86_64
p5.48xlarge,H100,8.0,192.0,2048.0,{H100x8},55.04,,us-east-1,use1-az3,x86_64
p5.48xlarge,H100,8.0,192.0,2048.0,{H100x8},55.04,17.628900,us-east-1,use1-az6,x86_64
p4d.24xlarge,A100,8.0,96.0,1152.0,{A100x8},21.957642,8.120300,us-east-1,use1-az4,x86_64
p4de.24xlarge,A100-80GB,8.0,96.0,1152.0,{A100_80x8},27.44705,8.650500,us-east-1,use1-az6,x86_64
g5.xlarge,A10G,1.0,4.0,16.0,{A10Gx1},1.006,0.436000,us-east-1,use1-az4,x86_64
g5.xlarge,A10G,1.0,4.0,16.0,{A10Gx1},1.006,0.424600,us-east-1,use1-az2,x86_64
p3.2xlarge,V100,1.0,8.0,61.0,{V100x1},700.0,700.0,us-east-1,use1-az1,x86_64
inf2.xlarge,Inferentia2,1.0,4.0,16.0,,0.7582,0.200000,us-east-1,use1-az1,x86_64
trn1.2xlarge,Trainium,1.0,8.0,32.0,,1.34375,0.500000,us-east-1,use1-az1,x86_64
p5e.48xlarge,H200,8.0,192.0,2048.0,{H200x8},,19.425400,us-east-2,use2-az1,x86_64
"""

GCP_CSV = """InstanceType,vCPUs,MemoryGiB,AcceleratorName,AcceleratorCount,GpuInfo,Region,AvailabilityZone,Price,SpotPrice
a2-highgpu-1g,12.0,85.0,,,,us-central1,us-central1-a,0.73948,0.36975
a2-highgpu-1g,12.0,85.0,,,,us-central1,us-central1-b,0.73948,0.36975
a3-edgegpu-8g,208.0,1872.0,,,,us-central1,us-central1-a,9.46006,2.88933
,,,A100,1,{'Gpus': [{'MemoryInfo': {'SizeInMiB': 40960}}]},us-central1,us-central1-a,2.93391,1.4341
,,,A100,1,{'Gpus': [{'MemoryInfo': {'SizeInMiB': 40960}}]},us-central1,us-central1-b,2.93391,1.4341
,,,L4,1,{'Gpus': [{'MemoryInfo': {'SizeInMiB': 24576}}]},us-central1,us-central1-a,0.56004,0.2231
,,,tpu-v6e-4,1,tpu-v6e-4,us-central2,us-central2-b,700.0,700.0
"""


def lambda_gpu_info(name: str, count: int, mib: int) -> str:
    return ('"{\'Gpus\': [{\'Name\': \'%s\', \'Manufacturer\': \'NVIDIA\', \'Count\': %.1f, '
            "'MemoryInfo': {'SizeInMiB': %d}}], 'TotalGpuMemoryInMiB': %d}\"" % (name, count, mib, mib))


LAMBDA_CSV = f"""InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,Region,GpuInfo,SpotPrice
cpu_4x_general,,,4.0,16.0,0.2,us-east-1,,
gpu_1x_h100_sxm5,H100,1.0,26.0,225.0,4.29,us-east-1,{lambda_gpu_info("H100", 1, 81920)},
gpu_8x_a100_80gb_sxm4,A100-80GB,8.0,240.0,1800.0,22.32,us-east-1,{lambda_gpu_info("A100-80GB", 8, 81920)},
gpu_8x_v100,V100,8.0,92.0,448.0,6.32,us-east-1,{lambda_gpu_info("V100", 8, 16384)},
"""


def az_item(arm_sku: str, sku_name: str, product: str, price: float, *, type_: str = "Consumption") -> dict:
    return {"currencyCode": "USD", "tierMinimumUnits": 0.0, "retailPrice": price, "unitPrice": price,
            "armRegionName": "eastus", "location": "US East", "effectiveStartDate": "2024-03-01T00:00:00Z",
            "meterId": "00000000-0000-0000-0000-000000000000", "meterName": sku_name,
            "productId": "DZH318Z0BQ4M", "skuId": "DZH318Z0BQ4M/00C2", "productName": product,
            "skuName": sku_name, "serviceName": "Virtual Machines", "serviceId": "DZH313Z7MMC8",
            "serviceFamily": "Compute", "unitOfMeasure": "1 Hour", "type": type_,
            "isPrimaryMeterRegion": True, "armSkuName": arm_sku}


def azure_pages(base: str) -> tuple[dict, dict]:
    page1 = {"BillingCurrency": "USD", "CustomerEntityId": "Default", "CustomerEntityType": "Retail",
             "Items": [
                 az_item("Standard_ND96isr_H100_v5", "ND96isr H100 v5", "Virtual Machines NDSH100v5 Series", 98.32),
                 az_item("Standard_ND96isr_H100_v5", "ND96isr H100 v5", "Virtual Machines NDSH100v5 Series Windows", 102.4),
                 az_item("Standard_NC24ads_A100_v4", "NC24ads A100 v4 Spot", "Virtual Machines NCadsA100v4 Series", 0.7345),
                 az_item("Standard_NC6s_v3", "NC6s v3 Low Priority", "Virtual Machines NCSv3 Series", 0.612),
             ],
             "NextPageLink": f"{base}/azure?page=2", "Count": 4}
    page2 = {"BillingCurrency": "USD", "CustomerEntityId": "Default", "CustomerEntityType": "Retail",
             "Items": [
                 az_item("Standard_NC24ads_A100_v4", "NC24ads A100 v4", "Virtual Machines NCadsA100v4 Series", 3.673),
                 az_item("Standard_D4s_v5", "D4s v5", "Virtual Machines Dsv5 Series", 0.192),
                 az_item("Standard_NC4as_T4_v3", "NC4as T4 v3", "Virtual Machines NCasv3_T4 Series", 0.0),
                 az_item("Standard_NC6s_v3", "NC6s v3", "Virtual Machines NCSv3 Series", 3.06, type_="DevTestConsumption"),
             ],
             "NextPageLink": None, "Count": 4}
    return page1, page2


# ------------------------------------------------------------------------------------------
# A real HTTP server on loopback


@dataclass
class Route:
    body: bytes
    status: int = 200
    content_type: str = "text/csv; charset=utf-8"
    delay_s: float = 0.0
    send_bytes: int | None = None  # announce the full Content-Length but send only this many bytes


class App:
    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.hits: collections.Counter[str] = collections.Counter()
        self.base = ""

    def add(self, path: str, body: str | bytes | dict, **kw) -> str:
        if isinstance(body, dict):
            body = json.dumps(body)
            kw.setdefault("content_type", "application/json")
        self.routes[path] = Route(body.encode() if isinstance(body, str) else body, **kw)
        return self.base + path


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        app: App = self.server.app
        app.hits[self.path] += 1
        route = app.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        time.sleep(route.delay_s)
        try:
            self.send_response(route.status)
            self.send_header("Content-Type", route.content_type)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            self.wfile.write(route.body if route.send_bytes is None else route.body[:route.send_bytes])
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    app = App()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.app = app
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    app.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield app
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(client, "_RETRY_BACKOFF_S", (0.0, 0.0))


def by_key(offers):
    return {(o.instance, o.region, o.spot): o for o in offers}


# ------------------------------------------------------------------------------------------
# URL policy


@pytest.mark.parametrize("url", ["https://raw.githubusercontent.com/x", "https://prices.azure.com/api/retail/prices",
                                 "http://127.0.0.1:8080/x", "http://127.5.6.7/x", "http://[::1]:9/x",
                                 "http://localhost:1234/x"])
def test_allowed_urls(url):
    assert check_url(url) == url


@pytest.mark.parametrize("url", ["http://example.com/x", "http://10.0.0.1/x", "http://127.0.0.1.example.com/x",
                                 "http://127.0.0.1@example.com/x", "ftp://127.0.0.1/x", "file:///etc/passwd",
                                 "not a url"])
def test_rejected_urls(url):
    with pytest.raises(ConfigError) as err:
        check_url(url)
    assert err.value.field == "prices.url"


# ------------------------------------------------------------------------------------------
# Parsers


def test_parse_aws_merges_zones_and_rejects_placeholders():
    table = parse_skypilot_csv(AWS_CSV, "aws", "https://example.test/aws.csv", "2026-11-24")
    assert table.source == "skypilot-aws"
    offers = by_key(table.offers)
    assert len(table.offers) == 9
    # m5.large (no GPU), p3 placeholder on demand + spot, Inferentia, Trainium, p5e empty Price
    assert table.rejected == 6
    assert dict(table.rejected_reasons) == {"no accelerator": 1, "placeholder price": 2, "not a GPU": 2,
                                            "missing price": 1}
    p5 = offers[("p5.48xlarge", "us-east-1", False)]
    assert (p5.gpu, p5.gpus_per_instance, p5.usd_per_hour, p5.usd_per_gpu_hour) == ("H100", 8, 55.04, 6.88)
    assert (p5.as_of, p5.source, p5.provenance, p5.provider) == ("2026-11-24", "https://example.test/aws.csv", "fetched", "aws")
    # three zones, one with no spot price: the cheapest spot price wins
    assert offers[("p5.48xlarge", "us-east-1", True)].usd_per_hour == 17.6289
    assert offers[("p5.48xlarge", "us-east-1", True)].usd_per_gpu_hour == pytest.approx(2.2036125)
    assert offers[("p4d.24xlarge", "us-east-1", False)].usd_per_gpu_hour == pytest.approx(2.74470525)
    assert offers[("p4d.24xlarge", "us-east-1", True)].usd_per_gpu_hour == pytest.approx(1.0150375)
    p4de = offers[("p4de.24xlarge", "us-east-1", False)]
    assert (p4de.gpu, p4de.usd_per_gpu_hour) == ("A100-80GB", pytest.approx(3.43088125))
    assert offers[("p4de.24xlarge", "us-east-1", True)].usd_per_gpu_hour == pytest.approx(1.0813125)
    assert offers[("g5.xlarge", "us-east-1", False)].usd_per_hour == 1.006
    assert offers[("g5.xlarge", "us-east-1", True)].usd_per_hour == 0.4246
    p5e = offers[("p5e.48xlarge", "us-east-2", True)]
    assert (p5e.gpu, p5e.usd_per_gpu_hour) == ("H200", pytest.approx(2.428175))
    assert ("p5e.48xlarge", "us-east-2", False) not in offers
    assert not any(o.instance in ("p3.2xlarge", "inf2.xlarge", "trn1.2xlarge", "m5.large") for o in table.offers)


def test_parse_gcp_skips_host_rows_and_labels_gpu_only_rows():
    table = parse_skypilot_csv(GCP_CSV, "gcp", "https://example.test/gcp.csv", "2026-11-24")
    assert table.rejected == 4  # two a2 rows, one a3 row (host VM only), one TPU
    assert dict(table.rejected_reasons) == {"no accelerator": 3, "not a GPU": 1}
    offers = by_key(table.offers)
    assert len(offers) == 4
    a100 = f"A100 x1 {GPU_ONLY_SUFFIX}"
    assert offers[(a100, "us-central1", False)].usd_per_hour == 2.93391
    assert offers[(a100, "us-central1", True)].usd_per_hour == 1.4341
    assert offers[(f"L4 x1 {GPU_ONLY_SUFFIX}", "us-central1", False)].usd_per_gpu_hour == 0.56004
    assert offers[(f"L4 x1 {GPU_ONLY_SUFFIX}", "us-central1", True)].usd_per_gpu_hour == 0.2231


def test_parse_lambda_has_no_spot():
    table = parse_skypilot_csv(LAMBDA_CSV, "lambda", "https://example.test/lambda.csv", "2026-11-24")
    assert (len(table.offers), table.rejected) == (3, 1)
    offers = by_key(table.offers)
    assert offers[("gpu_1x_h100_sxm5", "us-east-1", False)].usd_per_gpu_hour == 4.29
    a100 = offers[("gpu_8x_a100_80gb_sxm4", "us-east-1", False)]
    assert (a100.gpu, a100.usd_per_gpu_hour) == ("A100-80GB", pytest.approx(2.79))
    assert offers[("gpu_8x_v100", "us-east-1", False)].usd_per_gpu_hour == pytest.approx(0.79)
    assert not any(o.spot for o in table.offers)


@pytest.mark.parametrize("text,why", [
    (AWS_CSV[:-1], "no final newline"),
    (AWS_CSV[:AWS_CSV.rindex(",us-east-2")] + "\n", "line 13 has"),
    (AWS_CSV[:AWS_CSV.index("{'Gpus'", 400)] + "\n", "not valid CSV"),
    ("InstanceType,AcceleratorName,Region\np5.48xlarge,H100,us-east-1\n", "lacks column(s) acceleratorcount, price"),
    ("", "empty body"),
])
def test_parse_truncated_or_malformed_csv_raises(text, why):
    with pytest.raises(PriceFetchError) as err:
        parse_skypilot_csv(text, "aws", "https://example.test/aws.csv", "2026-11-24")
    assert err.value.source == "skypilot-aws" and why in err.value.reason


def test_parse_azure_page():
    page1, page2 = azure_pages("http://127.0.0.1:1")
    offers, rejected, next_link = parse_azure_page(page1, "https://example.test/p1", "2026-11-24")
    assert (rejected, next_link) == (2, "http://127.0.0.1:1/azure?page=2")  # Windows, Low Priority
    h100, a100_spot = sorted(offers, key=lambda o: o.instance, reverse=True)
    assert (h100.instance, h100.gpu, h100.gpus_per_instance, h100.spot) == ("Standard_ND96isr_H100_v5", "H100", 8, False)
    assert (h100.usd_per_hour, h100.usd_per_gpu_hour, h100.region) == (98.32, 12.29, "eastus")
    assert (a100_spot.gpu, a100_spot.spot, a100_spot.usd_per_hour) == ("A100-80GB", True, 0.7345)
    offers, rejected, next_link = parse_azure_page(page2, "https://example.test/p2", "2026-11-24")
    assert ([o.usd_per_hour for o in offers], rejected, next_link) == ([3.673], 3, None)  # unknown, zero, DevTest
    for bad in ({"Items": "no"}, {"NextPageLink": None}, {"Items": []}, [1, 2]):
        with pytest.raises(PriceFetchError):
            parse_azure_page(bad, "https://example.test/p", "2026-11-24")


# ------------------------------------------------------------------------------------------
# Fetching over HTTP


def test_fetch_skypilot_csv(server):
    url = server.add("/aws/vms.csv", AWS_CSV)
    table = fetch("skypilot-aws", url, now=NOW)
    assert (table.source, table.url, table.fetched_at) == ("skypilot-aws", url, "2026-11-24T12:00:00Z")
    assert len(table.offers) == 9 and table.rejected == 6
    assert {o.source for o in table.offers} == {url} and {o.as_of for o in table.offers} == {"2026-11-24"}


def test_fetch_azure_follows_next_page_links(server):
    page1, page2 = azure_pages(server.base)
    url = server.add("/azure?page=1", page1)
    server.add("/azure?page=2", page2)
    table = fetch("azure-retail", url, now=NOW)
    assert server.hits == {"/azure?page=1": 1, "/azure?page=2": 1}
    assert table.rejected == 5
    assert [(o.instance, o.spot, o.usd_per_hour) for o in table.offers] == [
        ("Standard_NC24ads_A100_v4", True, 0.7345), ("Standard_NC24ads_A100_v4", False, 3.673),
        ("Standard_ND96isr_H100_v5", False, 98.32)]
    assert {o.source for o in table.offers} == {url}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_fetch_retries_5xx_then_fails(server):
    url = server.add("/aws/vms.csv", "oops", status=500)
    with pytest.raises(PriceFetchError) as err:
        fetch("skypilot-aws", url, now=NOW)
    assert err.value.source == "skypilot-aws" and "HTTP 500" in str(err.value)
    assert server.hits["/aws/vms.csv"] == 3


@pytest.mark.parametrize("case,why", [
    ("404", "HTTP 404"),
    ("cut transfer", "transfer from"),
    ("truncated csv", "truncated"),
    ("only cpu rows", "zero usable offers"),
    ("refused", "cannot connect"),
    ("slow", "timed out after 0.5 s"),
])
def test_fetch_failures_name_source_and_reason(server, case, why):
    path = "/lambda/vms.csv"
    if case == "404":
        url = server.base + "/missing.csv"
    elif case == "cut transfer":
        url = server.add(path, LAMBDA_CSV, send_bytes=len(LAMBDA_CSV) // 2)
    elif case == "truncated csv":
        url = server.add(path, LAMBDA_CSV[:-40])
    elif case == "only cpu rows":
        url = server.add(path, LAMBDA_CSV.split("\n")[0] + "\ncpu_4x_general,,,4.0,16.0,0.2,us-east-1,,\n")
    elif case == "refused":
        url = f"http://127.0.0.1:{free_port()}/vms.csv"
    else:
        url = server.add(path, LAMBDA_CSV, delay_s=1.5)
    started = time.monotonic()
    with pytest.raises(PriceFetchError) as err:
        fetch("skypilot-lambda", url, timeout_s=0.5, now=NOW)
    assert time.monotonic() - started < 1.4
    assert str(err.value).startswith("skypilot-lambda: ") and why in err.value.reason


@pytest.mark.parametrize("body,why", [("{\"Items\": [", "not valid JSON"), ("<html>busy</html>", "not valid JSON"),
                                      ({"Items": []}, "no valid NextPageLink")])
def test_fetch_azure_malformed_json(server, body, why):
    url = server.add("/azure", body, content_type="application/json")
    with pytest.raises(PriceFetchError) as err:
        fetch("azure-retail", url, now=NOW)
    assert err.value.source == "azure-retail" and why in err.value.reason


def test_fetch_azure_refuses_bad_next_link_and_loops(server, monkeypatch):
    page1, _ = azure_pages(server.base)
    url = server.add("/azure", dict(page1, NextPageLink="http://example.com/next"))
    with pytest.raises(PriceFetchError, match="NextPageLink not followed"):
        fetch("azure-retail", url, now=NOW)
    monkeypatch.setattr(azure, "MAX_PAGES", 3)
    url = server.add("/loop", dict(page1, NextPageLink=server.base + "/loop"))
    with pytest.raises(PriceFetchError, match="more than 3 pages"):
        fetch("azure-retail", url, now=NOW)
    assert server.hits["/loop"] == 3


def test_fetch_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="prices.url"):
        fetch("skypilot-aws", "http://example.com/vms.csv")
    with pytest.raises(ConfigError, match="prices.source"):
        fetch("skypilot-nowhere")


# ------------------------------------------------------------------------------------------
# Cache


def test_cache_respects_ttl(server, tmp_path):
    url = server.add("/lambda/vms.csv", LAMBDA_CSV)
    kw = dict(cache_dir=tmp_path, urls={"skypilot-lambda": url})
    first = load_prices(["skypilot-lambda"], now=NOW, **kw)
    assert {o.provenance for o in first.offers} == {"fetched"} and first.warnings == ()
    assert server.hits["/lambda/vms.csv"] == 1
    cached = load_prices(["skypilot-lambda"], now=NOW + timedelta(hours=6, minutes=59), **kw)
    assert {o.provenance for o in cached.offers} == {"cache"} and cached.warnings == ()
    assert [o.usd_per_hour for o in cached.offers] == [o.usd_per_hour for o in first.offers]
    assert cached.tables[0].fetched_at == "2026-11-24T12:00:00Z"
    assert server.hits["/lambda/vms.csv"] == 1
    refetched = load_prices(["skypilot-lambda"], now=NOW + timedelta(hours=7, minutes=1), **kw)
    assert {o.provenance for o in refetched.offers} == {"fetched"}
    assert server.hits["/lambda/vms.csv"] == 2
    forced = update(["skypilot-lambda"], now=NOW + timedelta(hours=7, minutes=2), **kw)
    assert {o.provenance for o in forced.offers} == {"fetched"} and server.hits["/lambda/vms.csv"] == 3


def test_a_cache_for_another_url_is_not_fresh(server, tmp_path):
    write_cache(tmp_path, parse_skypilot_csv(LAMBDA_CSV, "lambda", "https://example.test/old.csv", "2026-11-24",
                                             fetched_at="2026-11-24T11:00:00Z"))
    url = server.add("/lambda/vms.csv", LAMBDA_CSV)
    result = load_prices(["skypilot-lambda"], cache_dir=tmp_path, urls={"skypilot-lambda": url}, now=NOW)
    assert {o.provenance for o in result.offers} == {"fetched"} and server.hits["/lambda/vms.csv"] == 1
    assert {o.source for o in result.offers} == {url}


def test_cache_is_atomic_and_survives_failures(server, tmp_path):
    url = server.add("/lambda/vms.csv", LAMBDA_CSV)
    kw = dict(cache_dir=tmp_path, urls={"skypilot-lambda": url})
    load_prices(["skypilot-lambda"], now=NOW, **kw)
    assert [p.name for p in tmp_path.iterdir()] == ["skypilot-lambda.json"]
    before = (tmp_path / "skypilot-lambda.json").read_bytes()
    for broken in (Route(b"oops", status=500), Route(LAMBDA_CSV.encode(), send_bytes=100),
                   Route(LAMBDA_CSV[:-30].encode())):
        server.routes["/lambda/vms.csv"] = broken
        result = update(["skypilot-lambda"], now=NOW + timedelta(hours=9), **kw)
        assert (tmp_path / "skypilot-lambda.json").read_bytes() == before
        assert [p.name for p in tmp_path.iterdir()] == ["skypilot-lambda.json"]
        assert {o.provenance for o in result.offers} == {"cache"} and len(result.offers) == 3
        (warning,) = result.warnings
        assert warning.startswith("skypilot-lambda: fetch failed (")
        assert "2026-11-24T12:00:00Z" in warning and "stale" in warning


def test_a_failed_cache_write_leaves_the_old_file(server, tmp_path, monkeypatch):
    url = server.add("/lambda/vms.csv", LAMBDA_CSV)
    kw = dict(cache_dir=tmp_path, urls={"skypilot-lambda": url})
    load_prices(["skypilot-lambda"], now=NOW, **kw)
    before = (tmp_path / "skypilot-lambda.json").read_bytes()

    def disk_full(fd):  # the bytes are written; the disk refuses them when they are synced
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("harness.files.os.fsync", disk_full)
    result = update(["skypilot-lambda"], now=NOW + timedelta(hours=1), **kw)
    assert {o.provenance for o in result.offers} == {"fetched"}
    assert any("could not write the cache" in w and "No space left" in w for w in result.warnings)
    assert (tmp_path / "skypilot-lambda.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["skypilot-lambda.json"]


@pytest.mark.parametrize("garbage", [b"{not json", b"[]", json.dumps({"schema": 1, "offers": [{"x": 1}]}).encode()])
def test_corrupt_cache_is_a_warning(server, tmp_path, garbage):
    (tmp_path / "skypilot-lambda.json").write_bytes(garbage)
    offline = load_prices(["skypilot-lambda"], cache_dir=tmp_path, offline=True, now=NOW)
    assert any("unreadable" in w and "ignoring it" in w for w in offline.warnings)
    assert {o.provenance for o in offline.offers} == {"snapshot"}
    url = server.add("/lambda/vms.csv", LAMBDA_CSV)
    online = load_prices(["skypilot-lambda"], cache_dir=tmp_path, urls={"skypilot-lambda": url}, now=NOW)
    assert {o.provenance for o in online.offers} == {"fetched"}
    assert json.loads((tmp_path / "skypilot-lambda.json").read_text())["schema"] == 1


# ------------------------------------------------------------------------------------------
# Orchestration


def test_offline_never_touches_the_network(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        pytest.fail("offline mode made a network call")

    monkeypatch.setattr(httpx.Client, "send", no_network)
    monkeypatch.setattr(httpx.Client, "__init__", no_network)
    old = parse_skypilot_csv(LAMBDA_CSV, "lambda", "https://example.test/lambda.csv", "2026-11-01",
                             fetched_at="2026-11-01T08:00:00Z")
    write_cache(tmp_path, old)
    result = load_prices(["skypilot-lambda", "skypilot-aws"], cache_dir=tmp_path, offline=True, now=NOW,
                         urls={"skypilot-lambda": "https://example.test/lambda.csv"})
    lam = [o for o in result.offers if o.provider == "lambda"]
    aws = [o for o in result.offers if o.provider == "aws"]
    assert len(lam) == 3 and {o.provenance for o in lam} == {"cache"}
    assert aws and {o.provenance for o in aws} == {"snapshot"}
    snapshot_as_of = max(o.as_of for o in aws)
    lam_warning, aws_warning = result.warnings
    assert lam_warning.startswith("skypilot-lambda: offline;") and "2026-11-01T08:00:00Z" in lam_warning
    assert aws_warning.startswith("skypilot-aws: offline and no cache;") and snapshot_as_of in aws_warning
    assert [(t.name, t.provenance) for t in result.tables] == [("skypilot-lambda", "cache"), ("skypilot-aws", "snapshot")]
    lam_table = dict(result.tables[0])
    assert lam_table == {"name": "skypilot-lambda", "url": "https://example.test/lambda.csv", "provenance": "cache",
                         "as_of": "2026-11-01", "fetched_at": "2026-11-01T08:00:00Z", "n_offers": 3, "rejected": 1}
    assert result.tables[1]["n_offers"] == len(aws)
    with pytest.raises(KeyError):
        result.tables[1]["offers"]


def test_load_prices_mixes_fetched_and_snapshot(server, tmp_path):
    urls = {"skypilot-aws": server.add("/aws/vms.csv", AWS_CSV),
            "skypilot-gcp": server.add("/gcp/vms.csv", "down", status=503),
            "skypilot-azure": server.add("/azure/vms.csv", "gone", status=404),
            "azure-retail": server.add("/azure-retail", "{\"Items\": [", content_type="application/json")}
    result = load_prices(list(urls), cache_dir=tmp_path, urls=urls, now=NOW)
    summary = {t.name: (t.provenance, t.n_offers) for t in result.tables}
    snapshot = load_snapshot()
    n_gcp = sum(o.provider == "gcp" for o in snapshot.offers)
    n_azure = sum(o.provider == "azure" for o in snapshot.offers)
    assert summary == {"skypilot-aws": ("fetched", 9), "skypilot-gcp": ("snapshot", n_gcp),
                       "skypilot-azure": ("snapshot", n_azure), "azure-retail": ("none", 0)}
    assert len(result.offers) == 9 + n_gcp + n_azure  # the snapshot's azure rows only once
    gcp_w, azure_w, retail_w = result.warnings
    assert gcp_w.startswith("skypilot-gcp: fetch failed (HTTP 503") and "snapshot" in gcp_w
    assert azure_w.startswith("skypilot-azure: fetch failed (HTTP 404")
    assert retail_w.startswith("azure-retail: fetch failed (") and "not valid JSON" in retail_w
    assert "already included" in retail_w
    assert sorted(p.name for p in tmp_path.iterdir()) == ["skypilot-aws.json"]


def test_default_sources_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(httpx.Client, "__init__", lambda *a, **k: pytest.fail("network call"))
    result = load_prices(cache_dir=tmp_path, offline=True)
    assert tuple(t.name for t in result.tables) == prices.DEFAULT_SOURCES
    assert {o.provider for o in result.offers} == {"aws", "gcp", "lambda", "azure"}
    assert len(result.warnings) == len(prices.DEFAULT_SOURCES)
    assert list(tmp_path.iterdir()) == []


def test_load_prices_rejects_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="prices.source"):
        load_prices(["skypilot-moon"], cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="prices.url"):
        load_prices(["skypilot-aws"], cache_dir=tmp_path, urls={"skypilot-aws": "http://example.com/x"})


def test_filter_offers():
    table = parse_skypilot_csv(AWS_CSV, "aws", "https://example.test/aws.csv", "2026-11-24")
    a100 = filter_offers(table.offers, gpu="a100")
    assert {o.gpu for o in a100} == {"A100", "A100-80GB"}
    assert [o.usd_per_gpu_hour for o in a100] == sorted(o.usd_per_gpu_hour for o in a100)
    assert {o.gpu for o in filter_offers(table.offers, gpu="A100 80GB")} == {"A100-80GB"}
    assert filter_offers(table.offers, gpu="A10") == []
    assert [o.instance for o in filter_offers(table.offers, gpu="A10G", spot=True)] == ["g5.xlarge"]
    assert all(not o.spot for o in filter_offers(table.offers, spot=False))


# ------------------------------------------------------------------------------------------
# Snapshot


def test_bundled_snapshot_rows_are_sourced_and_dated():
    table = load_snapshot()
    with prices.SNAPSHOT_PATH.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(table.offers) == len(rows) >= 40
    for row, offer in zip(rows, table.offers):
        assert row["source_url"].startswith("https://")
        assert date.fromisoformat(row["as_of"]).isoformat() == row["as_of"]
        assert offer.provenance == "snapshot" and row["source_url"] in offer.source
        assert normalise_gpu(offer.gpu) == offer.gpu
        assert offer.usd_per_gpu_hour == pytest.approx(offer.usd_per_hour / offer.gpus_per_instance)
    assert {o.provider for o in table.offers} == {"aws", "gcp", "azure", "lambda"}
    assert {"H100", "A100", "A100-80GB", "V100", "T4", "L4", "A10G"} <= {o.gpu for o in table.offers}
    assert any(o.spot for o in table.offers)
    keyed = {(o.provider, o.instance, o.region, o.spot): o.usd_per_hour for o in table.offers}
    assert keyed[("aws", "p5.48xlarge", "us-east-1", False)] == 55.04       # REFERENCE.md §5
    assert keyed[("lambda", "gpu_1x_h100_sxm5", "us-east-1", False)] == 4.29
    assert len(keyed) == len(table.offers)


@pytest.mark.parametrize("line,why", [
    ("aws,p5.48xlarge,us-east-1,H100,8,55.04,maybe,2026-11-24,https://x.test/a", "spot must be"),
    ("aws,p5.48xlarge,us-east-1,H100,8,55.04,false,24/11/2026,https://x.test/a", "ISO date"),
    ("aws,p5.48xlarge,us-east-1,H100,8,55.04,false,2026-11-24,http://x.test/a", "https://"),
    ("aws,p5.48xlarge,us-east-1,H100,0,55.04,false,2026-11-24,https://x.test/a", ">= 1"),
    ("aws,p5.48xlarge,us-east-1,H100,8,lots,false,2026-11-24,https://x.test/a", "must be an integer"),
    ("aws,p5.48xlarge,us-east-1,H100,8", "wrong number of fields"),
])
def test_malformed_snapshot_names_file_and_row(tmp_path, line, why):
    path = tmp_path / "snapshot.csv"
    good = "lambda,gpu_1x_a10,us-east-1,A10,1,1.29,false,2026-11-24,https://x.test/l"
    path.write_text(",".join(prices.SNAPSHOT_COLUMNS) + f"\n{good}\n{line}\n")
    with pytest.raises(ConfigError) as err:
        load_snapshot(path)
    assert str(path) in err.value.field and "row 3" in err.value.message and why in err.value.message


def test_offer_is_frozen():
    offer = load_snapshot().offers[0]
    assert isinstance(offer, Offer)
    with pytest.raises(AttributeError):
        offer.usd_per_hour = 0.0
