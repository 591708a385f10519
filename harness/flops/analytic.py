"""Closed-form FLOP formulas from the literature, per optimizer step of a RunSpec.

All in FLOPs (FLOP = 2·MAC), non-causal (no halving) unless a caller halves the attention term.
N is the non-embedding parameter count (every nn.Embedding excluded, an untied LM head counted);
for a mixture of experts N is the *active* count, N_active (routed experts at k of E per token,
shared experts and routers in full), as every formula here is per token.
Encoder–decoder models (T5) apply each formula per stack with that stack's own length, and add
the decoder's cross-attention over the encoder length.

Packed rows (several documents per row, attention within each document): the attention terms
use Σ_d len_d² query-key pairs per row instead of seq_len²; the parameter terms are per token
and do not change.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    """What the formulas need: per-stack layers, lengths and parameters of one sequence."""

    sequences: int          # sequences per optimizer step (batch × grad_accum)
    d_model: int            # h
    d_attn: int             # heads × head_dim
    d_kv: int               # kv_heads × head_dim
    ffn: int
    ffn_matrices: int       # 2 (GPT-2, BERT, T5) or 3 (Llama's gated MLP)
    vocab: int
    enc_layers: int         # decoder-only / encoder-only models: all layers here
    enc_len: int
    enc_params: int         # non-embedding parameters of the stack
    dec_layers: int = 0     # T5 only
    dec_len: int = 0
    dec_params: int = 0
    has_lm_head: bool = True
    enc_non_matmul: int = 0  # of enc_params / dec_params: biases and norm weights (no matmul)
    dec_non_matmul: int = 0
    enc_pairs: int | None = None  # query-key pairs per row of the only stack: Σ len_d² (packed) or len²
    # Family hf: the active matmul parameters of the layers (N_active less biases, norms and an
    # untied head), which stand in for Megatron's per-layer projections of any architecture.
    layer_matmul_params: int | None = None
    dec_layer_matmul_params: int | None = None  # the same for an hf seq2seq model's decoder stack
    dense_params: int | None = None  # N_total of a mixture of experts (every expert), else None

    @property
    def pairs(self) -> int:
        return self.enc_len * self.enc_len if self.enc_pairs is None else self.enc_pairs


def shape_of(spec, params) -> Shape:
    """`spec` a RunSpec, `params` a build.ParamCounts."""
    m, t = spec.model, spec.train
    common = dict(sequences=t.batch_size * t.grad_accum, d_model=m.hidden,
                  d_attn=m.heads * m.head_dim, d_kv=m.kv_heads * m.head_dim, ffn=m.ffn,
                  ffn_matrices=3 if m.family in ("llama", "hf") else 2, vocab=m.vocab)
    if m.family == "hf" and params.encoder_non_embedding is None:
        head = 0 if params.tied_head else m.vocab * m.hidden
        return Shape(**common, enc_layers=m.layers, enc_len=t.seq_len, enc_params=params.n_active,
                     enc_non_matmul=params.non_matmul, enc_pairs=sum(n * n for n in t.documents),
                     layer_matmul_params=params.n_active - params.non_matmul - head,
                     dense_params=params.non_embedding if params.experts is not None else None)
    if m.family in ("t5", "hf"):  # hf: a seq2seq model, per stack as T5
        hf = m.family == "hf"
        if hf:
            common["ffn_matrices"] = 0  # unknown per architecture: the stacks' own matmuls stand in
        return Shape(**common, enc_layers=m.layers, enc_len=t.seq_len,
                     layer_matmul_params=params.encoder_non_embedding - params.encoder_non_matmul if hf else None,
                     dec_layer_matmul_params=params.decoder_non_embedding - params.decoder_non_matmul if hf else None,
                     enc_params=params.encoder_non_embedding, dec_layers=m.decoder_layers or m.layers,
                     dec_len=t.decoder_seq_len or t.seq_len, dec_params=params.decoder_non_embedding,
                     enc_non_matmul=params.encoder_non_matmul, dec_non_matmul=params.decoder_non_matmul)
    return Shape(**common, enc_layers=m.layers, enc_len=t.seq_len, enc_params=params.non_embedding,
                 enc_non_matmul=params.non_matmul, enc_pairs=sum(n * n for n in t.documents))


def _tokens(s: Shape) -> tuple[int, int]:
    return s.sequences * s.enc_len, s.sequences * s.dec_len


def attention_score_flops(s: Shape) -> int:
    """Forward FLOPs of the attention matmuls alone (QKᵀ and PV), per step: 4·T·n_ctx·d_attn per
    layer for self-attention, plus the decoder's cross-attention over the encoder length."""
    enc_tokens, dec_tokens = _tokens(s)
    return 4 * s.d_attn * (s.enc_layers * s.sequences * s.pairs
                           + s.dec_layers * dec_tokens * (s.dec_len + s.enc_len))


def non_matmul_forward(s: Shape) -> int:
    """What 2N per token credits to parameters that do no matmul (biases, norm weights):
    2 FLOPs per such parameter per token of its stack. Torch counts none of it."""
    enc_tokens, dec_tokens = _tokens(s)
    return 2 * (s.enc_non_matmul * enc_tokens + s.dec_non_matmul * dec_tokens)


