"""harness.results.api and `harness results ...`: DataFrame filters, export/import round trips, bad
imports, and databases that are not ours (refused by the CLI with one line, file untouched)."""

import json
import sqlite3

import pandas as pd
import pytest

from harness.results import api as results

from harness.results import store
from harness.config import build_spec
from harness.errors import ConfigError
from harness.measure.run import measure
from harness.results.record import RunRecord
from tests.conftest import fixture_json, make_record, tiny_raw
from tests.cli.test_cli import REPO, harness
from tests.results.test_store import FOREIGN


def synthetic(run_id, *, created="2026-11-20T10:00:00+00:00", preset="gpt2", family="gpt2", device=("cpu", "AMD EPYC"),
              dtype="fp32", params=1000, **extra) -> RunRecord:
    """A complete record with values chosen to be awkward for CSV and floats."""
    changes = {
        "run_id": run_id, "created_at": created, "config_hash": "c0ffee", "model.preset": preset,
        "model.family": family, "params": params, "params_non_embedding": params // 2, "batch_size": 2,
        "seq_len": 16, "decoder_seq_len": None, "grad_accum": 1, "dtype": dtype,
        "device": {"type": device[0], "name": device[1], "count": 1},
        "compile": False, "checkpointing": False, "optimizer": "AdamW (foreach)",
        "warmup_times_s": [0.5], "step_times_s": [0.1, 0.1 + 0.2, 1e-9], "median_step_s": 0.1 + 0.2,
        "iqr_step_s": 0.01, "cv_step": 0.333, "total_measured_s": 0.4, "tokens_per_step": 32,
        "tokens_per_s": 80.00000000000001, "samples_per_s": 5.0, "model_flops_per_step": 2**62,
        "hardware_flops_per_step": 2**62 + 1, "achieved_flops_per_s": 1.5e12, "hardware_flops_per_s": 1.6e12,
        "peak_flops_datasheet": None, "peak_flops_measured": 2e12, "mfu_datasheet": None, "mfu_measured": 0.75,
        "hfu_datasheet": None, "hfu_measured": 0.8, "peak_memory_bytes": 123, "peak_memory_method": "rss",
        "flops.model.by_op": {"aten.mm": 1}, "timing": {"clock": "perf_counter"},
        "warnings": ['a "quoted", comma\nand a newline; ünïcödé ✓'], "env": {"python": "3.11"},
        "spec.model.family": family, "provenance": {}, "energy": None,
    }
    changes.update(extra)
    return make_record(changes)


def synthetic_json(name, /, **fields) -> dict:
    """The JSON form of `synthetic(name)` with `fields` set as they are, valid or not."""
    return {**synthetic(name).to_dict(), **fields}


@pytest.fixture(scope="module")
def real_record():
    raw = tiny_raw("gpt2")
    raw["measure"] = {"warmup_steps": 1, "steps": 2}
    return measure(build_spec(raw), log=lambda message: None)


@pytest.fixture
def stored(tmp_path, real_record):
    """A results folder with one real run and four synthetic ones on different models, devices, dates."""
    root = tmp_path / "results"
    runs = [
        real_record,
        synthetic("a-bert-h100", created="2026-11-01T08:00:00+00:00", preset="bert-base", family="bert",
                  device=("cuda", "NVIDIA H100 80GB HBM3"), dtype="bf16", params=110_000_000,
                  energy={"joules_per_step": 300.5, "methods": {"gpu": "counter"}}, mfu_datasheet=0.41),
        synthetic("b-bert-a100", created="2026-11-15T23:59:59+00:00", preset="bert-base", family="bert",
                  device=("cuda", "NVIDIA A100-SXM4-40GB"), dtype="bf16", params=110_000_000, world_size=8),
        synthetic("c-llama-cpu", created="2026-11-16T00:00:00+00:00", preset=None, family="llama"),
        synthetic("d-gpt2-fp16", created="2026-11-20T12:00:00Z", dtype="fp16", device=("cuda", "Tesla T4")),
    ]
    for record in runs:
        store.save(record, root)
    return root


def test_load_returns_flat_columns_oldest_first(stored, real_record):
    frame = results.load(stored)
    assert list(frame["run_id"])[:4] == ["a-bert-h100", "b-bert-a100", "c-llama-cpu", "d-gpt2-fp16"]
    assert list(frame["run_id"])[-1] == real_record.run_id
    assert set(store.COLUMNS) <= set(frame.columns) and "record_json" not in frame.columns
    assert str(frame["created_at"].dtype).startswith("datetime64") and frame["created_at"].dt.tz is not None
    row = frame.set_index("run_id").loc["a-bert-h100"]
    assert row["energy_j_per_step"] == 300.5 and row["mfu_datasheet"] == 0.41 and row["world_size"] == 1
    assert frame.set_index("run_id").loc["b-bert-a100", "world_size"] == 8
    real = frame.set_index("run_id").loc[real_record.run_id]
    assert real["tokens_per_s"] == real_record.tokens_per_s and real["family"] == "gpt2"


