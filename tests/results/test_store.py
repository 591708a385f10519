import json
import multiprocessing
import os
import sqlite3
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.results import store
from harness.results.record import SCHEMA_VERSION, RunRecord
from tests.conftest import fixture_json, make_record


def record(run_id="r1", **overrides) -> RunRecord:
    """A valid record (the committed fixture, migrated) with small, recognisable values."""
    changes = {"run_id": run_id, "created_at": "2026-11-24T00:00:00+00:00", "config_hash": "abc",
               "model.preset": "gpt2", "model.family": "gpt2", "params": 10, "batch_size": 2, "seq_len": 8,
               "grad_accum": 1, "dtype": "fp32", "device": {"type": "cpu", "name": "x", "count": 1},
               "step_times_s": [0.1, 0.2], "median_step_s": 0.15, "tokens_per_s": 100.0,
               "model_flops_per_step": 1000, "mfu_measured": 0.5, "warnings": [], "provenance": {}}
    changes.update(overrides)
    return make_record(changes)


def test_save_writes_the_json_and_one_row(tmp_path):
    path = store.save(record(), tmp_path)
    assert path == tmp_path / "runs" / "r1.json"
    assert json.loads(path.read_text())["model_flops_per_step"] == 1000
    frame = store.load_runs(tmp_path)
    assert list(frame["run_id"]) == ["r1"]
    assert frame.loc[0, "mfu_measured"] == 0.5 and frame.loc[0, "family"] == "gpt2"
    assert json.loads(frame.loc[0, "record_json"])["step_times_s"] == [0.1, 0.2]
    with sqlite3.connect(tmp_path / "harness.db") as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
            str(store.DB_SCHEMA_VERSION),)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_an_interrupt_while_writing_leaves_nothing(tmp_path, monkeypatch):
    store.save(record("kept"), tmp_path)

    def interrupted(fd):  # the bytes are in the temporary file, not yet synced nor renamed
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.save(record("lost"), tmp_path)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["kept.json"]
    assert list(store.load_runs(tmp_path)["run_id"]) == ["kept"]


def test_a_duplicate_run_id_is_refused_and_the_first_kept(tmp_path):
    store.save(record("same", tokens_per_s=1.0), tmp_path)
    with pytest.raises(sqlite3.IntegrityError):
        store.save(record("same", tokens_per_s=2.0), tmp_path)
    assert json.loads((tmp_path / "runs" / "same.json").read_text())["tokens_per_s"] == 1.0


# ---------------------------------------------------------------------------------------------
# Schema versions and migrations

# The version-1 layout exactly as the first release created it (frozen here on purpose: the test
# must keep building a real v1 database whatever store.py becomes).
V1_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, created_at TEXT NOT NULL, config_hash TEXT, model_preset TEXT,
    family TEXT, params INTEGER, batch_size INTEGER, seq_len INTEGER, grad_accum INTEGER,
    dtype TEXT, device_type TEXT, device_name TEXT, median_step_s REAL, tokens_per_s REAL,
    model_flops_per_step INTEGER, hardware_flops_per_step INTEGER, achieved_flops_per_s REAL,
    peak_flops_datasheet REAL, peak_flops_measured REAL, mfu_datasheet REAL, mfu_measured REAL,
    peak_memory_bytes INTEGER, record_json TEXT NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '1');
"""
V1_COLUMNS = ("run_id", "created_at", "config_hash", "model_preset", "family", "params", "batch_size",
              "seq_len", "grad_accum", "dtype", "device_type", "device_name", "median_step_s",
              "tokens_per_s", "model_flops_per_step", "hardware_flops_per_step", "achieved_flops_per_s",
              "peak_flops_datasheet", "peak_flops_measured", "mfu_datasheet", "mfu_measured",
              "peak_memory_bytes")


def make_v1_database(path, records):
    """A version-1 database holding `records` (JSON form), written the way version 1 wrote rows."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(V1_DDL)
        for data in records:
            flat = {**data, "model_preset": data["model"].get("preset"), "family": data["model"].get("family"),
                    "device_type": data["device"].get("type"), "device_name": data["device"].get("name")}
            conn.execute(f"INSERT INTO runs ({', '.join(V1_COLUMNS)}, record_json) VALUES "
                         f"({', '.join('?' * (len(V1_COLUMNS) + 1))})",
                         tuple(flat[c] for c in V1_COLUMNS) + (json.dumps(data),))
    conn.close()


def v1_row(run_id, **changes):
    """A record's JSON form as version 1 of harness wrote it (the committed fixture)."""
    return {**fixture_json(), "run_id": run_id, **changes}


