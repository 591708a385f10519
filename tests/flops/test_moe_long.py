"""Mixtures of experts, packed rows, long sequences and sliding windows: counted by hand, and the
fake replica against a real CPU step."""

import pytest

from harness.build import build_model, make_batch
from harness.config import build_spec
from harness.flops.count import count_flops, count_model_flops, expert_flops, routed_tokens
from harness.flops.reconcile import reconcile
from tests.conftest import tiny_hf_raw, tiny_raw


@pytest.mark.parametrize("model_type", ["mixtral", "qwen3_moe", "qwen2_moe", "olmoe"])
def test_tiny_moe_counts_the_same_on_the_fake_replica_and_a_real_cpu_step(tiny_hf, model_type):
    spec = tiny_hf(model_type)
    fake, params = count_model_flops(spec)
    model = build_model(spec.model, "cpu")  # grouped matmuls with real routing
    with routed_tokens(model) as routed:
        real = count_flops(model, make_batch(spec, "cpu"))
    assert real.total == fake.total and "aten._grouped_mm" in real.by_op
    layout = params.experts
    assert (layout.experts, layout.experts_per_token, layout.layers) == (4, 2, 2)
    assert expert_flops(real, layout) == expert_flops(fake, layout)
    # every token routed to k experts in every MoE layer: 32 tokens x 2
    assert [sum(routed[name]) for name in layout.modules] == [64, 64]


def test_mixtral_expert_and_router_flops_by_hand(tiny_hf):
    spec = tiny_hf("mixtral")
    count, params = count_model_flops(spec, backward=False)
    tokens, h, f, experts, k, layers, kv, v = 32, 32, 64, 4, 2, 2, 16, 128
    expert = tokens * k * 3 * 2 * h * f          # gate, up, down for k experts per token
    router = 2 * tokens * h * experts
    attention = 2 * tokens * (h * h + 2 * h * kv + h * h) + 2 * 2 * 2 * 16 * 16 * h  # q,k,v,o + scores, reduce
    assert expert_flops(count, params.experts) == layers * expert
    assert count.total == layers * (expert + router + attention) + 2 * tokens * h * v


def test_moe_reconciliation_uses_active_parameters_and_explains_every_gap(tiny_hf):
    report = reconcile(tiny_hf("mixtral"))
    six_n = next(f for f in report.figures if f.name == "6N_active")
    dense = next(f for f in report.figures if f.name.startswith("6N_total"))
    assert six_n.unexplained == 0 and dense.unexplained == 0
    assert six_n.flops == 6 * report.params_active_non_embedding * 32
    # the dense-equivalent figure charges the unused (E-k)/E of the experts: 2 layers x 2 experts x 3 matrices
    unused = -dense.terms["routed experts a token does not use, (E-k)/E of the expert parameters"]
    assert unused == 6 * 2 * 2 * 3 * 32 * 64 * 32
    assert report.params - report.params_active == 2 * 2 * 3 * 32 * 64
    assert report.moe["expert_load"] is None and report.moe["expert_flops_at_balanced_routing"] > 0


def test_mixtral_8x7b_count_reports_active_and_total_parameters():
    spec = build_spec({"model": {"preset": "mixtral-8x7b", "layers": 1}, "train": {"batch_size": 1, "seq_len": 4096}})
    report = reconcile(spec, mode="forward")
    assert report.params_active < report.params and report.moe["experts_per_token"] == 2
    tokens = 4096
    assert report.moe["expert_flops"] == tokens * 2 * 3 * 2 * 4096 * 14336  # k experts, forward


