"""Reproduce: published cost tables recomputed from their stated inputs, beside the paper.

AI21 (Sharir, Peleg, Shoham 2020, arXiv 2004.08900) priced BERT-style models on Wikipedia +
BookCorpus at cloud list prices, with no per-GPU-hour price or utilization given. We rebuild each
row from FLOPs — 6·N·tokens of the BERT recipe (Kaplan et al. 2020; Chinchilla C ≈ 6ND) — a
stated GPU, precision and utilization, and the bundled snapshot prices, and show the ratio to the
paper and the utilization the paper's figure would imply at those prices.

`reproduce_runs` puts public training bills (Llama 3.1, GPT-3, PaLM, nanoGPT, BERT-base) beside
this project's steady-state projection at its best published evidence (harness.cost.evidence).
"""

from __future__ import annotations

import functools
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


# ---- public training runs: the bill beside this project's projection ---------------------------

LLAMA_CARD = ("Llama 3.1 model card (meta-llama/llama-models, models/llama3_1/MODEL_CARD.md, "
              "https://github.com/meta-llama/llama-models/blob/1b5892739868e5333fb7f022ba91218f0ae5f9c2/models/llama3_1/MODEL_CARD.md)")
TPU_V4_BF16 = 275e12  # Google Cloud TPU v4: 275 TFLOP/s bf16 per chip (the peak PaLM's MFU is against)
PALM_SHAPE = {"params": 540.35e9, "layers": 118, "heads": 48, "head_dim": 256, "seq_len": 2048}


@dataclass(frozen=True)
class PublicRun:
    """A public training run as published: what was trained, on what, for how long."""

    name: str
    preset: str | None
    params: float                 # as the source names them
    seq_len: int
    tokens: float
    tokens_source: str
    gpu: str                      # datasheet row, or "TPU v4"
    dtype: str
    devices: int | None
    device_hours: float | None    # published GPU/chip-hours of the run; None: not published
    hours_source: str
    published_flops: float | None = None
    steady_mfu: tuple[float, float] | None = None  # published steady-state MFU (low, high), where the source gives it
    steady_source: str | None = None
    estimate_note: str | None = None  # where the published figure is itself an estimate or rounded
    plan: str | None = None          # a packaged plan for the tokens (BERT's two lengths)
    context: str | None = None       # published facts that explain the gap


PUBLIC_RUNS = (
    PublicRun("Llama 3.1 8B", "llama3.1-8b", 8.03e9, 8192, 15e12, "\"~15 trillion tokens\" (model card)", "H100 SXM",
              "bf16", None, 1.46e6, f"1.46M H100-80GB GPU-hours, total GPU time ({LLAMA_CARD})",
              estimate_note="tokens are \"~15 trillion\" (rounded); hours are the card's total, not broken down",
              context="the card's hours are total GPU time for the model; it does not say how many GPUs or for how long"),
    PublicRun("Llama 3.1 70B", "llama3.1-70b", 70.6e9, 8192, 15e12, "\"~15 trillion tokens\" (model card)", "H100 SXM",
              "bf16", None, 7.0e6, f"7.0M H100-80GB GPU-hours, total GPU time ({LLAMA_CARD})",
              estimate_note="tokens are \"~15 trillion\" (rounded); hours are the card's total, not broken down",
              context="no bf16 Llama 70B rate is published in the table (torchtitan's 70B row is Float8: 876 tokens/s "
                      "per GPU); the nearest bf16 H100 row is llm-foundry's MPT 70b at seq 2048"),
    PublicRun("Llama 3.1 405B", "llama3.1-405b", 405.85e9, 8192, 15.6e12,
              "15.6T text tokens (Llama 3 paper §1, with 3.8e25 training FLOPs; the card rounds to ~15T)",
              "H100 SXM", "bf16", None, 30.84e6, f"30.84M H100-80GB GPU-hours, total GPU time ({LLAMA_CARD})",
              steady_mfu=(0.38, 0.43), steady_source="Llama 3 paper: 38-43% MFU in steady state (REFERENCE §7)",
              estimate_note="tokens are the paper's 15.6T (the card's \"~15 trillion\" is rounded); hours are the "
                            "card's total, not broken down",
              context="6·N·D at 15.6T tokens gives 34.6% end to end (REFERENCE §7; at the card's rounded 15T it "
                      "would be 33.2%); the paper's own steady state is 38-43%, so the bill is the steady rate at "
                      "goodput about 0.8-0.9"),
    PublicRun("GPT-3 175B", "gpt3-175b", 175e9, 2048, 300e9, "300B tokens (Brown et al. 2020)", "V100 SXM2", "fp16",
              None, None, "not published (Brown et al. 2020 give FLOPs and \"V100 GPUs\", no hours)",
              published_flops=3.14e23,
              estimate_note="3.14e23 is the paper's own 6ND-style estimate of the training compute, not a measurement",
              context="the only V100 rows in the evidence table are NVIDIA's BERT-large: a far smaller model"),
    PublicRun("PaLM 540B", "palm-540b", 540.35e9, 2048, 780e9, "780B tokens (Chowdhery et al. 2022)", "TPU v4", "bf16",
              None, 6144 * 1200 + 3072 * 336,
              "6,144 TPU v4 chips x 1,200 h + 3,072 x 336 h (Chowdhery et al. 2022), \"including some downtime and "
              "repeated steps\"", published_flops=2.56e24, steady_mfu=(0.462, 0.462),
              steady_source="PaLM Table 3: 46.2% MFU in steady state",
              estimate_note="2.56e24 is PaLM's model-FLOPs count (6N + 12LHQT per token), not a measurement",
              context="the paper's own steady state (46.2%) against its chip-hours: goodput about 0.67"),
    PublicRun("nanoGPT GPT-2 124M", "gpt2", 124.34e6, 1024, 300e9, "300B tokens (nanoGPT)", "A100", "bf16", 8,
              4 * 24 * 8, "\"about 4 days\" on 8 x A100 (nanoGPT; REFERENCE §3)",
              estimate_note="\"about 4 days\" is rounded; nanoGPT's own 6ND projection at an assumed 30% MFU was 3.46 days",
              context="nanoGPT's 6ND at 30% MFU: 6 x 124.34M x 300B / (8 x 312 TFLOP/s x 0.30) = 3.46 days; measured "
                      "37.14% on one A100 gives 3.2 days here; the 8-GPU run took about 4 (data-parallel "
                      "communication and evaluation are not in one GPU's rate)"),
    PublicRun("BERT-base (Strubell)", "bert-base", 110e6, 128, 0.0, "the BERT recipe (plan bert-pretraining: 90% of "
              "steps at 128, 10% at 512)", "V100 SXM2", "fp16", 64, 79 * 64,
              "79 h on 64 V100s (Strubell et al. 2019, Table 3, quoting NVIDIA)", plan="bert-pretraining",
              estimate_note="\"79 h\" is rounded (Strubell's own kWh come out 0.3% low from it)",
              context="79 h implies about 1% MFU for the BERT recipe: it cannot be this recipe at a modern rate. "
                      "NVIDIA's own README (DeepLearningExamples BERT, in the evidence table) reports BERT-large "
                      "pre-training in 15.35 h on 4 DGX-2H (64 V100s, mixed precision) with its LAMB recipe; Strubell "
                      "quotes the 79 h from NVIDIA without its recipe"),
)


