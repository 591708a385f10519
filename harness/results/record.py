"""Record: the stored result of one run, a frozen value whose parts are values too.

Data flow: a :class:`Measurement` (what the timed window gave: step times, counts, peaks, energy,
environment, world) → :meth:`RunRecord.from_measurement`, the one place where rates, MFU/HFU,
provenance and warnings are derived, for normal and depth-sliced runs alike → the JSON form
(`to_dict`) that the store keeps → :meth:`RunRecord.from_json`, which migrates an older form and
validates (an imported record is checked by the model itself).

Every figure's origin is in `provenance`: measured (timed here), counted (torch's FLOP counter),
datasheet (vendor table), analytic (closed-form formula), predicted (depth slices), or null when
unknown. Names say whether a figure is for the whole world or one rank: the top-level FLOPs,
tokens and rates are the world's (every rank, every micro-batch); `flops.model` and
`flops.hardware` hold one rank's count (`per_rank_per_step`).

Versions of the JSON form: 1 (the first release: `flops.model.per_step`, one rank's), 2 (that
count named `per_rank_per_step`, `flops.model.forward_by_module` added), 3 (`params_active`,
`params_active_non_embedding` and `moe` added: mixtures of experts). `migrate` takes any known older
form to the current one; each step is a function, append only.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.config import ModelSpec, RunSpec
from harness.errors import ConfigError
from harness.steps import StepTimes

SCHEMA_VERSION = 3
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$"  # also a safe file name

# Bounds on what a record may hold, checked on every record read (`from_json`): what SQLite and
# arithmetic downstream can carry. Integers are SQLite's (signed 64 bits); no step of a real run
# lasts 30 years; a record's JSON is at most a few levels deep (32 is far more than it needs).
MAX_INT = 2**63 - 1
MAX_SECONDS = 1e9
MAX_DEPTH = 32


class Value(BaseModel):
    """A frozen part of a record: unknown keys and non-finite numbers are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Open(BaseModel):
    """A frozen part whose keys vary by machine (environment facts): extra keys are kept."""

    model_config = ConfigDict(frozen=True, extra="allow", allow_inf_nan=False)


# ---- parts of a record -----------------------------------------------------------------------

class DeviceInfo(Value):
    """The compute device a run used: cuda or cpu, its name, devices per rank."""

    type: str
    name: str = "?"
    count: int = 1


class FlopSummary(Value):
    """One rank's FLOPs of one optimizer step (all its micro-batches), FLOP = 2*MAC."""

    per_rank_per_step: int = Field(ge=0)
    by_op: dict[str, int] = {}
    # Own forward FLOPs of one micro-batch by module group, layers merged (h.*.attn); None when
    # not counted (hardware counts, records of version 1)
    forward_by_module: dict[str, int] | None = None
    counted_on: str = "unknown"
    recomputation_counted: bool = False


class AnalyticFlops(Value):
    """Closed-form FLOPs per step (one rank) for comparison: harness.flops.analytic."""

    six_n_per_step: float
    palm_per_step: float
    kaplan_forward_per_step: float
    megatron_per_step: float
    megatron_recompute_per_step: float
    non_embedding_params: int
    # the N of the formulas: active non-embedding parameters (a mixture of experts); None in
    # records written before mixtures of experts, whose N was non_embedding_params
    active_non_embedding_params: int | None = None


class Flops(Value):
    convention: str = "2*MAC"
    model: FlopSummary
    hardware: FlopSummary | None = None
    analytic: AnalyticFlops | None = None
    uncounted_ops: dict[str, int] = {}
    grad_accum_micro_batches: int = 1


class ExpertLoad(Value):
    """Measured routing of a mixture of experts on one real step (the synthetic batch, random
    weights): token-expert assignments per expert (k per token), per MoE layer and summed."""

    tokens_per_expert_by_layer: list[list[int]]
    tokens_per_expert: list[int]
    imbalance: float = Field(ge=1.0)            # max / mean of tokens_per_expert
    max_layer_imbalance: float = Field(ge=1.0)  # the worst layer's max / mean
    measured_on: str

    @classmethod
    def from_layers(cls, by_layer: list[list[int]], measured_on: str) -> "ExpertLoad":
        def ratio(counts: list[int]) -> float:
            mean = sum(counts) / len(counts)
            return max(counts) / mean if mean else 1.0

        total = [sum(layer[i] for layer in by_layer) for i in range(len(by_layer[0]))]
        return cls(tokens_per_expert_by_layer=by_layer, tokens_per_expert=total, imbalance=ratio(total),
                   max_layer_imbalance=max(ratio(layer) for layer in by_layer), measured_on=measured_on)


