"""Calibration fits on recorded data: exact recovery, the monotone constraint, degenerate sweeps
(features dropped, never invented), the leave-one-out error, extrapolation, and use in estimates."""

import math

import numpy as np
import pytest

from harness.cost.calibrate import FEATURES, calibrate, find_fit, read_calibration, write_calibration
from harness.errors import ConfigError
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
    assert fit.features_used == list(FEATURES) and fit.features_dropped == {} and fit.relations == {}
    assert fit.predict(2048, 64 * 256, 256) == pytest.approx(law(2048, 64 * 256, 256))


def test_utilization_never_falls_with_width():
    # noisy data that falls with width: the width coefficient is clamped at 0
    rng = np.random.default_rng(0)
    records = [rec(i, h, b, s, 0.5 - 0.01 * math.log(h) + rng.normal(0, 0.002)) for i, (h, b, s) in enumerate(GRID)]
    (fit,) = calibrate(records)
    assert fit.coef["ln_hidden"] == 0.0 and fit.coef["ln_tokens_per_step"] >= 0.0
    assert "ln_hidden" not in fit.features_used and "b, c >= 0" in fit.features_dropped["ln_hidden"]
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


def _cpu_run():
    """A tiny GPT-2 run on a CPU at MFU 0.5 (against its measured peak): the run a projection starts from."""
    from harness.config import build_spec
    from tests.conftest import tiny_raw

    spec = build_spec(tiny_raw("gpt2"))
    return make_record({"run_id": "cpu", "spec": spec.model_dump(mode="json"), "model": spec.model.model_dump(),
                        "dtype": "fp32", "device": {"type": "cpu", "name": "AMD EPYC"}, "seq_len": 16,
                        "batch_size": 2, "grad_accum": 1, "tokens_per_step": 32, "params": 1,
                        "achieved_flops_per_s": 1e9, "peak_flops_measured": 2e9, "mfu_measured": 0.5,
                        "mfu_datasheet": None, "world_size": 1})


def test_table_round_trip_and_estimate_uses_it(tmp_path):
    from harness.cost.estimate import EstimateOptions, estimate
    from harness.cost.plans import build_plan

    records = [rec(i, h, b, s, law(h, b * s, s) + (0.01 if i % 2 else -0.01)) for i, (h, b, s) in enumerate(GRID)]
    write_calibration(calibrate(records), tmp_path)
    fits = read_calibration(tmp_path)
    fit = find_fit(fits, "H100 SXM", "bf16")
    assert fit is not None and fit.n == 12 and fit.error > 0

    run = _cpu_run()
    e = estimate(run, build_plan({"phases": [{"tokens": 1e9}]}), None,
                 EstimateOptions.build(gpu="H100 SXM", dtype="bf16", utilization=0.9), calibration=fits, offers=[])
    assert e.utilization == pytest.approx(fit.predict(32, 32, 16))
    assert e.utilization_source.startswith("calibrated") and "extrapolated" in e.utilization_source
    assert e.utilization_range == pytest.approx([e.utilization - fit.error, e.utilization + fit.error])
    assert any("--utilization 0.9 not used" in n for n in e.notes)


# --- degenerate sweeps: what the runs do not vary is not fitted -------------------------------

def test_leave_one_out_error_at_the_features_used_by_hand():
    # one length and one batch: only the width varies. u = log2(hidden / 256) = 0, 1, 2.
    records = [rec(0, 256, 4, 128, 0.30), rec(1, 512, 4, 128, 0.40), rec(2, 1024, 4, 128, 0.44)]
    (fit,) = calibrate(records)
    assert fit.features_used == ["ln_hidden"]
    assert fit.coef["ln_tokens_per_step"] == 0.0 and fit.coef["ln_seq_len"] == 0.0  # exactly: not fitted
    assert "every run has tokens_per_step 512" in fit.features_dropped["ln_tokens_per_step"]
    assert "every run has seq_len 128" in fit.features_dropped["ln_seq_len"]
    # least squares in u: slope 0.14 / 2 = 0.07, 0.38 at u = 1, so MFU = 0.31 + 0.07 u
    assert fit.coef["ln_hidden"] == pytest.approx(0.07 / math.log(2))
    assert fit.coef["intercept"] == pytest.approx(0.31 - 0.07 * 8)  # ln 256 = 8 ln 2
    assert fit.rmse == pytest.approx(math.sqrt((0.01 ** 2 + 0.02 ** 2 + 0.01 ** 2) / 3))
    # each run from the line through the other two: 0.36 - 0.30, 0.37 - 0.40, 0.50 - 0.44
    loo = math.sqrt((0.06 ** 2 + 0.03 ** 2 + 0.06 ** 2) / 3)
    assert fit.loo_rmse == pytest.approx(loo) and fit.error == pytest.approx(loo)

    inside = fit.predict_sourced(512, 512, 128)
    assert inside.value == pytest.approx(0.38) and inside.error == pytest.approx(loo) and inside.note is None
    wider = fit.predict_sourced(4096, 512, 128)  # u = 4, ln 4 beyond the widest run
    assert wider.value == pytest.approx(0.31 + 0.07 * 4) == fit.predict(4096, 512, 128)
    assert wider.error == pytest.approx(loo * (1 + math.log(4)))
    assert "hidden 4096 outside the measured 256–1024 (1.39 in ln)" in wider.note and "seq_len" not in wider.note
    # a new length at the same batch: both never-varied features count, ln 4 each
    longer = fit.predict_sourced(512, 4 * 512, 512)
    assert longer.value == pytest.approx(0.38)  # no length term was invented
    assert longer.error == pytest.approx(loo * (1 + 2 * math.log(4)))
    assert "seq_len 512 outside the measured 128 " in longer.note and "tokens_per_step 2048" in longer.note


