"""`harness estimate`, `harness prices` end to end: real runs, real subprocesses, a loopback server."""

import json

import pytest

from tests.conftest import tiny_raw
from tests.cli.test_cli import _bad, harness, write_config
from tests.cost.test_prices import AWS_CSV, server  # noqa: F401  (fixture)

ESTIMATE_KEYS = {"tokens_total", "flops_total", "device_hours", "wall_hours", "utilization",
                 "utilization_source", "offers", "cost_usd_min", "cost_usd_max", "fully_loaded"}
OFFER_KEYS = {"provider", "instance", "region", "gpu", "gpus_per_instance", "usd_per_hour",
              "usd_per_gpu_hour", "spot", "as_of", "source", "cost_usd"}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A results folder holding one real run of a tiny GPT-2 (max_positions 512 fits BERT's recipe)."""
    root = tmp_path_factory.mktemp("est")
    raw = tiny_raw("gpt2")
    raw["model"]["max_positions"] = 512
    raw["measure"] = {"warmup_steps": 0, "steps": 2}
    out = harness("run", str(write_config(root, raw)), "--results-dir", str(root / "results"), "--json", cwd=root)
    assert out.returncode == 0, out.stderr
    return root


def test_estimate_latest_bert_corpus_offline_from_the_snapshot(results):
    out = harness("estimate", "--latest", "--corpus", "bert-wiki-books", "--gpu", "A100", "--dtype", "bf16",
                  "--offline", "--json", "--results-dir", str(results / "results"), cwd=results)
    assert out.returncode == 0, out.stderr
    e = json.loads(out.stdout)
    assert ESTIMATE_KEYS <= set(e) and e["plan"]["name"] == "bert-pretraining"
    assert e["tokens_total"] == 900_000 * 256 * 128 + 100_000 * 256 * 512
    assert e["offers"] and all(OFFER_KEYS <= set(o) for o in e["offers"])
    assert {o["provenance"] for o in e["offers"]} == {"snapshot"}
    assert all(o["gpu"].startswith("A100") for o in e["offers"])
    assert e["cost_usd_min"] <= e["cost_usd_max"]
    assert e["fully_loaded"]["cost_usd_max"] == pytest.approx(20 * e["cost_usd_max"])
    # a CPU run projected to an A100 stands on a published measurement, and says which
    assert e["utilization_source"].startswith("published: ") and "https://github.com/" in e["utilization_source"]
    assert e["price_warnings"]
    assert e["goodput"]["value"] == 1.0 and "steady state only" in e["goodput"]["source"]
    assert {"steady_state", "at_goodput", "at_lab_goodput"} <= set(e["bill"])
    for name in ("device_hours", "wall_hours", "cost_usd", "kwh_pue", "co2e_kg"):
        r = e["ranges"][name]
        assert r["low"] <= r["value"] <= r["high"], name
    # the headline is the on-demand range; spot beside it; GPU-only offers apart
    assert (e["on_demand"]["cost_usd_min"], e["on_demand"]["cost_usd_max"]) == (e["cost_usd_min"], e["cost_usd_max"])
    assert e["on_demand"]["offers"] and not any(o["spot"] for o in e["on_demand"]["offers"])
    assert e["spot"]["offers"] and all(o["spot"] for o in e["spot"]["offers"])
    low_util, high_util = e["utilization_range"]  # the published ± widens the headline range
    assert e["cost_usd_min"] == pytest.approx(min(o["cost_usd"] for o in e["on_demand"]["offers"])
                                              * e["utilization"] / high_util)
    assert e["ranges"]["cost_usd"]["low"] == pytest.approx(e["cost_usd_min"])
    assert all(o["gpu_only"] for o in e["gpu_only"]) and not any(o["gpu_only"] for o in e["offers"])
    assert e["energy"]["kwh_pue"] == pytest.approx(1.58 * e["energy"]["kwh"]) and e["energy"]["co2e_kg"] > 0


def test_a_cpu_run_without_gpu_is_priced_by_projection(results):
    out = harness("estimate", "--latest", "--corpus", "bert-wiki-books", "--offline", "--dtype", "bf16", "--json",
                  "--results-dir", str(results / "results"), cwd=results)
    assert out.returncode == 0, out.stderr
    e = json.loads(out.stdout)
    assert e["hardware_source"] == "measured" and e["offers"] == []
    priced = [p for p in e["projections"] if "skipped" not in p]
    assert {"A100", "H100 SXM", "H100 PCIe", "L4"} <= {p["gpu"] for p in priced}
    v100 = next(p for p in e["projections"] if p["gpu"] == "V100 SXM2")
    assert "bf16" in v100["skipped"]  # no bf16 on a V100: skipped, not guessed
    assert all(p["cost_usd_min"] <= p["cost_usd_max"] and p["as_of"] for p in priced)
    by_gpu = {p["gpu"]: p for p in priced}
    assert by_gpu["H100 SXM"]["utilization_source"].startswith("published: ")
    assert by_gpu["L4"]["utilization_source"].startswith("assumed")  # nothing published for an L4
    assert all(p["ranges"]["device_hours"]["high"] > p["ranges"]["device_hours"]["low"] for p in priced)


def test_estimate_online_uses_a_fetched_table(results, server):  # noqa: F811
    url = server.add("/aws/vms.csv", AWS_CSV)
    common = ["--results-dir", str(results / "results"), "--source", "skypilot-aws"]
    out = harness("prices", "update", "--url", url, *common, cwd=results)
    assert out.returncode == 0, out.stderr
    out = harness("estimate", "--latest", "--corpus", "bert-wiki-books", "--gpu", "H100 SXM", "--dtype", "bf16",
                  "--json", "--url", url, *common, cwd=results)
    assert out.returncode == 0, out.stderr
    e = json.loads(out.stdout)
    (p5,) = [o for o in e["offers"] if not o["spot"]]
    assert p5["instance"] == "p5.48xlarge" and p5["usd_per_gpu_hour"] == 55.04 / 8
    assert p5["provenance"] == "cache" and p5["source"] == url  # fetched by `prices update`, still fresh
    assert p5["cost_usd"] == pytest.approx(e["device_hours"] * 55.04 / 8)
    # the headline range carries the published utilization's ± (time scales as 1 / utilization)
    assert e["cost_usd_max"] == pytest.approx(p5["cost_usd"] * e["utilization"] / e["utilization_range"][0])
    shown = harness("prices", "show", "--gpu", "H100", "--json", "--results-dir", str(results / "results"),
                    cwd=results)
    assert any(o["instance"] == "p5.48xlarge" and o["provenance"] == "cache"
               for o in json.loads(shown.stdout)["offers"])


BAD = [
    (lambda t: ["--corpus", "wikipedia-2031"], "--corpus: unknown corpus"),
    (lambda t: ["--corpus", _bad(t, "neg.yaml", "tokens: -5\n")], "corpus.tokens"),
    (lambda t: ["--corpus", _bad(t, "ratio.yaml", "bytes: 1.0e9\n")], "corpus"),
    (lambda t: ["--corpus", "webtext", "--plan", _bad(t, "p.yaml", "phases:\n  - steps: 10\n")], "plan.phases.0"),
    (lambda t: ["--corpus", "webtext", "--plan", _bad(t, "q.yaml", "description: x\n")], "plan.phases"),
    (lambda t: ["--corpus", "webtext", "--plan", "nope"], "--plan"),
    (lambda t: ["--corpus", "webtext", "--devices", "0"], "--devices"),
    (lambda t: ["--corpus", "webtext", "--gpu", "Z9000"], "--gpu"),
    (lambda t: ["--corpus", "webtext", "--source", "nowhere"], "--source"),
    (lambda t: ["--corpus", "webtext", "--source", "skypilot-aws", "--url", "http://example.com/x.csv"], "--url"),
    (lambda t: ["--corpus", "webtext", "--pue", "0.5"], "--pue"),
    (lambda t: ["--corpus", "webtext", "--carbon-intensity", "-2"], "--carbon-intensity"),
    (lambda t: ["--corpus", "webtext", "--carbon-region", "atlantis"], "--carbon-region"),
    (lambda t: ["--corpus", "webtext", "--goodput", "1.5"], "--goodput"),
]


@pytest.mark.parametrize("args, message", BAD)
def test_bad_estimate_input_is_one_line_exit_2(results, tmp_path, args, message):
    out = harness("estimate", "--latest", "--offline", *args(tmp_path), "--results-dir", str(results / "results"),
                  cwd=tmp_path)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and message in lines[0], out.stderr


def test_estimate_without_runs_says_so(tmp_path):
    out = harness("estimate", "--latest", "--corpus", "webtext", "--results-dir", str(tmp_path / "none"),
                  cwd=tmp_path)
    assert out.returncode == 2 and "no stored runs" in out.stderr
    assert not (tmp_path / "none").exists()  # nothing created


AZURE_CSV = ("InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region\n"
             "Standard_NC24ads_A100_v4,A100-80GB,1.0,24.0,220.0,,3.5,0.4,eastus\n")


def test_a_fetched_skypilot_azure_table_is_used_by_show_and_estimate(results, server, tmp_path):  # noqa: F811
    import shutil

    root = tmp_path / "results"
    shutil.copytree(results / "results", root, ignore=shutil.ignore_patterns("cache"))
    url = server.add("/azure/vms.csv", AZURE_CSV)
    out = harness("prices", "update", "--source", "skypilot-azure", "--url", url, "--results-dir", str(root),
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    shown = json.loads(harness("prices", "show", "--gpu", "A100", "--json", "--results-dir", str(root),
                               cwd=tmp_path).stdout)
    azure = [o for o in shown["offers"] if o["provider"] == "azure"]
    assert [(o["usd_per_hour"], o["provenance"], o["spot"]) for o in azure] == [(0.4, "cache", True),
                                                                                 (3.5, "cache", False)]
    assert "skypilot-azure" in [t["name"] for t in shown["tables"]]
    out = harness("estimate", "--latest", "--corpus", "bert-wiki-books", "--gpu", "A100", "--dtype", "bf16",
                  "--offline", "--json", "--devices", "2", "--results-dir", str(root), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    e = json.loads(out.stdout)
    azure = [o for o in e["offers"] if o["provider"] == "azure"]
    assert [(o["instance"], o["provenance"]) for o in azure] == [("Standard_NC24ads_A100_v4", "cache")] * 2
    nc24 = next(o for o in azure if not o["spot"])
    assert nc24["cost_usd"] == pytest.approx(e["device_hours"] * 3.5)
    assert nc24["whole_instance_cost_usd"] == pytest.approx(2 * 3.5 * e["wall_hours"])  # two 1-GPU instances
    p4d = next(o for o in e["on_demand"]["offers"] if o["instance"] == "p4d.24xlarge")
    assert p4d["instances"] == 1 and p4d["whole_instance_cost_usd"] == pytest.approx(21.957642 * e["wall_hours"])
    assert any(label.startswith("pro rata: 2 of the 8 GPUs") for label in p4d["labels"])
    table = harness("estimate", "--latest", "--corpus", "bert-wiki-books", "--gpu", "A100", "--dtype", "bf16",
                    "--offline", "--devices", "2", "--results-dir", str(root), cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "on-demand offers" in table.stdout and "spot offers" in table.stdout and "whole instances" in table.stdout
    assert "published: " in table.stdout and "the bill: steady state and at goodput 1" in table.stdout
    assert "ranges at goodput 1" in table.stdout and "goodput anchor PaLM 540B: 0.67" in table.stdout
