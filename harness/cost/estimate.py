"""Estimate: a measured run extrapolated to a whole training job, priced per cloud offer.

Data flow: a stored :class:`~harness.results.record.RunRecord` + a corpus + a plan + options
(+ price offers) → an :class:`Estimate`. Every input that can come from several places (rate,
utilization, peak, scaling efficiency, energy, price) is a :class:`Sourced` value: its number
and where it came from.

* Tokens per phase come from the plan (steps × batch × length, tokens, or epochs × corpus).
* FLOPs per token are counted (torch's counter on a fake replica) at each phase's length, so
  attention's growth with length is in the total; the measured run's own length is counted too.
* Time: on the measured hardware, each phase runs at the achieved FLOP/s of a stored run at that
  length when one exists (same model, device, dtype), otherwise at the measured run's achieved
  FLOP/s (stated as scaled). On hardware that was not measured (`gpu`): datasheet peak ×
  a utilization taken, in order, from stored runs on that hardware model, from the calibration,
  from the nearest published measurement (harness.cost.evidence, `published: <source>`), from
  the user, or from a labelled default.
* N devices: device-hours = one-device time / scaling efficiency; wall time = device-hours / N.
  The efficiency is measured (stored multi-device runs), the user's, or 1.0 labelled as an
  assumption.
* Cost per offer = device-hours × the offer's price per GPU-hour (pro rata; each offer also
  shows the whole-instance cost when N is not a multiple of its GPUs per instance), priced only
  against offers of the GPU's form (or of unknown form, labelled). On-demand and spot are kept
  apart (`on_demand`, `spot`; the headline `cost_usd_min/max` is on-demand), GPU-only rows
  without a host price are listed apart. Fully loaded = × a multiplier, default 20: AI21's "two
  configurations and ten runs per configuration".

Errors name the options' fields (`estimate.devices`); the CLI turns them into its flags.
"""

from __future__ import annotations

import csv
import functools
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.data import data_path
from harness.errors import ConfigError
from harness.hardware import (DATASHEET, DatasheetRow, MathMode, datasheet_by_name, datasheet_row, gpu_key,
                              math_mode, training_dtype)
from harness.cost.plans import Corpus, Plan
from harness.results.record import RunRecord

DEFAULT_PUE = 1.58  # 2018 industry average, as Strubell et al. 2019 used
DEFAULT_CARBON_REGION = "us-average-strubell"
LBS_PER_KG = 1 / 0.45359237
CARBON_TABLE = data_path("carbon", "intensity.csv")
DEFAULT_UTILIZATION = 0.30  # nanoGPT's assumed MFU for its 6ND projection (REFERENCE §3)
DEFAULT_UTILIZATION_SOURCE = "assumed default 30% MFU (nanoGPT's projection; no measured run on this hardware)"
FULLY_LOADED_MULTIPLIER = 20  # AI21 (Sharir et al. 2020): 2 configurations x 10 runs
DEFAULT_AMORTIZE_YEARS = 4.0  # a common depreciation period for GPU servers (assumed; --amortize-years)
HOURS_PER_YEAR = 24 * 365.25
BATCH_WARN_FACTOR = 2.0       # a plan's per-device batch this far from the measured one is said


# ---- values ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sourced:
    """A number and where it came from: measured, datasheet, calibrated, user-given or assumed;
    `error` is its ± (absolute), 0 when not known to vary."""

    value: float
    source: str
    error: float | None = 0.0   # None: unknown (the source says so)


