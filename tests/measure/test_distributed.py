"""Multi-process measurement: the pure rules, then real 2-process gloo runs (through `harness run
--nproc 2`, and two spawned ranks for gradient accumulation)."""

import sys

import pytest

from harness.measure.distributed import DistEnv, RankFailure, dist_env, slowest_steps, torchrun_command
from harness.errors import ConfigError


def test_env_from_torchrun_and_slurm():
    assert dist_env({}) is None
    assert dist_env({"WORLD_SIZE": "1", "RANK": "0"}) is None
    assert dist_env({"WORLD_SIZE": "8", "RANK": "5", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}) == \
        DistEnv(rank=5, world_size=8, local_rank=1, nnodes=2)
    assert dist_env({"SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SLURM_LOCALID": "1",
                     "SLURM_NTASKS_PER_NODE": "2"}) == DistEnv(3, 4, 1, 2)


def test_a_step_takes_as_long_as_its_slowest_rank():
    per_rank = [[1.0, 2.0, 3.0], [1.5, 1.0, 3.5]]
    assert slowest_steps(per_rank) == [1.5, 2.0, 3.5]
    with pytest.raises(RankFailure):
        slowest_steps([[1.0], [1.0, 2.0]])


def test_torchrun_command_is_an_argument_list():
    cmd = torchrun_command(["run", "cfg.yaml"], nproc=2)
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"] and "--standalone" in cmd
    assert cmd[-4:] == ["-m", "harness", "run", "cfg.yaml"]
    multi = torchrun_command(["run"], nproc=8, nnodes=2, node_rank=1, rdzv_endpoint="10.0.0.1:29400")
    assert "--nnodes=2" in multi and "--rdzv-endpoint=10.0.0.1:29400" in multi and "--standalone" not in multi
    with pytest.raises(ConfigError, match="rdzv"):
        torchrun_command(["run"], nproc=2, nnodes=2)
    with pytest.raises(ConfigError, match="rdzv"):
        torchrun_command(["run"], nproc=2, nnodes=2, rdzv_endpoint="host;rm -rf /:1")
    with pytest.raises(ConfigError):
        torchrun_command(["run"], nproc=0)


# --- real runs: two processes with gloo on loopback --------------------------------------------

import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from harness.results.store import load_records  # noqa: E402
from tests.conftest import tiny_raw  # noqa: E402
from tests.cli.test_cli import harness, write_config  # noqa: E402


