import json

import pytest

from harness.config import build_spec
from harness.hardware import datasheet_by_name
from harness.flops.reconcile import mfu_from_outside, reconcile
from tests.cli.test_cli import harness


def gpt2(batch=1, seq=1024, **train):
    return build_spec({"model": {"preset": "gpt2"}, "train": {"batch_size": batch, "seq_len": seq, **train}})


def test_nanogpt_mfu_anchor_37_14_percent():
    """REFERENCE.md §3: GPT-2, 20 x 5 x 1024 tokens, 0.755 s on an A100 in bf16."""
    report = reconcile(gpt2(batch=20, grad_accum=5))
    assert report.primary_flops == 874_944_921_600 * 100
    _, peak = datasheet_by_name("A100", "bf16")
    assert round(100 * mfu_from_outside(report.primary_flops, 0.755, peak)["mfu"], 2) == 37.14


def test_world_size_cancels_only_with_a_per_device_batch():
    one = mfu_from_outside(10**15, 1.0, 1e15, devices=1)
    eight = mfu_from_outside(10**15, 1.0, 1e15, devices=8)
    assert one["mfu"] == eight["mfu"] == 1.0
    assert eight["model_flops_per_step"] == 8 * one["model_flops_per_step"]


def test_figures_and_their_differences():
    report = reconcile(gpt2())
    megatron = next(f for f in report.figures if f.name == "Megatron-LM eq. 3, no recompute")
    assert megatron.flops == report.primary_flops and megatron.delta_pct == 0.0
    six_n = report.figures[1]
    assert six_n.flops < report.primary_flops and "LM head" in six_n.reason
    assert report.conventions == {"flop": "2*MAC", "causal_halving": False, "recomputation_counted": False,
                                  "includes_backward": True, "causal_halving_amount": 0}
    assert "Global" not in report.by_module and all(k.count(".") <= 2 for k in report.by_module)
    assert report.uncounted_ops["aten.native_layer_norm"] > 0 and "aten.view" not in report.uncounted_ops
    assert report.data_movement_ops["aten.view"] > 0 and "aten.mul" not in report.data_movement_ops
    assert sum(report.by_operator.values()) == report.primary_flops


def test_causal_halving_removes_half_the_attention_matmuls():
    off, on = reconcile(gpt2()), reconcile(gpt2(), causal_halving=True)
    attention_train = 3 * 12 * 4 * 1024 * 1024 * 768  # 3 passes x L x 4·T·T·d_attn
    assert off.primary_flops - on.primary_flops == attention_train // 2
    assert (on.forward_flops, on.train_flops) == (on.primary_flops // 3, on.primary_flops)
    forward_on = reconcile(gpt2(), mode="forward", causal_halving=True)
    assert (forward_on.forward_flops, forward_on.train_flops) == (on.forward_flops, on.train_flops)
    bert = build_spec({"model": {"preset": "bert-base"}, "train": {"seq_len": 128}})
    assert reconcile(bert, causal_halving=True).conventions["causal_halving_amount"] == 0


def test_forward_mode_is_a_third_of_train_for_gpt2():
    assert 3 * reconcile(gpt2(), mode="forward").primary_flops == reconcile(gpt2()).primary_flops


def test_unknown_gpu_is_an_error_not_an_a100(tmp_path):
    out = harness("count", "gpt2", "--step-time", "1", "--gpu", "Z9000", cwd=tmp_path)
    assert out.returncode == 2 and "--gpu" in out.stderr and "A100" in out.stderr


def test_count_cli_json_and_csv(tmp_path):
    out = harness("count", "gpt2", "--batch", "20", "--seq", "1024", "--grad-accum", "5",
                  "--step-time", "0.755", "--gpu", "A100", "--dtype", "bf16", "--json",
                  "--csv", str(tmp_path / "gpt2.csv"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert round(100 * data["mfu"]["mfu"], 2) == 37.14
    rows = (tmp_path / "gpt2.csv").read_text().splitlines()
    assert rows[0] == "kind,name,flops,delta_pct,unexplained,reason" and any(r.startswith("module,") for r in rows)


def test_fvcore_joins_the_table_and_agrees_with_torch(tiny_spec):
    from harness.flops.fvcount import count_fvcore_forward

    spec = tiny_spec("llama")
    report = reconcile(spec, fvcore_count=count_fvcore_forward(spec))
    fvcore = next(f for f in report.figures if f.name.startswith("fvcore"))
    assert fvcore.flops == report.primary_flops and fvcore.delta_pct == 0.0 and fvcore.unexplained == 0
    assert report.fvcore_unsupported_ops["aten::rsqrt"] > 0  # RMSNorm: arithmetic fvcore cannot count


@pytest.mark.parametrize("family", ["bert", "gpt2", "t5", "llama"])
@pytest.mark.parametrize("mode", ["train", "forward"])
@pytest.mark.parametrize("halving", [False, True])
def test_every_gap_is_explained_by_named_terms(tiny_spec, family, mode, halving):
    """primary = figure + sum(named terms) exactly, for every figure, family, mode and convention.
    T5 with a decoder shorter than the encoder exercises the cross-attention term."""
    spec = tiny_spec(family, **({"decoder_seq_len": 8} if family == "t5" else {}))
    report = reconcile(spec, mode=mode, causal_halving=halving)
    for figure in report.figures:
        assert figure.unexplained == 0, (figure.name, figure.terms)
        assert figure.flops + sum(figure.terms.values()) == report.primary_flops
    six_n = report.figures[1]
    assert any(label.startswith("attention matmuls") for label in six_n.terms)
    assert any(label.startswith("LM head") for label in six_n.terms) == (family != "llama")


def test_bert_base_gaps_by_hand():
    """BERT-base at 1 x 512: the terms, computed by hand from the architecture."""
    report = reconcile(build_spec({"model": {"preset": "bert-base"},
                                   "train": {"batch_size": 1, "seq_len": 512}}))
    tokens, h = 512, 768
    # biases and LayerNorm weights: 12 layers x (qkv 3h + out h + 2 LN x 2h + ffn 4h + h),
    # embedding LN 2h, MLM transform bias h + LN 2h, output bias 30,522
    vectors = 12 * (3 * h + h + 4 * h + 4 * h + h) + 2 * h + 3 * h + 30_522
    assert vectors == 154_170
    six_n = report.figures[1]
    assert six_n.terms["biases and norm weights that N counts but that do no matmul"] == -6 * vectors * tokens
    assert six_n.terms["LM head (tied to the embedding, so not in N)"] == 6 * tokens * h * 30_522
    assert six_n.terms["attention matmuls QKᵀ, PV"] == 3 * 12 * 4 * tokens * tokens * h
    megatron = next(f for f in report.figures if f.name == "Megatron-LM eq. 3, no recompute")
    assert megatron.terms == {"BERT's MLM transform (dense h x h outside the layers)": 6 * tokens * h * h}