class EstimateOptions(BaseModel):
    """What the user chose for an estimate; None means "decide from the records, else default"."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    devices: int = Field(1, ge=1)
    gpu: str | None = None                # project to this GPU (datasheet peak x utilization)
    dtype: MathMode | None = None
    utilization: float | None = Field(None, gt=0.0, le=1.0)
    scaling_efficiency: float | None = Field(None, gt=0.0, le=1.0)
    fully_loaded_multiplier: float = Field(FULLY_LOADED_MULTIPLIER, ge=1.0)
    pue: float = Field(DEFAULT_PUE, ge=1.0)
    carbon_region: str | None = None
    carbon_intensity_kg_per_kwh: float | None = Field(None, ge=0.0)
    usd_per_kwh: float | None = Field(None, ge=0.0)
    micro_batch: int | None = Field(None, ge=1)  # sequences per device per step, instead of the plan's batch / devices
    on_prem_usd_per_gpu: float | None = Field(None, gt=0.0)  # purchase price of one owned GPU
    host_usd_per_gpu: float = Field(0.0, ge=0.0)  # its share of the server, network and storage
    amortize_years: float = Field(DEFAULT_AMORTIZE_YEARS, gt=0.0)
    duty_cycle: float = Field(1.0, gt=0.0, le=1.0)  # share of the hours the hardware does paid work
    use_published: bool = True    # the published-measurement rung of the utilization ladder (--no-published)
    goodput: float | None = Field(None, gt=0.0, le=1.0)  # steady-state share of the bill; None: 1.0, steady state only

    @classmethod
    def build(cls, **values: Any) -> "EstimateOptions":
        """Validated options; ConfigError naming `estimate.<field>` and what is allowed."""
        try:
            return cls(**values)
        except ValidationError as err:
            first = err.errors()[0]
            name = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"estimate.{name}", f"{first['msg']} (got {first.get('input')!r})") from None

    def changed(self, **changes: Any) -> "EstimateOptions":
        """These options with `changes`, validated again."""
        return EstimateOptions.build(**{**self.model_dump(exclude_unset=True), **changes})  # defaults stay defaults


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
    tokens_per_device_step: float | None = None  # the plan's (global batch x length / devices, or --micro-batch)
    tokens_per_device_step_source: str = ""
    utilization: float | None = None             # the phase's, where it is evaluated per phase


@dataclass(frozen=True)
class OfferCost:
    """One cloud offer and what the whole job costs on it.

    `cost_usd` is pro rata: device-hours x the price per GPU-hour. `whole_instance_cost_usd` is
    what renting whole instances costs: `instances` = ceil(devices / gpus_per_instance) x the
    instance price x wall hours; the two differ when the devices are not a multiple of the GPUs
    per instance (one GPU of an 8-GPU instance cannot be rented alone), and `labels` then says so,
    as it says "form unknown", a Local Zone, or a GPU-only price."""

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
    instances: int = 1
    whole_instance_cost_usd: float | None = None
    form: str | None = None            # SXM | PCIe | NVL as the instance tells; None: form unknown
    local_zone: str | None = None
    gpu_only: bool = False             # the GPUs alone: kept out of the cost ranges (Estimate.gpu_only)
    host_usd_per_hour: float | None = None
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class KindCost:
    """The offers of one pricing kind ("on-demand" or "spot") and the job's cost range over them,
    one run and fully loaded. Spot is reported beside on-demand, never mixed into its range."""

    kind: str
    offers: list[OfferCost]
    cost_usd_min: float | None
    cost_usd_max: float | None
    fully_loaded: dict[str, Any]


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
    on_prem: dict[str, Any] | None = None  # the bill on owned hardware (see on_prem_bill), when a price is given
    # The headline `cost_usd_min/max` and `fully_loaded` are the on-demand range; spot beside it;
    # GPU-only offers (host VM extra, not in the catalog) are listed apart, in no range.
    on_demand: KindCost = field(default_factory=lambda: KindCost("on-demand", [], None, None, {}))
    spot: KindCost = field(default_factory=lambda: KindCost("spot", [], None, None, {}))
    gpu_only: list[OfferCost] = field(default_factory=list)
    run_tokens_per_device_step: float | None = None  # the measured run's own batch, beside each phase's
    # harness.cost.ranges: the goodput used (default 1.0, steady state only) with the labs' anchors; the
    # bill at steady state, at that goodput and over the labs' range; a low-high on every figure
    goodput: dict[str, Any] | None = None
    bill: dict[str, Any] | None = None
    ranges: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- energy and carbon ----------------------------------------------------------------------

def carbon_table(path: Path = CARBON_TABLE) -> dict[str, dict[str, Any]]:
    """Region → {kg_co2e_per_kwh, as_of, source} from the packaged carbon table (harness/data/carbon/intensity.csv)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["region"]: {"kg_co2e_per_kwh": float(row["kg_co2e_per_kwh"]), "as_of": row["as_of"],
                                "source": row["source"]} for row in csv.DictReader(handle)}


def carbon_intensity(region: str | None, kg_per_kwh: float | None) -> tuple[float, str, str]:
    """(kg CO2e per kWh, region label, source): a user value wins, else the region's table row."""
    if kg_per_kwh is not None:
        if kg_per_kwh < 0:
            raise ConfigError("estimate.carbon_intensity_kg_per_kwh", f"must be >= 0 kg CO2e/kWh, got {kg_per_kwh}")
        return kg_per_kwh, region or "user", "user-given (--carbon-intensity)"
    table = carbon_table()
    name = region or DEFAULT_CARBON_REGION
    if name not in table:
        raise ConfigError("estimate.carbon_region", f"unknown region {name!r}; allowed: {', '.join(table)}")
    row = table[name]
    return row["kg_co2e_per_kwh"], name, f"{row['source']} (data year: {row['as_of']})"


def energy_settings(options: EstimateOptions) -> dict[str, Any]:
    """The inputs that turn joules into kWh·PUE, CO2e and dollars, each with its source."""
    intensity, label, source = carbon_intensity(options.carbon_region, options.carbon_intensity_kg_per_kwh)
    return {"pue": options.pue, "pue_source": "default 1.58 (Strubell et al. 2019)" if options.pue == DEFAULT_PUE
            else "user-given (--pue)", "carbon_region": label, "kg_co2e_per_kwh": intensity,
            "carbon_source": source, "usd_per_kwh": options.usd_per_kwh}


