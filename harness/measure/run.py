"""Run: spec → model and batch → FLOP counts, timed steps, peaks → a Measurement → its RunRecord
(`RunRecord.from_measurement` derives every rate and utilization).

Order matters for honesty: FLOPs are counted on separate, untimed steps; peak memory is reset
just before the timed window and read just after it; the power sampler covers the measured steps
only; the matmul peak is measured after the steps and their peak memory.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import statistics
import sys
import uuid
import warnings
from datetime import datetime, timezone
from typing import Callable

import torch

from harness.build import build_model, make_batch
from harness.config import RunSpec, with_changes
from harness.flops.analytic import AnalyticFlops as AnalyticCounts, analytic_flops
from harness.flops.count import count_flops, count_model_flops, expert_flops, module_groups, routed_tokens
from harness.flops.reconcile import MOE_ROUTING_CONVENTION
from harness.measure import distributed, fit
from harness.measure.distributed import DistEnv, RankFailure, dist_env
from harness.measure.energy import PowerSampler, discover_sources, job_gpus
from harness.measure.env import collect_env
from harness.hardware import comparison_modes, datasheet_peak
from harness.measure.peak import measure_peak
from harness.results.record import (AnalyticFlops, DatasheetPeakInfo, DeviceInfo, Environment, ExpertLoad,
                                    FlopSummary, Fp8Info, Measurement, MeasuredPeakInfo, MoeSummary, RankResult,
                                    RunRecord, World)
from harness.measure.timing import Clock, StepTimes, clock_for, time_steps
from harness.measure.train import autocast_for, check_dtype, convert_fp8, prepare, resolve_device

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def new_run_id(spec: RunSpec, now: datetime) -> str:
    name = spec.model.slug  # the label as a file name: bert-base+layers2
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{name}-{uuid.uuid4().hex[:8]}"


def analytic_summary(analytic: AnalyticCounts, params) -> AnalyticFlops:
    """The closed-form figures as the record keeps them (per step, one rank)."""
    return AnalyticFlops(six_n_per_step=analytic.six_n, palm_per_step=analytic.palm,
                         kaplan_forward_per_step=analytic.kaplan_forward, megatron_per_step=analytic.megatron,
                         megatron_recompute_per_step=analytic.megatron_recompute,
                         non_embedding_params=params.non_embedding, active_non_embedding_params=params.n_active)


def moe_summary(layout, model_count, hardware_count, routed: dict[str, list[int]], device_type: str):
    """A mixture of experts' part of the record (None for a dense model): expert FLOPs counted on
    the fake replica (balanced: shapes only) and on the real step (rows as routed), and the
    load measured on that step (`routed`, from flops.count.routed_tokens)."""
    if layout is None:
        return None
    load = None
    if routed:
        load = ExpertLoad.from_layers([routed[name] for name in layout.modules if name in routed],
                                      f"{device_type} model, untimed step: real routing of the synthetic batch "
                                      "(random weights)")
    return MoeSummary(experts=layout.experts, experts_per_token=layout.experts_per_token, moe_layers=layout.layers,
                      expert_params=layout.expert_params,
                      expert_params_active=layout.expert_params - layout.inactive_params,
                      expert_flops_balanced_per_step=expert_flops(model_count, layout),
                      expert_flops_routed_per_step=expert_flops(hardware_count, layout),
                      expert_load=load, routing=MOE_ROUTING_CONVENTION)


def _peak_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "torch.cuda.max_memory_allocated"
    # ru_maxrss is in KiB on Linux; it is the process peak since start, model build included.
    method = "process peak RSS (ru_maxrss)"
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):  # glibc: see slices.FIXED_MMAP_ENV
        method += f", glibc mmap threshold fixed at {os.environ['MALLOC_MMAP_THRESHOLD_']} B (no heap fragmentation)"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, method


def measure(spec: RunSpec, *, clock: Clock | None = None, log: Log = _stderr,
            on_step: Callable[[str, int, float], None] | None = None, confirmed: bool = False) -> RunRecord | None:
    """Build, count, time and describe one run of `spec` on this machine.

    Before the model is built, the run must fit in the device's memory and its steps in a day
    (or `measure.max_minutes`; `confirmed` waives the time): see :mod:`harness.measure.fit`.
    Under torchrun or srun (WORLD_SIZE > 1) every rank runs this; rank 0 returns the record of
    the whole job and the other ranks return None."""
    denv = dist_env()
    if denv is None:
        return _measure(spec, clock=clock, log=log, on_step=on_step, denv=None, confirmed=confirmed)
    device = distributed.init(denv, resolve_device(spec.device).type, spec.distributed.timeout_s)
    try:
        return _measure(spec, clock=clock, log=log if denv.rank == 0 else (lambda message: None),
                        on_step=on_step if denv.rank == 0 else None, denv=denv, device=device,
                        confirmed=confirmed)
    except RuntimeError as err:  # a collective timed out or a peer vanished
        raise RankFailure(f"rank {denv.rank}: {str(err).splitlines()[0][:200]}; no record was written") from None
    finally:
        distributed.shutdown()


def _measured_peak(device: torch.device, dtype: str, denv: DistEnv | None):
    """The matmul peak of this device; under several ranks the mean of every rank's, measured at
    once, as the ranks share the machine."""
    peak = measure_peak(device.type, dtype)
    if denv is None:
        return peak
    return dataclasses.replace(peak, flops_per_s=statistics.mean(distributed.gather(peak.flops_per_s)))


def _sheet_info(sheet) -> DatasheetPeakInfo:
    return DatasheetPeakInfo(flops_per_s=sheet.flops_per_s, gpu=sheet.gpu, mode=sheet.mode, source=sheet.source)


def _measured_info(peak) -> MeasuredPeakInfo:
    return MeasuredPeakInfo(flops_per_s=peak.flops_per_s, matmul_size=peak.size, dtype=peak.dtype, reps=peak.reps,
                            trials=peak.trials, clock=peak.clock)


def _gather_ranks(times: StepTimes, peak_memory_bytes: int) -> list[RankResult]:
    """Every rank's own step times and peak memory (a collective: every rank calls it)."""
    gathered = distributed.gather({"warmup_s": list(times.warmup_s), "steps_s": list(times.steps_s),
                                   "peak_memory_bytes": peak_memory_bytes})
    return [RankResult(rank=i, warmup_times_s=r["warmup_s"], step_times_s=r["steps_s"],
                       peak_memory_bytes=r["peak_memory_bytes"]) for i, r in enumerate(gathered)]


