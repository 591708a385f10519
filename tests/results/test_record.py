"""The typed run record: v1 records migrate forward, per-world and per-rank names, the one
derivation (Measurement -> RunRecord.from_measurement), and validation that names the field."""

import copy
import json
import statistics
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from harness.config import build_spec
from harness.errors import ConfigError
from harness.results import api as results
from harness.results import store
from harness.results.record import (PREDICTED_PROVENANCE, PROVENANCE, SCHEMA_VERSION, AnalyticFlops,
                                    DatasheetPeakInfo, DepthExtrapolation, DeviceInfo, Environment, FlopSummary,
                                    Measurement, MeasuredPeakInfo, RunRecord, World)
from harness.steps import StepTimes
from tests.conftest import fixture_json, make_record, tiny_raw
from tests.results.test_store import make_v1_database

FIXTURES = ["record_v1.json", "record_v1_depth_sliced.json"]
V1_PER_STEP = {"record_v1.json": (1459617792, 1468006400),            # model, hardware: one rank's
               "record_v1_depth_sliced.json": (94371840, 95420416)}


# ---------------------------------------------------------------------------------------------
# (a) the committed v1 fixtures load, renamed, and round-trip


@pytest.mark.parametrize("name", FIXTURES)
def test_a_v1_fixture_loads_with_its_per_rank_count_renamed(name):
    data = fixture_json(name)
    assert data["schema_version"] == 1 and "per_rank_per_step" not in data["flops"]["model"]
    record = RunRecord.from_json(data, name)
    model_count, hardware_count = V1_PER_STEP[name]
    assert data["flops"]["model"]["per_step"] == model_count  # the fixture is what we think it is
    assert record.flops.model.per_rank_per_step == model_count
    assert record.flops.hardware.per_rank_per_step == hardware_count
    assert record.flops.model.forward_by_module is None  # v1 never counted it: unknown, not empty
    assert record.schema_version == SCHEMA_VERSION == 3
    assert data == fixture_json(name)  # migrating never changes the caller's dict


@pytest.mark.parametrize("name", FIXTURES)
def test_a_v1_fixture_loses_nothing_else(name):
    v1 = fixture_json(name)
    expected = copy.deepcopy(v1)
    for part in ("model", "hardware"):
        summary = expected["flops"][part]
        summary["per_rank_per_step"] = summary.pop("per_step")
        summary["forward_by_module"] = None
    expected["schema_version"] = 3
    # v3: every older record is of a dense model, whose active parameters are all of them
    expected["params_active"], expected["params_active_non_embedding"] = v1["params"], v1["params_non_embedding"]
    expected["moe"] = None
    expected["flops"]["analytic"].setdefault("active_non_embedding_params", None)
    for model in (expected["model"], expected["spec"]["model"]):  # family hf's keys: not used
        model.update(model_type=None, config=None)
    expected["spec"]["train"].update(pack=False, doc_len=None)  # packing: not used
    if expected.get("energy") is not None:   # fields added after v1, with their defaults
        expected["energy"].setdefault("note", None)
        for field in ("devices", "host_gpus", "host_share", "host_share_method", "per_device", "host_per_device"):
            expected["energy"].setdefault(field, None)  # per-device attribution: unknown in v1
    expected["timing"].setdefault("depth_slices", None)
    expected["peaks"].update(datasheet_also=[], measured_also=[])  # peaks of other precisions: none in v1
    expected.update(utilization=[], fp8=None)
    expected["spec"]["measure"].setdefault("max_minutes", None)  # added with the duration check
    assert RunRecord.from_json(v1, name).to_dict() == expected


@pytest.mark.parametrize("name", FIXTURES)
def test_the_json_form_round_trips(name):
    record = RunRecord.from_json(fixture_json(name), name)
    again = RunRecord.from_json(record.to_dict(), "round trip")
    assert again == record and again.to_dict() == record.to_dict()
    # through text too, as the store keeps it
    assert RunRecord.from_json(json.loads(json.dumps(record.to_dict())), "text") == record


