"""Run: spec → model and batch → FLOP counts, peaks and timed steps → RunRecord.

Order matters for honesty: FLOPs are counted on separate, untimed steps; peak memory is reset
just before the timed window; the measured peak is taken before the model's steps.
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

from harness.measure.build import build_model, make_batch
from harness.config import RunSpec
from harness.flops.analytic import analytic_flops
from harness.flops.count import count_flops, count_model_flops
from harness.measure import distributed
from harness.measure.distributed import DistEnv, RankFailure, dist_env
from harness.measure.energy import PowerSampler, discover_sources
from harness.measure.env import collect_env
from harness.hardware import datasheet_peak
from harness.measure.peak import measure_peak
from harness.results.record import PROVENANCE, RunRecord, utilization
from harness.measure.timing import Clock, StepTimes, clock_for, time_steps
from harness.measure.train import autocast_for, check_dtype, prepare, resolve_device

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def new_run_id(spec: RunSpec, now: datetime) -> str:
    name = spec.model.slug  # the label as a file name: bert-base+layers2
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{name}-{uuid.uuid4().hex[:8]}"


def _peak_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "torch.cuda.max_memory_allocated"
    # ru_maxrss is in KiB on Linux; it is the process peak since start, model build included.
    method = "process peak RSS (ru_maxrss)"
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):  # glibc: see slices.FIXED_MMAP_ENV
        method += f", glibc mmap threshold fixed at {os.environ['MALLOC_MMAP_THRESHOLD_']} B (no heap fragmentation)"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, method


def measure(spec: RunSpec, *, clock: Clock | None = None, log: Log = _stderr,
            on_step: Callable[[str, int, float], None] | None = None) -> RunRecord | None:
    """Build, count, time and describe one run of `spec` on this machine.

    Under torchrun or srun (WORLD_SIZE > 1) every rank runs this; rank 0 returns the record of
    the whole job and the other ranks return None."""
    denv = dist_env()
    if denv is None:
        return _measure(spec, clock=clock, log=log, on_step=on_step, denv=None)
    device = distributed.init(denv, resolve_device(spec.device).type, spec.distributed.timeout_s)
    try:
        return _measure(spec, clock=clock, log=log if denv.rank == 0 else (lambda message: None),
                        on_step=on_step if denv.rank == 0 else None, denv=denv, device=device)
    except RuntimeError as err:  # a collective timed out or a peer vanished
        raise RankFailure(f"rank {denv.rank}: {str(err).splitlines()[0][:200]}; no record was written") from None
    finally:
        distributed.shutdown()


def _measure(spec: RunSpec, *, clock: Clock | None, log: Log, on_step, denv: DistEnv | None,
             device: torch.device | None = None) -> RunRecord | None:
    device = device or resolve_device(spec.device)
    world = denv.world_size if denv else 1
    lead = denv is None or denv.rank == 0
    check_dtype(device, spec.train.dtype)
    created = datetime.now(timezone.utc)
    warnings.filterwarnings("ignore", module=r"torch\.utils\.checkpoint")

    log(f"counting model FLOPs of {spec.model.preset or spec.model.family} on a fake (meta) replica")
    model_count, params = count_model_flops(spec)
    analytic = analytic_flops(spec, params)

    log(f"building the model on {device.type} and counting hardware FLOPs on an untimed step")
    model = build_model(spec.model, device, seed=spec.train.seed)
    batch = make_batch(spec, device)
    if spec.train.checkpointing:  # before counting, so that recomputation is in the hardware count
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    hardware_count = count_flops(model, batch, kind="hardware",
                                 autocast=autocast_for(device, spec.train.dtype)).scaled(spec.train.grad_accum)
    if denv is not None:
        log(f"wrapping the model for {world} ranks with {spec.distributed.strategy}")
        model = distributed.wrap(model, spec.distributed.strategy, device)
    step, optimizer_impl = prepare(spec, model, batch, device)

    log(f"timing {spec.measure.warmup_steps} warm-up + {spec.measure.steps} measured steps")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    clock = clock or clock_for(device.type)
    sampler = None
    if spec.measure.energy and (denv is None or denv.local_rank == 0):  # one sampler per node
        sources, missing = discover_sources(device.type, cpu_tdp_w=spec.measure.cpu_tdp_w)
        sampler = PowerSampler(sources, missing, interval_s=spec.measure.power_interval_s)

    def on_each_step(phase: str, index: int, seconds: float) -> None:
        # The sampler starts between the last warm-up step and the first measured one.
        if sampler is not None and phase == "warmup" and index == spec.measure.warmup_steps - 1:
            sampler.start()
        if on_step is not None:
            on_step(phase, index, seconds)

    if sampler is not None and spec.measure.warmup_steps == 0:
        sampler.start()
    try:
        times = time_steps(step, warmup=spec.measure.warmup_steps, steps=spec.measure.steps,
                           clock=clock, on_step=on_each_step)
    finally:
        reading = sampler.stop() if sampler is not None else None
    peak_memory, memory_method = _peak_memory(device)
    # After the steps and their peak memory: on CPU the benchmark sizes its matrices by timing
    # (so by load), and its buffers would otherwise enter the process's peak RSS and reshape
    # the allocator's heap for the steps.
    log(f"measuring peak matmul FLOP/s in {spec.train.dtype}")
    measured_peak = measure_peak(device.type, spec.train.dtype)
    if denv is not None:  # measured on every rank at once, as the ranks share the machine
        peaks = distributed.gather(measured_peak.flops_per_s)
        measured_peak = dataclasses.replace(measured_peak, flops_per_s=statistics.mean(peaks))
    env = collect_env(device.type)
    sheet = datasheet_peak(device.type, env["device"]["name"], spec.train.dtype,
                           tf32_enabled=env["tf32_matmul"])
    per_rank = None
    if denv is not None:
        per_rank = distributed.gather({"warmup_s": list(times.warmup_s), "steps_s": list(times.steps_s),
                                       "peak_memory_bytes": peak_memory})
        if not lead:
            return None
        times = StepTimes(tuple(distributed.slowest_steps([r["warmup_s"] for r in per_rank])),
                          tuple(distributed.slowest_steps([r["steps_s"] for r in per_rank])))
        peak_memory = max(r["peak_memory_bytes"] for r in per_rank)
    tokens_per_step = spec.tokens_per_step * world
    model_flops = model_count.total * world
    hardware_flops = hardware_count.total * world
    energy = None if reading is None else reading.for_record(
        measured_s=times.total_s, steps=spec.measure.steps, tokens_per_step=tokens_per_step)
    if energy is not None and denv is not None and denv.nnodes > 1:
        energy["missing"].append(f"nodes 2..{denv.nnodes}: energy sampled on node 0 only")

    achieved = times.per_s(model_flops)
    hardware_rate = times.per_s(hardware_flops)
    run_warnings = times.warnings()
    if spec.train.compile:
        run_warnings.append("hardware FLOPs were counted on the uncompiled model")
        if spec.measure.warmup_steps == 0:
            run_warnings.append("compile with no warm-up steps: the first measured step includes compilation")
    return RunRecord(
        run_id=new_run_id(spec, created),
        created_at=created.isoformat(timespec="seconds"),
        config_hash=spec.config_hash(),
        model=spec.model.model_dump(),
        params=params.total,
        params_non_embedding=params.non_embedding,
        batch_size=spec.train.batch_size,
        seq_len=spec.train.seq_len,
        decoder_seq_len=spec.train.decoder_seq_len,
        grad_accum=spec.train.grad_accum,
        dtype=spec.train.dtype,
        device={k: env["device"][k] for k in ("type", "name", "count")},
        compile=spec.train.compile,
        checkpointing=spec.train.checkpointing,
        optimizer=f"AdamW ({optimizer_impl})",
        warmup_times_s=list(times.warmup_s),
        step_times_s=list(times.steps_s),
        median_step_s=times.median_s,
        iqr_step_s=times.iqr_s,
        cv_step=times.cv,
        total_measured_s=times.total_s,
        tokens_per_step=tokens_per_step,
        tokens_per_s=times.per_s(tokens_per_step),
        samples_per_s=times.per_s(spec.samples_per_step * world),
        model_flops_per_step=model_flops,
        hardware_flops_per_step=hardware_flops,
        achieved_flops_per_s=achieved,
        hardware_flops_per_s=hardware_rate,
        peak_flops_datasheet=sheet.flops_per_s,
        peak_flops_measured=measured_peak.flops_per_s,
        mfu_datasheet=utilization(achieved / world, sheet.flops_per_s),
        mfu_measured=utilization(achieved / world, measured_peak.flops_per_s),
        hfu_datasheet=utilization(hardware_rate / world, sheet.flops_per_s),
        hfu_measured=utilization(hardware_rate / world, measured_peak.flops_per_s),
        peak_memory_bytes=peak_memory,
        peak_memory_method=memory_method,
        flops={
            "convention": model_count.convention,
            "model": {"per_step": model_count.total, "by_op": dict(model_count.by_op),
                      "counted_on": "fake (meta) replica, no checkpointing",
                      "recomputation_counted": False},
            "hardware": {"per_step": hardware_count.total, "by_op": dict(hardware_count.by_op),
                         "counted_on": f"{device.type} model, untimed step",
                         "recomputation_counted": True},
            "analytic": {"six_n_per_step": analytic.six_n, "palm_per_step": analytic.palm,
                         "kaplan_forward_per_step": analytic.kaplan_forward,
                         "megatron_per_step": analytic.megatron,
                         "megatron_recompute_per_step": analytic.megatron_recompute,
                         "non_embedding_params": params.non_embedding},
            "uncounted_ops": dict(hardware_count.uncounted_ops),
            "grad_accum_micro_batches": spec.train.grad_accum,
        },
        peaks={
            "datasheet": {"flops_per_s": sheet.flops_per_s, "gpu": sheet.gpu, "mode": sheet.mode,
                          "source": sheet.source},
            "measured": {"flops_per_s": measured_peak.flops_per_s, "matmul_size": measured_peak.size,
                         "dtype": measured_peak.dtype, "reps": measured_peak.reps,
                         "trials": measured_peak.trials, "clock": measured_peak.clock},
        },
        timing={"clock": getattr(clock, "name", type(clock).__name__),
                "warmup_steps": spec.measure.warmup_steps, "steps": spec.measure.steps,
                "throughput_rule": "tokens per step x steps / total measured seconds"},
        warnings=run_warnings,
        env=env,
        spec=spec.model_dump(mode="json"),
        provenance=dict(PROVENANCE),
        energy=energy,
        world_size=world,
        nnodes=denv.nnodes if denv else 1,
        strategy=spec.distributed.strategy if denv else "single",
        per_device_tokens_per_s=times.per_s(tokens_per_step) / world,
        per_rank=None if per_rank is None else [
            {"rank": i, "warmup_times_s": r["warmup_s"], "step_times_s": r["steps_s"],
             "peak_memory_bytes": r["peak_memory_bytes"]} for i, r in enumerate(per_rank)],
    )
