"""harness.cost.prices against a real HTTP server on loopback, serving payloads in the real formats."""

from __future__ import annotations

import collections
import csv
import gzip
import json
import math
import socket
import threading
import time
import tracemalloc
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
p5.48xlarge,H100,8.0,192.0,2048.0,{H100x8},55.04,55.040000,us-east-1,use1-az1,x86_64
p5.48xlarge,H100,8.0,192.0,2048.0,{H100x8},55.04,19.253100,us-east-1,use1-az2,x86_64
p5.48xlarge,H100,8.0,192.0,2048.0,{H100x8},55.04,,us-east-1,use1-az3,x86_64
p5.48xlarge,H100,8.0,192.0,2048.0,{H100x8},55.04,17.628900,us-east-1,use1-az6,x86_64
p4d.24xlarge,A100,8.0,96.0,1152.0,{A100x8},21.957642,8.120300,us-east-1,use1-az4,x86_64
p4de.24xlarge,A100-80GB,8.0,96.0,1152.0,{A100_80x8},27.44705,8.650500,us-east-1,use1-az6,x86_64
g5.xlarge,A10G,1.0,4.0,16.0,{A10Gx1},1.006,0.436000,us-east-1,use1-az4,x86_64
g5.xlarge,A10G,1.0,4.0,16.0,{A10Gx1},1.006,0.424600,us-east-1,use1-az2,x86_64
g5.xlarge,A10G,1.0,4.0,16.0,{A10Gx1},0.95,0.300000,us-east-1,use1-bos1-az1,x86_64
p3.2xlarge,V100,1.0,8.0,61.0,{V100x1},700.0,700.0,us-east-1,use1-az1,x86_64
inf2.xlarge,Inferentia2,1.0,4.0,16.0,,0.7582,0.200000,us-east-1,use1-az1,x86_64
trn1.2xlarge,Trainium,1.0,8.0,32.0,,1.34375,0.500000,us-east-1,use1-az1,x86_64
p5e.48xlarge,H200,8.0,192.0,2048.0,{H200x8},,19.425400,us-east-2,use2-az1,x86_64
"""

# Real rows of skypilot-catalog v8 gcp/vms.csv (commit 8427bbff): VM rows price the host alone,
# GPU rows (no InstanceType) the GPUs alone; a4-highgpu-8g is listed at 0.0; H200 and A100-80GB
# spot prices there exceed on-demand.
GCP_CSV = """InstanceType,vCPUs,MemoryGiB,AcceleratorName,AcceleratorCount,GpuInfo,Region,AvailabilityZone,Price,SpotPrice
a2-highgpu-1g,12.0,85.0,,,,us-central1,us-central1-a,0.73948,0.36975
a2-highgpu-1g,12.0,85.0,,,,us-central1,us-central1-b,0.73948,0.36975
a2-ultragpu-1g,12.0,170.0,,,,us-central1,us-central1-a,1.09962,0.54978
a3-highgpu-8g,208.0,1872.0,,,,us-central1,us-central1-a,9.46006,2.75246
a3-ultragpu-8g,224.0,2952.0,,,,asia-south1,asia-south1-b,12.75664,2.78253
a4-highgpu-8g,224.0,3968.0,,,,us-central1,us-central1-b,0.0,0.0
n2-standard-2,2.0,8.0,,,,us-central1,us-central1-a,0.097118,0.02799
,,,A100,1,{'Gpus': [{'MemoryInfo': {'SizeInMiB': 40960}}]},us-central1,us-central1-a,2.93391,1.4341
,,,A100,1,{'Gpus': [{'MemoryInfo': {'SizeInMiB': 40960}}]},us-central1,us-central1-b,2.93391,1.4341
,,,A100-80GB,1,{'Gpus': [{'MemoryInfo': {'SizeInMiB': 81920}}]},us-central1,us-central1-a,1.8462,1.964
,,,B200,8,{'Gpus': [{'MemoryInfo': {'SizeInMiB': 184320}}]},us-central1,us-central1-b,90.216,32.6064
,,,H100,8,{'Gpus': [{'MemoryInfo': {'SizeInMiB': 81920}}]},us-central1,us-central1-a,33.60609,22.8008
,,,H200,8,{'Gpus': [{'MemoryInfo': {'SizeInMiB': 144384}}]},asia-south1,asia-south1-b,36.60258,37.4976
,,,L4,1,{'Gpus': [{'MemoryInfo': {'SizeInMiB': 24576}}]},us-central1,us-central1-a,0.56004,0.2231
,,,tpu-v6e-4,1,tpu-v6e-4,us-central2,us-central2-b,700.0,700.0
"""


# Real rows of skypilot-catalog v6 azure/vms.csv (commit 098741e7, the file the catalog still serves
# for Azure): no AvailabilityZone column, a Generation column, GpuInfo the bare GPU name; a CPU
# size, a size whose GPU columns are empty, and an H100 size whose SpotPrice is its Price.
AZURE_V6_CSV = """InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,Generation
Standard_A1_v2,,,1.0,2,,0.043,0.00473,eastus,V1
Standard_NC16ads_A10_v4,,,16.0,200,,,,eastus,"V1,V2"
Standard_NC24ads_A100_v4,A100-80GB,1,24.0,220,A100-80GB,3.673,0.444433,eastus,V2
Standard_NC24s_v3,V100,4,24.0,448,V100,12.24,1.5912,eastus,"V1,V2"
Standard_NC40ads_H100_v5,H100,1,40.0,320,H100,6.98,6.98,eastus,V2
Standard_NC6s_v3,V100,1,6.0,112,V100,3.06,0.3978,eastus,"V1,V2"
Standard_NC6s_v3,V100,1,6.0,112,V100,3.06,0.35343,westus2,"V1,V2"
Standard_ND96asr_v4,A100,8,96.0,900,A100,27.197,2.99167,eastus,V2
"""


def lambda_gpu_info(name: str, count: int, mib: int) -> str:
    return ('"{\'Gpus\': [{\'Name\': \'%s\', \'Manufacturer\': \'NVIDIA\', \'Count\': %.1f, '
            "'MemoryInfo': {'SizeInMiB': %d}}], 'TotalGpuMemoryInMiB': %d}\"" % (name, count, mib, mib))


LAMBDA_CSV = f"""InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,Region,GpuInfo,SpotPrice
cpu_4x_general,,,4.0,16.0,0.2,us-east-1,,
gpu_1x_h100_sxm5,H100,1.0,26.0,225.0,4.29,us-east-1,{lambda_gpu_info("H100", 1, 81920)},
gpu_1x_h100_pcie,H100,1.0,26.0,200.0,3.29,us-east-1,{lambda_gpu_info("H100", 1, 81920)},
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
                 az_item("Standard_NC40ads_H100_v5", "NC40ads H100 v5", "Virtual Machines NCadsH100v5 Series", 6.98),
                 az_item("Standard_NC40ads_H100_v5", "NC40ads H100 v5 Spot", "Virtual Machines NCadsH100v5 Series", 6.98),
             ],
             "NextPageLink": f"{base}/azure?page=2", "Count": 6}
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
    drip_s: float | None = None    # send the body one byte at a time, this many seconds apart
    headers: tuple[tuple[str, str], ...] = ()
    length: bool = True            # send Content-Length (else the body ends when the connection closes)


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
            if route.length:
                self.send_header("Content-Length", str(len(route.body)))
            else:
                self.close_connection = True
            for name, value in route.headers:
                self.send_header(name, value)
            self.end_headers()
            if route.drip_s is not None:
                for i in range(len(route.body)):
                    self.wfile.write(route.body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(route.drip_s)
                return
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
                                 "not a url", "https://example.com/\tx", "https://example.com/x\n",
                                 "https://example.com:port/x", "https://example.com:99999/x", "https://exa mple.com/",
                                 "https://example.com/\x7f", ""])
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
    assert len(table.offers) == 11
    # m5.large (no GPU), p3 placeholder on demand + spot, Inferentia, Trainium, p5e empty Price,
    # p5's use1-az1 spot price equal to its on-demand price (filled in: no spot market there)
    assert table.rejected == 7
    assert dict(table.rejected_reasons) == {"no accelerator": 1, "placeholder price": 2, "not a GPU": 2,
                                            "missing price": 1, "spot price equals on-demand (a filled-in value)": 1}
    p5 = offers[("p5.48xlarge", "us-east-1", False)]
    assert (p5.gpu, p5.gpus_per_instance, p5.usd_per_hour, p5.usd_per_gpu_hour) == ("H100", 8, 55.04, 6.88)
    assert (p5.as_of, p5.source, p5.provenance, p5.provider) == ("2026-11-24", "https://example.test/aws.csv", "fetched", "aws")
    assert (p5.form, p5.local_zone, p5.gpu_only, p5.host_usd_per_hour) == ("SXM", None, False, None)
    # four zones, one with no spot price, one with spot = on-demand: the cheapest real spot price wins
    assert offers[("p5.48xlarge", "us-east-1", True)].usd_per_hour == 17.6289
    assert offers[("p5.48xlarge", "us-east-1", True)].usd_per_gpu_hour == pytest.approx(2.2036125)
    assert offers[("p4d.24xlarge", "us-east-1", False)].usd_per_gpu_hour == pytest.approx(2.74470525)
    assert offers[("p4d.24xlarge", "us-east-1", True)].usd_per_gpu_hour == pytest.approx(1.0150375)
    p4de = offers[("p4de.24xlarge", "us-east-1", False)]
    assert (p4de.gpu, p4de.usd_per_gpu_hour) == ("A100-80GB", pytest.approx(3.43088125))
    assert offers[("p4de.24xlarge", "us-east-1", True)].usd_per_gpu_hour == pytest.approx(1.0813125)
    # the Local Zone row (use1-bos1-az1, cheaper) stays an offer of its own, labelled; the region's is its zones'
    region = [o for o in table.offers if o.instance == "g5.xlarge" and o.local_zone is None]
    assert sorted((o.spot, o.usd_per_hour) for o in region) == [(False, 1.006), (True, 0.4246)]
    bos = [o for o in table.offers if o.local_zone == "use1-bos1-az1"]
    assert sorted((o.spot, o.usd_per_hour, o.region) for o in bos) == [(False, 0.95, "us-east-1"), (True, 0.3, "us-east-1")]
    assert bos[0].labels == ("Local Zone use1-bos1-az1",) and bos[0].form == "PCIe"
    p5e = offers[("p5e.48xlarge", "us-east-2", True)]
    assert (p5e.gpu, p5e.usd_per_gpu_hour) == ("H200", pytest.approx(2.428175))
    assert ("p5e.48xlarge", "us-east-2", False) not in offers
    assert not any(o.instance in ("p3.2xlarge", "inf2.xlarge", "trn1.2xlarge", "m5.large") for o in table.offers)


