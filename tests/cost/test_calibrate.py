"""Calibration fits on recorded data: exact recovery, the monotone constraint, and its use in estimates."""

import math

import numpy as np
import pytest

from harness.cost.calibrate import calibrate, find_fit, read_calibration, write_calibration
from tests.conftest import make_record


def rec(i, hidden, batch, seq, mfu, name="NVIDIA H100 80GB HBM3", dtype="bf16"):
    return make_record({"run_id": f"r{i}", "device": {"type": "cuda", "name": name}, "dtype": dtype,
                        "model.hidden": hidden, "tokens_per_step": batch * seq, "seq_len": seq,
                        "mfu_datasheet": mfu, "mfu_measured": mfu * 0.9})


def law(hidden, tokens, seq):
    return 0.05 + 0.04 * math.log(hidden) + 0.01 * math.log(tokens) - 0.02 * math.log(seq)


GRID = [(h, b, s) for h in (256, 512, 1024) for b in (4, 16) for s in (128, 512)]


def test_fit_recovers_a_known_law_exactly():
    records = [rec(i, h, b, s, law(h, b * s, s)) for i, (h, b, s) in enumerate(GRID)]
    (fit,) = calibrate(records)
    assert fit.gpu == "H100 SXM" and fit.mfu_basis == "datasheet" and fit.n == 12
    assert fit.coef["ln_hidden"] == pytest.approx(0.04) and fit.coef["ln_tokens_per_step"] == pytest.approx(0.01)
    assert fit.coef["ln_seq_len"] == pytest.approx(-0.02) and fit.rmse == pytest.approx(0, abs=1e-9)
    assert fit.loo_rmse == pytest.approx(0, abs=1e-9)
    assert fit.predict(2048, 64 * 256, 256) == pytest.approx(law(2048, 64 * 256, 256))


def test_utilization_never_falls_with_width():
    # noisy data that falls with width: the width coefficient is clamped at 0
    rng = np.random.default_rng(0)
    records = [rec(i, h, b, s, 0.5 - 0.01 * math.log(h) + rng.normal(0, 0.002)) for i, (h, b, s) in enumerate(GRID)]
    (fit,) = calibrate(records)
    assert fit.coef["ln_hidden"] == 0.0 and fit.coef["ln_tokens_per_step"] >= 0.0
    assert fit.rmse > 0
    assert fit.predict(4096, 64, 128) >= fit.predict(256, 64, 128) - 1e-12


def test_groups_by_device_and_dtype_and_skips_single_runs():
    records = [rec(0, 256, 4, 128, 0.3), rec(1, 512, 4, 128, 0.4), rec(2, 256, 4, 128, 0.2, dtype="fp32"),
               rec(3, 256, 4, 128, 0.1, name="AMD EPYC"), rec(4, 512, 4, 128, 0.2, name="AMD EPYC")]
    records[3:5] = [r.evolve(device={**r.device.model_dump(), "type": "cpu"}) for r in records[3:5]]
    fits = calibrate(records)
    assert {(f.gpu, f.device, f.dtype) for f in fits} == {("H100 SXM", "NVIDIA H100 80GB HBM3", "bf16"),
                                                          (None, "AMD EPYC", "bf16")}
    assert [f.device for f in calibrate(records, device="epyc")] == ["AMD EPYC"]


def test_table_round_trip_and_estimate_uses_it(tmp_path):
    from harness.config import build_spec
    from harness.cost.estimate import EstimateOptions, estimate
    from harness.cost.plans import build_corpus, build_plan
    from tests.conftest import tiny_raw

    records = [rec(i, h, b, s, law(h, b * s, s) + (0.01 if i % 2 else -0.01)) for i, (h, b, s) in enumerate(GRID)]
    write_calibration(calibrate(records), tmp_path)
    fits = read_calibration(tmp_path)
    fit = find_fit(fits, "H100 SXM", "bf16")
    assert fit is not None and fit.n == 12 and fit.error > 0

    spec = build_spec(tiny_raw("gpt2"))
    run = make_record({"run_id": "cpu", "spec": spec.model_dump(mode="json"), "model": spec.model.model_dump(),
                       "dtype": "fp32", "device": {"type": "cpu", "name": "AMD EPYC"}, "seq_len": 16,
                       "batch_size": 2, "grad_accum": 1, "tokens_per_step": 32, "params": 1,
                       "achieved_flops_per_s": 1e9, "peak_flops_measured": 2e9, "mfu_measured": 0.5,
                       "mfu_datasheet": None, "world_size": 1})
    e = estimate(run, build_plan({"phases": [{"tokens": 1e9}]}), None,
                 EstimateOptions.build(gpu="H100 SXM", dtype="bf16", utilization=0.9), calibration=fits, offers=[])
    assert e.utilization == pytest.approx(fit.predict(32, 32, 16))
    assert e.utilization_source.startswith("calibrated") and "extrapolated" in e.utilization_source
    assert e.utilization_range == pytest.approx([e.utilization - fit.error, e.utilization + fit.error])
    assert any("--utilization 0.9 not used" in n for n in e.notes)