def test_count_of_a_mixture_of_experts_carries_its_memory_estimate(capsys):
    """The CLI's count with its memory estimate (a fake replica in fp32: experts as batched
    matmuls, as on the meta device; grouped matmuls take bf16 only): 16 B per parameter of
    states, and activations besides."""
    import json

    from harness.cli import main

    args = ["count", "mixtral-8x7b", "--set", "model.layers=1", "--batch", "1", "--seq", "64", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params_active"] < out["params"]
    states = 16 * out["params"]  # fp32 weights and gradients, AdamW's two moments
    assert out["memory_estimate_bytes"] > states


def _attention_forward(layers, b, d_attn, pairs):
    return layers * 4 * b * d_attn * pairs


def test_packed_rows_count_attention_as_the_sum_over_documents():
    """Tiny llama, batch 2 x 16 in documents of 6, 6, 4: attention over 6² + 6² + 4² = 88 pairs
    per row instead of 16² = 256; every other matmul unchanged."""
    full = build_spec(tiny_raw("llama"))
    packed = build_spec(tiny_raw("llama", pack=True, doc_len=6))
    a, _ = count_model_flops(full, backward=False)
    p, _ = count_model_flops(packed, backward=False)
    assert a.total - p.total == _attention_forward(2, 2, 32, 256 - 88)
    assert count_model_flops(packed)[0].total == 3 * p.total
    model = build_model(packed.model, "cpu", documents=packed.train.documents)
    assert count_flops(model, make_batch(packed, "cpu"), backward=False).total == p.total
    report = reconcile(packed)
    assert all(f.unexplained == 0 for f in report.figures if f.name in ("6N", "Megatron-LM eq. 3, no recompute"))
    assert report.attention["documents_per_row"] == [6, 6, 4]


def test_packing_is_refused_where_it_cannot_run():
    from harness.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        build_spec(tiny_raw("bert", pack=True, doc_len=4))
    assert err.value.field == "train.pack"
    with pytest.raises(ConfigError) as err:
        build_spec(tiny_raw("llama", doc_len=4))
    assert err.value.field == "train.doc_len"
    windowed = build_spec(tiny_hf_raw("mistral", {"sliding_window": 4}, pack=True, doc_len=8))
    with pytest.raises(ConfigError) as err:
        count_model_flops(windowed)
    assert err.value.field == "train.doc_len" and "1..4" in err.value.message


def test_sliding_window_is_counted_as_executed_full_attention():
    windowed = build_spec(tiny_hf_raw("mistral", {"sliding_window": 4}))
    full = build_spec(tiny_hf_raw("mistral", {"sliding_window": None}))
    assert count_model_flops(windowed)[0].total == count_model_flops(full)[0].total
    report = reconcile(windowed)
    assert report.attention["sliding_window"] == 4 and "as executed" in report.attention["sliding_window_counted"]


def test_a_32k_sequence_counts_on_the_fake_replica():
    raw = tiny_raw("llama", batch_size=1, seq_len=32768)
    raw["model"]["max_positions"] = 32768
    spec = build_spec(raw)
    count, _ = count_model_flops(spec, backward=False)
    s, h, kv, f, v = 32768, 32, 16, 64, 128
    layer = 2 * s * (h * h + 2 * h * kv + h * h + 3 * h * f) + 4 * s * s * h
    assert count.total == 2 * layer + 2 * s * h * v


def test_an_hf_seq2seq_model_counts_the_same_fake_and_real_and_reconciles():
    config = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 128,
              "max_position_embeddings": 64, "d_model": 32, "encoder_layers": 2, "decoder_layers": 2,
              "encoder_attention_heads": 4, "decoder_attention_heads": 4, "encoder_ffn_dim": 64,
              "decoder_ffn_dim": 64}
    spec = build_spec({"model": {"family": "hf", "model_type": "bart", "config": config},
                       "train": {"batch_size": 2, "seq_len": 16, "decoder_seq_len": 8}})
    model = build_model(spec.model, "cpu")
    assert model.config.is_encoder_decoder
    real = count_flops(model, make_batch(spec, "cpu"))
    report = reconcile(spec)
    assert real.total == report.primary_flops
    assert all(f.unexplained == 0 for f in report.figures)


@pytest.mark.parametrize("preset", ["gemma2-9b", "qwen3-30b-a3b"])
def test_hf_presets_reconcile_to_the_flop(preset):
    """Gemma 2 (tied head, eager attention, head_dim 256 x 16 heads != hidden) and Qwen3-MoE
    (128 experts, 8 per token): every figure's named gaps add up to the count."""
    spec = build_spec({"model": {"preset": preset, "layers": 1}, "train": {"batch_size": 1, "seq_len": 64}})
    report = reconcile(spec)
    assert all(f.unexplained == 0 for f in report.figures)
