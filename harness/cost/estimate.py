"""Estimate: a measured run extrapolated to a whole training job, priced per cloud offer.

Data flow: a stored run record + a corpus + a plan (+ price offers) → an :class:`Estimate`.

* Tokens per phase come from the plan (steps × batch × length, tokens, or epochs × corpus).
* FLOPs per token are counted (torch's counter on a fake replica) at each phase's length, so
  attention's growth with length is in the total; the measured run's own length is counted too.
* Time: on the measured hardware, each phase runs at the achieved FLOP/s of a stored run at that
  length when one exists (same model, device, dtype), otherwise at the measured run's achieved
  FLOP/s (stated as scaled). On hardware that was not measured (`gpu=`): datasheet peak ×
  a utilization taken, in order, from stored runs on that hardware model, from the user, or
  from a labelled default.
* N devices: device-hours = one-device time / scaling efficiency; wall time = device-hours / N.
  The efficiency is the user's, or 1.0 labelled as an assumption (no multi-device record).
* Cost per offer = device-hours × the offer's price per GPU-hour (pro rata; whole instances cost
  more when N is not a multiple of the GPUs per instance). Fully loaded = × a multiplier,
  default 20: AI21's "two configurations and ten runs per configuration".
"""

from __future__ import annotations

import csv
import functools
import re
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from harness.data import data_path
from harness.errors import ConfigError
from harness.cost.plans import Corpus, Plan

DEFAULT_PUE = 1.58  # 2018 industry average, as Strubell et al. 2019 used
DEFAULT_CARBON_REGION = "us-average-strubell"
LBS_PER_KG = 1 / 0.45359237
CARBON_TABLE = data_path("carbon", "intensity.csv")
DEFAULT_UTILIZATION = 0.30  # nanoGPT's assumed MFU for its 6ND projection (REFERENCE §3)
DEFAULT_UTILIZATION_SOURCE = "assumed default 30% MFU (nanoGPT's projection; no measured run on this hardware)"
FULLY_LOADED_MULTIPLIER = 20  # AI21 (Sharir et al. 2020): 2 configurations x 10 runs


@dataclass(frozen=True)
class PhaseEstimate:
    """One plan phase: its tokens, FLOPs and one-device time, each with where it came from."""

    name: str
    seq_len: int
    tokens: float
    flops_per_token: float
    flops: float
    flops_per_s: float          # the rate the phase is timed at (one device)
    rate_source: str            # measured | predicted from depth slices | scaled | projected, with the run id
    device_s: float             # on one device, before scaling efficiency


@dataclass(frozen=True)
class OfferCost:
    """One cloud offer and what the whole job costs on it."""

    provider: str
    instance: str
    region: str
    gpu: str
    gpus_per_instance: int
    usd_per_hour: float
    usd_per_gpu_hour: float
    spot: bool
    as_of: str
    source: str
    provenance: str
    cost_usd: float


@dataclass(frozen=True)
class Estimate:
    """A whole training job: tokens, FLOPs, device-hours, wall time and cost per offer."""

    run_id: str
    model: dict[str, Any]
    params: int
    dtype: str
    corpus: dict[str, Any] | None
    plan: dict[str, Any]
    phases: list[PhaseEstimate]
    tokens_total: float
    flops_total: float
    hardware: str
    hardware_source: str               # measured | projected
    peak_flops_per_s: float | None
    peak_source: str | None
    utilization: float | None
    utilization_source: str
    devices: int
    scaling_efficiency: float
    scaling_efficiency_source: str
    device_hours: float
    wall_hours: float
    offers: list[OfferCost]
    cost_usd_min: float | None
    cost_usd_max: float | None
    fully_loaded: dict[str, Any]
    price_warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    energy: dict[str, Any] | None = None
    projections: list[dict[str, Any]] = field(default_factory=list)  # see project_offers
    utilization_range: list[float] | None = None  # ± the calibration error; cost_usd_min/max include it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gpu_key(name: str) -> str:
    """The GPU model family a price row and a datasheet row share: "H100 SXM", "H100",
    "NVIDIA H100 80GB HBM3" → "H100"; "A100-80GB" → "A100". Memory sizes and form factors are
    priced together."""
    match = re.search(r"\b([A-Z]+\d+[A-Z]?)\b", name.upper().replace("-", " "))
    return match.group(1) if match else name.upper()


