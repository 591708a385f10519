"""Write files all or nothing: into a temporary file beside the target, flushed and synced, then
renamed into place, so that an error or an interrupt never leaves a partial file. A folder of
files (a report) is written the same way: into a temporary folder beside it, then renamed.

`check_output_path` is what every command that writes a file the user names (`--out`, `--csv`)
asks first: the results database, a folder, or an existing file of another kind is refused."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any, Iterator, Literal

from harness.errors import ConfigError

SQLITE_HEADER = b"SQLite format 3\x00"
PARQUET_MAGIC = b"PAR1"
REPORT_ENTRIES = frozenset({"report.md", "report.html", "figures"})  # what a report folder holds


class WriteError(ConfigError, OSError):
    """A file could not be written (no such folder, read-only, a folder in the way, disk full): one
    line naming the path; an OSError too, for callers that degrade on one (the price cache)."""


def _reason(err: OSError) -> str:
    return err.strerror or str(err)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the block ends (a clean-up that must not stop half-way);
    a signal sent meanwhile is delivered after it."""
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed onto `path` when the block ends
    without an error, removed otherwise. A file-system error (no such folder, read-only, a
    folder in the way, disk full) is a ConfigError naming `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as err:
        raise WriteError(str(path), f"cannot write here ({_reason(err)}); nothing was written") from None
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        with signals_deferred():
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            raise WriteError(str(path), f"cannot write it ({_reason(err)}); nothing was written") from None
        raise


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write text (UTF-8) or bytes to `path` atomically, synced to disk before the rename."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())


def write_json_atomic(path: Path, data: Any) -> None:
    """Write `data` as indented JSON to `path` atomically."""
    write_atomic(path, json.dumps(data, indent=2) + "\n")


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """A temporary folder beside `path` to fill; when the block ends without an error it takes
    the place of `path` (an older folder there is moved aside first and removed after), else it
    is removed: `path` holds the old contents or the new ones, never a mixture."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    except OSError as err:
        raise WriteError(str(path), f"cannot write here ({_reason(err)}); nothing was written") from None
    try:
        yield tmp
        with signals_deferred():  # the swap is two renames: no interrupt between them
            old = None
            if path.is_dir() and not path.is_symlink():
                old = path.with_name(f".{path.name}.{os.getpid()}.old")
                os.replace(path, old)
            try:
                os.replace(tmp, path)
            except OSError:
                if old is not None:
                    os.replace(old, path)
                raise
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except BaseException as err:
        with signals_deferred():
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            raise WriteError(str(path), f"cannot write it ({_reason(err)}); nothing was written") from None
        raise


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_path(path: Path, *, force: bool = False, db_path: Path | None = None,
                      kind: Literal["csv", "parquet", "report"] = "csv", field: str = "--out") -> None:
    """Refuse, with a ConfigError naming `field`, to write `path` where that would destroy what the
    user owns: the results database `db_path` (or its WAL files) and any SQLite database, always;
    a folder, for a file; for a report folder, a file or a folder holding anything but an older
    report (it is replaced whole); a path whose folder does not exist; and without `force` an
    existing file that is not of `kind` (a CSV is text, Parquet starts with PAR1). Reads only."""
    path = Path(path)
    where = field
    try:
        exists = path.exists()
        is_dir = path.is_dir()
    except OSError as err:  # a symlink loop, a path too long
        raise ConfigError(where, f"{path} cannot be used ({_reason(err)}); nothing was written") from None
    if db_path is not None:
        db_path = Path(db_path)
        for guarded in (db_path, db_path.with_name(db_path.name + "-wal"), db_path.with_name(db_path.name + "-shm")):
            if _same_file(path, guarded) or os.path.realpath(path) == os.path.realpath(guarded):
                raise ConfigError(where, f"{path} is the results database; refusing to overwrite it (choose another file)")
        if kind == "report" and os.path.realpath(path) == os.path.realpath(db_path.parent):
            raise ConfigError(where, f"{path} is the results folder; refusing to write the report over it")
    if not exists:
        if not path.parent.is_dir():  # a typo in a folder name should not make new folders
            raise ConfigError(where, f"{path}: the folder {path.parent} does not exist (or is not a folder); "
                                     "nothing was written")
        return
    if kind == "report":
        if not is_dir:
            raise ConfigError(where, f"{path} is a file, not a folder; the report is a folder (report.md, report.html, "
                                     "figures/): choose a folder")
        if (path / "harness.db").exists():
            raise ConfigError(where, f"{path} holds a results database; refusing to replace it")
        others = sorted(p.name for p in path.iterdir() if p.name not in REPORT_ENTRIES)
        if others:  # the report replaces the whole folder: never anything but an older report
            raise ConfigError(where, f"{path} holds files that are not a report's ({', '.join(others[:3])}"
                                     f"{', ...' if len(others) > 3 else ''}); choose an empty or new folder")
        return
    if is_dir:
        raise ConfigError(where, f"{path} is a folder; give a file name")
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as err:
        raise ConfigError(where, f"{path} cannot be read to check what it is ({_reason(err)}); nothing was written") from None
    if head.startswith(SQLITE_HEADER):
        raise ConfigError(where, f"{path} is an SQLite database; refusing to overwrite it (choose another file)")
    if force or not head:
        return
    same_kind = head.startswith(PARQUET_MAGIC) if kind == "parquet" else _is_text(head)
    if not same_kind:
        raise ConfigError(where, f"{path} exists and is not a {kind} file; refusing to overwrite it (use --force)")


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start >= len(head) - 4  # a multi-byte character cut at the end of the sample
    return True
