"""The memory and duration checks a run makes before it builds its model (harness.measure.fit)."""

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.build import build_model, count_params
from harness.config import build_spec, load_spec
from harness.errors import ConfigError
from harness.measure import fit
from tests.conftest import tiny_raw

REPO = Path(__file__).resolve().parents[2]


def _spec(**train):
    return build_spec(tiny_raw("gpt2", **train))


def test_states_are_16_bytes_per_parameter_of_the_real_model():
    spec = _spec()
    params = count_params(build_model(spec.model, "cpu")).total
    est = fit.estimate_memory(spec)
    assert est.params == params
    assert (est.weights_bytes, est.gradients_bytes, est.optimizer_bytes) == (4 * params, 4 * params, 8 * params)
    assert est.distributed_bytes == 0
    assert est.total_bytes == 16 * params + est.activations_bytes


def test_distributed_states_ddp_buckets_and_fsdp_shards():
    spec = _spec()
    single = fit.estimate_memory(spec)
    p = single.params
    ddp = fit.estimate_memory(spec, world_size=4)
    assert ddp.distributed_bytes == 4 * p and ddp.weights_bytes == 4 * p
    fsdp = fit.estimate_memory(build_spec({**tiny_raw("gpt2"), "distributed": {"strategy": "fsdp"}}), world_size=4)
    assert fsdp.weights_bytes == p and fsdp.optimizer_bytes == 2 * p  # 16 B / 4 ranks
    assert fsdp.activations_bytes == single.activations_bytes


def test_activations_grow_with_the_batch_and_shrink_in_bf16():
    one = fit.estimate_memory(_spec(batch_size=2)).activations_bytes
    two = fit.estimate_memory(_spec(batch_size=4)).activations_bytes
    assert 1.8 * one < two <= 2 * one  # all but a few batch-free tensors (the causal mask) scale
    # gpt2's matmul inputs are saved in bf16 under autocast: fewer bytes than fp32
    assert fit.estimate_memory(_spec(batch_size=4, dtype="bf16")).activations_bytes < two


def test_the_need_is_linear_in_depth_and_names_the_slices_that_fit():
    spec = load_spec(Path("llama-7b"))
    est = fit.estimate_memory(spec)
    four = fit.estimate_memory(load_spec(Path("llama-7b"), ["model.layers=4"]))
    assert abs(est.at_depth(4) - four.total_bytes) / four.total_bytes < 1e-6
    assert abs(est.at_depth(32) - est.total_bytes) <= 32  # rounding of per_layer
    # 6.74e9 parameters x 16 B: 100.4 GiB of states, as ZeRO counts them
    assert est.params == 6_738_415_616 and round((est.total_bytes - est.activations_bytes) / 2**30, 1) == 100.4
    limit = fit.MemoryLimit(24 * 2**30, "a 24 GiB test machine")
    message = fit.fit_message(spec, est, limit, "cpu")
    assert message.startswith("llama-7b needs about 113.0 GiB on cpu") and "this device has 24.0 GiB" in message
    deepest = est.layers_that_fit(limit.bytes * fit.USABLE_FRACTION)
    assert est.at_depth(deepest) <= limit.bytes * fit.USABLE_FRACTION < est.at_depth(deepest + 1)
    assert "--depth-slices 1,2,4" in message and deepest == 5
    assert fit.fit_message(spec, est, fit.MemoryLimit(200 * 2**30, "x"), "cuda") is None
    assert fit.suggest_slices(32, 0) == () and fit.suggest_slices(32, 40) == (4, 8, 16)


def test_a_run_over_a_day_needs_confirmation_or_max_minutes():
    spec = load_spec(None, ["measure.steps=1000000"])
    with pytest.raises(ConfigError, match="measure.steps: 1,000,002 steps .* at least 2,777.8 hours .115.7 days.") as info:
        fit.check_duration(spec, 1e13, 1e12, "a test peak")  # 1,000,002 x 10 s > a day
    assert "pass --yes" in str(info.value)
    assert fit.check_duration(spec, 1e13, 1e12, "a test peak", confirmed=True) == pytest.approx(1e7 + 20)
    short = load_spec(None, ["measure.steps=10", "measure.max_minutes=1"])
    with pytest.raises(ConfigError, match="over measure.max_minutes 1"):
        fit.check_duration(short, 1e13, 1e12, "a test peak")  # 12 steps x 10 s = 2 minutes
    assert fit.check_duration(short, 1e12, 1e12, "a test peak") == 12.0