class MoeSummary(Value):
    """A mixture of experts: its layout, its expert FLOPs at balanced and at measured routing
    (one rank, per optimizer step), and the measured expert load."""

    experts: int = Field(ge=1)
    experts_per_token: int = Field(ge=1)
    moe_layers: int = Field(ge=1)
    expert_params: int
    expert_params_active: int
    # counted on the fake replica from shapes (tokens x k rows): the count at any, so also at
    # perfectly balanced, routing
    expert_flops_balanced_per_step: int
    # counted on the real untimed step from the rows each expert was routed; None when not run
    expert_flops_routed_per_step: int | None = None
    expert_load: ExpertLoad | None = None
    routing: str = ""


class DatasheetPeakInfo(Value):
    """The datasheet's dense peak for the run's device and math mode; None when unknown."""

    flops_per_s: float | None = None
    gpu: str | None = None
    mode: str | None = None
    source: str | None = None


class MeasuredPeakInfo(Value):
    """Best matmul throughput measured on the device: `matmul_size`³ in `dtype`."""

    flops_per_s: float
    matmul_size: int | None = None
    dtype: str | None = None
    reps: int | None = None
    trials: int | None = None
    clock: str | None = None


class Peaks(Value):
    """The run's own peaks (`datasheet`, `measured`: its precision's) and the other precisions
    it is also stated against (an fp8 run: the bf16 datasheet peak and bf16 measured matmul)."""

    datasheet: DatasheetPeakInfo = DatasheetPeakInfo()
    measured: MeasuredPeakInfo | None = None
    datasheet_also: list[DatasheetPeakInfo] = []
    measured_also: list[MeasuredPeakInfo] = []


class PeakUtilization(Value):
    """MFU and HFU (per device) against one named peak: "datasheet fp8 (B200)", "measured bf16
    matmul"; None where that peak is unknown."""

    peak: str
    kind: Literal["datasheet", "measured"]
    mode: str | None
    flops_per_s: float | None
    mfu: float | None
    hfu: float | None
    source: str | None = None


def utilizations(peaks: Peaks, model_flops_per_s: float, hardware_flops_per_s: float) -> list[PeakUtilization]:
    """Every peak of `peaks`, named, with the per-device model and hardware FLOP/s over it."""
    out = []
    for sheet in [peaks.datasheet, *peaks.datasheet_also]:
        out.append(PeakUtilization(
            peak=f"datasheet {sheet.mode}" + (f" ({sheet.gpu})" if sheet.gpu else " (unknown for this device)"),
            kind="datasheet", mode=sheet.mode, flops_per_s=sheet.flops_per_s,
            mfu=utilization(model_flops_per_s, sheet.flops_per_s),
            hfu=utilization(hardware_flops_per_s, sheet.flops_per_s), source=sheet.source))
    for measured in [m for m in [peaks.measured, *peaks.measured_also] if m is not None]:
        out.append(PeakUtilization(
            peak=f"measured {measured.dtype} matmul", kind="measured", mode=measured.dtype,
            flops_per_s=measured.flops_per_s, mfu=utilization(model_flops_per_s, measured.flops_per_s),
            hfu=utilization(hardware_flops_per_s, measured.flops_per_s),
            source=f"{measured.matmul_size}^3 matmuls, best of {measured.trials} x {measured.reps}"))
    return out


class Fp8Info(Value):
    """How an fp8 run trained: the linear layers converted to float8 (count), those kept in bf16
    with why, the library and its scaling recipe."""

    library: str
    recipe: str
    converted_linear: int = Field(ge=0)
    kept_linear: dict[str, str] = {}


class Timing(Value):
    clock: str = "?"
    warmup_steps: int | None = None
    steps: int | None = None
    throughput_rule: str | None = None
    depth_slices: list[int] | None = None


