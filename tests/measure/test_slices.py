import math

import pytest

from harness.build import build_model, count_params
from harness.config import build_spec
from harness.errors import ConfigError, HarnessError
from harness.measure.slices import (GATHERED_BYTES_PER_PARAM, STATE_BYTES_PER_PARAM, check_slices,
                            depth_sliced_record, extrapolate, fit_linear, measure_depths, measure_slices,
                            min_devices,
                            parse_slices, run_in_subprocess, slice_spec)
from harness.results.store import save
from tests.conftest import make_record, tiny_raw

GIB = 2**30


def spec_of(family="gpt2", layers=8, **model):
    raw = tiny_raw(family)
    raw["model"].update(layers=layers, **model)
    raw["measure"] = {"warmup_steps": 0, "steps": 2}
    return build_spec(raw)


# --------------------------------------------------------------------------------------------
# the fit


def test_fit_recovers_known_terms_exactly():
    fit = fit_linear([1, 2, 4], [0.25 + 0.1 * x for x in (1, 2, 4)])
    assert fit.fixed == pytest.approx(0.25) and fit.per_layer == pytest.approx(0.1)
    assert fit.residual == pytest.approx(0, abs=1e-12) and fit.max_rel_residual == pytest.approx(0, abs=1e-12)
    assert (fit.n, fit.dof) == (3, 1)
    assert fit.predict(48) == pytest.approx(0.25 + 4.8)


def test_two_points_have_no_degrees_of_freedom():
    fit = fit_linear([1, 2], [3.0, 5.0])
    assert (fit.fixed, fit.per_layer, fit.residual, fit.dof) == (pytest.approx(1.0), pytest.approx(2.0), 0.0, 0)


def test_noisy_points_leave_a_relative_residual():
    xs, ys = [1, 2, 3, 4], [2.0, 3.3, 3.7, 5.0]
    fit = fit_linear(xs, ys)
    # ordinary least squares by hand: slope = Sxy / Sxx, intercept = mean y - slope * mean x
    mx, my = 2.5, sum(ys) / 4
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    assert fit.per_layer == pytest.approx(slope) and fit.fixed == pytest.approx(my - slope * mx)
    relative = [abs(y - fit.predict(x)) / y for x, y in zip(xs, ys)]
    assert fit.residual == pytest.approx(math.sqrt(sum(r * r for r in relative) / 4)) and fit.residual > 0
    assert fit.max_rel_residual == pytest.approx(max(relative))


@pytest.mark.parametrize("xs, ys", [([2, 2], [1.0, 2.0]), ([1], [1.0]), ([1, 2], [1.0, 0.0]), ([1, 2], [1.0])])
def test_fit_refuses_what_is_not_a_line(xs, ys):
    with pytest.raises(ValueError):
        fit_linear(xs, ys)


# --------------------------------------------------------------------------------------------
# slice specs


def test_slice_keeps_the_width_and_everything_else():
    spec = spec_of("llama", layers=6)
    sliced = slice_spec(spec, 2)
    assert sliced.model.layers == 2
    assert sliced.model.model_dump(exclude={"layers"}) == spec.model.model_dump(exclude={"layers"})
    assert (sliced.train, sliced.measure, sliced.device) == (spec.train, spec.measure, spec.device)


def test_t5_slices_encoder_and_decoder_together():
    sliced = slice_spec(spec_of("t5", layers=4), 2)
    assert (sliced.model.layers, sliced.model.decoder_layers) == (2, 2)
    assert sliced.train.decoder_seq_len == 16


def test_t5_with_unequal_stacks_is_refused():
    with pytest.raises(ConfigError, match="slices.depths.*3 encoder and 5 decoder"):
        slice_spec(spec_of("t5", layers=3, decoder_layers=5), 1)


def test_a_preset_slices_at_full_width():
    spec = build_spec({"model": {"preset": "gpt2-xl"}})
    sliced = slice_spec(spec, 1)
    assert (sliced.model.preset, sliced.model.layers, sliced.model.hidden) == ("gpt2-xl", 1, 1600)


@pytest.mark.parametrize("slices, match", [
    ([0, 2], "allowed: 1..7"), ([2, 8], "allowed: 1..7"), ([1, 9], "allowed: 1..7"),
    ([2], "at least 2 distinct"), ([2, 2], "repeated"), ([1.5, 2], "allowed: 1..7"),
])
def test_bad_slices_name_the_option(slices, match):
    with pytest.raises(ConfigError, match=match) as err:
        check_slices(spec_of(layers=8), slices)
    assert err.value.field == "slices.depths"


