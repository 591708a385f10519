"""Count: FLOPs of a training step with torch's dispatcher counter.

Convention throughout: FLOP = 2·MAC (one multiply-add is two FLOPs), as
``torch.utils.flop_counter`` counts. Only matmuls, convolutions and attention kernels carry a
formula; every other op that ran is listed in ``FlopCount.uncounted_ops`` with its call count.
An attention op without a formula is an error, never a silent zero.

Two counts of the same step:

* model FLOPs (for MFU, PaLM App. B): the arithmetic the model needs; a fused attention
  backward counts 4 matmuls (2x its forward) and activation recomputation is not counted.
* hardware FLOPs (for HFU): what the kernels executed; a fused attention backward recomputes
  QKᵀ (5 matmuls, torch's own formula) and checkpointing re-runs the forward.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Mapping

import torch
from torch import nn
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode

from harness.errors import UncountedOpError

if TYPE_CHECKING:
    from harness.build import ParamCounts

aten = torch.ops.aten
CONVENTION = "2*MAC"
CountKind = Literal["model", "hardware"]


def _attention_forward(q_shape, k_shape, v_shape) -> int:
    """QKᵀ and PV: 2·b·h·s_q·s_k·(d_qk + d_v). Key/value heads may be fewer (GQA)."""
    b, h, s_q, d_qk = q_shape
    s_k, d_v = k_shape[-2], v_shape[-1]
    return 2 * b * h * s_q * s_k * (d_qk + d_v)


def _attention_backward_model(q_shape, k_shape, v_shape) -> int:
    """dO·Vᵀ, Pᵀ·dO, dS·K, dSᵀ·Q: exactly twice the forward (no recomputation)."""
    return 2 * _attention_forward(q_shape, k_shape, v_shape)


def _attention_backward_hardware(q_shape, k_shape, v_shape) -> int:
    """The model backward plus the recomputed QKᵀ of fused kernels (torch's convention)."""
    b, h, s_q, d_qk = q_shape
    return _attention_backward_model(q_shape, k_shape, v_shape) + 2 * b * h * s_q * k_shape[-2] * d_qk


def _fwd(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    return _attention_forward(q_shape, k_shape, v_shape)


def _bwd_model(grad_shape, q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    return _attention_backward_model(q_shape, k_shape, v_shape)


def _bwd_hardware(grad_shape, q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    return _attention_backward_hardware(q_shape, k_shape, v_shape)


# Fused SDPA kernels, (batch, heads, seq, dim) layout, query/key/value first (after grad_out in
# backward). torch has no formula for the CPU and "overrideable" kernels: they counted 0.
_FUSED_FORWARD = (
    aten._scaled_dot_product_flash_attention_for_cpu,
    aten._scaled_dot_product_fused_attention_overrideable,
)
_FUSED_BACKWARD = (
    aten._scaled_dot_product_flash_attention_for_cpu_backward,
    aten._scaled_dot_product_fused_attention_overrideable_backward,
    aten._scaled_dot_product_flash_attention_backward,
    aten._scaled_dot_product_efficient_attention_backward,
    aten._scaled_dot_product_cudnn_attention_backward,
)

HARDWARE_FORMULAS = {**{op: _fwd for op in _FUSED_FORWARD}, **{op: _bwd_hardware for op in _FUSED_BACKWARD}}
MODEL_FORMULAS = {**{op: _fwd for op in _FUSED_FORWARD}, **{op: _bwd_model for op in _FUSED_BACKWARD}}


def _scaled(raw_formula, factor: float):
    """A raw-argument formula scaled by `factor` (the low-level flash/efficient backward ops
    take (batch, seq, heads, dim) layouts; 4/5 removes the recomputed QKᵀ when d_qk = d_v)."""

    def formula(*args, **kwargs):
        return int(raw_formula(*args, **kwargs) * factor)

    formula._get_raw = True
    return formula


for _op in (aten._flash_attention_backward, aten._efficient_attention_backward):
    MODEL_FORMULAS[_op] = _scaled(flop_counter.flop_registry[_op], 4 / 5)


def _rows(offs) -> int | None:
    """Rows a grouped matmul computes, read off its offsets when they hold values (a real run:
    rows past offs[-1], expert-parallel sentinels, are skipped); None on a fake or meta tensor."""
    from torch._subclasses.fake_tensor import FakeTensor

    if offs is None or isinstance(offs, FakeTensor) or offs.device.type == "meta" or offs.numel() == 0:
        return None
    return int(offs[-1])


def _grouped_mm(mat_a, mat_b, *args, offs=None, out_val=None, **kwargs) -> int:
    """torch's grouped matmul (mixture-of-experts layers): 2 FLOPs per multiply-add of every
    group, Σ_g 2·m_g·k_g·n_g. torch's counter has no formula for it (it would count 0).
    2-D x 3-D (tokens sorted by expert @ expert weights): 2·rows·K·N, rows = offs[-1] when known;
    2-D x 2-D (the weight gradient, groups along K): 2·M·K·N; 3-D x 3-D: 2·G·M·K·N;
    3-D x 2-D (groups along N): 2·M·K·N."""
    if len(args) >= 1 and offs is None:
        offs = args[0]
    a, b = mat_a.shape, mat_b.shape
    if len(a) == 2 and len(b) == 3:
        rows = _rows(offs)
        return 2 * (a[0] if rows is None else rows) * a[1] * b[2]
    if len(a) == 2 and len(b) == 2:
        return 2 * a[0] * a[1] * b[1]
    if len(a) == 3 and len(b) == 3:
        return 2 * a[0] * a[1] * a[2] * b[2]
    return 2 * a[1] * a[2] * b[1]


_grouped_mm._get_raw = True
GROUPED_MM_OPS = tuple(op for op in (getattr(aten, "_grouped_mm", None),) if op is not None)
for _op in GROUPED_MM_OPS:
    MODEL_FORMULAS[_op] = HARDWARE_FORMULAS[_op] = _grouped_mm


# Ops that move, view, allocate or index data and do no arithmetic: listed apart from the ops
# that do real work without a formula (elementwise, norms, softmax, loss), so that the list
# of what the count leaves out is readable. An op not named here counts as arithmetic.
DATA_MOVEMENT_OPS = frozenset(f"aten.{name}" for name in (
    "view", "_unsafe_view", "reshape", "expand", "t", "transpose", "permute", "unsqueeze", "squeeze",
    "slice", "select", "split", "split_with_sizes", "chunk", "unbind", "detach", "alias", "clone",
    "contiguous", "cat", "stack", "copy_", "_to_copy", "to", "empty", "empty_like", "empty_strided",
    "zeros", "zeros_like", "ones", "ones_like", "new_ones", "new_zeros", "new_empty", "full",
    "full_like", "fill_", "zero_", "arange", "scalar_tensor", "lift_fresh", "constant_pad_nd",
    "index", "gather", "embedding", "as_strided", "masked_fill", "where", "eq", "ne", "le", "lt",
    "ge", "gt", "bitwise_and", "bitwise_or", "bitwise_not", "logical_not", "_local_scalar_dense",
)) | {"prim.device"}


def split_uncounted(uncounted: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """(ops that do arithmetic but have no formula, ops that only move or view data), each op → calls."""
    arithmetic = {op: n for op, n in uncounted.items() if op not in DATA_MOVEMENT_OPS}
    movement = {op: n for op, n in uncounted.items() if op in DATA_MOVEMENT_OPS}
    return arithmetic, movement


class _OpCensus(TorchDispatchMode):
    """Counts every op dispatched, so that ops without a formula can be reported."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls[func._overloadpacket] += 1
        return func(*args, **(kwargs or {}))


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one counted region, FLOP = 2·MAC.

    `by_op` maps op name → FLOPs; `by_module` maps module path → FLOPs (torch's ModuleTracker,
    "Global" is the total); `uncounted_ops` maps op name → calls for ops with no formula
    (elementwise, norms, softmax, optimizer arithmetic: real work that this count leaves out).
    `forward_total` is the forward's share of `total`, read off the counter before the backward
    ran (= `total` when `includes_backward` is False; None when not known).
    """

    total: int
    kind: CountKind
    includes_backward: bool
    by_op: Mapping[str, int] = field(default_factory=dict)
    by_module: Mapping[str, int] = field(default_factory=dict)
    uncounted_ops: Mapping[str, int] = field(default_factory=dict)
    convention: str = CONVENTION
    forward_total: int | None = None
    # the forward's by_module, read before the backward ran: exact module attribution (the
    # backward's is approximate at module boundaries, where torch's tracker switches late)
    forward_by_module: Mapping[str, int] = field(default_factory=dict)

    def scaled(self, factor: int) -> "FlopCount":
        """This count repeated `factor` times (e.g. gradient-accumulation micro-batches)."""
        return FlopCount(self.total * factor, self.kind, self.includes_backward,
                         {k: v * factor for k, v in self.by_op.items()},
                         {k: v * factor for k, v in self.by_module.items()},
                         {k: v * factor for k, v in self.uncounted_ops.items()}, self.convention,
                         None if self.forward_total is None else self.forward_total * factor,
                         {k: v * factor for k, v in self.forward_by_module.items()})


def count_flops(model: nn.Module, batch: Mapping[str, torch.Tensor], *, kind: CountKind = "model",
                backward: bool = True, autocast: contextlib.AbstractContextManager | None = None
                ) -> FlopCount:
    """Run one forward (and backward) of `model` on `batch` under torch's FLOP counter.

    The step is real (on `model`'s device) but untimed; gradients are cleared afterwards.
    Raises UncountedOpError if an attention op ran that has no formula.
    """
    mapping = MODEL_FORMULAS if kind == "model" else HARDWARE_FORMULAS
    counter = flop_counter.FlopCounterMode(display=False, custom_mapping=mapping)
    census = _OpCensus()
    with counter, census:
        with autocast or contextlib.nullcontext():
            loss = model(**batch).loss
        forward_total = counter.get_total_flops()
        forward_by_module = {mod: sum(ops.values()) for mod, ops in counter.get_flop_counts().items()}
        if backward:
            loss.backward()
    if backward:
        model.zero_grad(set_to_none=True)
    missing = {str(op): n for op, n in census.calls.items() if op not in counter.flop_registry}
    attention = sorted(name for name in missing if "attention" in name)
    if attention:
        raise UncountedOpError(f"attention ops ran with no FLOP formula: {', '.join(attention)}; "
                               "use model.attention=eager or add a formula in harness/count.py")
    counts = counter.get_flop_counts()
    return FlopCount(
        total=counter.get_total_flops(), kind=kind, includes_backward=backward,
        by_op={str(op): n for op, n in counts.get("Global", {}).items()},
        by_module={mod: sum(ops.values()) for mod, ops in counts.items()},
        uncounted_ops=dict(sorted(missing.items())), forward_total=forward_total,
        forward_by_module=forward_by_module,
    )


def count_model_flops(spec, *, backward: bool = True) -> tuple[FlopCount, "ParamCounts"]:
    """Model FLOPs of one optimizer step of `spec` (all micro-batches) and its parameter counts.

    Counted on a fake replica (meta-backed tensors under FakeTensorMode: no memory, no data),
    without activation checkpointing, so that any model size counts in seconds. Fake rather
    than plain meta tensors because transformers skips its data-dependent mask checks for them.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    from harness.build import build_model, count_params, make_batch

    with FakeTensorMode(allow_non_fake_inputs=True):
        model = build_model(spec.model, "cpu", seed=spec.train.seed, fake=True, documents=spec.train.documents)
        params = count_params(model)
        count = count_flops(model, make_batch(spec, "cpu"), kind="model", backward=backward)
    return count.scaled(spec.train.grad_accum), params


def expert_flops(count: FlopCount, layout) -> int:
    """FLOPs of the routed experts' own modules (`layout` a build.ExpertLayout), the router and
    shared experts being outside them: the forward's as counted, x3 when the count includes the
    backward (every expert op is a matmul, whose backward is two matmuls of its size)."""
    names = set(layout.modules)
    forward = sum(flops for key, flops in count.forward_by_module.items() if key.partition(".")[2] in names)
    return 3 * forward if count.includes_backward else forward


@contextlib.contextmanager
def routed_tokens(model: nn.Module):
    """Record the routing of a real forward: for each expert module (path → list), the tokens
    routed to each expert (token-expert assignments, k per token), from the `top_k_index` that
    transformers passes to its expert modules. The first forward only (a checkpointed
    backward's recomputation routes the same); nothing on fake or meta tensors (no values)."""
    from torch._subclasses.fake_tensor import FakeTensor

    from harness.build import expert_modules

    loads: dict[str, list[int]] = {}
    handles = []
    for name, module in expert_modules(model):
        def hook(mod, args, kwargs, name=name):
            index = args[1] if len(args) > 1 else kwargs.get("top_k_index")
            if name in loads or index is None or isinstance(index, FakeTensor) or index.device.type == "meta":
                return
            index = index.detach().reshape(-1)
            index = index[index < mod.num_experts]  # expert-parallel sentinels are no expert's
            loads[name] = torch.bincount(index.cpu(), minlength=mod.num_experts).tolist()
        handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        yield loads
    finally:
        for handle in handles:
            handle.remove()


def module_groups(by_module: Mapping[str, int]) -> dict[str, int]:
    """Each module's own FLOPs (its total minus its children's), layers merged (`h.0.attn`,
    `h.1.attn` → `h.*.attn`), largest first; "(own ops)" marks a module's ops outside its
    children. Containers never called (ModuleList) are absent from `by_module` and skipped."""
    modules = {name: flops for name, flops in by_module.items() if name != "Global"}
    children: dict[str, int] = defaultdict(int)
    for name, flops in modules.items():
        parent = name.rpartition(".")[0]
        while parent and parent not in modules:
            parent = parent.rpartition(".")[0]
        if parent:
            children[parent] += flops
    groups: dict[str, int] = defaultdict(int)
    for name, flops in modules.items():
        own = flops - children[name]
        if own <= 0:
            continue
        path = name.partition(".")[2] or name  # drop the root class name
        label = re.sub(r"\.\d+(?=\.|$)", ".*", path)
        if children[name]:
            label += " (own ops)"
        groups[label] += own
    return dict(sorted(groups.items(), key=lambda kv: -kv[1]))
