#!/usr/bin/env python
"""How much time does the harness add to a training step? Target: at most 2%.

Times the same model and batch, in one process, alternating blocks of steps:
  harness: harness.measure.train.prepare's step run by harness.measure.timing.time_steps (per-step clock),
           with the power sampler running beside it (as in a run)
  quiet:   the same without the power sampler
  bare:    a plain PyTorch loop (forward, loss, backward, AdamW step, zero_grad), one timer
Each block's wall time is taken the same way; the ratios harness/bare and harness/quiet (the
sampler's own cost) are printed per round, with the medians over rounds.

  .venv/bin/python scripts/bench_overhead.py [CONFIG] [--rounds 7] [--steps 10] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from harness.build import build_model, make_batch
from harness.config import load_spec
from harness.measure.energy import PowerSampler, discover_sources
from harness.measure.timing import clock_for, time_steps
from harness.measure.train import autocast_for, make_optimizer, prepare, resolve_device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    spec = load_spec(args.config, args.overrides)
    device = resolve_device(spec.device)
    model = build_model(spec.model, device, seed=spec.train.seed)
    batch = make_batch(spec, device)
    harness_step, _ = prepare(spec, model, batch, device)
    bare_optimizer, _ = make_optimizer(model, spec.train.lr, device)
    autocast = autocast_for(device, spec.train.dtype)
    clock = clock_for(device.type)

    def harness_block(sampling: bool = True) -> float:
        sampler = None
        if sampling:
            sources, missing = discover_sources(device.type, cpu_tdp_w=spec.measure.cpu_tdp_w)
            sampler = PowerSampler(sources, missing, interval_s=spec.measure.power_interval_s)
        synchronize(device)
        start = time.perf_counter()
        if sampler is not None:
            sampler.start()
        time_steps(harness_step, warmup=0, steps=args.steps, clock=clock)
        if sampler is not None:
            sampler.stop()
        synchronize(device)
        return time.perf_counter() - start

    def bare_block() -> float:
        synchronize(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            for _ in range(spec.train.grad_accum):
                with autocast:
                    loss = model(**batch).loss / spec.train.grad_accum
                loss.backward()
            bare_optimizer.step()
            bare_optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        return time.perf_counter() - start

    harness_block(), harness_block(False), bare_block()  # warm-up every path
    ratios, sampler_ratios = [], []
    print(f"{spec.model.preset or spec.model.family} on {device.type}, {spec.train.dtype}, "
          f"{args.steps} steps a block, {args.rounds} rounds, power sampled every "
          f"{spec.measure.power_interval_s} s")
    for i in range(args.rounds):
        # rotate which goes first so drift does not favour one side
        order = ["harness", "quiet", "bare"]
        order = order[i % 3:] + order[:i % 3]
        blocks = {"harness": lambda: harness_block(True), "quiet": lambda: harness_block(False), "bare": bare_block}
        t = {name: blocks[name]() for name in order}
        ratios.append(t["harness"] / t["bare"])
        sampler_ratios.append(t["harness"] / t["quiet"])
        print(f"round {i + 1}: harness {t['harness']:.4f} s  quiet {t['quiet']:.4f} s  bare {t['bare']:.4f} s  "
              f"harness/bare {ratios[-1]:.4f}  harness/quiet {sampler_ratios[-1]:.4f}")
    median = statistics.median(ratios)
    print(f"median ratio harness/bare: {median:.4f} (overhead {median - 1:+.2%}; target <= +2%)")
    sampler = statistics.median(sampler_ratios)
    print(f"median ratio with/without the power sampler: {sampler:.4f} ({sampler - 1:+.2%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
