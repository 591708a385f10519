"""Build: a Hugging Face model with random weights from a ModelSpec, and synthetic batches.

Never `from_pretrained`, never the hub, never `trust_remote_code`: every model is constructed
from a config object. Building on ``torch.device("meta")`` allocates nothing, so a 175B model
can be counted on a laptop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from harness.config import ModelSpec, RunSpec
from harness.errors import ConfigError

_MASK_TOKEN_ID = 103  # BERT's [MASK] in the uncased vocabulary
_MLM_PROBABILITY = 0.15  # Devlin et al. 2019


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()


def hf_model_types() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(causal-LM model types, seq2seq model types) that the installed transformers ships."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES)

    seq2seq = tuple(sorted(MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES))
    causal = tuple(sorted(set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES) - set(seq2seq)))
    return causal, seq2seq


def is_seq2seq(spec: ModelSpec) -> bool:
    """Whether a spec is an encoder-decoder model (T5, or an hf seq2seq model type)."""
    if spec.family == "t5":
        return True
    return spec.family == "hf" and spec.model_type in hf_model_types()[1]


def _check_value_types(spec: ModelSpec, config) -> None:
    """A number (or None: the feature off) where the model type's own default is a number:
    transformers checks only the fields it types, so a string would otherwise fail in the forward."""
    defaults = type(config)()
    for key, value in spec.config.items():
        default = getattr(defaults, key, None)
        is_number = isinstance(default, (int, float)) and not isinstance(default, bool)
        if is_number and value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"model.config.{key}", f"must be a number, as {type(config).__name__}'s default "
                              f"{default!r} is (got {value!r:.80})")


def _hf_family_config(spec: ModelSpec, experts_implementation: str):
    """Family hf: ``AutoConfig.for_model(model_type, **config)`` (no file, no hub, no remote
    code), checked to carry the dimensions the spec mirrors (:data:`harness.config.HF_KEYS`)."""
    import transformers
    from transformers import AutoConfig

    from harness.config import HF_KEYS

    causal, seq2seq = hf_model_types()
    if spec.model_type not in causal + seq2seq:
        raise ConfigError("model.model_type", f"{spec.model_type!r} is not a causal-LM or seq2seq model type of "
                          f"transformers {transformers.__version__}; allowed: {', '.join(causal + seq2seq)}")
    from huggingface_hub.errors import StrictDataclassError  # transformers' typed config fields

    try:
        config = AutoConfig.for_model(spec.model_type, **spec.config, attn_implementation=spec.attention,
                                      use_cache=False)
    except (TypeError, ValueError, KeyError, StrictDataclassError) as err:
        lines = str(err).splitlines() or [err.__class__.__name__]
        named = re.match(r"Validation error for field '(\w+)'", lines[0])  # a typed field: name it
        field, reason = (f"model.config.{named[1]}", lines[-1].strip()) if named else ("model.config", lines[0])
        raise ConfigError(field, f"transformers refused the {spec.model_type} config: {reason[:200]}") from None
    _check_value_types(spec, config)
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    auto = AutoModelForSeq2SeqLM if spec.model_type in seq2seq else AutoModelForCausalLM
    model_class = auto._model_mapping.get(type(config), None)
    if model_class is not None and model_class._can_set_experts_implementation():
        config._experts_implementation = experts_implementation
    if spec.model_type in seq2seq:  # labels are shifted right from a start token: 0 where none is set
        for key in ("decoder_start_token_id", "pad_token_id"):
            if getattr(config, key, None) is None:
                setattr(config, key, 0)
    for dim, key in HF_KEYS.items():
        if key not in spec.config or dim in ("dropout", "max_positions", "decoder_layers"):
            continue
        built = getattr(config, key, None)
        if built != spec.config[key]:
            raise ConfigError(f"model.config.{key}", f"the {spec.model_type} config does not take it "
                              f"(built {built!r} from {spec.config[key]!r})")
    return config


def hf_config(spec: ModelSpec, *, fake: bool = False):
    """The transformers config object for a spec (no I/O, no download). A mixture of experts runs
    its experts as batched matmuls on a fake replica (shape-only, counted without values) and as
    grouped matmuls on a real device (transformers' default, counted from the routed rows)."""
    _quiet_transformers()
    if spec.family == "hf":
        return _hf_family_config(spec, "batched_mm" if fake else "grouped_mm")
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


def _check_moe(model: nn.Module, spec: ModelSpec) -> None:
    """A mixture of experts routes at most as many experts per token as it has."""
    layout = expert_layout(model)
    if layout is not None and not 1 <= layout.experts_per_token <= layout.experts:
        raise ConfigError("model.config.num_experts_per_tok", f"{layout.experts_per_token} experts per token "
                          f"with {layout.experts} experts; allowed: 1..{layout.experts}")


def build_model(spec: ModelSpec, device: torch.device | str = "cpu", seed: int = 0, *,
                fake: bool = False, documents: tuple[int, ...] | None = None) -> nn.Module:
    """A model with random weights on `device` (``"meta"`` allocates nothing), in train mode.
    `fake`: built for a fake or meta replica (no values: experts as batched matmuls). `documents`:
    the document lengths of a packed row; attention then runs within each document
    (:func:`packed_attention`)."""
    fake = fake or torch.device(device).type == "meta"
    config = hf_config(spec, fake=fake)
    if documents is not None and len(documents) > 1:
        if is_seq2seq(spec):
            raise ConfigError("train.pack", "for causal LMs only, not the seq2seq model type "
                              f"{spec.model_type!r}")
        _check_packable(config, documents)
        config._attn_implementation = packed_attention(documents)
    torch.manual_seed(seed)
    with torch.device(device):
        if spec.family == "hf":
            from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

            auto = AutoModelForSeq2SeqLM if is_seq2seq(spec) else AutoModelForCausalLM
            model = auto.from_config(config)  # trust_remote_code stays False
        else:
            model = _model_class(spec.family)(config)
    _check_moe(model, spec)
    return model.train()


def _check_packable(config, documents: tuple[int, ...]) -> None:
    """Packed attention runs plain causal sdpa per document: refused where a layer needs more."""
    if getattr(config, "attn_logit_softcapping", None) is not None:
        raise ConfigError("train.pack", "not for a model with attention logit soft-capping (sdpa cannot apply it; "
                          "set model.config.attn_logit_softcapping: null to count without it)")
    window = getattr(config, "sliding_window", None)
    if window is not None and getattr(config, "use_sliding_window", True) is not False \
            and max(documents) > window:
        raise ConfigError("train.doc_len", f"{max(documents)} exceeds the model's sliding window {window}; "
                          f"allowed: 1..{window} (within a window, windowed and causal attention agree)")


def packed_attention(documents: tuple[int, ...]) -> str:
    """Register (once) and name a transformers attention function for rows packed with documents
    of these lengths: causal sdpa over each document on its own, so the ops that run, and the
    FLOPs counted, are the sum over documents (Σ len², no cross-document scores). No mask is
    built for an unregistered-mask implementation (transformers' masking_utils)."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    name = "harness_packed_" + "_".join(str(n) for n in documents)
    if name in AttentionInterface._global_mapping:
        return name
    bounds = [(sum(documents[:i]), sum(documents[:i + 1])) for i in range(len(documents))]

    def forward(module, query, key, value, attention_mask, **kwargs):
        kwargs.pop("is_causal", None)
        outs = [sdpa_attention_forward(module, query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], None,
                                       is_causal=True, **kwargs)[0] for a, b in bounds]
        return torch.cat(outs, dim=1), None  # (batch, seq, heads, head_dim)

    AttentionInterface.register(name, forward)
    return name


@dataclass(frozen=True)
class ExpertLayout:
    """The routed experts of a mixture of experts, found in the built model: `layers` MoE layers
    of `experts` experts, `experts_per_token` routed per token, `expert_params` the parameters of
    every routed expert of every layer (shared experts and routers are not routed: always active)."""

    layers: int
    experts: int
    experts_per_token: int
    expert_params: int
    modules: tuple[str, ...] = ()  # the expert modules' paths in the model (model.layers.0.mlp.experts)

    @property
    def inactive_params(self) -> int:
        """Routed-expert parameters a token does not use: (E - k) / E of them."""
        return self.expert_params * (self.experts - self.experts_per_token) // self.experts


_TOP_K_ATTRS = ("num_experts_per_tok", "moe_topk", "top_k")


def expert_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """transformers' fused expert modules (3-D weights, one slice per expert): name, module."""
    found = []
    for name, module in model.named_modules():
        weight = getattr(module, "down_proj", None)
        experts = getattr(module, "num_experts", None)
        if isinstance(weight, nn.Parameter) and weight.dim() == 3 and isinstance(experts, int) \
                and weight.shape[0] == experts:
            found.append((name, module))
    return found


def expert_layout(model: nn.Module) -> ExpertLayout | None:
    """The model's routed experts, or None for a dense model."""
    modules = expert_modules(model)
    if not modules:
        return None
    config = getattr(model, "config", None)
    top_k = next((getattr(config, a) for a in _TOP_K_ATTRS if isinstance(getattr(config, a, None), int)), None)
    experts = {m.num_experts for _, m in modules}
    if top_k is None or len(experts) != 1:
        raise ConfigError("model.config", "a mixture of experts whose experts per token the harness cannot read")
    params = sum(p.numel() for _, m in modules for p in m.parameters(recurse=False)
                 if p.dim() >= 1 and p.shape[0] == m.num_experts)
    return ExpertLayout(len(modules), experts.pop(), top_k, params, tuple(name for name, _ in modules))


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
    # Mixture of experts: the parameters one token uses (routed experts at k of E, everything
    # else in full); = total / non_embedding for a dense model. None where not counted.
    active: int | None = None
    active_non_embedding: int | None = None
    experts: ExpertLayout | None = None
    tied_head: bool | None = None             # the LM head is the token embedding (not in N)

    @property
    def n_active(self) -> int:
        """Non-embedding parameters one token uses: N of 6·N·D for a mixture of experts."""
        return self.non_embedding if self.active_non_embedding is None else self.active_non_embedding


def count_params(model: nn.Module) -> ParamCounts:
    """Count parameters once each (tied weights are shared tensors)."""
    embedding_ids = {id(p) for m in model.modules() if isinstance(m, nn.Embedding)
                     for p in m.parameters(recurse=False)}

    def non_embedding(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters() if id(p) not in embedding_ids)

    def non_matmul(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters() if id(p) not in embedding_ids and p.dim() < 2)

    total = sum(p.numel() for p in model.parameters())
    layout = expert_layout(model)
    inactive = layout.inactive_params if layout else 0
    head, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    moe = dict(active=total - inactive, active_non_embedding=non_embedding(model) - inactive, experts=layout,
               tied_head=head is not None and embedding is not None and head.weight is embedding.weight)
    encoder = getattr(model, "encoder", None)
    decoder = getattr(model, "decoder", None)
    if not isinstance(encoder, nn.Module) and getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        try:  # hf seq2seq models keep their stacks one level down (BART: model.model.encoder)
            encoder, decoder = model.get_encoder(), model.get_decoder()
        except (AttributeError, NotImplementedError, ValueError):
            encoder = decoder = None
    if isinstance(encoder, nn.Module) and isinstance(decoder, nn.Module) and encoder is not decoder:
        return ParamCounts(total, non_embedding(model), non_embedding(encoder), non_embedding(decoder),
                           non_matmul(model), non_matmul(encoder), non_matmul(decoder), **moe)
    return ParamCounts(total, non_embedding(model), non_matmul=non_matmul(model), **moe)


def make_batch(spec: RunSpec, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """One synthetic micro-batch for the family's objective, from the spec's fixed seed.

    bert: masked-LM (15% of positions masked, labels -100 elsewhere); gpt2, llama, hf causal LMs:
    causal LM (labels = inputs, shifted inside the model); t5 and hf seq2seq: encoder inputs and
    decoder labels. Packed rows (`train.pack`) add `position_ids` that restart at each document
    and mask (-100) each document's first label.
    On the meta device the tensors have the right shapes and no values.
    """
    model, train = spec.model, spec.train
    shape = (train.batch_size, train.seq_len)
    seq2seq = is_seq2seq(model)
    dec_len = train.decoder_seq_len or train.seq_len
    packed = len(train.documents) > 1
    if torch.device(device).type == "meta":
        batch = {"input_ids": torch.empty(shape, dtype=torch.long, device="meta")}
        dec = (train.batch_size, dec_len) if seq2seq else shape
        batch["labels"] = torch.empty(dec, dtype=torch.long, device="meta")
        if packed:
            batch["position_ids"] = torch.empty(shape, dtype=torch.long, device="meta")
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
    elif seq2seq:
        labels = torch.randint(low, model.vocab, (train.batch_size, dec_len), generator=gen)
    else:
        labels = input_ids.clone()
    batch = {"input_ids": input_ids.to(device), "labels": labels.to(device)}
    if packed:  # positions restart in each document; no token is a target across a document boundary
        batch["position_ids"] = torch.cat([torch.arange(n) for n in train.documents]).expand(shape).to(device)
        starts = torch.tensor([sum(train.documents[:i]) for i in range(1, len(train.documents))])
        batch["labels"][:, starts] = -100
    return batch
