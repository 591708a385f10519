"""Store: one JSON file per run (atomic) and one row in the embedded SQLite database.

Writes are all-or-nothing: the JSON goes to a temporary file in the same folder and is renamed
into place; the database row is one transaction. The row is committed only after the JSON file
is in place, so an interrupt never leaves a row without its file or a half-written file.

The database (`results/harness.db`) carries its own schema version, `meta.schema_version`,
separate from the record's `schema_version` (the JSON form, harness.results.record.SCHEMA_VERSION): the
database version changes when the table layout does, the record version when the JSON does.
A database is upgraded in place the first time this code opens it: each step in `MIGRATIONS`
takes version k-1 to k, all pending steps run in one transaction, and a new database is built as
version 1 and then migrated, so every database went through the same steps. Concurrent writers
are safe: WAL journal, a 30 s busy timeout, one `BEGIN IMMEDIATE` transaction per write.

A file that is not ours is never touched: not SQLite, SQLite without our tables, a schema
version newer than this code knows, or a malformed database all raise ConfigError before any
write, and the file stays byte-identical.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from harness.errors import ConfigError
from harness.files import signals_deferred, write_json_atomic
from harness.results import record as record_module
from harness.results.record import RunRecord

DB_NAME = "harness.db"
RUNS_DIR = "runs"
SQLITE_HEADER = b"SQLite format 3\x00"
RUN_ID_PATTERN = re.compile(record_module.RUN_ID_PATTERN)  # also a safe file name

# Version 1: the layout of the first release. Frozen: later layouts are migrations from it.
_V1_SCHEMA = """
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

# Columns added by version 2, backfilled from record_json. `energy` and `world_size` are
# optional in a record: absent energy stays NULL (unknown); absent world_size is 1, since
# every record without it came from one process on one device.
_V2_COLUMNS = (("params_non_embedding", "INTEGER"), ("decoder_seq_len", "INTEGER"),
               ("samples_per_s", "REAL"), ("iqr_step_s", "REAL"), ("cv_step", "REAL"),
               ("hfu_datasheet", "REAL"), ("hfu_measured", "REAL"), ("energy_j_per_step", "REAL"),
               ("world_size", "INTEGER"), ("record_schema_version", "INTEGER"))


def _number(value: Any) -> float | int | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _v2_values(data: Mapping[str, Any]) -> tuple:
    energy = data.get("energy")
    world_size = data.get("world_size", 1)
    return (_number(data.get("params_non_embedding")), _number(data.get("decoder_seq_len")),
            _number(data.get("samples_per_s")), _number(data.get("iqr_step_s")),
            _number(data.get("cv_step")), _number(data.get("hfu_datasheet")),
            _number(data.get("hfu_measured")),
            _number(energy.get("joules_per_step")) if isinstance(energy, dict) else None,
            _number(world_size), _number(data.get("schema_version")))


def _to_v2(conn: sqlite3.Connection) -> None:
    """v1 → v2: flat columns for energy per step, world size, HFU, spread and more; backfilled
    from each row's record_json; an index on created_at."""
    for name, sql_type in _V2_COLUMNS:
        conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {sql_type}")
    rows = conn.execute("SELECT run_id, record_json FROM runs").fetchall()
    assignments = ", ".join(f"{name} = ?" for name, _ in _V2_COLUMNS)
    conn.executemany(f"UPDATE runs SET {assignments} WHERE run_id = ?",
                     [(*_v2_values(json.loads(record_json)), run_id) for run_id, record_json in rows])
    conn.execute("CREATE INDEX IF NOT EXISTS runs_created_at ON runs (created_at)")


Migration = Callable[[sqlite3.Connection], None]
# version it produces → the step from the version before. Append only; never edit a step.
MIGRATIONS: dict[int, Migration] = {2: _to_v2}
DB_SCHEMA_VERSION = max(MIGRATIONS)

# Flat columns for queries, in table order; the whole record is kept in `record_json`.
COLUMNS = ("run_id", "created_at", "config_hash", "model_preset", "family", "params", "batch_size",
           "seq_len", "grad_accum", "dtype", "device_type", "device_name", "median_step_s",
           "tokens_per_s", "model_flops_per_step", "hardware_flops_per_step", "achieved_flops_per_s",
           "peak_flops_datasheet", "peak_flops_measured", "mfu_datasheet", "mfu_measured",
           "peak_memory_bytes") + tuple(name for name, _ in _V2_COLUMNS)