def test_parse_slices():
    assert parse_slices("4,1,2") == (4, 1, 2)
    with pytest.raises(ConfigError, match="slices.depths"):
        parse_slices("1,two")


# --------------------------------------------------------------------------------------------
# extrapolation, on hand-made records


def fake_record(spec, *, step_s, memory, memory_total=32 * GIB, device="cpu"):
    """A record of a slice of `spec` whose figures slices.py reads are on exact lines in depth:
    the committed fixture with those figures changed."""
    layers = spec.model.layers
    hardware = 1000 + 1200 * layers
    return make_record({
        "run_id": f"slice-{layers}", "median_step_s": step_s, "peak_memory_bytes": memory,
        "model": spec.model.model_dump(mode="json"), "spec": spec.model_dump(mode="json"),
        "model_flops_per_step": 1000 * layers, "flops.model.per_rank_per_step": 1000 * layers,
        "hardware_flops_per_step": hardware, "flops.hardware.per_rank_per_step": hardware,
        "flops.hardware.by_op": {"aten.mm": hardware}, "flops.hardware.counted_on": "cpu model, untimed step",
        "flops.uncounted_ops": {"aten.add": 3 + 2 * layers},
        "params": 5000 + 100 * layers, "params_non_embedding": 100 * layers, "tokens_per_step": 32,
        "peak_memory_method": "process peak RSS (ru_maxrss)", "step_times_s": [step_s] * 2,
        "total_measured_s": 2 * step_s, "peak_flops_datasheet": None, "peak_flops_measured": 1e10,
        "peaks.measured.flops_per_s": 1e10, "warnings": [], "provenance": {"step_times_s": "measured"},
        "world_size": 1,
        "energy": {"joules_per_step": 10.0 * step_s, "joules_per_token": 10.0 * step_s / 32, "avg_watts": 10.0,
                   "components": [{"component": "cpu", "energy_j": 20.0 * step_s, "avg_w": 10.0,
                                   "method": "estimated", "detail": "test: 10 W", "joules_per_step": 10.0 * step_s}],
                   "methods": {"cpu": "estimated"}, "estimated": True},
        "timing.clock": "perf_counter",
        "env.device": {"type": device, "name": "test device", "memory_bytes": memory_total},
        "device.type": device,
    })


def runner_for(step_fixed=0.5, step_per_layer=0.25, mem_fixed=4 * GIB, mem_per_layer=GIB, **kwargs):
    """A runner that returns a hand-made record on an exact line, and remembers what it ran:
    timed runs in `calls`, memory runs (those given an environment) in `memory_calls`."""
    calls, memory_calls = [], []

    def run(sliced, env=None):
        layers = sliced.model.layers
        (calls if env is None else memory_calls).append((sliced, env) if env else sliced)
        record = fake_record(sliced, step_s=step_fixed + step_per_layer * layers,
                             memory=mem_fixed + mem_per_layer * layers, **kwargs)
        if env is not None:
            record = record.evolve(run_id=f"memory-{layers}",
                                   peak_memory_method=record.peak_memory_method + ", glibc mmap threshold fixed")
        return record

    run.calls, run.memory_calls = calls, memory_calls
    return run


def test_measure_slices_runs_each_slice_shallowest_first():
    runner = runner_for()
    results = measure_slices(spec_of(layers=8), [4, 1, 2], runner=runner)
    assert [r.layers for r in results] == [1, 2, 4]
    assert [s.model.layers for s in runner.calls] == [1, 2, 4]
    assert results[0].step_s == 0.75 and results[0].peak_memory_bytes == 5 * GIB
    assert results[2].run_id == "slice-4" and results[2].params == 5400


