"""The cost commands of the `harness` CLI: `estimate`, `prices update|show`, `reproduce ai21|strubell|runs`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from harness.cli.common import (AMORTIZE_YEARS, DUTY_CYCLE, HOST_USD_PER_GPU, MAX_DEVICES, ON_PREM_USD_PER_GPU,
                                USD_PER_KWH, bounded_float, bounded_int, on_prem_options, print_json as _print_json,
                                results_dir as _results_dir)
from harness.config import MAX_BATCH
from harness.units import usd as _usd

prices_app = typer.Typer(no_args_is_help=True, help="Cloud GPU price tables: fetch, cache, show.")
reproduce_app = typer.Typer(no_args_is_help=True, help="Published cost tables recomputed beside the paper.")




def _cache_dir(results_dir: Path) -> Path:
    return results_dir / "cache" / "prices"






def _warn(console, warnings) -> None:
    for warning in warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", soft_wrap=True)


def _check_sources(sources: list[str]) -> list[str] | None:
    """The --source names, checked; None when none was given: the default sources and every other
    source with a cached table (see `load_prices`), so a table once fetched is always used."""
    from harness.cost.prices import source_named

    for name in sources:
        source_named(name)  # an unknown one fails here, before anything is fetched
    return sources or None


def _url_overrides(sources: list[str] | None, url: Optional[str]) -> dict[str, str] | None:
    from harness.errors import ConfigError
    from harness.cost.prices import check_url

    if url is None:
        return None
    if sources is None or len(sources) != 1:
        raise ConfigError("--url", "give exactly one --source with --url")
    check_url(url)
    return {sources[0]: url}


@prices_app.command("update")
def prices_update(
    source: List[str] = typer.Option([], "--source", help="Source name (repeatable); default all."),
    url: Optional[str] = typer.Option(None, "--url", help="Fetch this URL instead of the source's default (https, or http on loopback)."),
    results_dir: Optional[Path] = typer.Option(None, "--results-dir", help="Cache under DIR/cache/prices."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Fetch price tables now (ignoring the cache's age) and cache them; fall back on failure."""
    from rich.console import Console

    from harness.cost.prices import update

    sources = _check_sources(source)
    result = update(sources, cache_dir=_cache_dir(_results_dir(results_dir)), urls=_url_overrides(sources, url))
    if as_json:
        _print_json({"tables": [dict(t) for t in result.tables], "warnings": list(result.warnings),
                     "offers": len(result.offers)})
        return
    console = Console(stderr=False)
    for t in result.tables:
        console.print(f"{t['name']}: {t['n_offers']} offers, {t['provenance']} ({t['as_of']}) from {t['url']}",
                      soft_wrap=True)
    _warn(console, result.warnings)


@prices_app.command("show")
def prices_show(
    gpu: Optional[str] = typer.Option(None, "--gpu", help="Only this GPU model (H100, A100, V100, ...)."),
    spot: Optional[bool] = typer.Option(None, "--spot/--on-demand", help="Only spot or only on-demand offers."),
    results_dir: Optional[Path] = typer.Option(None, "--results-dir", help="Cache under DIR/cache/prices."),
    as_json: bool = typer.Option(False, "--json", help="Print the offers as JSON."),
) -> None:
    """Show the offers from the cache (any age) or the bundled snapshot; never fetches."""
    import dataclasses

    from rich.console import Console
    from rich.table import Table

    from harness.cost.prices import filter_offers, load_prices

    result = load_prices(cache_dir=_cache_dir(_results_dir(results_dir)), offline=True)
    offers = sorted(filter_offers(result.offers, gpu=gpu, spot=spot), key=lambda o: o.usd_per_gpu_hour)
    if as_json:
        _print_json({"offers": [dict(dataclasses.asdict(o), labels=list(o.labels)) for o in offers],
                     "warnings": list(result.warnings), "tables": [dict(t) for t in result.tables]})
        return
    table = Table(title="GPU offers, $ per GPU-hour (cheapest first)")
    for col in ("provider", "instance", "region", "gpu", "form", "gpus", "$/h", "$/GPU-h", "spot", "as of", "from",
                "notes"):
        table.add_column(col, justify="right" if col in ("gpus", "$/h", "$/GPU-h") else "left")
    for o in offers:
        table.add_row(o.provider, o.instance, o.region, o.gpu, o.form or "unknown", str(o.gpus_per_instance),
                      f"{o.usd_per_hour:.2f}", f"{o.usd_per_gpu_hour:.3f}", "spot" if o.spot else "", o.as_of,
                      o.provenance, "; ".join(o.labels))
    console = Console(width=max(160, Console().width))  # room for the labels
    console.print(table)
    _warn(console, result.warnings)


