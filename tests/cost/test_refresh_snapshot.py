"""scripts/refresh_snapshot.py against a real HTTP server on loopback standing for api.github.com and
raw.githubusercontent.com: a commits API answer per catalog file, and the files in the real v8 (aws,
gcp, lambda) and v6 (azure) formats, holding rows of the commits the committed snapshot was read from
(harness/data/prices/README.md)."""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.cost.prices import SNAPSHOT_COLUMNS, SNAPSHOT_PATH, client, load_snapshot
from harness.cost.prices.refresh import SELECTION, diff, read_rows
from tests.cost.test_prices import aws_gpu_info  # the catalog's GpuInfo cell, as the price tests build it

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "refresh_snapshot.py"
_spec = importlib.util.spec_from_file_location("refresh_snapshot", SCRIPT)
refresh_snapshot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(refresh_snapshot)

REPO = "skypilot-org/skypilot-catalog"
# The commits the committed snapshot's rows are pinned to (its README's table).
SHA = {"aws": "e385a0d348eda9cefd9806423e7725944dc249e4", "gcp": "8427bbff988abdd050a9f51addd314ef31cb4e85",
       "azure": "098741e70562f65d7af1cceb81e33b284f742604", "lambda": "0f4070387edc953d7004cff197940e1918a1d6aa"}
PATH = {"aws": "catalogs/v8/aws/vms.csv", "gcp": "catalogs/v8/gcp/vms.csv", "azure": "catalogs/v6/azure/vms.csv",
        "lambda": "catalogs/v8/lambda/vms.csv"}
# Committer dates as the API gives them; the gcp one is in UTC-8 and is the next day in UTC.
COMMITTED = {"aws": "2026-11-30T23:59:59Z", "gcp": "2026-11-28T20:00:00-08:00", "azure": "2024-06-03T10:11:12Z",
             "lambda": "2026-11-20T00:00:01+00:00"}
AS_OF = {"aws": "2026-11-30", "gcp": "2026-11-29", "azure": "2024-06-03", "lambda": "2026-11-20"}


H100x8, T4x1, A10Gx1 = aws_gpu_info("H100", 8, 81920), aws_gpu_info("T4", 1, 15360), aws_gpu_info("A10G", 1, 22888)
L4x1, L40Sx4, V100x8 = aws_gpu_info("L4", 1, 22888), aws_gpu_info("L40S", 4, 45776), aws_gpu_info("V100", 8, 32768)