def test_repeats_go_round_by_round_and_keep_the_median_step_and_memory():
    # (step factor, memory offset) of each call in turn: round 1 is slowed down by other load,
    # round 2 is a fast outlier, round 3 is on the line; memory jitters by +-0.1 GiB around it.
    jitter = iter([(1.5, 0.1), (1.5, -0.1), (1.5, 0.0),  # round 1: layers 1, 2, 4
                   (0.8, -0.1), (0.8, 0.0), (0.8, 0.1),  # round 2
                   (1.0, 0.0), (1.0, 0.1), (1.0, -0.1)])  # round 3
    calls = []

    def runner(sliced):
        layers = sliced.model.layers
        slow, extra = next(jitter)
        calls.append(layers)
        record = fake_record(sliced, step_s=(0.5 + 0.25 * layers) * slow,
                             memory=int((4 + layers + extra) * GIB), device="cuda")
        return record.evolve(run_id=f"slice-{layers}-{len(calls)}")

    spec = spec_of(layers=8)
    results = measure_slices(spec, [1, 2, 4], repeats=3, runner=runner)
    assert calls == [1, 2, 4] * 3
    assert [r.step_s for r in results] == [0.75, 1.0, 1.5]  # round 3's: neither outlier sets it
    assert [r.peak_memory_bytes for r in results] == [5 * GIB, 6 * GIB, 8 * GIB]  # the median of three
    assert [r.run_id for r in results] == ["slice-1-7", "slice-2-8", "slice-4-9"]
    assert [len(r.runs) for r in results] == [3, 3, 3]
    e = extrapolate(spec, results)
    assert e.predicted_step_s == pytest.approx(2.5) and e.predicted_peak_memory_bytes == 12 * GIB
    assert e.repeats == 3 and "median" in e.step_statistic and "median" in e.memory_statistic
    first = e.slices[0]
    assert first.run_ids == ["slice-1-1", "slice-1-4", "slice-1-7"]
    assert first.median_step_s_runs == pytest.approx([1.125, 0.6, 0.75])
    record = depth_sliced_record(spec, results, e)
    assert "3 runs each" in record.warnings[0] and "slice-4-9" in record.warnings[0]


def test_on_cpu_each_depth_has_a_memory_run_of_its_own_in_the_first_round():
    from harness.measure.slices import FIXED_MMAP_ENV, MEMORY_RUN_MEASURE

    calls = []

    def runner(sliced, env=None):
        layers = sliced.model.layers
        calls.append((layers, env is not None))
        # the timed runs see a fragmented heap, superlinear in depth; the memory run a line
        memory = (4 + layers) * GIB if env else int((4 + layers + 0.05 * layers**2) * GIB)
        record = fake_record(sliced, step_s=0.5 + 0.25 * layers, memory=memory)
        record = record.evolve(run_id=f"{'memory' if env else 'timed'}-{layers}-{len(calls)}")
        if env:
            assert env == FIXED_MMAP_ENV and env["MALLOC_MMAP_THRESHOLD_"] == "65536"
            assert sliced.measure.model_dump() | MEMORY_RUN_MEASURE == sliced.measure.model_dump()
            record = record.evolve(
                peak_memory_method=record.peak_memory_method + ", glibc mmap threshold fixed at 65536 B")
        return record

    spec = spec_of(layers=8)
    results = measure_slices(spec, [1, 2, 4], repeats=2, runner=runner)
    assert calls == [(1, False), (1, True), (2, False), (2, True), (4, False), (4, True),
                     (1, False), (2, False), (4, False)]
    assert [r.peak_memory_bytes for r in results] == [5 * GIB, 6 * GIB, 8 * GIB]
    assert [r.memory_record.run_id for r in results] == ["memory-1-2", "memory-2-4", "memory-4-6"]
    assert [len(r.runs) for r in results] == [2, 2, 2]  # the memory run's step time is not used
    e = extrapolate(spec, results)
    assert e.predicted_peak_memory_bytes == 12 * GIB and e.residual_memory == pytest.approx(0, abs=1e-12)
    assert "mmap threshold fixed" in e.peak_memory_method and "64 KiB" in e.memory_statistic
    assert e.slices[0].memory_run_id == "memory-1-2"
    record = depth_sliced_record(spec, results, e)
    assert "mmap threshold fixed" in record.peak_memory_method


def test_the_full_depth_is_measured_alike_when_asked():
    runner = runner_for()
    measured = measure_depths(spec_of(layers=8), [8, 1, 2], repeats=2, runner=runner)
    assert [s.model.layers for s in runner.calls] == [1, 2, 8, 1, 2, 8]
    assert measured[8].step_s == 0.5 + 0.25 * 8 and measured[8].record.params == 5800


@pytest.mark.parametrize("repeats", [0, -1, True, 1.5])
def test_bad_repeats_name_the_option(repeats):
    with pytest.raises(ConfigError, match="slices.repeats"):
        measure_slices(spec_of(layers=8), [1, 2], repeats=repeats, runner=runner_for())


def test_a_failed_slice_is_named():
    def runner(sliced):
        raise HarnessError("exit code 2: harness: error: out of memory")

    with pytest.raises(HarnessError, match="depth slice of 1 layers failed: exit code 2: .*out of memory"):
        measure_slices(spec_of(layers=8), [1, 2], runner=runner)