def estimate(
    run: Optional[str] = typer.Option(None, "--run", help="Run id (or a unique prefix) to extrapolate."),
    latest: bool = typer.Option(False, "--latest", help="Use the latest stored run."),
    corpus: Optional[str] = typer.Option(None, "--corpus", help="Corpus name (harness/data/corpora) or YAML file."),
    plan: Optional[str] = typer.Option(None, "--plan", help="Plan name (harness/data/plans) or YAML file; default the corpus's recipe, else one epoch."),
    devices: int = typer.Option(1, "--devices", parser=bounded_int("--devices", 1, MAX_DEVICES), help="Devices training together."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="Project to this GPU (datasheet peak x utilization)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Precision on --gpu or of the projections (default: the run's)."),
    utilization: Optional[float] = typer.Option(None, "--utilization", parser=bounded_float("--utilization", 0, 1, low_open=True), help="MFU on --gpu when no run was measured there."),
    scaling_efficiency: Optional[float] = typer.Option(None, "--scaling-efficiency", parser=bounded_float("--scaling-efficiency", 0.01, 1), help="Weak-scaling efficiency on N devices (default 1.0, labelled assumed)."),
    fully_loaded: float = typer.Option(20.0, "--fully-loaded-multiplier", parser=bounded_float("--fully-loaded-multiplier", 1, 10_000), help="Runs per project (AI21: 2 configurations x 10 runs)."),
    pue: float = typer.Option(1.58, "--pue", parser=bounded_float("--pue", 1, 10), help="Power usage effectiveness (Strubell et al. 2019: 1.58)."),
    carbon_region: Optional[str] = typer.Option(None, "--carbon-region", help="Row of harness/data/carbon/intensity.csv (default us-average-strubell)."),
    carbon_intensity: Optional[float] = typer.Option(None, "--carbon-intensity", parser=bounded_float("--carbon-intensity", 0, 10), help="kg CO2e per kWh (overrides --carbon-region)."),
    usd_per_kwh: Optional[float] = typer.Option(None, "--usd-per-kwh", parser=bounded_float("--usd-per-kwh", *USD_PER_KWH), help="Electricity price for the energy cost."),
    micro_batch: Optional[int] = typer.Option(None, "--micro-batch", parser=bounded_int("--micro-batch", 1, MAX_BATCH), help="Sequences per device per step (default: each phase's batch / --devices)."),
    goodput: Optional[float] = typer.Option(None, "--goodput", parser=bounded_float("--goodput", 0, 1, low_open=True), help="Share of the bill that is steady-state training (default 1.0: steady state only; labs: 0.67-0.91)."),
    no_published: bool = typer.Option(False, "--no-published", help="Skip the published-measurement rung of the utilization ladder."),
    on_prem_usd_per_gpu: Optional[float] = ON_PREM_USD_PER_GPU,
    amortize_years: Optional[float] = AMORTIZE_YEARS,
    host_usd_per_gpu: Optional[float] = HOST_USD_PER_GPU,
    duty_cycle: Optional[float] = DUTY_CYCLE,
    offline: bool = typer.Option(False, "--offline", help="No network: cached tables or the bundled snapshot."),
    source: List[str] = typer.Option([], "--source", help="Price source (repeatable); default all."),
    url: Optional[str] = typer.Option(None, "--url", help="URL for the one --source (https, or http on loopback)."),
    results_dir: Optional[Path] = typer.Option(None, "--results-dir", help="Where runs and the price cache are."),
    as_json: bool = typer.Option(False, "--json", help="Print the estimate as JSON."),
) -> None:
    """Extrapolate a measured run to a whole training job and price it per cloud offer."""
    from harness.errors import ConfigError
    from harness.cost.calibrate import read_calibration
    from dataclasses import replace

    from harness.cost.estimate import EstimateOptions, estimate as extrapolate, project_offers
    from harness.cost.plans import load_corpus, load_plan, one_epoch
    from harness.cost.prices import load_prices
    from harness.results.store import find_record, load_records

    if run is not None and latest:
        raise ConfigError("--run", "give --run RUN_ID or --latest, not both")
    if run is None and not latest:
        raise ConfigError("--run", "give --run RUN_ID or --latest")
    if corpus is None and plan is None:
        raise ConfigError("--corpus", "required (or a --plan that sets its own volume)")
    root = _results_dir(results_dir)
    the_corpus = load_corpus(corpus) if corpus is not None else None
    if plan is not None:
        the_plan = load_plan(plan)
    elif the_corpus is not None and the_corpus.plan:
        the_plan = load_plan(the_corpus.plan)
    else:
        the_plan = one_epoch()
    if the_corpus is None and the_plan.corpus:
        the_corpus = load_corpus(the_plan.corpus)
    sources = _check_sources(source)
    urls = _url_overrides(sources, url)
    record = find_record(root, run)
    prices = load_prices(sources, cache_dir=_cache_dir(root), urls=urls, offline=offline)
    project = gpu is None and record.device.type != "cuda"  # no offers apply: project to each GPU
    options = EstimateOptions.build(
        devices=devices, gpu=gpu, dtype=dtype, utilization=utilization, scaling_efficiency=scaling_efficiency,
        fully_loaded_multiplier=fully_loaded, pue=pue, carbon_region=carbon_region,
        carbon_intensity_kg_per_kwh=carbon_intensity, usd_per_kwh=usd_per_kwh, micro_batch=micro_batch,
        goodput=goodput, use_published=not no_published,
        **on_prem_options(on_prem_usd_per_gpu=on_prem_usd_per_gpu, amortize_years=amortize_years,
                          host_usd_per_gpu=host_usd_per_gpu, duty_cycle=duty_cycle))
    calibration = read_calibration(root)
    stored = load_records(root)
    result = extrapolate(record, the_plan, the_corpus, options.changed(dtype=None) if project else options,
                         offers=prices.offers, records=stored, calibration=calibration,
                         price_warnings=prices.warnings)
    if project:
        result = replace(result, projections=project_offers(record, the_plan, the_corpus, options,
                                                            offers=prices.offers, records=stored,
                                                            calibration=calibration))
    if as_json:
        _print_json(result.to_dict())
    else:
        _estimate_table(result)
        _on_prem_lines(result)


