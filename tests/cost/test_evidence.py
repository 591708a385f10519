"""The published evidence table: parses, reproduces each source's stated MFU from its own numbers,
and re-expresses each row in this project's convention."""

import csv
from pathlib import Path

import pytest

from harness.cost.evidence import TABLE, load_published, nearest_published, parse_rows
from harness.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def rows():
    return {r.id: r for r in load_published()}


def test_table_parses_and_the_named_path_is_the_same_file():
    table = rows()
    assert len(table) >= 25
    assert (ROOT / "configs" / "published" / "throughput.csv").read_bytes() == TABLE.read_bytes()
    sources = {r.source.split()[0] for r in table.values()}
    assert {"nanoGPT", "torchtitan", "llm-foundry", "NVIDIA", "Megatron-LM"} <= sources
    assert {r.gpu for r in table.values()} >= {"A100", "H100 SXM", "V100 SXM2"}
    for r in table.values():
        assert r.url.startswith("https://") and r.date


@pytest.mark.parametrize("row_id", [r.id for r in load_published() if r.stated_mfu is not None])
def test_each_row_reproduces_its_stated_mfu_within_half_a_point(row_id):
    r = rows()[row_id]
    assert abs(r.source_mfu() - r.stated_mfu) <= 0.005, (r.source_mfu(), r.stated_mfu)


def test_torchtitan_8b_rows_fall_in_the_stated_33_to_39_percent():
    bf16 = [r for r in load_published() if r.id.startswith("tt-8b") and r.dtype == "bf16"]
    assert len(bf16) == 4
    mfus = sorted(r.source_mfu() for r in bf16)
    # 5,605 TPS x 57.92 GFLOP/token / 989.5 TFLOP/s = 32.8%; 6,667 TPS: 39.0%
    assert mfus[0] == pytest.approx(5605 * bf16[0].source_flops_per_token() / 989.5e12)
    assert 0.325 <= mfus[0] and mfus[-1] <= 0.395
    assert round(mfus[0] * 100) == 33 and round(mfus[-1] * 100) == 39


def test_nanogpt_row_is_the_reference_anchor_exactly():
    r = rows()["nanogpt-gpt2-a100"]
    # REFERENCE §3: forward+backward of (1, 1024) = 874,944,921,600 FLOPs with torch's counter
    assert r.project_flops_per_token() * 1024 == 874_944_921_600
    assert r.convention_ratio == 1.0
    assert r.mfu() == pytest.approx(102400 / 0.755 * 874_944_921_600 / 1024 / 312e12)
    assert round(r.mfu() * 100, 2) == 37.14


def test_mpt_params_follow_from_the_shape_exactly():
    for r in load_published():
        if r.family == "mpt":
            d, L = r.d_model, r.layers
            assert r.params == 12 * d * d * L + 50368 * d + r.seq_len * d + (13 * L + 2) * d, r.id
            # ours leaves out the position embedding, biases and norms llm-foundry's 6N counts
            assert r.convention_ratio == pytest.approx(
                (6 * r.matmul_params + 12 * L * d * r.seq_len) / (6 * r.params + 12 * L * d * r.seq_len))
            assert 0.98 < r.convention_ratio < 1.0


def test_llama_shapes_give_the_released_totals():
    for r in load_published():
        if r.family == "llama":
            d, L = r.d_model, r.layers
            total = r.matmul_params + r.vocab * d + 2 * d * L + d  # + input embedding + norms
            assert total == r.params, r.id


def test_fp8_rows_carry_throughput_but_no_mfu():
    r = rows()["tt-70b-256gpu-fp8"]
    assert r.tokens_per_s_per_device == 876 and r.mfu() is None and r.peak_flops_per_s() is None


def test_bert_sequences_per_second_become_tokens_per_device():
    r = rows()["dle-bertl-8xv100-128"]
    assert r.tokens_per_s_per_device == pytest.approx(1305.6 * 128 / 8)
    per_token = 6 * (24 * 12 * 1024 ** 2 + 1024 ** 2 + 1024 * 30522) + 12 * 24 * 1024 * 128
    assert r.mfu() == pytest.approx(1305.6 * 128 / 8 * per_token / 125e12)
    assert r.source_mfu() is None  # the README states no FLOP count


def test_nearest_row_by_gpu_dtype_and_size():
    near = nearest_published("H100 SXM", "bf16", 6.7e9, 2048)
    assert near.row.id == "mpt-7b-2048-8xh100"
    assert near.value == pytest.approx(near.row.mfu())
    assert near.error > 0 and near.source.startswith("published: llm-foundry")
    assert nearest_published("H100 SXM", "bf16", 8.0e9, 8192).row.preset == "llama3.1-8b"
    assert nearest_published("H200 SXM", "bf16", 1e9, 2048) is None   # no published row: none borrowed
    assert nearest_published("A100", "fp8", 1e9, 2048) is None


def megatron_rows():
    return [r for r in load_published() if r.convention == "megatron"]


