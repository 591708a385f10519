"""Assemble a report: stored runs → priced estimates → figures → a :class:`Report` document.

Sections, each figure titled with where its numbers come from (measured, counted, datasheet,
fetched/cache/snapshot prices with their date, published, assumed):

* per run: step time over the steps (warm-up marked) and its distribution; FLOPs by module
  (the record's forward breakdown) and by operator (the record's count); achieved FLOP/s against
  the measured and datasheet peaks; cost per price offer, one run and fully loaded, with AI21's
  and Strubell's published figures when the model size matches;
* across runs: MFU and throughput against model size, per device and dtype; cost against
  model size beside the published figures; energy and CO2e when records carry energy.

Prices are read offline (cache, else the bundled snapshot).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from harness.errors import ConfigError, HarnessError
from harness.report.document import Report
from harness.report.figures import (Priced, cost_figure, cost_size_figure, energy_figure, flops_figure, peaks_figure,
                                    public_runs_figure, range_text, scaling_figure, step_time_figure, _pct)
from harness.results.record import RunRecord

DEFAULT_CORPUS = "bert-wiki-books"
DEFAULT_PROJECTION_GPU = "A100"
DEFAULT_PROJECTION_DTYPE = "bf16"


@dataclass(frozen=True)
class Options:
    """How the cost section prices runs: `corpus` and `plan` (default: the corpus's recipe);
    runs not measured on a datasheet GPU are projected to `gpu` in `dtype`; `on_prem`, estimate
    options such as {"on_prem_usd_per_gpu": 25000, "usd_per_kwh": 0.1}, adds the owned-hardware bill."""

    corpus: str = DEFAULT_CORPUS
    plan: str | None = None
    gpu: str = DEFAULT_PROJECTION_GPU
    dtype: str = DEFAULT_PROJECTION_DTYPE
    on_prem: tuple[tuple[str, float], ...] = ()
    public_runs: bool = True   # the figure of public training bills (harness reproduce runs)


def _measured_on_datasheet_gpu(record: RunRecord) -> bool:
    from harness.hardware import datasheet_row

    return record.device.type == "cuda" and datasheet_row(record.device.name) is not None


def price_runs(records: Sequence[RunRecord], all_records: Sequence[RunRecord], offers,
               options: Options, calibration: Sequence = ()) -> list[Priced]:
    """Each run extrapolated to the plan over the corpus (harness.cost.estimate) and priced per offer.
    Runs not measured on a datasheet GPU are projected to `options.gpu` (utilization from stored
    runs there, else `calibration` fits, else the labelled default). A plan whose lengths the
    model cannot take falls back to one epoch at the run's length, with a note."""
    from harness.cost.estimate import EstimateOptions, estimate, plan_misfit
    from harness.cost.plans import load_corpus, load_plan, one_epoch

    corpus = load_corpus(options.corpus)
    plan = load_plan(options.plan or corpus.plan) if (options.plan or corpus.plan) else one_epoch()
    out = []
    for record in records:
        projected = not _measured_on_datasheet_gpu(record)
        projection = {"gpu": options.gpu, "dtype": options.dtype} if projected else {}
        est_options = EstimateOptions.build(**projection, **dict(options.on_prem))
        try:
            misfit = plan_misfit(record.spec, plan)
            est = estimate(record, one_epoch() if misfit else plan, corpus, est_options, offers=offers,
                           records=all_records, calibration=calibration if projected else ())
            note = (f"plan {plan.name} does not fit this model ({misfit}); priced one epoch at its length instead"
                    if misfit else None)
            out.append(Priced(record, est, None, note))
        except (HarnessError, ValueError) as err:
            out.append(Priced(record, None, f"no estimate: {err}"))
    return out


def build(records: Sequence[RunRecord], *, all_records: Sequence[RunRecord] | None = None,
          cache_dir: Path | None = None, options: Options = Options(), calibration: Sequence = (),
          now: datetime | None = None) -> Report:
    """The report for `records`. `all_records` (default `records`) and `calibration`
    (harness.cost.calibrate fits) inform the utilization of projections; prices come offline from
    `cache_dir` (None: none) or the bundled snapshot."""
    from harness.cost.prices import load_prices

    if not records:
        raise ConfigError("report.runs", "no runs to report")
    now = now or datetime.now(timezone.utc)
    if cache_dir is None:  # no cache to read: the bundled snapshot alone (never a path relative to the cwd)
        with tempfile.TemporaryDirectory(prefix="harness-no-cache-") as empty:
            prices = load_prices(cache_dir=Path(empty), offline=True)
    else:
        prices = load_prices(cache_dir=cache_dir, offline=True)
    priced = price_runs(records, all_records or records, prices.offers, options, calibration)
    report = Report(f"harness report: {len(records)} run(s)")
    report.p(f"Generated {now.isoformat(timespec='seconds')} from {len(records)} stored run(s). Every figure's "
             "title says where its numbers come from: measured (timed here), counted (torch's FLOP counter), "
             "datasheet (vendor table), prices fetched/cache/snapshot with their date, published (papers), "
             "estimated or assumed.")

    report.h(2, "Runs")
    report.table(["run", "model", "params", "device", "dtype", "batch x seq x accum", "median step",
                  "tokens/s", "MFU (measured peak)", "MFU (datasheet)", "energy / step"],
                 [[r.run_id, r.model_label, f"{r.params:,}", str(r.device.name), r.dtype,
                   f"{r.batch_size} x {r.seq_len} x {r.grad_accum}", f"{r.median_step_s * 1e3:.3g} ms",
                   f"{r.tokens_per_s:,.0f}", _pct(r.mfu_measured), _pct(r.mfu_datasheet),
                   "n/a" if r.energy is None else f"{r.energy.joules_per_step:.3g} J"] for r in records])

    for p in priced:
        r = p.record
        report.h(2, f"Run {r.run_id}")
        report.p(f"{r.model_label} ({r.model.family}), {r.params:,} parameters, batch {r.batch_size} x "
                 f"seq {r.seq_len} x accum {r.grad_accum}, {r.dtype} on {r.device.type} "
                 f"({r.device.name}), created {r.created_at}.")
        for warning in r.warnings:
            report.p(f"Warning from the run: {warning}")
        report.h(3, "Step time")
        report.figure(step_time_figure(r))
        report.h(3, "FLOPs by module")
        report.figure(flops_figure(r))
        report.h(3, "Achieved FLOP/s against peaks")
        report.figure(peaks_figure(r))
        report.h(3, "Cost")
        notes = "; ".join(p.estimate.notes) if p.estimate is not None else p.why_not
        report.figure_or(cost_figure(p), f"No cost figure: {notes}.")
        if p.estimate is not None and p.estimate.on_prem is not None:
            report.p(_on_prem_text(p.estimate.on_prem))
        if p.estimate is not None and p.estimate.bill:
            report.p(_bill_text(p.estimate))

    report.h(2, "Across runs")
    report.h(3, "MFU and throughput against model size")
    report.figure(scaling_figure(records))
    report.h(3, "Cost against model size")
    report.figure(cost_size_figure(priced))
    report.h(3, "Energy and CO2e")
    report.figure_or(energy_figure(priced), "No run in this report carries an energy measurement (record key "
                     "`energy`), so no energy or CO2e figure is drawn.")

    report.h(3, "Public training runs beside this project's projection")
    if options.public_runs:
        from harness.cost.reproduce import reproduce_runs

        report.figure(public_runs_figure(reproduce_runs()))
    else:
        report.p("Not drawn (public_runs off).")

    report.h(2, "Provenance")
    sources = ["Price tables (offline: cache, else the bundled snapshot): "
               + "; ".join(f"{t['name']}: {t['provenance']} as of {t['as_of']}, {t['n_offers']} offers"
                           for t in prices.tables)]
    sources += [f"Price warning: {w}" for w in prices.warnings]
    for p in priced:
        if p.estimate is not None:
            e = p.estimate
            sources.append(f"{p.record.run_id}: plan {e.plan['name']} ({e.plan['source'] or 'no source'}); "
                           f"corpus {e.corpus['name'] if e.corpus else 'none'} "
                           f"({(e.corpus or {}).get('source') or 'no source'}); peak {e.peak_source}; "
                           f"utilization {e.utilization_source}; scaling {e.scaling_efficiency_source}"
                           + "".join(f"; note: {n}" for n in e.notes))
        else:
            sources.append(f"{p.record.run_id}: {p.why_not}")
    from harness.published import AI21_SOURCE

    sources.append(f"Published: {AI21_SOURCE} (one run and fully loaded = 20x); Strubell, Ganesh, McCallum 2019, "
                   "arXiv 1906.02243, Table 3.")
    report.items(sources)
    return report


def _on_prem_text(o: dict) -> str:
    """The owned-hardware bill in one paragraph, every input with its source."""
    from harness.units import usd

    inputs = "; ".join(f"{name.replace('_', ' ')} {o[name]['value']} ({o[name]['source'] or 'user-given'})"
                       for name in ("usd_per_gpu", "host_usd_per_gpu", "amortize_years", "duty_cycle", "usd_per_kwh"))
    total = usd(o["total_usd"]) if o["total_usd"] is not None else "unknown (" + "; ".join(o["notes"]) + ")"
    return (f"On premises [estimated; user-given prices]: {usd(o['capital_usd'])} capital "
            f"({o['capital_usd_per_device_hour']:.3f} $/device-hour) + {usd(o['energy_usd'])} energy = {total} "
            f"for the job; buying its {o['devices']} GPU(s) costs {usd(o['purchase_usd'])}. "
            f"Formula: {o['formula']}. Inputs: {inputs}.")


def _bill_text(e) -> str:
    """Steady state beside the bill at the goodput and over the labs' range, with the ranges."""
    from harness.units import usd

    g, b = e.goodput, e.bill
    s, at, lab = b["steady_state"], b["at_goodput"], b["at_lab_goodput"]
    anchors = "; ".join(f"{a['run']} {a['goodput_low']:.2f}" + ("" if a["goodput_low"] == a["goodput_high"]
                        else f"–{a['goodput_high']:.2f}") for a in g["anchors"])
    return (f"Goodput [{g['source']}]: steady state {s['device_hours']:,.1f} device-hours, {s['wall_hours']:,.1f} h "
            f"wall, {usd(s['cost_usd_min'])}–{usd(s['cost_usd_max'])} on demand; at goodput {g['value']:g}: "
            f"{at['device_hours']:,.1f} device-hours, {at['wall_hours']:,.1f} h wall, "
            f"{usd(at['cost_usd_min'])}–{usd(at['cost_usd_max'])}; at the labs' goodput "
            f"{g['lab_range'][0]:.2f}–{g['lab_range'][1]:.2f} ({anchors} [published]): "
            f"{lab['device_hours']:,.1f}–{lab['device_hours_max']:,.1f} device-hours. Ranges: {range_text(e)}.")
