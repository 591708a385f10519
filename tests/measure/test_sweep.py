"""Sweeps on tiny models: expansion, resume, out-of-memory points, the largest-batch search."""

import json

import pytest

from harness.errors import ConfigError
from harness.measure.run import measure
from harness.results.record import SweepInfo
from harness.results.store import load_records
from harness.measure.sweep import build_sweep, largest_batch, read_state, run_sweep
from tests.conftest import tiny_raw
from tests.cli.test_cli import write_config


@pytest.fixture
def base(tmp_path):
    raw = tiny_raw("gpt2")
    raw["measure"] = {"warmup_steps": 0, "steps": 1, "energy": False}
    return str(write_config(tmp_path, raw))


def test_grid_expands_in_file_order(base):
    sweep = build_sweep({"name": "g", "base": base,
                         "grid": {"model.hidden": [32, 64], "train.batch_size": [1, 2, 3]}})
    assert len(sweep.points) == 6
    assert sweep.points[0].overrides == ("model.hidden=32", "train.batch_size=1")
    assert sweep.points[5].overrides == ("model.hidden=64", "train.batch_size=3")
    assert len({p.config_hash for p in sweep.points}) == 6
    assert sweep.points[4].spec.model.hidden == 64 and sweep.points[4].spec.train.batch_size == 2


@pytest.mark.parametrize("raw, field", [
    ({"grid": {}}, "sweep.grid"),
    ({"grid": {"train.batch_size": []}}, "sweep.grid.train.batch_size"),
    ({"grid": {"train.batch_size": [1]}, "colour": 3}, "sweep.colour"),
    ({"name": "bad name!", "grid": {"train.batch_size": [1]}}, "sweep.name"),
    ({"grid": {"model.heads": [3]}}, "sweep.grid point 0"),
])
def test_bad_sweeps_name_the_field(base, raw, field):
    with pytest.raises(ConfigError) as err:
        build_sweep({"base": base, **raw})
    assert err.value.field.startswith(field)


def oom_above(limit):
    """A measure() that runs for real but fails like the allocator above a batch size (the
    simulated memory limit: this machine does not run out of memory on tiny models)."""
    def run(spec):
        if spec.train.batch_size > limit:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")
        return measure(spec, log=lambda m: None)
    return run


def test_out_of_memory_points_fail_and_the_sweep_goes_on_then_resumes(base, tmp_path):
    results = tmp_path / "results"
    sweep = build_sweep({"name": "s", "base": base, "grid": {"train.batch_size": [1, 64, 2]}})
    state = run_sweep(sweep, results_dir=results, measure=oom_above(8))
    assert [p["status"] for p in state.points] == ["measured", "failed", "measured"]
    assert "out of memory" in state.points[1]["error"]
    records = load_records(results)
    assert len(records) == 2 and {r.sweep.point for r in records} == {0, 2}
    assert sorted((r.sweep for r in records), key=lambda s: s.point) == [
        SweepInfo(name="s", point=0, overrides=["train.batch_size=1"]),
        SweepInfo(name="s", point=2, overrides=["train.batch_size=2"])]
    assert read_state(results, "s")["points"][1]["status"] == "failed"
    with pytest.raises(ConfigError, match="sweep.resume"):
        run_sweep(sweep, results_dir=results, measure=oom_above(8))

    calls = []

    def counting(spec):
        calls.append(spec.train.batch_size)
        return measure(spec, log=lambda m: None)

    bigger = build_sweep({"name": "s", "base": base, "grid": {"train.batch_size": [1, 64, 2, 3]}})
    state = run_sweep(bigger, results_dir=results, resume=True, measure=counting,
                      measured_hashes=[r.config_hash for r in records])
    assert calls == [3]  # 1 and 2 measured before, 64 failed before: only the new point runs
    assert [p["status"] for p in state.points] == ["measured", "failed", "measured", "measured"]


def test_other_errors_are_not_swallowed(base, tmp_path):
    sweep = build_sweep({"name": "e", "base": base, "grid": {"train.batch_size": [1]}})

    def broken(spec):
        raise ValueError("a bug, not a memory failure")

    with pytest.raises(ValueError):
        run_sweep(sweep, results_dir=tmp_path, measure=broken)