def test_one_length_gives_the_length_no_weight():
    # the README's sweep: width x batch at one length. Least squares on all three features gave
    # ln(seq_len) a weight here (the constant column shares the intercept); now it has none.
    noise = [0.005, -0.005, -0.005, 0.005, 0.005, -0.005]
    points = [(h, b, 128) for h in (256, 512, 1024) for b in (4, 16)]
    records = [rec(i, h, b, s, law(h, b * s, s) + e) for i, ((h, b, s), e) in enumerate(zip(points, noise))]
    (fit,) = calibrate(records)
    assert fit.features_used == ["ln_hidden", "ln_tokens_per_step"] and fit.coef["ln_seq_len"] == 0.0
    assert fit.features_dropped == {"ln_seq_len": "does not vary: every run has seq_len 128"}
    assert fit.error is not None and fit.error > fit.rmse > 0
    same = fit.predict_sourced(512, 8 * 128, 128)
    assert same.note is None and same.error == fit.error
    longer = fit.predict_sourced(512, 2 * 512, 512)  # tokens 1024: inside the measured 512–2048
    assert longer.note == ("extrapolated beyond the 6 calibration runs: seq_len 512 outside the measured 128 "
                           "(1.39 in ln) (error × 2.39)")
    assert longer.error == pytest.approx(fit.error * (1 + math.log(4)))


def test_one_width_gives_the_width_no_weight():
    points = [(512, b, s) for b in (4, 16) for s in (128, 512)]
    (fit,) = calibrate([rec(i, h, b, s, law(h, b * s, s)) for i, (h, b, s) in enumerate(points)])
    assert fit.features_used == ["ln_tokens_per_step", "ln_seq_len"] and fit.coef["ln_hidden"] == 0.0
    assert fit.features_dropped == {"ln_hidden": "does not vary: every run has hidden 512"}
    assert fit.coef["ln_tokens_per_step"] == pytest.approx(0.01) and fit.coef["ln_seq_len"] == pytest.approx(-0.02)
    assert fit.coef["intercept"] == pytest.approx(0.05 + 0.04 * math.log(512))
    wide = fit.predict_sourced(1024, 16 * 128, 128)
    assert wide.value == pytest.approx(law(512, 16 * 128, 128))  # the width is not extrapolated by a guess
    assert wide.note.startswith("extrapolated beyond the 4 calibration runs: hidden 1024 outside the measured 512")


def test_one_batch_keeps_tokens_and_drops_the_length_that_moves_with_it():
    # batch 4 throughout: ln tokens = ln 4 + ln seq, so the two cannot be told apart. With
    # MFU = 0.05 + 0.04 ln h + 0.02 ln t - 0.01 ln s and ln s = ln t - ln 4:
    # MFU = (0.05 + 0.01 ln 4) + 0.04 ln h + 0.01 ln t.
    def one_batch_law(h, t, s):
        return 0.05 + 0.04 * math.log(h) + 0.02 * math.log(t) - 0.01 * math.log(s)

    points = [(h, 4, s) for h in (256, 512, 1024) for s in (128, 512)]
    (fit,) = calibrate([rec(i, h, b, s, one_batch_law(h, b * s, s)) for i, (h, b, s) in enumerate(points)])
    assert fit.features_used == ["ln_hidden", "ln_tokens_per_step"] and fit.coef["ln_seq_len"] == 0.0
    assert fit.coef["ln_tokens_per_step"] == pytest.approx(0.01) and fit.coef["ln_hidden"] == pytest.approx(0.04)
    assert fit.coef["intercept"] == pytest.approx(0.05 + 0.01 * math.log(4))
    assert fit.relations == {"ln_seq_len": {"intercept": pytest.approx(-math.log(4)),
                                            "ln_tokens_per_step": pytest.approx(1.0)}}
    assert fit.features_dropped["ln_seq_len"].startswith("one batch: every run has tokens_per_step / seq_len = 4")
    on_line = fit.predict_sourced(512, 4 * 256, 256)
    assert on_line.value == pytest.approx(one_batch_law(512, 1024, 256)) and on_line.note is None
    # batch 16 at length 128: tokens 2048 and length 128 are each inside their range, the pair is not
    other = fit.predict_sourced(512, 16 * 128, 128)
    assert other.note == ("extrapolated beyond the 6 calibration runs: batch 16 (tokens_per_step / seq_len) "
                          "against the measured 4 (1.39 in ln) (error × 2.39)")
    assert other.error == pytest.approx(fit.error * (1 + math.log(4)))


