import json
import sqlite3

import pytest

from harness import store
from harness.record import RunRecord


def record(run_id="r1", **overrides):
    fields = {name: None for name in RunRecord.__dataclass_fields__}
    fields.update(run_id=run_id, created_at="2026-11-24T00:00:00+00:00", config_hash="abc",
                  model={"preset": "gpt2", "family": "gpt2"}, params=10, batch_size=2, seq_len=8,
                  grad_accum=1, dtype="fp32", device={"type": "cpu", "name": "x", "count": 1},
                  step_times_s=[0.1, 0.2], median_step_s=0.15, tokens_per_s=100.0,
                  model_flops_per_step=1000, mfu_measured=0.5, warnings=[], provenance={},
                  schema_version=1)
    fields.update(overrides)
    return RunRecord(**fields)


def test_save_writes_the_json_and_one_row(tmp_path):
    path = store.save(record(), tmp_path)
    assert path == tmp_path / "runs" / "r1.json"
    assert json.loads(path.read_text())["model_flops_per_step"] == 1000
    frame = store.load_runs(tmp_path)
    assert list(frame["run_id"]) == ["r1"]
    assert frame.loc[0, "mfu_measured"] == 0.5 and frame.loc[0, "family"] == "gpt2"
    assert json.loads(frame.loc[0, "record_json"])["step_times_s"] == [0.1, 0.2]
    with sqlite3.connect(tmp_path / "harness.db") as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("1",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_an_interrupt_while_writing_leaves_nothing(tmp_path, monkeypatch):
    store.save(record("kept"), tmp_path)

    def interrupted(data, handle, **kwargs):
        handle.write('{"half": ')
        raise KeyboardInterrupt

    monkeypatch.setattr(store.json, "dump", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.save(record("lost"), tmp_path)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["kept.json"]
    assert list(store.load_runs(tmp_path)["run_id"]) == ["kept"]


def test_a_duplicate_run_id_is_refused_and_the_first_kept(tmp_path):
    store.save(record("same", tokens_per_s=1.0), tmp_path)
    with pytest.raises(sqlite3.IntegrityError):
        store.save(record("same", tokens_per_s=2.0), tmp_path)
    assert json.loads((tmp_path / "runs" / "same.json").read_text())["tokens_per_s"] == 1.0