def test_the_depth_sliced_fixture_reads_as_predicted():
    record = RunRecord.from_json(fixture_json("record_v1_depth_sliced.json"))
    assert record.how_timed == "predicted from depth slices"
    assert record.depth_extrapolation is not None and record.timing.depth_slices == [1, 2, 3]
    assert record.iqr_step_s is None and record.cv_step is None
    assert RunRecord.from_json(fixture_json()).how_timed == "measured"


# ---------------------------------------------------------------------------------------------
# (b) v1 files and v1 database rows import and load as records


def test_a_v1_record_file_imports_and_loads_as_a_record(tmp_path):
    v1 = fixture_json()
    path = tmp_path / "old.json"
    path.write_text(json.dumps(v1))
    root = tmp_path / "results"
    result = results.import_files([path], root)
    assert result.added == (v1["run_id"],) and result.skipped == ()
    (loaded,) = store.load_records(root)
    assert isinstance(loaded, RunRecord) and loaded.run_id == v1["run_id"]
    assert loaded.flops.model.per_rank_per_step == v1["flops"]["model"]["per_step"]
    assert loaded == RunRecord.from_json(v1)
    assert results.get(v1["run_id"][:12], root) == loaded
    stored = json.loads((root / "runs" / f"{v1['run_id']}.json").read_text())  # written in the current form
    assert stored["schema_version"] == 3 and "per_step" not in stored["flops"]["model"]
    assert stored == loaded.to_dict()


def test_a_v1_database_row_loads_as_a_record(tmp_path):
    plain, sliced = fixture_json(), fixture_json("record_v1_depth_sliced.json")
    make_v1_database(tmp_path / "harness.db", [plain, sliced])
    loaded = {r.run_id: r for r in store.load_records(tmp_path)}
    assert set(loaded) == {plain["run_id"], sliced["run_id"]}
    for data in (plain, sliced):
        record = loaded[data["run_id"]]
        assert record.schema_version == 3
        assert record.flops.model.per_rank_per_step == data["flops"]["model"]["per_step"]
        assert record == RunRecord.from_json(data)
    frame = results.load(tmp_path, with_record=True)
    assert [r.run_id for r in frame["record"]] == list(frame["run_id"])
    assert all(isinstance(r, RunRecord) for r in frame["record"])


# ---------------------------------------------------------------------------------------------
# (c) world figures and one rank's


def test_a_two_rank_record_names_world_and_rank_figures_apart():
    one_rank = V1_PER_STEP["record_v1.json"][0]
    record = make_record({"world_size": 2, "strategy": "ddp", "model_flops_per_step": 2 * one_rank,
                          "tokens_per_step": 512, "achieved_flops_per_s": 3.0e10})
    assert record.flops.model.per_rank_per_step == one_rank         # one rank's count
    assert record.model_flops_per_step == 2 * one_rank               # the world's
    assert record.achieved_flops_per_s_per_device == 1.5e10 == record.achieved_flops_per_s / 2
    assert record.tokens_per_device_step == 256
    single = make_record()
    assert single.world_size == 1 and single.achieved_flops_per_s_per_device == single.achieved_flops_per_s
    assert single.model_flops_per_step == single.flops.model.per_rank_per_step


# ---------------------------------------------------------------------------------------------
# (d) the one derivation


SPEC = build_spec(tiny_raw("gpt2"))  # batch 2 x seq 16, grad_accum 1, 1 warm-up + 3 steps, cpu
MODEL_FLOPS, HARDWARE_FLOPS = 6_000_000_000, 6_600_000_000   # one rank's, per step
DATASHEET, MEASURED_PEAK = 1.0e13, 8.0e12