def test_parse_gcp_completes_gpu_rows_with_their_host_vm():
    table = parse_skypilot_csv(GCP_CSV, "gcp", "https://example.test/gcp.csv", "2026-11-24")
    # n2 (a CPU VM), a4-highgpu-8g's 0.0 price, the TPU, and two spot prices above on-demand
    # (A100-80GB 1.964 > 1.8462, H200 37.4976 > 36.60258)
    assert dict(table.rejected_reasons) == {"no accelerator": 1, "host VM: zero or negative price": 1,
                                            "not a GPU": 1, "spot price above on-demand": 2}
    assert table.rejected == 5
    offers = by_key(table.offers)
    assert len(offers) == 10
    # A100 x1 + a2-highgpu-1g, same zone (both zones alike): GPU 2.93391 + host 0.73948
    a2, a2_spot = offers[("a2-highgpu-1g", "us-central1", False)], offers[("a2-highgpu-1g", "us-central1", True)]
    assert (a2.gpu, a2.gpus_per_instance, a2.form, a2.gpu_only) == ("A100", 1, "SXM", False)
    assert a2.usd_per_hour == pytest.approx(2.93391 + 0.73948) and a2.host_usd_per_hour == 0.73948
    assert a2_spot.usd_per_hour == pytest.approx(1.4341 + 0.36975) and a2_spot.host_usd_per_hour == 0.36975
    assert a2.labels == ("GPUs 2.93391 + host VM 0.73948 $/h",)
    a3 = offers[("a3-highgpu-8g", "us-central1", False)]
    assert a3.usd_per_gpu_hour == pytest.approx((33.60609 + 9.46006) / 8)
    assert offers[("a3-highgpu-8g", "us-central1", True)].usd_per_hour == pytest.approx(22.8008 + 2.75246)
    # a spot above on-demand is dropped; the on-demand offer stays
    assert offers[("a2-ultragpu-1g", "us-central1", False)].usd_per_hour == pytest.approx(1.8462 + 1.09962)
    assert ("a2-ultragpu-1g", "us-central1", True) not in offers
    assert offers[("a3-ultragpu-8g", "asia-south1", False)].usd_per_hour == pytest.approx(36.60258 + 12.75664)
    assert ("a3-ultragpu-8g", "asia-south1", True) not in offers
    # no usable host VM row: kept, GPU-only, labelled
    b200, l4 = offers[(f"B200 x8 {GPU_ONLY_SUFFIX}", "us-central1", False)], offers[(f"L4 x1 {GPU_ONLY_SUFFIX}", "us-central1", True)]
    assert (b200.gpu_only, b200.usd_per_hour, b200.labels) == (True, 90.216, ("GPU only; host VM extra",))
    assert (l4.gpu_only, l4.usd_per_gpu_hour) == (True, 0.2231)