# aws vms.csv e385a0d3, us-east-1: on-demand prices and the zone spot prices the README lists (g4dn, g5,
# g6, g6e); p5.48xlarge's use1-az1 and -az4 list spot = on-demand (55.04), and its lowest real spot is
# 14.246 (the zone it is in is not recorded; use1-az2 stands for it). Not from the file: a Local Zone row
# (cheaper than the region, so that taking it would show) and a 700.0 placeholder for p3dn.24xlarge.
AWS_CSV = f"""InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone,Arch
m5.large,,,2.0,8.0,,0.096,0.040000,us-east-1,use1-az1,x86_64
p5.48xlarge,H100,8.0,192.0,2048.0,{H100x8},55.04,55.04,us-east-1,use1-az1,x86_64
p5.48xlarge,H100,8.0,192.0,2048.0,{H100x8},55.04,14.246,us-east-1,use1-az2,x86_64
p5.48xlarge,H100,8.0,192.0,2048.0,{H100x8},55.04,55.04,us-east-1,use1-az4,x86_64
g4dn.xlarge,T4,1.0,4.0,16.0,{T4x1},0.526,0.2190,us-east-1,use1-az1,x86_64
g4dn.xlarge,T4,1.0,4.0,16.0,{T4x1},0.526,0.2132,us-east-1,use1-az2,x86_64
g4dn.xlarge,T4,1.0,4.0,16.0,{T4x1},0.526,0.2131,us-east-1,use1-az4,x86_64
g4dn.xlarge,T4,1.0,4.0,16.0,{T4x1},0.526,0.2069,us-east-1,use1-az5,x86_64
g4dn.xlarge,T4,1.0,4.0,16.0,{T4x1},0.526,0.2118,us-east-1,use1-az6,x86_64
g5.xlarge,A10G,1.0,4.0,16.0,{A10Gx1},1.006,0.5070,us-east-1,use1-az1,x86_64
g5.xlarge,A10G,1.0,4.0,16.0,{A10Gx1},1.006,0.4591,us-east-1,use1-az2,x86_64
g5.xlarge,A10G,1.0,4.0,16.0,{A10Gx1},1.006,0.4886,us-east-1,use1-az4,x86_64
g5.xlarge,A10G,1.0,4.0,16.0,{A10Gx1},1.006,0.4670,us-east-1,use1-az5,x86_64
g5.xlarge,A10G,1.0,4.0,16.0,{A10Gx1},1.006,0.4905,us-east-1,use1-az6,x86_64
g5.xlarge,A10G,1.0,4.0,16.0,{A10Gx1},0.95,0.3000,us-east-1,use1-bos1-az1,x86_64
g6.xlarge,L4,1.0,4.0,16.0,{L4x1},0.8048,0.4386,us-east-1,use1-az1,x86_64
g6.xlarge,L4,1.0,4.0,16.0,{L4x1},0.8048,0.4102,us-east-1,use1-az2,x86_64
g6.xlarge,L4,1.0,4.0,16.0,{L4x1},0.8048,0.4007,us-east-1,use1-az4,x86_64
g6.xlarge,L4,1.0,4.0,16.0,{L4x1},0.8048,0.4064,us-east-1,use1-az6,x86_64
g6e.12xlarge,L40S,4.0,48.0,384.0,{L40Sx4},10.49264,3.2906,us-east-1,use1-az1,x86_64
g6e.12xlarge,L40S,4.0,48.0,384.0,{L40Sx4},10.49264,6.5969,us-east-1,use1-az2,x86_64
g6e.12xlarge,L40S,4.0,48.0,384.0,{L40Sx4},10.49264,4.4468,us-east-1,use1-az4,x86_64
g6e.12xlarge,L40S,4.0,48.0,384.0,{L40Sx4},10.49264,4.4182,us-east-1,use1-az6,x86_64
p3dn.24xlarge,V100,8.0,96.0,768.0,{V100x8},700.0,700.0,us-east-1,use1-az1,x86_64
"""


def gcp_gpu(gpu: str, count: int, mib: int, zone: str, price: str, spot: str, region: str = "us-central1") -> str:
    return f",,,{gpu},{count},{{'Gpus': [{{'MemoryInfo': {{'SizeInMiB': {mib}}}}}]}},{region},{zone},{price},{spot}"


