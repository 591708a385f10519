"""Distribute: run the same measurement on several processes with torch.distributed.

`harness run CONFIG --nproc N` re-launches itself under torchrun (`python -m torch.distributed.run`),
one process per device: NCCL on GPUs, gloo on CPUs. The same code runs when started by
`torchrun -m harness run ...` or Slurm's `srun` (it reads RANK, WORLD_SIZE, LOCAL_RANK, or
SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID). Every rank times its own steps; a step takes as long
as its slowest rank; rank 0 writes the one record.
"""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Sequence

from harness.errors import ConfigError, HarnessError

STRATEGIES = ("ddp", "fsdp")


class RankFailure(HarnessError):
    """A rank failed or a collective timed out: no record was written."""


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job."""

    rank: int
    world_size: int
    local_rank: int
    nnodes: int


def dist_env(environ: dict[str, str] | None = None) -> DistEnv | None:
    """The distributed environment set by torchrun or Slurm, or None for a single process."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" in env and "RANK" in env:
        world, rank, local = int(env["WORLD_SIZE"]), int(env["RANK"]), int(env.get("LOCAL_RANK", "0"))
        local_world = int(env.get("LOCAL_WORLD_SIZE", str(world)))
    elif "SLURM_NTASKS" in env and "SLURM_PROCID" in env:
        world, rank, local = int(env["SLURM_NTASKS"]), int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", "0"))
        local_world = int(env.get("SLURM_NTASKS_PER_NODE", str(world)).split("(")[0])
    else:
        return None
    if world <= 1:
        return None
    return DistEnv(rank, world, local, max(1, world // max(1, local_world)))


def init(env: DistEnv, device_type: str, timeout_s: float):
    """Join the process group (NCCL on CUDA, gloo on CPU) with a timeout on every collective.
    Returns this rank's device."""
    import torch
    import torch.distributed as dist

    if device_type == "cuda":
        torch.cuda.set_device(env.local_rank)
        device = torch.device("cuda", env.local_rank)
    else:
        device = torch.device("cpu")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")  # srun: set MASTER_ADDR/PORT yourself
    os.environ.setdefault("MASTER_PORT", "29500")
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo", rank=env.rank,
                            world_size=env.world_size, timeout=datetime.timedelta(seconds=timeout_s))
    return device


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model, strategy: str, device):
    """DDP, or FSDP full sharding (FSDP2 `fully_shard` on each transformer block, then the root)."""
    from torch.nn.parallel import DistributedDataParallel

    if strategy == "ddp":
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    from torch.distributed.fsdp import fully_shard

    blocks = set(getattr(model, "_no_split_modules", None) or ())
    for module in model.modules():
        if type(module).__name__ in blocks and module is not model:
            fully_shard(module)
    fully_shard(model)
    return model


def gather(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (a collective: every rank must call it)."""
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def slowest_steps(per_rank_s: Sequence[Sequence[float]]) -> list[float]:
    """Each step's time is its slowest rank's (the others wait for it at the gradient all-reduce)."""
    lengths = {len(times) for times in per_rank_s}
    if len(lengths) != 1:
        raise RankFailure(f"ranks measured different numbers of steps: {sorted(lengths)}")
    return [max(step) for step in zip(*per_rank_s)]


def torchrun_command(argv: Sequence[str], *, nproc: int, nnodes: int = 1, node_rank: int = 0,
                     rdzv_endpoint: str | None = None) -> list[str]:
    """The torchrun command (an argument list, never a shell string) that runs `harness <argv>`
    on `nproc` processes per node."""
    if nproc < 1:
        raise ConfigError("--nproc", "must be >= 1")
    if nnodes < 1:
        raise ConfigError("--nnodes", "must be >= 1")
    if not 0 <= node_rank < nnodes:
        raise ConfigError("--node-rank", f"must be in 0..{nnodes - 1}")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    if nnodes == 1 and rdzv_endpoint is None:
        cmd.append("--standalone")
    else:
        if rdzv_endpoint is None or not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+:\d+", rdzv_endpoint):
            raise ConfigError("--rdzv-endpoint", "HOST:PORT is required with --nnodes > 1")
        cmd += [f"--nnodes={nnodes}", f"--node-rank={node_rank}", "--rdzv-backend=c10d",
                f"--rdzv-endpoint={rdzv_endpoint}"]
    return cmd + ["-m", "harness", *argv]


_FAILED_RANK = re.compile(r"rank\s*:\s*(\d+)")
_EXIT_CODE = re.compile(r"exitcode\s*:\s*(-?\d+)")


def launch(argv: Sequence[str], *, nproc: int, nnodes: int = 1, node_rank: int = 0,
           rdzv_endpoint: str | None = None, timeout_s: float | None = None) -> int:
    """Run `harness <argv>` under torchrun; stdout passes through (rank 0's record). A failed
    rank raises RankFailure naming it, after torchrun has stopped the others."""
    cmd = torchrun_command(argv, nproc=nproc, nnodes=nnodes, node_rank=node_rank, rdzv_endpoint=rdzv_endpoint)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))}
    proc = subprocess.Popen(cmd, stdout=sys.stdout, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("harness: ") or line.startswith("[rank"):  # the ranks' own progress
            sys.stderr.write(line)
    code = proc.wait(timeout=timeout_s)
    if code == 0:
        return 0
    text = "".join(lines)
    ours = [ln.strip() for ln in lines if ln.startswith("harness: error:")]
    if ours and all("rank" in ln or ln == ours[0] for ln in ours) and "exitcode" not in text:
        raise RankFailure(ours[0].removeprefix("harness: error: "))
    ranks = sorted({int(r) for r in _FAILED_RANK.findall(text)})
    codes = _EXIT_CODE.findall(text)
    detail = ours[0].removeprefix("harness: error: ") if ours else "see the log above"
    who = f"rank {', '.join(map(str, ranks))}" if ranks else "a rank"
    how = f" exited with code {codes[0]}" if codes else " failed"
    raise RankFailure(f"distributed run failed: {who}{how} ({detail}); no record was written")
