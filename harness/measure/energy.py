"""Sample: power and energy beside the timed steps, one source per component, each with its method.

Methods, best first:
  counter     NVML's cumulative energy counter (mJ since driver load; Volta and newer)
  integrated  NVML power samples (mW) integrated over time (trapezoid rule)
  rapl        the kernel's RAPL counters under /sys/class/powercap (µJ, wrapping)
  estimated   CPU: TDP × the visible share of the part × utilization (psutil);
              memory: 0.375 W per GB installed. Never silent: `method` and `detail` say so.

A :class:`PowerSampler` runs the sources on a background thread at a fixed interval between
`start()` and `stop()`, which the run calls around the measured steps only.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

from harness.results.record import ComponentEnergyInfo, Energy

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
                   missing: Sequence[str] = ()) -> Energy:
        """The record's energy: per step and per token over the measured steps (the window's
        average power × the measured time), every component's method, and what was not read
        (`missing` adds to the sampler's own list)."""
        scale = measured_s / self.window_s if self.window_s else 0.0
        total = self.total_j * scale
        return Energy(
            joules_per_step=total / steps, joules_per_token=total / (steps * tokens_per_step),
            avg_watts=self.total_j / self.window_s if self.window_s else 0.0,
            components=[ComponentEnergyInfo(**asdict(c), joules_per_step=c.energy_j * scale / steps)
                        for c in self.components],
            methods={c.component: c.method for c in self.components},
            estimated=any(c.method == "estimated" for c in self.components),
            missing=[*self.missing, *missing], window_s=self.window_s, interval_s=self.interval_s,
            samples=self.samples)


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


class NvmlSource:
    """Per-GPU energy from NVML: the cumulative counter where supported, else integrated power."""

    def __init__(self, nvml, indices: Sequence[int]):
        self.nvml = nvml
        self.handles = [(i, nvml.nvmlDeviceGetHandleByIndex(i)) for i in indices]
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


def discover_sources(device_type: str, *, cpu_tdp_w: float | None = None, nvml=None,
                     rapl_root: Path = RAPL_ROOT, cpu_model: str | None = None,
                     cpu_percent: Callable[[], float] | None = None,
                     threads: int | None = None, memory_bytes: int | None = None
                     ) -> tuple[list[Source], list[str]]:
    """The best source for each component on this machine, and what is missing and why.
    Every argument after `device_type` is a seam for tests (defaults read this machine)."""
    import os

    import psutil

    sources: list[Source] = []
    missing: list[str] = []
    if device_type == "cuda":
        try:
            if nvml is None:
                import pynvml as nvml
            nvml.nvmlInit()
            sources.append(NvmlSource(nvml, range(nvml.nvmlDeviceGetCount())))
        except Exception as err:
            missing.append(f"gpu: NVML unavailable ({err.__class__.__name__}); GPU energy not measured")
    else:
        missing.append("gpu: no CUDA device in this run")
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
    return sources, missing


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