def test_two_runs_fit_with_an_unknown_error():
    (fit,) = calibrate([rec(0, 256, 4, 128, 0.30), rec(1, 512, 4, 128, 0.40)])
    assert fit.features_used == ["ln_hidden"] and fit.rmse == pytest.approx(0, abs=1e-12)
    assert fit.loo_rmse is None and fit.error is None
    p = fit.predict_sourced(1024, 512, 128)
    assert p.value == pytest.approx(0.50) and p.error is None
    assert p.note.endswith("(error unknown: fewer than 3 runs)")


def test_table_records_its_features_and_refuses_an_older_one(tmp_path):
    import json

    points = [(512, b, 128) for b in (4, 8, 16)]
    write_calibration(calibrate([rec(i, h, b, s, law(h, b * s, s)) for i, (h, b, s) in enumerate(points)]), tmp_path)
    data = json.loads((tmp_path / "calibration.json").read_text())
    assert data["fits"][0]["features_used"] == ["ln_tokens_per_step"]
    assert set(data["fits"][0]["features_dropped"]) == {"ln_hidden", "ln_seq_len"}
    (fit,) = read_calibration(tmp_path)
    assert fit.features_used == ["ln_tokens_per_step"] and fit.error == pytest.approx(0, abs=1e-9)
    for f in data["fits"]:  # as written before fits recorded their features
        for key in ("features_used", "features_dropped", "relations"):
            del f[key]
    (tmp_path / "calibration.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="older harness.*run `harness calibrate` again"):
        read_calibration(tmp_path)


# --- published measurements beside local runs (harness calibrate --with-published) -------------

def test_published_rows_join_the_local_group_each_marked():
    from harness.cost.evidence import load_published

    local = [rec(i, h, b, s, law(h, b * s, s)) for i, (h, b, s) in enumerate(GRID)]
    (alone,) = calibrate(local)
    fits = {(f.gpu, f.dtype): f for f in calibrate(local, published=True)}
    h100 = fits[("H100 SXM", "bf16")]
    usable = [r for r in load_published() if r.gpu == "H100 SXM" and r.dtype == "bf16"
              and r.mfu() is not None and r.seq_len and r.micro_batch]
    assert h100.device == "NVIDIA H100 80GB HBM3"  # joined the local group, not a new one
    assert h100.n == 12 + len(usable) and len(h100.published) == len(usable)
    assert sorted(h100.published) == sorted(f"published:{r.id}" for r in usable)
    assert h100.runs[:12] == alone.runs and all(p in h100.runs for p in h100.published)
    assert h100.ranges["hidden"][1] == max(r.d_model for r in usable)  # the published sizes widen the range
    # GPUs with published rows and no local run get a published-only fit, named by the datasheet row
    a100 = fits[("A100", "bf16")]
    assert a100.device == "A100" and a100.n == len(a100.published) >= 2
    # the MFU fitted is ours: llm-foundry's 7b 2048 row as re-expressed, not as printed
    row = next(r for r in usable if r.id == "mpt-7b-2048-8xh100")
    i = h100.runs.index("published:mpt-7b-2048-8xh100")
    assert row.mfu() < row.stated_mfu and i >= 12
    assert calibrate(local, published=False) == [alone]


def test_calibration_outranks_published_in_the_ladder(tmp_path):
    from harness.cost.estimate import EstimateOptions, estimate
    from harness.cost.plans import build_plan

    fits = calibrate([rec(i, h, b, s, law(h, b * s, s)) for i, (h, b, s) in enumerate(GRID)])
    run = _cpu_run()
    plan = build_plan({"phases": [{"tokens": 1e9}]})
    options = EstimateOptions.build(gpu="H100 SXM", dtype="bf16")
    calibrated = estimate(run, plan, None, options, calibration=fits, offers=[])
    assert calibrated.utilization_source.startswith("calibrated")
    published = estimate(run, plan, None, options, calibration=[], offers=[])
    assert published.utilization_source.startswith("published: ")
    mixed = calibrate([], published=True)
    both = estimate(run, plan, None, options, calibration=mixed, offers=[])
    assert both.utilization_source.startswith("calibrated: fit of ") and "of them published" in both.utilization_source


def test_calibrate_cli_with_published(tmp_path):
    import contextlib
    import io
    import json

    from harness.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["calibrate", "--with-published", "--json", "--results-dir", str(tmp_path)]) == 0
    fits = json.loads(buf.getvalue())["fits"]
    assert {f["gpu"] for f in fits} >= {"A100", "H100 SXM", "V100 SXM2"}
    assert all(f["published"] and set(f["published"]) <= set(f["runs"]) for f in fits)
    assert (tmp_path / "calibration.json").exists()
    assert main(["calibrate", "--results-dir", str(tmp_path / "empty")]) == 2  # no runs, no --with-published