class ComponentEnergyInfo(Value):
    """One component's energy over the sampled window and per measured step."""

    component: str
    energy_j: float
    avg_w: float
    method: str                      # counter | integrated | rapl | estimated
    detail: str
    joules_per_step: float | None = None


class AttributedPower(Value):
    """An average power in W given to one of the job's devices, and how it was attributed."""

    avg_w: float = Field(ge=0)
    method: str


class Energy(Value):
    """Energy of the measured steps: per step, per token, per component with its method.

    A record written since per-device attribution also says what is the job's on the sampled
    node: `devices` (the GPUs its ranks use there, or a CPU run's processes), `per_device` (the
    device components' average W / devices: the job's GPUs, or a CPU run's CPU) and
    `host_per_device` (the host's other components x `host_share` / devices). `host_share` is the
    job's fraction of the host (GPU runs: devices / `host_gpus`, NVML's count; CPU runs: 1, the
    process's share as sampled), `host_share_method` says how; then `joules_per_step` is the job's
    (its devices + its host share), while `components` keep what was read. Older records lack
    these fields (None): their figures are everything the sampler read."""

    joules_per_step: float
    joules_per_token: float | None = None
    avg_watts: float | None = None
    components: list[ComponentEnergyInfo] = []
    methods: dict[str, str] = {}
    estimated: bool = False
    missing: list[str] = []
    window_s: float | None = None
    interval_s: float | None = None
    samples: int | None = None
    note: str | None = None
    devices: int | None = Field(None, ge=1)
    host_gpus: int | None = Field(None, ge=1)
    host_share: float | None = Field(None, ge=0, le=1)
    host_share_method: str | None = None
    per_device: AttributedPower | None = None
    host_per_device: AttributedPower | None = None

    @property
    def method_label(self) -> str:
        return "estimated" if self.estimated else "measured"


class EnvDevice(Open):
    type: str
    name: str = "?"
    count: int = 1
    memory_bytes: int | None = None


class CpuInfo(Open):
    model: str | None = None
    physical_cores: int | None = None
    logical_cores: int | None = None
    ram_bytes: int | None = None


class Environment(Open):
    """Where a number came from: device, CPU, NVML, library versions, git commit."""

    device: EnvDevice | None = None
    cpu: CpuInfo | None = None
    nvml: dict[str, Any] | None = None
    tf32_matmul: bool = False
    git_commit: str | None = None


class RankResult(Value):
    """One rank's own step times (s) and peak memory (bytes)."""

    rank: int
    warmup_times_s: list[float]
    step_times_s: list[float]
    peak_memory_bytes: int


class SweepInfo(Value):
    name: str
    point: int
    overrides: list[str] = []


class Scaling(Value):
    """Weak-scaling efficiency of a multi-device run against a stored one-device run."""

    efficiency: float | None = None
    world_size: int | None = None
    source: str | None = None
    reason: str | None = None
    definition: str | None = None


class SliceSummary(Value):
    layers: int
    step_s: float
    peak_memory_bytes: int
    run_id: str
    repeats: int = 1
    run_ids: list[str] = []
    median_step_s_runs: list[float] = []
    peak_memory_bytes_runs: list[int] = []
    memory_run_id: str | None = None


class DepthFit(Value):
    step_s_fixed: float
    step_s_per_layer: float
    step_max_rel_residual: float
    memory_bytes_fixed: float
    memory_bytes_per_layer: float
    memory_max_rel_residual: float


class MinDevices(Value):
    """The fewest devices that hold one training step, without and with full sharding."""

    device_memory_bytes: int
    device_memory_source: str
    state_bytes_per_param: int
    state_bytes_per_param_source: str
    state_bytes: int
    unsharded_bytes: float
    gathered_layer_bytes: float
    assumptions: str
    without_sharding: int | None
    without_sharding_reason: str | None
    full_sharding: int | None
    full_sharding_reason: str | None


class DepthExtrapolation(Value):
    """How a depth-sliced record's step time and memory were predicted (harness.measure.slices)."""

    method: str
    repeats: int = 1
    step_statistic: str | None = None
    memory_statistic: str | None = None
    layers_meaning: str
    full_layers: int
    slices: list[SliceSummary]
    predicted_step_s: float
    predicted_peak_memory_bytes: int
    peak_memory_method: str | None = None
    residual: float
    residual_memory: float
    residual_definition: str
    dof: int
    per_layer_flops_per_s: float | None = None
    extrapolation_factor: float
    fit: DepthFit
    params: int
    params_per_layer: float
    min_devices: MinDevices
    warnings: list[str] = []
    hardware_flops_per_step: int | None = None
    hardware_flops_method: str | None = None


