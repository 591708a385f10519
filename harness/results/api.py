"""Results: the stored runs as pandas DataFrames, and records moved between machines.

`load` reads the results database (`<results_dir>/harness.db`) into one row per run with flat
columns (see `harness.results.store.COLUMNS`); `records` gives the full JSON records under the same
filters. `export` writes CSV or Parquet with a `record_json` column that holds each whole
record, so `import_files` of an export loses nothing. Imports also take JSON records (one
record, or a list of them, as `harness run --json` prints and `results/runs/*.json` holds),
are validated in full by the record model (older forms migrated) before anything is written, and skip run ids already stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Sequence

from harness.errors import ConfigError
from harness.files import atomic_path, check_output_path
from harness.results.record import RunRecord
from harness.results.store import DB_NAME, readable_records, results_db, save_many

EXPORT_FORMATS = ("csv", "parquet")

# ---------------------------------------------------------------------------------------------
# Reading


def _when(value: str | date | datetime | None, name: str):
    """A UTC pandas Timestamp from an ISO date or datetime (naive means UTC)."""
    import pandas as pd

    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ConfigError(name, f"{value!r} is not an ISO date or datetime (e.g. 2026-11-24 or "
                                "2026-11-24T13:00:00Z)") from None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _readable(frame, parsed):
    """`frame` without the rows whose record did not parse (warned about, skipped)."""
    import numpy as np

    return frame.loc[np.array([r is not None for r in parsed], dtype=bool)].reset_index(drop=True)


def _frame(results_dir: Path):
    from harness.results.store import load_runs

    return load_runs(Path(results_dir))


def _filter(frame, *, model, device, dtype, since, until):
    import pandas as pd

    created = pd.to_datetime(frame["created_at"], utc=True, format="ISO8601")
    keep = pd.Series(True, index=frame.index)
    if model is not None:
        wanted = model.lower()
        keep &= (frame["model_preset"].fillna("").str.lower() == wanted) | (frame["family"].str.lower() == wanted)
    if device is not None:
        wanted = device.lower()
        keep &= ((frame["device_type"].str.lower() == wanted)
                 | frame["device_name"].fillna("").str.lower().str.contains(wanted, regex=False))
    if dtype is not None:
        keep &= frame["dtype"] == dtype
    if since is not None:
        keep &= created >= _when(since, "results.since")
    if until is not None:
        bound = _when(until, "results.until")
        if isinstance(until, str) and len(until) == 10:  # a bare date includes that whole day
            bound = bound + pd.Timedelta(days=1)
            keep &= created < bound
        else:
            keep &= created <= bound
    out = frame[keep].copy()
    out["created_at"] = created[keep]
    return out.reset_index(drop=True)


def load(results_dir: str | Path = "results", *, model: str | None = None, device: str | None = None,
         dtype: str | None = None, since: str | date | datetime | None = None,
         until: str | date | datetime | None = None, with_record: bool = False):
    """Stored runs as a DataFrame, one row per run, oldest first, flat columns (`created_at` as
    UTC timestamps). Filters: `model` (preset or family), `device` (type, e.g. "cuda", or part of
    the device name, e.g. "H100"; case-insensitive), `dtype`, `since`/`until` (ISO dates or
    datetimes, inclusive; a bare date as `until` includes that day). `with_record` adds
    `record`, each run's full record (a RunRecord)."""
    for name, value in (("since", since), ("until", until)):
        _when(value, f"results.{name}")
    frame = _filter(_frame(Path(results_dir)), model=model, device=device, dtype=dtype, since=since, until=until)
    parsed = readable_records(Path(results_dir) / DB_NAME, zip(frame["run_id"], frame["record_json"]))
    frame = _readable(frame, parsed)
    if with_record:
        frame["record"] = [r for r in parsed if r is not None]
    return frame.drop(columns=["record_json"])


def records(results_dir: str | Path = "results", **filters) -> list[RunRecord]:
    """The full records of the runs `load(results_dir, **filters)` selects, oldest first."""
    return list(load(results_dir, with_record=True, **filters)["record"])


def get(run_id: str, results_dir: str | Path = "results") -> RunRecord:
    """One stored record by run id or a unique prefix of it; ConfigError when none or several match."""
    from harness.results.store import find_record

    if not results_db(Path(results_dir)).exists():
        raise ConfigError("results.run", f"no stored runs in {results_dir}")
    return find_record(Path(results_dir), run_id)


