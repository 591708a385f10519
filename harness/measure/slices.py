"""Slice: measure a model too big for this machine at full width and a few depths, then
predict the full-depth step.

Every layer of a transformer stack is the same, so a training step's time and peak memory are,
to first order, ``fixed + per_layer x layers``: the fixed term holds the embeddings, the LM head,
the loss, the runtime's own memory; the per-layer term one block's forward, backward, optimizer
update, weights, gradients, Adam moments and activations. Measuring a few slices (the same model
with 1, 2, 4 layers) and fitting the line by least squares predicts the full depth, with the fit's
residual as a first check. For T5 a "layer" is one encoder layer and one decoder layer together.
On a shared machine each slice can be run several times (``--slice-repeats``), round by round;
the fit then takes each slice's median step time and peak memory over its runs.

Each slice runs in a fresh process (``python -m harness run``): on CPU the peak memory is the
process's peak RSS (``ru_maxrss``), which never goes down, so slices sharing one process would
each report the largest one's peak.

Data flow: RunSpec → slice specs → one record per slice (subprocess) → :class:`SliceResult` →
:func:`extrapolate` (fits, prediction, minimum devices) → :func:`depth_sliced_record` (a record
that stands for the full-depth model, usable by ``harness estimate``).
"""

from __future__ import annotations

import math
import platform
import statistics
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from harness.config import RunSpec, with_changes
from harness.errors import ConfigError, HarnessError
from harness.results.record import (DepthExtrapolation, DepthFit, Energy, FlopSummary, Measurement, MeasuredPeakInfo,
                                    MinDevices, RunRecord, SliceSummary, World)
from harness.steps import StepTimes

# AdamW with fp32 weights (autocast keeps the weights fp32, so they are the master copy):
# 4 B weight + 4 B gradient + 8 B Adam moments (exp_avg, exp_avg_sq) per parameter, as the ZeRO
# paper counts its fp32 states (Rajbhandari et al. 2020, §3.1, without the fp16 copies).
STATE_BYTES_PER_PARAM = 16
STATE_BYTES_SOURCE = ("AdamW, fp32 weights: 4 B weight + 4 B gradient + 8 B Adam moments "
                      "(exp_avg, exp_avg_sq) per parameter")
# FSDP gathers one wrapped unit (here: one layer) at a time: its full weights for the forward
# and backward, and its full gradient before the reduce-scatter.
GATHERED_BYTES_PER_PARAM = 8
RESIDUAL_DEFINITION = ("RMS over the slices of |measured - fit| / measured; 0 by construction with "
                       "2 slices (no degrees of freedom); use 3 or more slices for a check")
# Beyond this ratio of full depth to the largest slice, say that the per-layer term's error
# is multiplied by that much.
_FAR_EXTRAPOLATION = 4.0

# runner(spec) -> RunRecord; runner(spec, env={...}) runs it with those environment variables.
Runner = Callable[..., RunRecord]

# On CPU the peak memory is the process's peak RSS. By glibc's default the mmap threshold rises to
# the largest block freed so far, and later blocks below it come from the heap, whose fragmentation
# grows with depth: peak RSS is superlinear in layers (GPT-2 at width 512, measured here: 100, 112
# and 122 MB a layer from 1 to 2, 2 to 4 and 4 to 8 layers), so a line through shallow slices
# under-predicts a deep model. With the threshold fixed at 64 KiB every tensor's block is a mapping
# of its own, returned to the system when freed: peak RSS is the runtime plus the peak of live
# tensors, linear in depth (93 MB a layer at every depth there), the CPU counterpart of
# torch.cuda.max_memory_allocated. It also slows the steps (12-45% there), so on CPU the memory of
# each depth comes from a short run of its own under this setting, and the step time from the
# normal runs.
FIXED_MMAP_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}
MEMORY_RUN_MEASURE = {"warmup_steps": 1, "steps": 2, "energy": False}


# ---------------------------------------------------------------------------------------------
# The fit


