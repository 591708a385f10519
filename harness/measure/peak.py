"""Measure the peak matmul FLOP/s of this process's device (the measured peak beside the datasheet):
the "maximum achievable matmul FLOPS" of stas00's ml-engineering, at one square size.

fp8 is measured as torch._scaled_mm on E4M3 operands (per-tensor scales, bf16 output), the GEMM
torchao's float8 training runs; E4M3FNUZ on AMD gfx942 (MI300X/MI325X), whose FP8 is that format.
"""

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


def fp8_format(hip_version: str | None, arch: str | None) -> str:
    """The torch dtype name of E4M3 on this device: OCP float8_e4m3fn, except AMD gfx942's FNUZ variant."""
    return "float8_e4m3fnuz" if hip_version is not None and (arch or "").startswith("gfx942") else "float8_e4m3fn"


def _matmul(torch, device_type: str, dtype: str):
    """(make two n x n operands, the matmul) for `dtype` on `device_type`."""
    if dtype != "fp8":
        torch_dtype = getattr(torch, _TORCH_DTYPES[dtype])
        return (lambda n: (torch.randn(n, n, device=device_type, dtype=torch_dtype),
                           torch.randn(n, n, device=device_type, dtype=torch_dtype))), torch.mm
    if device_type != "cuda":
        raise ValueError("the fp8 matmul peak is measured on GPUs only")
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    f8 = getattr(torch, fp8_format(torch.version.hip, getattr(props, "gcnArchName", None)))
    one = torch.ones((), device=device_type)

    def make(n: int):  # _scaled_mm takes a row-major first and a column-major second operand
        return (torch.randn(n, n, device=device_type).to(f8),
                torch.randn(n, n, device=device_type).to(f8).t().contiguous().t())

    return make, lambda a, b: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)


@functools.lru_cache(maxsize=None)
def measure_peak(device_type: str, dtype: str, size: int | None = None) -> MeasuredPeak:
    """Measure matmul FLOP/s on this process's `device_type` device, in fp32, bf16, fp16 or (GPU)
    fp8. Cached per process.

    Sized to fill the device: 8192³ on CUDA; on CPU the size doubles from 256 until one
    matmul takes 50 ms (or 4096) so that small caches do not flatter the figure.
    """
    import torch

    from harness.measure.timing import clock_for

    make, mm = _matmul(torch, device_type, dtype)
    clock = clock_for(device_type)

    def run(n: int, reps: int) -> float:
        a, b = make(n)
        mm(a, b)  # warm-up: kernel selection, page faults
        token = clock.start()
        for _ in range(reps):
            mm(a, b)
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
