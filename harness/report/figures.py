"""Figures of a report: matplotlib (no pyplot, Agg), each titled with where its numbers come from.

Figures draw values they are given: stored records and priced estimates. They never count FLOPs
and never price (harness.report.assemble does the pricing, harness.cost the estimating).
"""

from __future__ import annotations

import io
import math
import re
import textwrap
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

from harness.results.record import MeasuredPeakInfo, RunRecord
from harness.units import si as _si, usd as _usd

MATCH_FACTOR = 1.5        # a published row "matches" a model within this factor of its parameters
TOP_MODULES = 12

# Strubell et al. 2019 rows with a known model size, for the cost and energy comparisons. The
# sizes are the models' published ones (BERT_base: Devlin et al. 2019; GPT-2: Radford et al. 2019).
STRUBELL_SIZED = {"BERT_base": 110e6, "GPT-2": 1.5e9}

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")


@dataclass(frozen=True)
class Figure:
    """One rendered figure: PNG bytes, a title and a caption that says where its numbers come from."""

    key: str           # file stem, unique in the report
    title: str
    caption: str
    png: bytes


@dataclass(frozen=True)
class Priced:
    """A run's estimate for the report, or why there is none."""

    record: RunRecord
    estimate: Any | None           # harness.cost.estimate.Estimate
    why_not: str | None = None
    plan_note: str | None = None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _device(record: RunRecord) -> str:
    """The device name, with the world size when the run spanned several ranks."""
    name = str(record.device.name)
    world = record.world_size or 1
    return f"{name} x{world}" if world > 1 else name


def run_label(record: RunRecord) -> str:
    """"gpt2 3.94M · AMD EPYC · fp32 · 2d2ec1de": model, size, device, dtype, run id tail."""
    return (f"{record.model_label} {_si(record.params, '').replace(' ', '')} · {_device(record)} · "
            f"{record.dtype} · {record.run_id.rsplit('-', 1)[-1]}")


def _new_figure(width: float, height: float, ncols: int = 1, **kw):
    from matplotlib.figure import Figure as MplFigure  # no pyplot: no global state, Agg on savefig

    fig = MplFigure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, **kw)
    return fig, axes