# ---------------------------------------------------------------------------------------------
# Opening, checking and migrating the database


def _refuse(db_path: Path, why: str) -> ConfigError:
    return ConfigError(str(db_path), f"{why}; the file was left as it is (move it aside or use "
                                     "--results-dir / $HARNESS_RESULTS_DIR)")


def _check_header(db_path: Path) -> None:
    """Refuse a file that is not SQLite before SQLite opens it. An empty file is a new database."""
    try:
        with open(db_path, "rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except OSError as err:
        raise ConfigError(str(db_path), f"cannot read the results database ({err.strerror})") from None
    if head and head != SQLITE_HEADER:
        raise _refuse(db_path, "not an SQLite database")


def _version(conn: sqlite3.Connection, db_path: Path) -> int:
    """The database's schema version: 0 for a database with no tables at all (new); ConfigError
    for one that is not ours or is newer than this code. Reads only."""
    objects = conn.execute("SELECT type, name FROM sqlite_master").fetchall()
    tables = {name for kind, name in objects if kind == "table"}
    foreign = sorted(f"{kind} {name}" for kind, name in objects if kind in ("trigger", "view"))
    if foreign:  # harness makes neither: a trigger could delete or rewrite rows behind our back
        raise _refuse(db_path, f"an SQLite database with triggers or views harness did not make ({', '.join(foreign)})")
    if not tables:
        return 0
    if not {"meta", "runs"} <= tables:
        raise _refuse(db_path, f"an SQLite database without harness's tables (has: {', '.join(sorted(tables))})")
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None or not str(row[0]).isdigit() or int(row[0]) < 1:
        raise _refuse(db_path, f"no valid schema_version in its meta table ({row[0] if row else 'none'!r})")
    version = int(row[0])
    if version > DB_SCHEMA_VERSION:
        raise _refuse(db_path, f"schema version {version} is newer than this harness knows "
                               f"({DB_SCHEMA_VERSION}); upgrade harness to read it")
    columns = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    if not {"run_id", "created_at", "record_json"} <= columns:
        raise _refuse(db_path, "its runs table lacks run_id, created_at or record_json")
    return version


def _migrate(conn: sqlite3.Connection, db_path: Path) -> None:
    """Bring the database to DB_SCHEMA_VERSION in one transaction (or create it)."""
    conn.execute("BEGIN IMMEDIATE")  # re-read under the write lock: another process may have migrated
    try:
        version = _version(conn, db_path)
        if version == 0:  # new: build version 1 (statement by statement: executescript would commit)
            for statement in filter(str.strip, _V1_SCHEMA.split(";")):
                conn.execute(statement)
            version = 1
        for target in range(version + 1, DB_SCHEMA_VERSION + 1):
            MIGRATIONS[target](conn)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(target),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _wal(conn: sqlite3.Connection) -> None:
    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":  # persistent once set
        conn.execute("PRAGMA journal_mode=WAL")


BUSY_TIMEOUT_S = 30.0  # how long a write waits for another writer's lock


def _locked(db_path: Path) -> ConfigError:
    return ConfigError(str(db_path), f"locked by another writer for more than {BUSY_TIMEOUT_S:g} s; "
                                     "nothing was written (try again when it has finished)")


def _is_locked(err: sqlite3.OperationalError) -> bool:
    return "locked" in str(err) or "busy" in str(err)


def _locked_retry(action, timeout_s: float | None = None):
    """Run `action`, retrying while another process holds a lock that SQLite's busy handler does
    not wait for (switching the journal mode, racing to create the schema)."""
    import random
    import time

    deadline = time.monotonic() + (BUSY_TIMEOUT_S if timeout_s is None else timeout_s)
    while True:
        try:
            return action()
        except sqlite3.OperationalError as err:
            if not _is_locked(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.02 + 0.05 * random.random())


def connect(db_path: Path, *, create: bool = True) -> sqlite3.Connection:
    """Open the results database, creating it (`create`) or migrating it forward as needed:
    WAL journal, 30 s busy timeout. ConfigError, with the file untouched, when it is not a
    harness database, is malformed, or has a newer schema version."""
    db_path = Path(db_path)
    if db_path.exists():
        _check_header(db_path)
    elif not create:
        raise ConfigError(str(db_path), "no results database here")
    else:
        try:
            db_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # a file where the folder should be, a symlink loop, no permission
            raise ConfigError(str(db_path.parent), f"cannot use it as the results folder "
                                                   f"({err.strerror or err})") from None
    try:
        conn = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.OperationalError as err:  # a folder, a symlink loop, no permission
        raise ConfigError(str(db_path), f"cannot open the results database ({err})") from None
    try:
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        try:
            version = _locked_retry(lambda: _version(conn, db_path))  # reads only: a foreign file stays as it is
            _locked_retry(lambda: _wal(conn))
            if version < DB_SCHEMA_VERSION:
                _locked_retry(lambda: _migrate(conn, db_path))
        except sqlite3.OperationalError as err:
            if _is_locked(err):
                raise _locked(db_path) from None
            raise ConfigError(str(db_path), f"cannot use the results database ({err})") from None
        except sqlite3.DatabaseError as err:
            raise _refuse(db_path, f"unreadable as a harness database ({err})") from None
    except BaseException:
        conn.close()
        raise
    return conn


def results_db(results_dir: Path) -> Path:
    """`results_dir`'s database path; ConfigError when `results_dir` is there but is not a folder
    (a file, a symlink loop, a dangling link)."""
    results_dir = Path(results_dir)
    if os.path.lexists(results_dir) and not os.path.isdir(results_dir):
        if os.path.islink(results_dir):
            what = "a symbolic link that leads to no folder (a loop, or a missing target)"
        else:
            what = "a file, not a folder"
        raise ConfigError(str(results_dir), f"the results folder is {what} (use --results-dir / $HARNESS_RESULTS_DIR)")
    return results_dir / DB_NAME


def check(results_dir: Path) -> None:
    """Raise ConfigError now if `results_dir`'s database exists and is not usable, so that a run
    fails before it measures rather than when it saves."""
    db_path = results_db(results_dir)
    if db_path.exists():
        connect(db_path).close()


def schema_version(db_path: Path) -> int:
    """The schema version recorded in an existing database (after any migration)."""
    conn = connect(db_path, create=False)
    try:
        return int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    finally:
        conn.close()


def flat_row(record: RunRecord) -> dict[str, Any]:
    """The flat columns of a record, as the current schema stores them."""
    data = record.to_dict()
    flat = {name: data.get(name) for name in COLUMNS[:22]}
    flat.update(model_preset=record.model.preset, family=record.model.family,
                device_type=record.device.type, device_name=record.device.name)
    flat.update(zip((name for name, _ in _V2_COLUMNS), _v2_values(data)))
    return flat


def _insert(conn: sqlite3.Connection, record: RunRecord) -> None:
    flat = flat_row(record)
    placeholders = ", ".join("?" * (len(COLUMNS) + 1))
    conn.execute(f"INSERT INTO runs ({', '.join(COLUMNS)}, record_json) VALUES ({placeholders})",
                 tuple(flat[c] for c in COLUMNS) + (json.dumps(record.to_dict()),))


def _json_path(results_dir: Path, run_id: str) -> Path:
    if not RUN_ID_PATTERN.match(run_id):
        raise ConfigError("run_id", f"{run_id!r} is not a valid run id (letters, digits, . _ + -)")
    return results_dir / RUNS_DIR / f"{run_id}.json"


def _write_failed(err: BaseException, results_dir: Path) -> BaseException:
    """The one-line error for a write that failed on the database's lock or the file system."""
    if isinstance(err, ConfigError):
        return err
    if isinstance(err, sqlite3.OperationalError) and _is_locked(err):
        return _locked(Path(results_dir) / DB_NAME)
    if isinstance(err, (OSError, sqlite3.OperationalError)):
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        where = getattr(err, "filename", None) or results_dir
        return ConfigError(str(where), f"cannot store the run ({reason}); nothing was written")
    return err


def save(record: RunRecord, results_dir: Path) -> Path:
    """Store `record` as results_dir/runs/<run_id>.json and a row in results_dir/harness.db.
    Returns the JSON path. A run id already stored raises sqlite3.IntegrityError; a lock held
    longer than BUSY_TIMEOUT_S or an unwritable folder, ConfigError."""
    json_path = _json_path(results_dir, record.run_id)
    conn = connect(results_db(results_dir))
    try:
        written = False
        try:
            conn.execute("BEGIN IMMEDIATE")
            _insert(conn, record)
            write_json_atomic(json_path, record.to_dict())
            written = True
            conn.execute("COMMIT")
        except BaseException as err:
            with signals_deferred():  # a second Ctrl-C must not stop the clean-up half-way
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if written:  # never remove a file another run wrote
                    json_path.unlink(missing_ok=True)
            failure = _write_failed(err, results_dir)
            if failure is err:
                raise
            raise failure from None
    finally:
        conn.close()
    return json_path


def save_many(records: Iterable[RunRecord], results_dir: Path) -> tuple[list[str], list[str]]:
    """Store records not stored yet, all in one transaction: every new one or none, files and
    rows alike (an error or an interrupt removes the files this call wrote and rolls the rows
    back). Returns (added run ids, run ids already stored and skipped)."""
    records = list(records)
    paths = [_json_path(results_dir, r.run_id) for r in records]
    conn = connect(results_db(results_dir))
    added: list[str] = []
    skipped: list[str] = []
    written: list[Path] = []
    try:
        try:
            conn.execute("BEGIN IMMEDIATE")
            for record, path in zip(records, paths):
                run_id = record.run_id
                if run_id in added or conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                    skipped.append(run_id)
                    continue
                _insert(conn, record)
                if not path.exists():  # the file may be there already (a copied runs/ folder)
                    written.append(path)  # before the write: an interrupt inside it leaves no file either
                    write_json_atomic(path, record.to_dict())
                added.append(run_id)
            conn.execute("COMMIT")
        except BaseException as err:
            with signals_deferred():
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                for path in written:
                    path.unlink(missing_ok=True)
            failure = _write_failed(err, results_dir)
            if failure is err:
                raise
            raise failure from None
    finally:
        conn.close()
    return added, skipped


def load_runs(results_dir: Path):
    """All stored runs as a pandas DataFrame (flat columns; `record_json` holds the rest)."""
    import pandas as pd

    db_path = results_db(results_dir)
    if not db_path.exists():
        return pd.DataFrame(columns=[*COLUMNS, "record_json"])
    conn = connect(db_path)
    try:
        return pd.read_sql_query(f"SELECT {', '.join(COLUMNS)}, record_json FROM runs "
                                 "ORDER BY created_at, run_id", conn)
    finally:
        conn.close()


def record_of_row(run_id: str, record_json: str) -> RunRecord:
    """The record a database row holds, migrated to the current form; ConfigError naming the run
    when the row cannot be read."""
    try:
        data = json.loads(record_json)
    except (TypeError, ValueError, RecursionError) as err:
        reason = "nested too deeply" if isinstance(err, RecursionError) else str(err)
        raise ConfigError(f"stored run {run_id}", f"its record_json is not valid JSON ({reason})") from None
    return RunRecord.from_json(data, f"stored run {run_id}")


_warned: set[tuple[str, str]] = set()


def warn_unreadable(db_path: Path, run_id: str, err: ConfigError) -> None:
    """Say once per process, on stderr, that a stored run was skipped and why."""
    key = (str(db_path), run_id)
    if key not in _warned:
        _warned.add(key)
        print(f"harness: warning: {db_path}: skipping {err}", file=sys.stderr)


def readable_records(db_path: Path, rows: Iterable[tuple[str, str]]) -> list[RunRecord | None]:
    """The record of each (run_id, record_json) row; None, with a warning naming the run, for a row
    that no longer parses (hand-edited, or written by a broken tool): it never breaks the others."""
    out: list[RunRecord | None] = []
    for run_id, text in rows:
        try:
            out.append(record_of_row(run_id, text))
        except ConfigError as err:
            warn_unreadable(db_path, run_id, err)
            out.append(None)
    return out


def load_records(results_dir: Path) -> list[RunRecord]:
    """Every stored record that parses, oldest first (see `readable_records`)."""
    db_path = results_db(results_dir)
    if not db_path.exists():
        return []
    conn = connect(db_path)
    try:
        rows = conn.execute("SELECT run_id, record_json FROM runs ORDER BY created_at, run_id").fetchall()
    finally:
        conn.close()
    return [r for r in readable_records(db_path, rows) if r is not None]


def find_record(results_dir: Path, run_id: str | None) -> RunRecord:
    """The record `run_id` (or a unique prefix of it), or the latest one when `run_id` is None;
    ConfigError if absent."""
    records = load_records(results_dir)
    if not records:
        raise ConfigError("results.run", f"no stored runs in {results_dir}; run `harness run` first")
    if run_id is None:
        return records[-1]
    exact = [r for r in records if r.run_id == run_id]
    matches = exact or [r for r in records if r.run_id.startswith(run_id)]
    if len(matches) != 1:
        raise ConfigError("results.run", f"{'no' if not matches else 'more than one'} stored run matches "
                          f"{run_id!r} in {results_dir}")
    return matches[0]
