"""Sample: power and energy beside the timed steps, one source per component, each with its method.

Methods, best first:
  counter     NVML's cumulative energy counter (mJ since driver load; Volta and newer)
  integrated  NVML power samples (mW) integrated over time (trapezoid rule)
  rapl        the kernel's RAPL counters under /sys/class/powercap (µJ, wrapping)
  estimated   CPU: TDP × the visible share of the part × utilization (psutil);
              memory: 0.375 W per GB installed. Never silent: `method` and `detail` say so.

A :class:`PowerSampler` runs the sources on a background thread at a fixed interval between
`start()` and `stop()`, which the run calls around the measured steps only.

Attribution: only the job's GPUs are read (:func:`job_gpus`: the CUDA devices of its ranks on
this node, through CUDA_VISIBLE_DEVICES), and a :class:`HostShare` gives the job its share of
the host's CPU and memory: its GPUs / the host's GPUs (NVML's count) on a GPU run, everything
sampled on a CPU run. :meth:`EnergyReading.for_record` records both per device.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

from harness.results.record import AttributedPower, ComponentEnergyInfo, Energy

RAPL_ROOT = Path("/sys/class/powercap")
MEMORY_W_PER_GB = 0.375  # codecarbon's convention: 3 W per 8 GB of RAM (an estimate, not a measurement)

# Server CPUs: (pattern on the model name, TDP W, hardware threads per socket, source).
CPU_TDP = (
    (r"EPYC 9654", 360.0, 192, "AMD EPYC 9654 product page (amd.com)"),
    (r"EPYC 9554", 360.0, 128, "AMD EPYC 9554 product page (amd.com)"),
    (r"EPYC 7763", 280.0, 128, "AMD EPYC 7763 product page (amd.com)"),
    (r"EPYC 7742", 225.0, 128, "AMD EPYC 7742 product page (amd.com)"),
    (r"Platinum 8480", 350.0, 112, "Intel Xeon Platinum 8480+ (ark.intel.com)"),
    (r"Platinum 8380", 270.0, 80, "Intel Xeon Platinum 8380 (ark.intel.com)"),
    (r"Platinum 8168", 205.0, 48, "Intel Xeon Platinum 8168 (ark.intel.com)"),
    (r"Gold 6248", 150.0, 40, "Intel Xeon Gold 6248 (ark.intel.com)"),
    (r"Gold 6148", 150.0, 40, "Intel Xeon Gold 6148 (ark.intel.com)"),
    (r"E5-2698 v4", 135.0, 40, "Intel Xeon E5-2698 v4 (ark.intel.com)"),
)
DEFAULT_W_PER_THREAD = statistics.median(tdp / threads for _, tdp, threads, _ in CPU_TDP)


@dataclass(frozen=True)
class ComponentEnergy:
    """Energy of one component over the sampled window."""

    component: str      # gpu0, gpu1, cpu, dram
    energy_j: float
    avg_w: float
    method: str         # counter | integrated | rapl | estimated
    detail: str         # what was read, or the estimate's formula and inputs


@dataclass(frozen=True)
class HostShare:
    """The job's part of the host it was sampled on: `devices` of the job there (GPUs read, or a
    CPU run's processes), and the `fraction` of the host's CPU and memory power that is theirs
    (None: unknown), with how it was set."""

    device_type: str    # cuda | cpu
    devices: int
    fraction: float | None
    method: str
    host_gpus: int | None = None   # the host's GPUs as NVML counts them (GPU runs)

    @staticmethod
    def of_gpus(devices: int, host_gpus: int | None) -> "HostShare":
        """A GPU run: the job's `devices` of the host's `host_gpus` GPUs (None: NVML unreadable)."""
        if not host_gpus:
            return HostShare("cuda", devices, None, "unknown: NVML unreadable, so the host's GPU count is unknown")
        return HostShare("cuda", devices, devices / host_gpus,
                         f"the job's GPUs / the host's GPUs (NVML's count): {devices}/{host_gpus}", host_gpus)

    @staticmethod
    def of_cpu(processes: int) -> "HostShare":
        """A CPU run: its CPU is the device; everything sampled is the job's, over its processes."""
        return HostShare("cpu", processes, 1.0, f"CPU run: all of the sampled host is the job's "
                         f"(the process's share as sampled), over its {processes} process(es) on this node")

    def is_device(self, component: str) -> bool:
        """Whether `component` is one of the job's devices (a GPU; a CPU run's CPU) or the host's."""
        return component.startswith("gpu") if self.device_type == "cuda" else component == "cpu"