def v1_records():
    plain = v1_row("plain")
    plain.pop("energy", None)  # a record from before energy and world_size existed
    plain.pop("world_size", None)
    with_energy = v1_row("energy", energy={"joules_per_step": 2.5, "methods": {"gpu": "counter"}})
    multi = v1_row("multi", world_size=4, energy=None)
    odd = v1_row("odd", energy={"joules_per_step": "n/a"})  # wrong type: stays unknown
    return [plain, with_energy, multi, odd]


def columns(db_path):
    with sqlite3.connect(db_path) as conn:
        return [row[1] for row in conn.execute("PRAGMA table_info(runs)")]


def test_a_v1_database_migrates_forward_and_backfills(tmp_path):
    records = v1_records()
    make_v1_database(tmp_path / "harness.db", records)
    assert "energy_j_per_step" not in columns(tmp_path / "harness.db")

    frame = store.load_runs(tmp_path).set_index("run_id")  # opening migrates
    assert store.schema_version(tmp_path / "harness.db") == store.DB_SCHEMA_VERSION == 2
    assert columns(tmp_path / "harness.db") == [*V1_COLUMNS, "record_json", *store.COLUMNS[len(V1_COLUMNS):]]
    assert {"energy_j_per_step", "world_size"} <= set(columns(tmp_path / "harness.db"))
    assert frame.loc["energy", "energy_j_per_step"] == 2.5
    assert frame.loc["multi", "world_size"] == 4
    assert frame.loc["plain", "world_size"] == 1  # one process wrote every record without the key
    for run_id in ("plain", "multi", "odd"):
        assert frame.loc[run_id, "energy_j_per_step"] != frame.loc[run_id, "energy_j_per_step"]  # NaN: unknown
    # A migrated row holds exactly what the current code writes for the same record, except
    # record_schema_version: the row still holds the version-1 JSON it was written with. The odd
    # row's junk energy is no record's energy: its columns are those of the record without it.
    for data in records:
        current = RunRecord.from_json(data if data["run_id"] != "odd" else {**data, "energy": None})
        for name, value in store.flat_row(current).items():
            if name == "record_schema_version":
                assert frame.loc[data["run_id"], name] == 1 and value == SCHEMA_VERSION == 3
                continue
            got = frame.loc[data["run_id"], name] if name != "run_id" else data["run_id"]
            assert got == value or (value is None and got != got), (data["run_id"], name)
    assert {i: json.loads(j) for i, j in frame["record_json"].items()} == {r["run_id"]: r for r in records}
    store.save(record("after"), tmp_path)  # and it takes new rows
    assert len(store.load_runs(tmp_path)) == 5


def test_v1_rows_are_read_as_current_records(tmp_path):
    records = v1_records()[:3]  # plain, energy, multi: the JSON the first release wrote
    make_v1_database(tmp_path / "harness.db", records)
    store.save(record("after"), tmp_path)
    loaded = {r.run_id: r for r in store.load_records(tmp_path)}
    assert set(loaded) == {"plain", "energy", "multi", "after"}
    assert all(isinstance(r, RunRecord) and r.schema_version == 3 for r in loaded.values())
    v1_per_step = fixture_json()["flops"]["model"]["per_step"]
    assert loaded["plain"].flops.model.per_rank_per_step == v1_per_step == 1459617792
    assert loaded["plain"].world_size == 1 and loaded["plain"].energy is None  # absent in v1: defaults
    assert loaded["multi"].world_size == 4
    assert loaded["energy"].energy.joules_per_step == 2.5 and loaded["energy"].energy.methods == {"gpu": "counter"}
    assert store.find_record(tmp_path, "mul").run_id == "multi"
    # the stored JSON itself is not rewritten: reading migrates, storing keeps what was written
    with sqlite3.connect(tmp_path / "harness.db") as conn:
        (text,) = conn.execute("SELECT record_json FROM runs WHERE run_id = 'plain'").fetchone()
    conn.close()
    assert json.loads(text) == records[0]


def test_a_v1_row_that_is_not_a_valid_record_is_skipped_with_a_warning_naming_it(tmp_path, capsys):
    make_v1_database(tmp_path / "harness.db", v1_records())
    assert sorted(r.run_id for r in store.load_records(tmp_path)) == ["energy", "multi", "plain"]
    warning = capsys.readouterr().err
    assert warning.count("\n") == 1 and "skipping stored run odd: energy.joules_per_step" in warning