# gcp vms.csv 8427bbff, us-central1: each GPU row and the VM row it pairs with in its zone (README),
# spot GPU parts = the snapshot's spot total less its host part. a4-highgpu-8g is listed at 0.0 (B200
# stays GPU-only); A100-80GB x8 spot (15.712) and asia-south1 H200 x8 spot are above on-demand.
# a2-ultragpu-8g's spot price is left empty here (the GPU spot row is rejected whatever it is).
GCP_CSV = "\n".join([
    "InstanceType,vCPUs,MemoryGiB,AcceleratorName,AcceleratorCount,GpuInfo,Region,AvailabilityZone,Price,SpotPrice",
    "a2-highgpu-8g,96.0,680.0,,,,us-central1,us-central1-a,5.91582,2.958",
    "a2-ultragpu-8g,96.0,1360.0,,,,us-central1,us-central1-a,8.79698,",
    "a3-highgpu-1g,26.0,234.0,,,,us-central1,us-central1-a,1.18251,0.34406",
    "a3-highgpu-8g,208.0,1872.0,,,,us-central1,us-central1-a,9.46006,2.75246",
    "a3-ultragpu-8g,224.0,2952.0,,,,us-central1,us-central1-b,12.266,3.56978",
    "a3-ultragpu-8g,224.0,2952.0,,,,asia-south1,asia-south1-b,12.75664,2.78253",
    "a4-highgpu-8g,224.0,3968.0,,,,us-central1,us-central1-b,0.0,0.0",
    "g2-standard-4,4.0,16.0,,,,us-central1,us-central1-a,0.14679,0.05874",
    "n2-standard-2,2.0,8.0,,,,us-central1,us-central1-a,0.097118,0.02799",
    gcp_gpu("A100", 8, 40960, "us-central1-a", "23.47126", "11.4728"),
    gcp_gpu("A100-80GB", 8, 81920, "us-central1-a", "14.76958", "15.712"),
    gcp_gpu("B200", 8, 184320, "us-central1-b", "90.216", "32.6064"),
    gcp_gpu("H100", 1, 81920, "us-central1-a", "4.20076", "2.8501"),
    gcp_gpu("H100", 8, 81920, "us-central1-a", "33.60609", "22.8008"),
    gcp_gpu("H100", 1, 81920, "europe-west4-a", "12.73552", "5.0", region="europe-west4"),
    gcp_gpu("H200", 8, 144384, "us-central1-b", "74.49392", "37.2472"),
    gcp_gpu("H200", 8, 144384, "asia-south1-b", "36.60258", "37.4976", region="asia-south1"),
    gcp_gpu("L4", 1, 24576, "us-central1-a", "0.56004", "0.2231"),
    gcp_gpu("T4", 1, 16384, "us-central1-a", "0.35", "0.175"),
    gcp_gpu("V100", 1, 16384, "us-central1-a", "2.48", "1.1458"),
    gcp_gpu("V100", 1, 16384, "us-central1-b", "2.48", "1.1458"),
    ",,,tpu-v6e-4,1,tpu-v6e-4,us-central2,us-central2-b,700.0,700.0",
]) + "\n"

# azure vms.csv (schema v6) 098741e7, copied line for line: the eastus rows of every size the snapshot
# keeps, a few other regions, the H100 sizes whose spot equals on-demand, ND96isr_H100_v5 listed with
# 12 GPUs, and an A10 v4 size with no accelerator and no price.
AZURE_CSV = """InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,Generation
Basic_A0,,,1.0,0.75,,0.018,0.0126,eastus,V1
Standard_NC16ads_A10_v4,,,16.0,200,,,,eastus,"V1,V2"
Standard_NC24ads_A100_v4,A100-80GB,1,24.0,220,A100-80GB,3.673,0.444433,eastus,V2
Standard_NC24ads_A100_v4,A100-80GB,1,24.0,220,A100-80GB,3.673,0.40403,westus3,V2
Standard_NC24s_v3,V100,4,24.0,448,V100,12.24,1.5912,eastus,"V1,V2"
Standard_NC40ads_H100_v5,H100,1,40.0,320,H100,6.98,6.98,eastus,V2
Standard_NC4as_T4_v3,T4,1,4.0,28,T4,0.526,0.062699,eastus,"V1,V2"
Standard_NC4as_T4_v3,T4,1,4.0,28,T4,0.526,0.05786,eastus2,"V1,V2"
Standard_NC6s_v3,V100,1,6.0,112,V100,3.06,0.3978,eastus,"V1,V2"
Standard_NC6s_v3,V100,1,6.0,112,V100,3.06,0.35343,westus2,"V1,V2"
Standard_ND40rs_v2,V100-32GB,8,40.0,672,V100-32GB,22.032,2.42352,eastus,V2
Standard_ND96amsr_A100_v4,A100-80GB,8,96.0,1800,A100-80GB,32.77,3.6047,eastus,V2
Standard_ND96asr_v4,A100,8,96.0,900,A100,27.197,2.99167,eastus,V2
Standard_ND96isr_H100_v5,H100,12,96.0,1900,H100,98.32,98.32,eastus,V2
Standard_NV36ads_A10_v5,A10,1,36.0,440,A10,3.2,0.8,eastus,"V1,V2"
"""


