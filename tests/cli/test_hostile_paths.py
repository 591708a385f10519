"""Hostile paths, files, databases and signals, run as real `harness` processes: every case ends
in exit 2 (or 130 on SIGTERM) with exactly one line on stderr, no traceback, and the store (the
results database and every file under the results folder) byte-for-byte as it was.

The table runs its processes a few at a time (each is a fresh interpreter; none imports torch),
then each case checks its own outcome. Config values and CLI numbers have a table of their own."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from harness.results import api

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
BASE = json.loads((FIXTURES / "record_v1.json").read_text())


def _record(run_id: str, **changes) -> dict:
    data = copy.deepcopy(BASE)
    data["run_id"] = run_id
    data.update(changes)
    return data


def _mkdirs(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _foreign(kind: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        with contextlib.closing(sqlite3.connect(tmp / "results" / "harness.db")) as conn, conn:
            if kind == "trigger":
                conn.execute("CREATE TRIGGER wipe AFTER INSERT ON runs BEGIN DELETE FROM runs; END")
            else:
                conn.execute("CREATE VIEW everything AS SELECT * FROM runs")
    return setup


def _replace_results(kind: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        (tmp / "elsewhere").mkdir()
        target = tmp / "elsewhere" / kind
        if kind == "file":
            target.write_text("not a folder\n")
        else:
            target.symlink_to(target)  # a loop
    return setup


def _link(target: str, name: str):
    def setup(tmp: Path) -> None:
        (tmp / name).symlink_to((tmp / target).resolve())
    return setup


@dataclass
class Case:
    id: str
    argv: list[str]
    needle: str                                  # part of the one stderr line
    setup: Callable[[Path], None] | None = None  # runs in the case's folder before the command
    rc: int = 2
    unchanged: tuple[str, ...] = ()              # extra files that must stay as they were
    env: dict = field(default_factory=dict)
    process: bool = True                         # False: run in-process (the same code, ~0.4 s less)
    out: str | None = None                       # exit 0, nothing on stderr, this on stdout (a warning)


def _files(tmp: Path):
    _write(tmp / "good.json", _record("imported-good-1"))
    _write(tmp / "ws0.json", _record("bad-ws0", world_size=0))
    _write(tmp / "wsstr.json", _record("bad-wsstr", world_size="2"))
    model = dict(BASE["model"], hidden=0)
    _write(tmp / "hidden0.json", _record("bad-hidden", model=model))
    _write(tmp / "energy.json", _record("bad-energy", energy=[1, 2, 3]))
    _write(tmp / "total0.json", _record("bad-total", total_measured_s=0))
    _write(tmp / "minimal.json", {"run_id": "minimal", "created_at": "2026-11-24T12:00:00+00:00"})
    _write(tmp / "huge-step.json", _record("bad-step", step_times_s=[1e308, 1e308]))
    _write(tmp / "bigint.json", _record("bad-int", params=2**70))
    _write(tmp / "deep.json", _nested(100_000))
    _write(tmp / "deep-env.json", _record("bad-deep", env={"x": json.loads(_nested(60))}))
    _write(tmp / "mathtext.json", _record("bad-preset", model=dict(BASE["model"], preset="$\\frac{"),
                                          spec=dict(BASE["spec"], model=dict(BASE["spec"]["model"], preset="$\\frac{"))))
    _write(tmp / "one-bad-of-two.json", [_record("imported-ok-2"), _record("imported-bad-2", batch_size=True)])
    (tmp / "binary.bin").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp / "image.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    (tmp / "notes.csv").write_text("x,y\n1,2\n")
    (tmp / "bad-export.csv").write_text("run_id,record_json\nr1,{not json\n")
    (tmp / "a-file").write_text("hello\n")
    (tmp / "folder-with-things").mkdir()
    (tmp / "folder-with-things" / "thesis.tex").write_text("\\begin{document}\n")
    (tmp / "sweep-bad.yaml").write_text("name: [unclosed\n")


URL = "--url"
CASES = [
    # -- results export: never the database, a folder, a file of another kind, a folder that is not there
    Case("export-onto-db", ["results", "export", "--out", "results/harness.db"], "is the results database"),
    Case("export-onto-db-with-format", ["results", "export", "--format", "csv", "--out", "results/harness.db"],
         "is the results database", process=False),
    Case("export-onto-db-wal-name", ["results", "export", "--format", "csv", "--out", "results/harness.db-wal"],
         "is the results database", process=False),
    Case("export-onto-link-to-db", ["results", "export", "--out", "link.csv"], "is the results database",
         setup=_link("results/harness.db", "link.csv")),
    Case("export-onto-folder", ["results", "export", "--out", "results"], "is a folder"),
    Case("export-onto-image", ["results", "export", "--out", "image.csv"], "not a csv file",
         unchanged=("image.csv",)),
    Case("export-onto-binary-as-parquet", ["results", "export", "--format", "parquet", "--out", "notes.csv"],
         "not a parquet file", unchanged=("notes.csv",)),
    Case("export-into-missing-folder", ["results", "export", "--out", "no/such/dir/x.csv"], "does not exist"),
    Case("export-under-a-file", ["results", "export", "--out", "a-file/x.csv"], "does not exist", process=False),
    Case("export-unwritable", ["results", "export", "--out", "/proc/harness-x.csv"], "cannot write here"),
    Case("export-bad-format", ["results", "export", "--out", "x.xlsx"], "--format", process=False),
    Case("export-bad-since", ["results", "export", "--out", "x.csv", "--since", "yesterday"], "--since", process=False),
    # -- results import: every record checked by the model before anything is written
    Case("import-missing-file", ["results", "import", "nope.json"], "no such file", process=False),
    Case("import-binary", ["results", "import", "binary.bin"], "not a text file"),
    Case("import-world-size-0", ["results", "import", "ws0.json"], "world_size"),
    Case("import-world-size-string", ["results", "import", "wsstr.json"], "world_size: must be an integer"),
    Case("import-hidden-0", ["results", "import", "hidden0.json"], "hidden must be at least 1"),
    Case("import-energy-shape", ["results", "import", "energy.json"], "energy"),
    Case("import-total-0", ["results", "import", "total0.json"], "total_measured_s"),
    Case("import-minimal", ["results", "import", "minimal.json"], "not a run record: missing"),
    Case("import-step-1e308", ["results", "import", "huge-step.json"], "step_times_s"),
    Case("import-int-past-64-bits", ["results", "import", "bigint.json"], "beyond 64 bits"),
    Case("import-nested-100000", ["results", "import", "deep.json"], "nested too deeply"),
    Case("import-nested-env", ["results", "import", "deep-env.json"], "nested more than 32 levels", process=False),
    Case("import-mathtext-preset", ["results", "import", "mathtext.json"], "is not a preset name"),
    Case("import-one-bad-of-two", ["results", "import", "good.json", "one-bad-of-two.json"], "batch_size"),
    Case("import-bad-csv-row", ["results", "import", "bad-export.csv"], "row 1"),
    Case("import-results-dir-is-file", ["results", "import", "good.json", "--results-dir", "elsewhere/file"],
         "is a file, not a folder", setup=_replace_results("file")),
    Case("import-results-dir-loop", ["results", "import", "good.json", "--results-dir", "elsewhere/loop"],
         "symbolic link", setup=_replace_results("loop")),
    Case("import-into-db-with-trigger", ["results", "import", "good.json"], "triggers or views",
         setup=_foreign("trigger")),
    Case("import-into-db-with-view", ["results", "import", "good.json"], "triggers or views",
         setup=_foreign("view"), process=False),
    # -- results list / show
    Case("list-results-dir-is-file", ["results", "list", "--results-dir", "elsewhere/file"], "is a file",
         setup=_replace_results("file")),
    Case("list-db-with-trigger", ["results", "list"], "triggers or views", setup=_foreign("trigger")),
    Case("list-bad-until", ["results", "list", "--until", "2026-13-45"], "--until", process=False),
    Case("show-no-such-run", ["results", "show", "zzz-nothing"], "RUN_ID"),
    Case("show-results-dir-loop", ["results", "show", "x", "--results-dir", "elsewhere/loop"], "symbolic link",
         setup=_replace_results("loop"), process=False),
    # -- report: a folder, whole or not at all, never over what is not a report
    Case("report-onto-file", ["report", "--all", "--out", "a-file"], "is a file, not a folder",
         unchanged=("a-file",)),
    Case("report-onto-folder-with-things", ["report", "--all", "--out", "folder-with-things"],
         "not a report's (thesis.tex)"),
    Case("report-onto-results-dir", ["report", "--all", "--out", "results"], "is the results folder"),
    Case("report-onto-db", ["report", "--all", "--out", "results/harness.db"], "is the results database"),
    Case("report-into-missing-folder", ["report", "--all", "--out", "no/such/report"], "does not exist"),
    Case("report-ids-and-all", ["report", "r1", "--all"], "--all", process=False),
    # -- prices: URLs parsed before use
    Case("prices-update-url-tab", ["prices", "update", "--source", "skypilot-aws", URL, "https://example.com/\tx"],
         "--url"),
    Case("prices-update-url-newline", ["prices", "update", "--source", "skypilot-aws", URL, "https://example.com/x\n"],
         "control character"),
    Case("prices-update-url-port", ["prices", "update", "--source", "skypilot-aws", URL, "https://example.com:abc/x"],
         "not a URL"),
    Case("prices-update-plain-http", ["prices", "update", "--source", "skypilot-aws", URL, "http://example.com/x"],
         "not allowed", process=False),
    Case("prices-update-unknown-source", ["prices", "update", "--source", "skypilot-moon"], "unknown price source", process=False),
    Case("prices-show-cache-nested-100000", ["prices", "show", "--results-dir", "pc"], "", rc=0,
         out="skypilot-aws.json is unreadable (JSON nested too deeply); ignoring it",
         setup=lambda tmp: _write(_mkdirs(tmp / "pc" / "cache" / "prices") / "skypilot-aws.json", _nested(100_000))),
    # -- estimate, count, calibrate, sweep, reproduce
    Case("estimate-url-port", ["estimate", "--latest", "--corpus", "bert-wiki-books", "--source", "skypilot-aws", URL, "https://example.com:99999/x"],
         "not a URL"),
    Case("estimate-no-such-run", ["estimate", "--run", "zzz-nothing", "--corpus", "bert-wiki-books", "--offline"], "zzz-nothing"),
    Case("count-csv-onto-db", ["count", "gpt2", "--csv", "results/harness.db"], "is the results database"),
    Case("count-csv-onto-folder", ["count", "gpt2", "--csv", "results"], "is a folder", process=False),
    Case("count-csv-onto-image", ["count", "gpt2", "--csv", "image.csv"], "not a csv file", unchanged=("image.csv",)),
    Case("calibrate-results-dir-file", ["calibrate", "--results-dir", "a-file"], "a-file"),
    Case("sweep-missing-file", ["sweep", "no-such-sweep.yaml"], "no-such-sweep.yaml"),
    Case("reproduce-unknown", ["reproduce", "nobody-2031"], ""),
    # -- a row that no longer parses: a warning naming it, the other runs listed (exit 0)
    Case("list-skips-unreadable-row", ["results", "list", "--json"], "skipping stored run broken-row", rc=0,
         setup=lambda tmp: _break_row(tmp / "results" / "harness.db")),
]


def _break_row(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        row = conn.execute("SELECT * FROM runs LIMIT 1").fetchone()
        names = [d[1] for d in conn.execute("PRAGMA table_info(runs)")]
        values = dict(zip(names, row), run_id="broken-row", record_json='{"run_id": "broken-row", "oops"')
        conn.execute(f"INSERT INTO runs ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                     tuple(values.values()))


def _digest(root: Path) -> dict[str, str]:
    """Every file under `root` (links not followed) and its SHA-256: the store as it is."""
    out = {}
    for path in sorted(root.rglob("*")) if root.is_dir() and not root.is_symlink() else []:
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _harness(argv, cwd: Path, env: dict | None = None, **kw):
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "HARNESS_RESULTS_DIR": str(cwd / "results"),
                "NO_COLOR": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "harness", *argv], cwd=cwd, env=full_env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@pytest.fixture(scope="module")
def store_template(tmp_path_factory) -> Path:
    """A results folder with two stored runs (a plain and a depth-sliced record), built in-process."""
    root = tmp_path_factory.mktemp("template")
    api.import_files([FIXTURES / "record_v1.json", FIXTURES / "record_v1_depth_sliced.json"], root / "results")
    return root


@dataclass
class Outcome:
    rc: int
    stdout: str
    stderr: str
    before: dict
    after: dict
    unchanged: dict


def _run_case(case: Case, template: Path, base: Path) -> Outcome:
    tmp = base / case.id
    shutil.copytree(template, tmp, symlinks=True)
    _files(tmp)
    if case.setup:
        case.setup(tmp)
    extra = {name: hashlib.sha256((tmp / name).read_bytes()).hexdigest() for name in case.unchanged}
    before = _digest(tmp / "results")
    started = time.monotonic()
    proc = _harness(case.argv, tmp, case.env)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return Outcome(-999, out, err + "\n(hung: killed after 60 s)", before, _digest(tmp / "results"), {})
    if os.environ.get("HOSTILE_TIMES"):
        print(f"{case.id}: {time.monotonic() - started:.2f} s", file=sys.stderr)
    after_extra = {name: hashlib.sha256((tmp / name).read_bytes()).hexdigest() for name in case.unchanged}
    return Outcome(proc.returncode, out, err, before, _digest(tmp / "results"),
                   {n: (extra[n], after_extra[n]) for n in case.unchanged})


@pytest.fixture(scope="module")
def outcomes(store_template, tmp_path_factory) -> dict[str, Outcome]:
    base = tmp_path_factory.mktemp("cases")
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {case.id: pool.submit(_run_case, case, store_template, base) for case in CASES if case.process}
        return {name: future.result() for name, future in futures.items()}


def _in_process(case: Case, template: Path, tmp: Path, monkeypatch, capsys) -> Outcome:
    from harness.cli import main

    shutil.copytree(template, tmp, symlinks=True)
    _files(tmp)
    if case.setup:
        case.setup(tmp)
    monkeypatch.chdir(tmp)
    monkeypatch.setenv("HARNESS_RESULTS_DIR", str(tmp / "results"))
    extra = {name: hashlib.sha256((tmp / name).read_bytes()).hexdigest() for name in case.unchanged}
    before = _digest(tmp / "results")
    capsys.readouterr()
    rc = main(case.argv)
    out, err = capsys.readouterr()
    after_extra = {name: hashlib.sha256((tmp / name).read_bytes()).hexdigest() for name in case.unchanged}
    return Outcome(rc, out, err, before, _digest(tmp / "results"), {n: (extra[n], after_extra[n]) for n in extra})


def test_the_table_is_large_and_covers_every_command():
    assert sum(c.process for c in CASES) >= 35 and len(CASES) >= 50
    commands = {" ".join(c.argv[:2]) if c.argv[0] in ("results", "prices") else c.argv[0] for c in CASES if c.process}
    assert {"results export", "results import", "results list", "results show", "report", "prices update",
            "prices show", "estimate", "count", "calibrate", "sweep", "reproduce"} <= commands


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_case(case, request, store_template, tmp_path, monkeypatch, capsys):
    if case.process:
        got = request.getfixturevalue("outcomes")[case.id]
    else:
        got = _in_process(case, store_template, tmp_path / "case", monkeypatch, capsys)
    lines = got.stderr.splitlines()
    assert "Traceback" not in got.stderr + got.stdout, got.stderr
    assert got.rc == case.rc, got.stderr
    if case.out is not None:  # a warning on stdout beside the command's output: the fallback was taken
        assert got.stderr == "" and case.out in " ".join(got.stdout.split()) and got.after == got.before
        return
    assert len(lines) == 1, lines
    prefix = "harness: warning: " if case.rc == 0 else "harness: error: "
    assert lines[0].startswith(prefix) and case.needle in lines[0], lines[0]
    assert len(lines[0]) <= 300 or case.rc == 0
    assert got.after == got.before  # the database and every stored file as they were
    for name, (was, now) in got.unchanged.items():
        assert was == now, f"{name} was changed"


# ---------------------------------------------------------------------------------------------
# Interrupted: all or nothing


def _wait_for(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def test_sigterm_during_import_stores_all_or_nothing(store_template, tmp_path):
    shutil.copytree(store_template, tmp_path / "case", symlinks=True)
    tmp = tmp_path / "case"
    many = [_record(f"bulk-{i:04d}") for i in range(400)]
    _write(tmp / "many.json", many)
    runs = tmp / "results" / "runs"
    before = _digest(tmp / "results")
    proc = _harness(["results", "import", "many.json"], tmp)
    started = _wait_for(lambda: any(p.name.startswith("bulk-") or p.name.startswith(".bulk-")
                                    for p in runs.iterdir()), 30)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert started, "the import finished before it could be interrupted"
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip() == "harness: interrupted; no record was written"
    assert _digest(tmp / "results") == before  # no file and no row of the 400 is left
    with contextlib.closing(sqlite3.connect(tmp / "results" / "harness.db")) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone() == (2,)


def test_sigterm_during_report_leaves_no_part_of_one(store_template, tmp_path):
    shutil.copytree(store_template, tmp_path / "case", symlinks=True)
    tmp = tmp_path / "case"
    old = tmp / "rep"
    (old / "figures").mkdir(parents=True)
    (old / "report.md").write_text("# the older report\n")
    before = _digest(tmp / "results"), _digest(old)
    proc = _harness(["report", "--all", "--out", "rep"], tmp)
    time.sleep(3.0)  # inside the command (imports take ~1 s), long before its figures are done
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert (_digest(tmp / "results"), _digest(old)) == before  # the older report, whole; nothing new
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith(".rep")) == []  # no temporary folder left