@pytest.mark.parametrize("filters, expected", [
    ({"model": "bert-base"}, {"a-bert-h100", "b-bert-a100"}),
    ({"model": "llama"}, {"c-llama-cpu"}),                       # family, when the preset is absent
    ({"device": "cuda"}, {"a-bert-h100", "b-bert-a100", "d-gpt2-fp16"}),
    ({"device": "h100"}, {"a-bert-h100"}),                        # part of the device name, any case
    ({"dtype": "bf16", "device": "A100"}, {"b-bert-a100"}),
    ({"since": "2026-11-15", "until": "2026-11-15"}, {"b-bert-a100"}),  # a bare date: that whole day
    ({"since": "2026-11-16T00:00:00Z", "until": "2026-11-20T12:00:00+00:00"}, {"c-llama-cpu", "d-gpt2-fp16"}),
    ({"until": pd.Timestamp("2026-11-01T08:00:00", tz="UTC")}, {"a-bert-h100"}),
    ({"model": "t5"}, set()),
])
def test_load_filters(stored, filters, expected):
    assert set(results.load(stored, **filters)["run_id"]) == expected


def test_records_and_get(stored):
    full = results.records(stored, model="bert-base")
    assert all(isinstance(r, RunRecord) for r in full)
    assert [r.run_id for r in full] == ["a-bert-h100", "b-bert-a100"]
    assert full[0].energy.methods == {"gpu": "counter"}
    assert results.get("c-ll", stored).model.family == "llama"  # a unique prefix
    with_record = results.load(stored, device="h100", with_record=True)
    assert [r.run_id for r in with_record["record"]] == ["a-bert-h100"]
    assert with_record["record"][0] == full[0]
    with pytest.raises(ConfigError, match="more than one"):
        results.get("", stored)
    with pytest.raises(ConfigError, match="results.since"):
        results.load(stored, since="last tuesday")


def test_load_of_an_empty_folder_is_empty(tmp_path):
    assert results.load(tmp_path).empty and not (tmp_path / "harness.db").exists()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_then_import_loses_nothing(stored, tmp_path, fmt):
    out = tmp_path / f"runs.{fmt}"
    assert results.export(stored, out, fmt) == 5
    fresh = tmp_path / "elsewhere"
    result = results.import_files([out], fresh)
    assert len(result.added) == 5 and not result.skipped
    assert store.load_records(fresh) == store.load_records(stored)  # every record, bit for bit
    pd.testing.assert_frame_equal(results.load(fresh), results.load(stored))
    assert sorted(p.name for p in (fresh / "runs").iterdir()) == sorted(p.name for p in (stored / "runs").iterdir())
    again = results.import_files([out], fresh)  # deduplicated by run id
    assert again.added == () and len(again.skipped) == 5


def test_export_is_readable_by_pandas(stored, tmp_path):
    results.export(stored, tmp_path / "x.parquet", model="bert-base")
    frame = pd.read_parquet(tmp_path / "x.parquet")
    assert list(frame["run_id"]) == ["a-bert-h100", "b-bert-a100"]
    assert json.loads(frame["record_json"][0])["energy"]["joules_per_step"] == 300.5
    results.export(stored, tmp_path / "x.csv")
    assert len(pd.read_csv(tmp_path / "x.csv")) == 5


def test_json_imports_one_record_or_a_list_and_skips_known_ids(stored, tmp_path, real_record):
    one = tmp_path / "one.json"
    one.write_text(json.dumps(synthetic_json("from-box-2")))
    many = tmp_path / "many.json"
    many.write_text(json.dumps([synthetic_json("from-box-3"), real_record.to_dict(), synthetic_json("from-box-3")]))
    result = results.import_files([one, many], stored)
    assert result.added == ("from-box-2", "from-box-3")
    assert result.skipped == (real_record.run_id, "from-box-3")
    assert json.loads((stored / "runs" / "from-box-2.json").read_text()) == synthetic_json("from-box-2")
    assert results.get("from-box-2", stored) == synthetic("from-box-2")


def _write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content) if isinstance(content, str) else path.write_bytes(content)
    return path


