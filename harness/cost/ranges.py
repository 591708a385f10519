"""Goodput and ranges: the bill beside the steady-state figures, and a low–high on every figure.

A rate from short timed steps (or a published steady-state rate) gives *steady-state* time. Whole
runs take longer: restarts, evaluation, checkpointing, failures, warm-up. Goodput g is the share
of the bill's device-hours that were steady-state training; the bill = steady state / g.

* Default g = 1.0, labelled "steady state only". `--goodput X` sets it.
* Published anchors (REFERENCE §7), shown as the range labs have seen:
  PaLM 540B: about 31% end to end against 46.2% steady-state MFU: g ≈ 0.67;
  Llama 3.1 405B: 34.6% end to end (model card GPU-hours, 6·N·D at 989.5 TFLOP/s) against
  38–43% steady state (Llama 3 paper): g = 0.80–0.91.

Ranges. Device-hours, wall time, cost, kWh·PUE and CO2e each carry (low, high) from the
inputs' ranges: utilization ± its error (calibration or published spread; time ∝ 1/utilization),
scaling efficiency (a measured or user value is a point; an assumed ideal 1.0 on N > 1 devices
takes the lowest weak-scaling efficiency published in the evidence table as its low end), goodput
(the user's value is a point; the default 1.0 spans the labs' lowest anchor to 1.0), and the
price spread over the on-demand offers (cost only). Energy and CO2e scale with device-hours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

STEADY_STATE = "default 1.0: steady state only (no restarts, evaluation, checkpointing or failures)"
GOODPUT_ANCHORS = (
    {"run": "PaLM 540B", "goodput_low": 0.67, "goodput_high": 0.67,
     "how": "about 31% MFU end to end (8.4M TPU v4 chip-hours for 2.56e24 FLOPs) / 46.2% steady state "
            "(Chowdhery et al. 2022, Table 3; REFERENCE §7)"},
    {"run": "Llama 3.1 405B", "goodput_low": 34.6 / 43.0, "goodput_high": 34.6 / 38.0,
     "how": "34.6% end to end (model card: 30.84M H100-hours, ~15T tokens, 6·N·D at 989.5 TFLOP/s) / 38–43% "
            "steady state (Llama 3 paper; REFERENCE §7)"},
)
LAB_GOODPUT = (min(a["goodput_low"] for a in GOODPUT_ANCHORS), max(a["goodput_high"] for a in GOODPUT_ANCHORS))


@dataclass(frozen=True)
class Spread:
    """One input's range as factors on device-hours: (low factor, high factor) and why."""

    name: str
    low: float
    high: float
    source: str


def published_scaling_low() -> tuple[float, str] | None:
    """The lowest weak-scaling efficiency the evidence table shows: per-device rates of one model,
    GPU, precision, length, per-device batch and parallelism label (less its device count) on
    different device counts, the larger against the smaller."""
    import re

    from harness.cost.evidence import load_published

    groups: dict[tuple, list] = {}
    for r in load_published():
        rate = r.tokens_per_s_per_device
        if rate is None or r.devices is None:
            continue
        key = (r.model, r.gpu, r.dtype, r.seq_len, r.micro_batch, r.grad_accum,
               re.sub(r"\d+", "N", r.parallelism), r.url)
        groups.setdefault(key, []).append(r)
    worst = None
    for rows in groups.values():
        rows = sorted(rows, key=lambda r: r.devices)
        for a, b in zip(rows, rows[1:]):
            if b.devices > a.devices:
                eff = b.tokens_per_s_per_device / a.tokens_per_s_per_device
                if worst is None or eff < worst[0]:
                    worst = (eff, f"{b.id} against {a.id}: {eff:.3f} per device from {a.devices} to {b.devices} devices")
    return worst


def goodput_of(value: float | None) -> dict[str, Any]:
    """The goodput used, its source, the published anchors and the labs' range."""
    return {"value": 1.0 if value is None else value,
            "source": STEADY_STATE if value is None else "user-given (--goodput)",
            "anchors": [dict(a) for a in GOODPUT_ANCHORS], "lab_range": list(LAB_GOODPUT)}