@functools.lru_cache(maxsize=32)
def counted_flops_per_token(preset: str, seq_len: int) -> float:
    """Model FLOPs per training token of `preset` at `seq_len`, counted with torch's counter on the
    meta device (as `harness count` does) at depth 1 and 2 and extended per layer: every layer is
    the same, so F(L) = F(1) + (L - 1)·(F(2) - F(1)) is exact (tests/cost/test_reproduce.py checks
    it against a full-depth count)."""
    from pathlib import Path

    from harness.config import load_spec
    from harness.cost.estimate import flops_per_token

    layers = load_spec(Path(preset)).model.layers  # resolved: hf presets keep it in their config
    one, two = (flops_per_token(load_spec(Path(preset), [f"model.layers={n}", f"train.seq_len={seq_len}",
                                                         "train.batch_size=1"]), seq_len, None) for n in (1, 2))
    return one + (layers - 1) * (two - one)


def palm_flops_per_token(shape: dict = PALM_SHAPE) -> float:
    """PaLM App. B: 6N + 12·L·H·Q·T (no preset counted: the published shape, analytically)."""
    return 6 * shape["params"] + 12 * shape["layers"] * shape["heads"] * shape["head_dim"] * shape["seq_len"]


@dataclass(frozen=True)
class RunReproduction:
    """A public run's bill beside this project's projection. Hours are device-hours (GPU or chip)."""

    name: str
    flops_per_token: float
    flops_per_token_source: str
    tokens: float
    tokens_source: str
    flops_total: float
    published_flops: float | None
    flops_ratio: float | None            # ours / published
    hardware: str
    dtype: str
    peak_flops_per_s: float
    peak_source: str
    devices: int | None
    published_device_hours: float | None
    hours_source: str
    implied_utilization: float | None    # end to end: FLOPs / (published hours x peak)
    implied_utilization_6nd: float | None  # the same with 6·N·D (N as published): how the sources compute it
    steady_utilization: float
    steady_utilization_range: tuple[float, float]
    steady_source: str
    projected_device_hours: float
    projected_device_hours_range: tuple[float, float]
    projected_wall_hours: float | None
    ratio: float | None                  # published / projected device-hours
    implied_goodput: float | None        # projected / published: the share of the bill at the steady rate
    explanation: str
    published_is_estimate: bool
    estimate_note: str | None
    context: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _per_token(run: PublicRun) -> tuple[float, str, float, str]:
    """FLOPs per token (and tokens) of `run`: counted from its preset, else PaLM's published shape."""
    from harness.presets import PRESETS

    how = "counted: torch's counter on the meta device, depth 1 and 2, extended per layer (exact)"
    if run.plan is not None:  # BERT: each phase at its length
        phases = load_plan(run.plan).phases
        tokens = sum(p.tokens_total(None) for p in phases)
        flops = sum(p.tokens_total(None) * counted_flops_per_token(run.preset, p.seq_len) for p in phases)
        return flops / tokens, how + f" at each phase's length ({', '.join(str(p.seq_len) for p in phases)})", \
            tokens, run.tokens_source
    if run.preset in PRESETS:
        return counted_flops_per_token(run.preset, run.seq_len), how + f" at seq {run.seq_len}", run.tokens, \
            run.tokens_source
    return palm_flops_per_token(), ("analytic: PaLM App. B 6N + 12LHQT from the published shape (no palm-540b "
                                    "preset in this build)"), run.tokens, run.tokens_source


