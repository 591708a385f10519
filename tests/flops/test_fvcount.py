import pytest
import torch
import torch.nn.functional as F
from fvcore.nn import FlopCountAnalysis
from torch import nn

from harness.build import build_model, make_batch
from harness.config import build_spec
from harness.flops.count import count_model_flops
from harness.flops.fvcount import MATMUL_HANDLES, SDPA, LogitsAndLoss, count_fvcore, count_fvcore_forward

B, S, H, HEADS, FFN, V, LAYERS = 2, 16, 32, 4, 64, 128, 2  # tests/conftest.py tiny_raw
GPT2_FORWARD = 291_648_307_200  # tests/test_count.py: GPT-2 124M, batch 1 x 1024, torch's count


def attention(b, heads, s_q, s_k, d_qk, d_v=None):
    """QKᵀ and PV, FLOP = 2*MAC."""
    return 2 * b * heads * s_q * s_k * (d_qk + (d_qk if d_v is None else d_v))


def linear(tokens, d_in, d_out):
    return 2 * tokens * d_in * d_out


T = B * S
ATTN = attention(B, HEADS, S, S, H // HEADS)
GPT2 = LAYERS * (linear(T, H, 3 * H) + ATTN + linear(T, H, H) + 2 * linear(T, H, FFN)) + linear(T, H, V)
LLAMA = LAYERS * (linear(T, H, H) + 2 * linear(T, H, 2 * 8) + ATTN + linear(T, H, H)
                  + 3 * linear(T, H, FFN)) + linear(T, H, V)  # 2 kv heads of 8; gate, up, down
BERT = LAYERS * (4 * linear(T, H, H) + ATTN + 2 * linear(T, H, FFN)) \
    + linear(T, H, H) + linear(T, H, V)  # MLM head: transform, then decoder


def t5_forward(s_dec):
    t_dec, d = B * s_dec, H  # d_attn = heads * head_dim = hidden here
    enc = 4 * linear(T, H, d) + ATTN + 2 * linear(T, H, FFN)
    dec = (4 * linear(t_dec, H, d) + attention(B, HEADS, s_dec, s_dec, 8)  # self-attention
           + 2 * linear(t_dec, H, d) + 2 * linear(T, H, d)  # cross: q, o on decoder; k, v on encoder
           + attention(B, HEADS, s_dec, S, 8) + 2 * linear(t_dec, H, FFN))
    return LAYERS * (enc + dec) + linear(t_dec, H, V)


CASES = {  # id: (family, model overrides, train overrides, hand count)
    "gpt2-sdpa": ("gpt2", {}, {}, GPT2),
    "gpt2-eager": ("gpt2", {"attention": "eager"}, {}, GPT2),
    "llama-gqa-sdpa": ("llama", {}, {}, LLAMA),
    "llama-gqa-eager": ("llama", {"attention": "eager"}, {}, LLAMA),
    "bert-sdpa": ("bert", {}, {}, BERT),
    "t5-sdpa-short-decoder": ("t5", {}, {"decoder_seq_len": 8}, t5_forward(8)),
    "t5-eager": ("t5", {"attention": "eager"}, {}, t5_forward(S)),
}


@pytest.mark.parametrize("case", CASES)
def test_fvcore_equals_torch_and_the_hand_count(tiny_spec, case):
    family, model, train, hand = CASES[case]
    spec = tiny_spec(family, model=model, **train)
    fv = count_fvcore_forward(spec)
    assert fv.total == hand == count_model_flops(spec, backward=False)[0].total
    assert fv.by_module[""] == fv.total == sum(fv.by_operator.values())
    assert fv.convention == "2*MAC" and not fv.includes_backward
    assert "aten::cross_entropy_loss" in fv.unsupported_ops  # the loss is traced, and listed


def test_single_linear_macs_become_flops():
    layer, x = nn.Linear(64, 32), torch.randn(4, 64)
    assert FlopCountAnalysis(layer, (x,)).total() == 4 * 64 * 32  # fvcore's "flops" are MACs
    fv = count_fvcore(layer, (x,))
    assert fv.total == 2 * 4 * 64 * 32
    assert fv.by_operator == {"linear": 2 * 4 * 64 * 32} and fv.by_module == {"": fv.total}
    assert fv.unsupported_ops == {}


class _Attention(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)


def test_sdpa_handle_grouped_query_and_unequal_dims():
    q, k, v = torch.randn(2, 4, 16, 8), torch.randn(2, 2, 12, 8), torch.randn(2, 2, 12, 4)
    fv = count_fvcore(_Attention(), (q, k, v))
    assert fv.total == attention(2, 4, 16, 12, 8, 4)  # every query head, kv heads shared
    without = count_fvcore(_Attention(), (q, k, v), {n: h for n, h in MATMUL_HANDLES.items() if n != SDPA})
    assert without.total == 0 and without.unsupported_ops == {SDPA: 1}


class _Baddbmm(nn.Module):
    def forward(self, c, a, b):
        return torch.baddbmm(c, a, b)


def test_baddbmm_handle_counts_the_bmm():
    fv = count_fvcore(_Baddbmm(), (torch.randn(3, 4, 6), torch.randn(3, 4, 5), torch.randn(3, 5, 6)))
    assert fv.total == 2 * 3 * 4 * 5 * 6


@pytest.mark.parametrize("family,train,missing", [
    ("gpt2", {}, LAYERS * ATTN),
    ("llama", {}, LAYERS * ATTN),
    ("t5", {"decoder_seq_len": 8},  # encoder self, decoder self, cross
     LAYERS * (ATTN + attention(B, HEADS, 8, 8, 8) + attention(B, HEADS, 8, S, 8))),
], ids=["gpt2", "llama", "t5"])
def test_without_the_sdpa_handle_fvcore_misses_exactly_the_attention_matmuls(tiny_spec, family, train,
                                                                              missing):
    spec = tiny_spec(family, **train)
    model, batch = build_model(spec.model, "meta"), make_batch(spec, "meta")
    inputs = (batch["input_ids"], batch["labels"])
    no_sdpa = {name: h for name, h in MATMUL_HANDLES.items() if name != SDPA}
    with_handle = count_fvcore(LogitsAndLoss(model), inputs)
    without = count_fvcore(LogitsAndLoss(model), inputs, no_sdpa)
    assert with_handle.total - without.total == missing
    assert with_handle.by_operator["scaled_dot_product_attention"] == missing
    calls = LAYERS * (3 if family == "t5" else 1)
    assert without.unsupported_ops[SDPA] == calls and SDPA not in with_handle.unsupported_ops


def test_unsupported_ops_are_listed_with_call_counts(tiny_spec):
    gpt2 = count_fvcore_forward(tiny_spec("gpt2", model={"attention": "eager"})).unsupported_ops
    assert gpt2["aten::layer_norm"] == 2 * LAYERS + 1  # two per block and the final one
    assert gpt2["aten::softmax"] == LAYERS
    assert gpt2["aten::tanh"] == LAYERS  # GELU's tanh approximation
    llama = count_fvcore_forward(tiny_spec("llama")).unsupported_ops
    assert llama["aten::rsqrt"] == 2 * LAYERS + 1  # RMSNorm
    assert llama["aten::silu"] == LAYERS
    t5 = count_fvcore_forward(tiny_spec("t5")).unsupported_ops
    assert t5["aten::relu"] == 2 * LAYERS  # fvcore ignores relu by default; we list it
    assert all(n > 0 for n in gpt2.values())


def test_dropout_does_not_change_the_count_and_is_listed(tiny_spec):
    plain = count_fvcore_forward(tiny_spec("gpt2"))
    dropped = count_fvcore_forward(tiny_spec("gpt2", model={"dropout": 0.1}))
    assert dropped.total == plain.total == GPT2
    assert dropped.unsupported_ops["aten::dropout"] == plain.unsupported_ops["aten::dropout"] > 0


def test_meta_and_cpu_traces_count_the_same(tiny_spec):
    spec = tiny_spec("t5", decoder_seq_len=8)
    meta, cpu = count_fvcore_forward(spec), count_fvcore_forward(spec, device="cpu")
    assert meta.total == cpu.total and meta.by_operator == cpu.by_operator
    assert meta.by_module == cpu.by_module


def test_module_names_are_the_models_own(tiny_spec):
    spec = tiny_spec("gpt2")
    fv = count_fvcore_forward(spec)
    names = {name for name, _ in build_model(spec.model, "meta").named_modules()}
    assert set(fv.by_module) <= names
    block = linear(T, H, 3 * H) + ATTN + linear(T, H, H) + 2 * linear(T, H, FFN)
    assert fv.by_module["transformer.h.0"] == block
    assert fv.by_module["lm_head"] == linear(T, H, V)


def test_gpt2_124m_anchor_and_what_fvcore_does_by_default():
    """At full size on meta tensors: our handles give torch's count exactly; fvcore's defaults
    miss SDPA and add its layer-norm estimate (5 MACs per element, 25 norms)."""
    spec = build_spec({"model": {"preset": "gpt2"}, "train": {"batch_size": 1, "seq_len": 1024}})
    assert count_fvcore_forward(spec).total == GPT2_FORWARD
    model, batch = build_model(spec.model, "meta"), make_batch(spec, "meta")
    default = FlopCountAnalysis(LogitsAndLoss(model), (batch["input_ids"], batch["labels"]))
    default.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    sdpa = 12 * attention(1, 12, 1024, 1024, 64)
    layer_norm = 2 * 25 * 5 * 1024 * 768
    assert 2 * default.total() == GPT2_FORWARD - sdpa + layer_norm
