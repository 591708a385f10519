"""The bill a lab signs, checked by hand: scaling charged once, utilization at the plan's per-device
batch per phase, projections in the precision labs train in, and the on-premises bill."""

import json
import math

import pytest

from harness.cost.calibrate import CalibrationFit
from harness.cost.estimate import HOURS_PER_YEAR, EstimateOptions, estimate as _estimate
from harness.cost.plans import build_corpus, build_plan
from harness.hardware import datasheet_peak

CORPUS = build_corpus({"tokens": 1e9})
EPOCH = build_plan({"phases": [{"epochs": 1}]})


@pytest.fixture(scope="module")
def record():
    """The committed real run (a cut-down GPT-2, batch 4 x seq 64 on a CPU, fp32) at a round rate."""
    from tests.conftest import make_record

    return make_record({"achieved_flops_per_s": 1e9})


def estimate(record, plan=EPOCH, corpus=CORPUS, *, records=(), calibration=(), **options):
    options.setdefault("use_published", False)  # the hand checks run at the utilization they name
    return _estimate(record, plan, corpus, EstimateOptions.build(**options), records=records,
                     calibration=calibration)


# ---- scaling, once --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def worlds(record):
    """The same config at 1, 2 and 4 devices: 1000, 1800 (0.9 of linear) and 3200 (0.8) tokens/s;
    achieved FLOP/s is for all ranks, so the per-device rates are 1e9, 0.9e9 and 0.8e9."""
    one = record.evolve(run_id="one", tokens_per_s=1000.0)
    two = record.evolve(run_id="two", world_size=2, tokens_per_s=1800.0, achieved_flops_per_s=1.8e9)
    four = record.evolve(run_id="four", world_size=4, tokens_per_s=3200.0, achieved_flops_per_s=3.2e9)
    return one, two, four


def test_a_multi_device_run_at_its_own_size_is_not_charged_its_loss_again(worlds):
    one, two, four = worlds
    e = estimate(two, devices=2, records=worlds)
    flops = e.flops_total
    assert e.scaling_efficiency == 1.0 and "already contains" in e.scaling_efficiency_source
    assert e.device_hours == pytest.approx(flops / 0.9e9 / 3600)  # not / 0.9 once more (x1.11)
    assert e.wall_hours == pytest.approx(e.device_hours / 2)


def test_a_multi_device_run_at_another_size_is_charged_only_the_change(worlds):
    one, two, four = worlds
    e = estimate(two, devices=4, records=worlds)
    assert e.scaling_efficiency == pytest.approx(0.8 / 0.9)
    # = the one-device rate x the efficiency measured at 4: the same as starting from the 1-device run
    assert e.device_hours == pytest.approx(estimate(one, devices=4, records=worlds).device_hours)
    assert e.device_hours == pytest.approx(e.flops_total / (1e9 * 0.8) / 3600)


def test_a_multi_device_run_without_a_one_device_baseline_says_its_loss_is_unknown(worlds):
    _, two, _ = worlds
    e = estimate(two, devices=8, records=[two])
    assert e.scaling_efficiency == 1.0 and e.device_hours == pytest.approx(e.flops_total / 0.9e9 / 3600)
    assert any("own scaling loss is unknown" in n for n in e.notes)


# ---- utilization at the plan's per-device batch, per phase ----------------------------------

def _fit(record, intercept=0.1, per_ln_tokens=0.02):
    """A calibration fit on A100 bf16 whose MFU grows with ln(tokens per device step) only."""
    return CalibrationFit(device="NVIDIA A100-SXM4-80GB", gpu="A100", dtype="bf16", mfu_basis="datasheet", n=6,
                          coef={"intercept": intercept, "ln_hidden": 0.0, "ln_tokens_per_step": per_ln_tokens,
                                "ln_seq_len": 0.0},
                          features_used=["ln_tokens_per_step"],
                          features_dropped={"ln_hidden": "the same in every run", "ln_seq_len": "not in this test"},
                          relations={},
                          rmse=0.01, loo_rmse=0.02,
                          ranges={"hidden": [record.model.hidden, record.model.hidden],
                                  "tokens_per_step": [16.0, 4096.0], "seq_len": [16, 32]},
                          runs=["r1", "r2", "r3", "r4", "r5", "r6"])


def test_a_calibrated_projection_is_evaluated_at_each_phases_per_device_batch(record):
    plan = build_plan({"phases": [{"name": "short", "steps": 100, "batch_size": 256, "seq_len": 16},
                                  {"name": "long", "steps": 10, "batch_size": 256, "seq_len": 32}]})
    e = estimate(record, plan, None, gpu="A100", dtype="bf16", devices=4, calibration=[_fit(record)])
    short, long = e.phases
    assert short.tokens_per_device_step == 256 * 16 / 4 and long.tokens_per_device_step == 256 * 32 / 4
    for phase in (short, long):
        util = 0.1 + 0.02 * math.log(phase.tokens_per_device_step)  # by hand, not at the run's 2 x 16
        assert phase.utilization == pytest.approx(util)
        assert phase.flops_per_s == pytest.approx(312e12 * util)
        assert phase.device_s == pytest.approx(phase.flops / (312e12 * util))
    assert "calibrated" in short.rate_source and "1,024 tokens per device step" in short.rate_source
    assert "±0.020" in short.rate_source  # the fit's leave-one-out error, inside the measured ranges
    run_util = 0.1 + 0.02 * math.log(record.tokens_per_device_step)
    assert e.utilization == pytest.approx(run_util) and long.utilization > short.utilization > run_util