def job_energy(energy_j: float, method: str, settings: dict[str, Any]) -> dict[str, Any]:
    """kWh, kWh x PUE, CO2e (kg, lbs) and energy cost of `energy_j` joules of IT energy
    (Strubell et al. 2019: p = PUE x kWh; CO2e = intensity x p), `settings` from energy_settings."""
    kwh = energy_j / 3.6e6
    kwh_pue = kwh * settings["pue"]
    kg = kwh_pue * settings["kg_co2e_per_kwh"]
    price = settings["usd_per_kwh"]
    return {"kwh": kwh, **settings, "kwh_pue": kwh_pue, "method": method, "co2e_kg": kg,
            "co2e_lbs": kg * LBS_PER_KG, "energy_cost_usd": None if price is None else kwh_pue * price}


# ---- what the records say --------------------------------------------------------------------

def _same_model(a: RunRecord, b: RunRecord) -> bool:
    """The same architecture, whatever its preset label."""
    return a.model.model_dump(exclude={"preset"}) == b.model.model_dump(exclude={"preset"})


def _device_gpu(record: RunRecord) -> str | None:
    """The datasheet row name of a record's device, or None (CPU, unknown GPU)."""
    if record.device.type != "cuda":
        return None
    row = datasheet_row(record.device.name)
    return row.gpu if row else None


@functools.lru_cache(maxsize=64)
def flops_per_token(spec, seq_len: int, decoder_seq_len: int | None) -> float:
    """Model FLOPs of one training token at `seq_len` (one sequence, counted on a fake replica).
    Cached: projections to several GPUs count each length once."""
    from harness.config import with_changes
    from harness.flops.count import count_model_flops

    changes = {"train.batch_size": 1, "train.seq_len": seq_len, "train.grad_accum": 1}
    if decoder_seq_len is not None:
        changes["train.decoder_seq_len"] = decoder_seq_len
    count, _ = count_model_flops(with_changes(spec, changes), backward=True)
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


def measured_scaling(record: RunRecord, records: Sequence[RunRecord], devices: int) -> Sourced | None:
    """Weak-scaling efficiency T(1)·N / T(N) in tokens/s from stored runs of the same model, dtype,
    device and per-device batch at world size 1 and N > 1; the measured N nearest above `devices`
    (else the largest, said to be extrapolated). None when no multi-device run matches."""
    def key(r: RunRecord):
        return (r.dtype, r.device.name, r.batch_size, r.seq_len, r.grad_accum)

    alike = [r for r in records if _same_model(r, record) and key(r) == key(record)]
    single = [r for r in alike if r.world_size == 1]
    multi = [r for r in alike if r.world_size > 1]
    if not single or not multi:
        return None
    one = single[-1].tokens_per_s
    by_n = {r.world_size: r for r in multi}  # the latest run per world size
    above = [n for n in by_n if n >= devices]
    n = min(above) if above else max(by_n)
    run = by_n[n]
    where = ("" if n == devices else f"; extrapolated beyond the measured N={n}" if n < devices
             else f"; measured at N={n}, used for N={devices}")
    return Sourced(run.tokens_per_s / (n * one),
                   f"measured: {run.tokens_per_s:.4g} tokens/s on {n} devices / ({n} x {one:.4g} on one) "
                   f"(runs {run.run_id}, {single[-1].run_id}){where}")


def _utilization_on(gpu: str, dtype: str, record: RunRecord, records: Sequence[RunRecord],
                    options: EstimateOptions, calibration: Sequence, notes: list[str]) -> tuple[Sourced, Any]:
    """Utilization on hardware `gpu`, and the calibration fit it came from (None otherwise):
    stored runs of this model on it, else the calibration fit for it at this model's size (at the
    run's own tokens per device step here; each phase evaluates it at the plan's), else stored
    runs of other models on it (median), else the nearest published measurement, else the user's, else the default."""
    from harness.cost.calibrate import find_fit

    measured = [r for r in records if _device_gpu(r) == gpu and r.dtype == dtype
                and r.mfu_datasheet and not r.depth_extrapolation]
    same = [r for r in measured if _same_model(r, record) and r.seq_len == record.seq_len]
    fit = find_fit(calibration, gpu, dtype)
    if options.utilization is not None and (same or fit is not None or measured):
        notes.append(f"--utilization {options.utilization} not used: runs measured on {gpu} take precedence")
    if same:
        ids = ", ".join(r.run_id for r in same[:5])
        return Sourced(statistics.median(r.mfu_datasheet for r in same),
                       f"measured: this model on {gpu} {dtype} ({ids})"), None
    if fit is not None:
        p = fit.predict_sourced(record.model.hidden, record.tokens_per_device_step, record.seq_len)
        error = "error unknown (fewer than 3 runs)" if p.error is None else f"±{p.error:.3f}"
        where = p.note or "inside the measured sizes"
        mixed = f" ({len(fit.published)} of them published)" if getattr(fit, "published", None) else ""
        return Sourced(p.value, f"calibrated: fit of {fit.n} runs{mixed} on {gpu} {dtype} on {', '.join(fit.features_used) or 'no feature'}, "
                       f"{error} ({where}; harness calibrate)", p.error), fit
    if measured:
        ids = ", ".join(r.run_id for r in measured[:5])
        return Sourced(statistics.median(r.mfu_datasheet for r in measured),
                       f"measured: median MFU of {len(measured)} stored run(s) on {gpu} {dtype} ({ids})"), None
    published = _published(gpu, dtype, record, options, notes)
    if published is not None:
        return published, None
    if options.utilization is not None:
        return Sourced(options.utilization, "user-given (--utilization)"), None
    return Sourced(DEFAULT_UTILIZATION, DEFAULT_UTILIZATION_SOURCE), None