def lambda_gpu_info(name: str, count: int, mib: int) -> str:
    return ('"{\'Gpus\': [{\'Name\': \'%s\', \'Manufacturer\': \'NVIDIA\', \'Count\': %.1f, '
            "'MemoryInfo': {'SizeInMiB': %d}}], 'TotalGpuMemoryInMiB': %d}\"" % (name, count, mib, mib))


# lambda vms.csv 0f407038 (schema v8): the rows of four of the ten instances the snapshot keeps.
LAMBDA_CSV = f"""InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,Region,GpuInfo,SpotPrice
cpu_4x_general,,,4.0,16.0,0.2,us-east-1,,
gpu_8x_v100_n,V100,8.0,88.0,448.0,6.32,us-east-1,{lambda_gpu_info("V100", 8, 16384)},
gpu_8x_v100,V100,8.0,92.0,448.0,6.32,us-east-1,{lambda_gpu_info("V100", 8, 16384)},
gpu_8x_v100,V100,8.0,92.0,448.0,6.32,us-west-1,{lambda_gpu_info("V100", 8, 16384)},
gpu_1x_h100_sxm5,H100,1.0,26.0,225.0,4.29,us-east-1,{lambda_gpu_info("H100", 1, 81920)},
gpu_1x_h100_pcie,H100,1.0,26.0,200.0,3.29,us-east-1,{lambda_gpu_info("H100", 1, 81920)},
gpu_8x_a100_80gb_sxm4,A100-80GB,8.0,240.0,1800.0,22.32,us-east-1,{lambda_gpu_info("A100-80GB", 8, 81920)},
"""

CSV = {"aws": AWS_CSV, "gcp": GCP_CSV, "azure": AZURE_CSV, "lambda": LAMBDA_CSV}
# The selected offers those copies do not hold (p3dn.24xlarge only as a placeholder).
NOT_SERVED = {
    "aws": {"p5.4xlarge", "p5en.48xlarge", "p6-b200.48xlarge", "p4d.24xlarge", "p4de.24xlarge", "p3.16xlarge",
            "p3dn.24xlarge"},
    "gcp": set(), "azure": set(),
    "lambda": {"gpu_8x_h100_sxm5", "gpu_1x_a100", "gpu_1x_a10", "gpu_1x_b200_sxm6", "gpu_8x_b200_sxm6", "gpu_1x_gh200"},
}


def commits_json(provider: str) -> list[dict]:
    """The GitHub commits API answer (per_page=1), trimmed to the fields GitHub sends that matter."""
    sha = SHA[provider]
    return [{"sha": sha, "node_id": "C_kwDOx", "url": f"https://api.github.com/repos/{REPO}/commits/{sha}",
             "commit": {"author": {"name": "github-actions[bot]", "date": "2020-01-01T00:00:00Z"},
                        "committer": {"name": "GitHub", "email": "noreply@github.com",
                                      "date": COMMITTED[provider]},
                        "message": "[Bot] Update catalogs"}}]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        routes = self.server.routes
        self.server.hits[self.path] += 1
        if self.path not in routes:
            self.send_error(404)
            return
        status, body, kind = routes[self.path]
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Catalog:
    """What the loopback server serves: per provider, the commits answer and the file at the sha."""

    def __init__(self, base: str, routes: dict, hits: collections.Counter):
        self.base, self.routes, self.hits = base, routes, hits

    def serve(self, provider: str, csv_text: str | None = None, commits: object = None, status: int = 200) -> None:
        api = f"/repos/{REPO}/commits?path={PATH[provider]}&per_page=1"
        body = json.dumps(commits_json(provider) if commits is None else commits).encode()
        self.routes[api] = (200, body, "application/json; charset=utf-8")
        self.routes[f"/{REPO}/{SHA[provider]}/{PATH[provider]}"] = (
            status, (CSV[provider] if csv_text is None else csv_text).encode(), "text/plain; charset=utf-8")


