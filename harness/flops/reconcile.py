"""Reconcile: torch's count (primary) beside fvcore and the closed forms, each with its reason.

Every figure is FLOPs per optimizer step, FLOP = 2·MAC. The primary figure is torch's
dispatcher count of model FLOPs (no recomputation). Differences are explained by the terms the
formulas leave out: the LM head (when tied, it is not in N), the attention matmuls, Kaplan's
single-counted attention, recomputation, and what no formula counts (norms, elementwise ops).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from harness.flops.analytic import (attention_score_flops, kaplan_forward, lm_head_forward, megatron,
                                    non_matmul_forward, palm, shape_of, six_n, six_n_total)
from harness.flops.count import count_model_flops, expert_flops, split_uncounted

CAUSAL_FAMILIES = ("gpt2", "llama")


def is_causal(spec) -> bool:
    """Decoder-only with a causal mask: gpt2, llama, and hf causal LMs (not seq2seq)."""
    from harness.build import is_seq2seq

    return spec.model.family in CAUSAL_FAMILIES or (spec.model.family == "hf" and not is_seq2seq(spec.model))


SLIDING_WINDOW_CONVENTION = (
    "counted as executed: transformers' sdpa and eager attention compute every score of the causal "
    "square and mask those outside the window, so the count is full causal attention; a windowed "
    "kernel (flash-attention with a window) would execute about seq x window instead")
PACKING_CONVENTION = (
    "attention within each document only: Σ_d len_d² query-key pairs per row (sdpa runs per "
    "document, so these are the ops that run); parameter FLOPs are per token and unchanged")
MOE_ROUTING_CONVENTION = (
    "dropless top-k routing: every token runs k experts, so the expert matmuls are tokens x k rows "
    "whatever the routing. The fake replica has no values and counts those rows from shapes, which "
    "is also the count at perfectly balanced routing; a real step counts the rows each expert was "
    "routed (harness run records both, with the measured load). Imbalance costs time, not FLOPs")


@dataclass(frozen=True)
class Figure:
    """One counter's or formula's figure, its difference from the primary and why.

    `terms` are the named gaps, signed FLOPs, such that
    primary = flops + sum(terms) + unexplained. `unexplained` is 0 when every gap is accounted for."""

    name: str
    flops: int
    delta_pct: float
    source: str   # counted | analytic
    reason: str
    terms: dict[str, int] = field(default_factory=dict)
    unexplained: int = 0


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
    # active parameters (= params for a dense model): what one token uses
    params_active: int
    params_active_non_embedding: int
    primary_flops: int
    figures: list[Figure]
    # Both counted, whatever the mode: the forward alone and forward + backward, per optimizer
    # step (causal halving applied when asked). One of them is primary_flops.
    forward_flops: int
    train_flops: int
    by_module: dict[str, int]       # module path → FLOPs, to the chosen depth
    by_operator: dict[str, int]
    uncounted_ops: dict[str, int]   # op → calls: arithmetic with no formula (not counted, not zero)
    data_movement_ops: dict[str, int] = field(default_factory=dict)  # op → calls: views, copies, no arithmetic
    fvcore_unsupported_ops: dict[str, int] | None = None  # op → calls fvcore has no handle for
    mfu: dict[str, Any] | None = field(default=None)
    # attention conventions of this shape: documents per row, sliding window (as executed)
    attention: dict[str, Any] = field(default_factory=dict)
    # mixture of experts: layout, expert FLOPs, routing convention, expert load (None: fake replica)
    moe: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pct(value: int, primary: int) -> float:
    return 100.0 * (value - primary) / primary if primary else 0.0


def causal_attention_forward(spec, shape) -> int:
    """Forward FLOPs of the causally masked attention matmuls (halving removes half of these)."""
    if is_causal(spec):
        return attention_score_flops(shape)
    if spec.model.family in ("t5", "hf"):  # a seq2seq model: decoder self-attention only
        return 4 * shape.d_attn * shape.dec_layers * shape.sequences * shape.dec_len * shape.dec_len
    return 0


def _figure(name: str, flops: int, primary: int, source: str, what: str, terms: dict[str, int]) -> Figure:
    terms = {label: amount for label, amount in terms.items() if amount}
    gaps = "; ".join(f"{label} {amount:+,} ({100.0 * amount / primary:+.1f}%)" if primary else label
                     for label, amount in terms.items())
    reason = what + (f". Gap: {gaps}" if gaps else "")
    return Figure(name, flops, _pct(flops, primary), source, reason, terms,
                  primary - flops - sum(terms.values()))


def reconcile(spec, *, mode: str = "train", depth: int = 2, causal_halving: bool = False,
              fvcore_count=None) -> CountReport:
    """Count `spec` with torch's counter on a fake replica and set the other figures beside it.
    `fvcore_count` (a harness.flops.fvcount.FvcoreCount of one micro-batch's forward, or None) joins
    the table with the ops it could not count. Whatever the mode, the report carries both the
    forward's and the training step's (forward + backward) count: `forward_flops`, `train_flops`.

    Every gap between a figure and the primary is split into named terms, each computed on its
    own from the shape: attention matmuls, the tied LM head (not in N), parameters N counts
    that do no matmul (biases, norm weights), BERT's MLM transform (outside Megatron's layers),
    recomputation, causal halving. What the terms do not explain is shown as `unexplained`."""
    train = mode == "train"
    count, params = count_model_flops(spec, backward=train)
    shape = shape_of(spec, params)
    passes = 3 if train else 1  # backward = 2 x forward for every matmul
    attention = passes * attention_score_flops(shape)
    halved = passes * causal_attention_forward(spec, shape) // 2 if causal_halving else 0
    primary = count.total - halved
    # the other mode's figure, so that one call reports both: in train mode the forward's share
    # was read off the counter before the backward; in forward mode the backward is counted too
    forward_halved = causal_attention_forward(spec, shape) // 2 if causal_halving else 0
    if train:
        forward_flops, train_flops = count.forward_total - forward_halved, primary
    else:
        train_total = count_model_flops(spec, backward=True)[0].total
        forward_flops = primary
        train_flops = train_total - (3 * causal_attention_forward(spec, shape) // 2 if causal_halving else 0)
    tied = params.tied_head if spec.model.family == "hf" else spec.model.family != "llama"
    head = passes * lm_head_forward(shape) if tied else 0
    non_matmul = -passes * non_matmul_forward(shape)
    tokens = shape.sequences * shape.enc_len
    mlm = passes * 2 * tokens * shape.d_model ** 2 if spec.model.family == "bert" else 0
    # T5's cross-attention K and V project the encoder's tokens, but N·D charges their
    # parameters (decoder parameters) at the decoder's tokens.
    cross_kv = passes * 2 * (tokens - shape.sequences * shape.dec_len) * 2 * shape.d_model * shape.d_kv \
        * shape.dec_layers
    cross_label = "cross-attention K, V run over encoder tokens, N·D charges them at decoder tokens"
    head_label = "LM head (tied to the embedding, so not in N)"
    no_matmul_label = "biases and norm weights that N counts but that do no matmul"
    attention_label = "attention matmuls QKᵀ, PV" + (" (causal-halved)" if halved else "")
    moe = params.experts is not None
    n_name = "N_active" if moe else "N"
    rows = [
        (f"6{n_name}" if train else f"2{n_name}", six_n(shape) // (3 // passes), "analytic",
         "2 FLOPs per non-embedding parameter per token" + (", x3 for training" if train else "")
         + ("; N_active: routed experts at k of E, shared experts and routers in full" if moe else ""),
         {attention_label: attention - halved, head_label: head, no_matmul_label: non_matmul,
          cross_label: cross_kv}),
        ("PaLM 6N+12LHQT" if train else "PaLM 2N+4LHQT", palm(shape) // (3 // passes) - halved, "analytic",
         "6N plus the attention matmuls",
         {head_label: head, no_matmul_label: non_matmul, cross_label: cross_kv}),
        ("Kaplan 2N+2·L·n_ctx·d_attn" + (" x3" if train else ""), passes * kaplan_forward(shape),
         "analytic", "counts attention once per QKᵀ/PV pair",
         {"the other half of the attention matmuls" + (", less causal halving" if halved else ""):
          attention - halved - passes * (attention_score_flops(shape) // 2),
          head_label: head, no_matmul_label: non_matmul, cross_label: cross_kv}),
        ("Megatron-LM eq. 3, no recompute" + ("" if train else " /3"),
         megatron(shape, recompute=False) // (3 // passes) - halved, "analytic",
         "every matmul of the layers and the LM head, as torch counts them",
         {"BERT's MLM transform (dense h x h outside the layers)": mlm}),
    ]
    if moe:
        unused = six_n_total(shape) // (3 // passes) - six_n(shape) // (3 // passes)
        rows.append((("6N_total" if train else "2N_total") + " (every expert, as if dense)",
                     six_n_total(shape) // (3 // passes), "analytic",
                     "what a count that ignores routing gives: every expert charged to every token",
                     {"routed experts a token does not use, (E-k)/E of the expert parameters": -unused,
                      attention_label: attention - halved, head_label: head, no_matmul_label: non_matmul}))
    if train:
        recompute_extra = megatron(shape, recompute=True) - megatron(shape, recompute=False)
        rows.append(("Megatron-LM eq. 3, full recompute", megatron(shape, recompute=True) - halved, "analytic",
                     "hardware FLOPs (HFU), not model FLOPs (MFU)",
                     {"recomputation: one more forward of every layer": -recompute_extra,
                      "BERT's MLM transform (dense h x h outside the layers)": mlm}))
    if fvcore_count is not None:
        fvcore_forward = fvcore_count.total * spec.train.grad_accum
        rows.append(("fvcore" + (" forward x3" if train else " forward"), passes * fvcore_forward, "counted",
                     "fvcore traces the forward only" + (" (x3 assumes backward = 2x forward)" if train else "")
                     + "; MACs converted to FLOPs; attention added by our handle",
                     {"causal halving (fvcore does not halve)": -halved}))
    figures = [Figure("torch FlopCounterMode (primary)", primary, 0.0, "counted",
                      "real forward" + (" and backward ops" if train else "") + " dispatched on a fake replica"
                      + (f"; causal halving applied: {-halved:+,}" if halved else ""))]
    figures += [_figure(name, value, primary, source, what, terms) for name, value, source, what, terms in rows]
    arithmetic, movement = split_uncounted(count.uncounted_ops)
    modules = {name: flops for name, flops in count.by_module.items()
               if name != "Global" and name.count(".") <= depth}
    attention_notes: dict[str, Any] = {}
    if spec.train.pack:
        attention_notes["documents_per_row"] = list(spec.train.documents)
        attention_notes["packing"] = PACKING_CONVENTION
    window = (spec.model.config or {}).get("sliding_window")
    if isinstance(window, int) and (spec.model.config or {}).get("use_sliding_window", True) is not False:
        attention_notes["sliding_window"] = window
        attention_notes["sliding_window_counted"] = SLIDING_WINDOW_CONVENTION
    moe_info = None
    if moe:
        layout = params.experts
        experts_counted = expert_flops(count, layout)
        moe_info = {"experts": layout.experts, "experts_per_token": layout.experts_per_token,
                    "moe_layers": layout.layers, "expert_params": layout.expert_params,
                    "expert_params_active": layout.expert_params - layout.inactive_params,
                    "expert_flops": experts_counted, "expert_flops_at_balanced_routing": experts_counted,
                    "routing": MOE_ROUTING_CONVENTION, "expert_load": None,
                    "expert_load_reason": "fake replica: no values, so no routing to measure; "
                                          "harness run measures it on a real step"}
    return CountReport(
        model=spec.model.model_dump(), mode=mode, batch_size=spec.train.batch_size,
        seq_len=spec.train.seq_len, decoder_seq_len=spec.train.decoder_seq_len,
        grad_accum=spec.train.grad_accum, params=params.total,
        params_non_embedding=params.non_embedding, params_active=params.active,
        params_active_non_embedding=params.n_active, attention=attention_notes, moe=moe_info,
        conventions={"flop": "2*MAC", "causal_halving": causal_halving,
                     "recomputation_counted": False, "includes_backward": train,
                     "causal_halving_amount": halved},
        primary_flops=primary, figures=figures, forward_flops=forward_flops, train_flops=train_flops,
        by_module=dict(sorted(modules.items(), key=lambda kv: -kv[1])),
        by_operator=dict(sorted(count.by_op.items(), key=lambda kv: -kv[1])),
        uncounted_ops=arithmetic, data_movement_ops=movement,
        fvcore_unsupported_ops=None if fvcore_count is None else dict(fvcore_count.unsupported_ops),
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
