import pytest

from harness.config import build_spec


def tiny_raw(family: str = "gpt2", **train):
    """A raw config for a tiny model of `family` that steps in milliseconds on a CPU."""
    model = {"family": family, "layers": 2, "hidden": 32, "heads": 4, "ffn": 64, "vocab": 128,
             "max_positions": 64, "dropout": 0.0}
    if family == "llama":
        model["kv_heads"] = 2
    return {"model": model,
            "train": {"batch_size": 2, "seq_len": 16, **train},
            "measure": {"warmup_steps": 1, "steps": 3},
            "device": "cpu"}


@pytest.fixture
def tiny_spec():
    def make(family: str = "gpt2", model: dict | None = None, **train):
        raw = tiny_raw(family, **train)
        raw["model"].update(model or {})
        return build_spec(raw)

    return make


def tiny_hf_raw(model_type: str = "mixtral", config: dict | None = None, **train):
    """A raw config of family hf: a tiny `model_type` (2 layers, hidden 32, 4 heads, 2 kv heads;
    mixtures of experts: 4 experts of 64, 2 per token)."""
    base = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "intermediate_size": 64, "vocab_size": 128, "max_position_embeddings": 64}
    moe = {"mixtral": {"num_local_experts": 4, "num_experts_per_tok": 2},
           "qwen3_moe": {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 64},
           "qwen2_moe": {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 64,
                         "shared_expert_intermediate_size": 64},
           "olmoe": {"num_experts": 4, "num_experts_per_tok": 2}}.get(model_type, {})
    return {"model": {"family": "hf", "model_type": model_type, "config": {**base, **moe, **(config or {})}},
            "train": {"batch_size": 2, "seq_len": 16, **train},
            "measure": {"warmup_steps": 1, "steps": 2, "energy": False}, "device": "cpu"}


@pytest.fixture
def tiny_hf():
    def make(model_type: str = "mixtral", config: dict | None = None, **train):
        return build_spec(tiny_hf_raw(model_type, config, **train))

    return make


FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures"


def fixture_json(name: str = "record_v1.json") -> dict:
    """A record's JSON form as harness wrote it before records were typed (schema_version 1):
    tests/fixtures/record_v1.json is a real tiny GPT-2 run on a CPU, record_v1_depth_sliced.json
    a depth-sliced record; both written by the code of commit 801fb7f."""
    import json

    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def make_record(changes: dict | None = None, *, base: str = "record_v1.json"):
    """A valid RunRecord: the committed fixture, migrated, with dotted `changes` applied
    (``{"run_id": "a", "device.name": "NVIDIA H100 80GB HBM3", "flops.model.by_op": {...}}``);
    a value of ``DELETE`` removes the key. Validated like any stored record."""
    from harness.results.record import RunRecord, migrate

    data = migrate(fixture_json(base))
    for dotted, value in (changes or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        if value is DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return RunRecord.from_json(data, "test record")


DELETE = object()
