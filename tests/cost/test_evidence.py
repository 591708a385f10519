"""The published evidence table: parses, reproduces each source's stated MFU from its own numbers,
and re-expresses each row in this project's convention."""

import csv
import math
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
    assert {"nanoGPT", "torchtitan", "llm-foundry", "NVIDIA"} <= sources
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


def test_a_bad_row_names_its_column():
    with open(TABLE, newline="", encoding="utf-8") as handle:
        raw = list(csv.DictReader(handle))[:1]
    raw[0]["unit"] = "furlongs"
    with pytest.raises(ConfigError, match=r"nanogpt-gpt2-a100\.unit"):
        parse_rows(raw)
    raw[0]["unit"], raw[0]["url"] = "s_per_step", "http://example.com"
    with pytest.raises(ConfigError, match="https"):
        parse_rows(raw)