def _png(fig) -> bytes:
    from matplotlib.text import Text

    for text in fig.findobj(Text):  # labels hold names from records: a "$" in one is text, never mathtext
        if "$" in text.get_text():
            text.set_parse_math(False)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def step_time_figure(record: RunRecord) -> Figure:
    """Step time over the steps (warm-up shaded) and the distribution of the measured steps."""
    warm = [t * 1e3 for t in record.warmup_times_s]
    steps = [t * 1e3 for t in record.step_times_s]
    median, iqr = record.median_step_s * 1e3, (record.iqr_step_s or 0.0) * 1e3
    fig, (over, dist) = _new_figure(10, 3.6, 2, width_ratios=(2.2, 1))
    if warm:
        over.axvspan(0.5, len(warm) + 0.5, color="#ffd8a8", alpha=0.6, label="warm-up (excluded)")
        over.plot(range(1, len(warm) + 1), warm, "o", color=_COLORS[1], label="warm-up step")
    xs = range(len(warm) + 1, len(warm) + len(steps) + 1)
    per_rank = record.per_rank or []
    for i, rank in enumerate(per_rank[:16]):  # thin lines: each rank; the record's step is the slowest
        times = [t * 1e3 for t in rank.warmup_times_s + rank.step_times_s]
        over.plot(range(1, len(times) + 1), times, "-", color="grey", lw=0.6, alpha=0.6,
                  label="each rank" if i == 0 else None)
    over.plot(xs, steps, "o-", color=_COLORS[0], ms=4, lw=1, label="measured step")
    over.axhline(median, color="k", ls="--", lw=1, label=f"median {median:.3g} ms")
    over.set_xlabel("step")
    over.set_ylabel("step time (ms)")
    over.set_ylim(bottom=0)
    over.legend(fontsize=8, loc="best")
    over.set_title("over the steps", fontsize=10)
    dist.hist(steps, bins=min(30, max(5, len(steps) // 2)), color=_COLORS[0], alpha=0.8)
    dist.axvline(median, color="k", ls="--", lw=1)
    if iqr:
        q1 = float(_quantile(steps, 0.25))
        dist.axvspan(q1, q1 + iqr, color="grey", alpha=0.25, label=f"IQR {iqr:.3g} ms")
        dist.legend(fontsize=8)
    dist.set_xlabel("measured step time (ms)")
    dist.set_ylabel("steps")
    dist.set_title("distribution", fontsize=10)
    clock = record.timing.clock
    title = f"Step time [measured, {clock}] — {run_label(record)}"
    fig.suptitle(title, fontsize=10)
    caption = (f"Measured on {_device(record)} with the {clock} clock, each step timed alone: "
               f"{len(warm)} warm-up step(s) (shaded; excluded from every statistic) then {len(steps)} measured "
               f"steps. Median {median:.4g} ms, IQR {iqr:.3g} ms, CV {record.cv_step or 0:.1%}."
               + (f" {len(per_rank)} ranks: each step is as slow as its slowest rank (thin lines: each rank)."
                  if per_rank else ""))
    return Figure(f"step-time-{_slug(record.run_id)}", title, caption, _png(fig))


def _quantile(values: Sequence[float], q: float) -> float:
    import numpy as np

    return float(np.quantile(values, q, method="linear"))


def flops_figure(record: RunRecord) -> Figure:
    """FLOPs by module (the record's forward breakdown) and by operator (the record's count, whole step)."""
    from matplotlib.ticker import EngFormatter

    fig, (left, right) = _new_figure(12, 4.4, 2, width_ratios=(1.3, 1))
    groups = record.flops.model.forward_by_module or {}
    forward = sum(groups.values())
    note = "" if groups else (" Per-module breakdown unavailable: this record does not carry one (written by a "
                              "harness before records stored it).")
    if groups:
        top = list(groups.items())[:TOP_MODULES]
        rest = sum(v for _, v in list(groups.items())[TOP_MODULES:])
        if rest:
            top.append((f"other ({len(groups) - TOP_MODULES} groups)", rest))
        names, values = [k for k, _ in top][::-1], [v for _, v in top][::-1]
        bars = left.barh(names, values, color=_COLORS[0])
        for bar, value in zip(bars, values):
            left.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value / forward:.1%}",
                      va="center", fontsize=7)
        left.set_xlabel("forward FLOP, one micro-batch (2*MAC)")
        left.xaxis.set_major_formatter(EngFormatter())
        left.tick_params(axis="y", labelsize=7)
        left.margins(x=0.15)
        ratio = record.flops.model.per_rank_per_step / (forward * record.grad_accum)
        note = (f" The training step's model FLOPs are {ratio:.3f}x this forward per micro-batch (backward "
                f"= 2x forward for every matmul and attention); {record.grad_accum} micro-batch(es) per step.")
    else:
        left.text(0.5, 0.5, "per-module breakdown unavailable", ha="center", va="center", transform=left.transAxes)
    left.set_title("by module: forward, counted on a fake replica (from the record)", fontsize=10)
    by_op = dict(sorted(record.flops.model.by_op.items(), key=lambda kv: -kv[1]))
    total = sum(by_op.values()) or 1
    ops = list(by_op)[::-1]
    short = [o.replace("aten.", "").replace("_scaled_dot_product_", "sdpa ").replace("_attention", "") for o in ops]
    bars = right.barh(short, [by_op[o] for o in ops], color=_COLORS[2])
    for bar, op in zip(bars, ops):
        right.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {by_op[op] / total:.1%}",
                   va="center", fontsize=7)
    right.set_xlabel("model FLOP per step (2*MAC)")
    right.xaxis.set_major_formatter(EngFormatter())
    right.tick_params(axis="y", labelsize=7)
    right.margins(x=0.2)
    right.set_title("by operator: whole step, from the record", fontsize=10)
    title = f"FLOPs by module and operator [counted, torch FLOP counter] — {run_label(record)}"
    fig.suptitle(title, fontsize=10)
    caption = (f"Counted with torch.utils.flop_counter, FLOP = 2*MAC. Left: counted when the run was measured, on "
               f"a fake (meta) replica, forward pass, each module's own FLOPs with layers merged ('.*'); "
               f"'(own ops)' are a module's ops outside its children (attention scores and weighted sums)."
               f"{note} Right: the record's model count of the whole training step by operator "
               f"({_si(record.model_flops_per_step, 'FLOP')} per step). Only matmuls, convolutions and attention "
               f"carry formulas; {len(record.flops.uncounted_ops)} other operators ran uncounted.")
    return Figure(f"flops-{_slug(record.run_id)}", title, caption, _png(fig))


