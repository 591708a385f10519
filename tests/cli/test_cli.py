import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_raw

REPO = Path(__file__).resolve().parents[2]


def harness(*args, cwd, timeout=240):
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})


def write_config(tmp_path, raw):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_run_json_prints_a_complete_record(tmp_path):
    config = write_config(tmp_path, tiny_raw("gpt2"))
    out = harness("run", str(config), "--set", "train.batch_size=4", "--json",
                  "--results-dir", str(tmp_path / "results"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)  # stdout holds the record alone
    for key in ("run_id", "model", "params", "batch_size", "seq_len", "dtype", "device",
                "warmup_times_s", "step_times_s", "median_step_s", "tokens_per_s", "samples_per_s",
                "model_flops_per_step", "hardware_flops_per_step", "achieved_flops_per_s",
                "peak_flops_datasheet", "peak_flops_measured", "mfu_datasheet", "mfu_measured",
                "peak_memory_bytes", "env"):
        assert key in record
    assert record["batch_size"] == 4 and record["model"]["family"] == "gpt2"
    assert 0 < record["mfu_measured"] <= 1
    assert (tmp_path / "results" / "runs" / f"{record['run_id']}.json").exists()
    assert (tmp_path / "results" / "harness.db").exists()
    assert "timing" in out.stderr  # progress goes to stderr


def test_run_summary_names_the_record_path(tmp_path):
    config = write_config(tmp_path, tiny_raw("llama"))
    out = harness("run", str(config), "--results-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "MFU" in out.stdout and "record written to" in out.stdout


def test_models_lists_presets_with_parameter_counts(tmp_path):
    out = harness("models", "--json", cwd=tmp_path)
    rows = {r["preset"]: r for r in json.loads(out.stdout)}
    assert rows["gpt2"]["params"] == 124_439_808 and len(rows) == 16


def test_hw_reports_a_measured_peak_and_no_cpu_datasheet(tmp_path):
    out = harness("hw", "--json", "--device", "cpu", cwd=tmp_path)
    data = json.loads(out.stdout)
    assert data["env"]["device"]["type"] == "cpu"
    fp32 = next(p for p in data["peaks"] if p["dtype"] == "fp32")
    assert fp32["measured_flops_per_s"] > 0 and fp32["datasheet_flops_per_s"] is None


def _bad(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


BAD_INPUT = [
    (lambda t: ["run", "gpt7"], "config: file not found"),
    (lambda t: ["run", _bad(t, "a.yaml", "model: {preset: nope}")], "model.preset"),
    (lambda t: ["run", _bad(t, "b.yaml", "model: {preset: gpt2, wings: 2}")], "model.wings"),
    (lambda t: ["run", _bad(t, "c.yaml", "model: {preset: gpt2, hidden: 100}")], "model.heads"),
    (lambda t: ["run", "gpt2", "--set", "train.seq_len=4096"], "train.seq_len"),
    (lambda t: ["run", "gpt2", "--set", "model.layers=0"], "model.layers"),
    (lambda t: ["run", "gpt2", "--set", "train.dtype=fp64"], "train.dtype"),
    (lambda t: ["run", "gpt2", "--set", "train.dtype=fp16", "--set", "device=cpu"], "train.dtype"),
    (lambda t: ["run", _bad(t, "d.yaml", "model: [unclosed\n")], "malformed YAML"),
    (lambda t: ["run", "gpt2", "--set", "nonsense"], "--set"),
    (lambda t: ["run", "gpt2", "--frobnicate"], "No such option"),
    (lambda t: ["count", "gpt7"], "config: file not found"),
    (lambda t: ["count", "gpt2", "--mode", "sideways"], "--mode"),
    (lambda t: ["count", "gpt2", "--depth", "-2"], "--depth"),
    (lambda t: ["count", "gpt2", "--seq", "2048"], "train.seq_len"),
    (lambda t: ["count", "gpt2", "--batch", "0"], "train.batch_size"),
    (lambda t: ["count", "gpt2", "--step-time", "-1", "--gpu", "A100"], "--step-time"),
]


@pytest.mark.parametrize("args, message", BAD_INPUT)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, args, message):
    argv = args(tmp_path)
    if argv[0] == "run":
        argv += ["--results-dir", str(tmp_path / "results")]
    out = harness(*argv, cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_during_the_timed_steps_leaves_no_record(tmp_path):
    raw = tiny_raw("gpt2")
    raw["measure"] = {"warmup_steps": 0, "steps": 100000}
    config = write_config(tmp_path, raw)
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(config),
                             "--results-dir", str(tmp_path / "results")], cwd=tmp_path,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        if line.startswith("timing") or time.monotonic() > deadline:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130
    assert "interrupted" in rest and "Traceback" not in rest
    results = tmp_path / "results"
    assert not results.exists() or not any(results.rglob("*.json"))
    assert not (results / "harness.db").exists()


@pytest.mark.parametrize("mode", ["train", "forward"])
def test_count_json_carries_forward_and_train_flops_in_one_call(capsys, mode):
    from harness.cli import main

    # nanoGPT's transformer_sizing anchor (README): GPT-2 124M at batch 1 x seq 1024
    assert main(["count", "gpt2", "--batch", "1", "--seq", "1024", "--mode", mode, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["forward_flops"] == 291_648_307_200
    assert data["train_flops"] == 874_944_921_600 == 3 * data["forward_flops"]
    assert data["primary_flops"] == data["train_flops" if mode == "train" else "forward_flops"]
    assert {"figures", "by_module", "conventions", "params"} <= set(data)  # today's keys stay
