"""Hardware vocabulary: GPU names, math modes and dense datasheet peaks (no 2:4 sparsity).

GPU names: `normalise_gpu` turns a catalog's name into a model name ("A100-80GB"), `gpu_key`
any name (catalog, datasheet row, CUDA device) into the model family they share ("A100").

Pure data and string matching: no torch import. The measured matmul peak is
`harness.measure.peak`.

Unknown hardware has an unknown datasheet peak: `datasheet_peak` returns None, never a guess
(no A100 fallback, no CPU figure).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

TERA = 1e12

# The precisions a run trains in, and the datasheet columns (math modes) a run is measured
# against: fp32 matmuls run as tf32 where torch allows it (see `math_mode`).
Dtype = Literal["fp32", "bf16", "fp16"]
MathMode = Literal["fp32", "tf32", "bf16", "fp16"]
MATH_MODES: tuple[str, ...] = get_args(MathMode)

# First match wins, on the upper-cased name with "NVIDIA"/"Tesla" removed. Form factors (SXM,
# PCIe, NVL) are not part of the name: an offer's form comes from its instance type
# (harness.cost.prices.forms). Memory variants are: "A100-80GB" when the
# name says 80 GB or the card has >= 60 GiB, "V100-32GB" when it says 32 GB or has >= 24 GiB.
_GPU_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"GH200", "GH200"),
    (r"GB200", "GB200"),
    (r"B200", "B200"),
    (r"H100.*MEGA", "H100-MEGA"),
    (r"H100", "H100"),
    (r"H200", "H200"),
    (r"A100", "A100"),
    (r"V100", "V100"),
    (r"A10G", "A10G"),
    (r"(?<![A-Z0-9])A10(?![0-9G])", "A10"),
    (r"L40S", "L40S"),
    (r"(?<![A-Z0-9])L40(?![0-9S])", "L40"),
    (r"(?<![A-Z0-9])L4(?![0-9])", "L4"),
    (r"(?<![A-Z0-9])T4G?(?![0-9])", "T4"),   # T4g (AWS g5g) is the same T4 on an Arm host
)


def normalise_gpu(name: str, memory_gib: float | None = None) -> str:
    """A catalog's GPU name as one canonical model name: "H100", "H100-MEGA", "H200", "B200",
    "A100", "A100-80GB", "V100", "V100-32GB", "A10G", "A10", "L40S", "L40", "L4", "T4", ...

    Names outside the table are upper-cased with spaces and underscores turned into "-"
    (e.g. "RTX6000", "MI300X"). `memory_gib` (per GPU) splits A100/A100-80GB and V100/V100-32GB
    when the name does not."""
    raw = re.sub(r"\b(NVIDIA|TESLA)\b", " ", name.upper()).strip()
    for pattern, model in _GPU_PATTERNS:
        if re.search(pattern, raw):
            if model == "A100" and (re.search(r"80\s*GB?", raw) or (memory_gib or 0) >= 60):
                return "A100-80GB"
            if model == "V100" and (re.search(r"32\s*GB?", raw) or (memory_gib or 0) >= 24):
                return "V100-32GB"
            return model
    return re.sub(r"[\s_]+", "-", raw)


def gpu_key(name: str) -> str:
    """The GPU model family a price row and a datasheet row share: "H100 SXM", "H100",
    "NVIDIA H100 80GB HBM3" → "H100"; "A100-80GB" → "A100". Memory sizes share a key; form
    factors do too, and the estimate tells them apart by the offer's `form`."""
    match = re.search(r"\b([A-Z]+\d+[A-Z]?)\b", name.upper().replace("-", " "))
    return match.group(1) if match else name.upper()


@dataclass(frozen=True)
class DatasheetRow:
    """Dense peaks in TFLOP/s by math mode; None where the part has no such mode."""

    gpu: str
    fp32: float
    tf32: float | None
    bf16: float | None
    fp16: float | None
    source: str
    tdp_w: float | None = None  # maximum board power, W (datasheet), for energy estimates only


_V100_SRC = "NVIDIA Tesla V100 datasheet (https://images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf)"
_A100_SRC = "NVIDIA A100 datasheet (https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf)"
_H100_SRC = "NVIDIA H100 datasheet, sparse figures halved (https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet)"
_H200_SRC = "NVIDIA H200 datasheet, sparse figures halved (https://www.nvidia.com/en-us/data-center/h200/)"

