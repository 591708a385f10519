"""Hostile inputs, each run as a real `python -m harness` process: exit code 2, exactly one line on
stderr, no traceback, and the results store exactly as it was (a real SQLite store holding one
record). Every case here fails before torch is imported (~0.3-1 s each)."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "record_v1.json"


def _bomb() -> str:
    names = "abcdefghij"
    lines = [f"{names[0]}: &{names[0]} [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"{names[i]}: &{names[i]} [" + ", ".join([f"*{names[i - 1]}"] * 10) + "]" for i in range(1, 10)]
    return "\n".join(lines) + "\nmodel: {preset: gpt2}\n"


def _config(model: str = "", train: str = "", measure: str = "", distributed: str = "") -> str:
    text = "model:\n  preset: gpt2\n  layers: 2\n" + model
    for name, body in (("train", train), ("measure", measure), ("distributed", distributed)):
        if body:
            text += f"{name}:\n{body}"
    return text + "device: cpu\n"


# (id, argv with {file} for a written file, the file's text or None, what the one line must say)
CASES = [
    ("seed-past-64-bits", ["run", "{file}"], _config(train=f"  seed: {2**64}\n"), "train.seed: Input should be less than or equal to 9223372036854775807"),
    ("hidden-1e9", ["run", "{file}"], _config(model="  hidden: 1e9\n"), "model.hidden: Input should be a valid integer"),
    ("batch-1e8", ["run", "{file}"], _config(train="  batch_size: 100000000\n"), "train.batch_size: Input should be less than or equal to 1048576"),
    ("max-positions-1e11", ["run", "{file}"], _config(model="  max_positions: 100000000000\n"), "model.max_positions: Input should be less than or equal to 4194304"),
    ("steps-1e12", ["run", "{file}"], _config(measure="  steps: 1000000000000\n"), "measure.steps: Input should be less than or equal to 1000000"),
    ("lr-inf", ["run", "{file}"], _config(train="  lr: .inf\n"), "train.lr: must be a finite number"),
    ("timeout-inf", ["run", "{file}"], _config(distributed="  timeout_s: .inf\n"), "distributed.timeout_s: must be a finite number"),
    ("date-value", ["run", "{file}"], _config(train="  seed: 2024-01-01\n"), "train.seed: Input should be a valid integer"),
    ("binary-tag", ["run", "{file}"], "model: !!binary aGVsbG8=\n", "tag !!binary is not allowed"),
    ("python-tag", ["run", "{file}"], "model: !!python/object/apply:os.system ['touch pwned']\n", "tag !!python/object/apply:os.system is not allowed"),
    ("duplicate-key", ["run", "{file}"], "model:\n  preset: gpt2\n  layers: 2\n  layers: 4\n", "duplicate key 'layers' (line 4)"),
    ("alias-bomb", ["run", "{file}"], _bomb(), "aliases expand to more than 100,000 nodes"),
    ("deep-nesting", ["run", "{file}"], "model: " + "[" * 50_000 + "]" * 50_000 + "\n", "nested deeper than 32 levels"),
    ("file-over-1-mib", ["run", "{file}"], "# " + "x" * (1 << 20) + "\n", "over the limit of 1,048,576 bytes"),
    ("set-1mb-string", ["run", "--set", "train.dtype=" + "z" * 9_000], None, "train.dtype: Input should be 'fp32', 'bf16', 'fp16' or 'fp8' (got 'zzzz"),
    ("set-alias-bomb", ["run", "--set", "train.seed=[&a [1,1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], *b]"], None, "train.seed: Input should be a valid integer"),
    ("nproc-0", ["run", "--nproc", "0"], None, "--nproc: 0 is out of range; allowed: 1..1,024"),
    ("nnodes-0", ["run", "--nnodes", "0"], None, "--nnodes: 0 is out of range"),
    ("count-step-time-nan", ["count", "gpt2", "--step-time", "nan", "--gpu", "A100"], None, "--step-time: must be finite"),
    ("count-seed-overflow", ["count", "gpt2", "--set", f"train.seed={2**70}"], None, "train.seed: Input should be less than or equal to"),
    ("estimate-pue-inf", ["estimate", "--latest", "--corpus", "c4", "--pue", "inf"], None, "--pue: must be finite; allowed: [1, 10]"),
    ("estimate-denormal-scaling", ["estimate", "--latest", "--corpus", "c4", "--scaling-efficiency", "1e-310"], None, "--scaling-efficiency: 1e-310 is out of range"),
    ("estimate-multiplier-1e308", ["estimate", "--latest", "--corpus", "c4", "--fully-loaded-multiplier", "1e308"], None, "--fully-loaded-multiplier: 1e+308 is out of range"),
    ("corpus-tokens-inf", ["estimate", "--latest", "--corpus", "{file}"], "tokens: .inf\n", "corpus.tokens: must be a finite number"),
    ("corpus-tokens-1e308", ["estimate", "--latest", "--corpus", "{file}"], "tokens: 1.0e+308\n", "corpus.tokens: Input should be less than or equal to 10000000000000000"),
    ("plan-steps-nan", ["estimate", "--latest", "--plan", "{file}"], "phases:\n  - {tokens: .nan}\n", "plan.phases.0.tokens: must be a finite number"),
    ("sweep-million-points", ["sweep", "{file}"], "name: big\ngrid:\n  train.seed: [" + ",".join(map(str, range(1000))) + "]\n  train.batch_size: [1, 2]\n", "sweep.grid: 2,000 points is over 1,000; pass --yes"),
    ("sweep-binary", ["sweep", "{file}"], "name: s\ngrid: !!binary aGVsbG8=\n", "tag !!binary is not allowed"),
]


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A real results store holding the v1 fixture record (imported the way a user would)."""
    from harness.results.record import RunRecord
    from harness.results.store import save

    root = tmp_path_factory.mktemp("hostile") / "results"
    save(RunRecord.from_json(json.loads(FIXTURE.read_text()), "fixture"), root)
    return root


@pytest.mark.parametrize("name, argv, text, expected", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_is_one_line_exit_2_and_leaves_the_store_alone(name, argv, text, expected, store, tmp_path):
    path = tmp_path / "input.yaml"
    if text is not None:
        path.write_text(text)
    before = _snapshot(store)
    out = subprocess.run([sys.executable, "-m", "harness", *[a.replace("{file}", str(path)) for a in argv]],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(REPO), "HARNESS_RESULTS_DIR": str(store)})
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert lines[0].startswith("harness: error: ") and len(lines[0]) <= 300, lines[0]
    assert expected in lines[0], lines[0]
    assert _snapshot(store) == before
    assert not (tmp_path / "pwned").exists()


def test_the_table_has_at_least_25_cases():
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)
