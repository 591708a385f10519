"""Extrapolation arithmetic, checked by hand on a real tiny run whose rates are set to round numbers."""

import pytest

from harness.config import build_spec, with_changes
from harness.flops.count import count_model_flops
from harness.errors import ConfigError
from harness.cost.estimate import DEFAULT_UTILIZATION, EstimateOptions, estimate as _estimate, gpu_key
from harness.cost.plans import build_corpus, build_plan, load_plan
from harness.cost.prices import Offer
from harness.measure.run import measure


@pytest.fixture(scope="module")
def record():
    from tests.conftest import tiny_raw

    raw = tiny_raw("gpt2")
    raw["measure"] = {"warmup_steps": 0, "steps": 1}
    return measure(build_spec(raw)).evolve(achieved_flops_per_s=1e9)  # round numbers for the hand checks below


def at(record, **changes):
    return record.evolve(**changes)


def estimate(record, plan, corpus, *, records=(), offers=(), calibration=(), **options):
    """The estimate under EstimateOptions built from `options` (the engine's one options value);
    the published rung off unless asked for, so the hand checks below run at the figures they name."""
    options.setdefault("use_published", False)
    return _estimate(record, plan, corpus, EstimateOptions.build(**options), records=records, offers=offers,
                     calibration=calibration)


def per_token(record, seq):
    one = with_changes(record.spec, {"train.batch_size": 1, "train.seq_len": seq})
    return count_model_flops(one)[0].total / seq


CORPUS = build_corpus({"tokens": 1e9})
EPOCH = build_plan({"phases": [{"epochs": 1}]})


def offer(gpu, usd_per_hour, gpus, spot=False):
    return Offer(provider="test", instance=f"{gpu}x{gpus}", region="r", gpu=gpu, gpus_per_instance=gpus,
                 usd_per_hour=usd_per_hour, usd_per_gpu_hour=usd_per_hour / gpus, spot=spot,
                 as_of="2026-11-01", source="https://example.test/prices", provenance="snapshot")


def test_one_epoch_on_the_measured_device(record):
    e = estimate(record, EPOCH, CORPUS)
    seq = record.seq_len
    fpt = record.model_flops_per_step / record.tokens_per_step
    assert fpt == per_token(record, seq)
    assert e.tokens_total == 1e9 and e.flops_total == pytest.approx(1e9 * fpt)
    assert e.device_hours == pytest.approx(1e9 * fpt / 1e9 / 3600)
    assert e.wall_hours == e.device_hours and e.hardware_source == "measured"
    assert e.utilization_source.startswith("measured") and e.offers == []
    assert any("--gpu" in n for n in e.notes)  # a CPU has no cloud offers


def test_devices_and_scaling_efficiency(record):
    one = estimate(record, EPOCH, CORPUS)
    four = estimate(record, EPOCH, CORPUS, devices=4, scaling_efficiency=0.8)
    assert four.device_hours == pytest.approx(one.device_hours / 0.8)
    assert four.wall_hours == pytest.approx(one.device_hours / 0.8 / 4)
    assert four.scaling_efficiency_source.startswith("user")
    ideal = estimate(record, EPOCH, CORPUS, devices=4)
    assert ideal.scaling_efficiency == 1.0 and ideal.scaling_efficiency_source.startswith("assumed")


def test_a_phase_at_another_length_is_counted_there_and_scaled_or_measured(record):
    seq = record.seq_len
    plan = build_plan({"phases": [{"steps": 10, "batch_size": 2, "seq_len": seq},
                                  {"steps": 5, "batch_size": 2, "seq_len": 2 * seq}]})
    e = estimate(record, plan, None)
    short, long = e.phases
    assert short.tokens == 10 * 2 * seq and long.tokens == 5 * 2 * 2 * seq
    assert long.flops_per_token == per_token(record, 2 * seq) > short.flops_per_token  # attention grows
    assert long.rate_source.startswith("scaled") and long.device_s == pytest.approx(long.flops / 1e9)
    other = at(record, run_id="other", seq_len=2 * seq, achieved_flops_per_s=2e9)
    e2 = estimate(record, plan, None, records=[record, other])
    assert e2.phases[1].rate_source == f"measured (run other, seq {2 * seq})"
    assert e2.phases[1].device_s == pytest.approx(long.flops / 2e9)


