"""Figures draw names from records: a "$" in one (a device name as reported, or any label) is text,
never matplotlib mathtext that fails to parse."""

from __future__ import annotations

from harness.report.figures import peaks_figure, scaling_figure, step_time_figure
from tests.conftest import make_record


def test_a_dollar_in_a_device_name_draws_as_text():
    record = make_record({"device": {"type": "cuda", "name": "$\\frac{$ GPU", "count": 1}})
    for figure in (step_time_figure(record), peaks_figure(record), scaling_figure([record])):
        assert figure.png.startswith(b"\x89PNG")
    assert "$\\frac{$ GPU" in step_time_figure(record).title  # the HTML title keeps the name as it is
