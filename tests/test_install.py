"""`pip install .` (not editable) gives a working `harness` from any directory.

Builds the wheel from a copy of the working tree, installs it with `--no-deps` into a fresh
virtual environment (no network: --no-index, --no-build-isolation), and lets that environment
see this one's third-party packages (torch, transformers, ...) through a .pth file. A .pth line
that is a plain directory does not run that directory's own .pth files, so this environment's
editable install of harness stays invisible: the fresh environment imports the wheel's harness,
which the test checks. Then, from an empty directory, `harness run` (the packaged default
config) and `harness estimate --offline` (packaged corpus, plan and price snapshot)."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _call(args, *, cwd, env=None, timeout=240):
    out = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, f"{' '.join(map(str, args))} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    return out


def _build_wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"  # a copy, so that the build leaves no build/ or stale files in the checkout
    shutil.copytree(ROOT / "harness", src / "harness", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    wheels = tmp_path / "wheels"
    _call([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--no-build-isolation",
           "--quiet", "-w", wheels, src], cwd=tmp_path)
    (wheel,) = wheels.glob("harness-*.whl")
    return wheel


def _fresh_venv(tmp_path: Path, wheel: Path) -> Path:
    venv = tmp_path / "venv"
    _call([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    _call([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
           "--quiet", wheel], cwd=tmp_path)
    site = Path(_call([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                      cwd=tmp_path).stdout.strip())
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (site / "_test_environment.pth").write_text("".join(f"{path}\n" for path in ours))
    return venv


@pytest.mark.slow
def test_the_wheel_installs_a_working_harness(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "harness" / "data").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert shipped and shipped <= names, f"not in the wheel: {sorted(shipped - names)}"
    packages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "harness").rglob("__init__.py")}
    assert {f"{package}/__init__.py" for package in packages} <= names  # every sub-package

    venv = _fresh_venv(tmp_path, wheel)
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HARNESS_RESULTS_DIR")}
    env["COLUMNS"] = "250"  # rich wraps long paths at the terminal width

    where = _call([venv / "bin" / "python", "-c",
                   "import harness, harness.data; print(harness.__file__); "
                   "print(harness.data.data_path('default.yaml'))"], cwd=work, env=env).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), f"not the installed wheel's harness: {where}"

    harness = venv / "bin" / "harness"
    run = _call([harness, "run", "--set", "measure.steps=2", "--set", "measure.warmup_steps=1"], cwd=work, env=env)
    (record,) = (work / "results" / "runs").glob("*.json")  # results/ of the working directory
    assert "record written to" in run.stdout and record.stem in run.stdout
    assert "gpt2+layers2" in record.stem  # the packaged default config: a cut-down gpt2

    estimate = _call([harness, "estimate", "--latest", "--corpus", "bert-wiki-books", "--offline"],
                     cwd=work, env=env)
    assert "bert-wiki-books" in estimate.stdout and record.stem in estimate.stdout
    assert "3.3e+09 tokens" in estimate.stdout  # the packaged corpus: 3.3e9 words x 1 token per word
