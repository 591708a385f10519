"""Published model shapes (REFERENCE.md §2). Pure data: no torch import.

Each preset fills the `model` section of a config; any key given beside `preset` overrides it.
`head_dim` is set only where the paper's d_kv differs from hidden/heads (T5-3B, T5-11B).

Family `hf` presets give a transformers `model_type` and the config's own keys (`config`), exactly
as the released config.json names them; every other key keeps transformers' default for that type.
Each cites where its shape is published.
"""

from types import MappingProxyType

_BERT = {"family": "bert", "vocab": 30522, "max_positions": 512, "dropout": 0.1}
_GPT2 = {"family": "gpt2", "vocab": 50257, "max_positions": 1024, "dropout": 0.1}
# T5 uses relative position buckets, so there is no hard position limit (max_positions None).
_T5 = {"family": "t5", "vocab": 32128, "max_positions": None, "dropout": 0.1}
_LLAMA3 = {"family": "llama", "kv_heads": 8, "vocab": 128256, "max_positions": 131072,
           "dropout": 0.0}



def _hf(model_type: str, **config) -> dict:
    """A family-hf preset: the model type and its config's own keys (no dropout in any of them)."""
    return {"family": "hf", "model_type": model_type, "config": {**config, "attention_dropout": 0.0}}


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
    # Qwen2.5 (Qwen Team 2024, "Qwen2.5 Technical Report" Table 1; Qwen/Qwen2.5-7B config.json):
    # 28 layers, 28 query / 4 kv heads, SwiGLU 18944, q/k/v biases, untied head, 7.62B parameters.
    "qwen2.5-7b": _hf("qwen2", hidden_size=3584, num_hidden_layers=28, num_attention_heads=28,
                      num_key_value_heads=4, intermediate_size=18944, vocab_size=152064,
                      max_position_embeddings=131072, rope_theta=1000000.0, rms_norm_eps=1e-6,
                      tie_word_embeddings=False, use_sliding_window=False),
    # Mistral 7B (Jiang et al. 2023, arXiv 2310.06825, Table 1; mistralai/Mistral-7B-v0.1 config.json):
    # dim 4096, 32 layers, head_dim 128, hidden_dim 14336, 32 heads, 8 kv heads, sliding window
    # 4096, vocab 32000, 7.24B parameters. The window is counted as executed (see README).
    "mistral-7b": _hf("mistral", hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, head_dim=128, intermediate_size=14336, vocab_size=32000,
                      max_position_embeddings=32768, sliding_window=4096, rope_theta=10000.0,
                      tie_word_embeddings=False),
    # Gemma 2 (Gemma Team 2024, arXiv 2408.00118, Table 1; google/gemma-2-9b config.json):
    # d_model 3584, 42 layers, 16 heads, 8 kv heads, head_dim 256, feed-forward 28672 (= 2 x 14336,
    # GeGLU), vocab 256000, tied embeddings, local (4096) and global layers alternating, logit
    # soft-capping 50 / 30, 9.24B parameters. Soft-capping needs eager attention in transformers.
    "gemma2-9b": {**_hf("gemma2", hidden_size=3584, num_hidden_layers=42, num_attention_heads=16,
                        num_key_value_heads=8, head_dim=256, intermediate_size=14336, vocab_size=256000,
                        max_position_embeddings=8192, sliding_window=4096, query_pre_attn_scalar=256,
                        attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                        tie_word_embeddings=True), "attention": "eager"},
    # Mixtral 8x7B (Jiang et al. 2024, arXiv 2401.04088, Table 1; mistralai/Mixtral-8x7B-v0.1
    # config.json): Mistral-7B's attention, 8 experts of SwiGLU 14336, 2 per token,
    # 46.7B parameters, 12.9B active per token.
    "mixtral-8x7b": _hf("mixtral", hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                        num_key_value_heads=8, head_dim=128, intermediate_size=14336, vocab_size=32000,
                        max_position_embeddings=32768, num_local_experts=8, num_experts_per_tok=2,
                        rope_theta=1000000.0, sliding_window=None, tie_word_embeddings=False),
    # Qwen3-30B-A3B (Qwen Team 2025, "Qwen3 Technical Report" arXiv 2505.09388, Table 2;
    # Qwen/Qwen3-30B-A3B config.json): 48 layers, 32 query / 4 kv heads of 128, 128 experts of
    # 768, 8 per token, every layer sparse, untied head, 30.5B parameters, 3.3B active.
    "qwen3-30b-a3b": _hf("qwen3_moe", hidden_size=2048, num_hidden_layers=48, num_attention_heads=32,
                         num_key_value_heads=4, head_dim=128, intermediate_size=6144,
                         moe_intermediate_size=768, num_experts=128, num_experts_per_tok=8,
                         decoder_sparse_step=1, mlp_only_layers=[], norm_topk_prob=True,
                         vocab_size=151936, max_position_embeddings=40960, rope_theta=1000000.0,
                         rms_norm_eps=1e-6, tie_word_embeddings=False),
    # PaLM 540B (Chowdhery et al. 2022, arXiv 2204.02311, Table 1 and section 2): 118 layers,
    # d_model 18432, 48 heads of 256, multi-query attention (one kv head), SwiGLU 73728, vocab
    # 256000, shared input/output embeddings, no biases: a Llama-architecture config with
    # head_dim 256 and tied embeddings, 540.35B parameters. PaLM's parallel layers (attention and
    # MLP side by side) change neither the FLOPs nor the parameters of a step, only their order,
    # so the sequential Llama block counts the same. RoPE stands in for PaLM's RoPE, as it is.
    "palm-540b": _hf("llama", hidden_size=18432, num_hidden_layers=118, num_attention_heads=48,
                     num_key_value_heads=1, head_dim=256, intermediate_size=73728, vocab_size=256000,
                     max_position_embeddings=2048, tie_word_embeddings=True, attention_bias=False,
                     mlp_bias=False),
    # Brown et al. 2020: the GPT-2 architecture at 175B (dense attention assumed throughout)
    "gpt3-175b": {"family": "gpt2", "layers": 96, "hidden": 12288, "heads": 96, "ffn": 49152,
                  "vocab": 50257, "max_positions": 2048, "dropout": 0.0},
})
