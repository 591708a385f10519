import pytest
import torch

from harness.build import build_model, count_params, make_batch
from harness.config import ModelSection, resolve_model
from harness.errors import ConfigError


@pytest.mark.parametrize("preset, total", [
    ("gpt2", 124_439_808),        # Hugging Face gpt2 (REFERENCE.md §3)
    ("bert-base", 109_514_298),   # BertForMaskedLM, bert-base-uncased shape
    ("t5-small", 60_506_624),     # Hugging Face t5-small
    ("llama-7b", 6_738_415_616),  # LLaMA-7B
    # Llama 3.1 as released (model cards: 8.03B, 70.6B, 405B; the safetensors' exact totals)
    ("llama3.1-8b", 8_030_261_248),
    ("llama3.1-70b", 70_553_706_496),
    ("llama3.1-405b", 405_853_388_800),
])
def test_presets_on_the_meta_device_have_published_sizes(preset, total):
    model = build_model(resolve_model(ModelSection(preset=preset)), "meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    assert count_params(model).total == total


def test_gpt3_175b_builds_without_memory():
    params = count_params(build_model(resolve_model(ModelSection(preset="gpt3-175b")), "meta"))
    assert 174e9 < params.total < 176e9


def test_overrides_reach_the_hugging_face_model(tiny_spec):
    spec = tiny_spec("llama", model={"layers": 3, "attention": "eager"})
    model = build_model(spec.model, "cpu")
    assert model.config.num_hidden_layers == 3 and model.config.num_key_value_heads == 2
    assert model.config._attn_implementation == "eager"
    assert type(model).__name__ == "LlamaForCausalLM"


def test_weights_are_random_and_seeded(tiny_spec):
    spec = tiny_spec("gpt2")
    a = build_model(spec.model, "cpu", seed=1).lm_head.weight
    b = build_model(spec.model, "cpu", seed=1).lm_head.weight
    c = build_model(spec.model, "cpu", seed=2).lm_head.weight
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bert_batch_masks_about_fifteen_percent(tiny_spec):
    spec = tiny_spec("bert", batch_size=16, seq_len=64)
    batch = make_batch(spec)
    targets = batch["labels"] != -100
    assert 0.08 < targets.float().mean().item() < 0.25
    assert targets.any(dim=1).all()
    assert (batch["input_ids"][targets] == 103).all()
    assert torch.equal(make_batch(spec)["input_ids"], batch["input_ids"])


def test_t5_batch_has_encoder_and_decoder_lengths(tiny_spec):
    batch = make_batch(tiny_spec("t5", decoder_seq_len=5))
    assert batch["input_ids"].shape == (2, 16) and batch["labels"].shape == (2, 5)


def test_causal_lm_labels_are_the_inputs(tiny_spec):
    batch = make_batch(tiny_spec("llama"))
    assert torch.equal(batch["input_ids"], batch["labels"])
    assert batch["input_ids"].max() < 128


# Family hf presets: published totals (and active counts of the mixtures of experts), each from
# the source cited in harness/presets.py; the meta-device count must be within 0.5%.
@pytest.mark.parametrize("preset, published, active", [
    ("qwen2.5-7b", 7.61e9, None),       # Qwen2.5-7B model card: 7.61B
    ("mistral-7b", 7.24e9, None),       # Mistral-7B-v0.1: 7.24B
    ("gemma2-9b", 9.24e9, None),        # Gemma 2 9B: 9.24B
    ("mixtral-8x7b", 46.7e9, 12.9e9),   # Jiang et al. 2024: 46.7B total, 12.9B active
    ("qwen3-30b-a3b", 30.5e9, 3.3e9),   # Qwen3-30B-A3B model card: 30.5B total, 3.3B activated
    ("palm-540b", 540.35e9, None),      # Chowdhery et al. 2022: 540.35B
])
def test_hf_presets_have_published_sizes_on_the_meta_device(preset, published, active):
    model = build_model(resolve_model(ModelSection(preset=preset)), "meta")
    counts = count_params(model)
    assert abs(counts.total - published) / published < 0.005
    if active is None:
        assert counts.active == counts.total and counts.experts is None
    else:
        # published active counts carry one decimal: Mixtral's 12.88B is "12.9B", Qwen3's
        # 3.353B (both token tables, untied) its card's "3.3B"
        assert abs(counts.active - active) < 0.06e9


def test_mixtral_active_parameters_by_hand():
    counts = count_params(build_model(resolve_model(ModelSection(preset="mixtral-8x7b")), "meta"))
    layers, hidden, ffn, experts, k, vocab = 32, 4096, 14336, 8, 2, 32000
    expert = 3 * hidden * ffn                       # gate, up, down of one SwiGLU expert
    attention = hidden * 4096 + 2 * hidden * 1024 + 4096 * hidden  # q, k, v (8 kv heads of 128), o
    per_layer_dense = attention + experts * hidden + 2 * hidden     # router, two RMSNorm weights
    total = 2 * vocab * hidden + hidden + layers * (per_layer_dense + experts * expert)
    assert counts.total == total == 46_702_792_704
    assert counts.active == total - layers * (experts - k) * expert == 12_879_925_248
    assert counts.experts.layers == 32 and counts.experts.experts_per_token == 2
    assert counts.n_active == counts.active - vocab * hidden  # the token table is the one embedding


def test_hf_family_builds_the_named_architecture_from_config(tiny_hf):
    spec = tiny_hf("qwen2")
    model = build_model(spec.model, "cpu")
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.config.num_hidden_layers == 2 and model.config.num_key_value_heads == 2
    assert model.model.layers[0].self_attn.q_proj.bias is not None  # qwen2's own default


def test_unknown_model_type_is_a_config_error(tiny_hf):
    with pytest.raises(ConfigError) as err:
        build_model(tiny_hf("no_such_model").model, "meta")
    assert err.value.field == "model.model_type" and "llama" in err.value.message


def test_more_experts_per_token_than_experts_is_refused():
    config = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 128,
              "intermediate_size": 64}
    with pytest.raises(ConfigError) as err:  # both given: refused when the config is read
        resolve_model(ModelSection(family="hf", model_type="mixtral",
                                   config={**config, "num_local_experts": 4, "num_experts_per_tok": 5}))
    assert err.value.field == "model.config.num_experts_per_tok"
    spec = resolve_model(ModelSection(family="hf", model_type="mixtral", config={**config, "num_experts_per_tok": 9}))
    with pytest.raises(ConfigError) as err:  # against transformers' default of 8 experts: when built
        build_model(spec, "meta")
    assert err.value.field == "model.config.num_experts_per_tok" and "1..8" in err.value.message


def test_packed_batch_restarts_positions_and_masks_document_starts(tiny_spec):
    spec = tiny_spec("llama", pack=True, doc_len=6)  # seq 16: documents 6, 6, 4
    assert spec.train.documents == (6, 6, 4)
    batch = make_batch(spec)
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 3, 4, 5] * 2 + [0, 1, 2, 3]
    assert (batch["labels"][:, [6, 12]] == -100).all() and (batch["labels"][:, 1:6] >= 0).all()


def test_a_typed_hf_config_field_of_the_wrong_type_names_its_field():
    """transformers types some config fields (a strict dataclass) and refuses others' values
    only inside the forward: both are one ConfigError naming the key, before anything runs."""
    from harness.errors import ConfigError

    for key, value in (("rms_norm_eps", "abc"), ("initializer_range", "abc")):
        model = resolve_model(ModelSection(preset="qwen2.5-7b", layers=1, config={key: value}))
        with pytest.raises(ConfigError) as err:
            build_model(model, "meta")
        assert err.value.field == f"model.config.{key}"