def _on_prem_lines(e) -> None:
    """The bill on owned hardware, beside the cloud offers, when a purchase price was given."""
    if e.on_prem is None:
        return
    from rich.console import Console

    o = e.on_prem
    total = "unknown (" + "; ".join(o["notes"]) + ")" if o["total_usd"] is None else _usd(o["total_usd"])
    Console().print(
        f"[bold]on premises[/bold]: {_usd(o['capital_usd'])} capital ({_usd(o['usd_per_gpu']['value'])} + "
        f"{_usd(o['host_usd_per_gpu']['value'])} per GPU over {o['amortize_years']['value']:g} years at duty cycle "
        f"{o['duty_cycle']['value']:g}: {o['capital_usd_per_device_hour']:.3f} $/device-hour) + "
        f"{_usd(o['energy_usd'])} energy = {total}; buying {o['devices']} GPU(s): {_usd(o['purchase_usd'])}",
        soft_wrap=True)


def _estimate_table(e) -> None:
    from rich.console import Console
    from rich.table import Table

    from harness.config import ModelSpec

    console = Console(width=max(200, Console().width))  # the offer tables carry labels: room for them
    model = ModelSpec.model_validate(e.model).label
    corpus = f" on {e.corpus['name']} ({e.corpus['tokens']:.3g} tokens/epoch)" if e.corpus else ""
    console.print(f"[bold]{model}[/bold] ({e.params / 1e6:,.2f}M params, {e.dtype}), plan {e.plan['name']}{corpus}; "
                  f"from run {e.run_id}", soft_wrap=True)
    phases = Table(title="phases")
    for col in ("phase", "seq", "tokens", "FLOPs/token", "FLOPs", "FLOP/s (1 device)", "rate from"):
        phases.add_column(col, justify="left" if col in ("phase", "rate from") else "right")
    for p in e.phases:
        phases.add_row(p.name, str(p.seq_len), f"{p.tokens:.4g}", f"{p.flops_per_token:.4g}", f"{p.flops:.4g}",
                       f"{p.flops_per_s:.4g}", p.rate_source)
    console.print(phases)
    util = "unknown" if e.utilization is None else f"{e.utilization:.1%}"
    if e.utilization_range:
        util += f" ({e.utilization_range[0]:.1%}–{e.utilization_range[1]:.1%}, in the cost range)"
    console.print(f"hardware: {e.hardware} ({e.hardware_source}); utilization {util} — {e.utilization_source}",
                  soft_wrap=True)
    console.print(f"total: {e.tokens_total:.4g} tokens, {e.flops_total:.4g} FLOPs; {e.device_hours:,.1f} device-hours; "
                  f"{e.wall_hours:,.1f} h wall ({e.wall_hours / 24:,.1f} days) on {e.devices} device(s), "
                  f"scaling efficiency {e.scaling_efficiency:.2f} ({e.scaling_efficiency_source})", soft_wrap=True)
    multiplier = e.fully_loaded["multiplier"]
    whole = any(o.whole_instance_cost_usd is not None and o.instances * o.gpus_per_instance != e.devices
                for o in [*e.offers, *e.gpu_only])
    for title, kind_offers in ((f"on-demand offers: one run, and fully loaded x{multiplier:g}", e.on_demand.offers),
                               ("spot offers (beside the on-demand range, never in it)", e.spot.offers),
                               ("GPU-only offers: the GPUs alone, host VM extra (in no range)", e.gpu_only)):
        if not kind_offers:
            continue
        table = Table(title=title)
        cols = ["provider", "instance", "region", "form", "gpus", "$/GPU-h", "one run (pro rata)"]
        cols += ["whole instances"] if whole else []
        cols += ["fully loaded", "as of", "from", "notes"]
        for col in cols:
            table.add_column(col, justify="right" if col in ("gpus", "$/GPU-h", "one run (pro rata)", "whole instances",
                                                             "fully loaded") else "left")
        for o in kind_offers:
            row = [o.provider, o.instance, o.region, o.form or "unknown", str(o.gpus_per_instance),
                   f"{o.usd_per_gpu_hour:.3f}", _usd(o.cost_usd)]
            if whole:
                row.append(f"{_usd(o.whole_instance_cost_usd)} ({o.instances}x)")
            row += [_usd(o.cost_usd * multiplier), o.as_of, o.provenance, "; ".join(o.labels)]
            table.add_row(*row)
        console.print(table)
    for k in (e.on_demand, e.spot):
        if k.offers:
            console.print(f"[bold]{k.kind}, one run: {_usd(k.cost_usd_min)} – {_usd(k.cost_usd_max)}; fully loaded: "
                          f"{_usd(k.fully_loaded['cost_usd_min'])} – {_usd(k.fully_loaded['cost_usd_max'])}[/bold] "
                          f"({k.fully_loaded['source']}; pro rata per GPU-hour)", soft_wrap=True)
    if e.spot.offers and not e.on_demand.offers:
        console.print("no on-demand offer: the headline cost range is empty (spot is never the headline)",
                      soft_wrap=True)
    if e.projections:
        table = Table(title=f"projected to the GPUs on offer ({e.dtype} unless --dtype; datasheet peak x utilization): "
                            f"one run, and fully loaded x{e.fully_loaded['multiplier']:g}")
        for col in ("gpu", "utilization", "utilization from", "device-hours", "range (goodput, error)",
                    "one run (on demand)", "fully loaded",
                    "spot, one run", "offers", "forms", "as of"):
            table.add_column(col, justify="left" if col in ("gpu", "utilization from", "forms", "as of") else "right")
        for p in e.projections:
            if "skipped" in p:
                table.add_row(p["gpu"], "", p["skipped"], "", "", "", "", "", "", "", "")
                continue
            fl, spot = p["fully_loaded"], p.get("spot") or {}
            table.add_row(p["gpu"], f"{p['utilization']:.1%}", p["utilization_source"].split(" (")[0],
                          f"{p['device_hours']:,.1f}",
                          "" if not (p.get("ranges") or {}).get("device_hours") else
                          f"{p['ranges']['device_hours']['low']:,.1f}–{p['ranges']['device_hours']['high']:,.1f}",
                          f"{_usd(p['cost_usd_min'])} – {_usd(p['cost_usd_max'])}",
                          f"{_usd(fl['cost_usd_min'])} – {_usd(fl['cost_usd_max'])}",
                          f"{_usd(spot.get('cost_usd_min'))} – {_usd(spot.get('cost_usd_max'))}" if spot.get("offers")
                          else "", str(p["offers"]),
                          ", ".join(f"{k} {v}" for k, v in (p.get("forms") or {}).items()), ", ".join(p["as_of"]))
        console.print(table)
        console.print("projections: this run's FLOPs on hardware that was not measured; pass --gpu NAME for one "
                      "GPU's offers in detail", soft_wrap=True)
    if e.energy:
        g = e.energy
        cost = (f"; energy cost {_usd(g['energy_cost_usd'])} at ${g['usd_per_kwh']}/kWh" if g["usd_per_kwh"] is not None
                else "; energy cost: give --usd-per-kwh")
        console.print(f"[bold]energy: {g['kwh']:,.1f} kWh; x PUE {g['pue']:g} ({g['pue_source']}) = {g['kwh_pue']:,.1f} kWh; "
                      f"CO2e {g['co2e_kg']:,.1f} kg = {g['co2e_lbs']:,.1f} lbs[/bold] at {g['kg_co2e_per_kwh']} kg/kWh "
                      f"({g['carbon_region']}: {g['carbon_source']}){cost}", soft_wrap=True)
        console.print(f"energy method: {g['method']}", soft_wrap=True)
    _bill_lines(console, e)
    for note in e.notes:
        console.print(f"note: {note}", soft_wrap=True)
    _warn(console, e.price_warnings)


