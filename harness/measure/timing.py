"""Time: run warm-up and measured steps under a clock, keep every raw step time.

CPU steps use ``time.perf_counter``; CUDA steps are bracketed by CUDA events with a device
synchronisation before and after each step, so each time covers the step's kernels only.
The clock is injectable so that tests run on a fake, deterministic clock.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Protocol

CV_WARN_THRESHOLD = 0.10


class Clock(Protocol):
    """Measures one step: ``token = start(); ...; seconds = stop(token)``."""

    def start(self) -> object: ...

    def stop(self, token: object) -> float: ...


class PerfCounterClock:
    """Wall-clock time from a monotonic counter (default ``time.perf_counter``), in seconds."""

    name = "perf_counter"

    def __init__(self, now: Callable[[], float] = time.perf_counter):
        self._now = now

    def start(self) -> float:
        return self._now()

    def stop(self, token: float) -> float:
        return self._now() - token


class CudaEventClock:
    """CUDA events around the step, with a synchronisation on each side; seconds."""

    name = "cuda_event"

    def __init__(self, device):
        import torch

        self._torch = torch
        self._device = device

    def start(self):
        torch = self._torch
        torch.cuda.synchronize(self._device)
        begin = torch.cuda.Event(enable_timing=True)
        begin.record()
        return begin

    def stop(self, begin) -> float:
        torch = self._torch
        end = torch.cuda.Event(enable_timing=True)
        end.record()
        torch.cuda.synchronize(self._device)
        return begin.elapsed_time(end) / 1000.0  # elapsed_time is in milliseconds


def clock_for(device_type: str) -> Clock:
    """The right clock for a device type ('cuda' → CUDA events, otherwise perf_counter)."""
    return CudaEventClock("cuda") if device_type == "cuda" else PerfCounterClock()


@dataclass(frozen=True)
class StepTimes:
    """Raw per-step times in seconds; statistics are derived from `steps_s` only."""

    warmup_s: tuple[float, ...]
    steps_s: tuple[float, ...]

    @property
    def total_s(self) -> float:
        return sum(self.steps_s)

    @property
    def median_s(self) -> float:
        return statistics.median(self.steps_s)

    @property
    def mean_s(self) -> float:
        return statistics.fmean(self.steps_s)

    @property
    def iqr_s(self) -> float:
        """Interquartile range (inclusive quartiles, linear interpolation), seconds."""
        if len(self.steps_s) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.steps_s, n=4, method="inclusive")
        return q3 - q1

    @property
    def cv(self) -> float:
        """Coefficient of variation: sample standard deviation / mean (0 for one step)."""
        if len(self.steps_s) < 2:
            return 0.0
        return statistics.stdev(self.steps_s) / self.mean_s

    def warnings(self) -> list[str]:
        """Human-readable warnings about the spread of the measured steps."""
        if self.cv > CV_WARN_THRESHOLD:
            return [f"step times vary: CV {self.cv:.1%} exceeds {CV_WARN_THRESHOLD:.0%}; "
                    "use more steps or a quieter machine"]
        return []

    def per_s(self, units_per_step: float) -> float:
        """Throughput: units over the total measured time (never a mean of per-step rates)."""
        return units_per_step * len(self.steps_s) / self.total_s


def time_steps(step: Callable[[], object], *, warmup: int, steps: int, clock: Clock,
               on_step: Callable[[str, int, float], None] | None = None) -> StepTimes:
    """Run `warmup` then `steps` calls of `step`, each timed alone by `clock`."""
    times: dict[str, list[float]] = {"warmup": [], "measure": []}
    for phase, n in (("warmup", warmup), ("measure", steps)):
        for i in range(n):
            token = clock.start()
            step()
            seconds = clock.stop(token)
            times[phase].append(seconds)
            if on_step is not None:
                on_step(phase, i, seconds)
    return StepTimes(tuple(times["warmup"]), tuple(times["measure"]))
