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
    assert e["utilization_source"].startswith("assumed") and e["price_warnings"]
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
    assert all(p["utilization_source"].startswith("assumed") for p in priced)


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
    assert e["cost_usd_max"] == pytest.approx(e["device_hours"] * 55.04 / 8)
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