@dataclass(frozen=True)
class EnergyReading:
    """Everything the sampler saw in one window."""

    window_s: float
    interval_s: float
    samples: int
    components: tuple[ComponentEnergy, ...]
    missing: tuple[str, ...]

    @property
    def total_j(self) -> float:
        return sum(c.energy_j for c in self.components)

    def for_record(self, *, measured_s: float, steps: int, tokens_per_step: int,
                   missing: Sequence[str] = (), share: HostShare | None = None) -> Energy:
        """The record's energy: per step and per token over the measured steps (the window's
        average power × the measured time), every component's method, and what was not read
        (`missing` adds to the sampler's own list). With the job's `share` of the host, the
        figures are the job's: its devices' power (`per_device`: their average W / devices) plus
        its share of the rest (`host_per_device`: the host's W × share.fraction / devices);
        without it, everything read."""
        window = self.window_s
        scale = measured_s / window if window else 0.0
        attribution: dict = {}
        total_j = self.total_j
        if share is not None:
            device = [c for c in self.components if share.is_device(c.component)]
            host = [c for c in self.components if not share.is_device(c.component)]
            device_j, host_j = sum(c.energy_j for c in device), sum(c.energy_j for c in host)
            attribution = {"devices": share.devices, "host_gpus": share.host_gpus, "host_share": share.fraction,
                           "host_share_method": share.method}
            if device and window:
                read = ", ".join(f"{c.component} {c.method}" for c in device)
                attribution["per_device"] = AttributedPower(
                    avg_w=device_j / window / share.devices,
                    method=(f"{read} / {share.devices} job GPU(s); the host's other GPUs not read"
                            if share.device_type == "cuda" else f"CPU run, the CPU is the device: {read} / "
                            f"{share.devices} process(es)"))
            if share.fraction is not None and window:
                read = ", ".join(f"{c.component} {c.method}" for c in host) or "nothing read"
                attribution["host_per_device"] = AttributedPower(
                    avg_w=host_j / window * share.fraction / share.devices,
                    method=f"host {read} {host_j / window:.1f} W x {share.fraction:.4g} ({share.method}) "
                           f"/ {share.devices} device(s)")
                total_j = device_j + host_j * share.fraction
        total = total_j * scale
        return Energy(
            joules_per_step=total / steps, joules_per_token=total / (steps * tokens_per_step),
            avg_watts=total_j / window if window else 0.0,
            components=[ComponentEnergyInfo(**asdict(c), joules_per_step=c.energy_j * scale / steps)
                        for c in self.components],
            methods={c.component: c.method for c in self.components},
            estimated=any(c.method == "estimated" for c in self.components),
            missing=[*self.missing, *missing], window_s=window, interval_s=self.interval_s,
            samples=self.samples, **attribution)


def integrate_power_j(samples: Sequence[tuple[float, float]]) -> float:
    """Joules from (time s, power W) samples by the trapezoid rule."""
    return sum((t1 - t0) * (w0 + w1) / 2.0 for (t0, w0), (t1, w1) in zip(samples, samples[1:]))


def counter_delta(readings: Sequence[int], max_range: int) -> int:
    """Sum of increments of a counter that wraps to 0 after `max_range`; a reading lower than the
    one before means one wrap (sample often enough that two never happen in between)."""
    total = 0
    for before, after in zip(readings, readings[1:]):
        total += after - before if after >= before else after + max_range - before
    return total


class Source(Protocol):
    def begin(self, t: float) -> None: ...
    def sample(self, t: float) -> None: ...
    def end(self, t: float) -> list[ComponentEnergy]: ...