def test_a_child_that_fails_reports_its_last_stderr_line(tmp_path):
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\necho 'building the model' >&2\necho 'harness: error: no memory' >&2\nexit 2\n")
    fake_python.chmod(0o755)
    with pytest.raises(HarnessError, match="^exit code 2: harness: error: no memory$"):
        run_in_subprocess(spec_of(layers=2), python=str(fake_python))


def test_extrapolation_predicts_the_line_and_the_devices_needed():
    spec = spec_of(layers=8)
    results = measure_slices(spec, [1, 2, 4], runner=runner_for(memory_total=16 * GIB))
    e = extrapolate(spec, results)
    assert e.predicted_step_s == pytest.approx(0.5 + 0.25 * 8)
    assert e.predicted_peak_memory_bytes == 12 * GIB
    assert e.residual == pytest.approx(0, abs=1e-12) and e.residual_memory == pytest.approx(0, abs=1e-12)
    assert e.fit.step_s_fixed == pytest.approx(0.5) and e.fit.step_s_per_layer == pytest.approx(0.25)
    assert e.fit.memory_bytes_per_layer == pytest.approx(GIB)
    assert [s.layers for s in e.slices] == [1, 2, 4] and e.slices[0].run_id == "slice-1"
    assert e.full_layers == 8 and e.dof == 1 and e.warnings == []
    params = count_params(build_model(spec.model, "meta")).total
    assert e.params == params
    assert e.params_per_layer == pytest.approx((params - 5400) / 4)
    devices = e.min_devices
    assert devices.without_sharding == 1 and devices.device_memory_bytes == 16 * GIB


def test_two_slices_and_a_long_reach_are_warned_about():
    spec = spec_of(layers=48)
    e = extrapolate(spec, measure_slices(spec, [1, 2], runner=runner_for()))
    assert e.dof == 0 and e.extrapolation_factor == 24
    assert any("2 slices" in w for w in e.warnings) and any("24x" in w for w in e.warnings)


def test_a_per_layer_time_faster_than_the_device_is_called_noise():
    spec = spec_of(layers=8)
    # a layer adds 1000 FLOPs and 0.25 s: 4000 FLOP/s, fine against 1e10, impossible against 3000
    e = extrapolate(spec, measure_slices(spec, [1, 2, 4], runner=runner_for()))
    assert e.per_layer_flops_per_s == pytest.approx(4000) and not any("implies" in w for w in e.warnings)
    slow_device = runner_for()

    def runner(sliced, env=None):
        return slow_device(sliced, env).evolve(peak_flops_measured=3000.0)

    e = extrapolate(spec, measure_slices(spec, [1, 2, 4], runner=runner))
    assert any("implies 4e-06 GFLOP/s per layer, above the measured matmul peak" in w for w in e.warnings)


def test_min_devices_with_and_without_sharding():
    # 1e9 params x 16 B = 16e9 B of state; 20e9 predicted, so 4e9 unsharded; 1e7 params per layer
    # gathered at 8 B = 0.08e9. On 10e9 devices: 16e9 / (10e9 - 4e9 - 0.08e9) = 2.7 -> 3 devices.
    out = min_devices(20e9, 10**9, 10**7, 10 * 10**9, "test")
    assert out.state_bytes == 10**9 * STATE_BYTES_PER_PARAM == 16e9
    assert out.unsharded_bytes == 4e9 and out.gathered_layer_bytes == 10**7 * GATHERED_BYTES_PER_PARAM
    assert out.without_sharding is None and "exceeds one device" in out.without_sharding_reason
    assert out.full_sharding == 3 and out.full_sharding_reason is None
    assert "16" in str(out.state_bytes_per_param) and "Adam" in out.state_bytes_per_param_source


def test_min_devices_when_even_infinite_sharding_cannot_fit():
    out = min_devices(20e9, 10**8, 10**6, 10 * 10**9, "test")  # 1.6e9 state: 18.4e9 is not sharded
    assert out.full_sharding is None and "infinite sharding" in out.full_sharding_reason
    assert out.without_sharding is None


def test_min_devices_when_it_fits():
    out = min_devices(5e9, 10**8, 10**6, 10 * 10**9, "test")
    assert (out.without_sharding, out.full_sharding) == (1, 1)


# --------------------------------------------------------------------------------------------
# the record that stands for the full model