def config(tmp_path, strategy="ddp", steps=3, timeout_s=60):
    raw = tiny_raw("gpt2", grad_accum=2)
    raw["measure"] = {"warmup_steps": 1, "steps": steps, "energy": False}
    raw["distributed"] = {"strategy": strategy, "timeout_s": timeout_s}
    return str(write_config(tmp_path, raw))


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_one_record_with_world_size_accounting(tmp_path, strategy):
    out = harness("run", config(tmp_path, strategy), "--nproc", "2", "--json", "--results-dir",
                  str(tmp_path / "r"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["world_size"] == 2 and r["strategy"] == strategy and r["nnodes"] == 1
    # global tokens and FLOPs: 2 ranks x grad_accum 2 x batch 2 x seq 16
    assert r["tokens_per_step"] == 2 * 2 * 2 * 16
    one_rank = r["flops"]["model"]["per_rank_per_step"]  # the counted per-rank step (all micro-batches)
    assert r["model_flops_per_step"] == 2 * one_rank and "per_step" not in r["flops"]["model"]
    assert r["flops"]["hardware"]["per_rank_per_step"] * 2 == r["hardware_flops_per_step"]
    assert [p["rank"] for p in r["per_rank"]] == [0, 1]
    slowest = [max(a, b) for a, b in zip(r["per_rank"][0]["step_times_s"], r["per_rank"][1]["step_times_s"])]
    assert r["step_times_s"] == slowest
    assert r["tokens_per_s"] == pytest.approx(r["tokens_per_step"] * 3 / sum(slowest))
    assert r["per_device_tokens_per_s"] == pytest.approx(r["tokens_per_s"] / 2)
    assert r["mfu_measured"] == pytest.approx(r["achieved_flops_per_s"] / 2 / r["peak_flops_measured"])
    (stored,) = load_records(tmp_path / "r")  # rank 0 alone writes
    assert stored.to_dict() == r and stored.achieved_flops_per_s_per_device == pytest.approx(r["achieved_flops_per_s"] / 2)


def _descendants(root: int) -> set[int]:
    """Every process below `root` (its children, theirs, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # after "pid (comm) state"
        children.setdefault(ppid, []).append(int(proc.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _rank_pids(parent: int, local_rank: str) -> list[int]:
    """The ranks with `local_rank` of the run started as `parent`, and no other run's (tests run
    side by side: a rank of someone else's run must never be signalled)."""
    pids = []
    for pid in sorted(_descendants(parent)):
        proc = Path("/proc") / str(pid)
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"harness" in cmd and f"LOCAL_RANK={local_rank}".encode() in env and \
                b"TORCHELASTIC_RUN_ID" in b"".join(env):
            pids.append(pid)
    return pids


def _start_two_ranks(tmp_path, results, *, timeout_s):
    """A 2-rank run with endless steps; returns it and rank 1's pid once it is timing steps."""
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", config(tmp_path, steps=100000, timeout_s=timeout_s),
                             "--nproc", "2", "--results-dir", str(results)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    victims = []
    while time.time() < deadline and not victims:
        time.sleep(1.0)
        victims = _rank_pids(proc.pid, "1")
    assert victims, "rank 1 never started"
    time.sleep(8.0)  # into the timed steps
    return proc, victims


def _end_run(proc) -> None:
    """Kill what is left of a run this test started (its launcher, torchrun and ranks), if any."""
    for pid in [*_descendants(proc.pid), proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(30)


@pytest.mark.slow
def test_a_killed_rank_ends_the_run_with_its_name_and_no_record(tmp_path):
    results = tmp_path / "r"
    proc, victims = _start_two_ranks(tmp_path, results, timeout_s=20)
    os.kill(victims[0], signal.SIGKILL)
    started = time.time()
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        _end_run(proc)
    assert proc.returncode == 2 and time.time() - started < 60
    last = err.strip().splitlines()[-1]
    assert last.startswith("harness: error:") and "rank 1" in last and "no record" in last, err[-2000:]
    assert load_records(results) == []


def test_failure_message_names_the_root_cause_rank():
    from harness.measure.distributed import failure_message

    log = ["harness: error: rank 0: Connection closed by peer; no record was written\n",
           "Root Cause (first observed failure):\n", "[0]:\n", "  rank      : 1 (local_rank: 1)\n",
           "  exitcode  : -9 (pid: 24991)  (SIGKILL)\n"]
    assert failure_message(log) == "distributed run failed: rank 1 exited with code -9 (SIGKILL); no record was written"
    assert failure_message(["harness: error: rank 1: collective timed out; no record was written\n"]) == \
        "rank 1: collective timed out; no record was written"


@pytest.mark.slow
def test_a_hung_rank_times_out_instead_of_hanging(tmp_path):
    results = tmp_path / "r"
    proc, victims = _start_two_ranks(tmp_path, results, timeout_s=5)
    os.kill(victims[0], signal.SIGSTOP)  # hangs: alive, silent
    started = time.time()
    try:
        _, err = proc.communicate(timeout=150)
    finally:
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _end_run(proc)
    assert proc.returncode == 2 and time.time() - started < 150
    last = err.strip().splitlines()[-1]
    assert last.startswith("harness: error: rank 0:") and "no record" in last, err[-2000:]
    assert load_records(results) == []


# --- gradient accumulation: one synchronisation per step ----------------------------------------

def _accumulating_rank(rank: int, port: int, out_dir: str) -> None:
    """One of two gloo ranks: for DDP and for FSDP, one step of grad_accum 4 as `prepare` builds
    it and one that synchronises every micro-batch, counting the gradient collectives of each;
    writes the counts and the largest differences to out_dir/rank<rank>.json."""
    import contextlib

    import torch
    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    from harness.build import build_model, make_batch
    from harness.config import build_spec, with_changes
    from harness.measure import distributed
    from harness.measure.train import prepare

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    device = distributed.init(DistEnv(rank, 2, rank, 1), "cpu", timeout_s=60)
    spec = build_spec(tiny_raw("gpt2", grad_accum=4, lr=1e-2))
    batch = make_batch(with_changes(spec, {"train.seed": rank + 1}))  # each rank its own data
    calls = {"all_reduce": 0, "reduce_scatter": 0}
    reduce_scatter = dist.reduce_scatter_single

    def counted_reduce_scatter(*args, **kwargs):  # FSDP2 reduces gradients through this
        calls["reduce_scatter"] += 1
        return reduce_scatter(*args, **kwargs)

    def counted_all_reduce(state, bucket):  # DDP's default all-reduce, counted per bucket
        calls["all_reduce"] += 1
        return default_hooks.allreduce_hook(state, bucket)

    def full(t):
        return t.full_tensor() if hasattr(t, "full_tensor") else t

    def one_step(strategy: str | None, every_micro_batch: bool = False):
        model = build_model(spec.model, "cpu", seed=spec.train.seed)
        if strategy is not None:
            model = distributed.wrap(model, strategy, device)
        if strategy == "ddp":
            model.register_comm_hook(None, counted_all_reduce)
        step, _ = prepare(spec, model, batch, device)
        if every_micro_batch:
            step.skip_sync = contextlib.nullcontext
        params, grads = list(model.parameters()), []
        step.optimizer.register_step_pre_hook(lambda *_: grads.extend(p.grad.detach().clone() for p in params))
        for key in calls:
            calls[key] = 0
        dist.reduce_scatter_single = counted_reduce_scatter
        try:
            step()
        finally:
            dist.reduce_scatter_single = reduce_scatter
        counted = dict(calls)
        return counted, [full(g) for g in grads], [full(p.detach()) for p in params]

    _, local_grads, _ = one_step(None)  # this rank's gradient alone
    mean_grads = []
    for g in local_grads:
        both = [torch.empty_like(g) for _ in range(2)]
        dist.all_gather(both, g)
        mean_grads.append((both[0] + both[1]) / 2)
    result = {}
    for strategy in ("ddp", "fsdp"):
        once, grads, params = one_step(strategy)
        every, grads_every, params_every = one_step(strategy, every_micro_batch=True)
        result[strategy] = {
            "once": once, "every": every,
            "grad_vs_every": max(float((a - b).abs().max()) for a, b in zip(grads, grads_every)),
            "params_vs_every": max(float((a - b).abs().max()) for a, b in zip(params, params_every)),
            "grad_vs_mean_of_ranks": max(float((a - b).abs().max()) for a, b in zip(grads, mean_grads)),
            "grad_vs_own_rank": max(float((a - b).abs().max()) for a, b in zip(grads, local_grads)),
        }
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    distributed.shutdown()


@pytest.mark.slow
def test_accumulated_micro_batches_synchronise_once_per_step(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_accumulating_rank, args=(port, str(tmp_path)), nprocs=2, start_method="spawn")
    for rank in (0, 1):
        r = json.loads((tmp_path / f"rank{rank}.json").read_text())
        ddp, fsdp = r["ddp"], r["fsdp"]
        # DDP: the tiny model's gradients fit one bucket: one all-reduce a step, not one per micro-batch
        assert ddp["once"]["all_reduce"] == 1 and ddp["every"]["all_reduce"] == 4
        # FSDP2: one reduce-scatter per sharded group (2 blocks and the root) a step, not 4 of each
        assert fsdp["once"]["reduce_scatter"] == 3 and fsdp["every"]["reduce_scatter"] == 12
        for s in (ddp, fsdp):
            assert s["grad_vs_own_rank"] > 1e-4  # the ranks' data differ: the synchronisation matters
            assert s["grad_vs_mean_of_ranks"] < 1e-6  # and the step's gradient is the mean of both
            assert s["grad_vs_every"] < 1e-6 and s["params_vs_every"] < 1e-6