def _component(name: str, energy_j: float, window_s: float, method: str, detail: str) -> ComponentEnergy:
    return ComponentEnergy(name, energy_j, energy_j / window_s if window_s > 0 else 0.0, method, detail)


def job_gpus(cuda_ordinals: Sequence[int], visible_devices: str | None) -> tuple[int | str, ...]:
    """The GPUs (NVML index, or a UUID) behind the CUDA ordinals the job's processes on this node
    use: ordinal k is the k-th entry of CUDA_VISIBLE_DEVICES (`visible_devices`) when set, else
    NVML index k (NVML numbers GPUs in PCI bus order, as CUDA does with CUDA_DEVICE_ORDER=PCI_BUS_ID
    or on a host of one GPU model)."""
    if visible_devices is None:
        return tuple(cuda_ordinals)
    entries = [e.strip() for e in visible_devices.split(",") if e.strip()]
    out: list[int | str] = []
    for k in cuda_ordinals:
        if not 0 <= k < len(entries):
            raise ValueError(f"CUDA device {k} is not among CUDA_VISIBLE_DEVICES={visible_devices!r}")
        out.append(int(entries[k]) if entries[k].isdigit() else entries[k])
    return tuple(out)


class NvmlSource:
    """Per-GPU energy from NVML for the GPUs named (NVML index or UUID): the cumulative counter
    where supported, else integrated power. Components are named by NVML index (gpu3)."""

    def __init__(self, nvml, indices: Sequence[int | str]):
        self.nvml = nvml
        self.handles = []
        for gpu in indices:
            if isinstance(gpu, str):
                handle = nvml.nvmlDeviceGetHandleByUUID(gpu)
                self.handles.append((int(nvml.nvmlDeviceGetIndex(handle)), handle))
            else:
                self.handles.append((gpu, nvml.nvmlDeviceGetHandleByIndex(gpu)))
        self.counter_mj: dict[int, list[int]] = {}
        self.power: dict[int, list[tuple[float, float]]] = {}
        self.t0 = 0.0

    def _read(self, t: float) -> None:
        for i, handle in self.handles:
            if i in self.counter_mj:
                self.counter_mj[i].append(int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle)))
            else:
                self.power[i].append((t, self.nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0))

    def begin(self, t: float) -> None:
        self.t0 = t
        for i, handle in self.handles:
            try:
                self.counter_mj[i] = [int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle))]
            except Exception:  # NVMLError_NotSupported on pre-Volta GPUs
                self.power[i] = [(t, self.nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0)]

    def sample(self, t: float) -> None:
        self._read(t)

    def end(self, t: float) -> list[ComponentEnergy]:
        self._read(t)
        out = []
        for i, _ in self.handles:
            if i in self.counter_mj:
                readings = self.counter_mj[i]
                out.append(_component(f"gpu{i}", (readings[-1] - readings[0]) / 1000.0, t - self.t0, "counter",
                                      "NVML nvmlDeviceGetTotalEnergyConsumption (mJ), end - start"))
            else:
                out.append(_component(f"gpu{i}", integrate_power_j(self.power[i]), t - self.t0, "integrated",
                                      f"NVML nvmlDeviceGetPowerUsage (mW), {len(self.power[i])} samples, trapezoid"))
        return out