@pytest.fixture
def catalog():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.routes, httpd.hits = {}, collections.Counter()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield Catalog(f"http://127.0.0.1:{httpd.server_address[1]}", httpd.routes, httpd.hits)
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(client, "_RETRY_BACKOFF_S", (0.0, 0.0))


@pytest.fixture
def snapshot(tmp_path) -> Path:
    """A copy of the committed snapshot to refresh (the committed one is never written)."""
    path = tmp_path / "snapshot.csv"
    shutil.copyfile(SNAPSHOT_PATH, path)
    return path


def run(catalog, snapshot, *args, providers="aws,gcp,azure,lambda"):
    return refresh_snapshot.main(["--base-url", catalog.base, "--snapshot", str(snapshot), "--providers", providers,
                                  *args])


def rows_by_key(path):
    return {(r.provider, r.instance, r.region, r.spot): r for r in read_rows(path)}


# ------------------------------------------------------------------------------------------


def test_rows_by_hand_with_the_commit_dates(catalog, snapshot, capsys):
    for provider in CSV:
        catalog.serve(provider)
    assert run(catalog, snapshot) == 0
    rows = rows_by_key(snapshot)

    def price(provider, instance, region, spot):
        row = rows[(provider, instance, region, "true" if spot else "false")]
        return float(row.usd_per_hour), (float(row.host_usd_per_hour) if row.host_usd_per_hour else None)

    # AWS: spot = the lowest zone price; zones with spot = on-demand left out; the Local Zone left out.
    assert price("aws", "p5.48xlarge", "us-east-1", False) == (55.04, None)
    assert price("aws", "p5.48xlarge", "us-east-1", True) == (14.246, None)
    assert price("aws", "g4dn.xlarge", "us-east-1", True) == (min(0.2190, 0.2132, 0.2131, 0.2069, 0.2118), None)
    assert price("aws", "g5.xlarge", "us-east-1", False) == (1.006, None)  # not the Local Zone's 0.95
    assert price("aws", "g5.xlarge", "us-east-1", True) == (0.4591, None)  # not the Local Zone's 0.30
    assert rows[("aws", "g6e.12xlarge", "us-east-1", "true")].gpus_per_instance == "4"
    assert not any(k[1] == "p3dn.24xlarge" for k in rows)  # only a 700.0 placeholder was served
    # GCP: GPU row + the VM row of its zone; the VM's part kept apart.
    assert price("gcp", "a2-highgpu-8g", "us-central1", False) == (pytest.approx(23.47126 + 5.91582), 5.91582)
    assert price("gcp", "a2-highgpu-8g", "us-central1", True) == (pytest.approx(11.4728 + 2.958), 2.958)
    assert price("gcp", "a3-highgpu-1g", "us-central1", True) == (pytest.approx(2.8501 + 0.34406), 0.34406)
    assert price("gcp", "g2-standard-4", "us-central1", False) == (pytest.approx(0.56004 + 0.14679), 0.14679)
    assert ("gcp", "a2-ultragpu-8g", "us-central1", "true") not in rows  # GPU spot 15.712 > on-demand 14.76958
    b200 = "B200 x8 (GPU only; host VM extra)"  # a4-highgpu-8g is listed at 0.0
    assert price("gcp", b200, "us-central1", False) == (90.216, None)
    assert not any(k[0] == "gcp" and k[2] != "us-central1" for k in rows)
    # Azure: spot = on-demand is no spot; the 12-GPU listing of ND96isr_H100_v5 corrected to 8.
    assert ("azure", "Standard_NC40ads_H100_v5", "eastus", "true") not in rows
    assert ("azure", "Standard_ND96isr_H100_v5", "eastus", "true") not in rows
    nd = rows[("azure", "Standard_ND96isr_H100_v5", "eastus", "false")]
    assert (nd.gpu, nd.gpus_per_instance, nd.usd_per_hour) == ("H100", "8", "98.32")
    assert price("azure", "Standard_NC6s_v3", "eastus", True) == (0.3978, None)  # eastus, not westus2's 0.35343
    assert price("lambda", "gpu_8x_v100", "us-east-1", False) == (6.32, None)
    # Every row carries its file's commit date (UTC) and the raw file at that commit.
    for row in rows.values():
        assert row.as_of == AS_OF[row.provider], row
        assert row.source_url == f"https://raw.githubusercontent.com/{REPO}/{SHA[row.provider]}/{PATH[row.provider]}"
    out = capsys.readouterr().out
    assert f"gcp: catalogs/v8/gcp/vms.csv at {SHA['gcp']} (2026-11-29): 17 rows" in out
    assert "corrected: Standard_ND96isr_H100_v5: the file says 12 x H100" in out
    assert "not in the file: lambda gpu_1x_gh200 in us-east-1" in out