BAD_IMPORTS = [
    ("list.json", json.dumps([{"run_id": "x"}]), "missing created_at"),
    ("scalar.json", "42", "must be a JSON object"),
    ("broken.json", '{"run_id": ', "not valid JSON"),
    ("bin.json", b"\xff\xfe\x00garbage", "not a text file"),
    ("type.json", json.dumps(synthetic_json("t", batch_size="many")), "batch_size: must be an integer"),
    ("nan.json", json.dumps(synthetic_json("t", tokens_per_s=float("nan"))), "tokens_per_s: must be finite"),
    ("id.json", json.dumps(synthetic_json("t", run_id="../../etc/passwd")), "not a valid run id"),
    ("when.json", json.dumps(synthetic_json("t", created_at="yesterday")), "created_at"),
    ("steps.json", json.dumps(synthetic_json("t", step_times_s=[])), "step_times_s"),
    ("future.json", json.dumps(synthetic_json("t", schema_version=99)), "newer than this harness"),
    ("no_col.csv", "a,b\n1,2\n", "no record_json column"),
    ("bad_row.csv", 'record_json\n"{""run_id"": 1"\n', "row 1"),
    ("bad.parquet", b"PAR1 but not really", "unreadable parquet"),
]


@pytest.mark.parametrize("name, content, message", BAD_IMPORTS)
def test_a_bad_import_names_the_problem_and_imports_nothing(stored, tmp_path, name, content, message):
    good = _write(tmp_path, "good.json", json.dumps(synthetic_json("good-one")))
    bad = _write(tmp_path, name, content)
    before = store.load_records(stored)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as err:
        results.import_files([good, bad], stored)
    assert str(bad) in str(err.value)
    assert store.load_records(stored) == before and not (stored / "runs" / "good-one.json").exists()


# ---------------------------------------------------------------------------------------------
# The command line (real subprocesses)


def test_cli_list_show_export_import(stored, tmp_path, real_record):
    root = ["--results-dir", str(stored)]
    out = harness("results", "list", "--json", "--device", "cuda", *root, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["run_id"] for r in rows] == ["a-bert-h100", "b-bert-a100", "d-gpt2-fp16"]
    assert rows[0]["energy_j_per_step"] == 300.5 and rows[1]["mfu_datasheet"] is None
    table = harness("results", "list", *root, cwd=tmp_path)
    assert table.returncode == 0 and "a-bert-h100" in table.stdout and "5 run(s)" in table.stdout
    shown = harness("results", "show", real_record.run_id[:20], *root, cwd=tmp_path)
    assert json.loads(shown.stdout) == real_record.to_dict()
    export = harness("results", "export", "--format", "parquet", "--out", str(tmp_path / "all.parquet"), *root,
                     cwd=tmp_path)
    assert export.returncode == 0 and "5 run(s) written" in export.stdout
    imported = harness("results", "import", str(tmp_path / "all.parquet"), "--json",
                       "--results-dir", str(tmp_path / "other"), cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert len(json.loads(imported.stdout)["added"]) == 5
    assert store.load_records(tmp_path / "other") == store.load_records(stored)


@pytest.mark.parametrize("args, message", [
    (["results", "show", "nope"], "RUN_ID: no stored run matches 'nope'"),
    (["results", "export", "--format", "xlsx", "--out", "x.xlsx"], "--format: 'xlsx' is not allowed"),
    (["results", "list", "--since", "soon"], "--since"),
    (["results", "import", "missing.json"], "missing.json: no such file"),
])
def test_cli_bad_input_is_one_line_exit_2(stored, tmp_path, args, message):
    out = harness(*args, "--results-dir", str(stored), cwd=tmp_path)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and message in lines[0], out.stderr


@pytest.mark.parametrize("kind", ["not sqlite", "foreign sqlite", "newer schema", "malformed"])
def test_cli_refuses_a_database_that_is_not_ours_and_leaves_it_untouched(tmp_path, kind):
    make, message = FOREIGN[kind]
    root = tmp_path / "results"
    root.mkdir()
    make(root / "harness.db")
    before = (root / "harness.db").read_bytes()
    listing = sorted(p.name for p in root.iterdir())
    for args in (["results", "list"], ["report", "--all"]):
        out = harness(*args, "--results-dir", str(root), cwd=tmp_path)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1, out.stderr
        assert message in lines[0] and str(root / "harness.db") in lines[0] and "Traceback" not in out.stderr
    assert (root / "harness.db").read_bytes() == before
    assert sorted(p.name for p in root.iterdir()) == listing


def test_run_refuses_a_foreign_database_before_measuring(tmp_path):
    root = tmp_path / "results"
    root.mkdir()
    with sqlite3.connect(root / "harness.db") as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    conn.close()
    before = (root / "harness.db").read_bytes()
    out = harness("run", str(REPO / "configs" / "tiny-gpt2.yaml"), "--results-dir", str(root), cwd=tmp_path)
    assert out.returncode == 2 and "without harness's tables" in out.stderr
    assert "timing" not in out.stderr  # refused before any step ran
    assert (root / "harness.db").read_bytes() == before and not (root / "runs").exists()