def peaks_figure(record: RunRecord) -> Figure:
    """Achieved model and hardware FLOP/s against the measured and the datasheet peak."""
    from matplotlib.ticker import EngFormatter

    measured = record.peaks.measured or MeasuredPeakInfo(flops_per_s=record.peak_flops_measured)
    sheet = record.peaks.datasheet
    achieved, hardware = record.achieved_flops_per_s, record.hardware_flops_per_s
    rows = [
        ("achieved, model FLOPs\n[counted / measured time]", achieved, _COLORS[0],
         f"MFU {_pct(record.mfu_measured)} of measured, {_pct(record.mfu_datasheet)} of datasheet"),
        ("achieved, hardware FLOPs\n[counted / measured time]", hardware, _COLORS[2],
         f"HFU {_pct(record.hfu_measured)} of measured, {_pct(record.hfu_datasheet)} of datasheet"),
        (f"peak, matmul {measured.matmul_size or '?'}³ {measured.dtype or record.dtype}\n[measured]",
         record.peak_flops_measured, _COLORS[1], ""),
        (f"peak, datasheet {sheet.gpu or ''} {sheet.mode or ''}\n[datasheet]",
         record.peak_flops_datasheet, _COLORS[3], ""),
    ][::-1]
    known = [r[1] for r in rows if r[1]]
    log = min(known) / max(known) < 0.05  # a few-percent bar vanishes on a linear axis
    fig, ax = _new_figure(10, 3.8)
    ax.barh([r[0] for r in rows], [r[1] or 0.0 for r in rows], color=[r[2] for r in rows])
    for i, (_, value, _, note) in enumerate(rows):
        text = (" unknown: no datasheet figure for this device (never guessed)" if value is None
                else f" {_si(value, 'FLOP/s')}" + (f"  ({note})" if note else ""))
        ax.text(value or (min(known) if log else 0.0), i, text, va="center", fontsize=8)
    if log:
        ax.set_xscale("log")
        ax.set_xlim(min(known) / 3, max(known) * 30)
    else:
        ax.xaxis.set_major_formatter(EngFormatter())
        ax.margins(x=0.6)
    ax.set_xlabel("FLOP/s" + (" (log scale)" if log else ""))
    ax.tick_params(axis="y", labelsize=8)
    title = f"Achieved FLOP/s against peaks [measured, counted, datasheet] — {run_label(record)}"
    fig.suptitle(title, fontsize=10)
    caption = (f"Achieved = FLOPs per step (counted) x steps / total measured time. Measured peak: best of "
               f"{measured.trials or '?'} trials of a {measured.matmul_size or '?'}³ matmul in "
               f"{measured.dtype or '?'} on this device. MFU {_pct(record.mfu_measured)} of the measured "
               f"peak, {_pct(record.mfu_datasheet)} of the datasheet peak; HFU "
               f"{_pct(record.hfu_measured)} / {_pct(record.hfu_datasheet)}. Datasheet: "
               f"{sheet.source or 'none for ' + str(record.device.name) + ' (unknown, never guessed)'}.")
    return Figure(f"peaks-{_slug(record.run_id)}", title, caption, _png(fig))