def test_cpu_limit_is_the_lowest_of_available_cgroup_and_ulimit(monkeypatch):
    limit = fit.device_limit("cpu")
    import psutil

    assert 0 < limit.bytes <= psutil.virtual_memory().available * 1.05


def _limited(gib: int):
    def preexec():
        resource.setrlimit(resource.RLIMIT_AS, (gib * 2**30, resource.RLIM_INFINITY))
    return preexec


@pytest.mark.slow
def test_an_address_space_limited_child_refuses_what_cannot_fit_and_runs_what_can(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    results = tmp_path / "results"
    # gpt2-medium: 355M parameters x 16 B = 5.3 GiB of states alone, over a 4 GiB address space
    big = subprocess.run([sys.executable, "-m", "harness", "run", "gpt2-medium", "--results-dir", str(results)],
                         capture_output=True, text=True, timeout=120, env=env, preexec_fn=_limited(4), cwd=tmp_path)
    lines = big.stderr.strip().splitlines()
    assert big.returncode == 2 and len(lines) == 1, big.stderr
    assert "gpt2-medium needs about" in lines[0] and "ulimit -v (RLIMIT_AS 4.0 GiB" in lines[0]
    assert "--depth-slices" in lines[0] and "Traceback" not in big.stderr
    assert not results.exists()  # refused before the store was touched: nothing allocated, nothing stored
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**tiny_raw("gpt2"), "measure": {"warmup_steps": 0, "steps": 1, "energy": False}}))
    small = subprocess.run([sys.executable, "-m", "harness", "run", str(config), "--json", "--results-dir",
                            str(results)], capture_output=True, text=True, timeout=240, env=env,
                           preexec_fn=_limited(4), cwd=tmp_path)
    assert small.returncode == 0, small.stderr
    assert json.loads(small.stdout)["model"]["family"] == "gpt2"


def test_run_llama_7b_on_a_24_gib_machine_answers_in_one_line(monkeypatch, capsys, tmp_path):
    import time

    from harness.cli import main

    monkeypatch.setattr(fit, "device_limit", lambda *a, **k: fit.MemoryLimit(24 * 2**30, "a 24 GiB test machine"))
    started = time.perf_counter()
    assert main(["run", "llama-7b", "--results-dir", str(tmp_path / "r")]) == 2
    assert time.perf_counter() - started < 60
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0] == ("harness: error: memory: llama-7b needs about 113.0 GiB on cpu (100.4 GiB weights, gradients "
                        "and AdamW state, 12.6 GiB activations); this device has 24.0 GiB (a 24 GiB test machine): "
                        "try --depth-slices 1,2,4 or a device with more memory")
    assert not list((tmp_path / "r").rglob("*.json"))
    # the largest slice is checked before any slice runs
    assert main(["run", "llama-7b", "--depth-slices", "4,16", "--results-dir", str(tmp_path / "r")]) == 2
    assert "llama-7b (layers=16) needs about" in capsys.readouterr().err


def test_a_launch_is_refused_before_torchrun_when_its_ranks_cannot_share_the_memory(monkeypatch, capsys, tmp_path):
    from harness.cli import main

    spec = load_spec(Path("gpt2"))
    one = fit.estimate_memory(spec, world_size=2)
    # room for one rank's need, not two: two CPU ranks share this node's memory
    limit = int(one.total_bytes * 1.5)
    monkeypatch.setattr(fit, "device_limit", lambda *a, **k: fit.MemoryLimit(limit, "a test node"))
    assert main(["run", "gpt2", "--nproc", "2", "--set", "device=cpu", "--results-dir", str(tmp_path)]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "(2 processes) on cpu" in line and "this device has" in line