def test_the_served_copies_reproduce_the_committed_snapshot(catalog, snapshot):
    """On copies of the committed snapshot's own commits, every row produced equals the committed row
    of the same instance, region and kind in every column but as_of (the commit date now); the rows
    not produced are exactly the selected offers the copies do not hold."""
    for provider in CSV:
        catalog.serve(provider)
    committed = rows_by_key(SNAPSHOT_PATH)
    assert run(catalog, snapshot) == 0
    produced = rows_by_key(snapshot)
    assert len(produced) >= 40
    for key, row in produced.items():
        assert key in committed, key
        assert row == dataclasses.replace(committed[key], as_of=AS_OF[row.provider]), key
    not_produced = {(k[0], k[1]) for k in set(committed) - set(produced)}
    assert not_produced == {(p, i) for p, names in NOT_SERVED.items() for i in names}
    change = diff(read_rows(SNAPSHOT_PATH), read_rows(snapshot))
    assert not change.added and len(change.removed) == len(committed) - len(produced)
    assert {tuple(n for n in SNAPSHOT_COLUMNS if getattr(old, n) != getattr(new, n)) for old, new in change.changed} \
        == {("as_of",)}
    table = load_snapshot(snapshot)
    assert table.rejected == 0 and len(table.offers) == len(produced)


def test_dry_run_prints_the_diff_and_writes_nothing(catalog, snapshot, capsys):
    changed = CSV["azure"].replace("Standard_NC6s_v3,V100,1,6.0,112,V100,3.06,0.3978,eastus",
                                   "Standard_NC6s_v3,V100,1,6.0,112,V100,2.95,0.3978,eastus")
    changed += "Standard_NC12s_v3,V100,2,12.0,224,V100,6.12,0.7956,eastus,\"V1,V2\"\n"  # not selected
    catalog.serve("azure", changed.replace("Standard_NV36ads_A10_v5,A10,1,36.0,440,A10,3.2,0.8,eastus,\"V1,V2\"\n", ""))
    before = snapshot.read_bytes()
    assert run(catalog, snapshot, "--dry-run", providers="azure") == 0
    assert snapshot.read_bytes() == before
    out = capsys.readouterr().out
    # 16 azure rows re-dated, one of them re-priced; the 50 rows of the other providers as they were.
    assert ("rows: 0 added, 2 removed, 16 changed (1 in price or GPUs, 15 only in as_of or source_url), "
            "50 unchanged") in out
    assert "- azure Standard_NV36ads_A10_v5 eastus on-demand: 3.2 $/h" in out
    assert ("~ azure Standard_NC6s_v3 eastus on-demand: usd_per_hour 3.06 -> 2.95; as_of 2026-11-24 -> 2024-06-03"
            in out)
    assert out.count("\n~ ") == 1  # rows only re-dated are counted, not listed
    assert "dry run:" in out and "not written" in out