def measurement(*, times=StepTimes((0.7,), (0.5, 1.0, 1.5)), world=World(), datasheet=DATASHEET,
                how_timed="measured", spec=SPEC, **changes) -> Measurement:
    fields = dict(
        spec=spec, run_id="m-1", created_at=datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=timezone.utc),
        times=times,
        model_flops=FlopSummary(per_rank_per_step=MODEL_FLOPS, by_op={"aten.mm": MODEL_FLOPS},
                                forward_by_module={"h.*.attn": 1_000}, counted_on="meta"),
        hardware_flops=FlopSummary(per_rank_per_step=HARDWARE_FLOPS, counted_on="cpu", recomputation_counted=True),
        analytic=AnalyticFlops(six_n_per_step=1.0, palm_per_step=2.0, kaplan_forward_per_step=3.0,
                               megatron_per_step=4.0, megatron_recompute_per_step=5.0, non_embedding_params=6),
        uncounted_ops={"aten.add": 3}, params=1000, params_non_embedding=600,
        datasheet=DatasheetPeakInfo(flops_per_s=datasheet, gpu="X" if datasheet else None, mode="fp32"),
        measured_peak=MeasuredPeakInfo(flops_per_s=MEASURED_PEAK, matmul_size=512),
        energy=None, env=Environment(tf32_matmul=False, extra_fact="kept"), device=DeviceInfo(type="cpu", name="test cpu"),
        world=world, peak_memory_bytes=4096, peak_memory_method="rss", clock="fake", optimizer="AdamW (foreach)",
        how_timed=how_timed)
    fields.update(changes)
    return Measurement(**fields)


def test_from_measurement_derives_every_figure_by_hand():
    r = RunRecord.from_measurement(measurement())
    # times: 0.5, 1.0, 1.5 s -> total 3 s, median 1 s, inclusive quartiles 0.75 and 1.25, CV 0.5 / 1.0
    assert r.step_times_s == [0.5, 1.0, 1.5] and r.warmup_times_s == [0.7]
    assert (r.median_step_s, r.total_measured_s) == (1.0, 3.0)
    assert r.iqr_step_s == pytest.approx(0.5) and r.cv_step == pytest.approx(0.5)
    # world 1: 32 tokens and 2 samples per step; rates are 3 steps' worth over 3 s
    assert r.tokens_per_step == 32 and r.tokens_per_s == 32.0 and r.samples_per_s == 2.0
    assert r.per_device_tokens_per_s == 32.0
    assert r.model_flops_per_step == MODEL_FLOPS and r.hardware_flops_per_step == HARDWARE_FLOPS
    assert r.achieved_flops_per_s == 6.0e9 and r.hardware_flops_per_s == pytest.approx(6.6e9, rel=1e-12)
    assert r.peak_flops_datasheet == 1.0e13 and r.peak_flops_measured == 8.0e12
    assert r.mfu_datasheet == pytest.approx(6.0e-4, rel=1e-12)     # 6e9 / 1e13
    assert r.mfu_measured == pytest.approx(7.5e-4, rel=1e-12)      # 6e9 / 8e12
    assert r.hfu_datasheet == pytest.approx(6.6e-4, rel=1e-12)     # 6.6e9 / 1e13
    assert r.hfu_measured == pytest.approx(8.25e-4, rel=1e-12)     # 6.6e9 / 8e12
    assert r.created_at == "2026-12-01T09:30:15+00:00"              # seconds, with its offset
    assert r.config_hash == SPEC.config_hash() and r.spec == SPEC and r.model == SPEC.model
    assert (r.batch_size, r.seq_len, r.grad_accum, r.dtype) == (2, 16, 1, "fp32")
    assert r.flops.model.forward_by_module == {"h.*.attn": 1_000} and r.flops.grad_accum_micro_batches == 1
    assert r.timing.clock == "fake" and (r.timing.warmup_steps, r.timing.steps) == (1, 3)
    assert r.timing.throughput_rule == "tokens per step x steps / total measured seconds"
    assert r.timing.depth_slices is None and r.depth_extrapolation is None
    assert r.provenance == PROVENANCE and r.how_timed == "measured"
    assert [w for w in r.warnings if "CV 50.0%" in w]                 # the spread is said
    assert r.env.model_extra == {"extra_fact": "kept"}
    assert (r.world_size, r.nnodes, r.strategy, r.per_rank) == (1, 1, "single", None)
    assert RunRecord.from_json(r.to_dict()) == r


