"""scripts/gpu_check.sh: without a GPU, one line and exit 0 before importing torch; the configs
the GPU check runs are valid and are what its expectations say (no GPU needed to check those)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gpu_check = _load()
no_gpu = pytest.mark.skipif(bool(gpu_check.gpu_device_nodes()), reason="this machine has GPU device nodes")


@no_gpu
def test_without_a_gpu_the_shell_script_says_so_in_one_line_and_exits_0(tmp_path):
    done = subprocess.run([str(ROOT / "scripts" / "gpu_check.sh"), "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["gpu_check: no GPU on this machine (no /dev/nvidia* or /dev/kfd); "
                                        "nothing to check"]
    assert done.stderr == "" and not any(tmp_path.iterdir())  # nothing written


@no_gpu
def test_without_a_gpu_it_imports_neither_torch_nor_harness():
    code = ("import runpy, sys\n"
            "try:\n    runpy.run_path(sys.argv[1], run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "loaded = [m for m in ('torch', 'harness') if m in sys.modules]\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code, str(ROOT / "scripts" / "gpu_check.py")], check=True, timeout=60)


def test_the_checks_configs_are_valid_and_fp8_converts_what_the_check_expects():
    """The llama-shaped model of the fp8 check: 110M non-embedding parameters (134M in all), 84 linear layers in float8
    (12 layers x q, k, v, o, gate, up, down), the head kept; GPT-2's run as the timing check sets it."""
    from harness.build import build_model, count_params
    from harness.measure.train import convert_fp8

    gpt2 = gpu_check._spec("gpt2", gpu_check.GPT2)
    assert (gpt2.model.preset, gpt2.train.dtype, gpt2.device, gpt2.measure.steps) == ("gpt2", "bf16", "cuda", 40)
    llama = gpu_check._spec(None, gpu_check.LLAMA + ["train.dtype=fp8"])
    assert (llama.model.family, llama.train.dtype) == ("llama", "fp8")
    model = build_model(llama.model, "meta")
    counts = count_params(model)
    assert 100e6 < counts.non_embedding < 120e6 and counts.total == 134_105_856  # untied 32000 x 768 head
    conversion = convert_fp8(model, convert=lambda model, module_filter_fn: model)
    assert len(conversion.converted) == 84 and list(conversion.kept) == ["lm_head"]


def test_every_comparison_is_a_row_with_measured_reference_and_status():
    rows = [gpu_check.Row("timing", "1.0000 s", "1.0100 s wall", gpu_check.status(gpu_check.within(1.0, 1.01, 0.02))),
            gpu_check.Row("compile", "9 ms", "10 ms", gpu_check.status(9 / 10 <= 1.05), "0.900x")]
    lines = gpu_check.table(rows).splitlines()
    assert lines[0].split() == ["check", "measured", "reference", "status", "note"]
    assert "pass" in lines[2] and "1.0100 s wall" in lines[2] and "0.900x" in lines[3]
    assert gpu_check.status(gpu_check.within(1.0, 1.03, 0.02)) == "FAIL"


def test_the_timing_and_peak_checks_read_real_record_fields(tmp_path):
    """The GPU check's first check, run on this CPU with a tiny GPT-2 and perf_counter in place
    of CUDA events: it reads the stored record's fields (step times, timing.steps, energy methods,
    peaks) and writes the record; on a CPU the datasheet peak is unknown and the energy has no GPU."""
    from harness.measure.timing import PerfCounterClock

    tiny = ["device=cpu", "model.layers=1", "model.hidden=32", "model.heads=2", "model.ffn=64", "model.vocab=128",
            "model.dropout=0.0", "train.batch_size=2", "train.seq_len=16", "measure.warmup_steps=1",
            "measure.steps=3", "measure.power_interval_s=0.01"]
    rows: list = []
    record = gpu_check.check_timing_peak(rows, tmp_path, tiny, PerfCounterClock())
    by_check = {r.check: r for r in rows}
    timing = by_check["timing: perf_counter vs wall-clock"]
    assert timing.status == "pass" and "3 steps" in timing.measured
    assert by_check["energy: record reads NVML's counter"].status == "FAIL"  # a CPU run reads no GPU counter
    peak = by_check["peak: measured fp32 matmul vs datasheet"]  # the run's own precision (bf16 on the GPU)
    assert peak.status == "info" and "unknown" in peak.reference
    assert (tmp_path / "gpu_check" / f"{record.run_id}.json").is_file()
