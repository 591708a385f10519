import subprocess
import sys

import pytest

from harness.config import apply_overrides, build_spec, load_spec, parse_override, read_yaml
from harness.errors import ConfigError
from harness.presets import PRESETS
from tests.conftest import tiny_raw


def test_every_preset_resolves_with_its_published_shape():
    for name in PRESETS:
        spec = build_spec({"model": {"preset": name}, "train": {"seq_len": 128}})
        assert spec.model.preset == name
    gpt2 = build_spec({"model": {"preset": "gpt2-xl"}}).model
    assert (gpt2.layers, gpt2.hidden, gpt2.heads, gpt2.head_dim) == (48, 1600, 25, 64)
    t5 = build_spec({"model": {"preset": "t5-11b"}}).model
    assert (t5.hidden, t5.heads, t5.head_dim, t5.ffn, t5.decoder_layers) == (1024, 128, 128, 65536, 24)


def test_keys_beside_a_preset_override_it():
    spec = build_spec({"model": {"preset": "gpt2", "layers": 2, "hidden": 64, "heads": 2}})
    assert (spec.model.layers, spec.model.hidden, spec.model.heads, spec.model.vocab) == (2, 64, 2, 50257)


def test_overrides_are_dotted_paths_read_as_yaml():
    assert parse_override("train.batch_size=4") == (["train", "batch_size"], 4)
    assert parse_override("model.dropout=0.0") == (["model", "dropout"], 0.0)
    merged = apply_overrides({"model": {"preset": "gpt2"}}, ["model.layers=3", "train.dtype=bf16"])
    assert merged == {"model": {"preset": "gpt2", "layers": 3}, "train": {"dtype": "bf16"}}


def test_t5_decoder_length_defaults_to_encoder_length():
    spec = build_spec({"model": {"preset": "t5-small"}, "train": {"seq_len": 64}})
    assert spec.train.decoder_seq_len == 64
    assert spec.tokens_per_step == 8 * 64


@pytest.mark.parametrize("patch, field", [
    ({"model": {"preset": "nope"}}, "model.preset"),
    ({"model": {"colour": 1}}, "model.colour"),
    ({"trian": {}}, "trian"),
    ({"train": {"batch_size": 0}}, "train.batch_size"),
    ({"train": {"seq_len": -3}}, "train.seq_len"),
    ({"model": {"hidden": 30}}, "model.heads"),
    ({"train": {"seq_len": 65}}, "train.seq_len"),
    ({"train": {"dtype": "fp8"}}, "train.dtype"),
    ({"device": "tpu"}, "device"),
    ({"model": {"kv_heads": 3}}, "model.kv_heads"),
    ({"train": {"decoder_seq_len": 8}}, "train.decoder_seq_len"),
    ({"measure": {"steps": 0}}, "measure.steps"),
])
def test_bad_values_name_their_field(patch, field):
    raw = tiny_raw()
    for section, values in patch.items():
        if isinstance(values, dict) and isinstance(raw.get(section), dict):
            raw[section].update(values)
        else:
            raw[section] = values
    with pytest.raises(ConfigError) as info:
        build_spec(raw)
    assert info.value.field == field


def test_unknown_key_lists_the_allowed_ones():
    with pytest.raises(ConfigError, match="allowed: .*batch_size"):
        build_spec({"model": {"preset": "gpt2"}, "train": {"batchsize": 2}})


