"""Measure the peak matmul FLOP/s of this process's device (the measured peak beside the datasheet)."""

from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class MeasuredPeak:
    """Best matmul throughput seen: `size`³ matmuls in `dtype`, best of `trials` trials of
    `reps` back-to-back matmuls each; FLOPs counted as 2·size³ per matmul."""

    flops_per_s: float
    size: int
    dtype: str
    reps: int
    trials: int
    clock: str


_TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@functools.lru_cache(maxsize=None)
def measure_peak(device_type: str, dtype: str, size: int | None = None) -> MeasuredPeak:
    """Measure matmul FLOP/s on this process's `device_type` device. Cached per process.

    Sized to fill the device: 8192³ on CUDA; on CPU the size doubles from 256 until one
    matmul takes 50 ms (or 4096) so that small caches do not flatter the figure.
    """
    import torch

    from harness.measure.timing import clock_for

    torch_dtype = getattr(torch, _TORCH_DTYPES[dtype])
    clock = clock_for(device_type)

    def run(n: int, reps: int) -> float:
        a = torch.randn(n, n, device=device_type, dtype=torch_dtype)
        b = torch.randn(n, n, device=device_type, dtype=torch_dtype)
        torch.mm(a, b)  # warm-up: kernel selection, page faults
        token = clock.start()
        for _ in range(reps):
            torch.mm(a, b)
        return clock.stop(token)

    if size is None:
        if device_type == "cuda":
            size = 8192
        else:
            size = 256
            while size < 4096 and run(size, 1) < 0.05:
                size *= 2
    one = run(size, 1)
    reps = max(1, min(100, int(0.2 / max(one, 1e-6))))  # about 0.2 s per trial
    trials = 3
    best = min(run(size, reps) for _ in range(trials))
    return MeasuredPeak(2 * size**3 * reps / best, size, dtype, reps, trials, clock.name)
