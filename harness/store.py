"""Store: one JSON file per run (atomic) and one row in the embedded SQLite database.

Writes are all-or-nothing: the JSON goes to a temporary file in the same folder and is renamed
into place; the database row is one transaction. The row is committed only after the JSON file
is in place, so an interrupt never leaves a row without its file or a half-written file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from harness.record import SCHEMA_VERSION, RunRecord

DB_NAME = "harness.db"
RUNS_DIR = "runs"

# Flat columns for queries; the whole record is kept in `record_json`.
COLUMNS = ("run_id", "created_at", "config_hash", "model_preset", "family", "params", "batch_size",
           "seq_len", "grad_accum", "dtype", "device_type", "device_name", "median_step_s",
           "tokens_per_s", "model_flops_per_step", "hardware_flops_per_step", "achieved_flops_per_s",
           "peak_flops_datasheet", "peak_flops_measured", "mfu_datasheet", "mfu_measured",
           "peak_memory_bytes")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, created_at TEXT NOT NULL, config_hash TEXT, model_preset TEXT,
    family TEXT, params INTEGER, batch_size INTEGER, seq_len INTEGER, grad_accum INTEGER,
    dtype TEXT, device_type TEXT, device_name TEXT, median_step_s REAL, tokens_per_s REAL,
    model_flops_per_step INTEGER, hardware_flops_per_step INTEGER, achieved_flops_per_s REAL,
    peak_flops_datasheet REAL, peak_flops_measured REAL, mfu_datasheet REAL, mfu_measured REAL,
    peak_memory_bytes INTEGER, record_json TEXT NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');
"""


def _write_atomic(path: Path, write) -> None:
    """Call write(handle) on a temporary file beside `path`, then rename it into place;
    no partial file survives an error or interrupt."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to `path` atomically."""
    def write(handle):
        json.dump(data, handle, indent=2)
        handle.write("\n")

    _write_atomic(path, write)


def write_text_atomic(path: Path, text: str) -> None:
    """Write text to `path` atomically."""
    _write_atomic(path, lambda handle: handle.write(text))


def connect(db_path: Path) -> sqlite3.Connection:
    """Open (and create) the results database: WAL journal, 30 s busy timeout."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path, timeout=30.0, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.executescript(_SCHEMA)
    return conn


def _row(record: RunRecord) -> tuple:
    data = record.to_dict()
    flat = {**data, "model_preset": record.model.get("preset"), "family": record.model.get("family"),
            "device_type": record.device.get("type"), "device_name": record.device.get("name")}
    return tuple(flat[c] for c in COLUMNS) + (json.dumps(data),)


def save(record: RunRecord, results_dir: Path) -> Path:
    """Store `record` as results_dir/runs/<run_id>.json and a row in results_dir/harness.db.
    Returns the JSON path."""
    json_path = results_dir / RUNS_DIR / f"{record.run_id}.json"
    conn = connect(results_dir / DB_NAME)
    try:
        conn.execute("BEGIN IMMEDIATE")
        written = False
        try:
            placeholders = ", ".join("?" * (len(COLUMNS) + 1))
            conn.execute(f"INSERT INTO runs ({', '.join(COLUMNS)}, record_json) VALUES ({placeholders})",
                         _row(record))
            write_json_atomic(json_path, record.to_dict())
            written = True
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            if written:  # never remove a file another run wrote
                json_path.unlink(missing_ok=True)
            raise
    finally:
        conn.close()
    return json_path


def load_runs(results_dir: Path):
    """All stored runs as a pandas DataFrame (flat columns; `record_json` holds the rest)."""
    import pandas as pd

    db_path = results_dir / DB_NAME
    if not db_path.exists():
        return pd.DataFrame(columns=[*COLUMNS, "record_json"])
    conn = connect(db_path)
    try:
        return pd.read_sql_query("SELECT * FROM runs ORDER BY created_at", conn)
    finally:
        conn.close()


def load_records(results_dir: Path) -> list[dict[str, Any]]:
    """Every stored record (the full JSON form), oldest first."""
    db_path = results_dir / DB_NAME
    if not db_path.exists():
        return []
    conn = connect(db_path)
    try:
        rows = conn.execute("SELECT record_json FROM runs ORDER BY created_at, run_id").fetchall()
    finally:
        conn.close()
    return [json.loads(r[0]) for r in rows]


def find_record(results_dir: Path, run_id: str | None) -> dict[str, Any]:
    """The record `run_id`, or the latest one when `run_id` is None; ConfigError if absent."""
    from harness.errors import ConfigError

    records = load_records(results_dir)
    if not records:
        raise ConfigError("--run", f"no stored runs in {results_dir}; run `harness run` first")
    if run_id is None:
        return records[-1]
    matches = [r for r in records if r["run_id"] == run_id or r["run_id"].startswith(run_id)]
    if len(matches) != 1:
        raise ConfigError("--run", f"{'no' if not matches else 'more than one'} stored run matches "
                          f"{run_id!r} in {results_dir}")
    return matches[0]