def spreads(utilization: float, utilization_error: float | None, scaling_source: str, devices: int,
            goodput: float | None) -> list[Spread]:
    """Each input's range as factors on the device-hours at the chosen goodput."""
    out = []
    if utilization_error:
        lo, hi = max(utilization - utilization_error, 1e-4), min(utilization + utilization_error, 1.0)
        out.append(Spread("utilization", utilization / hi, utilization / lo,
                          f"utilization {utilization:.3f} ± {utilization_error:.3f} ({lo:.3f}–{hi:.3f})"))
    if devices > 1 and scaling_source.startswith("assumed: ideal"):
        worst = published_scaling_low()
        if worst is not None:
            out.append(Spread("scaling_efficiency", 1.0, 1.0 / worst[0],
                              f"scaling efficiency assumed 1.0; low end {worst[0]:.3f}, the lowest published "
                              f"weak scaling ({worst[1]})"))
    if goodput is None:
        out.append(Spread("goodput", 1.0, 1.0 / LAB_GOODPUT[0],
                          f"goodput 1.0 (steady state) down to {LAB_GOODPUT[0]:.2f}, the lowest the labs' runs show"))
    return out


def _lohi(value: float | None, low: float, high: float) -> dict[str, Any] | None:
    return None if value is None else {"value": value, "low": value * low, "high": value * high}


def bill(device_hours: float, devices: int, energy: dict[str, Any] | None, prices_per_gpu_hour: Sequence[float],
         utilization: float, utilization_error: float | None, scaling_source: str,
         goodput: float | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(bill, ranges) from the steady-state `device_hours` (and the energy for them).

    bill: the figures at steady state, at the chosen goodput, and over the labs' goodput range.
    ranges: value (at the chosen goodput) with low–high from `spreads`; cost from the lowest price
    at the low end to the highest at the high end."""
    g = 1.0 if goodput is None else goodput
    prices = sorted(prices_per_gpu_hour)

    def figures(scale_low: float, scale_high: float | None = None) -> dict[str, Any]:
        hi = scale_low if scale_high is None else scale_high
        dh_lo, dh_hi = device_hours * scale_low, device_hours * hi
        row = {"device_hours": dh_lo, "wall_hours": dh_lo / devices,
               "cost_usd_min": prices[0] * dh_lo if prices else None,
               "cost_usd_max": prices[-1] * dh_hi if prices else None,
               "kwh_pue": None if energy is None else energy["kwh_pue"] * scale_low,
               "co2e_kg": None if energy is None else energy["co2e_kg"] * scale_low}
        if scale_high is not None:
            row.update({"device_hours_max": dh_hi, "wall_hours_max": dh_hi / devices,
                        "kwh_pue_max": None if energy is None else energy["kwh_pue"] * hi,
                        "co2e_kg_max": None if energy is None else energy["co2e_kg"] * hi})
        return row

    bill_out = {"steady_state": figures(1.0), "at_goodput": {"goodput": g, **figures(1.0 / g)},
                "at_lab_goodput": {"goodput_range": list(LAB_GOODPUT),
                                   **figures(1.0 / LAB_GOODPUT[1], 1.0 / LAB_GOODPUT[0])}}
    parts = spreads(utilization, utilization_error, scaling_source, devices, goodput)
    low = math.prod(p.low for p in parts)
    high = math.prod(p.high for p in parts)
    dh = device_hours / g
    ranges = {"device_hours": _lohi(dh, low, high), "wall_hours": _lohi(dh / devices, low, high),
              "cost_usd": None if not prices else {"value": prices[0] * dh, "low": prices[0] * dh * low,
                                                   "high": prices[-1] * dh * high},
              "kwh_pue": _lohi(None if energy is None else energy["kwh_pue"] / g, low, high),
              "co2e_kg": _lohi(None if energy is None else energy["co2e_kg"] / g, low, high),
              "from": [p.source for p in parts] + ([f"price spread {prices[0]:.3f}–{prices[-1]:.3f} $/GPU-hour "
                                                     "(on-demand offers; cost only)"] if prices else []),
              "at_goodput": g}
    return bill_out, ranges
