import pytest
from torch.utils.flop_counter import FlopCounterMode

from harness.flops import count as count_mod
from harness.build import build_model, count_params, make_batch
from harness.config import build_spec
from harness.flops.analytic import analytic_flops
from harness.flops.count import count_flops, count_model_flops
from harness.errors import UncountedOpError

# REFERENCE.md §3: nanoGPT transformer_sizing anchor, GPT-2 124M, batch 1 x 1024.
GPT2_FORWARD = 291_648_307_200
GPT2_FORWARD_BACKWARD = 874_944_921_600
GPT2_LAYER_FORWARD = 17_716_740_096
GPT2_LM_HEAD = 79_047_426_048


def gpt2_layer_forward(b, s, h, ffn):
    """Hand count, FLOP = 2*MAC: qkv, scores, reduce, output projection, MLP."""
    return 2 * b * s * h * 3 * h + 2 * (2 * b * s * s * h) + 2 * b * s * h * h + 2 * (2 * b * s * h * ffn)


def test_gpt2_anchor_forward_and_backward_on_a_fake_replica():
    spec = build_spec({"model": {"preset": "gpt2"}, "train": {"batch_size": 1, "seq_len": 1024}})
    forward, params = count_model_flops(spec, backward=False)
    train, _ = count_model_flops(spec)
    assert forward.total == GPT2_FORWARD
    assert train.total == GPT2_FORWARD_BACKWARD
    assert params.total == 124_439_808
    assert gpt2_layer_forward(1, 1024, 768, 3072) == GPT2_LAYER_FORWARD
    assert 12 * GPT2_LAYER_FORWARD + GPT2_LM_HEAD == GPT2_FORWARD
    assert forward.convention == "2*MAC" and train.includes_backward and not forward.includes_backward


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_tiny_gpt2_matches_the_hand_count(tiny_spec, attention):
    spec = tiny_spec("gpt2", model={"attention": attention})
    b, s, h, f, v, layers = 2, 16, 32, 64, 128, 2
    forward = layers * gpt2_layer_forward(b, s, h, f) + 2 * b * s * h * v
    counted, _ = count_model_flops(spec, backward=False)
    assert counted.total == forward
    assert count_model_flops(spec)[0].total == 3 * forward


def test_llama_grouped_query_attention_hand_count(tiny_spec):
    spec = tiny_spec("llama")  # hidden 32, 4 heads of 8, 2 kv heads, ffn 64, vocab 128
    b, s, h, kv_dim, f, v, layers = 2, 16, 32, 2 * 8, 64, 128, 2
    layer = (2 * b * s * h * h          # q
             + 2 * (2 * b * s * h * kv_dim)  # k, v
             + 2 * (2 * b * s * s * h)  # scores and reduce over all 4 query heads
             + 2 * b * s * h * h        # o
             + 3 * (2 * b * s * h * f))  # gate, up, down
    counted, _ = count_model_flops(spec, backward=False)
    assert counted.total == layers * layer + 2 * b * s * h * v


def test_cpu_fused_attention_trap_real_step_counts_what_the_fake_replica_counts(tiny_spec):
    spec = tiny_spec("gpt2")  # dropout 0: CPU SDPA dispatches its fused kernel
    model = build_model(spec.model, "cpu")
    batch = make_batch(spec, "cpu")
    plain = FlopCounterMode(display=False)
    with plain:
        model(**batch).loss.backward()
    model.zero_grad()
    real = count_flops(model, batch, kind="model")
    hardware = count_flops(model, batch, kind="hardware")
    fake, _ = count_model_flops(spec)
    b, s, h, layers = 2, 16, 32, 2
    attention_forward = 2 * (2 * b * s * s * h)
    assert "aten._scaled_dot_product_flash_attention_for_cpu" in real.by_op
    assert real.total == fake.total
    # torch's own counter misses the fused kernel: forward and backward attention (1x + 2x)
    assert real.total - plain.get_total_flops() == layers * 3 * attention_forward
    # the fused backward recomputes QK^T: hardware counts it, model FLOPs do not
    assert hardware.total - real.total == layers * 2 * b * s * s * h


