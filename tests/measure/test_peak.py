import pytest

from harness.hardware import TERA, datasheet_peak, datasheet_row
from harness.measure.peak import measure_peak


@pytest.mark.parametrize("name, gpu, bf16", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.5),
    ("NVIDIA H100 PCIe", "H100 PCIe", 756.0),
    ("NVIDIA H200", "H200 SXM", 989.5),
    ("NVIDIA A100-SXM4-80GB", "A100", 312.0),
    ("NVIDIA A100-PCIE-40GB", "A100", 312.0),
    ("NVIDIA L40S", "L40S", 362.05),
    ("NVIDIA L4", "L4", 121.0),
    ("NVIDIA A10G", "A10G", 70.0),
])
def test_datasheet_rows_dense_bf16(name, gpu, bf16):
    row = datasheet_row(name)
    assert row.gpu == gpu and row.bf16 == bf16 and row.source


def test_v100_and_t4_have_no_bf16_but_fp16():
    assert datasheet_peak("cuda", "Tesla V100-SXM2-16GB", "fp16").flops_per_s == 125 * TERA
    assert datasheet_peak("cuda", "Tesla V100-SXM2-16GB", "bf16").flops_per_s is None
    assert datasheet_peak("cuda", "Tesla T4", "fp16").flops_per_s == 65 * TERA


def test_unknown_hardware_is_unknown_never_an_a100():
    assert datasheet_peak("cuda", "NVIDIA GeForce RTX 4090", "bf16").flops_per_s is None
    assert datasheet_peak("cuda", "NVIDIA H100 NVL", "bf16").flops_per_s is None
    assert datasheet_peak("cpu", "AMD EPYC 7B13", "fp32").flops_per_s is None


def test_fp32_uses_the_tf32_column_only_when_tf32_is_on():
    assert datasheet_peak("cuda", "NVIDIA A100-SXM4-80GB", "fp32").flops_per_s == 19.5 * TERA
    on = datasheet_peak("cuda", "NVIDIA A100-SXM4-80GB", "fp32", tf32_enabled=True)
    assert (on.flops_per_s, on.mode) == (156 * TERA, "tf32")


def test_measured_cpu_peak_is_flops_over_time():
    peak = measure_peak("cpu", "fp32", size=128)
    assert peak.size == 128 and peak.reps >= 1 and peak.clock == "perf_counter"
    # a 2-core machine does between 100 MFLOP/s and 10 TFLOP/s on fp32 matmuls
    assert 1e8 < peak.flops_per_s < 1e13
