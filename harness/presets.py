"""Published model shapes (REFERENCE.md §2). Pure data: no torch import.

Each preset fills the `model` section of a config; any key given beside `preset` overrides it.
`head_dim` is set only where the paper's d_kv differs from hidden/heads (T5-3B, T5-11B).
"""

from types import MappingProxyType

_BERT = {"family": "bert", "vocab": 30522, "max_positions": 512, "dropout": 0.1}
_GPT2 = {"family": "gpt2", "vocab": 50257, "max_positions": 1024, "dropout": 0.1}
# T5 uses relative position buckets, so there is no hard position limit (max_positions None).
_T5 = {"family": "t5", "vocab": 32128, "max_positions": None, "dropout": 0.1}
_LLAMA3 = {"family": "llama", "kv_heads": 8, "vocab": 128256, "max_positions": 131072,
           "dropout": 0.0}

PRESETS = MappingProxyType({
    # Devlin et al. 2019
    "bert-base": {**_BERT, "layers": 12, "hidden": 768, "heads": 12, "ffn": 3072},
    "bert-large": {**_BERT, "layers": 24, "hidden": 1024, "heads": 16, "ffn": 4096},
    # Radford et al. 2019 (ffn = 4 * hidden)
    "gpt2": {**_GPT2, "layers": 12, "hidden": 768, "heads": 12, "ffn": 3072},
    "gpt2-medium": {**_GPT2, "layers": 24, "hidden": 1024, "heads": 16, "ffn": 4096},
    "gpt2-large": {**_GPT2, "layers": 36, "hidden": 1280, "heads": 20, "ffn": 5120},
    "gpt2-xl": {**_GPT2, "layers": 48, "hidden": 1600, "heads": 25, "ffn": 6400},
    # Raffel et al. 2020; layers = encoder layers = decoder layers
    "t5-small": {**_T5, "layers": 6, "hidden": 512, "heads": 8, "ffn": 2048},
    "t5-base": {**_T5, "layers": 12, "hidden": 768, "heads": 12, "ffn": 3072},
    "t5-large": {**_T5, "layers": 24, "hidden": 1024, "heads": 16, "ffn": 4096},
    "t5-3b": {**_T5, "layers": 24, "hidden": 1024, "heads": 32, "ffn": 16384, "head_dim": 128},
    "t5-11b": {**_T5, "layers": 24, "hidden": 1024, "heads": 128, "ffn": 65536, "head_dim": 128},
    # Touvron et al. 2023 (LLaMA 1: context 2048, no dropout, multi-head attention: kv_heads = heads)
    "llama-7b": {"family": "llama", "layers": 32, "hidden": 4096, "heads": 32, "kv_heads": 32,
                 "ffn": 11008, "vocab": 32000, "max_positions": 2048, "dropout": 0.0},
    # Llama 3.1 (Meta 2024, "The Llama 3 Herd of Models" Table 3 and the released config.json):
    # grouped-query attention with 8 kv heads, SwiGLU, vocab 128256, untied head, no dropout.
    # The context limit is the released 131072 (pre-training ran mostly at 8192).
    "llama3.1-8b": {**_LLAMA3, "layers": 32, "hidden": 4096, "heads": 32, "ffn": 14336},
    "llama3.1-70b": {**_LLAMA3, "layers": 80, "hidden": 8192, "heads": 64, "ffn": 28672},
    "llama3.1-405b": {**_LLAMA3, "layers": 126, "hidden": 16384, "heads": 128, "ffn": 53248},
    # Brown et al. 2020: the GPT-2 architecture at 175B (dense attention assumed throughout)
    "gpt3-175b": {"family": "gpt2", "layers": 96, "hidden": 12288, "heads": 96, "ffn": 49152,
                  "vocab": 50257, "max_positions": 2048, "dropout": 0.0},
})