@dataclass(frozen=True)
class LinearFit:
    """Ordinary least squares of y = fixed + per_layer x layers.

    `residual` is the RMS of the relative residuals |y - fit| / y over the points,
    `max_rel_residual` the largest of them; `dof` = n - 2 degrees of freedom: with 2 points
    (dof 0) the line passes through both and the residual is 0 by construction, not a check."""

    fixed: float
    per_layer: float
    residual: float
    max_rel_residual: float
    n: int
    dof: int

    def predict(self, layers: float) -> float:
        return self.fixed + self.per_layer * layers


def fit_linear(xs: Sequence[float], ys: Sequence[float]) -> LinearFit:
    """Fit y = fixed + per_layer x xs by least squares (numpy). Needs 2 or more points at 2 or
    more distinct x and every y > 0 (the residual is relative)."""
    import numpy as np

    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"xs and ys must be flat sequences of one length, got {x.shape} and {y.shape}")
    if len(np.unique(x)) < 2:
        raise ValueError(f"a line needs points at 2 or more distinct x, got {list(xs)}")
    if np.any(y <= 0):
        raise ValueError(f"every y must be > 0 for a relative residual, got {list(ys)}")
    design = np.column_stack([np.ones_like(x), x])
    (fixed, per_layer), *_ = np.linalg.lstsq(design, y, rcond=None)
    relative = np.abs(y - (fixed + per_layer * x)) / y
    if len(x) == 2:  # the line passes through both points: only rounding is left
        relative = np.zeros_like(relative)
    return LinearFit(fixed=float(fixed), per_layer=float(per_layer),
                     residual=float(np.sqrt(np.mean(relative ** 2))),
                     max_rel_residual=float(relative.max()), n=len(x), dof=len(x) - 2)


# ---------------------------------------------------------------------------------------------
# Slices of a spec


def full_depth(spec: RunSpec) -> int:
    """The depth that slices are taken of: model.layers (T5: encoder = decoder layers)."""
    model = spec.model
    if model.family == "t5" and model.decoder_layers != model.layers:
        raise ConfigError("slices.depths", f"T5 slices set encoder and decoder layers together; this "
                          f"model has {model.layers} encoder and {model.decoder_layers} decoder layers, "
                          "which is not a point on that line")
    return model.layers


def slice_spec(spec: RunSpec, layers: int) -> RunSpec:
    """`spec` at full width with `layers` layers (T5: encoder and decoder layers both =
    `layers`), validated again as a config. 1 <= layers < the full depth."""
    depth = full_depth(spec)
    if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers < depth:
        raise ConfigError("slices.depths", f"slice of {layers!r} layers; allowed: 1..{depth - 1} "
                          f"(fewer layers than the full model's {depth})")
    changes = {"model.layers": layers}
    if spec.model.family == "t5":
        changes["model.decoder_layers"] = layers
    return with_changes(spec, changes)