def carbon_table(path: Path = CARBON_TABLE) -> dict[str, dict[str, Any]]:
    """Region → {kg_co2e_per_kwh, as_of, source} from the packaged carbon table (harness/data/carbon/intensity.csv)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["region"]: {"kg_co2e_per_kwh": float(row["kg_co2e_per_kwh"]), "as_of": row["as_of"],
                                "source": row["source"]} for row in csv.DictReader(handle)}


def carbon_intensity(region: str | None, kg_per_kwh: float | None) -> tuple[float, str, str]:
    """(kg CO2e per kWh, region label, source): a user value wins, else the region's table row."""
    if kg_per_kwh is not None:
        if kg_per_kwh < 0:
            raise ConfigError("--carbon-intensity", f"must be >= 0 kg CO2e/kWh, got {kg_per_kwh}")
        return kg_per_kwh, region or "user", "user-given (--carbon-intensity)"
    table = carbon_table()
    name = region or DEFAULT_CARBON_REGION
    if name not in table:
        raise ConfigError("--carbon-region", f"unknown region {name!r}; allowed: {', '.join(table)}")
    row = table[name]
    return row["kg_co2e_per_kwh"], name, f"{row['source']} (data year: {row['as_of']})"


def energy_settings(*, pue: float, region: str | None, kg_per_kwh: float | None,
                    usd_per_kwh: float | None) -> dict[str, Any]:
    """The validated inputs that turn joules into kWh·PUE, CO2e and dollars, each with its source."""
    if pue < 1:
        raise ConfigError("--pue", f"must be >= 1.0 (facility energy / IT energy), got {pue}")
    if usd_per_kwh is not None and usd_per_kwh < 0:
        raise ConfigError("--usd-per-kwh", f"must be >= 0, got {usd_per_kwh}")
    intensity, label, source = carbon_intensity(region, kg_per_kwh)
    return {"pue": pue, "pue_source": "default 1.58 (Strubell et al. 2019)" if pue == DEFAULT_PUE
            else "user-given (--pue)", "carbon_region": label, "kg_co2e_per_kwh": intensity,
            "carbon_source": source, "usd_per_kwh": usd_per_kwh}


def job_energy(energy_j: float, method: str, settings: dict[str, Any]) -> dict[str, Any]:
    """kWh, kWh x PUE, CO2e (kg, lbs) and energy cost of `energy_j` joules of IT energy
    (Strubell et al. 2019: p = PUE x kWh; CO2e = intensity x p), `settings` from energy_settings."""
    kwh = energy_j / 3.6e6
    kwh_pue = kwh * settings["pue"]
    kg = kwh_pue * settings["kg_co2e_per_kwh"]
    price = settings["usd_per_kwh"]
    return {"kwh": kwh, **settings, "kwh_pue": kwh_pue, "method": method, "co2e_kg": kg,
            "co2e_lbs": kg * LBS_PER_KG, "energy_cost_usd": None if price is None else kwh_pue * price}


def _how_timed(record: Mapping[str, Any]) -> str:
    """"measured", or "predicted from depth slices" for a depth-sliced record."""
    return "predicted from depth slices" if record.get("depth_extrapolation") else "measured"


def per_device_rate(record: dict[str, Any]) -> float:
    """Achieved model FLOP/s of one device: a multi-device record's rate is for all its ranks
    (its scaling losses stay in it)."""
    return record["achieved_flops_per_s"] / record.get("world_size", 1)


