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


def test_fp8_operands_are_e4m3_and_fnuz_on_mi300():
    from harness.measure.peak import fp8_format

    assert fp8_format(None, None) == "float8_e4m3fn"                          # CUDA
    assert fp8_format("6.4.1", "gfx942:sramecc+:xnack-") == "float8_e4m3fnuz"  # MI300X, MI325X
    assert fp8_format("7.0.0", "gfx950") == "float8_e4m3fn"                    # MI355X: OCP FP8


def test_the_fp8_peak_is_measured_on_gpus_only():
    with pytest.raises(ValueError, match="GPUs only"):
        measure_peak("cpu", "fp8")


def test_an_fp8_record_states_mfu_against_both_named_peaks():
    """A B200 fp8 run at 1,800 TFLOP/s of model FLOPs per device: 40% of the FP8 dense peak
    (4,500) and 80% of the bf16 one (2,250); measured peaks beside them."""
    from harness.results.record import DatasheetPeakInfo, MeasuredPeakInfo, Peaks, utilizations

    fp8, bf16 = (datasheet_peak("cuda", "NVIDIA B200", mode) for mode in ("fp8", "bf16"))
    sheet = lambda s: DatasheetPeakInfo(flops_per_s=s.flops_per_s, gpu=s.gpu, mode=s.mode, source=s.source)
    peaks = Peaks(datasheet=sheet(fp8), datasheet_also=[sheet(bf16)],
                  measured=MeasuredPeakInfo(flops_per_s=3600 * TERA, matmul_size=8192, dtype="fp8", reps=100, trials=3),
                  measured_also=[MeasuredPeakInfo(flops_per_s=1800 * TERA, matmul_size=8192, dtype="bf16", reps=100,
                                                  trials=3)])
    rows = {u.peak: u for u in utilizations(peaks, 1800 * TERA, 2000 * TERA)}
    assert list(rows) == ["datasheet fp8 (B200)", "datasheet bf16 (B200)", "measured fp8 matmul",
                          "measured bf16 matmul"]
    assert rows["datasheet fp8 (B200)"].mfu == pytest.approx(0.40)
    assert rows["datasheet bf16 (B200)"].mfu == pytest.approx(0.80)
    assert rows["datasheet bf16 (B200)"].hfu == pytest.approx(2000 / 2250)
    assert rows["measured fp8 matmul"].mfu == pytest.approx(0.5) and rows["measured bf16 matmul"].mfu == pytest.approx(1.0)


def test_an_unknown_gpu_gives_named_but_unknown_utilization():
    from harness.results.record import DatasheetPeakInfo, Peaks, utilizations

    sheet = datasheet_peak("cuda", "AMD Instinct MI350X", "fp8")
    peaks = Peaks(datasheet=DatasheetPeakInfo(flops_per_s=sheet.flops_per_s, gpu=sheet.gpu, mode=sheet.mode))
    (row,) = utilizations(peaks, 1e15, 1e15)
    assert (row.peak, row.flops_per_s, row.mfu) == ("datasheet fp8 (unknown for this device)", None, None)


def test_the_run_summary_names_each_peak_of_an_fp8_run(capsys, monkeypatch):
    from pathlib import Path

    monkeypatch.setenv("COLUMNS", "200")  # rich: one table row per line
    from harness.cli.run import _summary
    from tests.conftest import make_record

    rows = [{"peak": peak, "kind": kind, "mode": mode, "flops_per_s": f, "mfu": mfu, "hfu": mfu}
            for peak, kind, mode, f, mfu in [("datasheet fp8 (B200)", "datasheet", "fp8", 4.5e15, 0.25),
                                             ("datasheet bf16 (B200)", "datasheet", "bf16", 2.25e15, 0.5),
                                             ("measured fp8 matmul", "measured", "fp8", 3.0e15, 0.375),
                                             ("measured bf16 matmul", "measured", "bf16", 1.75e15, 0.643)]]
    _summary(make_record({"dtype": "fp8", "utilization": rows}), Path("run.json"))
    out = capsys.readouterr().out
    for label, pct in [("datasheet fp8 (B200)", "25.00%"), ("datasheet bf16 (B200)", "50.00%"),
                       ("measured bf16 matmul", "64.30%")]:
        assert any(label in line and pct in line for line in out.splitlines()), label


def test_hw_shows_each_precisions_measured_peak_beside_an_unknown_cpu_datasheet(capsys):
    import json

    from harness.cli import main

    assert main(["hw", "--json", "--device", "cpu"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["platform"] == "cpu" and [p["dtype"] for p in data["peaks"]] == ["fp32", "bf16"]
    for p in data["peaks"]:  # measured here; a CPU has no datasheet row, so no ratio either
        assert p["measured_flops_per_s"] > 0 and p["matmul_size"] >= 256
        assert (p["datasheet_flops_per_s"], p["datasheet_gpu"], p["measured_over_datasheet"]) == (None, None, None)
