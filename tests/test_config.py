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
    with pytest.raises(ConfigError, match="malformed YAML"):
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