def _same_model(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = set(a) | set(b)
    return all(a.get(k) == b.get(k) for k in keys if k not in ("preset",))


def _device_gpu(record: dict[str, Any]) -> str | None:
    """The datasheet row name of a record's device, or None (CPU, unknown GPU)."""
    from harness.hardware import datasheet_row

    if record["device"].get("type") != "cuda":
        return None
    row = datasheet_row(record["device"].get("name", ""))
    return row.gpu if row else None


@functools.lru_cache(maxsize=64)
def flops_per_token(spec, seq_len: int, decoder_seq_len: int | None) -> float:
    """Model FLOPs of one training token at `seq_len` (one sequence, counted on a fake replica).
    Cached: projections to several GPUs count each length once."""
    from harness.flops.count import count_model_flops

    train = {"batch_size": 1, "seq_len": seq_len, "grad_accum": 1}
    if decoder_seq_len is not None:
        train["decoder_seq_len"] = decoder_seq_len
    one = spec.model_copy(update={"train": spec.train.model_copy(update=train)})
    count, _ = count_model_flops(one, backward=True)
    return count.total / seq_len


def _phase_lengths(spec, plan: Plan) -> list[tuple[int, int | None]]:
    model, train = spec.model, spec.train
    lengths = []
    for i, phase in enumerate(plan.phases):
        seq = phase.seq_len or train.seq_len
        if model.max_positions is not None and seq > model.max_positions:
            raise ConfigError(f"plan.phases[{i}].seq_len", f"{seq} exceeds the model's max_positions "
                              f"{model.max_positions}; allowed: 1..{model.max_positions}")
        dec = None
        if model.family == "t5":  # the run's decoder/encoder ratio unless the phase says
            dec = phase.decoder_seq_len or max(1, round(train.decoder_seq_len * seq / train.seq_len))
        lengths.append((seq, dec))
    return lengths


def measured_scaling(record: dict[str, Any], records: Sequence[dict[str, Any]], devices: int
                     ) -> tuple[float, str] | None:
    """Weak-scaling efficiency T(1)·N / T(N) in tokens/s from stored runs of the same model, dtype,
    device and per-device batch at world size 1 and N > 1; the measured N nearest above `devices`
    (else the largest, said to be extrapolated). None when no multi-device run matches."""
    def key(r):
        return (r["dtype"], r["device"].get("name"), r["batch_size"], r["seq_len"], r["grad_accum"])

    alike = [r for r in records if _same_model(r["model"], record["model"]) and key(r) == key(record)]
    single = [r for r in alike if r.get("world_size", 1) == 1]
    multi = [r for r in alike if r.get("world_size", 1) > 1]
    if not single or not multi:
        return None
    one = single[-1]["tokens_per_s"]
    by_n = {r["world_size"]: r for r in multi}  # the latest run per world size
    above = [n for n in by_n if n >= devices]
    n = min(above) if above else max(by_n)
    run = by_n[n]
    efficiency = run["tokens_per_s"] / (n * one)
    where = ("" if n == devices else f"; extrapolated beyond the measured N={n}" if n < devices
             else f"; measured at N={n}, used for N={devices}")
    return efficiency, (f"measured: {run['tokens_per_s']:.4g} tokens/s on {n} devices / ({n} x "
                        f"{one:.4g} on one) (runs {run['run_id']}, {single[-1]['run_id']}){where}")


def _utilization_for(gpu: str, dtype: str, records: Sequence[dict[str, Any]], user: float | None,
                     notes: list[str], record: dict[str, Any], calibration: Sequence = ()
                     ) -> tuple[float, str, float]:
    """Utilization on hardware `gpu`, its source and its ± error: stored runs of this model on it,
    else the calibration fit for it at this model's size, else stored runs of other models on it
    (median), else the user's, else the default."""
    from harness.cost.calibrate import find_fit

    measured = [r for r in records if _device_gpu(r) == gpu and r["dtype"] == dtype
                and r.get("mfu_datasheet") and not r.get("depth_extrapolation")]
    same = [r for r in measured if _same_model(r["model"], record["model"]) and r["seq_len"] == record["seq_len"]]
    fit = find_fit(calibration, gpu, dtype)
    if user is not None and (same or fit is not None or measured):
        notes.append(f"--utilization {user} not used: runs measured on {gpu} take precedence")
    if same:
        value = statistics.median(r["mfu_datasheet"] for r in same)
        ids = ", ".join(r["run_id"] for r in same[:5])
        return value, f"measured: this model on {gpu} {dtype} ({ids})", 0.0
    if fit is not None:
        tokens = record["tokens_per_step"] / record.get("world_size", 1)
        value = fit.predict(record["model"]["hidden"], tokens, record["seq_len"])
        inside = (fit.ranges["hidden"][0] <= record["model"]["hidden"] <= fit.ranges["hidden"][1]
                  and fit.ranges["tokens_per_step"][0] <= tokens <= fit.ranges["tokens_per_step"][1])
        return value, (f"calibrated: fit of {fit.n} runs on {gpu} {dtype}, ±{fit.error:.3f} "
                       f"({'inside' if inside else 'extrapolated beyond'} the measured sizes; harness calibrate)"), \
            fit.error
    if measured:
        value = statistics.median(r["mfu_datasheet"] for r in measured)
        ids = ", ".join(r["run_id"] for r in measured[:5])
        return value, f"measured: median MFU of {len(measured)} stored run(s) on {gpu} {dtype} ({ids})", 0.0
    if user is not None:
        return user, "user-given (--utilization)", 0.0
    return DEFAULT_UTILIZATION, DEFAULT_UTILIZATION_SOURCE, 0.0


def estimate(record: dict[str, Any], plan: Plan, corpus: Corpus | None, *, offers: Iterable = (),
             records: Sequence[dict[str, Any]] = (), devices: int = 1, gpu: str | None = None,
             utilization: float | None = None, scaling_efficiency: float | None = None,
             dtype: str | None = None, calibration: Sequence = (), pue: float = DEFAULT_PUE, carbon_region: str | None = None,
             carbon_intensity_kg_per_kwh: float | None = None, usd_per_kwh: float | None = None,
             fully_loaded_multiplier: float = FULLY_LOADED_MULTIPLIER,
             price_warnings: Sequence[str] = ()) -> Estimate:
    """Extrapolate `record` (a stored run, JSON form) to `plan` over `corpus`.

    `records` are the other stored runs (for measurements at other lengths or on `gpu`);
    `offers` are harness.cost.prices.Offer values; `gpu` names hardware to project to (datasheet),
    in `dtype` (default: the run's)."""
    from harness.config import build_spec
    from harness.hardware import datasheet_by_name, math_mode

    if devices < 1:
        raise ConfigError("--devices", "must be >= 1")
    if utilization is not None and not 0 < utilization <= 1:
        raise ConfigError("--utilization", f"must be in (0, 1], got {utilization}")
    if scaling_efficiency is not None and not 0 < scaling_efficiency <= 1:
        raise ConfigError("--scaling-efficiency", f"must be in (0, 1], got {scaling_efficiency}")
    if fully_loaded_multiplier < 1:
        raise ConfigError("--fully-loaded-multiplier", "must be >= 1")
    energy_inputs = energy_settings(pue=pue, region=carbon_region, kg_per_kwh=carbon_intensity_kg_per_kwh,
                                    usd_per_kwh=usd_per_kwh)  # validated before any counting
    spec = build_spec(record["spec"])
    lengths = _phase_lengths(spec, plan)
    notes: list[str] = []
    measured_gpu = _device_gpu(record)
    if dtype is not None and dtype not in ("fp32", "tf32", "bf16", "fp16"):
        raise ConfigError("--dtype", f"{dtype!r} is not allowed; allowed: fp32, tf32, bf16, fp16")
    if dtype is not None and dtype != record["dtype"] and gpu is None:
        raise ConfigError("--dtype", "a different precision needs --gpu (projection); the run measured "
                          f"{record['dtype']}")
    dtype = dtype or record["dtype"]
    projected = gpu is not None and (measured_gpu is None or dtype != record["dtype"]
                                     or datasheet_by_name(gpu, "fp32")[0].gpu != measured_gpu)
    if projected:
        mode = math_mode(dtype, dtype == record["dtype"] and record.get("env", {}).get("tf32_matmul", False))
        row, peak = datasheet_by_name(gpu, mode)
        util, util_source, util_error = _utilization_for(row.gpu, dtype, records, utilization, notes, record,
                                                         calibration)
        hardware, peak_source, rate = row.gpu, f"datasheet {mode}: {row.source}", peak * util
    else:
        hardware = measured_gpu or record["device"].get("name", record["device"].get("type", "?"))
        if record.get("mfu_datasheet") is not None:
            peak, peak_source = record["peak_flops_datasheet"], "datasheet (from the run record)"
            util = record["mfu_datasheet"]
        else:
            peak, peak_source = record["peak_flops_measured"], "measured matmul peak (no datasheet figure)"
            util = record["mfu_measured"]
        util_source, util_error = f"{_how_timed(record)} (run {record['run_id']})", 0.0
        if utilization is not None:
            notes.append(f"--utilization {utilization} not used: this hardware was measured")
        rate = per_device_rate(record)

    if record.get("depth_extrapolation"):
        d = record["depth_extrapolation"]
        notes.append(f"run {record['run_id']} is depth-sliced: its step time is predicted from "
                     f"{len(d['slices'])} slices (fit residual {d['residual']:.1%}), not measured at full depth")
    same = [r for r in records if r["run_id"] != record["run_id"] and _same_model(r["model"], record["model"])
            and r["dtype"] == dtype and r["device"].get("name") == record["device"].get("name")]
    phases = []
    for phase, (seq, dec) in zip(plan.phases, lengths):
        tokens = phase.tokens_total(corpus)
        per_token = flops_per_token(spec, seq, dec)
        if projected:
            phase_rate, source = rate, f"projected: {hardware} datasheet peak x utilization {util:.3f}"
        elif seq == record["seq_len"]:
            phase_rate, source = rate, f"{_how_timed(record)} (run {record['run_id']}, seq {seq})"
        else:
            at_len = [r for r in same if r["seq_len"] == seq]
            if at_len:
                best = at_len[-1]
                phase_rate, source = per_device_rate(best), f"{_how_timed(best)} (run {best['run_id']}, seq {seq})"
            else:
                phase_rate = rate
                source = (f"scaled: FLOPs counted at seq {seq}, timed at the achieved FLOP/s measured at "
                          f"seq {record['seq_len']} (run {record['run_id']}); no run at seq {seq}")
        flops = tokens * per_token
        phases.append(PhaseEstimate(phase.name or f"phase {len(phases) + 1}", seq, tokens, per_token, flops,
                                    phase_rate, source, flops / phase_rate))

    measured_eff = measured_scaling(record, records, devices) if devices > 1 else None
    if measured_eff is not None:
        efficiency, eff_source = measured_eff
        if scaling_efficiency is not None:
            notes.append(f"--scaling-efficiency {scaling_efficiency} not used: a multi-device run was measured")
    elif scaling_efficiency is None:
        efficiency = 1.0
        eff_source = ("assumed: ideal linear scaling (no multi-device record); an upper bound on throughput"
                      if devices > 1 else "one device")
    else:
        efficiency, eff_source = scaling_efficiency, "user-given (--scaling-efficiency)"
    device_hours = sum(p.device_s for p in phases) / 3600.0 / efficiency
    wall_hours = device_hours / devices

    device_s = device_hours * 3600.0
    measured_energy = record.get("energy")
    if projected:
        tdp = datasheet_by_name(gpu, "fp32")[0].tdp_w
        energy = None if tdp is None else job_energy(
            tdp * device_s, f"estimated: {hardware} datasheet max power {tdp:g} W x device-hours (GPU only; host "
            "CPU and memory not included)", energy_inputs)
        if energy is None:
            notes.append(f"energy unknown: no datasheet power for {hardware}")
    elif measured_energy:
        steps = len(record["step_times_s"])
        avg_w = measured_energy["joules_per_step"] * steps / record["total_measured_s"]
        methods = ", ".join(f"{k} {v}" for k, v in measured_energy["methods"].items())
        energy = job_energy(avg_w * device_s, f"{'estimated' if measured_energy['estimated'] else 'measured'}: "
                            f"{avg_w:.1f} W during the steps of run {record['run_id']} ({methods}) x device-hours",
                            energy_inputs)
        energy["avg_w_per_device"] = avg_w
    else:
        energy = None
        notes.append("energy unknown: the run record has no energy measurement")

    priced_gpu = hardware if (projected or measured_gpu) else None
    costs = []
    if priced_gpu is None:
        notes.append(f"measured on {hardware}: no cloud offers to price; pass --gpu to project to a GPU")
    else:
        for o in offers:
            if gpu_key(o.gpu) == gpu_key(priced_gpu):
                costs.append(OfferCost(o.provider, o.instance, o.region, o.gpu, o.gpus_per_instance,
                                       o.usd_per_hour, o.usd_per_gpu_hour, o.spot, o.as_of, o.source,
                                       o.provenance, device_hours * o.usd_per_gpu_hour))
        if not costs:
            notes.append(f"no price offers for {priced_gpu} in the loaded tables")
    costs.sort(key=lambda c: c.cost_usd)
    low = min((c.cost_usd for c in costs), default=None)
    high = max((c.cost_usd for c in costs), default=None)
    utilization_range = None
    if util_error and util:  # the calibration's error widens the range: time scales as 1 / utilization
        util_low, util_high = max(util - util_error, 1e-4), min(util + util_error, 1.0)
        utilization_range = [util_low, util_high]
        low = None if low is None else low * util / util_high
        high = None if high is None else high * util / util_low
    loaded = {"multiplier": fully_loaded_multiplier,
              "source": "AI21 (Sharir et al. 2020): two configurations x ten runs" if
              fully_loaded_multiplier == FULLY_LOADED_MULTIPLIER else "user-given",
              "cost_usd_min": None if low is None else low * fully_loaded_multiplier,
              "cost_usd_max": None if high is None else high * fully_loaded_multiplier}
    return Estimate(
        run_id=record["run_id"], model=record["model"], params=record["params"], dtype=dtype,
        corpus=None if corpus is None else {"name": corpus.name, "tokens": corpus.size_tokens,
                                            "tokens_source": corpus.size_provenance, "source": corpus.source},
        plan={"name": plan.name, "source": plan.source, "description": plan.description},
        phases=phases, tokens_total=sum(p.tokens for p in phases), flops_total=sum(p.flops for p in phases),
        hardware=hardware, hardware_source="projected" if projected else "measured",
        peak_flops_per_s=peak, peak_source=peak_source, utilization=util, utilization_source=util_source,
        devices=devices, scaling_efficiency=efficiency, scaling_efficiency_source=eff_source,
        device_hours=device_hours, wall_hours=wall_hours, offers=costs, cost_usd_min=low, cost_usd_max=high,
        fully_loaded=loaded, price_warnings=list(price_warnings), notes=notes, energy=energy,
        utilization_range=utilization_range)


def project_offers(record: dict[str, Any], plan: Plan, corpus: Corpus | None, *, offers: Sequence,
                   **kwargs) -> list[dict[str, Any]]:
    """For a run measured where no cloud offer applies (a CPU): the job projected to every GPU
    model the price tables offer and the datasheet knows, each with its utilization's source.
    Summaries, cheapest first; GPUs without a datasheet row are listed with the reason."""
    from harness.hardware import DATASHEET

    rows = []
    for key in sorted({gpu_key(o.gpu) for o in offers}):
        forms = [row for _, row in DATASHEET if gpu_key(row.gpu) == key]
        if not forms:
            rows.append({"gpu": key, "skipped": "no datasheet row: peak unknown, not guessed"})
            continue
        for row in forms:
            rows.extend(_projection(record, plan, corpus, row, key, len(forms), offers, kwargs))
    return sorted(rows, key=lambda r: (r.get("cost_usd_min") is None, r.get("cost_usd_min") or 0.0))


def _projection(record, plan, corpus, row, key: str, n_forms: int, offers, kwargs) -> list[dict[str, Any]]:
    """One GPU form's projection summary (a one-item list), or why it was skipped."""
    try:
        e = estimate(record, plan, corpus, offers=offers, gpu=row.gpu, **kwargs)
    except ConfigError as err:  # e.g. no datasheet figure for this precision
        return [{"gpu": row.gpu, "skipped": str(err)}]
    forms_note = " (price tables do not tell the forms apart)" if n_forms > 1 else ""
    return [{"gpu": e.hardware, "dtype": kwargs.get("dtype") or record["dtype"],
             "peak_flops_per_s": e.peak_flops_per_s, "utilization": e.utilization,
             "utilization_source": e.utilization_source, "device_hours": e.device_hours,
             "wall_hours": e.wall_hours, "offers": len(e.offers), "cost_usd_min": e.cost_usd_min,
             "cost_usd_max": e.cost_usd_max, "fully_loaded": e.fully_loaded,
             "as_of": sorted({o.as_of for o in e.offers}),
             "energy_kwh_pue": None if e.energy is None else e.energy["kwh_pue"],
             "priced_against": f"every {key} offer{forms_note}"}]