def test_parse_lambda_has_no_spot():
    table = parse_skypilot_csv(LAMBDA_CSV, "lambda", "https://example.test/lambda.csv", "2026-11-24")
    assert (len(table.offers), table.rejected) == (4, 1)
    offers = by_key(table.offers)
    assert offers[("gpu_1x_h100_sxm5", "us-east-1", False)].usd_per_gpu_hour == 4.29
    assert offers[("gpu_1x_h100_sxm5", "us-east-1", False)].form == "SXM"
    assert offers[("gpu_1x_h100_pcie", "us-east-1", False)].form == "PCIe"
    assert offers[("gpu_8x_v100", "us-east-1", False)].form is None  # the name does not say
    a100 = offers[("gpu_8x_a100_80gb_sxm4", "us-east-1", False)]
    assert (a100.gpu, a100.usd_per_gpu_hour) == ("A100-80GB", pytest.approx(2.79))
    assert offers[("gpu_8x_v100", "us-east-1", False)].usd_per_gpu_hour == pytest.approx(0.79)
    assert not any(o.spot for o in table.offers)


@pytest.mark.parametrize("text,why", [
    (AWS_CSV[:-1], "no final newline"),
    (AWS_CSV[:AWS_CSV.rindex(",us-east-2")] + "\n", "line 15 has"),
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
    got = {(o.instance, o.spot): o for o in offers}
    assert len(got) == len(offers) == 4
    h100, a100_spot = got[("Standard_ND96isr_H100_v5", False)], got[("Standard_NC24ads_A100_v4", True)]
    assert (h100.instance, h100.gpu, h100.gpus_per_instance, h100.spot) == ("Standard_ND96isr_H100_v5", "H100", 8, False)
    assert (h100.form, got[("Standard_NC40ads_H100_v5", False)].form) == ("SXM", "NVL")
    assert ("Standard_NC40ads_H100_v5", True) in got  # one page; `read` drops it (spot = on-demand) across pages
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
    assert len(table.offers) == 11 and table.rejected == 7
    assert {o.source for o in table.offers} == {url} and {o.as_of for o in table.offers} == {"2026-11-24"}


def test_fetch_skypilot_gcp_catalog_completes_gpu_rows_with_host_vms(server):
    url = server.add("/gcp/vms.csv", GCP_CSV)
    table = fetch("skypilot-gcp", url, now=NOW)
    assert server.hits == {"/gcp/vms.csv": 1}
    assert (table.source, table.url, table.rejected) == ("skypilot-gcp", url, 5)
    offers = by_key(table.offers)
    assert len(offers) == 10 and {o.source for o in table.offers} == {url}
    # GPU row 2.93391 + a2-highgpu-1g host row 0.73948 of the same zone, in one offer named by the VM
    a2 = offers[("a2-highgpu-1g", "us-central1", False)]
    assert (a2.usd_per_hour, a2.host_usd_per_hour, a2.gpu_only) == (pytest.approx(3.67339), 0.73948, False)
    a3 = offers[("a3-highgpu-8g", "us-central1", True)]
    assert a3.usd_per_gpu_hour == pytest.approx((22.8008 + 2.75246) / 8)
    assert offers[(f"B200 x8 {GPU_ONLY_SUFFIX}", "us-central1", False)].gpu_only  # its host row is 0.0


def test_fetch_skypilot_azure_v6_catalog(server, tmp_path):
    url = server.add("/azure/vms.csv", AZURE_V6_CSV)
    table = fetch("skypilot-azure", url, now=NOW)
    assert server.hits == {"/azure/vms.csv": 1}
    assert dict(table.rejected_reasons) == {"no accelerator": 2, "spot price equals on-demand (a filled-in value)": 1}
    offers = by_key(table.offers)
    assert len(offers) == 11
    nd = offers[("Standard_ND96asr_v4", "eastus", False)]
    assert (nd.gpu, nd.gpus_per_instance, nd.usd_per_gpu_hour) == ("A100", 8, pytest.approx(27.197 / 8))
    assert offers[("Standard_ND96asr_v4", "eastus", True)].usd_per_hour == 2.99167
    a100 = offers[("Standard_NC24ads_A100_v4", "eastus", False)]
    assert (a100.gpu, a100.usd_per_hour) == ("A100-80GB", 3.673)
    # one size, two regions: two offers each way; the H100 size's "spot" (= on-demand) is dropped
    assert offers[("Standard_NC6s_v3", "westus2", True)].usd_per_hour == 0.35343
    assert offers[("Standard_NC6s_v3", "eastus", True)].usd_per_hour == 0.3978
    assert ("Standard_NC40ads_H100_v5", "eastus", True) not in offers
    assert offers[("Standard_NC40ads_H100_v5", "eastus", False)].usd_per_hour == 6.98
    # and through load_prices: fetched, cached, then read back from the cache without a request
    kw = dict(cache_dir=tmp_path, urls={"skypilot-azure": url})
    first = load_prices(["skypilot-azure"], now=NOW, **kw)
    again = load_prices(["skypilot-azure"], now=NOW + timedelta(hours=1), **kw)
    assert server.hits == {"/azure/vms.csv": 2}
    assert [t.provenance for t in (*first.tables, *again.tables)] == ["fetched", "cache"]
    assert sorted(o.usd_per_hour for o in again.offers) == sorted(o.usd_per_hour for o in table.offers)


def test_a_gzip_body_is_decoded(server):
    url = server.add("/lambda/vms.csv", gzip.compress(LAMBDA_CSV.encode()), headers=(("Content-Encoding", "gzip"),))
    assert len(fetch("skypilot-lambda", url, now=NOW).offers) == 4


def test_a_decompression_bomb_stops_at_the_decoded_limit(server, monkeypatch):
    monkeypatch.setattr(client, "MAX_DECODED_BYTES", 2**20)
    bomb = gzip.compress(b"0" * (64 * 2**20), compresslevel=1)  # 64 MiB in ~280 KB
    url = server.add("/aws/vms.csv", bomb, headers=(("Content-Encoding", "gzip"),))
    tracemalloc.start()
    try:
        with pytest.raises(PriceFetchError, match="expands past the 1,048,576 bytes allowed"):
            fetch("skypilot-aws", url, now=NOW)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20  # decompressed a bounded piece at a time: never the 64 MiB


@pytest.mark.parametrize("length,why", [(True, "announces 3,418 bytes"), (False, "over the 1,000 bytes allowed")])
def test_a_body_over_the_size_limit_is_refused(server, monkeypatch, length, why):
    monkeypatch.setattr(client, "MAX_BODY_BYTES", 1000)
    url = server.add("/aws/vms.csv", AWS_CSV, length=length)  # without a length: counted as it arrives
    with pytest.raises(PriceFetchError, match=why):
        fetch("skypilot-aws", url, now=NOW)


def test_a_dripping_server_ends_within_the_whole_fetch_deadline(server):
    url = server.add("/lambda/vms.csv", LAMBDA_CSV, drip_s=0.05)  # each read arrives well within its timeout
    started = time.monotonic()
    with pytest.raises(PriceFetchError, match="longer than the 1 s allowed for the whole fetch"):
        fetch("skypilot-lambda", url, timeout_s=0.5, deadline_s=1.0, now=NOW)
    assert time.monotonic() - started < 1.6


def test_dripped_headers_end_within_the_deadline():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def drip():
            conn, _ = listener.accept()
            with conn:
                try:
                    for ch in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000:
                        conn.sendall(bytes([ch]))
                        time.sleep(0.05)
                except OSError:
                    pass

        threading.Thread(target=drip, daemon=True).start()
        started = time.monotonic()
        with pytest.raises(PriceFetchError, match="whole fetch"):
            fetch("skypilot-lambda", f"http://127.0.0.1:{port}/vms.csv", timeout_s=0.5, deadline_s=1.0, now=NOW)
        assert time.monotonic() - started < 1.6


def test_json_nested_100000_deep_is_one_line(server):
    url = server.add("/azure", "[" * 100_000 + "]" * 100_000, content_type="application/json")
    with pytest.raises(PriceFetchError, match="nested too deeply"):
        fetch("azure-retail", url, now=NOW)


def test_prices_of_ten_to_the_400_are_rejected(server):
    page1, _ = azure_pages(server.base)
    text = json.dumps(dict(page1, NextPageLink=None))
    text = text.replace("98.32", "1" + "0" * 400, 1).replace("6.98", "1e400", 1)  # an integer, and a float → inf
    url = server.add("/azure", text, content_type="application/json")
    table = fetch("azure-retail", url, now=NOW)
    assert dict(table.rejected_reasons)["non-numeric price"] == 2
    assert all(math.isfinite(o.usd_per_hour) for o in table.offers)


@pytest.mark.parametrize("link", ["http://127.0.0.1:99999/next", "http://127.0.0.1:8a/next",
                                  "https://prices.azure.com/api\x01next", "https://prices.azure.com/a b",
                                  "https://prices.azure.com/next\n"])
def test_a_bad_next_page_link_is_not_followed(server, link):
    page1, _ = azure_pages(server.base)
    url = server.add("/azure", dict(page1, NextPageLink=link))
    with pytest.raises(PriceFetchError, match="NextPageLink not followed"):
        fetch("azure-retail", url, now=NOW)
    assert server.hits == {"/azure": 1}


def test_fetch_azure_follows_next_page_links(server):
    page1, page2 = azure_pages(server.base)
    url = server.add("/azure?page=1", page1)
    server.add("/azure?page=2", page2)
    table = fetch("azure-retail", url, now=NOW)
    assert server.hits == {"/azure?page=1": 1, "/azure?page=2": 1}
    assert table.rejected == 6  # 5 on the pages; the NC40ads H100 v5 spot price equal to on-demand, across them
    assert dict(table.rejected_reasons)["spot price equals on-demand (a filled-in value)"] == 1
    assert [(o.instance, o.spot, o.usd_per_hour) for o in table.offers] == [
        ("Standard_NC24ads_A100_v4", True, 0.7345), ("Standard_NC24ads_A100_v4", False, 3.673),
        ("Standard_NC40ads_H100_v5", False, 6.98), ("Standard_ND96isr_H100_v5", False, 98.32)]
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
        assert {o.provenance for o in result.offers} == {"cache"} and len(result.offers) == 4
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
    assert json.loads((tmp_path / "skypilot-lambda.json").read_text())["schema"] == 2


# ------------------------------------------------------------------------------------------
# Orchestration


def test_offline_never_touches_the_network(server, tmp_path):
    # Every URL points at a live loopback server that serves real catalogs: offline, it gets no request.
    server.add("/lambda/vms.csv", LAMBDA_CSV)
    server.add("/aws/vms.csv", AWS_CSV)
    old = parse_skypilot_csv(LAMBDA_CSV, "lambda", "https://example.test/lambda.csv", "2026-11-01",
                             fetched_at="2026-11-01T08:00:00Z")
    write_cache(tmp_path, old)
    result = load_prices(["skypilot-lambda", "skypilot-aws"], cache_dir=tmp_path, offline=True, now=NOW,
                         urls={"skypilot-lambda": server.base + "/lambda/vms.csv",
                               "skypilot-aws": server.base + "/aws/vms.csv"})
    assert server.hits == {}
    lam = [o for o in result.offers if o.provider == "lambda"]
    aws = [o for o in result.offers if o.provider == "aws"]
    assert len(lam) == 4 and {o.provenance for o in lam} == {"cache"}
    assert aws and {o.provenance for o in aws} == {"snapshot"}
    snapshot_as_of = max(o.as_of for o in aws)
    lam_warning, aws_warning = result.warnings
    assert lam_warning.startswith("skypilot-lambda: offline;") and "2026-11-01T08:00:00Z" in lam_warning
    assert aws_warning.startswith("skypilot-aws: offline and no cache;") and snapshot_as_of in aws_warning
    assert [(t.name, t.provenance) for t in result.tables] == [("skypilot-lambda", "cache"), ("skypilot-aws", "snapshot")]
    lam_table = dict(result.tables[0])
    assert lam_table == {"name": "skypilot-lambda", "url": "https://example.test/lambda.csv", "provenance": "cache",
                         "as_of": "2026-11-01", "fetched_at": "2026-11-01T08:00:00Z", "n_offers": 4, "rejected": 1,
                         "rejected_reasons": (("no accelerator", 1),)}
    assert result.tables[1]["n_offers"] == len(aws)
    with pytest.raises(KeyError):
        result.tables[1]["offers"]


def test_load_prices_mixes_fetched_and_snapshot(server, tmp_path):
    urls = {"skypilot-aws": server.add("/aws/vms.csv", AWS_CSV),
            "skypilot-gcp": server.add("/gcp/vms.csv", GCP_CSV),
            "skypilot-azure": server.add("/azure/vms.csv", "down", status=503),
            "azure-retail": server.add("/azure-retail", "gone", status=404)}
    result = load_prices(list(urls), cache_dir=tmp_path, urls=urls, now=NOW)
    summary = {t.name: (t.provenance, t.n_offers) for t in result.tables}
    n_azure = sum(o.provider == "azure" for o in load_snapshot().offers)
    assert summary == {"skypilot-aws": ("fetched", 11), "skypilot-gcp": ("fetched", 10),
                       "skypilot-azure": ("snapshot", n_azure), "azure-retail": ("none", 0)}
    assert len(result.offers) == 11 + 10 + n_azure  # the snapshot's azure rows only once, no GCP snapshot rows
    assert server.hits["/azure/vms.csv"] == 3  # a 5xx is retried
    azure_w, retail_w = result.warnings
    assert azure_w.startswith("skypilot-azure: fetch failed (HTTP 503") and "snapshot" in azure_w
    assert retail_w.startswith("azure-retail: fetch failed (HTTP 404") and "already included" in retail_w
    assert sorted(p.name for p in tmp_path.iterdir()) == ["skypilot-aws.json", "skypilot-gcp.json"]


def test_default_sources_offline(server, tmp_path):
    urls = {name: server.add(f"/{name}", LAMBDA_CSV) for name in prices.DEFAULT_SOURCES}
    result = load_prices(cache_dir=tmp_path, offline=True, urls=urls)
    assert server.hits == {}  # the server was up and would have answered
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
    assert [(o.instance, o.local_zone) for o in filter_offers(table.offers, gpu="A10G", spot=True)] == [
        ("g5.xlarge", "use1-bos1-az1"), ("g5.xlarge", None)]
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
    assert {"H100", "H200", "B200", "A100", "A100-80GB", "V100", "T4", "L4", "A10G"} <= {o.gpu for o in table.offers}
    assert table.rejected == 0  # no spot row at or above its on-demand row
    a2 = next(o for o in table.offers if o.instance == "a2-highgpu-8g" and not o.spot)
    assert (a2.host_usd_per_hour, a2.usd_per_hour, a2.form) == (5.91582, 29.38708, "SXM")  # 23.47126 + 5.91582
    assert {o.gpu_only for o in table.offers if o.instance.endswith(GPU_ONLY_SUFFIX)} == {True}
    forms = {(o.provider, o.instance): o.form for o in table.offers}
    assert forms[("lambda", "gpu_1x_h100_pcie")] == "PCIe" and forms[("lambda", "gpu_1x_h100_sxm5")] == "SXM"
    assert forms[("azure", "Standard_NC40ads_H100_v5")] == "NVL" and forms[("aws", "p5.48xlarge")] == "SXM"
    assert any(o.spot for o in table.offers)
    keyed = {(o.provider, o.instance, o.region, o.spot): o.usd_per_hour for o in table.offers}
    assert keyed[("aws", "p5.48xlarge", "us-east-1", False)] == 55.04       # REFERENCE.md §5
    assert keyed[("lambda", "gpu_1x_h100_sxm5", "us-east-1", False)] == 4.29
    assert len(keyed) == len(table.offers)


@pytest.mark.parametrize("line,why", [
    ("aws,p5.48xlarge,us-east-1,H100,8,55.04,,maybe,2026-11-24,https://x.test/a", "spot must be"),
    ("aws,p5.48xlarge,us-east-1,H100,8,55.04,,false,24/11/2026,https://x.test/a", "ISO date"),
    ("aws,p5.48xlarge,us-east-1,H100,8,55.04,,false,2026-11-24,http://x.test/a", "https://"),
    ("aws,p5.48xlarge,us-east-1,H100,0,55.04,,false,2026-11-24,https://x.test/a", ">= 1"),
    ("aws,p5.48xlarge,us-east-1,H100,8,lots,,false,2026-11-24,https://x.test/a", "must be an integer"),
    ("aws,p5.48xlarge,us-east-1,H100,8", "wrong number of fields"),
    ("gcp,a2-highgpu-8g,us-central1,A100,8,29.38708,30.0,false,2026-12-02,https://x.test/g", "below usd_per_hour"),
])
def test_malformed_snapshot_names_file_and_row(tmp_path, line, why):
    path = tmp_path / "snapshot.csv"
    good = "lambda,gpu_1x_a10,us-east-1,A10,1,1.29,,false,2026-11-24,https://x.test/l"
    path.write_text(",".join(prices.SNAPSHOT_COLUMNS) + f"\n{good}\n{line}\n")
    with pytest.raises(ConfigError) as err:
        load_snapshot(path)
    assert str(path) in err.value.field and "row 3" in err.value.message and why in err.value.message


def test_offer_is_frozen():
    offer = load_snapshot().offers[0]
    assert isinstance(offer, Offer)
    with pytest.raises(AttributeError):
        offer.usd_per_hour = 0.0


# ------------------------------------------------------------------------------------------
# Kinds, forms, GPU-only rows, Local Zones: what the estimate makes of the tables


@pytest.mark.parametrize("region,zone,want", [
    ("us-east-1", "use1-az1", ("us-east-1", None)),
    ("us-east-1", "use1-bos1-az1", ("us-east-1", "use1-bos1-az1")),           # Local Zone ID
    ("us-east-1", "us-east-1-bos-1a", ("us-east-1", "us-east-1-bos-1a")),     # Local Zone name
    ("us-west-2-lax-1a", "", ("us-west-2", "us-west-2-lax-1a")),              # a Region column naming one
    ("us-east-1", "us-east-1-wl1-bos-wlz-1", ("us-east-1", "us-east-1-wl1-bos-wlz-1")),  # Wavelength
    ("us-central1", "us-central1-a", ("us-central1", None)),
])
def test_local_zones_are_told_apart(region, zone, want):
    from harness.cost.prices.rules import local_zone

    assert local_zone(region, zone) == want


def test_every_fetched_table_is_used_and_stands_for_its_provider(server, tmp_path):
    # a skypilot-azure table fetched once (`prices update --source skypilot-azure`) is used by every
    # later load of the default sources, and the snapshot's stale azure rows no longer stand beside it
    azure_csv = ("InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region\n"
                 "Standard_NC24ads_A100_v4,A100-80GB,1.0,24.0,220.0,,3.673,0.444433,eastus\n"
                 "Standard_NC40ads_H100_v5,H100,1.0,40.0,320.0,,6.98,6.98,eastus\n")
    url = server.add("/azure/vms.csv", azure_csv)
    update(["skypilot-azure"], cache_dir=tmp_path, urls={"skypilot-azure": url}, now=NOW)
    result = load_prices(cache_dir=tmp_path, offline=True, now=NOW + timedelta(hours=1))
    names = [t.name for t in result.tables]
    assert names == [*prices.DEFAULT_SOURCES, "skypilot-azure"]
    azure_offers = [o for o in result.offers if o.provider == "azure"]
    assert {(o.instance, o.spot, o.provenance) for o in azure_offers} == {
        ("Standard_NC24ads_A100_v4", False, "cache"), ("Standard_NC24ads_A100_v4", True, "cache"),
        ("Standard_NC40ads_H100_v5", False, "cache")}  # its spot = on-demand: rejected, counted
    table = dict(result.tables[-1])
    assert table["provenance"] == "cache" and dict(table["rejected_reasons"]) == {
        "spot price equals on-demand (a filled-in value)": 1}
    retail = next(w for w in result.warnings if w.startswith("azure-retail"))
    assert "azure prices come from skypilot-azure" in retail
    assert {o.provider for o in result.offers} == {"aws", "gcp", "lambda", "azure"}


def test_a_stale_cache_warning_names_the_url_expected(server, tmp_path):
    old = server.add("/old/vms.csv", LAMBDA_CSV)
    update(["skypilot-lambda"], cache_dir=tmp_path, urls={"skypilot-lambda": old}, now=NOW)
    expected = prices.SOURCES["skypilot-lambda"].url
    result = load_prices(["skypilot-lambda"], cache_dir=tmp_path, offline=True, now=NOW)
    (warning,) = result.warnings
    assert f"the cache is of {old}, not of the URL expected, {expected}" in warning


@pytest.fixture(scope="module")
def record():
    from harness.config import build_spec
    from harness.measure.run import measure
    from tests.conftest import tiny_raw

    raw = tiny_raw("gpt2")
    raw["measure"] = {"warmup_steps": 0, "steps": 1}
    return measure(build_spec(raw)).evolve(achieved_flops_per_s=1e9)


@pytest.fixture
def fetched(server, tmp_path):
    """All four default sources fetched from the loopback server, in their real formats."""
    page1, page2 = azure_pages(server.base)
    urls = {"skypilot-aws": server.add("/aws/vms.csv", AWS_CSV), "skypilot-gcp": server.add("/gcp/vms.csv", GCP_CSV),
            "skypilot-lambda": server.add("/lambda/vms.csv", LAMBDA_CSV),
            "azure-retail": server.add("/azure?page=1", page1)}
    server.add("/azure?page=2", page2)
    result = load_prices(cache_dir=tmp_path, urls=urls, now=NOW)
    assert {t.provenance for t in result.tables} == {"fetched"}
    return result.offers


def _estimate(record, offers, **options):
    from harness.cost.estimate import EstimateOptions, estimate
    from harness.cost.plans import build_corpus, build_plan

    return estimate(record, build_plan({"phases": [{"epochs": 1}]}), build_corpus({"tokens": 1e9}),
                    EstimateOptions.build(dtype="bf16", use_published=False, **options), offers=offers)


def test_the_estimate_splits_kinds_and_prices_one_form(record, fetched):
    e = _estimate(record, fetched, gpu="H100 SXM", devices=2)
    dh = e.device_hours
    # on demand, SXM only: Lambda gpu_1x_h100_sxm5 4.29, GCP a3-highgpu-8g (33.60609 + 9.46006) / 8,
    # AWS p5.48xlarge 55.04 / 8, Azure ND96isr_H100_v5 98.32 / 8; Lambda's PCIe and Azure's NVL left out
    assert [(o.provider, o.instance) for o in e.on_demand.offers] == [
        ("lambda", "gpu_1x_h100_sxm5"), ("gcp", "a3-highgpu-8g"), ("aws", "p5.48xlarge"),
        ("azure", "Standard_ND96isr_H100_v5")]
    assert e.cost_usd_min == e.on_demand.cost_usd_min == pytest.approx(dh * 4.29)
    assert e.cost_usd_max == e.on_demand.cost_usd_max == pytest.approx(dh * 98.32 / 8)
    assert e.fully_loaded["cost_usd_min"] == pytest.approx(20 * dh * 4.29)
    assert any("2 H100 offer(s) of other forms left out (NVL 1, PCIe 1)" in n for n in e.notes)
    # spot beside it, never in it: AWS 17.6289 / 8 (the zone whose spot equals on-demand was dropped), GCP
    assert [o.instance for o in e.spot.offers] == ["p5.48xlarge", "a3-highgpu-8g"]
    assert e.spot.cost_usd_min == pytest.approx(dh * 17.6289 / 8)
    assert e.spot.cost_usd_max == pytest.approx(dh * (22.8008 + 2.75246) / 8)
    assert all(o.spot for o in e.spot.offers) and not any(o.spot for o in e.on_demand.offers)
    # 2 devices: one 8-GPU instance is rented whole for the wall hours; a 1-GPU instance twice
    p5 = next(o for o in e.on_demand.offers if o.instance == "p5.48xlarge")
    assert (p5.instances, p5.cost_usd) == (1, pytest.approx(dh * 6.88))
    assert p5.whole_instance_cost_usd == pytest.approx(55.04 * e.wall_hours) == pytest.approx(55.04 * dh / 2)
    assert "pro rata: 2 of the 8 GPUs of 1 whole instance(s)" in p5.labels
    lam = e.on_demand.offers[0]
    assert (lam.instances, lam.whole_instance_cost_usd, lam.form) == (2, pytest.approx(lam.cost_usd), "SXM")
    gcp = e.on_demand.offers[1]
    assert gcp.host_usd_per_hour == 9.46006 and "GPUs 33.60609 + host VM 9.46006 $/h" in gcp.labels
    d = e.to_dict()
    assert d["on_demand"]["cost_usd_min"] == d["cost_usd_min"] and d["spot"]["kind"] == "spot"
    assert len(d["offers"]) == len(d["on_demand"]["offers"]) + len(d["spot"]["offers"]) == 6


def test_the_pcie_projection_prices_pcie_offers_only(record, fetched):
    e = _estimate(record, fetched, gpu="H100 PCIe")
    assert [(o.instance, o.form) for o in e.offers] == [("gpu_1x_h100_pcie", "PCIe")]
    assert e.cost_usd_min == e.cost_usd_max == pytest.approx(e.device_hours * 3.29)
    assert any("7 H100 offer(s) of other forms left out (NVL 1, SXM 6)" in n for n in e.notes)


def test_gpu_only_rows_are_listed_apart(record, fetched):
    e = _estimate(record, fetched, gpu="L4")  # GCP's L4 row has no g2 host VM row in its zone
    assert e.offers == [] and e.cost_usd_min is None and e.cost_usd_max is None
    assert [(o.gpu_only, o.spot, o.usd_per_gpu_hour) for o in e.gpu_only] == [(True, True, 0.2231), (True, False, 0.56004)]
    assert e.gpu_only[1].cost_usd == pytest.approx(e.device_hours * 0.56004)
    assert any("2 GPU-only offer(s)" in n and "in no cost range" in n for n in e.notes)


def test_a_local_zone_minimum_is_labelled_and_said(record, fetched):
    e = _estimate(record, fetched, gpu="A10G")
    low = e.on_demand.offers[0]
    assert (low.local_zone, low.usd_per_hour, low.labels) == ("use1-bos1-az1", 0.95, ("Local Zone use1-bos1-az1",))
    assert e.cost_usd_min == pytest.approx(e.device_hours * 0.95)
    assert e.cost_usd_max == pytest.approx(e.device_hours * 1.006)
    assert any("lowest on-demand price is from AWS Local Zone use1-bos1-az1 (g5.xlarge)" in n for n in e.notes)
    assert any("lowest spot price is from AWS Local Zone use1-bos1-az1" in n for n in e.notes)
