"""Reconcile: torch's count (primary) beside fvcore and the closed forms, each with its reason.

Every figure is FLOPs per optimizer step, FLOP = 2·MAC. The primary figure is torch's
dispatcher count of model FLOPs (no recomputation). Differences are explained by the terms the
formulas leave out: the LM head (when tied, it is not in N), the attention matmuls, Kaplan's
single-counted attention, recomputation, and what no formula counts (norms, elementwise ops).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from harness.analytic import attention_score_flops, kaplan_forward, megatron, palm, shape_of, six_n
from harness.count import count_model_flops

CAUSAL_FAMILIES = ("gpt2", "llama")


@dataclass(frozen=True)
class Figure:
    """One counter's or formula's figure, its difference from the primary and why."""

    name: str
    flops: int
    delta_pct: float
    source: str   # counted | analytic
    reason: str


@dataclass(frozen=True)
class CountReport:
    """`harness count`'s result: the figures, the conventions, and the breakdowns."""

    model: dict[str, Any]
    mode: str                       # forward | train
    batch_size: int
    seq_len: int
    decoder_seq_len: int | None
    grad_accum: int
    params: int
    params_non_embedding: int
    conventions: dict[str, Any]
    primary_flops: int
    figures: list[Figure]
    by_module: dict[str, int]       # module path → FLOPs, to the chosen depth
    by_operator: dict[str, int]
    uncounted_ops: dict[str, int]   # op → calls, no formula (not counted, not zero)
    mfu: dict[str, Any] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pct(value: int, primary: int) -> float:
    return 100.0 * (value - primary) / primary if primary else 0.0


def _share(amount: int, primary: int) -> str:
    return f"{amount:,} ({100.0 * amount / primary:.1f}%)" if primary else f"{amount:,}"


def causal_attention_forward(spec, shape) -> int:
    """Forward FLOPs of the causally masked attention matmuls (halving removes half of these)."""
    if spec.model.family in CAUSAL_FAMILIES:
        return attention_score_flops(shape)
    if spec.model.family == "t5":  # decoder self-attention only
        return 4 * shape.d_attn * shape.dec_layers * shape.sequences * shape.dec_len * shape.dec_len
    return 0


def reconcile(spec, *, mode: str = "train", depth: int = 2, causal_halving: bool = False,
              fvcore_count=None) -> CountReport:
    """Count `spec` with torch's counter on a fake replica and set the other figures beside it.
    `fvcore_count` (a forward FLOP total from harness.fvcount, or None) joins the table."""
    train = mode == "train"
    count, params = count_model_flops(spec, backward=train)
    shape = shape_of(spec, params)
    passes = 3 if train else 1  # backward = 2 x forward for every matmul
    attention = passes * attention_score_flops(shape)
    tied = spec.model.family != "llama"
    head_tokens = shape.sequences * (shape.dec_len if shape.dec_layers else shape.enc_len)
    head = passes * 2 * head_tokens * shape.d_model * shape.vocab
    halved = passes * causal_attention_forward(spec, shape) // 2 if causal_halving else 0
    primary = count.total - halved

    def adjust(value: int, has_attention: bool) -> int:
        return value - halved if has_attention else value

    six = six_n(shape) // (1 if train else 3)
    head_note = (f"LM head {_share(head, primary)} (tied to the embedding, so not in N)" if tied else
                 "nothing for the LM head (untied, so in N; N also holds norm weights, which do no matmul work)")
    rows = [
        ("6N" if train else "2N", six, "analytic",
         f"leaves out attention matmuls {_share(attention, primary)} and {head_note}; "
         "the rest is what N·D cannot see (e.g. BERT's MLM transform)"),
        ("PaLM 6N+12LHQT" if train else "PaLM 2N+4LHQT", adjust(palm(shape) // (1 if train else 3), True),
         "analytic", f"adds the attention matmuls to 6N; leaves out {head_note}"),
        ("Kaplan 2N+2·L·n_ctx·d_attn" + (" x3" if train else ""), passes * kaplan_forward(shape),
         "analytic", f"counts attention once per QKᵀ/PV pair: half the attention {_share(attention // 2, primary)}; "
         f"and leaves out {head_note}"),
        ("Megatron-LM eq. 3, no recompute" + ("" if train else " /3"),
         adjust(megatron(shape, recompute=False) // (1 if train else 3), True), "analytic",
         "every matmul incl. LM head, as torch counts; differs only by ops outside the "
         "transformer layers and head (BERT's MLM transform) or causal halving"),
    ]
    if train:
        recompute_extra = megatron(shape, recompute=True) - megatron(shape, recompute=False)
        rows.append(("Megatron-LM eq. 3, full recompute", adjust(megatron(shape, recompute=True), True),
                     "analytic", f"adds one forward of every layer {_share(recompute_extra, primary)}: "
                     "hardware FLOPs (HFU), not model FLOPs (MFU)"))
    if fvcore_count is not None:
        rows.append(("fvcore" + (" forward x3" if train else " forward"), passes * fvcore_count, "counted",
                     "fvcore traces the forward only (x3 assumes backward = 2x forward); MACs "
                     "converted to FLOPs; attention added by our handle"))
    figures = [Figure("torch FlopCounterMode (primary)", primary, 0.0, "counted",
                      "real forward" + (" and backward ops" if train else "") + " dispatched on a fake replica")]
    figures += [Figure(name, value, _pct(value, primary), source, reason) for name, value, source, reason in rows]
    modules = {name: flops for name, flops in count.by_module.items()
               if name != "Global" and name.count(".") <= depth}
    return CountReport(
        model=spec.model.model_dump(), mode=mode, batch_size=spec.train.batch_size,
        seq_len=spec.train.seq_len, decoder_seq_len=spec.train.decoder_seq_len,
        grad_accum=spec.train.grad_accum, params=params.total,
        params_non_embedding=params.non_embedding,
        conventions={"flop": "2*MAC", "causal_halving": causal_halving,
                     "recomputation_counted": False, "includes_backward": train,
                     "causal_halving_amount": halved},
        primary_flops=primary, figures=figures,
        by_module=dict(sorted(modules.items(), key=lambda kv: -kv[1])),
        by_operator=dict(sorted(count.by_op.items(), key=lambda kv: -kv[1])),
        uncounted_ops=dict(count.uncounted_ops),
    )


def mfu_from_outside(flops_per_device_step: int, step_s: float, peak_flops_per_s: float,
                     devices: int = 1) -> dict[str, float]:
    """MFU of a run timed elsewhere (nanoGPT estimate_mfu, PaLM App. B):
    flops_per_iter = per-device FLOPs × devices; achieved = flops_per_iter / step time;
    promised = peak × devices. World size cancels only if the batch is per device."""
    flops_per_iter = flops_per_device_step * devices
    achieved = flops_per_iter / step_s
    promised = peak_flops_per_s * devices
    return {"model_flops_per_step": flops_per_iter, "achieved_flops_per_s": achieved,
            "peak_flops_per_s": promised, "mfu": achieved / promised}