def test_projection_utilization_order(record):
    """The ladder: local measurement > calibration (tests/cost/test_calibrate.py) > published > user > default."""
    from harness.cost.evidence import nearest_published

    peak = 312e12  # A100 bf16, dense
    near = nearest_published("A100", "bf16", record.params, record.seq_len)
    published = estimate(record, EPOCH, CORPUS, gpu="A100", dtype="bf16", utilization=0.5, use_published=True)
    assert published.utilization == pytest.approx(near.value) and near.row.gpu == "A100"
    assert published.utilization_source.startswith(f"published: {near.row.source}")
    assert published.utilization_range == pytest.approx([near.value - near.error, near.value + near.error])
    assert any("--utilization 0.5 not used: a published measurement" in n for n in published.notes)
    default = estimate(record, EPOCH, CORPUS, gpu="A100", dtype="bf16", use_published=False)
    assert default.utilization == DEFAULT_UTILIZATION and default.utilization_source.startswith("assumed")
    assert default.device_hours == pytest.approx(default.flops_total / (peak * 0.3) / 3600)
    assert published.device_hours == pytest.approx(default.flops_total / (peak * near.value) / 3600)
    user = estimate(record, EPOCH, CORPUS, gpu="A100", dtype="bf16", utilization=0.5, use_published=False)
    assert user.utilization == 0.5 and user.utilization_source.startswith("user")
    # no published row for an L4: the user's figure, else the default, as before
    l4_user = estimate(record, EPOCH, CORPUS, gpu="L4", dtype="bf16", utilization=0.5, use_published=True)
    assert l4_user.utilization == 0.5 and l4_user.utilization_source.startswith("user")
    l4 = estimate(record, EPOCH, CORPUS, gpu="L4", dtype="bf16", use_published=True)
    assert l4.utilization == DEFAULT_UTILIZATION and l4.utilization_source.startswith("assumed")
    on_a100 = at(record, run_id="a100run", dtype="bf16", mfu_datasheet=0.42,
                 device={"type": "cuda", "name": "NVIDIA A100-SXM4-80GB"})
    measured = estimate(record, EPOCH, CORPUS, gpu="A100", dtype="bf16", utilization=0.5,
                        records=[record, on_a100], use_published=True)
    assert measured.utilization == 0.42 and "a100run" in measured.utilization_source
    assert any("--utilization 0.5 not used" in n for n in measured.notes)


def test_offers_are_priced_per_gpu_hour_with_fully_loaded_range(record):
    offers = [offer("A100-80GB", 32.0, 8), offer("A100", 1.5, 1, spot=True), offer("H100", 4.0, 1)]
    e = estimate(record, EPOCH, CORPUS, gpu="A100", dtype="bf16", offers=offers)
    assert [o.usd_per_gpu_hour for o in e.offers] == [1.5, 4.0]  # H100 is not an A100; cheapest first
    # the headline is the on-demand range: the one spot offer is beside it, never in it
    assert e.cost_usd_min == e.cost_usd_max == pytest.approx(e.device_hours * 4.0)
    assert [o.usd_per_gpu_hour for o in e.on_demand.offers] == [4.0]
    assert e.spot.cost_usd_min == e.spot.cost_usd_max == pytest.approx(e.device_hours * 1.5)
    assert e.fully_loaded["multiplier"] == 20
    assert e.fully_loaded["cost_usd_max"] == pytest.approx(20 * e.cost_usd_max)
    assert e.spot.fully_loaded["cost_usd_min"] == pytest.approx(20 * e.spot.cost_usd_min)
    assert gpu_key("NVIDIA H100 80GB HBM3") == gpu_key("H100 SXM") == "H100"


def test_bert_recipe_on_a_tiny_bert_names_the_too_long_phase():
    from tests.conftest import tiny_raw

    from tests.conftest import make_record

    spec = build_spec(tiny_raw("bert"))  # max_positions 64: the 512 phase cannot run
    record = make_record({"spec": spec.model_dump(mode="json"), "model": spec.model.model_dump()})
    with pytest.raises(ConfigError) as err:
        estimate(record, load_plan("bert-pretraining"), None)
    assert err.value.field == "plan.phases[0].seq_len"


@pytest.mark.parametrize("kwargs, field", [
    ({"devices": 0}, "estimate.devices"), ({"utilization": 1.5}, "estimate.utilization"),
    ({"scaling_efficiency": 0}, "estimate.scaling_efficiency"), ({"dtype": "bf16"}, "estimate.dtype"),
])  # the engine names the options' fields; the CLI names its flags (tests/cost/test_cli_cost.py)
def test_bad_estimate_inputs(record, kwargs, field):
    with pytest.raises(ConfigError) as err:
        estimate(record, EPOCH, CORPUS, **kwargs)
    assert err.value.field == field


def test_energy_from_the_measured_power_and_carbon_by_hand(record):
    rec = at(record, energy={"joules_per_step": 2.0, "methods": {"cpu": "estimated"}, "estimated": True},
             total_measured_s=1.0, step_times_s=[0.5, 0.5])  # 2 steps of 2 J in 1 s = 4 W
    e = estimate(rec, EPOCH, CORPUS, pue=1.5, carbon_intensity_kg_per_kwh=0.5, usd_per_kwh=0.2)
    joules = 4.0 * e.device_hours * 3600
    g = e.energy
    assert g["kwh"] == pytest.approx(joules / 3.6e6) and g["kwh_pue"] == pytest.approx(1.5 * joules / 3.6e6)
    assert g["co2e_kg"] == pytest.approx(0.5 * g["kwh_pue"])
    assert g["co2e_lbs"] == pytest.approx(g["co2e_kg"] / 0.45359237)
    assert g["energy_cost_usd"] == pytest.approx(0.2 * g["kwh_pue"])
    assert g["method"].startswith("estimated") and g["avg_w_per_device"] == pytest.approx(4.0)


