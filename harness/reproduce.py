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

from harness.estimate import FULLY_LOADED_MULTIPLIER, gpu_key
from harness.plans import load_plan

# (model, parameters as the paper names them, plan, paper one-run USD, paper fully-loaded USD)
AI21_ROWS = (
    ("BERT-base", 110e6, "bert-pretraining", 2_500.0, 50_000.0),
    ("BERT-large", 340e6, "bert-pretraining", 10_000.0, 200_000.0),
    ("1.5B on the BERT corpus", 1.5e9, "bert-pretraining", 80_000.0, 1_600_000.0),
    # "well above $1.3 million for a single run"; ~$10M for the whole project (not 20x).
    ("T5-11B", 11e9, "t5-c4", 1_300_000.0, None),
)
AI21_SOURCE = "Sharir, Peleg, Shoham (AI21 Labs) 2020, arXiv 2004.08900"


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
    30% assumption), priced from `offers` (on-demand only: the paper used list prices)."""
    from harness.errors import ConfigError
    from harness.estimate import DEFAULT_UTILIZATION
    from harness.peaks import datasheet_by_name

    if utilization is not None and not 0 < utilization <= 1:
        raise ConfigError("--utilization", f"must be in (0, 1], got {utilization}")
    row, peak = datasheet_by_name(gpu, dtype)
    util = DEFAULT_UTILIZATION if utilization is None else utilization
    util_source = ("assumed (the paper gives none): 30% MFU" if utilization is None
                   else "user-given (--utilization)")
    prices = sorted(o.usd_per_gpu_hour for o in offers if not o.spot and gpu_key(o.gpu) == gpu_key(row.gpu))
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