def _evidence(run: PublicRun) -> tuple[float, tuple[float, float], str]:
    """The steady-state MFU to project at: the run's own published figure, else the nearest published row."""
    from harness.cost.evidence import nearest_published

    if run.steady_mfu is not None:
        low, high = run.steady_mfu
        return (low + high) / 2, (low, high), f"published: {run.steady_source}"
    near = nearest_published(run.gpu, run.dtype, run.params, run.seq_len)
    if near is None:
        raise ValueError(f"no published steady-state rate on {run.gpu} {run.dtype}")
    return near.value, (near.value - near.error, near.value + near.error), near.source


def _explain(run: PublicRun, ratio: float | None, flops_ratio: float | None, steady_source: str) -> str:
    if ratio is None:
        text = "no published hours to compare"
        if flops_ratio is not None:
            text += (f"; the counted FLOPs are {flops_ratio:.3f}x the paper's: its figure is 6ND-style (no attention, "
                     f"embeddings in N), ours counts every matmul including attention at seq {run.seq_len}")
        return text
    text = (f"the published bill is {ratio:.2f}x the steady-state projection, so the steady rate covers "
            f"{1 / ratio:.0%} of it (implied goodput)")
    if ratio > 1:
        text += ("; the rest is what the whole run adds: restarts, evaluation, checkpointing, failures, "
                 "warm-up and a cluster setup unlike the evidence row's")
    else:
        text += "; the run went faster than the evidence row's rate (its setup beat the row's)"
    if not steady_source.startswith("published: " + (run.steady_source or "~")):
        text += f" (the evidence is another run's rate: {steady_source.split(' (')[0].removeprefix('published: ')})"
    return text


def reproduce_runs() -> list[RunReproduction]:
    """Each PUBLIC_RUNS entry: counted FLOPs, the implied end-to-end utilization from its published
    hours, this project's steady-state projection at its best published evidence, and the ratio."""
    from harness.hardware import datasheet_by_name

    rows = []
    for run in PUBLIC_RUNS:
        per_token, per_token_source, tokens, tokens_source = _per_token(run)
        flops = per_token * tokens
        if run.gpu == "TPU v4":
            peak, peak_source = TPU_V4_BF16, "Google Cloud TPU v4: 275 TFLOP/s bf16 per chip"
        else:
            row, peak = datasheet_by_name(run.gpu, run.dtype)
            peak_source = f"datasheet {run.dtype}: {row.source}"
        steady, steady_range, steady_source = _evidence(run)
        hours = flops / (peak * steady) / 3600.0
        hours_range = (flops / (peak * steady_range[1]) / 3600.0, flops / (peak * steady_range[0]) / 3600.0)
        published = run.device_hours
        ratio = None if published is None else published / hours
        flops_ratio = None if run.published_flops is None else flops / run.published_flops
        rows.append(RunReproduction(
            name=run.name, flops_per_token=per_token, flops_per_token_source=per_token_source, tokens=tokens,
            tokens_source=tokens_source, flops_total=flops, published_flops=run.published_flops,
            flops_ratio=flops_ratio, hardware=run.gpu, dtype=run.dtype, peak_flops_per_s=peak,
            peak_source=peak_source, devices=run.devices, published_device_hours=published,
            hours_source=run.hours_source,
            implied_utilization=None if published is None else flops / (published * 3600.0 * peak),
            implied_utilization_6nd=None if published is None else 6 * run.params * tokens / (published * 3600.0 * peak),
            steady_utilization=steady, steady_utilization_range=steady_range, steady_source=steady_source,
            projected_device_hours=hours, projected_device_hours_range=hours_range,
            projected_wall_hours=None if run.devices is None else hours / run.devices,
            ratio=ratio, implied_goodput=None if ratio is None else 1 / ratio,
            explanation=_explain(run, ratio, flops_ratio, steady_source),
            published_is_estimate=run.estimate_note is not None, estimate_note=run.estimate_note,
            context=run.context))
    return rows