# Order matters: the first pattern that matches the device name wins.
DATASHEET: tuple[tuple[str, DatasheetRow], ...] = (
    (r"H100.*(PCIe|PCIE)", DatasheetRow("H100 PCIe", 51.0, 378.0, 756.0, 756.0, _H100_SRC, 350.0)),
    (r"H100.*(SXM|HBM3)", DatasheetRow("H100 SXM", 67.0, 494.5, 989.5, 989.5, _H100_SRC, 700.0)),
    (r"H200(?!.*NVL)", DatasheetRow("H200 SXM", 67.0, 494.5, 989.5, 989.5, _H200_SRC, 700.0)),
    (r"A100", DatasheetRow("A100", 19.5, 156.0, 312.0, 312.0, _A100_SRC, 400.0)),
    (r"V100.*SXM2", DatasheetRow("V100 SXM2", 15.7, None, None, 125.0, _V100_SRC, 300.0)),
    (r"V100.*PCI", DatasheetRow("V100 PCIe", 14.0, None, None, 112.0, _V100_SRC, 250.0)),
    (r"L40S", DatasheetRow("L40S", 91.6, 183.0, 362.05, 362.05,
                           "NVIDIA L40S datasheet (https://www.nvidia.com/en-us/data-center/l40s/)", 350.0)),
    (r"\bL4\b", DatasheetRow("L4", 30.3, 60.0, 121.0, 121.0,
                             "NVIDIA L4 datasheet (https://www.nvidia.com/en-us/data-center/l4/)", 72.0)),
    (r"\bT4\b", DatasheetRow("T4", 8.1, None, None, 65.0,
                             "NVIDIA T4 datasheet (https://www.nvidia.com/en-us/data-center/tesla-t4/)", 70.0)),
    # NVIDIA publishes no A10G datasheet (an AWS-only variant of the A10, with fewer tensor FLOP/s).
    (r"A10G", DatasheetRow("A10G", 31.52, None, 70.0, 70.0,
                           "no NVIDIA datasheet; AWS/NVIDIA figures as collected by Baseten "
                           "(https://www.baseten.co/blog/nvidia-a10-vs-a10g-for-ml-model-inference/)")),
)


def datasheet_row(device_name: str) -> DatasheetRow | None:
    """The datasheet row for a device name as CUDA reports it, or None if unknown."""
    for pattern, row in DATASHEET:
        if re.search(pattern, device_name):
            return row
    return None


def datasheet_by_name(gpu: str, mode: str) -> tuple[DatasheetRow, float]:
    """Row and dense peak (FLOP/s) for a GPU named by a user ("A100", "H100 SXM", "h100-pcie")
    and a math mode (fp32, tf32, bf16, fp16). Unknown GPU or mode → ConfigError, never a guess."""
    from harness.errors import ConfigError

    wanted = re.sub(r"[\s_-]+", " ", gpu).strip().lower()
    rows = [row for _, row in DATASHEET]
    row = next((r for r in rows if r.gpu.lower() == wanted), None) or datasheet_row(gpu.upper())
    if row is None:
        raise ConfigError("gpu", f"no datasheet row for {gpu!r}; allowed: {', '.join(r.gpu for r in rows)}")
    if mode not in MATH_MODES:
        raise ConfigError("dtype", f"{mode!r} is not allowed; allowed: {', '.join(MATH_MODES)}")
    tflops = getattr(row, mode)
    if tflops is None:
        raise ConfigError("dtype", f"{row.gpu} has no {mode} datasheet figure")
    return row, tflops * TERA


def math_mode(dtype: str, tf32_enabled: bool = False, row: DatasheetRow | None = None) -> str:
    """Which datasheet column a run uses: fp32 matmuls run as tf32 when torch allows it and the
    part has tensor cores for it (`row`; V100 and T4 have none, so their fp32 stays fp32)."""
    has_tf32 = row is None or row.tf32 is not None
    return "tf32" if dtype == "fp32" and tf32_enabled and has_tf32 else dtype


def training_dtype(row: DatasheetRow) -> str:
    """The precision a lab trains in on this GPU: bf16 where the part has it, else fp16."""
    return "bf16" if row.bf16 is not None else "fp16"


@dataclass(frozen=True)
class DatasheetPeak:
    flops_per_s: float | None
    gpu: str | None
    mode: str
    source: str | None


def datasheet_peak(device_type: str, device_name: str, dtype: str, tf32_enabled: bool = False) -> DatasheetPeak:
    """Dense datasheet peak in FLOP/s for a device and dtype; flops_per_s None when unknown
    (every CPU, unlisted GPUs, modes a GPU lacks)."""
    row = datasheet_row(device_name) if device_type == "cuda" else None
    mode = math_mode(dtype, tf32_enabled, row)
    if row is None:
        return DatasheetPeak(None, None, mode, None)
    tflops = getattr(row, mode)
    return DatasheetPeak(None if tflops is None else tflops * TERA, row.gpu, mode, row.source)