def _published(gpu: str, dtype: str, record: RunRecord, options: EstimateOptions,
               notes: list[str]) -> Sourced | None:
    """The published measurement nearest this model on `gpu` in `dtype` (harness.cost.evidence),
    re-expressed in this project's FLOP convention; None when none is published or it is turned off."""
    if not options.use_published:
        return None
    from harness.cost.evidence import nearest_published

    near = nearest_published(gpu, dtype, record.params, record.seq_len)
    if near is None:
        return None
    if options.utilization is not None:
        notes.append(f"--utilization {options.utilization} not used: a published measurement on {gpu} {dtype} "
                     "takes precedence (--no-published to use yours)")
    if near.distance > 1.0:
        notes.append(f"the nearest published row ({near.row.id}) is {near.distance:.2f} in ln(size) + "
                     f"{0.25:g} ln(seq) from this model ({record.params / 1e6:,.0f}M params, seq {record.seq_len})")
    return Sourced(near.value, near.source, near.error)


# ---- the pieces of an estimate ---------------------------------------------------------------

@dataclass(frozen=True)
class Hardware:
    """Where the job is timed: the measured device, or a datasheet GPU it is projected to."""

    name: str
    projected: bool
    peak: Sourced | None          # FLOP/s
    utilization: Sourced
    rate: Sourced                 # model FLOP/s of one device
    row: DatasheetRow | None = None
    fit: Any = None               # the calibration fit the utilization came from: evaluated per phase


def _target_dtype(record: RunRecord, options: EstimateOptions, notes: list[str]) -> str:
    """The precision the job is estimated in: `options.dtype`; else the run's own on the GPU it
    was measured on; else, on a GPU projected to, the one a lab trains in there (bf16 where the
    part has it, else fp16; a CPU's fp32 would price a bill nobody pays)."""
    if options.dtype is not None and options.dtype != record.dtype and options.gpu is None:
        raise ConfigError("estimate.dtype", "a different precision needs --gpu (projection); the run measured "
                          f"{record.dtype}")
    if options.dtype is not None or options.gpu is None:
        return options.dtype or record.dtype
    row = datasheet_by_name(options.gpu, "fp32")[0]
    if row.gpu == _device_gpu(record):
        return record.dtype
    dtype = training_dtype(row)
    if dtype != record.dtype:
        notes.append(f"projected in {dtype}, the precision labs train in on {row.gpu} (the run measured "
                     f"{record.dtype}; --dtype overrides)")
    return dtype


def _hardware(record: RunRecord, dtype: str, records: Sequence[RunRecord], options: EstimateOptions,
              calibration: Sequence, notes: list[str]) -> Hardware:
    """The measured device's own rate, or the datasheet peak x utilization of `options.gpu`."""
    measured_gpu = _device_gpu(record)
    gpu = options.gpu
    if gpu is not None and (measured_gpu is None or dtype != record.dtype
                            or datasheet_by_name(gpu, "fp32")[0].gpu != measured_gpu):
        mode = math_mode(dtype, dtype == record.dtype and record.env.tf32_matmul, datasheet_by_name(gpu, "fp32")[0])
        row, peak = datasheet_by_name(gpu, mode)
        util, fit = _utilization_on(row.gpu, dtype, record, records, options, calibration, notes)
        return Hardware(row.gpu, True, Sourced(peak, f"datasheet {mode}: {row.source}"), util,
                        Sourced(peak * util.value, f"projected: {row.gpu} datasheet peak x utilization "
                                                   f"{util.value:.3f}"), row, fit)
    if options.utilization is not None:
        notes.append(f"--utilization {options.utilization} not used: this hardware was measured")
    if record.mfu_datasheet is not None:
        peak = Sourced(record.peak_flops_datasheet, "datasheet (from the run record)")
        util = record.mfu_datasheet
    else:
        peak = Sourced(record.peak_flops_measured, "measured matmul peak (no datasheet figure)")
        util = record.mfu_measured
    how = f"{record.how_timed} (run {record.run_id})"
    return Hardware(measured_gpu or record.device.name, False, peak, Sourced(util, how),
                    Sourced(record.achieved_flops_per_s_per_device, how))


