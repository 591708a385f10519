"""Build: a Hugging Face model with random weights from a ModelSpec, and synthetic batches.

Never `from_pretrained`, never the hub, never `trust_remote_code`: every model is constructed
from a config object. Building on ``torch.device("meta")`` allocates nothing, so a 175B model
can be counted on a laptop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from harness.config import ModelSpec, RunSpec

_MASK_TOKEN_ID = 103  # BERT's [MASK] in the uncased vocabulary
_MLM_PROBABILITY = 0.15  # Devlin et al. 2019


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()


def hf_config(spec: ModelSpec):
    """The transformers config object for a spec (no I/O, no download)."""
    _quiet_transformers()
    from transformers import BertConfig, GPT2Config, LlamaConfig, T5Config

    common = {"vocab_size": spec.vocab, "attn_implementation": spec.attention, "use_cache": False}
    last_token = spec.vocab - 1
    if spec.family == "bert":
        return BertConfig(hidden_size=spec.hidden, num_hidden_layers=spec.layers,
                          num_attention_heads=spec.heads, intermediate_size=spec.ffn,
                          max_position_embeddings=spec.max_positions,
                          hidden_dropout_prob=spec.dropout, attention_probs_dropout_prob=spec.dropout,
                          pad_token_id=0, **common)
    if spec.family == "gpt2":
        eos = min(50256, last_token)
        return GPT2Config(n_embd=spec.hidden, n_layer=spec.layers, n_head=spec.heads,
                          n_inner=spec.ffn, n_positions=spec.max_positions,
                          resid_pdrop=spec.dropout, embd_pdrop=spec.dropout, attn_pdrop=spec.dropout,
                          bos_token_id=eos, eos_token_id=eos, **common)
    if spec.family == "t5":
        return T5Config(d_model=spec.hidden, d_kv=spec.head_dim, d_ff=spec.ffn,
                        num_layers=spec.layers, num_decoder_layers=spec.decoder_layers,
                        num_heads=spec.heads, dropout_rate=spec.dropout,
                        decoder_start_token_id=0, pad_token_id=0, eos_token_id=min(1, last_token),
                        **common)
    if spec.family == "llama":
        return LlamaConfig(hidden_size=spec.hidden, intermediate_size=spec.ffn,
                           num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
                           num_key_value_heads=spec.kv_heads, head_dim=spec.head_dim,
                           max_position_embeddings=spec.max_positions,
                           attention_dropout=spec.dropout, bos_token_id=min(1, last_token),
                           eos_token_id=min(2, last_token), **common)
    raise ValueError(f"unknown family {spec.family!r}")  # unreachable: the spec is validated


def _model_class(family: str):
    from transformers import (BertForMaskedLM, GPT2LMHeadModel, LlamaForCausalLM,
                              T5ForConditionalGeneration)

    return {"bert": BertForMaskedLM, "gpt2": GPT2LMHeadModel, "t5": T5ForConditionalGeneration,
            "llama": LlamaForCausalLM}[family]


def build_model(spec: ModelSpec, device: torch.device | str = "cpu", seed: int = 0) -> nn.Module:
    """A model with random weights on `device` (``"meta"`` allocates nothing), in train mode."""
    config = hf_config(spec)
    torch.manual_seed(seed)
    with torch.device(device):
        model = _model_class(spec.family)(config)
    return model.train()


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts. `non_embedding` excludes every nn.Embedding table (token, position,
    token-type, T5's relative-position bias), as Kaplan et al. 2020 do; a tied LM head shares
    the token table and so is excluded too, an untied head (Llama) counts. `non_matmul` are the
    non-embedding parameters that do no matmul work (biases, norm weights: every tensor of fewer
    than two dimensions); N·D formulas count 2 FLOPs per token for them too."""

    total: int
    non_embedding: int
    encoder_non_embedding: int | None = None  # T5 only
    decoder_non_embedding: int | None = None  # T5 only
    non_matmul: int = 0
    encoder_non_matmul: int | None = None     # T5 only
    decoder_non_matmul: int | None = None     # T5 only


def count_params(model: nn.Module) -> ParamCounts:
    """Count parameters once each (tied weights are shared tensors)."""
    embedding_ids = {id(p) for m in model.modules() if isinstance(m, nn.Embedding)
                     for p in m.parameters(recurse=False)}

    def non_embedding(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters() if id(p) not in embedding_ids)

    def non_matmul(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters() if id(p) not in embedding_ids and p.dim() < 2)

    total = sum(p.numel() for p in model.parameters())
    encoder = getattr(model, "encoder", None)
    decoder = getattr(model, "decoder", None)
    if isinstance(encoder, nn.Module) and isinstance(decoder, nn.Module):
        return ParamCounts(total, non_embedding(model), non_embedding(encoder), non_embedding(decoder),
                           non_matmul(model), non_matmul(encoder), non_matmul(decoder))
    return ParamCounts(total, non_embedding(model), non_matmul=non_matmul(model))


def make_batch(spec: RunSpec, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """One synthetic micro-batch for the family's objective, from the spec's fixed seed.

    bert: masked-LM (15% of positions masked, labels -100 elsewhere); gpt2, llama: causal LM
    (labels = inputs, shifted inside the model); t5: encoder inputs and decoder labels.
    On the meta device the tensors have the right shapes and no values.
    """
    model, train = spec.model, spec.train
    shape = (train.batch_size, train.seq_len)
    if torch.device(device).type == "meta":
        batch = {"input_ids": torch.empty(shape, dtype=torch.long, device="meta")}
        dec = (train.batch_size, train.decoder_seq_len) if model.family == "t5" else shape
        batch["labels"] = torch.empty(dec, dtype=torch.long, device="meta")
        return batch
    gen = torch.Generator().manual_seed(train.seed)
    # Ids from 2 up keep clear of the pad/start ids (0, 1) where the vocabulary allows it.
    low = 2 if model.vocab > 2 else 0
    input_ids = torch.randint(low, model.vocab, shape, generator=gen)
    if model.family == "bert":
        masked = torch.rand(shape, generator=gen) < _MLM_PROBABILITY
        masked[:, 0] = masked[:, 0] | ~masked.any(dim=1)  # at least one target per sequence
        labels = torch.where(masked, input_ids, torch.full_like(input_ids, -100))
        input_ids = torch.where(masked, torch.full_like(input_ids, min(_MASK_TOKEN_ID, model.vocab - 1)),
                                input_ids)
    elif model.family == "t5":
        labels = torch.randint(low, model.vocab, (train.batch_size, train.decoder_seq_len), generator=gen)
    else:
        labels = input_ids.clone()
    return {"input_ids": input_ids.to(device), "labels": labels.to(device)}
