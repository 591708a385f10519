"""Time: run warm-up and measured steps under a clock, keep every raw step time.

CPU steps use ``time.perf_counter``; CUDA steps are bracketed by CUDA events with a device
synchronisation before and after each step, so each time covers the step's kernels only.
The clock is injectable so that tests run on a fake, deterministic clock.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from typing import Callable, Protocol

from harness.steps import StepTimes


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


def time_steps(step: Callable[[], object], *, warmup: int, steps: int, clock: Clock,
               on_step: Callable[[str, int, float], None] | None = None,
               window: AbstractContextManager | None = None) -> StepTimes:
    """Run `warmup` then `steps` calls of `step`, each timed alone by `clock`. `window` (a
    context manager, e.g. the power sampler) is entered just before the first measured step and
    left just after the last one, so it covers the measured steps only."""
    times: dict[str, list[float]] = {"warmup": [], "measure": []}

    def run(phase: str, n: int) -> None:
        for i in range(n):
            token = clock.start()
            step()
            seconds = clock.stop(token)
            times[phase].append(seconds)
            if on_step is not None:
                on_step(phase, i, seconds)

    run("warmup", warmup)
    with window if window is not None else nullcontext():
        run("measure", steps)
    return StepTimes(tuple(times["warmup"]), tuple(times["measure"]))