PROVENANCE = {
    "step_times_s": "measured", "tokens_per_s": "measured", "samples_per_s": "measured",
    "peak_memory_bytes": "measured", "peak_flops_measured": "measured",
    "model_flops_per_step": "counted", "hardware_flops_per_step": "counted",
    "achieved_flops_per_s": "counted/measured", "mfu_measured": "counted/measured",
    "flops.analytic": "analytic",
    "energy": "per component: counter | integrated | rapl (measured) or estimated",
}

PREDICTED_PROVENANCE = {
    "step_times_s": "predicted from depth slices", "peak_memory_bytes": "predicted from depth slices",
    "tokens_per_s": "predicted (tokens per step / predicted step time)",
    "samples_per_s": "predicted (samples per step / predicted step time)",
    "model_flops_per_step": "counted (full depth, fake replica)",
    "hardware_flops_per_step": "counted on the slices, extrapolated linearly in depth",
    "achieved_flops_per_s": "counted/predicted", "mfu_measured": "counted/predicted",
    "iqr_step_s": "none: one predicted step has no spread (see depth_extrapolation.residual)",
    "energy": "largest slice's average power x predicted step time",
}


def utilization(flops_per_s: float, peak: float | None) -> float | None:
    """Achieved / peak, or None when the peak is unknown."""
    return None if not peak else flops_per_s / peak


# ---- what the timed window gave ----------------------------------------------------------------

class World(Value):
    """The processes a run spanned: ranks, nodes, and how the model was spread."""

    world_size: int = Field(1, ge=1)
    nnodes: int = Field(1, ge=1)
    strategy: Literal["single", "ddp", "fsdp"] = "single"