class RaplSource:
    """CPU package and DRAM energy from RAPL counters (µJ), wrap-aware."""

    def __init__(self, domains: dict[str, list[Path]]):
        self.domains = domains  # component → domain directories
        self.readings: dict[Path, list[int]] = {}
        self.t0 = 0.0

    @staticmethod
    def discover(root: Path = RAPL_ROOT) -> dict[str, list[Path]]:
        """{"cpu": package domains, "dram": dram domains} with readable counters; empty if none."""
        found: dict[str, list[Path]] = {}
        seen = set()
        for path in sorted(list(root.glob("intel-rapl:*")) + list(root.glob("intel-rapl:*/intel-rapl:*"))):
            try:
                key = path.resolve()
                if key in seen:
                    continue
                seen.add(key)
                name = (path / "name").read_text().strip()
                int((path / "energy_uj").read_text())
                int((path / "max_energy_range_uj").read_text())
            except (OSError, ValueError):
                continue
            if name.startswith("package"):
                found.setdefault("cpu", []).append(path)
            elif name == "dram":
                found.setdefault("dram", []).append(path)
        return found

    def _read(self) -> None:
        for paths in self.domains.values():
            for path in paths:
                self.readings.setdefault(path, []).append(int((path / "energy_uj").read_text()))

    def begin(self, t: float) -> None:
        self.t0 = t
        self._read()

    def sample(self, t: float) -> None:
        self._read()

    def end(self, t: float) -> list[ComponentEnergy]:
        self._read()
        out = []
        for component, paths in self.domains.items():
            uj = sum(counter_delta(self.readings[p], int((p / "max_energy_range_uj").read_text())) for p in paths)
            names = ", ".join(p.name for p in paths)
            out.append(_component(component, uj / 1e6, t - self.t0, "rapl", f"RAPL energy_uj of {names}"))
        return out


def cpu_tdp(model: str | None) -> tuple[float, int, str] | None:
    """(TDP W, threads per socket, source) for a known server CPU model name, else None."""
    for pattern, tdp, threads, source in CPU_TDP:
        if model and re.search(pattern, model):
            return tdp, threads, source
    return None


class EstimatedCpuSource:
    """CPU power estimated as W per visible hardware thread × threads × utilization."""

    def __init__(self, *, w_per_thread: float, threads: int, basis: str,
                 cpu_percent: Callable[[], float]):
        self.w = w_per_thread * threads
        self.threads = threads
        self.basis = basis
        self.cpu_percent = cpu_percent
        self.points: list[tuple[float, float]] = []
        self.t_last = 0.0
        self.t0 = 0.0
        self.energy_j = 0.0

    def begin(self, t: float) -> None:
        self.cpu_percent()  # primes psutil: the next call measures from here
        self.t0 = self.t_last = t

    def sample(self, t: float) -> None:
        utilization = self.cpu_percent() / 100.0
        self.energy_j += self.w * utilization * (t - self.t_last)
        self.points.append((t, utilization))
        self.t_last = t

    def end(self, t: float) -> list[ComponentEnergy]:
        self.sample(t)
        window = t - self.t0
        mean_util = self.energy_j / (self.w * window) if self.w and window > 0 else 0.0
        return [_component("cpu", self.energy_j, window, "estimated",
                           f"{self.basis}; x {self.threads} visible threads = {self.w:.1f} W at full load; "
                           f"x mean utilization {mean_util:.1%} (psutil.cpu_percent)")]


class EstimatedMemorySource:
    """Memory power estimated from installed RAM (no utilization dependence)."""

    def __init__(self, total_bytes: int, w_per_gb: float = MEMORY_W_PER_GB):
        self.gb = total_bytes / 1e9
        self.w = self.gb * w_per_gb
        self.w_per_gb = w_per_gb
        self.t0 = 0.0

    def begin(self, t: float) -> None:
        self.t0 = t

    def sample(self, t: float) -> None:
        pass

    def end(self, t: float) -> list[ComponentEnergy]:
        window = t - self.t0
        return [_component("dram", self.w * window, window, "estimated",
                           f"{self.w_per_gb} W/GB x {self.gb:.1f} GB installed (codecarbon's 3 W per 8 GB)")]


