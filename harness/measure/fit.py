"""Fit: will a run fit on its device, and how long would its steps take? Answered before anything
real is allocated, from a fake (meta) replica of the model.

Memory of one training process (every figure in bytes):

* weights, gradients, AdamW moments: the replica's parameter count × 4 + 4 + 8. Mixed precision
  here is autocast over fp32 weights, so the weights are the fp32 master copy in every dtype
  (ZeRO, Rajbhandari et al. 2020 §3.1, counts the same 16 B per parameter for fp32 Adam states).
  DDP adds its gradient buckets (4 B per parameter); FSDP shards the 16 B over the ranks and
  gathers one layer's weights and gradients at a time (8 B per parameter of a layer).
* activations: every tensor autograd saves during one micro-batch's forward, counted exactly on
  the fake replica with ``torch.autograd.graph.saved_tensors_hooks`` (under the run's autocast,
  so bf16 copies of weights are in it), parameters themselves left out. With activation
  checkpointing: the part outside the layers, each layer's input kept (fp32), and one layer's
  activations alive at a time while it is recomputed.

Every term is linear in depth (each layer has the same parameters and saves the same tensors), so
one fake pass at full depth and one at a single layer give ``fixed + per_layer × layers``, from
which the deepest slice that fits is read off. This is an estimate: allocator caching,
fragmentation, the backward's transient buffers and the runtime itself come on top. What the
device has is measured: CUDA free memory, or on CPU the available memory bounded by the cgroup's
limit and by ``ulimit -v``.
"""

from __future__ import annotations

import math
import os
import resource
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.config import RunSpec, with_changes
from harness.errors import ConfigError

WEIGHT_BYTES = 4     # fp32 master weights (autocast keeps them fp32)
GRADIENT_BYTES = 4
ADAMW_BYTES = 8      # exp_avg + exp_avg_sq, fp32
DDP_BUCKET_BYTES = 4  # DDP's gradient buckets, a copy of the gradients (gradient_as_bucket_view off)
FSDP_GATHERED_BYTES = 8  # one layer's full weights and gradients while it runs
STATE_SOURCE = ("AdamW with fp32 weights: 4 B weight + 4 B gradient + 8 B moments per parameter "
                "(Rajbhandari et al. 2020, ZeRO, §3.1)")
ACTIVATION_SOURCE = "tensors saved for backward in one micro-batch's forward, counted on a fake (meta) replica"
# The fraction of a device's free memory a run may plan to fill: the estimate leaves out the
# allocator's caching and fragmentation and the backward's transient buffers.
USABLE_FRACTION = 0.9
GIB = 2**30


class DoesNotFit(ConfigError):
    """A run whose estimated memory is more than its device has (a sweep counts it as out of memory)."""


@dataclass(frozen=True)
class MemoryEstimate:
    """The memory one process of a run needs, by part, and how it grows with depth:
    ``total_bytes == fixed_bytes + per_layer_bytes * layers`` (up to rounding)."""

    params: int
    layers: int
    weights_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    distributed_bytes: int
    activations_bytes: int
    fixed_bytes: int
    per_layer_bytes: int
    processes: int = 1  # processes of this run that share the memory (ranks on one CPU node)
    method: str = f"{STATE_SOURCE}; activations: {ACTIVATION_SOURCE}"

    @property
    def total_bytes(self) -> int:
        """One process's need."""
        return (self.weights_bytes + self.gradients_bytes + self.optimizer_bytes + self.distributed_bytes
                + self.activations_bytes)

    @property
    def needed_bytes(self) -> int:
        """What the device must hold: every process that shares it."""
        return self.total_bytes * self.processes

    def at_depth(self, layers: int) -> int:
        """The need (all processes) of the same run with `layers` layers."""
        return (self.fixed_bytes + self.per_layer_bytes * layers) * self.processes

    def layers_that_fit(self, limit_bytes: float) -> int:
        """The most layers whose need stays within `limit_bytes` (0 when not even one does)."""
        if self.per_layer_bytes <= 0:
            return self.layers if self.at_depth(self.layers) <= limit_bytes else 0
        return max(0, math.floor((limit_bytes / self.processes - self.fixed_bytes) / self.per_layer_bytes))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_bytes": self.total_bytes, "needed_bytes": self.needed_bytes}


@dataclass(frozen=True)
class MemoryLimit:
    """What a device can give a run: `bytes` and where the figure comes from."""

    bytes: int
    source: str


