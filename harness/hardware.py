"""Hardware vocabulary: GPU names, math modes and dense datasheet peaks (no 2:4 sparsity), for
NVIDIA parts through CUDA and AMD Instinct parts through ROCm (torch reports both as "cuda"
devices; ROCm's names read "AMD Instinct MI300X"), and which of them train in FP8.

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
# against: fp32 matmuls run as tf32 where torch allows it (see `math_mode`). fp8 is torchao's
# float8 training (linear layers in FP8 with dynamic scales, everything else in bf16): its MFU is
# stated against the FP8 dense peak and against the bf16 dense peak (`comparison_modes`).
Dtype = Literal["fp32", "bf16", "fp16", "fp8"]
MathMode = Literal["fp32", "tf32", "bf16", "fp16", "fp8"]
MATH_MODES: tuple[str, ...] = get_args(MathMode)

# First match wins, on the upper-cased name with "NVIDIA"/"Tesla" removed. Form factors (SXM,
# PCIe, NVL) are not part of the name: an offer's form comes from its instance type
# (harness.cost.prices.forms). Memory variants are: "A100-80GB" when the
# name says 80 GB or the card has >= 60 GiB, "V100-32GB" when it says 32 GB or has >= 24 GiB.
_GPU_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"GH200", "GH200"),
    (r"GB200", "GB200"),
    (r"GB300", "GB300"),
    (r"B200", "B200"),
    (r"B300", "B300"),
    # AMD Instinct, as ROCm's torch.cuda.get_device_name reports them ("AMD Instinct MI300X",
    # "AMD Instinct MI300X VF" under virtualisation) and as catalogs write them ("MI300X").
    (r"MI300X", "MI300X"),
    (r"MI325X", "MI325X"),
    (r"MI350X", "MI350X"),
    (r"MI355X", "MI355X"),
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
    """A catalog's or a device's GPU name as one canonical model name: "H100", "H100-MEGA",
    "H200", "B200", "B300", "GB200", "MI300X", "MI325X", "MI355X", "A100", "A100-80GB", "V100",
    "V100-32GB", "A10G", "A10", "L40S", "L40", "L4", "T4", ...

    Names outside the table are upper-cased with spaces and underscores turned into "-"
    (e.g. "RTX6000", "MI300X"). `memory_gib` (per GPU) splits A100/A100-80GB and V100/V100-32GB
    when the name does not."""
    raw = re.sub(r"\b(NVIDIA|TESLA)\b", " ", name.upper()).strip()
    raw = re.sub(r"^AMD\s+INSTINCT\s+", "", raw)  # ROCm's device names
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
    fp8: float | None = None    # dense FP8 tensor peak (E4M3/E5M2), where the part has FP8 tensor cores


_V100_SRC = "NVIDIA Tesla V100 datasheet (https://images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf)"
_A100_SRC = "NVIDIA A100 datasheet (https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf)"
_H100_SRC = "NVIDIA H100 datasheet, sparse figures halved (https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet)"
_H200_SRC = "NVIDIA H200 datasheet, sparse figures halved (https://www.nvidia.com/en-us/data-center/h200/)"
# Blackwell: NVIDIA's per-GPU table of the GB200 NVL72 / HGX B200 pages ("Individual Blackwell GPU
# Specifications", every tensor figure "with sparsity", halved here; FP32 is not a sparse figure).
_B200_SRC = ("NVIDIA HGX B200 per-GPU specifications, sparse figures halved: FP8 9, BF16 4.5, TF32 2.2 PFLOPS "
             "sparse, FP32 75 TFLOPS (https://www.nvidia.com/en-us/data-center/hgx/)")
_GB200_SRC = ("NVIDIA GB200 NVL72 per-GPU specifications, sparse figures halved: FP8 10, BF16 5, TF32 2.5 PFLOPS "
              "sparse, FP32 80 TFLOPS (https://www.nvidia.com/en-us/data-center/gb200-nvl72/)")
_B300_SRC = ("NVIDIA HGX B300 specifications, 8 GPUs, sparse figures halved: FP8 72, BF16 36, TF32 18 PFLOPS "
             "sparse, FP32 600 TFLOPS, divided by 8 (https://www.nvidia.com/en-us/data-center/hgx/)")
_MI300_SRC = ("AMD Instinct {0} datasheet: FP32 matrix 163.4, TF32 653.7, FP16/BF16 1,307.4, FP8 2,614.9 TFLOPS "
              "dense (sparse 5,229.8) (https://www.amd.com/en/products/accelerators/instinct/mi300/{1}.html)")
_MI355X_SRC = ("AMD Instinct MI355X: FP32 157.3 TFLOPS (AMD launch figures); FP8 dense = 8,192 FLOP/clock/CU "
               "(AMD, ISSCC 2026) x 256 CUs (ROCm GPU specifications) x 2.4 GHz peak engine clock = 5,033.2 TFLOPS, "
               "AMD's '5 PFLOPS'; FP16/BF16 dense half of that, AMD's '2.5 PFLOPS'; TF32: no figure published "
               "(https://www.amd.com/en/products/accelerators/instinct/mi350/mi355x.html)")

# Order matters: the first pattern that matches the device name wins ("GB200" before "B200").
# Positional columns: gpu, fp32, tf32, bf16, fp16, source, tdp_w; fp8 by keyword.
DATASHEET: tuple[tuple[str, DatasheetRow], ...] = (
    (r"H100.*(PCIe|PCIE)", DatasheetRow("H100 PCIe", 51.0, 378.0, 756.0, 756.0, _H100_SRC, 350.0, fp8=1513.0)),
    (r"H100.*(SXM|HBM3)", DatasheetRow("H100 SXM", 67.0, 494.5, 989.5, 989.5, _H100_SRC, 700.0, fp8=1979.0)),
    (r"H200(?!.*NVL)", DatasheetRow("H200 SXM", 67.0, 494.5, 989.5, 989.5, _H200_SRC, 700.0, fp8=1979.0)),
    (r"GB200", DatasheetRow("GB200", 80.0, 1250.0, 2500.0, 2500.0, _GB200_SRC, 1200.0, fp8=5000.0)),
    (r"(?<![A-Z])B200", DatasheetRow("B200", 75.0, 1100.0, 2250.0, 2250.0, _B200_SRC, 1000.0, fp8=4500.0)),
    # B300's board power: NVIDIA's HGX page gives none per GPU and resellers disagree (1,100-1,400 W).
    (r"(?<![A-Z])B300", DatasheetRow("B300", 75.0, 1125.0, 2250.0, 2250.0, _B300_SRC, None, fp8=4500.0)),
    (r"MI300X", DatasheetRow("MI300X", 163.4, 653.7, 1307.4, 1307.4, _MI300_SRC.format("MI300X", "mi300x"), 750.0,
                             fp8=2614.9)),
    (r"MI325X", DatasheetRow("MI325X", 163.4, 653.7, 1307.4, 1307.4, _MI300_SRC.format("MI325X", "mi325x"), 1000.0,
                             fp8=2614.9)),
    (r"MI355X", DatasheetRow("MI355X", 157.3, None, 2516.6, 2516.6, _MI355X_SRC, 1400.0, fp8=5033.2)),
    (r"A100", DatasheetRow("A100", 19.5, 156.0, 312.0, 312.0, _A100_SRC, 400.0)),
    (r"V100.*SXM2", DatasheetRow("V100 SXM2", 15.7, None, None, 125.0, _V100_SRC, 300.0)),
    (r"V100.*PCI", DatasheetRow("V100 PCIe", 14.0, None, None, 112.0, _V100_SRC, 250.0)),
    (r"L40S", DatasheetRow("L40S", 91.6, 183.0, 362.05, 362.05,
                           "NVIDIA L40S datasheet, sparse figures halved (FP8 1,466 sparse) "
                           "(https://www.nvidia.com/en-us/data-center/l40s/)", 350.0, fp8=733.0)),
    (r"\bL4\b", DatasheetRow("L4", 30.3, 60.0, 121.0, 121.0,
                             "NVIDIA L4 datasheet, sparse figures halved (FP8 485 sparse) "
                             "(https://www.nvidia.com/en-us/data-center/l4/)", 72.0, fp8=242.5)),
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
    """Row and dense peak (FLOP/s) for a GPU named by a user ("A100", "H100 SXM", "h100-pcie"; a
    bare "H100" or "V100" is the SXM part, named so in the row) and a math mode (fp32, tf32, bf16,
    fp16, fp8). Unknown GPU or mode → ConfigError, never a guess."""
    from harness.errors import ConfigError

    wanted = re.sub(r"[\s_-]+", " ", gpu).strip().lower()
    rows = [row for _, row in DATASHEET]
    row = next((r for r in rows if r.gpu.lower() == wanted), None) or datasheet_row(gpu.upper())
    if row is None:  # a bare model name ("H100", "V100"): the SXM part, which labs train on; the row's
        # name ("H100 SXM") is what every output states, and "H100 PCIe" picks the other form
        row = next((r for r in rows if r.gpu.lower() == f"{wanted} sxm" or r.gpu.lower() == f"{wanted} sxm2"), None)
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


# The dense peaks a run is compared against, its own precision's first. An FP8 run executes its
# linear layers in FP8 and the rest (attention, norms, the head) in bf16, so neither peak alone is
# the ceiling: both are stated, each named (a run's MFU against bf16 can exceed 100%).
_COMPARED = {"fp8": ("fp8", "bf16")}


def comparison_modes(mode: str) -> tuple[str, ...]:
    """The datasheet columns a run in math mode `mode` is stated against: fp8 → (fp8, bf16)."""
    return _COMPARED.get(mode, (mode,))


def fp8_unsupported(device_type: str, capability: tuple[int, int] | None = None, hip_version: str | None = None,
                    arch: str | None = None) -> str | None:
    """Why this device cannot train in FP8 (torchao float8), or None when it can.

    FP8 tensor cores: NVIDIA compute capability 8.9 (Ada: L4, L40S) and newer (9.0 Hopper, 10.x
    Blackwell); on ROCm (`hip_version` set) the CDNA3/CDNA4 parts, gfx942 (MI300X, MI325X) and
    gfx950 (MI350X, MI355X). Pure: the caller passes what torch reports."""
    if device_type != "cuda":
        return f"fp8 needs a GPU with FP8 tensor cores (Hopper, Blackwell, Ada, MI300/MI350); this run is on {device_type}"
    if hip_version is not None:
        target = (arch or "").split(":")[0]
        if target in ("gfx942", "gfx950"):
            return None
        return f"fp8 needs an AMD GPU of the MI300 or MI350 series (gfx942, gfx950); this one is {target or 'unknown'}"
    if capability is not None and tuple(capability) >= (8, 9):
        return None
    shown = "unknown" if capability is None else f"{capability[0]}.{capability[1]}"
    return f"fp8 needs compute capability 8.9 or newer (Ada, Hopper, Blackwell); this GPU has {shown}"


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
