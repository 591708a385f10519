"""Distribute: run the same measurement on several processes with torch.distributed.

`harness run CONFIG --nproc N` re-launches itself under torchrun (`python -m torch.distributed.run`),
one process per device: NCCL on GPUs, gloo on CPUs. The same code runs when started by
`torchrun -m harness run ...` or Slurm's `srun` (it reads RANK, WORLD_SIZE, LOCAL_RANK, or
SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID). Gradients are synchronised once per step, on its last
micro-batch (`no_sync`). Every rank times its own steps; a step takes as long as its slowest
rank; rank 0 writes the one record.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

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


@contextlib.contextmanager
def no_sync(model) -> Iterator[None]:
    """Within it, backward accumulates gradients on each rank without synchronising them: DDP's
    `no_sync()`; for FSDP2, `set_requires_gradient_sync(False)` on the root and every sharded
    block (no reduce-scatter), restored on exit; nothing for a model on one process. A training
    loop enters it for every micro-batch but the last, so that a step synchronises once."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):  # one process: nothing to synchronise
        yield
        return
    from torch.distributed.fsdp import FSDPModule
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(model, DistributedDataParallel):
        with model.no_sync():
            yield
    elif isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


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
        raise ConfigError("launch.nproc", "must be >= 1")
    if nnodes < 1:
        raise ConfigError("launch.nnodes", "must be >= 1")
    if not 0 <= node_rank < nnodes:
        raise ConfigError("launch.node_rank", f"must be in 0..{nnodes - 1}")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    if nnodes == 1 and rdzv_endpoint is None:
        cmd.append("--standalone")
    else:
        if rdzv_endpoint is None or not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+:\d+", rdzv_endpoint):
            raise ConfigError("launch.rdzv_endpoint", "HOST:PORT is required with --nnodes > 1")
        cmd += [f"--nnodes={nnodes}", f"--node-rank={node_rank}", "--rdzv-backend=c10d",
                f"--rdzv-endpoint={rdzv_endpoint}"]
    return cmd + ["-m", "harness", *argv]


_FAILED_RANK = re.compile(r"rank\s*:\s*(\d+)")
_EXIT_CODE = re.compile(r"exitcode\s*:\s*(-?\d+)")


_TORCHRUN_NOISE = re.compile(r"^(W\d{4}|I\d{4}|\*{5}|Setting OMP_NUM_THREADS|.*torch\.distributed\.run|"
                             r"\s*$|.*elastic/multiprocessing)")


def launch(argv: Sequence[str], *, nproc: int, nnodes: int = 1, node_rank: int = 0,
           rdzv_endpoint: str | None = None) -> str:
    """Run `harness <argv>` under torchrun and return rank 0's stdout (the record or its
    summary); the ranks' stderr passes through, less torchrun's own chatter. A failed rank
    raises RankFailure naming it, after torchrun has stopped the others."""
    import threading

    cmd = torchrun_command(argv, nproc=nproc, nnodes=nnodes, node_rank=node_rank, rdzv_endpoint=rdzv_endpoint)
    threads = str(max(1, (os.cpu_count() or 1) // nproc))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []

    def relay() -> None:
        """Pass the ranks' progress through; hold back errors and torchrun's failure report,
        which become one line below."""
        failing = False
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            failing = failing or line.startswith(("Traceback", "harness: error:", "ERROR:", "[rank")) \
                or "=====" in line or "Error" in line
            if not failing and not _TORCHRUN_NOISE.match(line):
                sys.stderr.write(line)
                sys.stderr.flush()

    relay_thread = threading.Thread(target=relay, daemon=True)
    relay_thread.start()
    out = proc.stdout.read() if proc.stdout is not None else ""
    code = proc.wait()
    relay_thread.join(timeout=5)
    if code == 0:
        return out
    raise RankFailure(failure_message(lines))


def failure_message(lines: Sequence[str]) -> str:
    """One line from a failed torchrun's stderr: the root-cause rank and its exit code from
    torchrun's report when there is one, else the ranks' own `harness: error:` line."""
    text = "".join(lines)
    ours = [ln.strip().removeprefix("harness: error: ") for ln in lines if ln.startswith("harness: error:")]
    root = text[text.find("Root Cause"):] if "Root Cause" in text else ""
    rank = _FAILED_RANK.search(root)
    code = _EXIT_CODE.search(root)
    if rank is None:
        reason = ours[0] if ours else "torchrun failed; see its log"
        return reason if "no record" in reason else f"{reason}; no record was written"
    if ours and code is not None and code.group(1) == "2":  # the rank said why (e.g. a collective timed out)
        reason = ours[0]
        return reason if "no record" in reason else f"{reason}; no record was written"
    how = f" exited with code {code.group(1)}" if code else " failed"
    signal_name = re.search(r"\((SIG[A-Z]+)\)", root[code.end():code.end() + 80]) if code else None
    how += f" ({signal_name.group(1)})" if signal_name else ""
    return f"distributed run failed: rank {rank.group(1)}{how}; no record was written"