def _published_for(params: float) -> list[tuple[str, float, float | None, str]]:
    """Published costs for models within MATCH_FACTOR of `params`: (label, one run USD (low),
    one run high or fully loaded, kind)."""
    from harness.published import AI21_ROWS

    found = []
    for model, size, row_plan, one_run, loaded in AI21_ROWS:
        if size / MATCH_FACTOR <= params <= size * MATCH_FACTOR:
            found.append((f"AI21 {model} ({row_plan})", one_run, loaded, "ai21"))
    for model, size in STRUBELL_SIZED.items():
        if size / MATCH_FACTOR <= params <= size * MATCH_FACTOR:
            for name, hardware, low, high in _strubell_costs():
                if name == model:
                    found.append((f"Strubell {name} {hardware}", low, high, "strubell"))
    return found


def _strubell_costs() -> list[tuple[str, str, float, float]]:
    """(model, hardware, cloud cost low, high) from Strubell et al. 2019, Table 3 (REFERENCE §1)."""
    from harness.published import STRUBELL_ROWS

    return [(r[0], r[1], float(r[-2]), float(r[-1])) for r in STRUBELL_ROWS]


def _price_provenance(est) -> str:
    kinds = sorted({f"{o.provenance} {o.as_of}" for o in est.offers})
    return ", ".join(kinds) if kinds else "none"