def _saved_bytes(spec: RunSpec) -> tuple[int, int]:
    """(parameters, bytes autograd saves in one micro-batch's forward) of `spec` on a fake replica."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from harness.build import build_model, make_batch

    with FakeTensorMode(allow_non_fake_inputs=True):
        model = build_model(spec.model, "cpu", seed=spec.train.seed, fake=True)  # experts as batched matmuls
        params = {id(p) for p in model.parameters()}
        total_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
        saved: dict[int, Any] = {}  # id -> tensor, kept alive so that ids are not reused

        def pack(tensor):
            base = tensor if tensor._base is None else tensor._base
            if id(base) not in params and id(tensor) not in saved:
                saved[id(tensor)] = tensor
            return tensor

        dtype = spec.train.dtype
        autocast = (torch.autocast("cpu", dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[dtype])
                    if dtype != "fp32" else torch.autocast("cpu", enabled=False))
        batch = make_batch(spec, "cpu")
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), autocast:
            model(**batch)
        activations = sum(t.numel() * t.element_size() for t in saved.values())
    return total_params, activations


def _one_layer(spec: RunSpec) -> RunSpec:
    changes: dict[str, Any] = {"model.layers": 1}
    if spec.model.family == "t5":
        changes["model.decoder_layers"] = 1
    return with_changes(spec, changes)


def estimate_memory(spec: RunSpec, *, world_size: int = 1, processes: int = 1) -> MemoryEstimate:
    """The memory one process of `spec` needs (see the module docstring), for a job of
    `world_size` ranks of which `processes` share this device's memory. For T5 a layer is one
    encoder and one decoder layer (their counts may differ: depth then runs over the encoder)."""
    layers = spec.model.layers
    params, activations = _saved_bytes(spec)
    if layers > 1:
        params_1, activations_1 = _saved_bytes(_one_layer(spec))
        layer_params = (params - params_1) / (layers - 1)
        layer_activations = (activations - activations_1) / (layers - 1)
    else:
        layer_params, layer_activations = params, activations
    if spec.train.checkpointing:  # layer inputs kept; one layer's activations live at a time
        layer_input = spec.train.batch_size * spec.train.seq_len * spec.model.hidden * 4
        fixed_activations = activations - layer_activations * layers
        activations = int(fixed_activations + layer_activations + layer_input * layers)
        layer_activations = layer_input
    state = WEIGHT_BYTES + GRADIENT_BYTES + ADAMW_BYTES
    sharded = spec.distributed.strategy == "fsdp" and world_size > 1
    share = world_size if sharded else 1
    if world_size > 1:
        distributed = (FSDP_GATHERED_BYTES * layer_params) if sharded else DDP_BUCKET_BYTES * params
        layer_distributed = 0 if sharded else DDP_BUCKET_BYTES * layer_params
    else:
        distributed = layer_distributed = 0
    per_layer = layer_params * state / share + layer_activations + layer_distributed
    total = params * state / share + activations + distributed
    return MemoryEstimate(
        params=params, layers=layers,
        weights_bytes=int(params * WEIGHT_BYTES / share), gradients_bytes=int(params * GRADIENT_BYTES / share),
        optimizer_bytes=int(params * ADAMW_BYTES / share), distributed_bytes=int(distributed),
        activations_bytes=int(activations), fixed_bytes=int(total - per_layer * layers),
        per_layer_bytes=int(math.ceil(per_layer)), processes=processes)


# ---------------------------------------------------------------------------------------------
# What the device has


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def _cgroup_headroom() -> tuple[int, str] | None:
    """Memory left under this process's cgroup limit (v2 memory.max, v1 memory.limit_in_bytes)."""
    candidates = []
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            hierarchy, _, rest = line.partition(":")
            controllers, _, path = rest.partition(":")
            if controllers == "":  # v2
                candidates.append((Path("/sys/fs/cgroup") / path.lstrip("/"), "memory.max", "memory.current"))
            elif "memory" in controllers.split(","):
                candidates.append((Path("/sys/fs/cgroup/memory") / path.lstrip("/"), "memory.limit_in_bytes",
                                   "memory.usage_in_bytes"))
    except OSError:
        pass
    candidates += [(Path("/sys/fs/cgroup"), "memory.max", "memory.current"),
                   (Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes", "memory.usage_in_bytes")]
    best = None
    for folder, limit_name, usage_name in candidates:
        limit = _read_int(folder / limit_name)
        if limit is None or limit >= 2**60:  # v1 reports "no limit" as a huge number
            continue
        usage = _read_int(folder / usage_name) or 0
        headroom = max(0, limit - usage)
        if best is None or headroom < best[0]:
            best = (headroom, f"cgroup limit {folder / limit_name} ({limit / GIB:.1f} GiB, {usage / GIB:.1f} GiB used)")
    return best


def _address_space_headroom() -> tuple[int, str] | None:
    """Address space left under `ulimit -v` (RLIMIT_AS), if one is set."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    import psutil

    used = psutil.Process().memory_info().vms
    return max(0, soft - used), f"ulimit -v (RLIMIT_AS {soft / GIB:.1f} GiB, {used / GIB:.1f} GiB in use)"


def device_limit(device_type: str, index: int | None = None) -> MemoryLimit:
    """What the device can give a run now: CUDA free memory (torch.cuda.mem_get_info), or on CPU
    the available memory (psutil), bounded by a cgroup limit and `ulimit -v` where they are lower."""
    if device_type == "cuda":
        import torch

        free, total = torch.cuda.mem_get_info(index)
        return MemoryLimit(int(free), f"free CUDA memory (torch.cuda.mem_get_info; {total / GIB:.1f} GiB in all)")
    import psutil

    found = [(psutil.virtual_memory().available, "available memory (psutil)")]
    for extra in (_cgroup_headroom(), _address_space_headroom()):
        if extra is not None:
            found.append(extra)
    headroom, source = min(found)
    return MemoryLimit(int(headroom), source)


# ---------------------------------------------------------------------------------------------
# The checks a run makes before it builds its model


def _gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"


def suggest_slices(layers: int, deepest: int) -> tuple[int, ...]:
    """Up to three depth slices (1, 2, 4, ...) of at most `deepest` layers and fewer than `layers`."""
    top = min(deepest, layers - 1)
    slices = []
    depth = 1
    while depth <= top:
        slices.append(depth)
        depth *= 2
    return tuple(slices[-3:]) if len(slices) >= 2 else ()


def fit_message(spec: RunSpec, estimate: MemoryEstimate, limit: MemoryLimit, device_type: str) -> str | None:
    """None when the run fits in `limit` (with USABLE_FRACTION of it), else the one-line reason and
    what to do instead."""
    usable = limit.bytes * USABLE_FRACTION
    if estimate.needed_bytes <= usable:
        return None
    shared = f" ({estimate.processes} processes)" if estimate.processes > 1 else ""
    need = (f"{spec.model.label} needs about {_gib(estimate.needed_bytes)}{shared} on {device_type} "
            f"({_gib(estimate.weights_bytes + estimate.gradients_bytes + estimate.optimizer_bytes)} weights, "
            f"gradients and AdamW state, {_gib(estimate.activations_bytes)} activations); "
            f"this device has {_gib(limit.bytes)} ({limit.source})")
    slices = suggest_slices(spec.model.layers, estimate.layers_that_fit(usable))
    if slices:
        return f"{need}: try --depth-slices {','.join(map(str, slices))} or a device with more memory"
    return f"{need}: not even one layer fits; use a device with more memory or a smaller batch"


def check_fits(spec: RunSpec, device_type: str, *, index: int | None = None, world_size: int = 1,
               processes: int = 1) -> MemoryEstimate:
    """The estimate, when the run fits on this device; ConfigError("memory") saying what it needs,
    what the device has and which depth slices would fit, when it does not (a DoesNotFit)."""
    estimate = estimate_memory(spec, world_size=world_size, processes=processes)
    message = fit_message(spec, estimate, device_limit(device_type, index), device_type)
    if message is not None:
        raise DoesNotFit("memory", message)
    return estimate


# An optimistic peak for the duration check, so that the time it gives is a lower bound: on CPU
# 200 GFLOP/s per logical core (2 AVX-512 FMA units x 16 fp32 lanes x 2 FLOP x ~3 GHz, assumed);
# on CUDA the datasheet's dense peak, or 2 PFLOP/s (above every listed GPU) where none is known.
CPU_FLOPS_PER_CORE = 200e9
CUDA_FALLBACK_FLOPS = 2e15
DAY_S = 86_400.0


def optimistic_peak(device_type: str, device_name: str, dtype: str) -> tuple[float, str]:
    """(FLOP/s, where it comes from): a peak no real step beats (see CPU_FLOPS_PER_CORE)."""
    if device_type == "cuda":
        from harness.hardware import datasheet_peak

        sheet = datasheet_peak("cuda", device_name, dtype, tf32_enabled=True)
        if sheet.flops_per_s:
            return sheet.flops_per_s, f"{sheet.gpu} datasheet {dtype} peak"
        return CUDA_FALLBACK_FLOPS, "2 PFLOP/s (assumed, above every listed GPU)"
    cores = os.cpu_count() or 1
    return CPU_FLOPS_PER_CORE * cores, f"{CPU_FLOPS_PER_CORE / 1e9:.0f} GFLOP/s x {cores} cores (assumed, optimistic)"


def check_duration(spec: RunSpec, flops_per_step: float, peak_flops_per_s: float, peak_source: str, *,
                   confirmed: bool = False) -> float:
    """The least time the timed steps can take (seconds: steps x counted FLOPs / an optimistic peak);
    ConfigError("measure.steps") when it is over `measure.max_minutes` (default a day) and the
    run was not confirmed (`--yes`)."""
    steps = spec.measure.warmup_steps + spec.measure.steps
    least_s = steps * flops_per_step / peak_flops_per_s
    allowed_s = spec.measure.max_minutes * 60 if spec.measure.max_minutes is not None else DAY_S
    if least_s > allowed_s and not confirmed:
        allowance = (f"measure.max_minutes {spec.measure.max_minutes:g}" if spec.measure.max_minutes is not None
                     else "a day")
        raise ConfigError("measure.steps", f"{steps:,} steps of {flops_per_step:.3g} FLOPs would take at least "
                          f"{least_s / 3600:,.1f} hours ({least_s / DAY_S:,.1f} days) at {peak_source}, over {allowance}; pass --yes, raise "
                          "measure.max_minutes, or measure fewer steps")
    return least_s