def test_depth_sliced_record_stands_for_the_full_model(tmp_path):
    from harness.flops.count import count_model_flops

    spec = spec_of(layers=8)
    results = measure_slices(spec, [1, 2, 4], runner=runner_for())
    record = depth_sliced_record(spec, results)
    count, params = count_model_flops(spec)
    predicted = 0.5 + 0.25 * 8
    assert record.model.layers == 8 and record.spec.model.layers == 8
    assert record.params == params.total and record.params_non_embedding == params.non_embedding
    assert record.config_hash == spec.config_hash() and record.run_id not in {r.run_id for r in results}
    assert record.model_flops_per_step == count.total
    assert record.hardware_flops_per_step == 1000 + 1200 * 8  # along the slices' exact line
    assert record.flops.hardware.by_op == {"aten.mm": 1000 + 1200 * 8}
    assert record.flops.uncounted_ops == {"aten.add": 3 + 2 * 8}
    assert record.median_step_s == pytest.approx(predicted) and record.step_times_s == [record.median_step_s]
    assert record.warmup_times_s == [] and record.iqr_step_s is None and record.cv_step is None
    assert record.tokens_per_s == pytest.approx(32 / predicted)
    assert record.samples_per_s == pytest.approx(2 / predicted)
    assert record.achieved_flops_per_s == pytest.approx(count.total / predicted)
    assert record.mfu_measured == pytest.approx(count.total / predicted / 1e10)
    assert record.hfu_measured == pytest.approx((1000 + 1200 * 8) / predicted / 1e10)
    assert record.mfu_datasheet is None
    assert record.peak_memory_bytes == 12 * GIB and "predicted" in record.peak_memory_method
    assert record.provenance["step_times_s"] == "predicted from depth slices"
    assert record.provenance["peak_memory_bytes"] == "predicted from depth slices"
    assert record.energy.joules_per_step == pytest.approx(10.0 * predicted)  # the slice's 10 W
    assert record.depth_extrapolation.predicted_step_s == pytest.approx(predicted)
    assert record.depth_extrapolation.hardware_flops_per_step == 1000 + 1200 * 8
    assert "depth-sliced" in record.warnings[0]
    save(record, tmp_path)  # the store takes it as it is


def test_depth_slices_from_the_command_line_store_the_slices_and_the_prediction(tmp_path):
    import json

    from harness.results.store import load_records
    from tests.conftest import tiny_raw
    from tests.cli.test_cli import harness, write_config

    raw = tiny_raw("gpt2", batch_size=4, seq_len=64)
    # wide enough that a layer's time stands well above the noise of a shared machine
    raw["model"].update(layers=4, hidden=256, ffn=1024, max_positions=64)
    raw["measure"] = {"warmup_steps": 1, "steps": 3, "energy": False}
    out = harness("run", str(write_config(tmp_path, raw)), "--depth-slices", "1,3", "--json",
                  "--results-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    d = record["depth_extrapolation"]
    assert [s["layers"] for s in d["slices"]] == [1, 3] and record["model"]["layers"] == 4
    assert record["step_times_s"] == [d["predicted_step_s"]]
    stored = {r.run_id: r for r in load_records(tmp_path / "r")}
    assert {i for s in d["slices"] for i in s["run_ids"]} | {record["run_id"]} == set(stored)  # slices kept too
    slices = [stored[s["run_ids"][0]] for s in d["slices"]]
    assert [r.model.layers for r in slices] == [1, 3] and slices[0].params < slices[1].params < record["params"]
    assert slices[0].flops.model.per_rank_per_step < slices[1].flops.model.per_rank_per_step
    assert all(r.median_step_s > 0 and r.env.device.type == "cpu" for r in slices)
    # each slice's peak memory comes from a memory run of its own (a fresh process with glibc's mmap
    # threshold fixed), which the timed runs' records do not carry
    assert all(s["memory_run_id"] is not None for s in d["slices"]) and "mmap threshold fixed" in d["memory_statistic"]
    assert all("mmap threshold" not in r.peak_memory_method for r in slices)
    for args, option in [(("--depth-slices", "1,8"), "--depth-slices"),
                         (("--depth-slices", "1,2", "--slice-repeats", "0"), "--slice-repeats"),
                         (("--slice-repeats", "2"), "--slice-repeats")]:
        bad = harness("run", str(write_config(tmp_path, raw)), *args, cwd=tmp_path)
        assert bad.returncode == 2 and option in bad.stderr and bad.stderr.count("\n") == 1, (args, bad.stderr)
