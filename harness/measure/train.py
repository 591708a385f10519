"""Train: the device, precision and optimizer of a run, and one optimizer step.

A step is `grad_accum` × (forward, loss, backward) then AdamW step and zero_grad. Under DDP or
FSDP every micro-batch but the last runs in `distributed.no_sync`, so that gradients are
synchronised once per step, as in a real training loop. Mixed precision is autocast over fp32
master weights; fp16 adds a gradient scaler.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from harness.config import RunSpec
from harness.errors import ConfigError
from harness.measure.distributed import no_sync

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(request: str) -> torch.device:
    """'auto' → cuda when available, else cpu; 'cuda' without a GPU is a config error."""
    if request == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if request == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda requested but no CUDA device is available; allowed: auto, cpu")
    return torch.device(request)


def supported_dtypes(device: torch.device) -> tuple[str, ...]:
    """Precisions this harness trains in on `device`. CPU: fp32 and bf16 (autocast); fp16
    training on CPU has no fast kernels and no gradient-scaler support worth measuring."""
    if device.type == "cuda":
        return ("fp32", "fp16", "bf16") if torch.cuda.is_bf16_supported() else ("fp32", "fp16")
    return ("fp32", "bf16")


def check_dtype(device: torch.device, dtype: str) -> None:
    allowed = supported_dtypes(device)
    if dtype not in allowed:
        raise ConfigError("train.dtype", f"{dtype} is not supported on {device.type}; "
                          f"allowed: {', '.join(allowed)}")


def autocast_for(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """Autocast context for mixed precision, or a null context for fp32."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=TORCH_DTYPES[dtype])


def make_optimizer(model: nn.Module, lr: float, device: torch.device) -> tuple[torch.optim.Optimizer, str]:
    """AdamW, fused where this torch build supports it on `device`, else foreach.
    Returns the optimizer and which implementation was used."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return torch.optim.AdamW(params, lr=lr, fused=True), "fused"
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(params, lr=lr, foreach=True), "foreach"


@dataclass
class TrainStep:
    """Callable that runs one optimizer step on a fixed synthetic batch."""

    model: nn.Module
    batch: dict
    optimizer: torch.optim.Optimizer
    autocast: contextlib.AbstractContextManager
    scaler: torch.amp.GradScaler | None
    grad_accum: int
    skip_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext  # no gradient sync inside

    def __call__(self) -> float:
        for i in range(self.grad_accum):
            last = i == self.grad_accum - 1
            with contextlib.nullcontext() if last else self.skip_sync():
                with self.autocast:
                    loss = self.model(**self.batch).loss / self.grad_accum
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                else:
                    loss.backward()
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()


def prepare(spec: RunSpec, model: nn.Module, batch: dict, device: torch.device) -> tuple[TrainStep, str]:
    """Apply checkpointing and compile to `model` (plain, or wrapped by `distributed.wrap`), and
    build the step. Returns the step and the optimizer implementation ('fused' or 'foreach')."""
    inner = getattr(model, "module", model)  # under DDP, the wrapped model
    if spec.train.checkpointing and not getattr(inner, "is_gradient_checkpointing", False):
        inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer, impl = make_optimizer(model, spec.train.lr, device)
    runnable = torch.compile(model) if spec.train.compile else model
    scaler = torch.amp.GradScaler(device.type) if spec.train.dtype == "fp16" else None
    step = TrainStep(runnable, batch, optimizer, autocast_for(device, spec.train.dtype), scaler,
                     spec.train.grad_accum, functools.partial(no_sync, model))  # the DDP/FSDP module, not compile's
    return step, impl