def discover_sources(device_type: str, *, gpus: Sequence[int | str] = (0,), processes: int = 1,
                     cpu_tdp_w: float | None = None, nvml=None,
                     rapl_root: Path = RAPL_ROOT, cpu_model: str | None = None,
                     cpu_percent: Callable[[], float] | None = None,
                     threads: int | None = None, memory_bytes: int | None = None
                     ) -> tuple[list[Source], list[str], HostShare]:
    """The best source for each component on this machine, what is missing and why, and the
    job's share of the host. A GPU run reads only `gpus` (the job's on this node, see
    :func:`job_gpus`); a CPU run's devices are its `processes` on this node. Every argument
    after `processes` is a seam for tests (defaults read this machine)."""
    import os

    import psutil

    sources: list[Source] = []
    missing: list[str] = []
    if device_type == "cuda":
        host_gpus = None
        try:
            if nvml is None:
                import pynvml as nvml
            nvml.nvmlInit()
            host_gpus = int(nvml.nvmlDeviceGetCount())
        except Exception as err:
            missing.append(f"gpu: NVML unavailable ({err.__class__.__name__}); GPU energy not measured")
        if host_gpus is not None:
            outside = [g for g in gpus if isinstance(g, int) and not 0 <= g < host_gpus]
            try:
                if outside:
                    raise LookupError(f"{outside} not among the host's {host_gpus} NVML devices")
                sources.append(NvmlSource(nvml, gpus))
            except Exception as err:  # an unknown UUID, a MIG instance: NVMLError_NotFound and kin
                missing.append(f"gpu: the job's GPUs {list(gpus)} not readable through NVML "
                               f"({err.__class__.__name__}: {err}); GPU energy not measured")
        share = HostShare.of_gpus(len(gpus), host_gpus)
    else:
        missing.append("gpu: no CUDA device in this run")
        share = HostShare.of_cpu(processes)
    rapl = RaplSource.discover(rapl_root)
    if rapl:
        sources.append(RaplSource(rapl))
    else:
        missing.append(f"rapl: no readable RAPL counters under {rapl_root}; CPU and memory are estimated")
    if "cpu" not in rapl:
        from harness.measure.env import cpu_model as read_cpu_model

        model = cpu_model if cpu_model is not None else read_cpu_model()
        threads = threads or os.cpu_count() or 1
        if cpu_tdp_w is not None:
            basis = f"user-given TDP {cpu_tdp_w:g} W for the visible CPUs"
            w_per_thread = cpu_tdp_w / threads
        elif (known := cpu_tdp(model)) is not None:
            tdp, part_threads, source = known
            w_per_thread = tdp / part_threads
            basis = f"TDP {tdp:g} W / {part_threads} threads of {model} ({source})"
        else:
            w_per_thread = DEFAULT_W_PER_THREAD
            basis = (f"CPU {model!r} not in the TDP table: assumed {w_per_thread:.2f} W per thread "
                     "(median of the table's TDP per thread)")
        sources.append(EstimatedCpuSource(w_per_thread=w_per_thread, threads=threads, basis=basis,
                                          cpu_percent=cpu_percent or (lambda: psutil.cpu_percent(interval=None))))
    if "dram" not in rapl:
        sources.append(EstimatedMemorySource(memory_bytes or psutil.virtual_memory().total))
    return sources, missing, share


class PowerSampler:
    """Runs `sources` on a daemon thread every `interval_s` between start() and stop()."""

    def __init__(self, sources: Sequence[Source], missing: Sequence[str] = (), *, interval_s: float = 0.1,
                 clock: Callable[[], float] = time.monotonic):
        if not interval_s > 0:
            raise ValueError("interval_s must be > 0")
        self.sources = list(sources)
        self.missing = tuple(missing)
        self.interval_s = interval_s
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples = 0
        self.t0 = 0.0
        self.reading: EnergyReading | None = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            t = self.clock()
            for source in self.sources:
                source.sample(t)
            self.samples += 1

    def start(self) -> None:
        self.t0 = self.clock()
        for source in self.sources:
            source.begin(self.t0)
        self._thread = threading.Thread(target=self._loop, name="harness-power-sampler", daemon=True)
        self._thread.start()

    def __enter__(self) -> "PowerSampler":
        """Sample over a `with` block (the measured window); `reading` holds the result after it."""
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.reading = self.stop()

    def stop(self) -> EnergyReading:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        t = self.clock()
        components = tuple(c for source in self.sources for c in source.end(t))
        return EnergyReading(t - self.t0, self.interval_s, self.samples, components, self.missing)
