"""Step times: the raw times of one timed window and the statistics derived from them.

Pure values (no torch): the measuring side fills them, the record derives its figures from them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

CV_WARN_THRESHOLD = 0.10


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
