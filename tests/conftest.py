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
