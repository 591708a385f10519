import itertools

import pytest

from harness.measure.timing import PerfCounterClock, StepTimes, time_steps


class FakeClock:
    """A clock whose successive step durations are given in advance."""

    name = "fake"

    def __init__(self, durations):
        self._durations = iter(durations)
        self._now = 0.0

    def start(self):
        return self._now

    def stop(self, token):
        self._now = token + next(self._durations)
        return self._now - token


def test_warmup_is_timed_but_kept_apart():
    calls = []
    times = time_steps(lambda: calls.append(1), warmup=2, steps=4,
                       clock=FakeClock([9.0, 5.0, 1.0, 2.0, 3.0, 4.0]))
    assert len(calls) == 6
    assert times.warmup_s == (9.0, 5.0)
    assert times.steps_s == (1.0, 2.0, 3.0, 4.0)


def test_statistics_by_hand():
    times = StepTimes((), (1.0, 2.0, 3.0, 4.0))
    assert times.median_s == 2.5
    assert times.total_s == 10.0
    # inclusive quartiles of 1,2,3,4: Q1 = 1.75, Q3 = 3.25
    assert times.iqr_s == pytest.approx(1.5)
    # sample stdev of 1..4 = sqrt(5/3); mean 2.5
    assert times.cv == pytest.approx((5 / 3) ** 0.5 / 2.5)
    assert times.warnings() and "CV" in times.warnings()[0]


def test_steady_steps_do_not_warn():
    assert StepTimes((), (1.0, 1.01, 0.99, 1.0)).warnings() == []


def test_throughput_is_total_over_total_not_mean_of_rates():
    times = StepTimes((), (1.0, 3.0))
    assert times.per_s(100) == pytest.approx(200 / 4.0)
    mean_of_rates = (100 / 1.0 + 100 / 3.0) / 2
    assert times.per_s(100) != pytest.approx(mean_of_rates)


def test_perf_counter_clock_uses_the_injected_counter():
    ticks = itertools.count(start=10.0, step=0.5)
    clock = PerfCounterClock(now=lambda: next(ticks))
    assert clock.stop(clock.start()) == 0.5
