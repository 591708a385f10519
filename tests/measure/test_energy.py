"""Power sampling: arithmetic on recorded series, RAPL on a kernel-shaped tree, NVML through a
stand-in module (no GPU here), and the estimate path on this machine for real."""

import json
import time

import pytest

from harness.measure.energy import (DEFAULT_W_PER_THREAD, ComponentEnergy, EnergyReading, EstimatedCpuSource,
                                    HostShare, NvmlSource, PowerSampler, RaplSource, counter_delta,
                                    discover_sources, integrate_power_j, job_gpus)
from harness.results.record import AttributedPower, ComponentEnergyInfo, Energy
from tests.conftest import make_record
from tests.conftest import tiny_raw
from tests.cli.test_cli import harness, write_config


def test_trapezoid_integration_by_hand():
    # 100 W for 1 s, then a ramp to 200 W over 2 s: 100 + 2 * 150 = 400 J
    assert integrate_power_j([(0.0, 100.0), (1.0, 100.0), (3.0, 200.0)]) == 400.0
    assert integrate_power_j([(5.0, 80.0)]) == 0.0


def test_counter_wraps():
    assert counter_delta([10, 20, 35], max_range=100) == 25
    assert counter_delta([90, 98, 3, 7], max_range=100) == 8 + 5 + 4  # 98 → wrap → 3


