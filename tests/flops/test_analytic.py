import pytest

from harness.flops.analytic import analytic_flops
from harness.build import build_model, count_params
from harness.config import build_spec
from harness.flops.count import count_model_flops


def spec_and_params(raw):
    spec = build_spec(raw)
    return spec, count_params(build_model(spec.model, "meta"))


def test_megatron_equation_3_closed_form_for_gpt2():
    b, s = 4, 1024
    spec, params = spec_and_params({"model": {"preset": "gpt2"}, "train": {"batch_size": b, "seq_len": s}})
    l, h, v = 12, 768, 50257
    a = analytic_flops(spec, params)
    assert a.megatron_recompute == pytest.approx(96 * b * s * l * h**2 * (1 + s / (6 * h) + v / (16 * l * h)), rel=1e-12)
    assert a.megatron == pytest.approx(72 * b * s * l * h**2 * (1 + s / (6 * h) + v / (12 * l * h)), rel=1e-12)


def test_megatron_without_recompute_is_torchs_count_less_the_embedding_free_bits():
    """GPT-2: torch's model count = Megatron (no recompute) exactly, since both count every
    matmul (projections, attention, LM head) three times and nothing else."""
    spec, params = spec_and_params({"model": {"preset": "gpt2"}, "train": {"batch_size": 1, "seq_len": 1024}})
    assert analytic_flops(spec, params).megatron == count_model_flops(spec)[0].total == 874_944_921_600


def test_llama_megatron_generalisation_matches_torch():
    spec, params = spec_and_params({"model": {"preset": "llama-7b", "layers": 2, "kv_heads": 8},
                                    "train": {"batch_size": 1, "seq_len": 256}})
    assert analytic_flops(spec, params).megatron == count_model_flops(spec)[0].total


def test_kaplan_forward_by_hand():
    spec, params = spec_and_params({"model": {"preset": "gpt2"}, "train": {"batch_size": 1, "seq_len": 1024}})
    n = params.non_embedding
    assert analytic_flops(spec, params).kaplan_forward == 1024 * (2 * n + 2 * 12 * 1024 * 768)


def test_t5_forms_sum_both_stacks():
    spec, params = spec_and_params({"model": {"preset": "t5-small"},
                                    "train": {"batch_size": 1, "seq_len": 512, "decoder_seq_len": 128}})
    a = analytic_flops(spec, params)
    assert a.attention_forward == 4 * 512 * (6 * 512 * 512 + 6 * 128 * (128 + 512))
    assert a.six_n == 6 * (params.encoder_non_embedding * 512 + params.decoder_non_embedding * 128)