def test_micro_batch_sets_the_per_device_batch(record):
    plan = build_plan({"phases": [{"steps": 100, "batch_size": 256, "seq_len": 16}]})
    e = estimate(record, plan, None, gpu="A100", dtype="bf16", micro_batch=8, calibration=[_fit(record)])
    (phase,) = e.phases
    assert record.tokens_per_device_step == 256 and phase.tokens_per_device_step == 8 * 16 and "--micro-batch 8" in phase.tokens_per_device_step_source
    assert phase.utilization == pytest.approx(0.1 + 0.02 * math.log(128))


def test_a_plan_batch_far_from_the_measured_one_is_said(record):
    plan = build_plan({"phases": [{"name": "big", "steps": 10, "batch_size": 256, "seq_len": 16}]})
    e = estimate(record, plan, None)  # measured hardware: its rate is at the run's 4 x 64 = 256 tokens
    assert e.phases[0].tokens_per_device_step == 4096 and e.phases[0].utilization is None
    assert e.run_tokens_per_device_step == 256  # the measured run's own batch, stated beside
    assert any("phase big" in n and "4,096 tokens per device step" in n and "more than 2x" in n for n in e.notes)
    near = build_plan({"phases": [{"name": "near", "steps": 10, "batch_size": 8, "seq_len": 64}]})  # 512: 2x
    assert not any("phase near" in n for n in estimate(record, near, None).notes)


# ---- the precision labs train in ------------------------------------------------------------

def test_a_cpu_fp32_run_projects_in_bf16_or_fp16_by_default(record):
    assert record.dtype == "fp32"
    a100 = estimate(record, gpu="A100")
    assert a100.dtype == "bf16" and a100.peak_flops_per_s == 312e12  # not the fp32 column's 19.5e12
    assert any("projected in bf16" in n and "--dtype overrides" in n for n in a100.notes)
    v100 = estimate(record, gpu="V100 SXM2")
    assert v100.dtype == "fp16" and v100.peak_flops_per_s == 125e12  # V100 has no bf16
    fp32 = estimate(record, gpu="A100", dtype="fp32")
    assert fp32.dtype == "fp32" and fp32.peak_flops_per_s == 19.5e12


def test_v100_and_t4_fp32_with_tf32_allowed_use_the_fp32_column():
    v100 = datasheet_peak("cuda", "Tesla V100-SXM2-16GB", "fp32", tf32_enabled=True)
    t4 = datasheet_peak("cuda", "Tesla T4", "fp32", tf32_enabled=True)
    assert (v100.mode, v100.flops_per_s) == ("fp32", 15.7e12) and (t4.mode, t4.flops_per_s) == ("fp32", 8.1e12)
    a100 = datasheet_peak("cuda", "NVIDIA A100-SXM4-80GB", "fp32", tf32_enabled=True)
    assert (a100.mode, a100.flops_per_s) == ("tf32", 156e12)


# ---- on premises ----------------------------------------------------------------------------

def test_the_on_prem_bill_by_hand(record):
    e = estimate(record, gpu="H100 SXM", devices=2, on_prem_usd_per_gpu=30_000, host_usd_per_gpu=10_000,
                 amortize_years=4, duty_cycle=0.5, usd_per_kwh=0.1)
    o = e.on_prem
    per_hour = 40_000 / (4 * HOURS_PER_YEAR * 0.5)
    assert o["capital_usd_per_device_hour"] == pytest.approx(per_hour)
    assert o["capital_usd"] == pytest.approx(e.device_hours * per_hour)
    kwh_pue = 700 * e.device_hours / 1000 * 1.58  # H100 SXM board power x device-hours x default PUE
    assert o["energy_usd"] == pytest.approx(0.1 * kwh_pue)
    assert o["total_usd"] == pytest.approx(o["capital_usd"] + o["energy_usd"])
    assert o["purchase_usd"] == 80_000 and o["usd_per_gpu"]["source"].startswith("user-given")
    assert o["amortize_years"]["source"].startswith("user-given") and o["duty_cycle"]["value"] == 0.5


def test_the_on_prem_bill_says_what_it_does_not_know(record):
    o = estimate(record, gpu="A100", on_prem_usd_per_gpu=15_000).on_prem
    assert o["amortize_years"]["source"].startswith("default 4 years") and o["duty_cycle"]["source"].startswith("default")
    assert o["energy_usd"] is None and o["total_usd"] is None and "--usd-per-kwh" in o["notes"][0]
    assert estimate(record, gpu="A100").on_prem is None


def test_estimate_prints_the_owned_hardware_bill_beside_the_cloud_one(record, tmp_path, capsys):
    from harness.cli import main
    from harness.results import store

    store.save(record, tmp_path)
    args = ["estimate", "--latest", "--corpus", "bert-wiki-books", "--gpu", "A100", "--offline",
            "--results-dir", str(tmp_path), "--on-prem-usd-per-gpu", "15000", "--usd-per-kwh", "0.12"]
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["offers"] and data["on_prem"]["total_usd"] > data["on_prem"]["capital_usd"] > 0
    assert main(args) == 0
    assert "on premises" in capsys.readouterr().out
    assert main([*args, "--duty-cycle", "0"]) == 2
    assert "--duty-cycle" in capsys.readouterr().err


def test_a_fit_of_two_runs_says_its_error_is_unknown_and_beyond_its_ranges(record):
    two = _fit(record)
    two = CalibrationFit(**{**two.__dict__, "n": 2, "loo_rmse": None, "runs": ["r1", "r2"],
                            "ranges": {**two.ranges, "tokens_per_step": [16.0, 64.0]}})
    e = estimate(record, gpu="A100", dtype="bf16", calibration=[two])  # the run's 256 tokens: outside 16..64
    assert "error unknown (fewer than 3 runs)" in e.utilization_source and e.utilization_range is None
    assert "tokens" in e.utilization_source and "inside the measured sizes" not in e.utilization_source