def _span(r, fmt) -> str:
    return "unknown" if r is None else f"{fmt(r['value'])} ({fmt(r['low'])} – {fmt(r['high'])})"


def _bill_lines(console, e) -> None:
    """Steady state beside the bill at the goodput, the labs' range, and every figure's low–high."""
    from rich.table import Table

    if not e.bill:
        return
    g = e.goodput
    table = Table(title=f"the bill: steady state and at goodput {g['value']:g} ({g['source']}); labs have seen "
                        f"{g['lab_range'][0]:.2f}–{g['lab_range'][1]:.2f}")
    for col in ("", "device-hours", "wall hours", "on-demand cost", "kWh x PUE", "CO2e kg"):
        table.add_column(col, justify="left" if not col else "right")

    def num(v):
        return "unknown" if v is None else (f"{v:,.1f}" if abs(v) >= 100 else f"{v:.4g}")

    for label, key in (("steady state", "steady_state"), (f"at goodput {g['value']:g}", "at_goodput")):
        b = e.bill[key]
        table.add_row(label, num(b["device_hours"]), num(b["wall_hours"]),
                      f"{_usd(b['cost_usd_min'])} – {_usd(b['cost_usd_max'])}", num(b["kwh_pue"]), num(b["co2e_kg"]))
    lab = e.bill["at_lab_goodput"]
    table.add_row(f"labs' goodput {g['lab_range'][0]:.2f}–{g['lab_range'][1]:.2f}",
                  f"{num(lab['device_hours'])} – {num(lab['device_hours_max'])}",
                  f"{num(lab['wall_hours'])} – {num(lab['wall_hours_max'])}",
                  f"{_usd(lab['cost_usd_min'])} – {_usd(lab['cost_usd_max'])}",
                  f"{num(lab['kwh_pue'])} – {num(lab['kwh_pue_max'])}", f"{num(lab['co2e_kg'])} – {num(lab['co2e_kg_max'])}")
    console.print(table)
    r = e.ranges
    console.print(f"[bold]ranges at goodput {r['at_goodput']:g}[/bold]: device-hours {_span(r['device_hours'], num)}; "
                  f"wall hours {_span(r['wall_hours'], num)}; on-demand cost {_span(r['cost_usd'], _usd)}; "
                  f"kWh x PUE {_span(r['kwh_pue'], num)}; CO2e kg {_span(r['co2e_kg'], num)}", soft_wrap=True)
    console.print("ranges from: " + ("; ".join(r["from"]) or "no input with a known spread"), soft_wrap=True)
    for a in g["anchors"]:
        console.print(f"goodput anchor {a['run']}: {a['goodput_low']:.2f}" +
                      ("" if a["goodput_low"] == a["goodput_high"] else f"–{a['goodput_high']:.2f}") + f" ({a['how']})",
                      soft_wrap=True)