def lm_head_forward(s: Shape) -> int:
    """The LM head's matmul: 2·tokens·d_model·vocab over the decoder's (or only stack's) tokens."""
    enc_tokens, dec_tokens = _tokens(s)
    return 2 * (dec_tokens if s.dec_layers else enc_tokens) * s.d_model * s.vocab if s.has_lm_head else 0


def six_n(s: Shape) -> int:
    """6·N·D (Kaplan et al. 2020 §2.1; Chinchilla C ≈ 6ND): training, no attention, no head."""
    enc_tokens, dec_tokens = _tokens(s)
    return 6 * (s.enc_params * enc_tokens + s.dec_params * dec_tokens)


def palm(s: Shape) -> int:
    """(6N + 12·L·H·Q·T) per token (Chowdhery et al. 2022, App. B): 6N plus 3× the attention
    matmuls (12·L·H·Q·T per token = 3 × 4·L·T·d_attn)."""
    return six_n(s) + 3 * attention_score_flops(s)


def kaplan_forward(s: Shape) -> int:
    """Forward: 2N + 2·n_layer·n_ctx·d_attn per token (Kaplan et al. 2020, Table 1). Kaplan's
    attention term counts QKᵀ only once per pair (2 not 4), i.e. half of QKᵀ + PV."""
    enc_tokens, dec_tokens = _tokens(s)
    return 2 * (s.enc_params * enc_tokens + s.dec_params * dec_tokens) + attention_score_flops(s) // 2


def six_n_total(s: Shape) -> int | None:
    """6·N_total·D of a mixture of experts: every expert charged to every token, as tools that
    ignore routing count it (several times too high); None for a dense model."""
    if s.dense_params is None:
        return None
    return 6 * s.dense_params * s.sequences * s.enc_len


def _layer_forward(s: Shape, tokens: int, ctx: int, cross_ctx: int | None) -> int:
    """Matmul FLOPs of one transformer layer's forward over `tokens` tokens, Megatron-style:
    Q, O (h·d_attn each), K, V (h·d_kv each), MLP (ffn_matrices·h·ffn), attention 4·ctx·d_attn;
    a decoder layer adds cross-attention (K, V over the encoder tokens)."""
    proj = 2 * tokens * (2 * s.d_model * s.d_attn + 2 * s.d_model * s.d_kv + s.ffn_matrices * s.d_model * s.ffn)
    attn = 4 * s.sequences * (s.pairs if cross_ctx is None and ctx == s.enc_len else ctx * ctx) * s.d_attn
    if cross_ctx is not None:
        enc_tokens = s.sequences * cross_ctx
        proj += 2 * tokens * 2 * s.d_model * s.d_attn + 2 * enc_tokens * 2 * s.d_model * s.d_kv
        attn += 4 * tokens * cross_ctx * s.d_attn
    return proj + attn


def megatron(s: Shape, recompute: bool) -> int:
    """Megatron-LM (Narayanan et al. 2021, eq. 3) generalised: layers' forward matmuls × 3
    (forward + backward), × 4 with full activation recomputation, plus the LM head × 3.
    With ffn = 4h, d_attn = d_kv = h and 2 MLP matrices this is exactly
    96·B·s·l·h²·(1 + s/(6h) + V/(16·l·h)) with recomputation and
    72·B·s·l·h²·(1 + s/(6h) + V/(12·l·h)) without."""
    enc_tokens, dec_tokens = _tokens(s)
    if s.layer_matmul_params is not None:  # any architecture: its own layer matmuls, active experts
        layers = 2 * enc_tokens * s.layer_matmul_params + attention_score_flops(s)
        if s.dec_layer_matmul_params is not None:  # the decoder's; its cross K, V run over encoder tokens
            layers += 2 * dec_tokens * s.dec_layer_matmul_params \
                + 2 * (enc_tokens - dec_tokens) * 2 * s.d_model * s.d_kv * s.dec_layers
        return (4 if recompute else 3) * layers + 3 * lm_head_forward(s)
    layers = s.enc_layers * _layer_forward(s, enc_tokens, s.enc_len, None)
    if s.dec_layers:
        layers += s.dec_layers * _layer_forward(s, dec_tokens, s.dec_len, s.enc_len)
    return (4 if recompute else 3) * layers + 3 * lm_head_forward(s)


@dataclass(frozen=True)
class AnalyticFlops:
    """The closed forms side by side, FLOPs per optimizer step (training unless named forward)."""

    six_n: int
    palm: int
    kaplan_forward: int
    megatron: int
    megatron_recompute: int
    attention_forward: int
    convention: str = "2*MAC"


def analytic_flops(spec, params) -> AnalyticFlops:
    """All closed forms for `spec` (a RunSpec) with `params` (a build.ParamCounts)."""
    s = shape_of(spec, params)
    return AnalyticFlops(six_n=six_n(s), palm=palm(s), kaplan_forward=kaplan_forward(s),
                         megatron=megatron(s, recompute=False), megatron_recompute=megatron(s, recompute=True),
                         attention_forward=attention_score_flops(s))
