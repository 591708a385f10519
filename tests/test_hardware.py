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
