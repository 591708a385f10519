import re
import types

from harness.measure.env import collect_env, git_commit, nvml_info


class NVMLError(Exception):
    pass


def stand_in_nvml(fail_init=False):
    """A stand-in for the pynvml module (these machines have no GPU): only that boundary is faked."""
    m = types.SimpleNamespace()

    def init():
        if fail_init:
            raise NVMLError("NVML Shared Library Not Found")

    m.nvmlInit = init
    m.nvmlShutdown = lambda: None
    m.nvmlSystemGetCudaDriverVersion = lambda: 12040
    m.nvmlSystemGetDriverVersion = lambda: b"550.54.15"
    m.nvmlDeviceGetCount = lambda: 2
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetName = lambda h: "NVIDIA H100 80GB HBM3"
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=85_520_809_984)
    return m


def test_nvml_present():
    info = nvml_info(stand_in_nvml())
    assert info["available"] and info["driver_version"] == "550.54.15"
    assert info["cuda_driver_version"] == "12.4"
    assert [g["name"] for g in info["gpus"]] == ["NVIDIA H100 80GB HBM3"] * 2


def test_nvml_absent_is_recorded_not_raised():
    info = nvml_info(stand_in_nvml(fail_init=True))
    assert info == {"available": False, "reason": "NVMLError: NVML Shared Library Not Found"}


def test_real_environment_on_this_machine():
    env = collect_env("cpu")
    assert env["device"]["type"] == "cpu" and env["device"]["count"] == 1
    assert env["cpu"]["logical_cores"] >= 1 and env["cpu"]["ram_bytes"] > 0
    assert env["torch_version"] and env["transformers_version"]
    assert env["nvml"]["available"] in (True, False)
    commit = git_commit()
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit)