def _phases(record: RunRecord, plan: Plan, corpus: Corpus | None, hardware: Hardware, dtype: str,
            records: Sequence[RunRecord], options: EstimateOptions, notes: list[str]) -> list[PhaseEstimate]:
    """Each phase's tokens, counted FLOPs and one-device time at the rate that fits its length and
    its per-device batch."""
    lengths = _phase_lengths(record.spec, plan)
    same = [r for r in records if r.run_id != record.run_id and _same_model(r, record)
            and r.dtype == dtype and r.device.name == record.device.name]
    phases = []
    for phase, (seq, dec) in zip(plan.phases, lengths):
        name = phase.name or f"phase {len(phases) + 1}"
        tokens = phase.tokens_total(corpus)
        per_token = flops_per_token(record.spec, seq, dec)
        batch = _device_batch(phase, seq, record, options)
        rate, util = _phase_rate(record, hardware, seq, batch, [r for r in same if r.seq_len == seq])
        if util is None and batch.source != "the run's own" and _far(batch.value, record.tokens_per_device_step):
            notes.append(f"phase {name}: the plan's {batch.value:,.0f} tokens per device step are more than "
                         f"{BATCH_WARN_FACTOR:g}x from the measured run's {record.tokens_per_device_step:,.0f}; "
                         "its utilization was measured at the run's batch, not the plan's")
        flops = tokens * per_token
        phases.append(PhaseEstimate(name, seq, tokens, per_token, flops, rate.value, rate.source, flops / rate.value,
                                    batch.value, batch.source, util))
    return phases


def _device_batch(phase, seq: int, record: RunRecord, options: EstimateOptions) -> Sourced:
    """Tokens one device takes per optimizer step in this phase: --micro-batch x length, else the
    plan's global batch x length / devices, else (a plan given in tokens or epochs) the run's own."""
    if options.micro_batch is not None:
        return Sourced(options.micro_batch * seq, f"--micro-batch {options.micro_batch} x seq {seq}")
    if phase.batch_size is not None:
        return Sourced(phase.batch_size * seq / options.devices,
                       f"the plan's batch {phase.batch_size} x seq {seq} / {options.devices} device(s)")
    return Sourced(record.tokens_per_device_step, "the run's own")


def _far(a: float, b: float) -> bool:
    return max(a, b) > BATCH_WARN_FACTOR * min(a, b)


def _phase_rate(record: RunRecord, hardware: Hardware, seq: int, batch: Sourced,
                at_len: Sequence[RunRecord]) -> tuple[Sourced, float | None]:
    """The one-device rate of a phase, and its utilization where it is evaluated for the phase
    (a calibration fit at the phase's length and per-device batch)."""
    if hardware.projected and hardware.fit is not None:
        p = hardware.fit.predict_sourced(record.model.hidden, batch.value, seq)
        error = "error unknown" if p.error is None else f"±{p.error:.3f}"
        return Sourced(hardware.peak.value * p.value,
                       f"projected: {hardware.name} datasheet peak x calibrated utilization {p.value:.3f} ({error}) at "
                       f"{batch.value:,.0f} tokens per device step, seq {seq}" + (f"; {p.note}" if p.note else "")), p.value
    if hardware.projected:
        return hardware.rate, None
    if seq == record.seq_len:
        return Sourced(hardware.rate.value, f"{record.how_timed} (run {record.run_id}, seq {seq})"), None
    if at_len:
        best = at_len[-1]
        return Sourced(best.achieved_flops_per_s_per_device, f"{best.how_timed} (run {best.run_id}, seq {seq})"), None
    return Sourced(hardware.rate.value, f"scaled: FLOPs counted at seq {seq}, timed at the achieved FLOP/s "
                                        f"measured at seq {record.seq_len} (run {record.run_id}); no run at seq {seq}"), None


def _scaling(record: RunRecord, records: Sequence[RunRecord], options: EstimateOptions,
             notes: list[str]) -> Sourced:
    """The weak-scaling efficiency to charge, once: a multi-device run's per-device rate already
    contains its own loss at its world size N, so only the change from N to the job's devices is
    charged (1 at N itself); a one-device run's rate is charged the whole efficiency at N."""
    devices, own_n = options.devices, record.world_size
    if own_n > 1 and devices == own_n:
        return Sourced(1.0, f"measured in the run's own world size ({own_n} devices): its per-device rate "
                            "already contains its scaling loss")
    measured = measured_scaling(record, records, devices) if devices > 1 else None
    if measured is not None and options.scaling_efficiency is not None:
        notes.append(f"--scaling-efficiency {options.scaling_efficiency} not used: a multi-device run was measured")
    if measured is not None:
        target = measured
    elif options.scaling_efficiency is not None:
        target = Sourced(options.scaling_efficiency, "user-given (--scaling-efficiency)")
    else:
        target = Sourced(1.0, "assumed: ideal linear scaling (no multi-device record); an upper bound on throughput"
                         if devices > 1 else "one device")
    if own_n == 1:
        return target
    own = measured_scaling(record, records, own_n)
    if own is None:
        notes.append(f"run {record.run_id} ran on {own_n} devices with no one-device run stored: its own scaling "
                     f"loss is unknown, so its per-device rate is taken as it is on {devices} device(s)")
        return Sourced(1.0, f"assumed: the run's per-device rate at N={own_n} holds at N={devices} "
                            "(its own scaling loss unknown)")
    return Sourced(target.value / own.value, f"{target.source}; relative to the run's own {own.value:.3g} at "
                                             f"N={own_n}, already in its rate")


