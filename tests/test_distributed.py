"""Multi-process measurement: the pure rules here; real 2-process gloo runs in test_cli."""

import sys

import pytest

from harness.distributed import DistEnv, RankFailure, dist_env, slowest_steps, torchrun_command
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