def test_without_a_datasheet_peak_mfu_against_it_is_unknown():
    r = RunRecord.from_measurement(measurement(datasheet=None))
    assert r.peak_flops_datasheet is None and r.mfu_datasheet is None and r.hfu_datasheet is None
    assert r.mfu_measured == pytest.approx(7.5e-4, rel=1e-12)  # the measured peak still gives one


def test_two_ranks_count_the_world_and_utilization_per_device():
    r = RunRecord.from_measurement(measurement(world=World(world_size=2, strategy="ddp")))
    assert r.tokens_per_step == 64 and r.tokens_per_s == 64.0 and r.per_device_tokens_per_s == 32.0
    assert r.samples_per_s == 4.0
    assert r.model_flops_per_step == 2 * MODEL_FLOPS and r.flops.model.per_rank_per_step == MODEL_FLOPS
    assert r.hardware_flops_per_step == 2 * HARDWARE_FLOPS
    assert r.achieved_flops_per_s == 1.2e10 and r.achieved_flops_per_s_per_device == 6.0e9
    assert r.mfu_measured == pytest.approx(7.5e-4, rel=1e-12)  # per device: 1.2e10 / 2 / 8e12
    assert r.mfu_datasheet == pytest.approx(6.0e-4, rel=1e-12)
    assert (r.world_size, r.strategy) == (2, "ddp")


def test_a_predicted_measurement_has_no_spread_and_says_where_it_came_from():
    extrapolation = DepthExtrapolation.model_validate(
        fixture_json("record_v1_depth_sliced.json")["depth_extrapolation"])
    r = RunRecord.from_measurement(measurement(times=StepTimes((), (2.0,)), how_timed="predicted"),
                                   depth_extrapolation=extrapolation, extra_warnings=["sliced"])
    assert r.iqr_step_s is None and r.cv_step is None      # not 0.0: one predicted step has no spread
    assert r.median_step_s == 2.0 and r.tokens_per_s == 16.0 and r.achieved_flops_per_s == 3.0e9
    assert r.mfu_measured == pytest.approx(3.0e9 / 8.0e12, rel=1e-12)
    assert r.provenance == {**PROVENANCE, **PREDICTED_PROVENANCE}
    assert r.provenance["step_times_s"] == "predicted from depth slices"
    assert r.provenance["iqr_step_s"].startswith("none")
    assert r.how_timed == "predicted from depth slices"
    assert r.timing.throughput_rule == "tokens per step / predicted step time"
    assert r.timing.depth_slices == [s.layers for s in extrapolation.slices] == [1, 2, 3]
    assert r.depth_extrapolation == extrapolation
    assert r.warnings == ["sliced"]


def test_a_predicted_measurement_does_not_warn_about_spread_of_its_slices():
    spread = StepTimes((), (1.0, 3.0))  # a measured window like this warns (CV 71%)
    assert any("CV" in w for w in RunRecord.from_measurement(measurement(times=spread)).warnings)
    predicted = RunRecord.from_measurement(measurement(times=spread, how_timed="predicted"))
    assert not any("CV" in w for w in predicted.warnings) and predicted.iqr_step_s is None


