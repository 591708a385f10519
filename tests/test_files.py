"""harness.files: what a command may write over (check_output_path) and folders written whole (atomic_dir)."""

from __future__ import annotations

import os
import sqlite3

import pytest

from harness.errors import ConfigError
from harness.files import WriteError, atomic_dir, atomic_path, check_output_path


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "results" / "harness.db"
    path.parent.mkdir()
    sqlite3.connect(path).close()
    path.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    return path


@pytest.mark.parametrize("name,kind,force,why", [
    ("results/harness.db", "csv", True, "is the results database"),
    ("results/harness.db-wal", "csv", True, "is the results database"),
    ("other.db", "csv", True, "is an SQLite database"),
    ("results", "csv", False, "is a folder"),
    ("image.png", "csv", False, "not a csv file"),
    ("notes.txt", "parquet", False, "not a parquet file"),
    ("missing/x.csv", "csv", False, "does not exist"),
    ("notes.txt/x.csv", "csv", False, "does not exist"),
    ("notes.txt", "report", False, "is a file, not a folder"),
    ("results", "report", False, "is the results folder"),
    ("thesis", "report", True, "not a report's (chapter1.tex, chapter2.tex, chapter3.tex, ...)"),
])
def test_refused(tmp_path, db, name, kind, force, why):
    (tmp_path / "other.db").write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00")
    (tmp_path / "notes.txt").write_text("mine\n")
    (tmp_path / "thesis").mkdir()
    for i in range(1, 5):
        (tmp_path / "thesis" / f"chapter{i}.tex").write_text("x")
    with pytest.raises(ConfigError) as err:
        check_output_path(tmp_path / name, force=force, db_path=db, kind=kind)
    assert err.value.field == "--out" and why in err.value.message


def test_a_link_to_the_database_is_the_database(tmp_path, db):
    (tmp_path / "sneaky.csv").symlink_to(db)
    with pytest.raises(ConfigError, match="is the results database"):
        check_output_path(tmp_path / "sneaky.csv", force=True, db_path=db)


def test_allowed(tmp_path, db):
    (tmp_path / "old.csv").write_text("a,b\n")
    (tmp_path / "old.parquet").write_bytes(b"PAR1....")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\x00")
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "report.md").write_text("# old\n")
    (tmp_path / "empty").mkdir()
    check_output_path(tmp_path / "new.csv", db_path=db)
    check_output_path(tmp_path / "old.csv", db_path=db)
    check_output_path(tmp_path / "old.parquet", db_path=db, kind="parquet")
    check_output_path(tmp_path / "image.png", force=True, db_path=db)
    check_output_path(tmp_path / "report", db_path=db, kind="report")
    check_output_path(tmp_path / "empty", db_path=db, kind="report")
    check_output_path(tmp_path / "new-report", db_path=db, kind="report")


def test_atomic_dir_replaces_an_older_folder_whole(tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.md").write_text("old\n")
    (out / "stale.png").write_text("old figure\n")
    with atomic_dir(out) as tmp:
        (tmp / "report.md").write_text("new\n")
        assert (out / "report.md").read_text() == "old\n"  # nothing seen until the block ends
    assert sorted(p.name for p in out.iterdir()) == ["report.md"] and (out / "report.md").read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no temporary or old folder left


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_atomic_dir_leaves_the_older_folder_on_an_error(tmp_path, error):
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.md").write_text("old\n")
    with pytest.raises(error):
        with atomic_dir(out) as tmp:
            (tmp / "report.md").write_text("half")
            raise error
    assert [p.name for p in out.iterdir()] == ["report.md"] and (out / "report.md").read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_a_write_the_file_system_refuses_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(WriteError, match="cannot write here") as err:
        with atomic_path(tmp_path / "a-file" / "x.csv"):
            pass
    assert isinstance(err.value, OSError) and isinstance(err.value, ConfigError)

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    from harness.files import write_atomic

    with pytest.raises(WriteError, match=r"cannot write it \(No space left on device\); nothing was written"):
        write_atomic(tmp_path / "y.txt", "data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
