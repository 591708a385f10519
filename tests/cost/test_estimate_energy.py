"""The estimate's energy per device, by hand: the job's GPUs' power + its share of the host, x
device-hours, from records sampled through a stand-in NVML (no GPU here) on a host of 8 GPUs."""

import pytest

from harness.cost.estimate import EstimateOptions, estimate as _estimate
from harness.cost.plans import build_corpus, build_plan
from tests.conftest import make_record
from tests.measure.test_energy import ONE_BUSY, sample_job

CORPUS = build_corpus({"tokens": 1e9})
EPOCH = build_plan({"phases": [{"epochs": 1}]})


def estimate(record):
    return _estimate(record, EPOCH, CORPUS, EstimateOptions.build(pue=1.5, carbon_intensity_kg_per_kwh=0.5,
                                                                 usd_per_kwh=0.2))


def job_record(energy, **changes):
    """The committed real run (a CPU) at a round rate, carrying `energy` through its JSON form."""
    return make_record({"achieved_flops_per_s": 1e9, "energy": energy.model_dump(mode="json"), **changes})


def test_one_gpu_of_eight_by_hand(tmp_path):
    energy, _ = sample_job(ONE_BUSY, (0,), tmp_path)
    e = estimate(job_record(energy))
    g = e.energy
    # 700 W (the job's GPU) + 96 W (768 W of host CPU and DRAM x 1/8) per device, x device-hours
    assert g["avg_w_per_device"] == pytest.approx(796.0) and g["host_share_w_per_device"] == pytest.approx(96.0)
    assert g["kwh"] == pytest.approx(796.0 * e.device_hours / 1000)
    assert g["kwh_pue"] == pytest.approx(1.5 * 796.0 * e.device_hours / 1000)
    assert g["energy_cost_usd"] == pytest.approx(0.2 * g["kwh_pue"]) and g["co2e_kg"] == pytest.approx(0.5 * g["kwh_pue"])
    assert "per device 700.0 W" in g["method"] and "host share 96.0 W" in g["method"] and "1/8" in g["method"]
    assert g["method"].startswith("estimated")  # CPU and DRAM were estimated


def test_two_gpus_of_eight_by_hand(tmp_path):
    watts = [70.0] * 8
    watts[3], watts[5] = 700.0, 600.0
    energy, _ = sample_job(watts, (3, 5), tmp_path)
    e = estimate(job_record(energy, world_size=2))
    # (700 + 600) / 2 = 650 W per GPU + 768 W x 2/8 / 2 = 96 W per device
    assert e.energy["avg_w_per_device"] == pytest.approx(746.0)
    assert e.energy["kwh"] == pytest.approx(746.0 * e.device_hours / 1000)


def test_the_other_gpus_of_the_host_do_not_enter_the_job(tmp_path):
    quiet, _ = sample_job(ONE_BUSY, (0,), tmp_path)
    busy_neighbours, _ = sample_job([700.0] + [650.0] * 7, (0,), tmp_path)  # another job on the other seven
    assert estimate(job_record(quiet)).energy["kwh"] == estimate(job_record(busy_neighbours)).energy["kwh"]
    # 16 GPUs behind the same CPU and DRAM: the GPU part is the same, the host share is 768 / 16
    bigger, _ = sample_job(ONE_BUSY + [70.0] * 8, (0,), tmp_path)
    e = estimate(job_record(bigger))
    assert bigger.per_device == quiet.per_device
    assert e.energy["kwh"] == pytest.approx((700.0 + 48.0) * e.device_hours / 1000)
    # and a host of 16 GPUs built like two of the 8s (twice the CPU and DRAM) gives each device the same
    twice, _ = sample_job(ONE_BUSY * 2, (0,), tmp_path, memory_bytes=4 * 10**12, cpu_tdp_w=144.0)
    assert estimate(job_record(twice)).energy["kwh"] == pytest.approx(estimate(job_record(quiet)).energy["kwh"])


def test_a_record_without_attribution_is_divided_by_its_ranks_on_the_node(tmp_path):
    # an older record of a 2-GPU job that read all 8 GPUs and the whole host: 2488 W in all
    old = {"joules_per_step": 2488.0 * 2.0 / 4, "methods": {"gpu0": "counter"}, "estimated": False}
    steps = {"step_times_s": [0.5] * 4, "total_measured_s": 2.0}
    e = estimate(make_record({"achieved_flops_per_s": 1e9, "energy": old, "world_size": 2, **steps}))
    assert e.energy["avg_w_per_device"] == pytest.approx(1244.0) and e.energy["host_share_w_per_device"] is None
    assert e.energy["kwh"] == pytest.approx(1244.0 * e.device_hours / 1000)
    assert "/ 2 device(s) on its node" in e.energy["method"] and "without per-device attribution" in e.energy["method"]
    # 4 ranks on 2 nodes: node 0 was sampled, with its 2 ranks
    two_nodes = make_record({"achieved_flops_per_s": 1e9, "energy": old, "world_size": 4, "nnodes": 2, **steps})
    assert estimate(two_nodes).energy["avg_w_per_device"] == pytest.approx(1244.0)


def test_no_energy_when_the_devices_power_was_not_read(tmp_path):
    energy, _ = sample_job([700.0, 70.0], (4,), tmp_path)  # the job's GPU is not on this host
    e = estimate(job_record(energy))
    assert e.energy is None
    assert any(n.startswith("energy unknown") and "did not read its devices' power" in n for n in e.notes)