def test_recomputation_is_hardware_flops_only(tiny_spec):
    spec = tiny_spec("gpt2")
    b, s, h, f, layers = 2, 16, 32, 64, 2
    model = build_model(spec.model, "cpu")
    batch = make_batch(spec, "cpu")
    plain = count_flops(model, batch, kind="hardware")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    recomputed = count_flops(model, batch, kind="hardware")
    # torch's non-reentrant checkpoint stops recomputing once every saved tensor is back:
    # the block's last matmul (MLP down-projection) output is not needed, so it is not re-run.
    last_matmul = 2 * b * s * f * h
    assert recomputed.total - plain.total == layers * (gpt2_layer_forward(b, s, h, f) - last_matmul)
    assert count_flops(model, batch, kind="model").total > count_model_flops(spec)[0].total


def test_grad_accumulation_multiplies_the_micro_batch(tiny_spec):
    one, _ = count_model_flops(tiny_spec("gpt2"))
    three, _ = count_model_flops(tiny_spec("gpt2", grad_accum=3))
    assert three.total == 3 * one.total


def test_an_attention_op_without_formula_fails_loudly(tiny_spec, monkeypatch):
    spec = tiny_spec("gpt2")
    model = build_model(spec.model, "cpu")
    trimmed = {op: f for op, f in count_mod.MODEL_FORMULAS.items()
               if "flash_attention_for_cpu" not in str(op)}
    monkeypatch.setattr(count_mod, "MODEL_FORMULAS", trimmed)
    with pytest.raises(UncountedOpError, match="_scaled_dot_product_flash_attention_for_cpu"):
        count_flops(model, make_batch(spec, "cpu"))


def test_ops_without_formula_are_listed_not_zeroed(tiny_spec):
    spec = tiny_spec("gpt2")
    counted = count_flops(build_model(spec.model, "cpu"), make_batch(spec, "cpu"))
    assert "aten.mm" not in counted.uncounted_ops
    assert counted.uncounted_ops.get("aten.native_layer_norm", 0) > 0


@pytest.mark.parametrize("family", ["bert", "t5"])
def test_every_family_counts_the_same_real_and_fake(tiny_spec, family):
    spec = tiny_spec(family)
    real = count_flops(build_model(spec.model, "cpu"), make_batch(spec, "cpu")).total
    assert real == count_model_flops(spec)[0].total > 0


def test_analytic_formulas_by_hand(tiny_spec):
    spec = tiny_spec("gpt2", grad_accum=2)
    params = count_params(build_model(spec.model, "meta"))
    n = params.non_embedding
    tokens = 2 * 16 * 2
    analytic = analytic_flops(spec, params)
    assert analytic.six_n == 6 * n * tokens
    assert analytic.palm == (6 * n + 12 * 2 * 4 * 8 * 16) * tokens


def test_t5_analytic_splits_encoder_and_decoder(tiny_spec):
    spec = tiny_spec("t5", decoder_seq_len=8)
    params = count_params(build_model(spec.model, "meta"))
    assert params.encoder_non_embedding + params.decoder_non_embedding == params.non_embedding
    six_n = 6 * (params.encoder_non_embedding * 16 + params.decoder_non_embedding * 8)
    attention = 12 * 32 * (2 * 16 * 16 + 2 * (8 * 8 + 8 * 16))
    analytic = analytic_flops(spec, params)
    assert analytic.six_n == six_n * 2
    assert analytic.palm == (six_n + attention) * 2


def test_gpt2_anchor_per_layer_and_lm_head_from_the_module_breakdown():
    spec = build_spec({"model": {"preset": "gpt2"}, "train": {"batch_size": 1, "seq_len": 1024}})
    forward, _ = count_model_flops(spec, backward=False)
    for i in range(12):
        assert forward.by_module[f"GPT2LMHeadModel.transformer.h.{i}"] == GPT2_LAYER_FORWARD
    assert forward.by_module["GPT2LMHeadModel.lm_head"] == GPT2_LM_HEAD


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_real_cpu_step_counts_what_the_fake_replica_counts(tiny_spec, family, attention):
    spec = tiny_spec(family, model={"attention": attention})
    model, batch = build_model(spec.model, "cpu"), make_batch(spec, "cpu")
    assert count_flops(model, batch, backward=False).total == count_model_flops(spec, backward=False)[0].total
    assert count_flops(model, batch).total == count_model_flops(spec)[0].total