def test_files_missing_or_malformed(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        read_yaml(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  preset: [gpt2\n")
    with pytest.raises(ConfigError, match="malformed YAML .* line"):
        read_yaml(bad)
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("model: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="tag !!python.* not allowed"):
        read_yaml(unsafe)


def test_a_preset_name_can_stand_for_the_config():
    assert load_spec("gpt2-medium", ["train.seq_len=64"]).model.layers == 24


def test_building_a_spec_imports_no_torch():
    code = ("import sys; from harness.config import load_spec; load_spec(None);"
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_default_config_is_valid():
    spec = load_spec(None)
    assert spec.model.family == "gpt2" and spec.measure.steps > 0


BERT_BASE = (12, 768, 12, 64, 3072, 30522, 512)  # layers, hidden, heads, head_dim, ffn, vocab, positions


def _dims(model):
    return (model.layers, model.hidden, model.heads, model.head_dim, model.ffn, model.vocab, model.max_positions)


def test_a_preset_set_on_the_command_line_replaces_the_files_dimensions():
    # the default config is a cut-down gpt2 with explicit dimensions, written for that model only
    model = load_spec(None, ["model.preset=bert-base"]).model
    assert model.family == "bert" and _dims(model) == BERT_BASE
    assert model.label == "bert-base" and model.slug == "bert-base"
    assert model.dropout == 0.0  # a run setting, not a dimension: the file's stays


@pytest.mark.parametrize("overrides", [["model.preset=bert-base", "model.layers=2"],
                                       ["model.layers=2", "model.preset=bert-base"]])
def test_keys_set_beside_the_preset_in_the_same_command_override_it(overrides):
    model = load_spec(None, overrides).model
    assert _dims(model) == (2, *BERT_BASE[1:])
    assert model.label == "bert-base (layers=2)" and model.slug == "bert-base+layers2"


def test_a_file_with_a_preset_and_one_key_keeps_that_key(tmp_path):
    config = tmp_path / "two-layers.yaml"
    config.write_text("model: {preset: bert-base, layers: 2}\n")
    model = load_spec(config).model
    assert _dims(model) == (2, *BERT_BASE[1:]) and model.label == "bert-base (layers=2)"
    # a --set of another key keeps the file's preset and its key
    assert load_spec(config, ["model.hidden=384"]).model.label == "bert-base (layers=2, hidden=384)"


def test_setting_a_preset_drops_only_the_architecture_keys():
    raw = {"model": {"preset": "gpt2", "hidden": 256, "kv_heads": 4, "dropout": 0.0, "attention": "eager"}}
    assert apply_overrides(raw, ["model.preset=bert-base"]) == {
        "model": {"preset": "bert-base", "dropout": 0.0, "attention": "eager"}}
    assert apply_overrides(raw, ["model.hidden=128"])["model"]["kv_heads"] == 4


def test_labels_name_the_preset_its_changes_or_the_family():
    assert build_spec(tiny_raw()).model.label == "gpt2"  # no preset: the family
    t5 = build_spec({"model": {"preset": "t5-small", "layers": 2}}).model
    assert t5.label == "t5-small (layers=2)"  # decoder_layers follows layers: not a change
    assert build_spec({"model": {"preset": "t5-small", "layers": 2, "decoder_layers": 1}}).model.label \
        == "t5-small (layers=2, decoder_layers=1)"
    assert build_spec({"model": {"preset": "gpt2", "dropout": 0.0}}).model.label == "gpt2"
    default = load_spec(None).model
    assert default.label == "gpt2 (layers=2, hidden=256, heads=4, ffn=1024, vocab=8192)"


def test_a_run_id_carries_the_label_as_a_safe_file_name():
    import re
    from datetime import datetime, timezone

    from harness.measure.run import new_run_id

    spec = load_spec(None, ["model.preset=bert-base", "model.layers=2"])
    run_id = new_run_id(spec, datetime(2026, 12, 1, tzinfo=timezone.utc))
    assert re.fullmatch(r"20261201T000000Z-bert-base\+layers2-[0-9a-f]{8}", run_id)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", new_run_id(load_spec(None), datetime.now(timezone.utc)))


# Hashes of specs computed on the code before family hf and packing existed (commit f8c0fb1):
# stored records deduplicate by them, so new fields at their defaults must leave them unchanged.
@pytest.mark.parametrize("raw, digest", [
    ({"model": {"preset": "bert-base"}}, "6aa1418ea02dedd8"),
    ({"model": {"preset": "gpt2"}, "train": {"batch_size": 4, "seq_len": 256}}, "ffb8c493d3b13dc0"),
    (tiny_raw("llama"), "4eecc8367965da42"),
    ({"model": {"preset": "t5-small"}}, "a57ccd5ffba0e253"),
])
def test_existing_specs_keep_their_config_hash(raw, digest):
    assert build_spec(raw).config_hash() == digest


def test_packing_changes_the_hash():
    assert build_spec(tiny_raw("llama", pack=True, doc_len=4)).config_hash() != "4eecc8367965da42"


def test_hf_family_mirrors_the_config_and_writes_dimensions_into_it():
    spec = build_spec({"model": {"preset": "mixtral-8x7b", "layers": 2}})
    assert spec.model.label == "mixtral-8x7b (layers=2)" and spec.model.slug == "mixtral-8x7b+layers2"
    assert spec.model.config["num_hidden_layers"] == 2 and spec.model.layers == 2
    assert (spec.model.hidden, spec.model.kv_heads, spec.model.head_dim, spec.model.experts) == (4096, 8, 128, (2, 8))
    from harness.config import with_changes
    assert with_changes(spec, {"train.grad_accum": 1}).config_hash() == spec.config_hash()
    window = build_spec({"model": {"preset": "mistral-7b", "config": {"sliding_window": None}}})
    assert window.model.label == "mistral-7b (config.sliding_window=None)"
    assert window.model.config["hidden_size"] == 4096  # merged over the preset's keys
    assert load_spec(None, ["model.preset=palm-540b"]).model.head_dim == 256


@pytest.mark.parametrize("model, field", [
    ({"family": "hf", "config": {"hidden_size": 8}}, "model.model_type"),
    ({"family": "hf", "model_type": "qwen2", "config": {"hidden_size": 8}}, "model.config.num_hidden_layers"),
    ({"preset": "qwen2.5-7b", "config": {"trust_remote_code": True}}, "model.config.trust_remote_code"),
    ({"preset": "qwen2.5-7b", "config": {"attn_implementation": "eager"}}, "model.config.attn_implementation"),
    ({"preset": "qwen2.5-7b", "config": {"num_key_value_heads": 5}}, "model.config.num_key_value_heads"),
    ({"preset": "qwen2.5-7b", "config": {"hidden_size": -1}}, "model.config.hidden_size"),
    ({"preset": "mixtral-8x7b", "config": {"num_experts_per_tok": 9}}, "model.config.num_experts_per_tok"),
    ({"preset": "gpt2", "model_type": "qwen2"}, "model.model_type"),
    # values as the rest of the spec allows them: finite, within 64 bits, numbers not text, in range
    ({"preset": "qwen2.5-7b", "config": {"rms_norm_eps": float("nan")}}, "model.config.rms_norm_eps"),
    ({"preset": "qwen2.5-7b", "config": {"rope_theta": float("inf")}}, "model.config.rope_theta"),
    ({"preset": "qwen2.5-7b", "config": {"rope_theta": "1e6"}}, "model.config.rope_theta"),
    ({"preset": "qwen2.5-7b", "config": {"vocab_size": 10**23}}, "model.config.vocab_size"),
    ({"preset": "qwen2.5-7b", "config": {"num_hidden_layers": 100_000}}, "model.config.num_hidden_layers"),
    ({"preset": "qwen2.5-7b", "config": {"hidden_size": 28 * 2**20, "head_dim": 128}}, "model.config.hidden_size"),
])
def test_bad_hf_models_name_their_field(model, field):
    with pytest.raises(ConfigError) as err:
        build_spec({"model": model})
    assert err.value.field == field


def test_bad_model_type_and_experts_exit_2_with_one_line(capsys):
    from harness.cli import main

    for args in (["count", "mistral-7b", "--set", "model.model_type=no_such", "--batch", "1", "--seq", "8"],
                 ["count", "mixtral-8x7b", "--set", "model.config.num_experts_per_tok=9"]):
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and ("model.model_type" in err or "num_experts_per_tok" in err)


# ---------------------------------------------------------------------------------------------
# Bounds: every numeric field finite and in its stated range


@pytest.mark.parametrize("dotted, value", [
    ("train.seed", 2**64), ("train.seed", -1), ("train.seed", 2**63),
    ("model.hidden", 1e9), ("model.hidden", 2**20 + 1), ("model.vocab", 10**12), ("model.layers", 2**14 + 1),
    ("train.batch_size", 1e8), ("train.batch_size", 2**21), ("train.batch_size", True), ("train.batch_size", 8.0),
    ("model.max_positions", 10**11), ("train.seq_len", "128"),
    ("measure.steps", 10**12), ("measure.steps", 10**6 + 1), ("train.grad_accum", 10**12),
    ("train.lr", float("inf")), ("train.lr", float("nan")), ("train.lr", "inf"), ("train.lr", True),
    ("measure.cpu_tdp_w", float("inf")), ("measure.cpu_tdp_w", 1e6), ("distributed.timeout_s", float("inf")),
    ("distributed.timeout_s", 86_401), ("measure.max_minutes", 0), ("model.dropout", float("nan")),
])
def test_numeric_fields_are_bounded_and_finite(dotted, value):
    raw = {"model": {"preset": "gpt2", "layers": 2}}
    section, key = dotted.split(".")
    raw.setdefault(section, {})[key] = value
    with pytest.raises(ConfigError) as info:
        build_spec(raw)
    assert info.value.field == dotted
    assert len(str(info.value)) < 300


def test_bounds_admit_what_real_runs_use():
    spec = build_spec({"model": {"preset": "gpt3-175b"},
                       "train": {"seed": 2**63 - 1, "lr": "6e-5", "batch_size": 2**20, "grad_accum": 10**5},
                       "measure": {"steps": 10**6, "max_minutes": 90, "cpu_tdp_w": 280.0},
                       "distributed": {"timeout_s": 86_400}})
    assert spec.train.lr == 6e-5 and spec.train.seed == 2**63 - 1 and spec.measure.max_minutes == 90


def test_an_echoed_value_is_cut_to_80_characters_with_its_length():
    with pytest.raises(ConfigError) as info:
        build_spec({"model": {"preset": "gpt2"}, "train": {"dtype": "x" * 1_000_000}})
    message = str(info.value)
    assert "(1,000,002 characters)" in message and len(message) < 300


# ---------------------------------------------------------------------------------------------
# The YAML reader's limits (harness.yamlfile), each with a case


def _yaml(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_yaml_refuses_a_duplicate_key(tmp_path):
    with pytest.raises(ConfigError, match="duplicate key 'layers' .line 3"):
        read_yaml(_yaml(tmp_path, "model:\n  layers: 2\n  layers: 4\n"))


def test_yaml_alias_bomb_fails_fast(tmp_path):
    import time

    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):  # 10**10 strings once expanded
        lines.append(f"{'abcdefghij'[i]}: &{'abcdefghij'[i]} [" + ", ".join([f"*{'abcdefghij'[i - 1]}"] * 10) + "]")
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="aliases expand to more than 100,000 nodes"):
        read_yaml(_yaml(tmp_path, "\n".join(lines) + "\n"))
    assert time.perf_counter() - started < 1.0
    # a few aliases within the budget are fine
    assert read_yaml(_yaml(tmp_path, "a: &x [1, 2]\nb: *x\n")) == {"a": [1, 2], "b": [1, 2]}


def test_yaml_refuses_deep_nesting_without_recursion_error(tmp_path):
    with pytest.raises(ConfigError, match="nested deeper than 32"):
        read_yaml(_yaml(tmp_path, "a: " + "[" * 100_000 + "]" * 100_000 + "\n"))
    with pytest.raises(ConfigError, match="nested deeper than 32"):
        parse_override("model.layers=" + "[" * 5_000 + "]" * 5_000)


@pytest.mark.parametrize("text, tag", [("model: !!binary aGVsbG8=\n", "!!binary"), ("model: !!set {a, b}\n", "!!set"),
                                       ("model: !!timestamp 2024-01-01\n", "!!timestamp"),
                                       ("model: !!omap [{a: 1}]\n", "!!omap"), ("model: !custom x\n", "!custom")])
def test_yaml_refuses_tags_other_than_plain_scalars(tmp_path, text, tag):
    with pytest.raises(ConfigError, match=f"tag {tag} is not allowed"):
        read_yaml(_yaml(tmp_path, text))


def test_yaml_reads_a_date_as_a_string(tmp_path):
    assert read_yaml(_yaml(tmp_path, "when: 2024-01-01\nat: 2024-01-01 10:00:00\n")) == {
        "when": "2024-01-01", "at": "2024-01-01 10:00:00"}
    with pytest.raises(ConfigError, match="train.seed: .*valid integer.*'2024-01-01'"):
        load_spec(None, ["train.seed=2024-01-01"])


def test_yaml_refuses_a_file_over_its_size_limit(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * (1 << 20) + "\nmodel: {preset: gpt2}\n")
    with pytest.raises(ConfigError, match="over the limit of 1,048,576 bytes"):
        read_yaml(path)
    with pytest.raises(ConfigError, match="allowed: up to 10,000"):
        parse_override("model.preset=" + "x" * 10_001)