def test_largest_batch_doubles_then_bisects():
    best, tried = largest_batch(lambda b: b <= 37, max_batch=1024)
    assert best == 37 and tried == [1, 2, 4, 8, 16, 32, 64, 48, 40, 36, 38, 37]
    assert largest_batch(lambda b: True, max_batch=100) == (100, [1, 2, 4, 8, 16, 32, 64, 100])
    assert largest_batch(lambda b: False) == (None, [1])


def test_sweep_with_largest_batch_search_records_the_search(base, tmp_path):
    sweep = build_sweep({"name": "lb", "base": base, "grid": {"model.hidden": [32]}, "largest_batch": True,
                         "max_batch": 16})
    state = run_sweep(sweep, results_dir=tmp_path, measure=oom_above(5))
    point = state.points[0]
    assert point["largest_batch_search"] == {"tried": [1, 2, 4, 8, 6, 5], "largest": 5}
    assert load_records(tmp_path)[0].batch_size == 5


def test_sweep_and_calibrate_from_the_command_line(base, tmp_path):
    from tests.cli.test_cli import harness

    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text(f"name: cli\nbase: {base}\ngrid:\n  model.hidden: [32, 64]\n  train.batch_size: [1, 2]\n")
    results = str(tmp_path / "results")
    out = harness("sweep", str(sweep_file), "--results-dir", results, "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert [p["status"] for p in json.loads(out.stdout)["points"]] == ["measured"] * 4
    assert "ETA" in out.stderr or "4/4" in out.stderr
    again = harness("sweep", str(sweep_file), "--results-dir", results, "--resume", "--json", cwd=tmp_path)
    assert again.returncode == 0 and all("skipped" in p["note"] for p in json.loads(again.stdout)["points"])
    cal = harness("calibrate", "--results-dir", results, "--json", cwd=tmp_path)
    assert cal.returncode == 0, cal.stderr
    (fit,) = json.loads(cal.stdout)["fits"]
    assert fit["n"] == 4 and fit["mfu_basis"] == "measured peak" and fit["coef"]["ln_hidden"] >= 0
    assert (tmp_path / "results" / "calibration.json").exists()


@pytest.mark.parametrize("text, field", [
    ("grid: {train.batch_size: [0]}\n", "sweep.grid point 0"),
    ("grid: [1, 2]\n", "sweep.grid"),
    ("name: x\n", "sweep.grid"),
    ("grid: {train.batch_size: [1]\n", "malformed YAML"),
])
def test_bad_sweep_files_exit_2(tmp_path, text, field):
    from tests.cli.test_cli import harness

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = harness("sweep", str(path), "--results-dir", str(tmp_path / "r"), cwd=tmp_path)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and field in lines[0], out.stderr
    assert not (tmp_path / "r").exists()


def test_a_grid_over_1000_points_needs_confirmation(base):
    raw = {"name": "big", "base": base, "grid": {"train.seed": list(range(501)), "train.batch_size": [1, 2]}}
    with pytest.raises(ConfigError, match="1,002 points is over 1,000; pass --yes") as info:
        build_sweep(raw)
    assert info.value.field == "sweep.grid"
    huge = {"name": "huge", "base": base, "grid": {"train.seed": list(range(1000)), "train.batch_size": list(range(1, 101)),
                                                   "train.seq_len": [8, 16]}}
    with pytest.raises(ConfigError, match="200,000 points; allowed: up to 100,000"):
        build_sweep(huge, confirmed=True)  # refused before a single point is expanded
    small = {"name": "ok", "base": base, "grid": {"train.seed": [0, 1]}}
    assert len(build_sweep(small).points) == 2


@pytest.mark.parametrize("state", [
    {"name": "s", "source": "x", "points": [{"index": 0}]},
    {"name": "s", "source": "x", "points": [{"index": 0, "overrides": [], "point_hash": "h", "status": "done"}]},
    {"name": "s", "points": []},
    [1, 2, 3],
])
def test_a_hand_edited_sweep_state_is_refused_naming_it(tmp_path, state):
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "s.json").write_text(json.dumps(state))
    with pytest.raises(ConfigError, match="s.json is not one this harness wrote") as info:
        read_state(tmp_path, "s")
    assert info.value.field == "sweep.resume"


def test_a_point_refused_for_memory_counts_as_out_of_memory():
    from harness.measure.fit import DoesNotFit
    from harness.measure.sweep import is_out_of_memory

    assert is_out_of_memory(DoesNotFit("memory", "needs 9 GiB, has 8"))
    assert not is_out_of_memory(ConfigError("memory", "something else"))