def test_a_new_database_is_built_as_v1_and_migrated(tmp_path):
    store.save(record("first", world_size=2, energy={"joules_per_step": 7.0}), tmp_path)
    assert store.schema_version(tmp_path / "harness.db") == store.DB_SCHEMA_VERSION
    assert set(columns(tmp_path / "harness.db")) == {*store.COLUMNS, "record_json"}
    with sqlite3.connect(tmp_path / "harness.db") as conn:
        assert conn.execute("SELECT world_size, energy_j_per_step FROM runs").fetchone() == (2, 7.0)


def test_a_failed_migration_changes_nothing(tmp_path, monkeypatch):
    make_v1_database(tmp_path / "harness.db", v1_records())
    before = columns(tmp_path / "harness.db")

    def half_done(conn):
        conn.execute("ALTER TABLE runs ADD COLUMN energy_j_per_step REAL")
        raise sqlite3.OperationalError("disk full")

    monkeypatch.setitem(store.MIGRATIONS, 2, half_done)
    with pytest.raises(Exception):
        store.load_runs(tmp_path)
    assert columns(tmp_path / "harness.db") == before
    with sqlite3.connect(tmp_path / "harness.db") as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)


def test_every_migration_step_is_registered():
    assert sorted(store.MIGRATIONS) == list(range(2, store.DB_SCHEMA_VERSION + 1))


# ---------------------------------------------------------------------------------------------
# Concurrent writers: real processes


def _writer(root, worker, n, barrier):
    from harness.results import store as child_store

    barrier.wait()  # every process starts writing at the same moment
    for i in range(n):
        child_store.save(record(f"w{worker}-{i}"), Path(root))


