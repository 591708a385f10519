"""Reproduce: published cost tables recomputed from their stated inputs, beside the paper.

AI21 (Sharir, Peleg, Shoham 2020, arXiv 2004.08900) priced BERT-style models on Wikipedia +
BookCorpus at cloud list prices, with no per-GPU-hour price or utilization given. We rebuild each
row from FLOPs — 6·N·tokens of the BERT recipe (Kaplan et al. 2020; Chinchilla C ≈ 6ND) — a
stated GPU, precision and utilization, and the bundled snapshot prices, and show the ratio to the
paper and the utilization the paper's figure would imply at those prices.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

from harness.cost.estimate import FULLY_LOADED_MULTIPLIER, gpu_key
from harness.cost.plans import load_plan
from harness.published import AI21_ROWS, STRUBELL_LBS_PER_KWH, STRUBELL_PUE, STRUBELL_ROWS

@dataclass(frozen=True)
class Ai21Row:
    """One row of the AI21 table, recomputed. USD; hours are GPU-hours of one run."""

    model: str
    params: float
    plan: str
    tokens: float
    flops: float
    gpu: str
    dtype: str
    peak_flops_per_s: float
    utilization: float
    utilization_source: str
    device_hours: float
    usd_per_gpu_hour_min: float | None
    usd_per_gpu_hour_max: float | None
    cost_usd_min: float | None
    cost_usd_max: float | None
    fully_loaded_usd_min: float | None
    fully_loaded_usd_max: float | None
    paper_usd_one_run: float
    paper_usd_fully_loaded: float | None
    ratio_min: float | None            # computed / paper, one run
    ratio_max: float | None
    implied_utilization_min: float | None  # that would give the paper's one-run figure
    implied_utilization_max: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reproduce_ai21(offers: Iterable, *, gpu: str = "V100 SXM2", dtype: str = "fp16",
                   utilization: float | None = None) -> list[Ai21Row]:
    """The AI21 rows at `gpu`/`dtype` (datasheet peak) × `utilization` (default: the labelled
    30% assumption), priced from `offers` (on-demand instances only: the paper used list prices; GPU-only rows,
    which leave out the host VM, are not used)."""
    from harness.errors import ConfigError
    from harness.cost.estimate import DEFAULT_UTILIZATION
    from harness.hardware import datasheet_by_name

    if utilization is not None and not 0 < utilization <= 1:
        raise ConfigError("reproduce.utilization", f"must be in (0, 1], got {utilization}")
    row, peak = datasheet_by_name(gpu, dtype)
    util = DEFAULT_UTILIZATION if utilization is None else utilization
    util_source = ("assumed (the paper gives none): 30% MFU" if utilization is None
                   else "user-given (--utilization)")
    prices = sorted(o.usd_per_gpu_hour for o in offers  # whole-instance list prices: no spot, no GPU-only rows
                    if not o.spot and not o.gpu_only and gpu_key(o.gpu) == gpu_key(row.gpu))
    low, high = (prices[0], prices[-1]) if prices else (None, None)
    rows = []
    for model, params, plan_name, paper, paper_loaded in AI21_ROWS:
        tokens = sum(p.tokens_total(None) for p in load_plan(plan_name).phases)
        flops = 6 * params * tokens
        hours = flops / (peak * util) / 3600.0

        def cost(price):
            return None if price is None else hours * price

        def implied(c):
            return None if c is None else util * c / paper

        rows.append(Ai21Row(
            model=model, params=params, plan=plan_name, tokens=tokens, flops=flops, gpu=row.gpu,
            dtype=dtype, peak_flops_per_s=peak, utilization=util, utilization_source=util_source,
            device_hours=hours, usd_per_gpu_hour_min=low, usd_per_gpu_hour_max=high,
            cost_usd_min=cost(low), cost_usd_max=cost(high),
            fully_loaded_usd_min=None if low is None else cost(low) * FULLY_LOADED_MULTIPLIER,
            fully_loaded_usd_max=None if high is None else cost(high) * FULLY_LOADED_MULTIPLIER,
            paper_usd_one_run=paper, paper_usd_fully_loaded=paper_loaded,
            ratio_min=None if low is None else cost(low) / paper,
            ratio_max=None if high is None else cost(high) / paper,
            implied_utilization_min=implied(cost(low)), implied_utilization_max=implied(cost(high))))
    return rows


@dataclass(frozen=True)
class StrubellRow:
    """One Table 3 row: the paper's columns beside the formula's. Energy in kWh·PUE, CO2e in lbs."""

    model: str
    hardware: str
    accelerators: int
    hours: float
    power_w: float | None
    kwh_paper: float | None
    kwh_computed: float | None
    kwh_diff_pct: float | None
    co2_lbs_paper: float | None
    co2_lbs_computed: float | None
    co2_diff_pct: float | None
    within_rounding: bool | None       # computed rounds to the paper's integer, or within 0.5%
    cost_paper_usd_min: float
    cost_paper_usd_max: float
    implied_usd_per_accelerator_hour_min: float
    implied_usd_per_accelerator_hour_max: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _close(computed: float, paper: float) -> bool:
    return round(computed) == paper or abs(computed - paper) <= 0.005 * paper


def reproduce_strubell() -> list[StrubellRow]:
    """Table 3 recomputed: kWh·PUE = 1.58 · hours · W / 1000; CO2e = 0.954 lbs/kWh · kWh·PUE.
    The cloud cost is explained as hours × accelerators × an implied price per accelerator-hour."""
    rows = []
    for model, hardware, count, power, hours, kwh_paper, co2_paper, cost_min, cost_max in STRUBELL_ROWS:
        kwh = None if power is None else STRUBELL_PUE * hours * power / 1000.0
        co2 = None if kwh is None else STRUBELL_LBS_PER_KWH * kwh
        rows.append(StrubellRow(
            model=model, hardware=hardware, accelerators=count, hours=hours, power_w=power,
            kwh_paper=kwh_paper, kwh_computed=kwh,
            kwh_diff_pct=None if kwh is None else 100.0 * (kwh - kwh_paper) / kwh_paper,
            co2_lbs_paper=co2_paper, co2_lbs_computed=co2,
            co2_diff_pct=None if co2 is None else 100.0 * (co2 - co2_paper) / co2_paper,
            within_rounding=None if kwh is None else _close(kwh, kwh_paper) and _close(co2, co2_paper),
            cost_paper_usd_min=cost_min, cost_paper_usd_max=cost_max,
            implied_usd_per_accelerator_hour_min=cost_min / (hours * count),
            implied_usd_per_accelerator_hour_max=cost_max / (hours * count)))
    return rows