# Narayanan et al. 2021 (arXiv:2104.04473v5) Table 1, as printed: params (B), heads, hidden, layers,
# tensor-parallel, pipeline-parallel, GPUs, batch, TF/s per GPU, % of peak, aggregate PF/s
MEGATRON_TABLE_1 = [
    (1.7, 24, 2304, 24, 1, 1, 32, 512, 137, 44, 4.4),
    (3.6, 32, 3072, 30, 2, 1, 64, 512, 138, 44, 8.8),
    (7.5, 32, 4096, 36, 4, 1, 128, 512, 142, 46, 18.2),
    (18.4, 48, 6144, 40, 8, 1, 256, 1024, 135, 43, 34.6),
    (39.1, 64, 8192, 48, 8, 2, 512, 1536, 138, 44, 70.8),
    (76.1, 80, 10240, 60, 8, 4, 1024, 1792, 140, 45, 143.8),
    (145.6, 96, 12288, 80, 8, 8, 1536, 2304, 148, 47, 227.1),
    (310.1, 128, 16384, 96, 8, 16, 1920, 2160, 155, 50, 297.4),
    (529.6, 128, 20480, 105, 8, 35, 2520, 2520, 163, 52, 410.2),
    (1008.0, 160, 25600, 128, 8, 64, 3072, 3072, 163, 52, 502.0),
]


def test_megatron_rows_are_table_1_and_its_numbers_agree_with_each_other():
    table = megatron_rows()
    assert len(table) == 10
    for r, (params_b, heads, h, l, t, p, n, batch, tf, pct, agg_pf) in zip(table, MEGATRON_TABLE_1):
        assert (r.params / 1e9, r.heads, r.d_model, r.layers, r.devices, r.figure) == (params_b, heads, h, l, n, tf)
        assert (r.gpu, r.seq_len, r.vocab, r.ffn, r.unit) == ("A100", 2048, 51200, 4 * h, "tflops_per_s_per_device")
        assert r.parallelism.startswith(f"TP {t} x PP {p} x DP {n // (t * p)};") and n % (t * p) == 0
        assert f"global batch {batch} " in r.notes and f"{agg_pf} PF/s aggregate" in r.notes
        # % of peak: TF/s over the A100's 16-bit 312 TF/s, to the printed whole percent
        assert r.stated_mfu == pct / 100
        assert abs(tf / 312 * 100 - pct) <= 0.5
        assert r.source_mfu() == pytest.approx(tf / 312)
        # aggregate = per GPU x GPUs, within the rounding of both (TF/s to ±0.5, PF/s to ±0.05)
        assert abs(tf * n / 1000 - agg_pf) <= 0.5 * n / 1000 + 0.05
        # Eq. 2: P = 12lh²(1 + 13/(12h) + (V + s)/(12lh)) = 12lh² + 13lh + (V + s)h, to the printed 0.1B
        eq2 = 12 * l * h * h + 13 * l * h + (51200 + 2048) * h
        assert round(eq2 / 1e9, 1) == params_b


def test_megatron_convention_is_eq_3_and_ours_is_three_quarters_of_its_layers():
    for r in megatron_rows():
        l, h, s, V = r.layers, r.d_model, r.seq_len, r.vocab
        # Eq. 3 per iteration over B·s tokens
        assert r.source_flops_per_token() == pytest.approx(96 * l * h * h * (1 + s / (6 * h) + V / (16 * l * h)),
                                                           rel=1e-12)
        # ours, no recomputation: 72lh² + 12lhs + 6hV per token
        assert r.project_flops_per_token() == 72 * l * h * h + 12 * l * h * s + 6 * h * V
        assert 0.75 < r.convention_ratio < 0.763
    ratios = [r.convention_ratio for r in megatron_rows()]
    assert ratios == sorted(ratios, reverse=True)  # toward 3/4 as the logit layer's share shrinks


def test_megatron_1_7b_by_hand():
    r = rows()["megatron-1.7b-32xa100"]
    # l = 24, h = 2304, s = 2048, V = 51200, per token:
    # theirs: 96·24·2304² + 16·24·2304·2048 + 6·2304·51200 = 12,230,590,464 + 1,811,939,328 + 707,788,800
    # ours:   72·24·2304² + 12·24·2304·2048 + 6·2304·51200 =  9,172,942,848 + 1,358,954,496 + 707,788,800
    assert r.source_flops_per_token() == 14_750_318_592
    assert r.project_flops_per_token() == 11_239_686_144
    assert r.tokens_per_s_per_device == pytest.approx(137e12 / 14_750_318_592)  # 9,288 tokens/s per GPU
    # 44% of peak as a hardware-FLOPs figure (with recomputation); 33.5% in model FLOPs
    assert r.mfu() == pytest.approx(137 / 312 * 11_239_686_144 / 14_750_318_592)
    assert round(r.mfu() * 100, 1) == 33.5 and round(r.source_mfu() * 100) == 44


def test_megatron_rows_stand_for_a100_fp16_only():
    near = nearest_published("A100", "fp16", 175e9, 2048)
    assert near.row.id == "megatron-145.6b-1536xa100"
    assert near.source.startswith("published: Megatron-LM") and "ours / theirs = 0.7508" in near.source
    assert near.value == pytest.approx(148 / 312 * near.row.convention_ratio)
    assert nearest_published("A100", "bf16", 175e9, 2048).row.family == "mpt"  # precision stated as fp16


def test_a_bad_row_names_its_column():
    with open(TABLE, newline="", encoding="utf-8") as handle:
        raw = list(csv.DictReader(handle))[:1]
    raw[0]["unit"] = "furlongs"
    with pytest.raises(ConfigError, match=r"nanogpt-gpt2-a100\.unit"):
        parse_rows(raw)
    raw[0]["unit"], raw[0]["url"] = "s_per_step", "http://example.com"
    with pytest.raises(ConfigError, match="https"):
        parse_rows(raw)
