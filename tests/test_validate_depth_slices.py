"""scripts/validate_depth_slices.py end to end on a model small enough for the suite."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_script_predicts_a_model_that_fits_from_its_slices(tmp_path):
    out = tmp_path / "validation.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "validate_depth_slices.py"), "--families", "t5",
         "--widths", "64", "--layers", "3", "--slices", "1,2", "--steps", "1", "--repeats", "1",
         "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, check=False, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    rows = {r["model"]: r for r in result["rows"]}
    assert set(rows) == {"t5 h64 L3"}  # encoder and decoder sliced together
    for row in rows.values():
        # FLOPs grow exactly linearly in depth: the extrapolated counts are the full model's own
        assert row["hardware_flops_error"] == pytest.approx(0, abs=1e-9)
        assert row["model_flops_error"] == pytest.approx(0, abs=1e-9)
        # each depth ran once, the full one too (repeats and their medians: tests/measure/test_slices.py,
        # with a stand-in runner; one real repeat keeps this end-to-end run short)
        assert row["repeats"] == 1 and len(row["full_run_ids"]) == 1 and len(row["slice_run_ids"]) == 2
        assert row["measured_step_s"] == pytest.approx(row["measured_step_s_runs"][0])
        assert row["step_error"] == pytest.approx(
            (row["predicted_step_s"] - row["measured_step_s"]) / row["measured_step_s"])
        assert row["torch_threads"] == 1
    summary = result["summary"]
    assert summary["models"] == 1 and summary["target"] == 0.05
    within = sum(abs(r["step_error"]) <= 0.05 for r in rows.values())
    assert summary["step_error"]["within_target"] == within
    assert "summary: step time within 5% for" in done.stdout