def parse_slices(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` → (1, 2, 4); ConfigError("slices.depths") on anything else."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError("slices.depths", f"expected layer counts separated by commas (e.g. 1,2,4), "
                          f"got {text!r}") from None


def check_slices(spec: RunSpec, slices: Sequence[int]) -> tuple[int, ...]:
    """The slices sorted, after checking each is 1..depth-1, none repeats, and there are 2+."""
    slices = tuple(slices)
    for layers in slices:
        slice_spec(spec, layers)  # raises on a bad depth
    if len(set(slices)) != len(slices):
        raise ConfigError("slices.depths", f"a slice is repeated in {list(slices)}; give each depth once")
    if len(slices) < 2:
        raise ConfigError("slices.depths", f"need at least 2 distinct slices to fit fixed + per-layer "
                          f"terms, got {list(slices)}; 3 or more give a residual to check the fit")
    return tuple(sorted(slices))


# ---------------------------------------------------------------------------------------------
# Measuring slices


STEP_STATISTIC = ("the median of the repeats' median step times: runs in fresh processes differ by a few "
                  "percent either way (memory layout, other load on a shared machine), and the median keeps "
                  "one outlier, fast or slow, from setting the line")
MEMORY_STATISTIC = "the median of the repeats' peak memory"
MEMORY_RUN_STATISTIC = ("one run of its own (1 warm-up + 2 steps) with glibc's mmap threshold fixed at 64 KiB: "
                        "runtime + peak live tensors, without the heap fragmentation that grows with depth")


@dataclass(frozen=True)
class SliceResult:
    """One measured depth, from one or more runs of it (each in a fresh process).

    `step_s` is the median of the runs' median step times (:data:`STEP_STATISTIC`);
    `peak_memory_bytes` is the peak of `memory_record`, a run of its own for the memory
    (:data:`MEMORY_RUN_STATISTIC`), where there is one, else the median of the runs' peaks
    (:data:`MEMORY_STATISTIC`); `record` is the run whose median step is nearest `step_s`, whose
    counts, power and environment stand for the depth; `runs` holds every timed run's record."""

    layers: int
    step_s: float
    peak_memory_bytes: int
    model_flops_per_step: int
    params: int
    record: RunRecord
    runs: tuple[RunRecord, ...]
    memory_record: RunRecord | None = None

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def memory_method(self) -> str:
        return (self.memory_record or self.record).peak_memory_method

    @property
    def memory_statistic(self) -> str:
        return MEMORY_RUN_STATISTIC if self.memory_record is not None else MEMORY_STATISTIC

    @classmethod
    def from_records(cls, layers: int, records: Sequence[RunRecord],
                     memory_record: RunRecord | None = None) -> "SliceResult":
        """Combine the timed runs of one depth (1 or more) and its memory run, if any."""
        if not records:
            raise ValueError(f"no runs of the {layers}-layer depth to combine")
        step_s = statistics.median(r.median_step_s for r in records)
        typical = min(records, key=lambda r: abs(r.median_step_s - step_s))
        if memory_record is not None:
            peak = memory_record.peak_memory_bytes
        else:
            peak = int(round(statistics.median(r.peak_memory_bytes for r in records)))
        return cls(layers=layers, step_s=step_s, peak_memory_bytes=peak,
                   model_flops_per_step=typical.model_flops_per_step, params=typical.params,
                   record=typical, runs=tuple(records), memory_record=memory_record)

    def summary(self) -> SliceSummary:
        """The slice as `depth_extrapolation.slices` lists it."""
        return SliceSummary(layers=self.layers, step_s=self.step_s, peak_memory_bytes=self.peak_memory_bytes,
                            run_id=self.run_id, repeats=len(self.runs), run_ids=[r.run_id for r in self.runs],
                            median_step_s_runs=[r.median_step_s for r in self.runs],
                            peak_memory_bytes_runs=[r.peak_memory_bytes for r in self.runs],
                            memory_run_id=self.memory_record.run_id if self.memory_record is not None else None)


def run_in_subprocess(spec: RunSpec, *, python: str | None = None,
                      env: Mapping[str, str] | None = None) -> RunRecord:
    """Measure `spec` with ``python -m harness run CONFIG --json`` in a fresh process, so that
    its peak memory is its own, with `env` added to this process's environment; the record is
    stored in a temporary results folder that is removed afterwards. HarnessError with the
    child's last stderr line when it fails."""
    import yaml

    from harness.measure.launch import child_record

    with tempfile.TemporaryDirectory(prefix="harness-slice-") as tmp:
        config = Path(tmp) / "spec.yaml"
        config.write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
        return child_record(["run", str(config), "--results-dir", str(Path(tmp) / "results")], env=env,
                            python=python)


def check_repeats(repeats: int) -> int:
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigError("slices.repeats", f"got {repeats!r}; allowed: an integer >= 1 (runs of each slice)")
    return repeats


def _memory_spec(spec: RunSpec) -> RunSpec:
    return with_changes(spec, {f"measure.{key}": value for key, value in MEMORY_RUN_MEASURE.items()})


def wants_memory_run(record: RunRecord) -> bool:
    """Whether a depth measured as `record` needs a memory run of its own: on CPU under glibc
    (MALLOC_MMAP_THRESHOLD_ is glibc's; elsewhere the timed runs' peaks are used, as said)."""
    return record.device.type == "cpu" and platform.libc_ver()[0] == "glibc"


def measure_depths(spec: RunSpec, depths: Sequence[int], *, repeats: int = 1, runner: Runner | None = None,
                   log: Callable[[str], None] | None = None) -> dict[int, SliceResult]:
    """Measure `spec` at full width at each of `depths` (the full depth allowed: `spec` itself),
    `repeats` times each, each run in a fresh process (`runner` replaces that, for tests). The
    repeats go round by round (1, 2, 4, 1, 2, 4, ...), so that a spell of other load falls on one
    run of several depths rather than on every run of one. On CPU each depth's first round adds
    a short memory run (see :data:`FIXED_MMAP_ENV`). A failed run raises HarnessError naming its
    depth."""
    runner = runner or run_in_subprocess
    repeats = check_repeats(repeats)
    depth = full_depth(spec)
    depths = sorted(set(depths))
    specs = {d: spec if d == depth else slice_spec(spec, d) for d in depths}
    runs: dict[int, list[RunRecord]] = {d: [] for d in depths}
    memory: dict[int, RunRecord] = {}

    def run(layers: int, what: str, sliced: RunSpec, env: Mapping[str, str] | None = None) -> RunRecord:
        if log is not None:
            log(f"depth slice {layers} of {depth} layers{what}: measuring in a fresh process")
        try:
            return runner(sliced) if env is None else runner(sliced, env=env)
        except HarnessError as err:
            raise HarnessError(f"depth slice of {layers} layers failed: {err}") from None

    for round_ in range(repeats):
        for layers in depths:
            of = f", run {round_ + 1} of {repeats}" if repeats > 1 else ""
            runs[layers].append(run(layers, of, specs[layers]))
            if round_ == 0 and wants_memory_run(runs[layers][0]):
                memory[layers] = run(layers, ", memory run (glibc mmap threshold fixed)",
                                     _memory_spec(specs[layers]), FIXED_MMAP_ENV)
    return {d: SliceResult.from_records(d, runs[d], memory.get(d)) for d in depths}


def measure_slices(spec: RunSpec, slices: Sequence[int], *, repeats: int = 1, runner: Runner | None = None,
                   log: Callable[[str], None] | None = None) -> list[SliceResult]:
    """Measure `spec` at each depth in `slices` (checked: 2 or more, each below the full depth),
    shallowest first; see :func:`measure_depths`."""
    measured = measure_depths(spec, check_slices(spec, slices), repeats=repeats, runner=runner, log=log)
    return [measured[d] for d in sorted(measured)]


# ---------------------------------------------------------------------------------------------
# Extrapolating


def _device_memory(record: RunRecord) -> tuple[int, str]:
    """(bytes, where from) of one device's memory: CUDA total memory, or CPU RAM."""
    device, cpu = record.env.device, record.env.cpu
    kind = device.type if device is not None else record.device.type
    if device is not None and device.memory_bytes:
        what = "GPU total memory" if kind == "cuda" else "total RAM"
        return device.memory_bytes, f"{what} of {device.name} (record env.device.memory_bytes)"
    if kind != "cuda" and cpu is not None and cpu.ram_bytes:
        return cpu.ram_bytes, "total RAM (record env.cpu.ram_bytes)"
    if kind == "cuda":
        raise HarnessError("the slice record has no GPU memory size (env.device.memory_bytes)")
    import psutil

    return int(psutil.virtual_memory().total), "total RAM of this machine (psutil; the record had none)"


def min_devices(predicted_memory_bytes: float, params: int, per_layer_params: float,
                device_memory_bytes: int, memory_source: str) -> MinDevices:
    """The fewest devices of `device_memory_bytes` each that hold one training step.

    Without sharding every device holds the whole model, so more devices do not help: 1 or
    None. With full sharding of weights, gradients and AdamW state (FSDP FULL_SHARD, ZeRO-3),
    each of N devices holds state / N plus everything that is not sharded: activations and the
    runtime (the predicted peak minus the state, per device at the same per-device batch) and
    one layer's gathered weights and gradient: N = ceil(state / (memory - unsharded - gathered))."""
    state = params * STATE_BYTES_PER_PARAM
    unsharded = max(predicted_memory_bytes - state, 0.0)
    gathered = per_layer_params * GATHERED_BYTES_PER_PARAM
    out: dict[str, Any] = {
        "device_memory_bytes": device_memory_bytes, "device_memory_source": memory_source,
        "state_bytes_per_param": STATE_BYTES_PER_PARAM, "state_bytes_per_param_source": STATE_BYTES_SOURCE,
        "state_bytes": state, "unsharded_bytes": unsharded, "gathered_layer_bytes": gathered,
        "assumptions": ("unsharded = predicted peak - state (activations, workspace, runtime; the fit's "
                        "fixed term included); gathered = one layer's weights and gradient "
                        f"({GATHERED_BYTES_PER_PARAM} B/param), as FSDP gathers one unit at a time; "
                        "per-device batch as measured; no tensor or pipeline parallelism"),
    }
    if predicted_memory_bytes - state < 0:
        out["assumptions"] += ("; the predicted peak is below the state bytes, so unsharded was taken as 0 "
                               "(the peak measure does not see all of the state)")
    if predicted_memory_bytes <= device_memory_bytes:
        out["without_sharding"], out["without_sharding_reason"] = 1, None
    else:
        out["without_sharding"] = None
        out["without_sharding_reason"] = (
            f"predicted peak {predicted_memory_bytes / 2**30:.3g} GiB exceeds one device's "
            f"{device_memory_bytes / 2**30:.3g} GiB; data parallelism replicates the model, so no number "
            "of devices helps without sharding")
    room = device_memory_bytes - unsharded - gathered
    if room <= 0:
        out["full_sharding"] = None
        out["full_sharding_reason"] = (
            f"the unsharded part alone ({(unsharded + gathered) / 2**30:.3g} GiB: activations, runtime, one "
            f"gathered layer) exceeds one device's {device_memory_bytes / 2**30:.3g} GiB; even infinite "
            "sharding does not fit (reduce the per-device batch or use activation checkpointing)")
    else:
        out["full_sharding"] = max(1, math.ceil(state / room))
        out["full_sharding_reason"] = None
    return MinDevices(**out)


def _count_params(spec: RunSpec):
    from harness.build import build_model, count_params

    return count_params(build_model(spec.model, "meta"))


def _per_layer_flops(results: Sequence[SliceResult]) -> float:
    """Model FLOPs per step that one more layer adds (exactly linear in depth)."""
    first, last = results[0], results[-1]
    return (last.model_flops_per_step - first.model_flops_per_step) / (last.layers - first.layers)


def extrapolate(spec: RunSpec, results: Sequence[SliceResult], *, params=None) -> DepthExtrapolation:
    """Fit step time and peak memory over the slices and predict them at `spec`'s full depth,
    with the fits' residuals and the minimum number of devices (see :func:`min_devices`).
    `params` (a build.ParamCounts of the full model) is counted on the meta device if absent."""
    if len({r.layers for r in results}) < 2:
        raise ConfigError("slices.depths", "need at least 2 distinct slices to extrapolate")
    depth = full_depth(spec)
    results = sorted(results, key=lambda r: r.layers)
    xs = [r.layers for r in results]
    time_fit = fit_linear(xs, [r.step_s for r in results])
    memory_fit = fit_linear(xs, [r.peak_memory_bytes for r in results])
    predicted_s = time_fit.predict(depth)
    predicted_memory = memory_fit.predict(depth)
    params = params or _count_params(spec)
    largest = results[-1]
    per_layer_params = (params.total - largest.params) / (depth - largest.layers)
    memory_bytes, memory_source = _device_memory(largest.record)

    warnings = []
    if time_fit.dof == 0:
        warnings.append("2 slices: the fit passes through both, so its residual (0) checks nothing; "
                        "use 3 or more slices")
    factor = depth / largest.layers
    if factor > _FAR_EXTRAPOLATION:
        warnings.append(f"extrapolating {factor:.3g}x beyond the largest slice ({largest.layers} of {depth} "
                        "layers): an error in the per-layer terms is multiplied about that much")
    for name, fit in (("step time", time_fit), ("peak memory", memory_fit)):
        if fit.per_layer <= 0:
            warnings.append(f"the {name} fit has a per-layer term <= 0 ({fit.per_layer:.3g}): the slices are "
                            "too noisy or too small to see a layer; the prediction is not meaningful")
    per_layer_rate = _per_layer_flops(results) / time_fit.per_layer if time_fit.per_layer > 0 else None
    peak = largest.record.peak_flops_measured
    if per_layer_rate is not None and peak and per_layer_rate > peak:
        warnings.append(f"the per-layer step time ({time_fit.per_layer:.3g} s) implies {per_layer_rate / 1e9:.4g} "
                        f"GFLOP/s per layer, above the measured matmul peak ({peak / 1e9:.4g} GFLOP/s): the slices' "
                        "differences are within their noise; use deeper slices (more layers between the shallowest "
                        "and the deepest) and --slice-repeats")
    if predicted_s <= 0 or predicted_memory <= 0:
        raise HarnessError(f"the depth fit predicts a step of {predicted_s:.3g} s and {predicted_memory:.3g} B "
                           "at full depth: not a usable line (slices too noisy or too small)")

    statistics_used = {r.memory_statistic for r in results}
    largest_memory_statistic = largest.memory_statistic if len(statistics_used) == 1 else (
        "mixed: " + "; ".join(sorted(statistics_used)))
    return DepthExtrapolation(
        method="least squares of y = fixed + per_layer x layers over depth slices at full width, "
               "each slice measured in a fresh process",
        repeats=min(len(r.runs) for r in results),
        step_statistic=STEP_STATISTIC, memory_statistic=largest_memory_statistic,
        layers_meaning="encoder and decoder layers each (T5)" if spec.model.family == "t5" else "transformer layers",
        full_layers=depth, slices=[r.summary() for r in results],
        predicted_step_s=predicted_s, predicted_peak_memory_bytes=int(round(predicted_memory)),
        peak_memory_method=largest.memory_method, residual=time_fit.residual, residual_memory=memory_fit.residual,
        residual_definition=RESIDUAL_DEFINITION, dof=time_fit.dof, per_layer_flops_per_s=per_layer_rate,
        extrapolation_factor=factor,
        fit=DepthFit(step_s_fixed=time_fit.fixed, step_s_per_layer=time_fit.per_layer,
                     step_max_rel_residual=time_fit.max_rel_residual, memory_bytes_fixed=memory_fit.fixed,
                     memory_bytes_per_layer=memory_fit.per_layer,
                     memory_max_rel_residual=memory_fit.max_rel_residual),
        params=params.total, params_per_layer=per_layer_params,
        min_devices=min_devices(predicted_memory, params.total, per_layer_params, memory_bytes, memory_source),
        warnings=warnings,
    )


# ---------------------------------------------------------------------------------------------
# A record for the full-depth model


def _extrapolate_counts(dicts: Sequence[Mapping[str, int]], xs: Sequence[int], x: int) -> dict[str, int]:
    """Each key's value extrapolated along the line through (xs, values): FLOPs per op and
    op call counts grow exactly linearly with depth. A key absent from a slice counts 0 there."""
    keys = sorted({k for d in dicts for k in d})
    out = {}
    for key in keys:
        ys = [d.get(key, 0) for d in dicts]
        slope = (ys[-1] - ys[0]) / (xs[-1] - xs[0])
        out[key] = int(round(ys[-1] + slope * (x - xs[-1])))
    return out


def depth_sliced_record(spec: RunSpec, results: Sequence[SliceResult],
                        extrapolation: DepthExtrapolation | None = None) -> RunRecord:
    """A run record (with `depth_extrapolation`) that stands for the full-depth model: the
    largest slice's device, peaks, power and environment with the full model's spec, parameters
    and counted model FLOPs, and the predicted step time and peak memory in place of measured ones,
    derived by `RunRecord.from_measurement` like any run.

    * model FLOPs: counted at full depth on a fake replica (exact);
    * hardware FLOPs (per op too): the slices' counts extrapolated along their line (exact up to
      rounding: every layer executes the same ops);
    * throughput, achieved FLOP/s, MFU, HFU: from the predicted step time;
    * iqr_step_s, cv_step: None (one predicted step has no spread; see the fit's residual);
    * energy: the largest slice's average power x the predicted step time (the same device at
      the same load is assumed to draw the same power)."""
    from harness.flops.analytic import analytic_flops
    from harness.flops.count import count_model_flops, module_groups
    from harness.measure.run import analytic_summary, new_run_id

    results = sorted(results, key=lambda r: r.layers)
    count, params = count_model_flops(spec)
    forward, _ = count_model_flops(with_changes(spec, {"train.grad_accum": 1}), backward=False)
    extrapolation = extrapolation or extrapolate(spec, results, params=params)
    depth, predicted_s = extrapolation.full_layers, extrapolation.predicted_step_s
    largest = results[-1]
    base = largest.record
    xs = [r.layers for r in results]
    slice_records = [r.record for r in results]

    hardware_by_op = _extrapolate_counts([r.flops.hardware.by_op for r in slice_records], xs, depth)
    per_rank_hardware = _extrapolate_counts([{"total": r.flops.hardware.per_rank_per_step} for r in slice_records],
                                            xs, depth)["total"]
    uncounted = _extrapolate_counts([r.flops.uncounted_ops for r in slice_records], xs, depth)
    slice_ids = ", ".join(run.run_id for r in results for run in r.runs)
    repeats = min(len(r.runs) for r in results)
    now = datetime.now(timezone.utc)

    energy = base.energy
    if energy is not None:
        steps = len(base.step_times_s)
        scale = predicted_s * steps / base.total_measured_s  # J/step = average W x step time
        joules_per_step = energy.joules_per_step * scale
        data = energy.model_dump()
        data.update(joules_per_step=joules_per_step, joules_per_token=joules_per_step / base.tokens_per_step,
                    note=(f"average power of slice run {largest.run_id} ({largest.layers} layers) x the predicted "
                          "step time; a deeper model on the same device is assumed to draw the same power"))
        for component in data["components"]:
            if component["joules_per_step"] is not None:
                component["joules_per_step"] *= scale
        energy = Energy.model_validate(data)

    each = f", {repeats} runs each" if repeats > 1 else ""
    warnings = [f"depth-sliced: step time and peak memory predicted from slices {xs} of {depth} layers{each} "
                f"(runs {slice_ids}); fit residual {extrapolation.residual:.2%} (time), "
                f"{extrapolation.residual_memory:.2%} (memory)"]
    warnings += extrapolation.warnings
    warnings += [f"slice {largest.layers} layers: {w}" for w in base.warnings]
    hardware_summary = base.flops.hardware or FlopSummary(per_rank_per_step=0)
    measurement = Measurement(
        spec=spec, run_id=new_run_id(spec, now), created_at=now, times=StepTimes((), (predicted_s,)),
        model_flops=FlopSummary(per_rank_per_step=count.total, by_op=dict(count.by_op),
                                forward_by_module=module_groups(forward.by_module),
                                counted_on=f"fake (meta) replica at full depth ({depth} layers), no checkpointing"),
        hardware_flops=FlopSummary(per_rank_per_step=per_rank_hardware, by_op=hardware_by_op,
                                   counted_on=f"extrapolated linearly in depth from the slices' counts "
                                              f"({hardware_summary.counted_on}; slices {xs})",
                                   recomputation_counted=hardware_summary.recomputation_counted),
        analytic=analytic_summary(analytic_flops(spec, params), params), uncounted_ops=uncounted,
        params=params.total, params_non_embedding=params.non_embedding, params_active=params.active,
        params_active_non_embedding=params.n_active,
        datasheet=base.peaks.datasheet, energy=energy, env=base.env,
        measured_peak=base.peaks.measured or MeasuredPeakInfo(flops_per_s=base.peak_flops_measured),
        device=base.device, world=World(world_size=base.world_size, nnodes=base.nnodes, strategy=base.strategy),
        peak_memory_bytes=extrapolation.predicted_peak_memory_bytes,
        peak_memory_method=f"predicted from depth slices ({extrapolation.peak_memory_method})",
        clock=base.timing.clock, optimizer=base.optimizer, how_timed="predicted")
    full = DepthExtrapolation.model_validate({
        **extrapolation.model_dump(), "hardware_flops_per_step": per_rank_hardware * base.world_size,
        "hardware_flops_method": "slices' counts extrapolated linearly in depth"})
    return RunRecord.from_measurement(measurement, depth_extrapolation=full, extra_warnings=warnings)
