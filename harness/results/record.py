"""Record: the stored result of one run, a frozen value with a flat JSON form.

Every figure's origin is in `provenance`: measured (timed here), counted (torch's FLOP counter),
datasheet (vendor table), analytic (closed-form formula), or null when unknown.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class RunRecord:
    """One measured run. Times in seconds, FLOPs per optimizer step, memory in bytes."""

    run_id: str
    created_at: str
    config_hash: str
    model: dict[str, Any]
    params: int
    params_non_embedding: int
    batch_size: int
    seq_len: int
    decoder_seq_len: int | None
    grad_accum: int
    dtype: str
    device: dict[str, Any]
    compile: bool
    checkpointing: bool
    optimizer: str
    warmup_times_s: list[float]
    step_times_s: list[float]
    median_step_s: float
    iqr_step_s: float | None   # None for a depth-sliced record (one predicted step, no spread)
    cv_step: float | None
    total_measured_s: float
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
    flops: dict[str, Any]
    peaks: dict[str, Any]
    timing: dict[str, Any]
    warnings: list[str]
    env: dict[str, Any]
    spec: dict[str, Any]
    provenance: dict[str, str] = field(default_factory=dict)
    energy: dict[str, Any] | None = None   # harness.measure.energy: per step/token, per component with method
    world_size: int = 1                    # ranks; FLOPs, tokens and throughput above are for all of them
    nnodes: int = 1
    strategy: str = "single"               # single | ddp | fsdp
    per_device_tokens_per_s: float | None = None
    per_rank: list[dict[str, Any]] | None = None  # each rank's own step times and peak memory
    sweep: dict[str, Any] | None = None    # {name, point, overrides} when the run is a sweep point
    scaling: dict[str, Any] | None = None  # multi-device runs: weak-scaling efficiency vs a stored 1-device run
    depth_extrapolation: dict[str, Any] | None = None  # harness.measure.slices: full depth predicted from slices
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PROVENANCE = {
    "step_times_s": "measured", "tokens_per_s": "measured", "samples_per_s": "measured",
    "peak_memory_bytes": "measured", "peak_flops_measured": "measured",
    "model_flops_per_step": "counted", "hardware_flops_per_step": "counted",
    "achieved_flops_per_s": "counted/measured", "mfu_measured": "counted/measured",
    "flops.analytic": "analytic",
    "energy": "per component: counter | integrated | rapl (measured) or estimated",
}


def utilization(flops_per_s: float, peak: float | None) -> float | None:
    """Achieved / peak, or None when the peak is unknown."""
    return None if not peak else flops_per_s / peak