def test_compile_warnings():
    compiled = build_spec({**tiny_raw("gpt2", compile=True), "measure": {"warmup_steps": 0, "steps": 3}})
    steady = StepTimes((), (1.0, 1.0, 1.0))
    r = RunRecord.from_measurement(measurement(spec=compiled, times=steady))
    assert r.warnings == ["hardware FLOPs were counted on the uncompiled model",
                          "compile with no warm-up steps: the first measured step includes compilation"]
    assert statistics.median(r.step_times_s) == 1.0


# ---------------------------------------------------------------------------------------------
# (e) validation names the field


def v2(**changes):
    return make_record().to_dict() | changes


def refused(data, where="bad.json"):
    with pytest.raises(ConfigError) as err:
        RunRecord.from_json(data, where)
    return err.value


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_number_is_refused(value):
    err = refused(v2(tokens_per_s=value))
    assert err.field == "bad.json: tokens_per_s" and "must be finite" in err.message


def test_a_non_finite_number_in_a_nested_part_is_refused():
    data = v2()
    data["peaks"]["measured"]["flops_per_s"] = float("inf")
    err = refused(data)
    assert err.field == "bad.json: peaks.measured.flops_per_s" and "must be finite" in err.message


@pytest.mark.parametrize("field", ["step_times_s", "warmup_times_s"])
def test_a_negative_step_time_is_refused(field):
    err = refused(v2(**{field: [0.1, -0.2, 0.3]}))
    assert err.field == f"bad.json: {field}" and "seconds from 0 to 1e+09" in err.message


@pytest.mark.parametrize("part, key", [("device", "colour"), ("flops.model", "per_step"),
                                       ("peaks.datasheet", "flops"), ("timing", "step_s")])
def test_an_unknown_key_in_a_nested_part_is_refused(part, key):
    data = v2()
    node = data
    for name in part.split("."):
        node = node[name]
    node[key] = 1
    err = refused(data)
    assert err.field == f"bad.json: {part}.{key}" and "Extra inputs are not permitted" in err.message


def test_unknown_keys_at_the_top_are_refused_but_environment_facts_are_kept():
    assert refused(v2(colour="blue")).field == "bad.json: colour"
    data = v2()
    data["env"]["kernel"] = "6.1"
    assert RunRecord.from_json(data).env.model_extra["kernel"] == "6.1"


def test_a_v1_name_in_a_v2_record_is_refused():
    # a v2 record that kept v1's name would otherwise silently lose its count
    data = v2()
    data["flops"]["model"]["per_step"] = data["flops"]["model"].pop("per_rank_per_step")
    err = refused(data)
    assert err.field == "bad.json: flops.model.per_rank_per_step" and err.message == "missing"


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 99])
def test_a_newer_schema_version_is_refused(version):
    err = refused(v2(schema_version=version))
    assert err.field == "bad.json: schema_version" and "newer than this harness" in err.message
    assert RunRecord.from_json(v2(schema_version=SCHEMA_VERSION)).schema_version == SCHEMA_VERSION


@pytest.mark.parametrize("version", [0, "2", True, None])
def test_a_schema_version_that_is_no_version_is_refused(version):
    err = refused(v2(schema_version=version))
    assert err.field == "bad.json: schema_version" and "must be an integer >= 1" in err.message


def test_missing_fields_are_listed():
    err = refused({k: v for k, v in v2().items() if k not in ("created_at", "spec")})
    assert err.field == "bad.json" and err.message == "not a run record: missing created_at, spec"


def test_records_are_frozen_and_evolve_validates():
    record = make_record()
    with pytest.raises(ValidationError):
        record.run_id = "other"
    changed = record.evolve(run_id="other", world_size=2)
    assert (changed.run_id, changed.world_size) == ("other", 2) and record.run_id != "other"
    with pytest.raises(ValidationError):
        record.evolve(run_id="../escape")
    with pytest.raises(ValidationError):
        record.evolve(median_step_s=float("nan"))


