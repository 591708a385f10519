import pytest
import torch

from harness.build import build_model, count_params, make_batch
from harness.config import ModelSection, resolve_model


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
