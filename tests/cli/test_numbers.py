"""The CLI's own numbers: every numeric option finite and in its stated range, one stderr line and
exit 2 otherwise; JSON output never holds NaN or Infinity."""

import json
import math

import pytest

from harness.cli import main
from harness.cli.common import bounded_float, bounded_int, int_list, print_json, to_json
from harness.errors import ConfigError, HarnessError

BAD = [
    (["run", "--nproc", "0"], "--nproc: 0 is out of range; allowed: 1..1,024"),
    (["run", "--nproc", "-3"], "--nproc: -3 is out of range"),
    (["run", "--nnodes", "0"], "--nnodes: 0 is out of range; allowed: 1..4,096"),
    (["run", "--nproc", "1e3"], "--nproc: expected an integer, got '1e3'"),
    (["run", "--node-rank", "-1"], "--node-rank: -1 is out of range"),
    (["run", "--nnodes", "2", "--node-rank", "2"], "--node-rank: 2 is out of range; allowed: 0..1"),
    (["run", "--depth-slices", "1,2", "--slice-repeats", "0"], "--slice-repeats: 0 is out of range; allowed: 1..100"),
    (["run", "--scaling", "0,1"], "--scaling: 0 is out of range"),
    (["run", "--scaling", "1," + "2," * 20], "--scaling: 21 values; allowed: up to 16"),
    (["run", "--scaling", "2,4"], "--scaling: world sizes must include 1"),
    (["run", "--depth-slices", ",".join(["1"] * 10_000)], "--depth-slices: 10,000 slices; allowed: up to 16"),
    (["count", "gpt2", "--step-time", "nan", "--gpu", "A100"], "--step-time: must be finite; allowed: (0, 1e+07]"),
    (["count", "gpt2", "--step-time", "inf", "--gpu", "A100"], "--step-time: must be finite"),
    (["count", "gpt2", "--step-time", "0", "--gpu", "A100"], "--step-time: 0 is out of range"),
    (["count", "gpt2", "--devices", "0"], "--devices: 0 is out of range"),
    (["count", "gpt2", "--grad-accum", "1000000000000"], "--grad-accum: 1000000000000 is out of range"),
    (["count", "gpt2", "--device-memory-gb", "-80"], "--device-memory-gb: -80 is out of range"),
    (["estimate", "--latest", "--corpus", "c4", "--pue", "inf"], "--pue: must be finite; allowed: [1, 10]"),
    (["estimate", "--latest", "--corpus", "c4", "--pue", "nan"], "--pue: must be finite"),
    (["estimate", "--latest", "--corpus", "c4", "--pue", "0.5"], "--pue: 0.5 is out of range; allowed: [1, 10]"),
    (["estimate", "--latest", "--corpus", "c4", "--fully-loaded-multiplier", "1e308"], "--fully-loaded-multiplier: 1e+308 is out of range"),
    (["estimate", "--latest", "--corpus", "c4", "--usd-per-kwh", "nan"], "--usd-per-kwh: must be finite"),
    (["estimate", "--latest", "--corpus", "c4", "--carbon-intensity", "inf"], "--carbon-intensity: must be finite"),
    (["estimate", "--latest", "--corpus", "c4", "--scaling-efficiency", "1e-310"], "--scaling-efficiency: 1e-310 is out of range; allowed: [0.01, 1]"),
    (["estimate", "--latest", "--corpus", "c4", "--devices", "0"], "--devices: 0 is out of range"),
    (["estimate", "--latest", "--corpus", "c4", "--micro-batch", "0"], "--micro-batch: 0 is out of range"),
    (["estimate", "--latest", "--corpus", "c4", "--utilization", "2"], "--utilization: 2 is out of range; allowed: (0, 1]"),
    (["estimate", "--latest", "--corpus", "c4", "--duty-cycle", "0"], "--duty-cycle: 0 is out of range"),
    (["estimate", "--latest", "--corpus", "c4", "--amortize-years", "true"], "--amortize-years: expected a number"),
    (["report", "--usd-per-kwh", "inf"], "--usd-per-kwh: must be finite"),
    (["reproduce", "ai21", "--utilization", "-0.3"], "--utilization: -0.3 is out of range"),
]


@pytest.mark.parametrize("argv, expected", BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_numbers_are_one_line_and_exit_2(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_RESULTS_DIR", str(tmp_path / "results"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("harness: error: ") and expected in lines[0], lines[0]
    assert len(lines[0]) <= 300
    assert not (tmp_path / "results").exists()


def test_parsers_by_hand():
    assert bounded_float("--x", 1, 10)("2.5") == 2.5 and bounded_float("--x", 1, 10)(1.58) == 1.58
    assert bounded_int("--n", 1, 4)("4") == 4 and int_list("--s", "1, 2,4", 1, 8) == [1, 2, 4]
    with pytest.raises(ConfigError, match="--n: expected an integer, got '9999999999999999999999'"):
        bounded_int("--n", 1, 4)("9" * 22)
    with pytest.raises(ConfigError, match="--x: 1 is out of range; allowed: \\(1, 10\\]"):
        bounded_float("--x", 1, 10, low_open=True)("1")


def test_json_output_never_holds_nan_or_infinity(capsys):
    with pytest.raises(HarnessError, match="not finite \\(rows.1.mfu\\)"):
        print_json({"rows": [{"mfu": 0.5}, {"mfu": math.inf}]})
    assert capsys.readouterr().out == ""  # nothing half-printed
    assert json.loads(to_json({"a": 1.0, "b": None})) == {"a": 1.0, "b": None}


def test_an_error_line_is_cut_to_300_characters(capsys):
    assert main(["run", "--set", "model.preset=" + "y" * 5_000]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and len(line) <= 300 and "(5,002 characters)" in line


GOOD_FIT = {"device": "cpu", "gpu": None, "dtype": "fp32", "mfu_basis": "measured peak", "n": 3,
            "coef": {"intercept": 0.1, "ln_hidden": 0.01, "ln_tokens_per_step": 0.0, "ln_seq_len": 0.0},
            "features_used": ["ln_hidden"], "features_dropped": {}, "relations": {}, "rmse": 0.01, "loo_rmse": None,
            "ranges": {"hidden": [32, 64], "tokens_per_step": [32, 64], "seq_len": [16, 16]}, "runs": ["a", "b", "c"]}


@pytest.mark.parametrize("change, why", [
    ({"coef": {**GOOD_FIT["coef"], "intercept": "x"}}, "coef.intercept"),
    ({"rmse": float("nan")}, "not finite"),
    ({"coef": {"intercept": 0.1}}, "coefficients must be"),
    ({"ranges": {"hidden": [64, 32], "tokens_per_step": [1, 2], "seq_len": [1, 2]}}, "ranges must give"),
    ({"n": True}, "n"),
])
def test_a_hand_edited_calibration_table_is_refused(tmp_path, change, why):
    from harness.cost.calibrate import CALIBRATION_FILE, read_calibration

    path = tmp_path / CALIBRATION_FILE
    path.write_text(json.dumps({"fits": [GOOD_FIT]}))
    assert read_calibration(tmp_path)[0].n == 3
    path.write_text(json.dumps({"fits": [{**GOOD_FIT, **change}]}))
    with pytest.raises(ConfigError, match="is not a calibration table") as info:
        read_calibration(tmp_path)
    assert why in str(info.value)