def test_a_v2_record_loads_as_a_dense_v3_record():
    data = v2(schema_version=2)  # the v2 form: none of the fields added since
    for key in ("params_active", "params_active_non_embedding", "moe"):
        del data[key]
    del data["flops"]["analytic"]["active_non_embedding_params"]
    for model in (data["model"], data["spec"]["model"]):
        del model["model_type"], model["config"]
    for key in ("pack", "doc_len"):
        del data["spec"]["train"][key]
    record = RunRecord.from_json(data)
    assert record.schema_version == 3 and record.moe is None
    assert (record.params_active, record.params_active_non_embedding) == (record.params, record.params_non_embedding)


def test_a_mixture_of_experts_record_carries_its_load_and_round_trips():
    from harness.results.record import ExpertLoad, MoeSummary

    load = ExpertLoad.from_layers([[14, 11, 18, 21], [20, 12, 14, 18]], "cpu model, untimed step")
    assert load.tokens_per_expert == [34, 23, 32, 39]
    assert load.imbalance == 39 / 32 and load.max_layer_imbalance == 21 / 16
    moe = MoeSummary(experts=4, experts_per_token=2, moe_layers=2, expert_params=49152, expert_params_active=24576,
                     expert_flops_balanced_per_step=4718592, expert_flops_routed_per_step=4718592,
                     expert_load=load, routing="dropless top-k")
    record = make_record({"moe": moe.model_dump(), "params_active": 39328})
    again = RunRecord.from_json(json.loads(json.dumps(record.to_dict())), "text")
    assert again == record and again.moe.expert_load.tokens_per_expert_by_layer[1] == [20, 12, 14, 18]
    with pytest.raises(Exception):
        ExpertLoad(tokens_per_expert_by_layer=[[1]], tokens_per_expert=[1], imbalance=0.5,
                   max_layer_imbalance=1.0, measured_on="x")


def _with_model(**dims):
    data = v2()
    data["model"] = {**data["model"], **dims}
    return data


def _nested_env(depth):
    data = v2()
    inner = []
    for _ in range(depth):
        inner = [inner]
    data["env"] = {**data["env"], "deep": inner}
    return data


@pytest.mark.parametrize("data,field,message", [
    (v2(world_size=0), "world_size", "greater than or equal to 1"),
    (v2(world_size="2"), "world_size", "must be an integer, got 2"),
    (v2(world_size=True), "world_size", "must be an integer, got True"),
    (v2(batch_size=2.0), "batch_size", "must be an integer, got 2.0"),
    (v2(energy=[1, 2]), "energy", "an object"),
    (v2(total_measured_s=0), "total_measured_s", "greater than 0"),
    (v2(step_times_s=[1e308]), "step_times_s", "seconds from 0 to 1e+09"),
    (v2(median_step_s=1e308), "median_step_s", "at most 1e+09 s"),
    (v2(params=2**63), "params", "integer beyond 64 bits (19 digits)"),
    (v2(params=-2**63 - 1), "params", "integer beyond 64 bits"),
    (_with_model(hidden=0), "model", "hidden must be at least 1, got 0"),
    (_with_model(preset="$\\frac{"), "model", "is not a preset name"),
    (_nested_env(40), "env.deep[0]", "nested more than 32 levels deep"),
])
def test_a_record_that_would_break_other_commands_is_refused(data, field, message):
    err = refused(data)
    assert err.field.startswith(f"bad.json: {field}") and message in err.message


def test_the_largest_64_bit_integer_and_32_levels_are_kept():
    assert RunRecord.from_json(v2(params=2**63 - 1)).params == 2**63 - 1
    assert RunRecord.from_json(_nested_env(29)).env.deep  # env is open: facts of the machine kept as given


def test_a_minimal_record_names_a_few_missing_fields_in_one_short_line():
    err = refused({"run_id": "m", "created_at": "2026-11-24T12:00:00+00:00"})
    assert err.message.startswith("not a run record: missing config_hash, model,") and "more" in err.message
    assert len(str(err)) < 200
