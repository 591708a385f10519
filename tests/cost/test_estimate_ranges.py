"""Goodput and ranges on every figure, checked by hand (harness.cost.ranges)."""

import pytest

from harness.cost.estimate import EstimateOptions, estimate as _estimate
from harness.cost.evidence import nearest_published
from harness.cost.plans import build_corpus, build_plan
from harness.cost.prices import Offer
from harness.cost.ranges import LAB_GOODPUT, published_scaling_low

CORPUS = build_corpus({"tokens": 1e9})
EPOCH = build_plan({"phases": [{"epochs": 1}]})
A100_PEAK = 312e12


@pytest.fixture(scope="module")
def record():
    from tests.conftest import make_record

    return make_record({"achieved_flops_per_s": 1e9})


def offer(usd_per_gpu_hour):
    return Offer(provider="test", instance=f"a100-{usd_per_gpu_hour}", region="r", gpu="A100", gpus_per_instance=1,
                 usd_per_hour=usd_per_gpu_hour, usd_per_gpu_hour=usd_per_gpu_hour, spot=False, as_of="2026-11-01",
                 source="https://example.test/prices", provenance="snapshot")


def estimate(record, **options):
    return _estimate(record, EPOCH, CORPUS, EstimateOptions.build(gpu="A100", dtype="bf16", **options),
                     offers=[offer(2.0), offer(3.0)])


def test_lab_goodput_range_is_the_published_anchors():
    # PaLM ~31% / 46.2% = 0.67; Llama 3.1 405B 34.6% / 43% .. 34.6% / 38%
    assert LAB_GOODPUT[0] == 0.67 and LAB_GOODPUT[1] == pytest.approx(0.9105, abs=1e-4)


def test_goodput_by_hand_steady_state_and_bill(record):
    e = estimate(record, utilization=0.3, use_published=False, goodput=0.8)
    steady = e.flops_total / (A100_PEAK * 0.3) / 3600
    assert e.device_hours == pytest.approx(steady)  # the estimate's own figures stay steady state
    assert e.goodput["value"] == 0.8 and e.goodput["source"] == "user-given (--goodput)"
    s, b = e.bill["steady_state"], e.bill["at_goodput"]
    assert s["device_hours"] == pytest.approx(steady) and b["device_hours"] == pytest.approx(steady / 0.8)
    assert b["wall_hours"] == pytest.approx(steady / 0.8)
    assert (b["cost_usd_min"], b["cost_usd_max"]) == (pytest.approx(2.0 * steady / 0.8), pytest.approx(3.0 * steady / 0.8))
    assert b["kwh_pue"] == pytest.approx(e.energy["kwh_pue"] / 0.8)  # 400 W x device-hours x PUE 1.58
    assert e.energy["kwh_pue"] == pytest.approx(400 * steady / 1000 * 1.58)
    assert b["co2e_kg"] == pytest.approx(e.energy["co2e_kg"] / 0.8)
    lab = e.bill["at_lab_goodput"]
    assert lab["device_hours"] == pytest.approx(steady / LAB_GOODPUT[1])
    assert lab["device_hours_max"] == pytest.approx(steady / 0.67)
    # user utilization and user goodput are points: the only spread left is the price
    r = e.ranges
    assert r["device_hours"] == {"value": pytest.approx(steady / 0.8), "low": pytest.approx(steady / 0.8),
                                 "high": pytest.approx(steady / 0.8)}
    assert r["cost_usd"]["low"] == pytest.approx(2.0 * steady / 0.8)
    assert r["cost_usd"]["high"] == pytest.approx(3.0 * steady / 0.8)
    assert r["from"] == ["price spread 2.000–3.000 $/GPU-hour (on-demand offers; cost only)"]


def test_default_goodput_is_steady_state_with_the_labs_range_in_the_high_end(record):
    e = estimate(record, utilization=0.3, use_published=False)
    steady = e.flops_total / (A100_PEAK * 0.3) / 3600
    assert e.goodput["value"] == 1.0 and e.goodput["source"].startswith("default 1.0: steady state only")
    r = e.ranges["device_hours"]
    assert (r["value"], r["low"], r["high"]) == (pytest.approx(steady), pytest.approx(steady),
                                                 pytest.approx(steady / 0.67))
    co2 = e.ranges["co2e_kg"]
    assert co2["high"] == pytest.approx(e.energy["co2e_kg"] / 0.67)


def test_utilization_error_widens_every_figure(record):
    e = estimate(record)  # published rung: MFU ± the spread of published rows
    near = nearest_published("A100", "bf16", record.params, record.seq_len)
    u, err = near.value, near.error
    steady = e.flops_total / (A100_PEAK * u) / 3600
    r = e.ranges
    assert r["device_hours"]["low"] == pytest.approx(steady * u / (u + err))
    assert r["device_hours"]["high"] == pytest.approx(steady * u / (u - err) / 0.67)
    assert r["wall_hours"]["high"] == pytest.approx(r["device_hours"]["high"])  # one device
    assert r["kwh_pue"]["low"] == pytest.approx(e.energy["kwh_pue"] * u / (u + err))
    assert r["cost_usd"]["high"] == pytest.approx(3.0 * steady * u / (u - err) / 0.67)
    assert r["from"][0].startswith(f"utilization {u:.3f} ± {err:.3f}")


def test_assumed_ideal_scaling_takes_the_lowest_published_weak_scaling(record):
    # NVIDIA's BERT-large, 1 -> 8 V100s at seq 128: 1305.6 / 8 / 171.52 per device
    eff, why = published_scaling_low()
    assert eff == pytest.approx(1305.6 / 8 / 171.52) and "dle-bertl-8xv100-128" in why
    e = estimate(record, utilization=0.3, use_published=False, goodput=0.8, devices=8)
    dh = e.flops_total / (A100_PEAK * 0.3) / 3600 / 0.8
    r = e.ranges
    assert (r["device_hours"]["low"], r["device_hours"]["high"]) == (pytest.approx(dh), pytest.approx(dh / eff))
    assert r["wall_hours"]["high"] == pytest.approx(dh / eff / 8)
    measured_or_user = estimate(record, utilization=0.3, use_published=False, goodput=0.8, devices=8,
                                scaling_efficiency=0.9)
    assert measured_or_user.ranges["device_hours"]["high"] == pytest.approx(measured_or_user.ranges["device_hours"]["low"])


def test_goodput_out_of_range_names_its_field(record):
    from harness.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        EstimateOptions.build(goodput=1.5)
    assert err.value.field == "estimate.goodput"
