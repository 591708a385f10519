"""harness.hardware: the GPU vocabulary (names shared by prices, datasheet rows and estimates)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.hardware import DATASHEET, gpu_key, normalise_gpu


@pytest.mark.parametrize("name,memory_gib,expected", [
    ("H100", None, "H100"), ("H100-MEGA", None, "H100-MEGA"), ("H100 NVL", None, "H100"),
    ("A100", None, "A100"), ("A100", 80.0, "A100-80GB"), ("A100-80GB", None, "A100-80GB"),
    ("NVIDIA A100-SXM4-80GB", None, "A100-80GB"), ("V100", 16.0, "V100"), ("Tesla V100-SXM2-32GB", None, "V100-32GB"),
    ("A10G", None, "A10G"), ("A10", None, "A10"), ("L4", None, "L4"), ("L40S", None, "L40S"), ("L40", None, "L40"),
    ("T4", None, "T4"), ("T4g", None, "T4"), ("H200", None, "H200"), ("B200", None, "B200"), ("GH200", None, "GH200"),
    ("RTX6000", None, "RTX6000"), ("Radeon MI25", None, "RADEON-MI25"),
])
def test_normalise_gpu(name, memory_gib, expected):
    assert normalise_gpu(name, memory_gib) == expected


@pytest.mark.parametrize("name,expected", [
    ("H100 SXM", "H100"), ("H100", "H100"), ("NVIDIA H100 80GB HBM3", "H100"), ("H100-MEGA", "H100"),
    ("A100-80GB", "A100"), ("NVIDIA A100-SXM4-80GB", "A100"), ("V100-32GB", "V100"), ("A10G", "A10G"),
    ("L40S", "L40S"), ("T4", "T4"), ("MI300X", "MI300X"), ("cpu", "CPU"),
])
def test_gpu_key(name, expected):
    assert gpu_key(name) == expected


def test_a_catalog_name_and_its_datasheet_row_share_a_key():
    rows = {row.gpu: row for _, row in DATASHEET}
    assert gpu_key(normalise_gpu("NVIDIA A100-SXM4-80GB")) == gpu_key(rows["A100"].gpu)
    assert gpu_key(normalise_gpu("H100", 80.0)) == gpu_key(rows["H100 SXM"].gpu) == gpu_key(rows["H100 PCIe"].gpu)


def test_hardware_imports_no_torch():
    code = "import sys, harness.hardware; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- 2026 hardware: Blackwell and AMD Instinct rows, FP8 columns --------------------------------

from harness.hardware import (TERA, comparison_modes, datasheet_by_name, datasheet_peak, datasheet_row,  # noqa: E402
                              fp8_unsupported, math_mode)


@pytest.mark.parametrize("name,expected", [
    ("AMD Instinct MI300X", "MI300X"), ("AMD Instinct MI300X VF", "MI300X"), ("MI300X", "MI300X"),
    ("AMD Instinct MI325X", "MI325X"), ("AMD Instinct MI355X", "MI355X"), ("AMD Instinct MI350X", "MI350X"),
    ("NVIDIA B200", "B200"), ("NVIDIA GB200", "GB200"), ("NVIDIA B300 SXM6 AC", "B300"), ("GB300", "GB300"),
])
def test_normalise_gpu_knows_amd_and_blackwell_names(name, expected):
    assert normalise_gpu(name) == expected


# Each row's figures as its source prints them (TFLOP/s), sparse figures halved by hand here:
#   B200:   NVIDIA HGX B200 per-GPU table: FP8 9 PF, BF16 4.5 PF, TF32 2.2 PF (all "with sparsity"), FP32 75 TF
#   GB200:  NVIDIA GB200 NVL72 per-GPU table: FP8 10 PF, BF16 5 PF, TF32 2.5 PF (sparse), FP32 80 TF
#   B300:   NVIDIA HGX B300 (8 GPUs): FP8 72 PF, BF16 36 PF, TF32 18 PF (sparse), FP32 600 TF
#   MI300X, MI325X: AMD datasheets: FP32 163.4, TF32 653.7, FP16/BF16 1,307.4, FP8 2,614.9 (dense)
#   MI355X: AMD: FP32 157.3; FP8 8,192 FLOP/clk/CU x 256 CU x 2.4 GHz; BF16 half of FP8; TF32 unpublished
#   H100 SXM / H200: NVIDIA datasheets, FP8 3,958 sparse; H100 PCIe FP8 3,026 sparse
#   L40S: NVIDIA datasheet FP8 1,466 sparse; L4: FP8 485 sparse
@pytest.mark.parametrize("device,gpu,fp32,tf32,bf16,fp8", [
    ("NVIDIA B200", "B200", 75.0, 2200 / 2, 4500 / 2, 9000 / 2),
    ("NVIDIA GB200", "GB200", 80.0, 2500 / 2, 5000 / 2, 10000 / 2),
    ("NVIDIA B300 SXM6 AC", "B300", 600 / 8, 18000 / 8 / 2, 36000 / 8 / 2, 72000 / 8 / 2),
    ("AMD Instinct MI300X", "MI300X", 163.4, 653.7, 1307.4, 2614.9),
    ("AMD Instinct MI325X", "MI325X", 163.4, 653.7, 1307.4, 2614.9),
    ("AMD Instinct MI355X", "MI355X", 157.3, None, round(8192 * 256 * 2.4e9 / 2 / 1e12, 1),
     round(8192 * 256 * 2.4e9 / 1e12, 1)),
    ("NVIDIA H100 80GB HBM3", "H100 SXM", 67.0, 494.5, 989.5, 3958 / 2),
    ("NVIDIA H100 PCIe", "H100 PCIe", 51.0, 378.0, 756.0, 3026 / 2),
    ("NVIDIA H200", "H200 SXM", 67.0, 494.5, 989.5, 3958 / 2),
    ("NVIDIA L40S", "L40S", 91.6, 183.0, 362.05, 1466 / 2),
    ("NVIDIA L4", "L4", 30.3, 60.0, 121.0, 485 / 2),
])
def test_datasheet_rows_match_their_sources(device, gpu, fp32, tf32, bf16, fp8):
    row = datasheet_row(device)
    assert (row.gpu, row.fp32, row.tf32, row.bf16, row.fp16, row.fp8) == (gpu, fp32, tf32, bf16, bf16, fp8)
    assert "https://" in row.source
    if row.tf32 is None:  # no TF32 figure published: fp32 stays fp32, never a guessed tf32
        assert math_mode("fp32", tf32_enabled=True, row=row) == "fp32"


def test_every_row_names_its_source_and_sparse_halving():
    for _, row in DATASHEET:
        assert row.source and ("halved" in row.source or row.fp8 is None or "AMD" in row.source), row.gpu


def test_parts_without_fp8_tensor_cores_have_no_fp8_peak():
    for device in ("NVIDIA A100-SXM4-80GB", "Tesla V100-SXM2-16GB", "Tesla T4", "NVIDIA A10G"):
        assert datasheet_peak("cuda", device, "fp8").flops_per_s is None


def test_fp8_peak_selection_by_name_and_by_device():
    row, peak = datasheet_by_name("B200", "fp8")
    assert (row.gpu, peak) == ("B200", 4500 * TERA)
    assert datasheet_by_name("MI300X", "fp8")[1] == 2614.9 * TERA
    sheet = datasheet_peak("cuda", "NVIDIA H100 80GB HBM3", "fp8")
    assert (sheet.flops_per_s, sheet.gpu, sheet.mode) == (1979 * TERA, "H100 SXM", "fp8")
    assert comparison_modes("fp8") == ("fp8", "bf16") and comparison_modes("bf16") == ("bf16",)


def test_a_bare_model_name_is_its_sxm_part_and_says_so():
    assert datasheet_by_name("H100", "bf16")[0].gpu == "H100 SXM"
    assert datasheet_by_name("h100", "bf16")[1] == 989.5 * TERA
    assert datasheet_by_name("V100", "fp16")[0].gpu == "V100 SXM2"
    assert datasheet_by_name("H100 PCIe", "bf16")[1] == 756 * TERA  # the other form, by name
    with pytest.raises(Exception, match="no datasheet row for 'Z9000'"):
        datasheet_by_name("Z9000", "bf16")


@pytest.mark.parametrize("device", ["AMD Instinct MI350X", "NVIDIA GB300", "AMD Instinct MI250X", "Intel Gaudi 3",
                                    "NVIDIA GeForce RTX 5090", ""])
def test_an_unknown_accelerator_has_an_unknown_peak(device):
    for mode in ("bf16", "fp8"):
        sheet = datasheet_peak("cuda", device, mode)
        assert (sheet.flops_per_s, sheet.gpu, sheet.source) == (None, None, None)


def test_which_devices_train_in_fp8():
    assert fp8_unsupported("cuda", (9, 0)) is None             # Hopper
    assert fp8_unsupported("cuda", (10, 0)) is None            # Blackwell
    assert fp8_unsupported("cuda", (8, 9)) is None             # Ada (L4, L40S)
    assert "8.0" in fp8_unsupported("cuda", (8, 0))            # A100
    assert fp8_unsupported("cuda", (9, 4), "6.4.1", "gfx942:sramecc+:xnack-") is None  # MI300X under ROCm
    assert fp8_unsupported("cuda", (9, 5), "7.0.0", "gfx950") is None                 # MI355X
    assert "gfx90a" in fp8_unsupported("cuda", (9, 0), "6.2", "gfx90a:sramecc+:xnack-")  # MI250X
    assert "this run is on cpu" in fp8_unsupported("cpu")
