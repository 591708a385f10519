"""Describe the environment a run measured: device, CPU, memory, library versions, git commit.

Nothing here may crash a run: an absent GPU or NVML library is recorded as absent, with why.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def cpu_model() -> str | None:
    """The CPU model name from /proc/cpuinfo, else platform.processor(), else None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def nvml_info(nvml=None) -> dict[str, Any]:
    """Driver and CUDA versions and per-GPU names/memory via NVML (`pynvml`).

    `nvml` is injectable for tests (these machines have no GPU). Returns
    ``{"available": False, "reason": ...}`` when NVML cannot be loaded or initialised.
    """
    try:
        if nvml is None:
            import pynvml as nvml
        nvml.nvmlInit()
    except Exception as err:  # ImportError, NVMLError_LibraryNotFound, driver not loaded...
        return {"available": False, "reason": f"{err.__class__.__name__}: {err}".strip()}
    try:
        cuda = nvml.nvmlSystemGetCudaDriverVersion()  # e.g. 12040 for 12.4
        gpus = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            name = nvml.nvmlDeviceGetName(handle)
            gpus.append({
                "index": i,
                "name": name.decode() if isinstance(name, bytes) else name,
                "memory_bytes": int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
            })
        driver = nvml.nvmlSystemGetDriverVersion()
        return {
            "available": True,
            "driver_version": driver.decode() if isinstance(driver, bytes) else driver,
            "cuda_driver_version": f"{cuda // 1000}.{cuda % 1000 // 10}",
            "gpus": gpus,
        }
    except Exception as err:
        return {"available": False, "reason": f"{err.__class__.__name__}: {err}".strip()}
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass


def git_commit(start: Path | None = None) -> str | None:
    """The project's git commit (HEAD of the checkout holding this package), or None."""
    where = start or Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def device_info(device_type: str) -> dict[str, Any]:
    """Type, name, count and memory of the compute device used."""
    import psutil
    import torch

    if device_type == "cuda":
        props = torch.cuda.get_device_properties(0)
        return {"type": "cuda", "name": props.name, "count": 1,
                "visible_count": torch.cuda.device_count(), "memory_bytes": int(props.total_memory),
                "capability": f"{props.major}.{props.minor}"}
    return {"type": "cpu", "name": cpu_model() or "unknown CPU", "count": 1,
            "memory_bytes": int(psutil.virtual_memory().total)}


def collect_env(device_type: str) -> dict[str, Any]:
    """Everything a reader needs to know where a number came from."""
    import psutil
    import torch
    import transformers

    return {
        "device": device_info(device_type),
        "cpu": {"model": cpu_model(), "physical_cores": psutil.cpu_count(logical=False),
                "logical_cores": psutil.cpu_count(logical=True),
                "ram_bytes": int(psutil.virtual_memory().total)},
        "nvml": nvml_info(),
        "torch_version": torch.__version__,
        "torch_cuda_version": torch.version.cuda,
        "transformers_version": transformers.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "git_commit": git_commit(),
    }
