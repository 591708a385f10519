"""Train: the device, precision and optimizer of a run, and one optimizer step.

A step is `grad_accum` × (forward, loss, backward) then AdamW step and zero_grad. Under DDP or
FSDP every micro-batch but the last runs in `distributed.no_sync`, so that gradients are
synchronised once per step, as in a real training loop. Mixed precision is autocast over fp32
master weights; fp16 adds a gradient scaler. fp8 is torchao's float8 training
(`convert_to_float8_training`, tensorwise dynamic scaling) on the linear layers whose shapes FP8
kernels take, under bf16 autocast for the rest; torchao is an optional dependency
(``pip install harness[fp8]``), imported only by an fp8 run.
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
AUTOCAST_DTYPES = {**TORCH_DTYPES, "fp8": torch.bfloat16}  # fp8: what the converted layers do not cover runs in bf16
FP8_INSTALL = "pip install harness[fp8]"


def resolve_device(request: str) -> torch.device:
    """'auto' → cuda when available, else cpu; 'cuda' without a GPU is a config error."""
    if request == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if request == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda requested but no CUDA device is available; allowed: auto, cpu")
    return torch.device(request)


def device_fp8_unsupported(device: torch.device) -> str | None:
    """Why `device` cannot train in fp8, or None (see `harness.hardware.fp8_unsupported`)."""
    from harness.hardware import fp8_unsupported

    if device.type != "cuda":
        return fp8_unsupported(device.type)
    props = torch.cuda.get_device_properties(device)
    return fp8_unsupported("cuda", (props.major, props.minor), torch.version.hip, getattr(props, "gcnArchName", None))


def supported_dtypes(device: torch.device) -> tuple[str, ...]:
    """Precisions this harness trains in on `device`. CPU: fp32 and bf16 (autocast); fp16
    training on CPU has no fast kernels and no gradient-scaler support worth measuring. GPUs
    with FP8 tensor cores add fp8."""
    if device.type == "cuda":
        dtypes = ("fp32", "fp16", "bf16") if torch.cuda.is_bf16_supported() else ("fp32", "fp16")
        return dtypes + (("fp8",) if device_fp8_unsupported(device) is None else ())
    return ("fp32", "bf16")


def check_dtype(device: torch.device, dtype: str) -> None:
    allowed = supported_dtypes(device)
    if dtype == "fp8" and dtype not in allowed:
        raise ConfigError("train.dtype", f"{device_fp8_unsupported(device)}; allowed: {', '.join(allowed)}")
    if dtype not in allowed:
        raise ConfigError("train.dtype", f"{dtype} is not supported on {device.type}; "
                          f"allowed: {', '.join(allowed)}")
    if dtype == "fp8":
        import importlib.util

        if importlib.util.find_spec("torchao") is None:
            raise ConfigError("train.dtype", f"fp8 trains through torchao, which is not installed: {FP8_INSTALL}")


def autocast_for(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """Autocast context for mixed precision, or a null context for fp32."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[dtype])


@dataclass(frozen=True)
class Fp8Conversion:
    """Which linear layers of a model an fp8 run converted to float8 training, and which it kept
    in bf16 with why (`kept`: module name → reason)."""

    converted: tuple[str, ...]
    kept: dict[str, str]
    library: str
    recipe: str = "tensorwise dynamic scaling (torchao Float8LinearConfig default)"


def fp8_keep_reason(name: str, module: nn.Module, head: nn.Module | None) -> str | None:
    """Why linear layer `name` stays in bf16 under fp8 training, or None to convert it.

    The output head stays in bf16, as torchtitan and torchao's examples keep it (its logits feed
    the loss directly); FP8 GEMM kernels need both dimensions divisible by 16."""
    if head is not None and module is head:
        return "the output head (its logits feed the loss) stays in bf16"
    if module.in_features % 16 or module.out_features % 16:
        return f"shape {module.in_features}x{module.out_features}: FP8 kernels need multiples of 16"
    return None


def convert_fp8(model: nn.Module, convert: Callable | None = None) -> Fp8Conversion:
    """Convert `model`'s linear layers to torchao float8 training, in place, before any
    DDP/FSDP wrapping or compile. `convert` stands in for ``torchao.float8.
    convert_to_float8_training(model, module_filter_fn=...)`` (a seam for tests; None imports
    torchao). A model with no convertible linear layer is a config error: an "fp8" run of it
    would be a bf16 run under another name (GPT-2 is built of Conv1D, not nn.Linear)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    kept = {name: why for name, m in linears.items() if (why := fp8_keep_reason(name, m, head)) is not None}
    converted = tuple(name for name in linears if name not in kept)
    if not converted:
        raise ConfigError("train.dtype", f"fp8: no linear layer of this model can train in FP8 "
                          f"({len(linears)} nn.Linear, all kept: GPT-2 is built of Conv1D); "
                          "allowed: a model with nn.Linear layers (llama, bert, t5, hf families)")
    library = "stand-in"
    if convert is None:
        try:
            import torchao
            from torchao.float8 import convert_to_float8_training
        except ImportError:
            raise ConfigError("train.dtype", f"fp8 trains through torchao, which is not installed: {FP8_INSTALL}") from None
        convert, library = convert_to_float8_training, f"torchao {torchao.__version__}"
    wanted = set(converted)
    convert(model, module_filter_fn=lambda module, fqn: fqn in wanted)
    return Fp8Conversion(converted=converted, kept=kept, library=library)


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
