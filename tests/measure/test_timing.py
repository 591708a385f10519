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


class RecordingWindow:
    """A context manager that notes, on the fake clock's time line, when it is entered and left."""

    def __init__(self, clock, log):
        self.clock, self.log = clock, log

    def __enter__(self):
        self.log.append(("enter", self.clock._now))
        return self

    def __exit__(self, *exc):
        self.log.append(("exit", self.clock._now, exc[0]))
        return False


def test_the_window_wraps_the_measured_steps_only():
    clock = FakeClock([9.0, 5.0, 1.0, 2.0, 3.0])
    log = []
    times = time_steps(lambda: log.append(("step", clock._now)), warmup=2, steps=3, clock=clock,
                       on_step=lambda phase, i, s: log.append((phase, i)), window=RecordingWindow(clock, log))
    # entered after the last warm-up step (t = 9 + 5), left after the last measured one (t = 14 + 6)
    assert log == [("step", 0.0), ("warmup", 0), ("step", 9.0), ("warmup", 1),
                   ("enter", 14.0),
                   ("step", 14.0), ("measure", 0), ("step", 15.0), ("measure", 1), ("step", 17.0), ("measure", 2),
                   ("exit", 20.0, None)]
    assert times.warmup_s == (9.0, 5.0) and times.steps_s == (1.0, 2.0, 3.0)


def test_the_window_is_left_when_a_measured_step_fails():
    clock = FakeClock([1.0, 1.0])
    log = []
    calls = iter([None, None, RuntimeError("out of memory")])

    def step():
        failure = next(calls)
        if failure:
            raise failure

    with pytest.raises(RuntimeError, match="out of memory"):
        time_steps(step, warmup=1, steps=3, clock=clock, window=RecordingWindow(clock, log))
    assert log == [("enter", 1.0), ("exit", 2.0, RuntimeError)]


def test_the_power_sampler_as_window_covers_exactly_the_measured_time():
    from harness.measure.energy import ComponentEnergy, PowerSampler

    clock = FakeClock([4.0, 0.5, 0.25, 0.25])
    seen = []

    class Source:  # 100 W for as long as it is sampled
        def begin(self, t):
            seen.append(("begin", t))

        def sample(self, t):
            pass

        def end(self, t):
            seen.append(("end", t))
            begun = seen[0][1]
            return [ComponentEnergy("gpu0", 100.0 * (t - begun), 100.0, "counter", "stand-in")]

    sampler = PowerSampler([Source()], interval_s=3600.0, clock=lambda: clock._now)
    times = time_steps(lambda: None, warmup=1, steps=3, clock=clock, window=sampler)
    assert seen == [("begin", 4.0), ("end", 5.0)]  # the 4 s warm-up is outside the window
    assert sampler.reading.window_s == times.total_s == 1.0
    assert sampler.reading.total_j == 100.0