def cost_figure(priced: Priced) -> Figure | None:
    """Per-offer cost bars, one run and fully loaded, with published figures for matching sizes."""
    est, record = priced.estimate, priced.record
    if est is None or not est.offers:
        return None
    # On-demand offers first, then spot: the shaded ranges are the on-demand ones (the estimate's
    # headline); spot bars are drawn in their own colour and never widen them.
    offers = sorted(est.offers, key=lambda o: (o.spot, o.cost_usd))
    multiplier = est.fully_loaded["multiplier"]
    labels = [f"{o.provider} {o.instance} {o.region}{' spot' if o.spot else ''}"
              f"{' (form unknown)' if 'form unknown' in o.labels else ''}" for o in offers]
    height = max(3.5, 0.32 * len(offers) + 1.8)
    fig, ax = _new_figure(11, height)
    ys = list(range(len(offers)))
    one = [o.cost_usd for o in offers]
    loaded = [c * multiplier for c in one]
    colors = [_COLORS[2] if o.spot else _COLORS[0] for o in offers]
    value_f, low_f, high_f = range_factors(est)
    one = [c * value_f for c in one]
    loaded = [c * value_f for c in loaded]
    ax.barh([y + 0.2 for y in ys], one, height=0.4, color=colors, label="one run (blue on demand, green spot)",
            xerr=_xerr(one, low_f, high_f), error_kw={"ecolor": "k", "capsize": 2, "lw": 0.8})
    ax.barh([y - 0.2 for y in ys], loaded, height=0.4, color=colors, alpha=0.35,
            label=f"fully loaded (x{multiplier:g})", xerr=_xerr(loaded, low_f, high_f),
            error_kw={"ecolor": "#555555", "capsize": 2, "lw": 0.6})
    # The estimate's on-demand ranges: across on-demand offers, widened by the utilization's calibration error if any.
    if est.cost_usd_min is not None:
        ax.axvspan(est.cost_usd_min, est.cost_usd_max, color=_COLORS[0], alpha=0.08)
        ax.axvspan(est.fully_loaded["cost_usd_min"], est.fully_loaded["cost_usd_max"], color=_COLORS[1], alpha=0.08)
    ax.set_yticks(ys, labels, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("USD for the whole training job")
    published = _published_for(record.params)
    styles = iter(((":", "k"), ("--", "#555555"), ("-.", "#8c564b"), (":", "#9467bd")))
    for label, low, high, kind in published:
        style, color = next(styles, ("--", "k"))
        if kind == "ai21":
            ax.axvline(low, ls=style, color=color, lw=1.2, label=f"{label}: one run {_usd(low)} [published]")
            if high:
                ax.axvline(high, ls=style, color=color, lw=2.2, label=f"{label}: fully loaded {_usd(high)} [published]")
        else:
            ax.axvspan(low, high, color=color, alpha=0.12, hatch="//",
                       label=f"{label}: cloud cost {_usd(low)}–{_usd(high)} [published]")
    ax.legend(fontsize=7, loc="lower right")
    util = "unknown" if est.utilization is None else f"{est.utilization:.1%}"
    util_range = est.utilization_range
    if util_range:
        util += f" (range {util_range[0]:.1%}–{util_range[1]:.1%}, in the shaded cost ranges)"
    title = (f"Cost per offer [{est.hardware_source} rate, prices {_price_provenance(est)}] — {run_label(record)}")
    ax.set_title(title, fontsize=9)
    corpus = f" over {est.corpus['name']} ({est.corpus['tokens']:.3g} tokens per epoch)" if est.corpus else ""
    pub = ("Published figures drawn for matching sizes (within x1.5 of the model's parameters): "
           + "; ".join(p[0] for p in published) + "." if published else
           f"No published figure within x{MATCH_FACTOR:g} of this model's {record.params:,} parameters "
           "(AI21: 110M, 340M, 1.5B, 11B; Strubell: BERT_base 110M, GPT-2 1.5B): see the cross-run cost figure.")
    caption = (f"Plan {est.plan['name']}{corpus}: {est.tokens_total:.3g} tokens, {est.flops_total:.3g} FLOPs (counted "
               f"per token at each phase's length), {est.device_hours:,.1f} device-hours on {est.hardware} "
               f"({est.hardware_source}); utilization {util} — {est.utilization_source}. Cost = device-hours x each "
               f"offer's price per GPU-hour, pro rata ({len(est.on_demand.offers)} on-demand and "
               f"{len(est.spot.offers)} spot offers; prices {_price_provenance(est)}). On demand, one run "
               f"{_usd(est.cost_usd_min)}–{_usd(est.cost_usd_max)} (shaded blue); fully loaded "
               f"{_usd(est.fully_loaded['cost_usd_min'])}–{_usd(est.fully_loaded['cost_usd_max'])} (shaded orange), "
               f"x{multiplier:g}: {est.fully_loaded['source']}."
               + (f" Spot, one run {_usd(est.spot.cost_usd_min)}–{_usd(est.spot.cost_usd_max)} (green bars), "
                  "not in the shaded ranges." if est.spot.offers else "")
               + (f" {len(est.gpu_only)} GPU-only offer(s) (host VM extra) are not drawn." if est.gpu_only else "")
               + f" {pub}"
               + f" Error bars: {range_text(est)}."
               + (f" Note: {priced.plan_note}." if priced.plan_note else ""))
    return Figure(f"cost-{_slug(record.run_id)}", title, caption, _png(fig))


def range_factors(est) -> tuple[float, float, float]:
    """(value, low, high) of the estimate's device-hours range (harness.cost.ranges): the value at
    the goodput as a factor on the steady-state device-hours, low and high as factors on that
    value. Every cost, kWh and CO2e scales with them."""
    r = (est.ranges or {}).get("device_hours")
    if not r or not est.device_hours or not r["value"]:
        return 1.0, 1.0, 1.0
    return r["value"] / est.device_hours, r["low"] / r["value"], r["high"] / r["value"]


def range_text(est) -> str:
    """What the error bars span, for a caption."""
    if not est.ranges:
        return "none (no range)"
    value, low, high = range_factors(est)
    g = est.goodput or {}
    return (f"x{low:.2f}–x{high:.2f} of each bar, drawn at goodput {g.get('value', 1.0):g} (x{value:.2f} the steady state) "
            f"({g.get('source', 'steady state only')}), from " + ("; ".join(est.ranges["from"]) or "no input spread"))


def _xerr(values: Sequence[float], low: float, high: float) -> list[list[float]]:
    """Matplotlib's asymmetric errors: [below, above] each value."""
    return [[v * (1 - low) for v in values], [v * (high - 1) for v in values]]


def _groups(records: Sequence[RunRecord]) -> dict[tuple[str, str], list[RunRecord]]:
    out: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for r in records:
        out[(_device(r), r.dtype)].append(r)
    return dict(sorted(out.items()))


def scaling_figure(records: Sequence[RunRecord]) -> Figure:
    """MFU and throughput against model size, one colour per device and dtype."""
    from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

    fig, (mfu, thr) = _new_figure(11, 4.4, 2)
    for i, ((device, dtype), runs) in enumerate(_groups(records).items()):
        color = _COLORS[i % len(_COLORS)]
        params = [r.params for r in runs]
        mfu.plot(params, [r.mfu_measured * 100 for r in runs], "o", color=color, ms=7,
                 label=f"{device} {dtype}, vs measured peak")
        sheet = [(r.params, r.mfu_datasheet * 100) for r in runs if r.mfu_datasheet is not None]
        if sheet:
            mfu.plot(*zip(*sheet), "s", mfc="none", ms=9, color=color, label=f"{device} {dtype}, vs datasheet peak")
        thr.plot(params, [r.tokens_per_s for r in runs], "o", color=color, ms=7, label=f"{device} {dtype}")
        for r in runs:
            for ax, y in ((mfu, r.mfu_measured * 100), (thr, r.tokens_per_s)):
                ax.annotate(r.model_label, (r.params, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
    sizes = [r.params for r in records]
    narrow = math.log10(max(sizes) / min(sizes)) < 1.5  # under two decades: label 2, 3, ... too
    for ax in (mfu, thr):
        ax.set_xscale("log")
        if narrow:
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)))
        ax.xaxis.set_major_formatter(EngFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("parameters")
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
        ax.margins(x=0.15, y=0.15)
    mfu.set_ylabel("MFU (%)")
    mfu.set_ylim(bottom=0)
    mfu.set_title("MFU [counted FLOPs / measured time / peak]", fontsize=10)
    thr.set_yscale("log")
    thr.yaxis.set_major_formatter(EngFormatter())
    thr.yaxis.set_minor_formatter(NullFormatter())
    thr.set_ylabel("tokens per second")
    thr.set_title("throughput [measured]", fontsize=10)
    title = "MFU and throughput against model size, per device and dtype [measured; datasheet where known]"
    fig.suptitle(title, fontsize=11)
    caption = (f"{len(records)} run(s), one colour per device and dtype. MFU = model FLOPs per step (counted, no "
               "recomputation) x steps / measured time / peak: filled markers against the matmul peak measured on "
               "the same device and dtype, hollow squares against the datasheet peak (only where the device has "
               "one; CPUs and unknown GPUs have none). Throughput = tokens per step x steps / total measured time.")
    return Figure("across-mfu-throughput", title, caption, _png(fig))


def cost_size_figure(priced: Sequence[Priced]) -> Figure | None:
    """Cost ranges of each priced run against its size, beside the published AI21 and Strubell figures."""
    from matplotlib.ticker import EngFormatter

    from harness.published import AI21_ROWS

    usable = [p for p in priced if p.estimate is not None and p.estimate.offers]
    fig, ax = _new_figure(10, 4.6)
    for i, p in enumerate(usable):
        est, n = p.estimate, p.record.params
        color = _COLORS[i % len(_COLORS)]
        loaded = est.fully_loaded
        ax.plot([n, n], [est.cost_usd_min, est.cost_usd_max], "-", color=color, lw=6, alpha=0.8,
                label=f"{run_label(p.record)}: one run on {est.hardware} [{est.hardware_source}]")
        ax.plot([n, n], [loaded["cost_usd_min"], loaded["cost_usd_max"]], "-", color=color, lw=6, alpha=0.3)
        cost = (est.ranges or {}).get("cost_usd")
        if cost:  # the whole range: utilization, goodput, scaling and price (harness.cost.ranges)
            ax.errorbar([n * 1.04], [cost["value"]], yerr=[[cost["value"] - cost["low"]], [cost["high"] - cost["value"]]],
                        fmt="none", ecolor=color, capsize=4, lw=1)
    ai21 = [(size, one, loaded, model) for model, size, _, one, loaded in AI21_ROWS]
    ax.plot([a[0] for a in ai21], [a[1] for a in ai21], "kX", ms=8, label="AI21 2020, one run [published]")
    ax.plot([a[0] for a in ai21 if a[2]], [a[2] for a in ai21 if a[2]], "k+", ms=10, mew=2,
            label="AI21 2020, fully loaded [published]")
    for size, one, _, model in ai21:
        ax.annotate(model, (size, one), textcoords="offset points", xytext=(5, -10), fontsize=7)
    shown: dict[str, int] = defaultdict(int)
    for name, hardware, low, high in _strubell_costs():
        if name in STRUBELL_SIZED:
            x = STRUBELL_SIZED[name] * (1.12 + 0.18 * shown[name])
            shown[name] += 1
            ax.plot([x, x], [low, high], "-", color="#8c564b", lw=3, alpha=0.7)
            ax.annotate(hardware, (x, low), textcoords="offset points", xytext=(3, -9), fontsize=6, color="#8c564b")
    ax.plot([], [], "-", color="#8c564b", lw=3, label="Strubell 2019 cloud cost range [published]")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.set_yscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("USD for the whole training job")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    title = "Cost against model size: these runs extrapolated, beside AI21 and Strubell [estimated; published]"
    ax.set_title(title, fontsize=10)
    plans = sorted({p.estimate.plan["name"] for p in usable})
    caption = (f"Dark bars: one run, from the cheapest to the dearest offer; error bars beside them: the whole range "
               f"(utilization error, goodput, scaling efficiency and price spread; harness.cost.ranges); light bars: "
               f"fully loaded (x"
               f"{usable[0].estimate.fully_loaded['multiplier']:g}, AI21's 2 configurations x 10 runs). "
               if usable else "No run could be priced (see the notes). ")
    caption += (f"Plans: {', '.join(plans) or 'none'}. Runs on a CPU or an unlisted GPU are projected to a datasheet "
                "GPU at the utilization named in each run's cost figure. AI21 (Sharir et al. 2020): BERT recipe "
                "for 110M-1.5B, T5-11B on C4 ('well above $1.3M'); the paper states no price per GPU-hour or "
                "utilization. Strubell et al. 2019, Table 3: cloud cost ranges; model sizes from their papers.")
    return Figure("across-cost-size", title, caption, _png(fig))


def energy_figure(priced: Sequence[Priced]) -> Figure | None:
    """Measured energy per token, and the job's kWh·PUE and CO2e beside Strubell's rows.
    None when no run carries energy."""
    with_energy = [p for p in priced if p.record.energy is not None]
    if not with_energy:
        return None
    fig, (per_token, job) = _new_figure(11, 4.0, 2)
    labels = [textwrap.fill(run_label(p.record), 40) for p in with_energy]  # labels carry overridden dimensions
    mj = [p.record.energy.joules_per_step / p.record.tokens_per_step * 1e3 for p in with_energy]
    per_token.barh(labels[::-1], mj[::-1], color=_COLORS[2])
    per_token.set_xlabel("mJ per token (energy per step / tokens per step)")
    per_token.tick_params(axis="y", labelsize=7)
    per_token.set_title("per token [record's energy]", fontsize=10)
    names, kwh, co2 = [], [], []
    spans: list[tuple[float, float]] = []  # the estimates' ranges; published rows have none
    methods = []
    for p in with_energy:
        energy = p.estimate.energy if p.estimate is not None else None
        if energy:
            names.append(textwrap.fill(f"{p.record.model_label} · {p.record.run_id.rsplit('-', 1)[-1]} → "
                         f"{p.estimate.plan['name']} [estimated]", 40))
            value_f, low_f, high_f = range_factors(p.estimate)
            kwh.append(energy["kwh_pue"] * value_f)
            co2.append(None if energy.get("co2e_lbs") is None else energy["co2e_lbs"] * value_f)
            spans.append((low_f, high_f))
            methods.append(f"{p.record.run_id}: {energy.get('method')}; PUE {energy.get('pue')} "
                           f"({energy.get('pue_source')}); {energy.get('kg_co2e_per_kwh')} kg CO2e/kWh "
                           f"({energy.get('carbon_region')}: {energy.get('carbon_source')})")
    from harness.published import STRUBELL_ROWS

    for row in STRUBELL_ROWS:  # (model, hardware, n, W, hours, kWh·PUE, CO2e lbs, cost low, cost high)
        if row[5] is not None:
            names.append(f"Strubell {row[0]} {row[1]} [published]")
            kwh.append(float(row[5]))
            co2.append(float(row[6]))
    if names:
        spans += [(1.0, 1.0)] * (len(kwh) - len(spans))
        below = [k * (1 - lo) for k, (lo, _) in zip(kwh, spans)]
        above = [k * (hi - 1) for k, (_, hi) in zip(kwh, spans)]
        bars = job.barh(names[::-1], kwh[::-1], color=[_COLORS[0] if "[estimated]" in n else "#8c564b"
                                                         for n in names[::-1]],
                        xerr=[below[::-1], above[::-1]], error_kw={"ecolor": "k", "capsize": 2, "lw": 0.8})
        for bar, lbs in zip(bars, co2[::-1]):
            if lbs is not None:
                job.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {lbs:,.3g} lbs CO2e",
                         va="center", fontsize=7)
        job.set_xscale("log")
        job.margins(x=0.3)
    job.set_xlabel("kWh x PUE for the whole job")
    job.tick_params(axis="y", labelsize=7)
    job.set_title("whole job, with CO2e [estimated; published]", fontsize=10)
    title = "Energy and CO2e [measured or estimated per the record; assumed PUE and grid intensity]"
    fig.suptitle(title, fontsize=11)
    how = "; ".join(f"{k}: {v}" for p in with_energy for k, v in p.record.energy.methods.items())
    caption = ("Left: each record's energy per step (" + (how or "method not stated")
               + ("; estimated" if any(p.record.energy.estimated for p in with_energy) else "")
               + ") over its tokens per step. Right: the job's energy from harness.cost.estimate — "
               + (" | ".join(methods) if methods else "no estimate carried energy")
               + ". Error bars: each estimate's kWh·PUE range (utilization error, goodput, scaling; CO2e scales "
               "with it). Brown: Strubell et al. 2019 Table 3 (kWh·PUE at PUE 1.58; CO2e at 0.954 lbs/kWh, EPA 2018).")
    return Figure("across-energy", title, caption, _png(fig))