class Measurement(BaseModel):
    """Everything one run measured or counted, before any derivation; one rank's counts, the
    slowest rank's step times. `how_timed` "predicted" marks a depth-sliced stand-in."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    spec: RunSpec
    run_id: str
    created_at: datetime
    times: StepTimes
    model_flops: FlopSummary
    hardware_flops: FlopSummary
    analytic: AnalyticFlops
    uncounted_ops: dict[str, int]
    params: int
    params_non_embedding: int
    datasheet: DatasheetPeakInfo
    params_active: int | None = None              # None: dense, = params
    params_active_non_embedding: int | None = None
    moe: MoeSummary | None = None
    measured_peak: MeasuredPeakInfo
    datasheet_also: list[DatasheetPeakInfo] = []
    measured_also: list[MeasuredPeakInfo] = []
    fp8: Fp8Info | None = None
    energy: Energy | None
    env: Environment
    device: DeviceInfo
    world: World = World()
    per_rank: list[RankResult] | None = None
    peak_memory_bytes: int
    peak_memory_method: str
    clock: str
    optimizer: str
    warnings: list[str] = []
    how_timed: Literal["measured", "predicted"] = "measured"


# ---- the record ------------------------------------------------------------------------------

class RunRecord(Value):
    """One run. Times in seconds, FLOPs per optimizer step, memory in bytes; the top-level
    FLOPs, tokens and rates are for the whole world (every rank)."""

    run_id: str = Field(pattern=RUN_ID_PATTERN)
    created_at: str                        # ISO 8601 with offset, seconds
    config_hash: str
    model: ModelSpec
    params: int
    params_non_embedding: int
    # what one token uses: = params for a dense model; a mixture of experts' routed experts at k of E
    params_active: int
    params_active_non_embedding: int
    batch_size: int = Field(gt=0)
    seq_len: int = Field(gt=0)
    decoder_seq_len: int | None
    grad_accum: int = Field(gt=0)
    dtype: str
    device: DeviceInfo
    compile: bool
    checkpointing: bool
    optimizer: str
    warmup_times_s: list[float]
    step_times_s: list[float] = Field(min_length=1)
    median_step_s: float = Field(gt=0)
    iqr_step_s: float | None   # None for a depth-sliced record (one predicted step, no spread)
    cv_step: float | None
    total_measured_s: float = Field(gt=0)
    tokens_per_step: int
    tokens_per_s: float
    samples_per_s: float
    model_flops_per_step: int
    hardware_flops_per_step: int
    achieved_flops_per_s: float
    hardware_flops_per_s: float
    peak_flops_datasheet: float | None
    peak_flops_measured: float
    mfu_datasheet: float | None
    mfu_measured: float
    hfu_datasheet: float | None
    hfu_measured: float
    peak_memory_bytes: int
    peak_memory_method: str
    flops: Flops
    peaks: Peaks
    timing: Timing
    warnings: list[str]
    env: Environment
    spec: RunSpec
    provenance: dict[str, str] = {}
    energy: Energy | None = None
    world_size: int = Field(1, ge=1)
    nnodes: int = Field(1, ge=1)
    strategy: str = "single"               # single | ddp | fsdp
    per_device_tokens_per_s: float | None = None
    per_rank: list[RankResult] | None = None
    sweep: SweepInfo | None = None
    scaling: Scaling | None = None
    depth_extrapolation: DepthExtrapolation | None = None
    # every peak the run is stated against, named (an fp8 run: FP8 and bf16 datasheet, FP8 and
    # bf16 measured); records written before it have none
    utilization: list[PeakUtilization] = []
    fp8: Fp8Info | None = None
    moe: MoeSummary | None = None
    schema_version: int = SCHEMA_VERSION

    @field_validator("created_at")
    @classmethod
    def _iso(cls, text: str) -> str:
        try:
            datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{text!r} is not an ISO datetime") from None
        return text

    @field_validator("step_times_s", "warmup_times_s")
    @classmethod
    def _non_negative(cls, times: list[float]) -> list[float]:
        if any(not 0 <= t <= MAX_SECONDS for t in times):
            raise ValueError(f"must be a list of seconds from 0 to {MAX_SECONDS:g}")
        return times

    @field_validator("median_step_s", "total_measured_s", "iqr_step_s")
    @classmethod
    def _seconds(cls, value: float | None) -> float | None:
        if value is not None and value > MAX_SECONDS:
            raise ValueError(f"must be at most {MAX_SECONDS:g} s, got {value:g}")
        return value

    @field_validator("model")
    @classmethod
    def _dimensions(cls, model: ModelSpec) -> ModelSpec:
        """A stored model has at least one of each dimension (a record of size 0 divides by zero)."""
        _check_dimensions(model)
        return model

    @field_validator("spec")
    @classmethod
    def _spec_dimensions(cls, spec: RunSpec) -> RunSpec:
        _check_dimensions(spec.model, "model.")
        return spec

    # -- derived views: one name each, so no consumer re-derives them --

    @property
    def how_timed(self) -> str:
        """"measured", or "predicted from depth slices" for a depth-sliced record."""
        return "predicted from depth slices" if self.depth_extrapolation else "measured"

    @property
    def achieved_flops_per_s_per_device(self) -> float:
        """Model FLOP/s of one device: a multi-device record's rate is for all its ranks (its
        scaling losses stay in it)."""
        return self.achieved_flops_per_s / self.world_size

    @property
    def tokens_per_device_step(self) -> float:
        """Tokens one device consumes per optimizer step."""
        return self.tokens_per_step / self.world_size

    @property
    def model_label(self) -> str:
        """"bert-base", "bert-base (layers=2)", or the family: see ModelSpec.label."""
        return self.model.label

    def evolve(self, **changes: Any) -> "RunRecord":
        """This record with `changes` applied, validated again (never `model_copy(update=...)`)."""
        return RunRecord.model_validate({**self.model_dump(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what `results/runs/<run_id>.json` holds)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, data: Any, where: str = "record") -> "RunRecord":
        """A record from its JSON form, of this version or an older one (migrated forward).
        ConfigError naming `where`, the field and what is wrong on anything else."""
        if not isinstance(data, dict):
            raise ConfigError(where, f"a record must be a JSON object, got {type(data).__name__}")
        check_json_shape(data, where)
        try:
            # strict, as JSON: an integer field takes no boolean, float or numeric string
            return cls.model_validate_json(json.dumps(migrate(data), allow_nan=False), strict=True)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err.field}", err.message) from None
        except ValidationError as err:
            raise validation_error(err, where) from None

    @classmethod
    def from_measurement(cls, m: Measurement, *, depth_extrapolation: DepthExtrapolation | None = None,
                         extra_warnings: list[str] = ()) -> "RunRecord":
        """Derive the record of a measurement: world FLOPs and tokens, rates over the measured
        time, MFU/HFU against both peaks (per device: achieved / world / peak), provenance and
        warnings. The one derivation, for normal and depth-sliced (predicted) runs."""
        spec, times, world = m.spec, m.times, m.world.world_size
        predicted = m.how_timed == "predicted"
        tokens_per_step = spec.tokens_per_step * world
        model_flops = m.model_flops.per_rank_per_step * world
        hardware_flops = m.hardware_flops.per_rank_per_step * world
        achieved, hardware_rate = times.per_s(model_flops), times.per_s(hardware_flops)
        warnings = [] if predicted else times.warnings()
        peaks = Peaks(datasheet=m.datasheet, measured=m.measured_peak, datasheet_also=m.datasheet_also,
                      measured_also=m.measured_also)
        if spec.train.compile:
            warnings.append("hardware FLOPs were counted on the uncompiled model")
            if spec.measure.warmup_steps == 0 and not predicted:
                warnings.append("compile with no warm-up steps: the first measured step includes compilation")
        return cls(
            run_id=m.run_id, created_at=m.created_at.isoformat(timespec="seconds"), config_hash=spec.config_hash(),
            model=spec.model, params=m.params, params_non_embedding=m.params_non_embedding,
            params_active=m.params if m.params_active is None else m.params_active,
            params_active_non_embedding=(m.params_non_embedding if m.params_active_non_embedding is None
                                         else m.params_active_non_embedding), moe=m.moe,
            batch_size=spec.train.batch_size, seq_len=spec.train.seq_len,
            decoder_seq_len=spec.train.decoder_seq_len, grad_accum=spec.train.grad_accum,
            dtype=spec.train.dtype, device=m.device, compile=spec.train.compile,
            checkpointing=spec.train.checkpointing, optimizer=m.optimizer,
            warmup_times_s=list(times.warmup_s), step_times_s=list(times.steps_s),
            median_step_s=times.median_s, iqr_step_s=None if predicted else times.iqr_s,
            cv_step=None if predicted else times.cv, total_measured_s=times.total_s,
            tokens_per_step=tokens_per_step, tokens_per_s=times.per_s(tokens_per_step),
            samples_per_s=times.per_s(spec.samples_per_step * world),
            model_flops_per_step=model_flops, hardware_flops_per_step=hardware_flops,
            achieved_flops_per_s=achieved, hardware_flops_per_s=hardware_rate,
            peak_flops_datasheet=m.datasheet.flops_per_s, peak_flops_measured=m.measured_peak.flops_per_s,
            mfu_datasheet=utilization(achieved / world, m.datasheet.flops_per_s),
            mfu_measured=utilization(achieved / world, m.measured_peak.flops_per_s),
            hfu_datasheet=utilization(hardware_rate / world, m.datasheet.flops_per_s),
            hfu_measured=utilization(hardware_rate / world, m.measured_peak.flops_per_s),
            peak_memory_bytes=m.peak_memory_bytes, peak_memory_method=m.peak_memory_method,
            flops=Flops(convention="2*MAC", model=m.model_flops, hardware=m.hardware_flops, analytic=m.analytic,
                        uncounted_ops=m.uncounted_ops, grad_accum_micro_batches=spec.train.grad_accum),
            peaks=peaks,
            timing=Timing(clock=m.clock, warmup_steps=spec.measure.warmup_steps, steps=spec.measure.steps,
                          throughput_rule=("tokens per step / predicted step time" if predicted else
                                           "tokens per step x steps / total measured seconds"),
                          depth_slices=None if depth_extrapolation is None
                          else [s.layers for s in depth_extrapolation.slices]),
            warnings=[*extra_warnings, *warnings, *m.warnings], env=m.env, spec=spec,
            provenance={**PROVENANCE, **(PREDICTED_PROVENANCE if predicted else {})},
            energy=m.energy, world_size=world, nnodes=m.world.nnodes, strategy=m.world.strategy,
            per_device_tokens_per_s=times.per_s(tokens_per_step) / world, per_rank=m.per_rank,
            depth_extrapolation=depth_extrapolation,
            utilization=utilizations(peaks, achieved / world, hardware_rate / world), fp8=m.fp8,
        )




PRESET_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")  # every preset's name fits


def _check_dimensions(model: ModelSpec, prefix: str = "") -> None:
    if model.preset is not None and not PRESET_NAME_PATTERN.match(model.preset):
        shown = model.preset if len(model.preset) <= 40 else model.preset[:40] + "..."
        raise ValueError(f"{prefix}preset {shown!r} is not a preset name (letters, digits, . _ + -)")
    for name in ("layers", "decoder_layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "vocab",
                 "max_positions"):
        value = getattr(model, name, None)
        if value is not None and value < 1:
            raise ValueError(f"{prefix}{name} must be at least 1, got {value}")


def check_json_shape(data: Any, where: str = "record") -> None:
    """ConfigError naming `where` and the place when parsed JSON nests deeper than MAX_DEPTH, holds
    an integer beyond 64 bits or a number that is not finite. Iterative: never a RecursionError."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, place, depth = stack.pop()
        field = f"{where}: {place if len(place) <= 60 else place[:60] + '...'}" if place else where
        if depth > MAX_DEPTH:
            raise ConfigError(field, f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((v, f"{place}.{k}" if place else str(k), depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{place}[{i}]", depth + 1) for i, v in enumerate(value))
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int) and not -MAX_INT - 1 <= value <= MAX_INT:
            raise ConfigError(field, f"integer beyond 64 bits ({len(str(abs(value)))} digits)")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(field, f"must be finite, got {value}")


def validation_error(err: ValidationError, where: str) -> ConfigError:
    """The first problem of a ValidationError as one ConfigError naming `where` and the field."""
    missing = [str(e["loc"][0]) for e in err.errors() if e["type"] == "missing" and len(e["loc"]) == 1]
    if missing:
        more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
        return ConfigError(where, f"not a run record: missing {', '.join(missing[:6])}{more}")
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    kind = first["type"]
    if kind == "missing":
        message = "missing"
    elif kind.startswith("int_") or kind == "int_type":
        message = f"must be an integer, got {str(first.get('input'))[:40]}"
    elif kind == "finite_number":
        message = f"must be finite, got {first.get('input')}"
    elif kind == "string_pattern_mismatch" and field == "run_id":
        message = f"{first.get('input')!r} is not a valid run id (letters, digits, . _ + -)"
    elif kind == "value_error":  # our own validators: their message says it all
        message = first["msg"].removeprefix("Value error, ")
    elif kind == "too_short":
        message = "must not be empty"
    else:
        message = f"{first['msg']} (got {str(first.get('input'))[:40]})"
    return ConfigError(f"{where}: {field}" if field else where, message)


# ---- older forms ------------------------------------------------------------------------------

def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 → v2: one rank's counts renamed `per_rank_per_step` (v1's `per_step` was one rank's
    while the top-level `model_flops_per_step` was the world's); `by_module` unknown (None)."""
    flops = dict(data.get("flops") or {})
    for part in ("model", "hardware"):
        summary = flops.get(part)
        if isinstance(summary, dict) and "per_step" in summary:
            summary = {k: v for k, v in summary.items() if k != "per_step"}
            summary["per_rank_per_step"] = data["flops"][part]["per_step"]
            flops[part] = summary
    return {**data, "flops": flops, "schema_version": 2}


def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """v2 → v3: active parameters added. Every v2 record is of a dense model (bert, gpt2, t5,
    llama: mixtures of experts came with v3), whose active parameters are all of them."""
    return {**data, "params_active": data.get("params"),
            "params_active_non_embedding": data.get("params_non_embedding"), "schema_version": 3}


# version it produces → the step from the version before. Append only; never edit a step.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {2: _v1_to_v2, 3: _v2_to_v3}


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """The JSON form of a record of any known version, brought to SCHEMA_VERSION."""
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError("schema_version", f"must be an integer >= 1, got {version!r}")
    if version > SCHEMA_VERSION:
        raise ConfigError("schema_version", f"{version} is newer than this harness reads ({SCHEMA_VERSION}); "
                                            "upgrade harness")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        data = MIGRATIONS[target](data)
    return data