@reproduce_app.command("ai21")
def reproduce_ai21(
    gpu: str = typer.Option("V100 SXM2", "--gpu", help="GPU the rows are priced on (datasheet peak)."),
    dtype: str = typer.Option("fp16", "--dtype", help="Precision of the datasheet peak."),
    utilization: Optional[float] = typer.Option(None, "--utilization", parser=bounded_float("--utilization", 0, 1, low_open=True), help="MFU (default: 30%, labelled assumed)."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
) -> None:
    """AI21's BERT/T5 cost table (Sharir et al. 2020) rebuilt from 6·N·tokens and snapshot prices."""
    from rich.console import Console
    from rich.table import Table

    from harness.cost.prices import load_snapshot
    from harness.cost.reproduce import reproduce_ai21 as rebuild
    from harness.published import AI21_SOURCE

    snapshot = load_snapshot()
    rows = rebuild(snapshot.offers, gpu=gpu, dtype=dtype, utilization=utilization)
    if as_json:
        _print_json({"source": AI21_SOURCE, "prices": "bundled snapshot (harness/data/prices/snapshot.csv), on-demand",
                     "rows": [r.to_dict() for r in rows]})
        return
    first = rows[0]
    console = Console(width=max(170, Console().width))
    console.print(f"{AI21_SOURCE}: paper beside 6·N·tokens on {first.gpu} {first.dtype} "
                  f"({first.peak_flops_per_s / 1e12:g} TFLOP/s datasheet) x utilization {first.utilization:.0%} "
                  f"({first.utilization_source}); on-demand snapshot prices "
                  f"{_usd(first.usd_per_gpu_hour_min)}–{_usd(first.usd_per_gpu_hour_max)} per GPU-hour", soft_wrap=True)
    table = Table()
    for col in ("model", "tokens", "FLOPs", "GPU-hours", "computed one run", "paper one run", "ratio",
                "computed fully loaded", "paper fully loaded", "utilization implied by paper"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        ratio = "n/a" if r.ratio_min is None else f"{r.ratio_min:.2f}–{r.ratio_max:.2f}"
        implied = ("n/a" if r.implied_utilization_min is None
                   else f"{r.implied_utilization_min:.1%}–{r.implied_utilization_max:.1%}")
        table.add_row(r.model, f"{r.tokens:.3g}", f"{r.flops:.3g}", f"{r.device_hours:,.0f}",
                      f"{_usd(r.cost_usd_min)}–{_usd(r.cost_usd_max)}", _usd(r.paper_usd_one_run), ratio,
                      f"{_usd(r.fully_loaded_usd_min)}–{_usd(r.fully_loaded_usd_max)}",
                      _usd(r.paper_usd_fully_loaded), implied)
    console.print(table)
    console.print("The paper states no price per GPU-hour and no utilization; the last column is the MFU at which "
                  "these prices reproduce its one-run figure. T5-11B: the paper says 'well above $1.3 million'.",
                  soft_wrap=True)


@reproduce_app.command("strubell")
def reproduce_strubell(as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON.")) -> None:
    """Strubell et al.'s Table 3 recomputed from its power and hours with its own formula."""
    from rich.console import Console
    from rich.table import Table

    from harness.cost.reproduce import reproduce_strubell as rebuild
    from harness.published import STRUBELL_SOURCE

    rows = rebuild()
    if as_json:
        _print_json({"source": STRUBELL_SOURCE, "formula": "kWh·PUE = 1.58 · hours · W / 1000; "
                     "CO2e lbs = 0.954 · kWh·PUE", "rows": [r.to_dict() for r in rows]})
        return
    console = Console(width=max(170, Console().width))
    console.print(f"{STRUBELL_SOURCE}: kWh·PUE = 1.58 · hours · (total W) / 1000; CO2e = 0.954 lbs/kWh · kWh·PUE",
                  soft_wrap=True)
    table = Table()
    for col in ("model", "hardware", "hours", "power W", "kWh·PUE paper", "computed", "diff", "CO2e lbs paper",
                "computed", "diff", "cloud cost (paper)", "implied $/accelerator-hour"):
        table.add_column(col, justify="left" if col in ("model", "hardware") else "right")

    def num(v, digits=0):
        return "—" if v is None else f"{v:,.{digits}f}"

    for r in rows:
        table.add_row(r.model, r.hardware, num(r.hours), num(r.power_w, 2), num(r.kwh_paper), num(r.kwh_computed, 1),
                      "—" if r.kwh_diff_pct is None else f"{r.kwh_diff_pct:+.2f}%", num(r.co2_lbs_paper),
                      num(r.co2_lbs_computed, 1), "—" if r.co2_diff_pct is None else f"{r.co2_diff_pct:+.2f}%",
                      f"${r.cost_paper_usd_min:,.0f}–${r.cost_paper_usd_max:,.0f}",
                      f"${r.implied_usd_per_accelerator_hour_min:.2f}–${r.implied_usd_per_accelerator_hour_max:.2f}")
    console.print(table)
    console.print("Differences are the paper's rounding to whole kWh and lbs (its '79 h' for BERT_base is itself "
                  "rounded). Cloud cost = hours x accelerators x the implied price per accelerator-hour "
                  "(preemptible to on-demand); TPU rows have no published power.", soft_wrap=True)


@reproduce_app.command("runs")
def reproduce_runs(as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON.")) -> None:
    """Public training bills (Llama 3.1, GPT-3, PaLM, nanoGPT, BERT-base) beside this project's projection."""
    from rich.console import Console
    from rich.table import Table

    from harness.cost.reproduce import reproduce_runs as rebuild

    rows = rebuild()
    if as_json:
        _print_json({"rows": [r.to_dict() for r in rows],
                     "method": "counted FLOPs per token x published tokens; projection = FLOPs / (peak x the best "
                               "published steady-state MFU); ratio = published device-hours / projected"})
        return
    console = Console(width=max(200, Console().width))
    table = Table(title="public training runs: the published bill beside this project's steady-state projection")
    for col in ("run", "FLOPs/token", "tokens", "FLOPs", "published FLOPs", "hardware", "published device-h",
                "implied MFU (ours / 6ND)", "steady MFU", "projected device-h", "published / projected"):
        table.add_column(col, justify="left" if col in ("run", "hardware") else "right")

    def num(v, fmt):
        return "—" if v is None else format(v, fmt)

    for r in rows:
        lo, hi = r.projected_device_hours_range
        implied = ("—" if r.implied_utilization is None else
                   f"{r.implied_utilization:.1%} / {r.implied_utilization_6nd:.1%}")
        table.add_row(r.name, f"{r.flops_per_token:.4g}", f"{r.tokens:.3g}", f"{r.flops_total:.3g}",
                      num(r.published_flops, ".3g"), f"{r.hardware} {r.dtype}", num(r.published_device_hours, ",.0f"),
                      implied, f"{r.steady_utilization:.1%}", f"{r.projected_device_hours:,.0f} ({lo:,.0f}–{hi:,.0f})",
                      num(r.ratio, ".2f"))
    console.print(table)
    for r in rows:
        console.print(f"[bold]{r.name}[/bold]: {r.explanation}. Steady MFU from {r.steady_source}. FLOPs: "
                      f"{r.flops_per_token_source}. Hours: {r.hours_source}." +
                      (f" Published figure is itself an estimate or rounded: {r.estimate_note}." if r.published_is_estimate
                       else "") + (f" {r.context}." if r.context else ""), soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the cost commands to the main app."""
    app.command("estimate")(estimate)
    app.add_typer(prices_app, name="prices")
    app.add_typer(reproduce_app, name="reproduce")