def _energy(record: RunRecord, hardware: Hardware, device_s: float, settings: dict[str, Any],
            notes: list[str]) -> dict[str, Any] | None:
    """The job's energy: the datasheet board power of a projected GPU, or the power measured
    during the run's steps per device (the device's own + its share of the host), x device-hours.
    A record without per-device attribution: its whole power / its ranks on the sampled node."""
    if hardware.projected:
        tdp = hardware.row.tdp_w
        if tdp is None:
            notes.append(f"energy unknown: no datasheet power for {hardware.name}")
            return None
        return job_energy(tdp * device_s, f"estimated: {hardware.name} datasheet max power {tdp:g} W x device-hours "
                          "(GPU only; host CPU and memory not included)", settings)
    energy = record.energy
    if energy is None:
        notes.append("energy unknown: the run record has no energy measurement")
        return None
    if energy.devices is not None:  # attributed per device when it was measured
        device, host = energy.per_device, energy.host_per_device
        if device is None:
            notes.append(f"energy unknown: run {record.run_id} did not read its devices' power "
                         f"({'; '.join(energy.missing) or 'no device component'})")
            return None
        host_w = 0.0 if host is None else host.avg_w
        host_text = (f"host share {host.avg_w:.1f} W ({host.method})" if host is not None else
                     f"host CPU and memory not included (share unknown: {energy.host_share_method})")
        avg_w = device.avg_w + host_w
        method = (f"{energy.method_label}: per device {device.avg_w:.1f} W ({device.method}) + {host_text} "
                  f"= {avg_w:.1f} W during the steps of run {record.run_id} x device-hours")
    else:
        ranks = max(1, record.world_size // record.nnodes)  # the ranks on the one node that was sampled
        avg_w = energy.joules_per_step * len(record.step_times_s) / record.total_measured_s / ranks
        host_w = None
        methods = ", ".join(f"{k} {v}" for k, v in energy.methods.items())
        method = (f"{energy.method_label}: {avg_w * ranks:.1f} W during the steps of run {record.run_id} "
                  f"({methods}) / {ranks} device(s) on its node x device-hours (a record without per-device "
                  "attribution: everything it sampled, every GPU of the host and all its CPU and memory)")
    out = job_energy(avg_w * device_s, method, settings)
    out["avg_w_per_device"] = avg_w
    out["host_share_w_per_device"] = host_w
    return out


def _offer_costs(hardware: Hardware, measured_gpu: str | None, offers: Iterable, device_hours: float,
                 devices: int, notes: list[str]) -> list[OfferCost]:
    """Every offer of the priced GPU family and form, cheapest first (none for a CPU).

    Form: hardware whose datasheet row names a form (H100 SXM, H100 PCIe, V100 SXM2, ...) is
    priced with offers of that form and offers whose form is unknown (labelled "form unknown");
    offers of other forms are left out, and a note says how many. GPU-only offers are included,
    flagged `gpu_only`, for the caller to keep out of the ranges."""
    from harness.cost.prices.forms import datasheet_form

    if not (hardware.projected or measured_gpu):
        notes.append(f"measured on {hardware.name}: no cloud offers to price; pass --gpu to project to a GPU")
        return []
    want = datasheet_form(hardware.name)
    family = [o for o in offers if gpu_key(o.gpu) == gpu_key(hardware.name)]
    other = [o for o in family if want and o.form and o.form != want]
    if other:
        forms = ", ".join(f"{form} {sum(o.form == form for o in other)}" for form in sorted({o.form for o in other}))
        notes.append(f"{len(other)} {gpu_key(hardware.name)} offer(s) of other forms left out ({forms}): "
                     f"{hardware.name} is priced with {want} offers and those of unknown form")
    wall_hours = device_hours / devices
    costs = []
    for o in family:
        if want and o.form and o.form != want:
            continue
        instances = -(-devices // o.gpus_per_instance)  # ceil: whole instances to hold the devices
        labels = list(o.labels)
        if want and o.form is None:
            labels.insert(0, "form unknown")
        if devices % o.gpus_per_instance:
            labels.append(f"pro rata: {devices} of the {instances * o.gpus_per_instance} GPUs of "
                          f"{instances} whole instance(s)")
        costs.append(OfferCost(o.provider, o.instance, o.region, o.gpu, o.gpus_per_instance, o.usd_per_hour,
                               o.usd_per_gpu_hour, o.spot, o.as_of, o.source, o.provenance,
                               device_hours * o.usd_per_gpu_hour, instances, instances * o.usd_per_hour * wall_hours,
                               o.form, o.local_zone, o.gpu_only, o.host_usd_per_hour, tuple(labels)))
    costs.sort(key=lambda c: c.cost_usd)
    if not costs:
        notes.append(f"no price offers for {hardware.name} in the loaded tables")
    return costs


def _cost_range(kind: str, costs: Sequence[OfferCost], util: Sourced, multiplier: float,
                notes: list[str]) -> tuple[KindCost, list[float] | None]:
    """The offers of one pricing kind with the (lowest, highest) cost over them (pro rata),
    widened by the utilization's ± (time scales as 1 / utilization), and that utilization range.
    A lowest price from an AWS Local Zone is said in a note, never taken silently."""
    low = min((c.cost_usd for c in costs), default=None)
    high = max((c.cost_usd for c in costs), default=None)
    if costs and costs[0].local_zone:
        notes.append(f"the lowest {kind} price is from AWS Local Zone {costs[0].local_zone} ({costs[0].instance}), "
                     f"not from its region {costs[0].region}'s own zones")
    util_range = None
    if util.error and util.value:
        util_low, util_high = max(util.value - util.error, 1e-4), min(util.value + util.error, 1.0)
        low = None if low is None else low * util.value / util_high
        high = None if high is None else high * util.value / util_low
        util_range = [util_low, util_high]
    return KindCost(kind, list(costs), low, high, _fully_loaded(low, high, multiplier)), util_range


def _fully_loaded(low: float | None, high: float | None, multiplier: float) -> dict[str, Any]:
    return {"multiplier": multiplier,
            "source": "AI21 (Sharir et al. 2020): two configurations x ten runs" if
            multiplier == FULLY_LOADED_MULTIPLIER else "user-given",
            "cost_usd_min": None if low is None else low * multiplier,
            "cost_usd_max": None if high is None else high * multiplier}


def on_prem_bill(options: EstimateOptions, device_hours: float, energy: dict[str, Any] | None) -> dict[str, Any] | None:
    """The job on owned hardware: purchase price (GPU + its share of the host) amortised over
    `amortize_years` at `duty_cycle` (the share of hours doing paid work), per device-hour, plus
    energy x PUE at `usd_per_kwh`. None when no purchase price is given; every input with its source."""
    if options.on_prem_usd_per_gpu is None:
        return None
    price = options.on_prem_usd_per_gpu + options.host_usd_per_gpu
    useful_hours = options.amortize_years * HOURS_PER_YEAR * options.duty_cycle
    capital = device_hours * price / useful_hours
    energy_usd = None if energy is None else energy.get("energy_cost_usd")
    why = None
    if energy_usd is None:
        why = ("energy unknown: the estimate has no energy figure" if energy is None
               else "energy cost unknown: give --usd-per-kwh")
    given = options.model_fields_set

    def sourced(name: str, flag: str, default: str) -> dict[str, Any]:
        return {"value": getattr(options, name), "source": f"user-given ({flag})" if name in given else default}

    return {
        "usd_per_gpu": sourced("on_prem_usd_per_gpu", "--on-prem-usd-per-gpu", ""),
        "host_usd_per_gpu": sourced("host_usd_per_gpu", "--host-usd-per-gpu",
                                    "default 0: host, network and storage not included"),
        "amortize_years": sourced("amortize_years", "--amortize-years",
                                  f"default {DEFAULT_AMORTIZE_YEARS:g} years (a common depreciation period; assumed)"),
        "duty_cycle": sourced("duty_cycle", "--duty-cycle",
                              "default 1.0: busy every hour of its life (assumed; the lowest capital cost per hour)"),
        "usd_per_kwh": sourced("usd_per_kwh", "--usd-per-kwh", "unknown (no --usd-per-kwh)"),
        "capital_usd_per_device_hour": price / useful_hours,
        "devices": options.devices, "purchase_usd": price * options.devices,
        "capital_usd": capital, "energy_usd": energy_usd,
        "total_usd": None if energy_usd is None else capital + energy_usd,
        "formula": "(usd_per_gpu + host_usd_per_gpu) / (amortize_years x 8766 h x duty_cycle) x device-hours "
                   "+ kWh x PUE x usd_per_kwh",
        "notes": [why] if why else [],
    }


# ---- the estimate ----------------------------------------------------------------------------

def estimate(record: RunRecord, plan: Plan, corpus: Corpus | None, options: EstimateOptions | None = None, *,
             offers: Iterable = (), records: Sequence[RunRecord] = (), calibration: Sequence = (),
             price_warnings: Sequence[str] = ()) -> Estimate:
    """Extrapolate `record` to `plan` over `corpus` under `options`. `records` are the other
    stored runs (for measurements at other lengths, on `options.gpu`, or on several devices);
    `offers` are harness.cost.prices.Offer values; `calibration` the fits of harness calibrate."""
    options = options or EstimateOptions()
    settings = energy_settings(options)  # validated before any counting
    notes: list[str] = []
    dtype = _target_dtype(record, options, notes)
    hardware = _hardware(record, dtype, records, options, calibration, notes)
    if record.depth_extrapolation:
        d = record.depth_extrapolation
        notes.append(f"run {record.run_id} is depth-sliced: its step time is predicted from "
                     f"{len(d.slices)} slices (fit residual {d.residual:.1%}), not measured at full depth")
    phases = _phases(record, plan, corpus, hardware, dtype, records, options, notes)
    efficiency = _scaling(record, records, options, notes)
    device_hours = sum(p.device_s for p in phases) / 3600.0 / efficiency.value
    energy = _energy(record, hardware, device_hours * 3600.0, settings, notes)
    costs = _offer_costs(hardware, _device_gpu(record), offers, device_hours, options.devices, notes)
    priced, gpu_only = [c for c in costs if not c.gpu_only], [c for c in costs if c.gpu_only]
    if gpu_only:
        notes.append(f"{len(gpu_only)} GPU-only offer(s) (host VM extra, not in the catalog) listed apart, "
                     "in no cost range")
    multiplier = options.fully_loaded_multiplier
    on_demand, util_range = _cost_range("on-demand", [c for c in priced if not c.spot], hardware.utilization,
                                        multiplier, notes)
    spot, _ = _cost_range("spot", [c for c in priced if c.spot], hardware.utilization, multiplier, notes)
    low, high = on_demand.cost_usd_min, on_demand.cost_usd_max
    from harness.cost.ranges import bill as _bill, goodput_of

    util = hardware.utilization
    the_bill, ranges = _bill(device_hours, options.devices, energy, [c.usd_per_gpu_hour for c in on_demand.offers],
                             util.value, util.error, efficiency.source, options.goodput)
    return Estimate(
        run_id=record.run_id, model=record.model.model_dump(), params=record.params, dtype=dtype,
        corpus=None if corpus is None else {"name": corpus.name, "tokens": corpus.size_tokens,
                                            "tokens_source": corpus.size_provenance, "source": corpus.source},
        plan={"name": plan.name, "source": plan.source, "description": plan.description},
        phases=phases, tokens_total=sum(p.tokens for p in phases), flops_total=sum(p.flops for p in phases),
        hardware=hardware.name, hardware_source="projected" if hardware.projected else "measured",
        peak_flops_per_s=hardware.peak.value, peak_source=hardware.peak.source,
        utilization=hardware.utilization.value, utilization_source=hardware.utilization.source,
        devices=options.devices, scaling_efficiency=efficiency.value, scaling_efficiency_source=efficiency.source,
        device_hours=device_hours, wall_hours=device_hours / options.devices, offers=priced,
        cost_usd_min=low, cost_usd_max=high, fully_loaded=on_demand.fully_loaded,
        on_demand=on_demand, spot=spot, gpu_only=gpu_only,
        price_warnings=list(price_warnings), notes=notes, energy=energy, utilization_range=util_range,
        on_prem=on_prem_bill(options, device_hours, energy), run_tokens_per_device_step=record.tokens_per_device_step,
        goodput=goodput_of(options.goodput), bill=the_bill, ranges=ranges)


def project_offers(record: RunRecord, plan: Plan, corpus: Corpus | None, options: EstimateOptions | None = None,
                   *, offers: Sequence, records: Sequence[RunRecord] = (), calibration: Sequence = ()
                   ) -> list[dict[str, Any]]:
    """For a run measured where no cloud offer applies (a CPU): the job projected to every GPU
    model the price tables offer and the datasheet knows, each with its utilization's source.
    Summaries, cheapest first; GPUs without a datasheet row are listed with the reason."""
    options = options or EstimateOptions()
    rows = []
    for key in sorted({gpu_key(o.gpu) for o in offers}):
        forms = [row for _, row in DATASHEET if gpu_key(row.gpu) == key]
        if not forms:
            rows.append({"gpu": key, "skipped": "no datasheet row: peak unknown, not guessed"})
            continue
        for row in forms:
            try:
                e = estimate(record, plan, corpus, options.changed(gpu=row.gpu), offers=offers, records=records,
                             calibration=calibration)
            except ConfigError as err:  # e.g. no datasheet figure for this precision
                rows.append({"gpu": row.gpu, "skipped": str(err)})
                continue
            rows.append(_projection_summary(e, f"every {key} offer"))
    return sorted(rows, key=lambda r: (r.get("cost_usd_min") is None, r.get("cost_usd_min") or 0.0))


def _projection_summary(e: Estimate, priced_against: str) -> dict[str, Any]:
    from harness.cost.prices.forms import datasheet_form

    form = datasheet_form(e.hardware)
    forms = {name or "unknown": sum(o.form == name for o in e.offers) for name in sorted(
        {o.form for o in e.offers}, key=lambda f: f or "~")}
    if form:  # the offers are of this form or of unknown form (see _offer_costs)
        priced_against = (f"{priced_against} of form {form} or of unknown form "
                          f"({', '.join(f'{k} {v}' for k, v in forms.items()) or 'none'})")
    return {"gpu": e.hardware, "dtype": e.dtype, "peak_flops_per_s": e.peak_flops_per_s,
            "utilization": e.utilization, "utilization_source": e.utilization_source,
            "device_hours": e.device_hours, "wall_hours": e.wall_hours, "offers": len(e.offers),
            "cost_usd_min": e.cost_usd_min, "cost_usd_max": e.cost_usd_max, "fully_loaded": e.fully_loaded,
            "spot": {"offers": len(e.spot.offers), "cost_usd_min": e.spot.cost_usd_min,
                     "cost_usd_max": e.spot.cost_usd_max}, "gpu_only_offers": len(e.gpu_only), "forms": forms,
            "as_of": sorted({o.as_of for o in e.offers}),
            "energy_kwh_pue": None if e.energy is None else e.energy["kwh_pue"], "priced_against": priced_against,
            "utilization_range": e.utilization_range, "ranges": e.ranges}


def plan_misfit(spec, plan: Plan) -> str | None:
    """Why `plan`'s lengths do not fit `spec`'s model (a phase longer than its positions), or None."""
    try:
        _phase_lengths(spec, plan)
    except ConfigError as err:
        return str(err)
    return None