def test_strubell_defaults_and_projected_energy(record):
    rec = at(record, energy={"joules_per_step": 1.0, "methods": {"gpu0": "counter"}, "estimated": False},
             total_measured_s=2.0, step_times_s=[1.0, 1.0])
    g = estimate(rec, EPOCH, CORPUS).energy
    assert g["pue"] == 1.58 and g["carbon_region"] == "us-average-strubell" and g["method"].startswith("measured")
    assert g["co2e_lbs"] == pytest.approx(0.954 * g["kwh_pue"], rel=1e-4)  # Strubell's 0.954 lbs/kWh
    assert g["energy_cost_usd"] is None
    h100 = estimate(rec, EPOCH, CORPUS, gpu="H100 SXM", dtype="bf16")
    assert h100.energy["kwh"] == pytest.approx(700 * h100.device_hours / 1000)
    assert "GPU only" in h100.energy["method"]


@pytest.mark.parametrize("kwargs, field", [
    ({"pue": 0.9}, "estimate.pue"), ({"carbon_intensity_kg_per_kwh": -1}, "estimate.carbon_intensity_kg_per_kwh"),
    ({"carbon_region": "mars"}, "estimate.carbon_region"), ({"usd_per_kwh": -0.1}, "estimate.usd_per_kwh"),
])
def test_bad_energy_inputs(record, kwargs, field):
    with pytest.raises(ConfigError) as err:
        estimate(record, EPOCH, CORPUS, **kwargs)
    assert err.value.field == field


def test_a_cpu_run_is_projected_to_every_gpu_on_offer(record):
    from harness.cost.estimate import project_offers

    offers = [offer("A100", 2.0, 1), offer("H100", 4.0, 1), offer("Z9", 1.0, 1)]
    rows = project_offers(record, EPOCH, CORPUS, EstimateOptions.build(dtype="bf16", use_published=False),
                          offers=offers)
    by_gpu = {r["gpu"]: r for r in rows}
    assert by_gpu["Z9"]["skipped"].startswith("no datasheet row")  # never guessed
    flops = estimate(record, EPOCH, CORPUS).flops_total
    a100 = by_gpu["A100"]
    assert a100["device_hours"] == pytest.approx(flops / (312e12 * 0.3) / 3600)
    assert a100["cost_usd_min"] == pytest.approx(2.0 * a100["device_hours"])
    # these H100 offers do not say their form: both datasheet forms are projected, each priced with them,
    # labelled "form unknown" (tests/cost/test_prices.py prices offers that do say it)
    assert by_gpu["H100 PCIe"]["peak_flops_per_s"] == 756e12 and by_gpu["H100 SXM"]["peak_flops_per_s"] == 989.5e12
    assert by_gpu["H100 SXM"]["priced_against"] == "every H100 offer of form SXM or of unknown form (unknown 1)"
    assert by_gpu["H100 SXM"]["forms"] == by_gpu["H100 PCIe"]["forms"] == {"unknown": 1}


def test_measured_scaling_efficiency_is_used_and_extrapolation_said(record):
    one = at(record, run_id="one", tokens_per_s=1000.0)
    two = at(record, run_id="two", world_size=2, tokens_per_s=1800.0)  # 0.9 of linear
    e = estimate(one, EPOCH, CORPUS, devices=2, records=[one, two], scaling_efficiency=0.5)
    assert e.scaling_efficiency == pytest.approx(0.9) and e.scaling_efficiency_source.startswith("measured")
    assert any("--scaling-efficiency 0.5 not used" in n for n in e.notes)
    far = estimate(one, EPOCH, CORPUS, devices=64, records=[one, two])
    assert far.scaling_efficiency == pytest.approx(0.9) and "extrapolated beyond the measured N=2" in \
        far.scaling_efficiency_source
    assert far.wall_hours == pytest.approx(far.device_hours / 64)


def test_a_multi_device_record_is_timed_per_device(record):
    two = at(record, world_size=2, achieved_flops_per_s=2e9)  # all ranks together
    assert estimate(two, EPOCH, CORPUS).device_hours == pytest.approx(estimate(record, EPOCH, CORPUS).device_hours)


def test_a_depth_sliced_record_is_used_and_called_predicted(record):
    from harness.measure.slices import depth_sliced_record, measure_slices
    from tests.measure.test_slices import runner_for, spec_of

    spec = spec_of(layers=8)
    sliced = depth_sliced_record(spec, measure_slices(spec, [1, 2, 4], runner=runner_for()))
    e = estimate(sliced, EPOCH, CORPUS)
    predicted_s = 0.5 + 0.25 * 8  # the runner's line at full depth
    assert e.phases[0].flops_per_s == pytest.approx(sliced.model_flops_per_step / predicted_s)
    assert e.device_hours == pytest.approx(1e9 / sliced.tokens_per_step * predicted_s / 3600)
    assert e.phases[0].rate_source.startswith("predicted from depth slices (run ")
    assert e.utilization_source.startswith("predicted from depth slices")
    assert any("depth-sliced" in n and "3 slices" in n for n in e.notes)