def check_device_fits(spec: RunSpec, device: torch.device, denv: DistEnv | None) -> fit.MemoryEstimate:
    """The run's memory estimate, or ConfigError("memory") when it cannot fit on `device` (on CPU
    the ranks of a node share its memory)."""
    world = denv.world_size if denv else 1
    local = denv.world_size // denv.nnodes if denv else 1
    index = None
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
    return fit.check_fits(spec, device.type, index=index, world_size=world,
                          processes=local if device.type == "cpu" else 1)


def _measure(spec: RunSpec, *, clock: Clock | None, log: Log, on_step, denv: DistEnv | None,
             device: torch.device | None = None, confirmed: bool = False) -> RunRecord | None:
    device = device or resolve_device(spec.device)
    world = denv.world_size if denv else 1
    check_dtype(device, spec.train.dtype)
    created = datetime.now(timezone.utc)
    warnings.filterwarnings("ignore", module=r"torch\.utils\.checkpoint")

    check_device_fits(spec, device, denv)  # silent: a run that cannot fit answers in one line
    log(f"counting model FLOPs of {spec.model.label} on a fake (meta) replica")
    model_count, params = count_model_flops(spec)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    fit.check_duration(spec, model_count.total, *fit.optimistic_peak(device.type, name, spec.train.dtype),
                       confirmed=confirmed)
    forward_count, _ = count_model_flops(with_changes(spec, {"train.grad_accum": 1}), backward=False)
    analytic = analytic_flops(spec, params)

    log(f"building the model on {device.type} and counting hardware FLOPs on an untimed step")
    model = build_model(spec.model, device, seed=spec.train.seed, documents=spec.train.documents)
    batch = make_batch(spec, device)
    if spec.train.checkpointing:  # before counting, so that recomputation is in the hardware count
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    with routed_tokens(model) as routed:  # a mixture of experts' real routing on this step
        hardware_count = count_flops(model, batch, kind="hardware",
                                     autocast=autocast_for(device, spec.train.dtype)).scaled(spec.train.grad_accum)
    moe = moe_summary(params.experts, model_count, hardware_count, routed, device.type)
    fp8 = None
    if spec.train.dtype == "fp8":  # after the hardware count (bf16), before DDP/FSDP and compile
        conversion = convert_fp8(model)
        fp8 = Fp8Info(library=conversion.library, recipe=conversion.recipe,
                      converted_linear=len(conversion.converted), kept_linear=conversion.kept)
        log(f"fp8: {len(conversion.converted)} linear layers train in float8 ({conversion.library}), "
            f"{len(conversion.kept)} kept in bf16")
    if denv is not None:
        log(f"wrapping the model for {world} ranks with {spec.distributed.strategy}")
        model = distributed.wrap(model, spec.distributed.strategy, device)
    step, optimizer_impl = prepare(spec, model, batch, device)

    log(f"timing {spec.measure.warmup_steps} warm-up + {spec.measure.steps} measured steps")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    clock = clock or clock_for(device.type)
    sampler = None
    share = None
    if spec.measure.energy and (denv is None or denv.local_rank == 0):  # one sampler per node
        local = denv.world_size // denv.nnodes if denv else 1  # the job's processes on this node
        gpus: tuple = ()
        if device.type == "cuda":  # the node's ranks use cuda:0..local-1 (distributed.init); one process its own
            ordinals = range(local) if denv else [device.index if device.index is not None
                                                  else torch.cuda.current_device()]
            gpus = job_gpus(ordinals, os.environ.get("CUDA_VISIBLE_DEVICES"))
        sources, missing, share = discover_sources(device.type, gpus=gpus, processes=local,
                                                   cpu_tdp_w=spec.measure.cpu_tdp_w)
        sampler = PowerSampler(sources, missing, interval_s=spec.measure.power_interval_s)
    times = time_steps(step, warmup=spec.measure.warmup_steps, steps=spec.measure.steps, clock=clock,
                       on_step=on_step, window=sampler)
    peak_memory, memory_method = _peak_memory(device)
    # After the steps and their peak memory: on CPU the benchmark sizes its matrices by timing
    # (so by load), and its buffers would otherwise enter the process's peak RSS and reshape
    # the allocator's heap for the steps.
    # The run's own precision first; an fp8 run is also stated against bf16 (hardware.comparison_modes).
    modes = comparison_modes(spec.train.dtype)
    log(f"measuring peak matmul FLOP/s in {', '.join(modes)}")
    measured_peak, *measured_also = [_measured_peak(device, mode, denv) for mode in modes]
    env = Environment.model_validate(collect_env(device.type))
    sheet, *sheets_also = [datasheet_peak(device.type, env.device.name, mode, tf32_enabled=env.tf32_matmul)
                           for mode in modes]
    per_rank = None
    if denv is not None:
        per_rank = _gather_ranks(times, peak_memory)
        if denv.rank != 0:
            return None
        times = StepTimes(tuple(distributed.slowest_steps([r.warmup_times_s for r in per_rank])),
                          tuple(distributed.slowest_steps([r.step_times_s for r in per_rank])))
        peak_memory = max(r.peak_memory_bytes for r in per_rank)
    energy = None
    if sampler is not None:
        other_nodes = [f"nodes 2..{denv.nnodes}: energy sampled on node 0 only"] if denv and denv.nnodes > 1 else []
        energy = sampler.reading.for_record(measured_s=times.total_s, steps=spec.measure.steps,
                                            tokens_per_step=spec.tokens_per_step * world, missing=other_nodes,
                                            share=share)
    measurement = Measurement(
        spec=spec, run_id=new_run_id(spec, created), created_at=created, times=times,
        model_flops=FlopSummary(per_rank_per_step=model_count.total, by_op=dict(model_count.by_op),
                                forward_by_module=module_groups(forward_count.by_module),
                                counted_on="fake (meta) replica, no checkpointing", recomputation_counted=False),
        hardware_flops=FlopSummary(per_rank_per_step=hardware_count.total, by_op=dict(hardware_count.by_op),
                                   counted_on=f"{device.type} model, untimed step", recomputation_counted=True),
        analytic=analytic_summary(analytic, params), uncounted_ops=dict(hardware_count.uncounted_ops),
        params=params.total, params_non_embedding=params.non_embedding, params_active=params.active,
        params_active_non_embedding=params.n_active, moe=moe,
        datasheet=_sheet_info(sheet), measured_peak=_measured_info(measured_peak),
        datasheet_also=[_sheet_info(x) for x in sheets_also], measured_also=[_measured_info(x) for x in measured_also],
        fp8=fp8,
        energy=energy, env=env, device=DeviceInfo(type=env.device.type, name=env.device.name, count=env.device.count),
        world=World(world_size=world, nnodes=denv.nnodes if denv else 1,
                    strategy=spec.distributed.strategy if denv else "single"),
        per_rank=per_rank, peak_memory_bytes=peak_memory, peak_memory_method=memory_method,
        clock=getattr(clock, "name", type(clock).__name__), optimizer=f"AdamW ({optimizer_impl})")
    return RunRecord.from_measurement(measurement)