def _run_writers(root, workers=4, per_worker=25):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    procs = [ctx.Process(target=_writer, args=(str(root), w, per_worker, barrier)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * workers
    return {f"w{w}-{i}" for w in range(workers) for i in range(per_worker)}


def test_concurrent_writers_lose_nothing(tmp_path):
    expected = _run_writers(tmp_path)  # they also race to create the database
    assert set(store.load_runs(tmp_path)["run_id"]) == expected
    assert {p.stem for p in (tmp_path / "runs").glob("*.json")} == expected
    assert store.schema_version(tmp_path / "harness.db") == store.DB_SCHEMA_VERSION


def test_concurrent_writers_on_a_v1_database_migrate_it_once(tmp_path):
    make_v1_database(tmp_path / "harness.db", v1_records())
    expected = _run_writers(tmp_path, workers=3, per_worker=5)
    frame = store.load_runs(tmp_path)
    assert set(frame["run_id"]) == expected | {r["run_id"] for r in v1_records()}
    assert columns(tmp_path / "harness.db").count("energy_j_per_step") == 1
    assert frame.set_index("run_id").loc["energy", "energy_j_per_step"] == 2.5


# ---------------------------------------------------------------------------------------------
# Files that are not ours are refused and left byte-identical


def _sqlite_file(path, sql):
    with sqlite3.connect(path) as conn:
        conn.executescript(sql)
    conn.close()


def _malformed(path):
    store.save(record("x"), path.parent)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    data = bytearray(path.read_bytes())
    data[100:] = b"\x5a" * (len(data) - 100)
    path.write_bytes(bytes(data))


FOREIGN = {
    "not sqlite": (lambda p: p.write_bytes(b"PK\x03\x04 not a database at all" * 20), "not an SQLite database"),
    "foreign sqlite": (lambda p: _sqlite_file(p, "CREATE TABLE songs (title TEXT); INSERT INTO songs VALUES ('a');"),
                       "without harness's tables"),
    "newer schema": (lambda p: _sqlite_file(p, V1_DDL.replace("'schema_version', '1'", "'schema_version', '99'")),
                     "schema version 99 is newer"),
    "no version": (lambda p: _sqlite_file(p, V1_DDL.replace("'schema_version', '1'", "'other', '1'")),
                   "no valid schema_version"),
    "malformed": (_malformed, "unreadable as a harness database"),
}


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_a_file_that_is_not_ours_is_refused_and_untouched(tmp_path, kind):
    make, message = FOREIGN[kind]
    db = tmp_path / "harness.db"
    make(db)
    before = db.read_bytes()
    listing = sorted(p.name for p in tmp_path.iterdir())
    for action in (lambda: store.load_runs(tmp_path), lambda: store.save(record("new"), tmp_path),
                   lambda: store.check(tmp_path)):
        with pytest.raises(ConfigError, match=message):
            action()
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == listing  # no -wal, -shm or runs/ left behind


# ---------------------------------------------------------------------------------------------
# Hostile databases and folders: refused in one line, nothing changed


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("ddl", ["CREATE TRIGGER wipe AFTER INSERT ON runs BEGIN DELETE FROM runs; END",
                                 "CREATE VIEW v AS SELECT run_id FROM runs"])
def test_a_database_with_a_trigger_or_view_not_ours_is_refused(tmp_path, ddl):
    store.save(record("kept"), tmp_path)
    conn = sqlite3.connect(tmp_path / "harness.db")
    conn.execute(ddl)
    conn.commit()
    conn.close()
    before = _sha(tmp_path / "harness.db")
    for action in (lambda: store.save(record("new"), tmp_path), lambda: store.load_records(tmp_path)):
        with pytest.raises(ConfigError, match="triggers or views harness did not make"):
            action()
    assert _sha(tmp_path / "harness.db") == before
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["kept.json"]


def test_a_writer_holding_the_lock_past_the_busy_timeout_is_one_line(tmp_path, monkeypatch):
    store.save(record("kept"), tmp_path)
    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(tmp_path / "harness.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer, mid-transaction
    try:
        for action in (lambda: store.save(record("r2"), tmp_path),
                       lambda: store.save_many([record("r3"), record("r4")], tmp_path)):
            with pytest.raises(ConfigError, match=r"locked by another writer for more than 0.2 s; nothing was written"):
                action()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["kept.json"]
    assert [r.run_id for r in store.load_records(tmp_path)] == ["kept"]


def test_import_against_a_locked_database_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    from harness.cli import main

    store.save(record("kept"), tmp_path)
    (tmp_path / "new.json").write_text(json.dumps(record("new").to_dict()))
    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(tmp_path / "harness.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        rc = main(["results", "import", str(tmp_path / "new.json"), "--results-dir", str(tmp_path)])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "locked by another writer" in err
    assert not (tmp_path / "runs" / "new.json").exists()


@pytest.mark.parametrize("kind", ["file", "loop", "dangling"])
def test_a_results_folder_that_is_not_a_folder_is_one_line(tmp_path, kind):
    where = tmp_path / "results"
    if kind == "file":
        where.write_text("x\n")
    elif kind == "loop":
        where.symlink_to(where)
    else:
        where.symlink_to(tmp_path / "gone")
    for action in (lambda: store.save(record(), where), lambda: store.load_records(where),
                   lambda: store.load_runs(where), lambda: store.check(where)):
        with pytest.raises(ConfigError, match="the results folder is a"):
            action()
    assert not (tmp_path / "gone").exists()


def test_a_failed_write_of_the_json_leaves_no_row(tmp_path, monkeypatch):
    store.save(record("kept"), tmp_path)

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(ConfigError, match="No space left on device"):
        store.save_many([record("a"), record("b")], tmp_path)
    monkeypatch.undo()
    assert [r.run_id for r in store.load_records(tmp_path)] == ["kept"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["kept.json"]


def test_an_interrupt_in_the_middle_of_an_import_undoes_files_and_rows(tmp_path, monkeypatch):
    store.save(record("kept"), tmp_path)
    real, calls = store.write_json_atomic, []

    def interrupted_on_the_third(path, data):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(store, "write_json_atomic", interrupted_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        store.save_many([record(f"n{i}") for i in range(5)], tmp_path)
    assert len(calls) == 3
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["kept.json"]
    assert [r.run_id for r in store.load_records(tmp_path)] == ["kept"]


def test_a_row_that_no_longer_parses_is_skipped_everywhere_with_one_warning(tmp_path, capsys):
    from harness.results import api

    store.save(record("good", created_at="2026-11-24T00:00:00+00:00"), tmp_path)
    store.save(record("bad", created_at="2026-11-25T00:00:00+00:00"), tmp_path)
    with sqlite3.connect(tmp_path / "harness.db") as conn:
        conn.execute("UPDATE runs SET record_json = ? WHERE run_id = 'bad'", ('{"run_id": "bad", ' + "[" * 5000,))
    conn.close()
    assert [r.run_id for r in store.load_records(tmp_path)] == ["good"]
    assert store.find_record(tmp_path, None).run_id == "good"  # the latest readable run
    assert list(api.load(tmp_path)["run_id"]) == ["good"]
    assert [r.run_id for r in api.records(tmp_path)] == ["good"]
    assert api.export(tmp_path, tmp_path / "out.csv") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "skipping stored run bad: its record_json is not valid JSON" in err