def test_providers_not_named_keep_their_rows(catalog, snapshot):
    catalog.serve("lambda")
    before = rows_by_key(SNAPSHOT_PATH)
    assert run(catalog, snapshot, providers="lambda") == 0
    after = rows_by_key(snapshot)
    assert {k: r for k, r in after.items() if k[0] != "lambda"} == {k: r for k, r in before.items() if k[0] != "lambda"}
    assert {k[1] for k in after if k[0] == "lambda"} == set(SELECTION["lambda"].instances) - NOT_SERVED["lambda"]
    assert [r.provider for r in read_rows(snapshot)][-1] == "lambda"  # provider order kept


@pytest.mark.parametrize("case, expect", [
    ("404", "skypilot-gcp: HTTP 404 from"),
    ("no commits", "lists no commit of catalogs/v8/gcp/vms.csv"),
    ("bad sha", "has no 40-hex commit sha"),
    ("no date", "has no ISO commit.committer.date"),
    ("commit not an object", "has no ISO commit.committer.date"),
    ("truncated", "is truncated (no final newline)"),
    ("nothing selected", "none of the selected offers is in"),
])
def test_a_failed_fetch_writes_nothing(catalog, snapshot, capsys, case, expect):
    catalog.serve("aws")
    if case == "404":
        catalog.serve("gcp", status=404)
    elif case == "no commits":
        catalog.serve("gcp", commits=[])
    elif case == "bad sha":
        catalog.serve("gcp", commits=[{**commits_json("gcp")[0], "sha": "8427bbff"}])
    elif case == "no date":
        catalog.serve("gcp", commits=[{**commits_json("gcp")[0], "commit": {"committer": {"date": "2026-11-28"}}}])
    elif case == "commit not an object":
        catalog.serve("gcp", commits=[{"sha": SHA["gcp"], "commit": "2026-11-28"}])
    elif case == "truncated":
        catalog.serve("gcp", GCP_CSV[:-1])
    else:
        catalog.serve("gcp", GCP_CSV.split("\n", 1)[0] + "\n" + "n2-standard-2,2.0,8.0,,,,us-central1,us-central1-a,"
                      "0.097118,0.02799\n" + gcp_gpu("H100", 1, 81920, "europe-west4-a", "12.73552", "5.0",
                                                     region="europe-west4") + "\n")
    before = snapshot.read_bytes()
    assert run(catalog, snapshot, providers="aws,gcp") == 2
    assert catalog.hits[f"/{REPO}/{SHA['aws']}/{PATH['aws']}"] == 1  # aws was read, and still nothing is written
    assert snapshot.read_bytes() == before
    assert [p.name for p in snapshot.parent.iterdir()] == ["snapshot.csv"]  # no temporary file left
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0], err


def test_bad_input_is_one_line_and_exit_2(snapshot, capsys):
    before = snapshot.read_bytes()
    cases = [(["--base-url", "http://example.com"], "prices.url: 'http://example.com' is not allowed"),
             (["--providers", "aws,oracle"], "--providers: 'aws,oracle': give a comma-separated list of"),
             (["--timeout-s", "0"], "--timeout-s: must be > 0")]
    for args, expect in cases:
        assert refresh_snapshot.main(["--snapshot", str(snapshot), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expect in err[0], (args, err)
    assert snapshot.read_bytes() == before


def test_the_script_as_a_process(snapshot):
    """Run as the README says: no traceback, one line, exit 2, for a non-loopback http host."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(SCRIPT), "--snapshot", str(snapshot), "--base-url",
                           "http://192.0.2.1"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "is not allowed: use https" in done.stderr