# ---------------------------------------------------------------------------------------------
# Export


def export(results_dir: str | Path, out: str | Path, fmt: str | None = None, *, force: bool = False,
           **filters) -> int:
    """Write the selected runs to `out` as CSV or Parquet (`fmt`, default from the suffix): the
    flat columns plus `record_json` (the whole record). Written atomically. Returns the row count.
    `out` may not be the results database, a folder or (unless `force`) an existing file of another
    kind (harness.files.check_output_path)."""
    out = Path(out)
    fmt = fmt or out.suffix.lstrip(".").lower()
    check_output_path(out, force=force, db_path=Path(results_dir) / DB_NAME, kind=fmt if fmt == "parquet" else "csv",
                      field="export.out")
    if fmt not in EXPORT_FORMATS:
        raise ConfigError("export.format", f"{fmt!r} is not allowed; allowed: {', '.join(EXPORT_FORMATS)}")
    frame = _filter(_frame(Path(results_dir)), **{k: filters.get(k) for k in
                                                  ("model", "device", "dtype", "since", "until")})
    parsed = readable_records(Path(results_dir) / DB_NAME, zip(frame["run_id"], frame["record_json"]))
    frame = _readable(frame, parsed)
    if frame.empty:
        raise ConfigError("export.out", f"no stored runs in {results_dir} match; nothing written")
    frame["created_at"] = [r.created_at for r in parsed if r is not None]
    with atomic_path(out) as tmp:
        if fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            _parquet()
            frame.to_parquet(tmp, index=False)
    return len(frame)


def _parquet() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ConfigError("export.format", "parquet needs pyarrow: pip install pyarrow") from None


# ---------------------------------------------------------------------------------------------
# Import


@dataclass(frozen=True)
class ImportResult:
    """What an import did: run ids added, run ids already stored (skipped), files read."""

    added: tuple[str, ...]
    skipped: tuple[str, ...]
    files: tuple[str, ...]


def read_records(path: Path) -> list[RunRecord]:
    """The records in one file: JSON (a record or a list of records), or a CSV/Parquet export
    (its `record_json` column). ConfigError naming the file (and row) on anything malformed."""
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise ConfigError(name, "no such file")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".parquet"):
        import pandas as pd

        try:
            if suffix == ".csv":
                frame = pd.read_csv(path, usecols=lambda c: c == "record_json", dtype=str, keep_default_na=False)
            else:
                _parquet()
                frame = pd.read_parquet(path, columns=None)
        except ConfigError:
            raise
        except Exception as err:  # pandas and pyarrow raise many types for a bad file
            raise ConfigError(name, f"unreadable {suffix[1:]} file ({err.__class__.__name__}: "
                                    f"{str(err).splitlines()[0] if str(err) else ''})") from None
        if "record_json" not in frame.columns:
            raise ConfigError(name, "no record_json column: not a `harness results export` file")
        out = []
        for i, text in enumerate(frame["record_json"], start=1):
            try:
                data = json.loads(text)
            except RecursionError:
                raise ConfigError(f"{name}: row {i}", "record_json is nested too deeply") from None
            except (TypeError, ValueError) as err:
                raise ConfigError(f"{name}: row {i}", f"record_json is not valid JSON ({err})") from None
            out.append(RunRecord.from_json(data, f"{name}: row {i}"))
        return out
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ConfigError(name, "JSON nested too deeply to be a run record") from None
    except OSError as err:
        raise ConfigError(name, f"cannot read it ({err.strerror or err})") from None
    except UnicodeDecodeError:
        raise ConfigError(name, "not a text file (expected JSON, CSV or Parquet)") from None
    except ValueError as err:
        raise ConfigError(name, f"not valid JSON ({err})") from None
    if isinstance(data, list):
        return [RunRecord.from_json(item, f"{name}: item {i}") for i, item in enumerate(data, start=1)]
    return [RunRecord.from_json(data, name)]


def import_files(paths: Sequence[str | Path], results_dir: str | Path = "results") -> ImportResult:
    """Store the records in `paths` (see `read_records`) that are not stored yet. Every file is
    read and checked first; then all new records go in one transaction: all or none."""
    if not paths:
        raise ConfigError("FILE", "give at least one file to import")
    found: list[RunRecord] = []
    for path in paths:
        found += read_records(Path(path))
    added, skipped = save_many(found, Path(results_dir))
    return ImportResult(tuple(added), tuple(skipped), tuple(str(p) for p in paths))