def public_runs_figure(rows: Sequence) -> Figure:
    """Public training bills (harness reproduce runs) beside this project's steady-state projection,
    with the projection's range as error bars."""
    fig, ax = _new_figure(10, max(3.2, 0.5 * len(rows) + 1.5))
    ys = list(range(len(rows)))[::-1]
    proj = [r.projected_device_hours for r in rows]
    lo = [r.projected_device_hours - r.projected_device_hours_range[0] for r in rows]
    hi = [r.projected_device_hours_range[1] - r.projected_device_hours for r in rows]
    ax.errorbar(proj, ys, xerr=[lo, hi], fmt="o", color=_COLORS[0], capsize=4,
                label="projected: counted FLOPs / (peak x published steady-state MFU) [estimated]")
    pub = [(r.published_device_hours, y) for r, y in zip(rows, ys) if r.published_device_hours]
    ax.plot([p[0] for p in pub], [p[1] for p in pub], "kX", ms=9, label="published device-hours [published]")
    for r, y in zip(rows, ys):
        if r.ratio is not None:
            ax.annotate(f"x{r.ratio:.2f}", (max(r.published_device_hours, r.projected_device_hours), y),
                        textcoords="offset points", xytext=(8, -3), fontsize=7)
    ax.set_yticks(ys, [r.name for r in rows], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("device-hours (GPU or TPU chip)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    title = "Public training bills beside this project's projection [published; estimated]"
    ax.set_title(title, fontsize=10)
    caption = ("Each run's published device-hours (X) and this project's steady-state projection at the best "
               "published evidence (dot; error bars: that evidence's MFU range). The annotation is published / "
               "projected: the whole run's overhead over the steady state (1 / goodput). "
               + " ".join(f"{r.name}: {r.explanation}." for r in rows))
    return Figure("public-runs", title, caption, _png(fig))