def rapl_tree(root, package_uj, dram_uj, max_uj=1000):
    """/sys/class/powercap as the kernel lays it out: packages at the top, dram as a subdomain."""
    pkg = root / "intel-rapl:0"
    dram = pkg / "intel-rapl:0:0"
    core = pkg / "intel-rapl:0:1"
    for path, name in ((pkg, "package-0"), (dram, "dram"), (core, "core")):
        path.mkdir(parents=True, exist_ok=True)
        (path / "name").write_text(name + "\n")
        (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
        (path / "energy_uj").write_text("0\n")
    (root / "intel-rapl").mkdir(exist_ok=True)  # the control-type folder, no counters

    def set_counters(p, d):
        (pkg / "energy_uj").write_text(f"{p}\n")
        (dram / "energy_uj").write_text(f"{d}\n")

    set_counters(package_uj, dram_uj)
    return set_counters


def test_rapl_reads_packages_and_dram_and_handles_the_wrap(tmp_path):
    set_counters = rapl_tree(tmp_path, 900, 100)
    domains = RaplSource.discover(tmp_path)
    assert set(domains) == {"cpu", "dram"} and len(domains["cpu"]) == 1  # core is inside the package
    source = RaplSource(domains)
    source.begin(0.0)
    set_counters(980, 400)
    source.sample(1.0)
    set_counters(30, 700)  # the package counter wrapped at 1000 µJ
    by_name = {c.component: c for c in source.end(2.0)}
    assert by_name["cpu"].energy_j == pytest.approx((80 + 50) / 1e6)
    assert by_name["dram"].energy_j == pytest.approx(600 / 1e6)
    assert by_name["cpu"].method == "rapl" and by_name["cpu"].avg_w == pytest.approx(130e-6 / 2)


def test_unreadable_rapl_is_missing_not_a_crash(tmp_path):
    (tmp_path / "intel-rapl:0").mkdir()
    (tmp_path / "intel-rapl:0" / "name").write_text("package-0\n")  # energy_uj absent (root-only)
    assert RaplSource.discover(tmp_path) == {}


class StandInNvml:
    """pynvml's surface, at the boundary: these machines have no GPU."""

    class NotSupported(Exception):
        pass

    def __init__(self, energy_mj=None, power_mw=None):
        self.energy_mj = energy_mj  # list per read, or None = no counter (pre-Volta)
        self.power_mw = power_mw
        self.reads = 0

    def nvmlInit(self):
        pass

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return f"handle{i}"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if self.energy_mj is None:
            raise self.NotSupported("NVML_ERROR_NOT_SUPPORTED")
        value = self.energy_mj[min(self.reads, len(self.energy_mj) - 1)]
        self.reads += 1
        return value

    def nvmlDeviceGetPowerUsage(self, handle):
        value = self.power_mw[min(self.reads, len(self.power_mw) - 1)]
        self.reads += 1
        return value


def test_nvml_counter_is_preferred():
    source = NvmlSource(StandInNvml(energy_mj=[1_000_000, 1_150_000, 1_400_000]), [0])
    source.begin(10.0)
    source.sample(11.0)
    (gpu,) = source.end(12.0)
    assert gpu.component == "gpu0" and gpu.method == "counter"
    assert gpu.energy_j == 400.0 and gpu.avg_w == 200.0


def test_nvml_power_is_integrated_without_a_counter():
    source = NvmlSource(StandInNvml(power_mw=[300_000, 300_000, 500_000]), [0])
    source.begin(0.0)
    source.sample(1.0)
    (gpu,) = source.end(3.0)
    assert gpu.method == "integrated" and gpu.energy_j == 300.0 + 2 * 400.0


def test_discover_uses_nvml_and_rapl_when_present(tmp_path):
    rapl_tree(tmp_path, 0, 0)
    sources, missing, share = discover_sources("cuda", nvml=StandInNvml(energy_mj=[0]), rapl_root=tmp_path)
    assert [type(s).__name__ for s in sources] == ["NvmlSource", "RaplSource"] and missing == []
    assert (share.devices, share.host_gpus, share.fraction) == (1, 1, 1.0)


def test_estimate_path_names_its_basis(tmp_path):
    sources, missing, _ = discover_sources("cpu", rapl_root=tmp_path, cpu_model="AMD EPYC 7763 64-Core Processor",
                                           threads=2, memory_bytes=16 * 10**9, cpu_percent=lambda: 50.0)
    assert any(m.startswith("gpu") for m in missing) and any(m.startswith("rapl") for m in missing)
    cpu, memory = sources
    cpu.begin(0.0)
    memory.begin(0.0)
    (c,) = cpu.end(4.0)
    (m,) = memory.end(4.0)
    assert c.energy_j == pytest.approx(280 / 128 * 2 * 0.5 * 4.0)  # TDP/threads x visible x util x s
    assert c.method == "estimated" and "EPYC 7763" in c.detail
    assert m.energy_j == pytest.approx(0.375 * 16 * 4.0) and m.method == "estimated"
    unknown = EstimatedCpuSource(w_per_thread=DEFAULT_W_PER_THREAD, threads=1, basis="x", cpu_percent=lambda: 100.0)
    unknown.begin(0.0)
    assert unknown.end(1.0)[0].energy_j == pytest.approx(DEFAULT_W_PER_THREAD)


class RecordingSource:
    """A power source that records when the sampler calls it and returns `components` at the end."""

    def __init__(self, components=()):
        self.calls, self.components = [], list(components)

    def begin(self, t):
        self.calls.append(("begin", t))

    def sample(self, t):
        self.calls.append(("sample", t))

    def end(self, t):
        self.calls.append(("end", t))
        return self.components


def test_sampler_thread_samples_at_its_interval_for_real():
    source = RecordingSource()
    calls = source.calls
    sampler = PowerSampler([source], interval_s=0.02)
    sampler.start()
    time.sleep(0.25)
    reading = sampler.stop()
    assert 5 <= reading.samples <= 13 and calls[0][0] == "begin"
    assert reading.window_s == pytest.approx(0.25, abs=0.1)


def test_the_sampler_is_a_context_manager_over_its_block():
    now = [10.0]
    source = RecordingSource([ComponentEnergy("cpu", 12.0, 6.0, "rapl", "package-0")])
    calls = source.calls
    sampler = PowerSampler([source], ["gpu: none"], interval_s=3600.0, clock=lambda: now[0])
    assert sampler.reading is None
    with sampler as inside:
        assert inside is sampler and calls == [("begin", 10.0)]
        now[0] = 12.0
    assert calls == [("begin", 10.0), ("end", 12.0)]
    reading = sampler.reading
    assert reading.window_s == 2.0 and reading.samples == 0 and reading.missing == ("gpu: none",)
    assert reading.components == (ComponentEnergy("cpu", 12.0, 6.0, "rapl", "package-0"),)


def test_for_record_scales_the_window_to_the_measured_steps():
    reading = EnergyReading(window_s=2.0, interval_s=0.1, samples=19,
                            components=(ComponentEnergy("gpu0", 400.0, 200.0, "counter", "nvml"),
                                        ComponentEnergy("cpu", 100.0, 50.0, "estimated", "tdp")),
                            missing=("rapl: unreadable",))
    energy = reading.for_record(measured_s=1.5, steps=3, tokens_per_step=64, missing=["nodes 2..2: node 0 only"])
    assert isinstance(energy, Energy)
    # 500 J over a 2 s window, 1.5 s of it measured: 375 J over 3 steps of 64 tokens
    assert energy.joules_per_step == pytest.approx(125.0)
    assert energy.joules_per_token == pytest.approx(125.0 / 64)
    assert energy.avg_watts == pytest.approx(250.0)
    assert energy.components == [
        ComponentEnergyInfo(component="gpu0", energy_j=400.0, avg_w=200.0, method="counter", detail="nvml",
                            joules_per_step=100.0),  # 400 J x 0.75 / 3 steps
        ComponentEnergyInfo(component="cpu", energy_j=100.0, avg_w=50.0, method="estimated", detail="tdp",
                            joules_per_step=25.0)]
    assert energy.methods == {"gpu0": "counter", "cpu": "estimated"}
    assert energy.estimated and energy.method_label == "estimated"
    assert energy.missing == ["rapl: unreadable", "nodes 2..2: node 0 only"]
    assert (energy.window_s, energy.interval_s, energy.samples) == (2.0, 0.1, 19)
    # a record keeps it as it is, through its JSON form
    record = make_record({"energy": energy.model_dump(mode="json")})
    assert record.energy == energy


def test_a_measured_reading_is_not_labelled_estimated():
    reading = EnergyReading(1.0, 0.1, 9, (ComponentEnergy("gpu0", 50.0, 50.0, "integrated", "nvml power"),), ())
    energy = reading.for_record(measured_s=1.0, steps=2, tokens_per_step=10)
    assert not energy.estimated and energy.method_label == "measured" and energy.joules_per_step == 25.0


# ---- attribution: the job's GPUs only, and its share of the host ------------------------------

class HostNvml:
    """pynvml's surface for a host of GPUs, each drawing a fixed power: its energy counter (mJ)
    is that power x the test's clock (`now`, shared with the sampler). Every counter read is
    logged by GPU index, so a test sees which GPUs were read."""

    class InvalidArgument(Exception):
        pass

    def __init__(self, watts, now):
        self.watts = list(watts)
        self.now = now
        self.read = []

    def nvmlInit(self):
        pass

    def nvmlDeviceGetCount(self):
        return len(self.watts)

    def nvmlDeviceGetHandleByIndex(self, i):
        if not 0 <= i < len(self.watts):
            raise self.InvalidArgument("NVML_ERROR_INVALID_ARGUMENT")
        return ("handle", i)

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return ("handle", int(uuid.removeprefix("GPU-fake-")))

    def nvmlDeviceGetIndex(self, handle):
        return handle[1]

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        self.read.append(handle[1])
        return int(self.watts[handle[1]] * self.now[0] * 1000)


HOST_DRAM_BYTES = 2 * 10**12  # 2 TB: 0.375 W/GB x 2000 GB = 750 W
HOST_CPU_TDP_W = 72.0         # at 25% utilization: 18 W; host CPU + DRAM = 768 W


def sample_job(gpu_watts, gpus, rapl_root, *, memory_bytes=HOST_DRAM_BYTES, cpu_tdp_w=HOST_CPU_TDP_W):
    """The job's energy record on a host whose GPUs draw `gpu_watts`, the job using `gpus`
    (NVML identities): 2 s sampled (clock 10 → 12 s), all of it 4 measured steps of 1024 tokens;
    CPU and DRAM estimated (no RAPL under `rapl_root`). Returns (Energy, the fake NVML)."""
    now = [10.0]
    nvml = HostNvml(gpu_watts, now)
    sources, missing, share = discover_sources("cuda", gpus=gpus, nvml=nvml, rapl_root=rapl_root,
                                               cpu_tdp_w=cpu_tdp_w, cpu_model="stand-in", threads=64,
                                               cpu_percent=lambda: 25.0, memory_bytes=memory_bytes)
    with PowerSampler(sources, missing, interval_s=3600.0, clock=lambda: now[0]) as sampler:
        now[0] = 12.0
    energy = sampler.reading.for_record(measured_s=2.0, steps=4, tokens_per_step=1024, share=share)
    return energy, nvml


ONE_BUSY = [700.0] + [70.0] * 7  # the host: one GPU at 700 W, seven idle at 70 W


def test_job_gpus_map_cuda_ordinals_through_cuda_visible_devices():
    assert job_gpus(range(2), None) == (0, 1)
    assert job_gpus([1], None) == (1,)  # a single process on cuda:1
    assert job_gpus(range(2), "3,5") == (3, 5)  # torchrun, LOCAL_RANK 0 and 1 on physical GPUs 3 and 5
    assert job_gpus([0], " 6 , 2") == (6,)
    assert job_gpus(range(2), "GPU-fake-4,GPU-fake-1") == ("GPU-fake-4", "GPU-fake-1")
    with pytest.raises(ValueError, match="CUDA device 2"):
        job_gpus(range(3), "3,5")


def test_a_one_gpu_job_reads_its_gpu_only_and_a_share_of_the_host(tmp_path):
    energy, nvml = sample_job(ONE_BUSY, (0,), tmp_path)
    assert set(nvml.read) == {0}  # the seven idle GPUs are never read
    assert [c.component for c in energy.components] == ["gpu0", "cpu", "dram"]
    assert (energy.devices, energy.host_gpus, energy.host_share) == (1, 8, 0.125)
    assert "1/8" in energy.host_share_method and "NVML" in energy.host_share_method
    assert energy.per_device == AttributedPower(avg_w=700.0, method=energy.per_device.method)
    assert "gpu0 counter / 1 job GPU" in energy.per_device.method
    # host: 18 W CPU + 750 W DRAM = 768 W, x 1/8 of the host, / 1 device = 96 W
    assert energy.host_per_device.avg_w == pytest.approx(96.0)
    assert "768.0 W x 0.125" in energy.host_per_device.method
    # the job's: 700 + 96 = 796 W (the whole host read as before: 700 + 7 x 70 + 768 = 1958 W)
    assert energy.avg_watts == pytest.approx(796.0)
    assert energy.joules_per_step == pytest.approx(796.0 * 2.0 / 4)
    assert energy.joules_per_token == pytest.approx(796.0 * 2.0 / 4 / 1024)
    by_name = {c.component: c for c in energy.components}  # the components keep what was read
    assert by_name["dram"].avg_w == pytest.approx(750.0) and by_name["cpu"].avg_w == pytest.approx(18.0)


def test_a_two_gpu_job_on_gpus_3_and_5_of_eight(tmp_path):
    watts = [70.0] * 8
    watts[3], watts[5] = 700.0, 600.0
    energy, nvml = sample_job(watts, job_gpus(range(2), "3,5"), tmp_path)
    assert set(nvml.read) == {3, 5}
    assert [c.component for c in energy.components][:2] == ["gpu3", "gpu5"]
    assert energy.per_device.avg_w == pytest.approx(650.0)  # (700 + 600) / 2
    assert (energy.devices, energy.host_share) == (2, 0.25) and "2/8" in energy.host_share_method
    assert energy.host_per_device.avg_w == pytest.approx(768.0 * 2 / 8 / 2)  # 96 W each
    assert energy.avg_watts == pytest.approx(1300.0 + 192.0)


def test_gpus_named_by_uuid_are_read_under_their_nvml_index(tmp_path):
    energy, nvml = sample_job(ONE_BUSY[::-1], ("GPU-fake-7",), tmp_path)  # the busy one is index 7
    assert set(nvml.read) == {7} and energy.components[0].component == "gpu7"
    assert energy.per_device.avg_w == pytest.approx(700.0)


def test_a_gpu_the_host_does_not_have_is_missing_not_read(tmp_path):
    energy, nvml = sample_job([700.0, 70.0], (4,), tmp_path)
    assert nvml.read == [] and energy.per_device is None
    assert any(m.startswith("gpu: the job's GPUs [4]") for m in energy.missing)
    assert energy.host_share == 0.5  # the host's GPU count is still known: 1 job GPU of 2


def test_without_nvml_the_share_is_unknown_and_said_so(tmp_path):
    class NoNvml:
        def nvmlInit(self):
            raise RuntimeError("NVML Shared Library Not Found")

    sources, missing, share = discover_sources("cuda", gpus=(0,), nvml=NoNvml(), rapl_root=tmp_path,
                                               cpu_tdp_w=72.0, cpu_percent=lambda: 25.0, memory_bytes=10**9)
    assert share.fraction is None and share.host_gpus is None and "unknown" in share.method
    assert any("NVML unavailable (RuntimeError)" in m for m in missing)
    reading = EnergyReading(2.0, 0.1, 19, (ComponentEnergy("dram", 10.0, 5.0, "estimated", "x"),), ())
    energy = reading.for_record(measured_s=2.0, steps=2, tokens_per_step=8, share=share)
    assert energy.per_device is None and energy.host_per_device is None and energy.devices == 1
    assert energy.joules_per_step == 5.0  # what was read, in full: nothing to attribute it by


def test_a_cpu_run_is_its_own_device_over_its_processes(tmp_path):
    share = HostShare.of_cpu(2)  # two gloo ranks on this node
    reading = EnergyReading(window_s=2.0, interval_s=0.1, samples=19, missing=(),
                            components=(ComponentEnergy("cpu", 120.0, 60.0, "estimated", "tdp"),
                                        ComponentEnergy("dram", 20.0, 10.0, "estimated", "0.375 W/GB")))
    energy = reading.for_record(measured_s=1.0, steps=2, tokens_per_step=8, share=share)
    assert energy.per_device.avg_w == pytest.approx(30.0) and "the CPU is the device" in energy.per_device.method
    assert energy.host_per_device.avg_w == pytest.approx(5.0) and energy.host_share == 1.0
    assert energy.joules_per_step == pytest.approx(140.0 / 2 / 2)  # everything, over 1 of 2 s, per step
    _, _, discovered = discover_sources("cpu", processes=2, rapl_root=tmp_path, cpu_percent=lambda: 1.0,
                                        threads=1, memory_bytes=10**9)
    assert discovered == share


def test_a_cpu_run_reports_estimated_energy(tmp_path):
    """On this machine for real: no GPU, no readable RAPL → CPU and memory estimated."""
    raw = tiny_raw("gpt2")
    raw["measure"] = {"warmup_steps": 1, "steps": 3, "power_interval_s": 0.01}
    out = harness("run", str(write_config(tmp_path, raw)), "--json", "--results-dir", str(tmp_path / "r"),
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    energy = json.loads(out.stdout)["energy"]
    assert energy["methods"]["cpu"] in ("estimated", "rapl") and energy["joules_per_step"] > 0
    assert energy["joules_per_token"] == pytest.approx(energy["joules_per_step"] / (2 * 16))
    assert any(m.startswith("gpu") for m in energy["missing"])


@pytest.mark.parametrize("override, field", [
    ("measure.power_interval_s=0", "measure.power_interval_s"),
    ("measure.power_interval_s=-1", "measure.power_interval_s"),
    ("measure.cpu_tdp_w=-5", "measure.cpu_tdp_w"),
])
def test_bad_energy_settings(tmp_path, override, field):
    out = harness("run", "gpt2", "--set", override, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and field in out.stderr
