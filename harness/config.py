"""Run configuration: YAML file + ``--set`` overrides → a validated, frozen :class:`RunSpec`.

Building a spec is pure: no torch import, no network, no writes. Every error names its field
(dotted path) and what is allowed, as a :class:`~harness.errors.ConfigError`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError

from harness import yamlfile
from harness.data import data_path
from harness.errors import ConfigError, shorten
from harness.hardware import Dtype, fp8_unsupported
from harness.presets import PRESETS

Family = Literal["bert", "gpt2", "t5", "llama", "hf"]
DeviceKind = Literal["auto", "cpu", "cuda"]
Attention = Literal["sdpa", "eager"]

DEFAULT_CONFIG = data_path("default.yaml")  # packaged: found from any working directory


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Bounded numbers, one type per kind of bound (the ranges are listed in README, "Config format").
# Integers are strict: true/false, 8.0 and "8" are refused, not read as 1 and 8. Reals are
# finite (no nan, inf) and never booleans; a string that YAML leaves unparsed (1e-4) still reads.
def _finite_number(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    try:
        number = float(value) if isinstance(value, (int, float, str)) else None
    except (ValueError, OverflowError):
        return value  # not a number: pydantic says so
    if number is not None and not math.isfinite(number):
        raise ValueError("must be a finite number (not nan or infinity)")
    return value


def Count(low: int, high: int) -> Any:  # noqa: N802 (a type)
    """An integer in low..high."""
    return Annotated[int, Strict(), Field(ge=low, le=high)]


def Real(*, gt: float | None = None, ge: float | None = None, le: float | None = None,
         lt: float | None = None) -> Any:  # noqa: N802 (a type)
    """A finite real in the given bounds."""
    return Annotated[float, BeforeValidator(_finite_number), Field(gt=gt, ge=ge, le=le, lt=lt, allow_inf_nan=False)]


MAX_LAYERS = 2**14          # GPT-3 has 96, Llama 3.1 405B 126
MAX_WIDTH = 2**20           # hidden, head_dim
MAX_HEADS = 2**16
MAX_FFN = 2**22
MAX_VOCAB = 2**24
MAX_POSITIONS = 2**22       # max_positions, seq_len, decoder_seq_len
MAX_BATCH = 2**20           # sequences per micro-batch
MAX_GRAD_ACCUM = 10**5
MAX_STEPS = 10**6
MAX_WARMUP_STEPS = 10**4
MAX_SEED = 2**63 - 1        # torch.manual_seed takes 64 bits
MAX_LR = 10.0
MAX_CPU_TDP_W = 10_000.0    # 10 kW: the CPUs one run can see
MAX_TIMEOUT_S = 86_400.0    # a day
MAX_MINUTES = 525_600.0     # a year
MAX_NAME_CHARS = 100        # a preset name


# The keys that fix a model's architecture: what a preset gives and what its label compares.
# `dropout` and `attention` are settings of a run, not dimensions: a preset's dropout fills them
# only when nothing else does, and they never change a label.
ARCHITECTURE = ("family", "layers", "decoder_layers", "hidden", "heads", "kv_heads", "head_dim",
                "ffn", "vocab", "max_positions")
# Family `hf`: the architecture is `model_type` + `config` (the transformers config's own keys).
HF_ARCHITECTURE = ("model_type", "config")

# Family `hf`: the transformers config keys that the spec's own dimensions mirror. A dimension set
# beside the config (`--set model.layers=2`) is written into the config under this key; the spec's
# dimensions are read back from it, so labels, formulas and depth slices work for any family.
HF_KEYS = {"layers": "num_hidden_layers", "hidden": "hidden_size", "heads": "num_attention_heads",
           "kv_heads": "num_key_value_heads", "head_dim": "head_dim", "ffn": "intermediate_size",
           "vocab": "vocab_size", "max_positions": "max_position_embeddings",
           "decoder_layers": "decoder_layers", "dropout": "attention_dropout"}
HF_REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
# Keys of a config that the harness sets itself (or that would reach outside the machine).
HF_REFUSED = {"attn_implementation": "model.attention", "_attn_implementation": "model.attention",
              "experts_implementation": "the harness (batched/grouped matmuls, both counted)",
              "dtype": "train.dtype", "torch_dtype": "train.dtype", "use_cache": "the harness (off)",
              "auto_map": "nothing: remote code is never run", "trust_remote_code": "nothing: never",
              "quantization_config": "nothing: weights are random", "_name_or_path": "nothing"}
# Mixture-of-experts keys: experts per token, and experts, as transformers' families name them.
MOE_TOP_K_KEYS = ("num_experts_per_tok", "moe_topk", "top_k")
MOE_EXPERTS_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")


class ModelSection(_Frozen):
    """The `model` section as written: every dimension optional, filled from `preset`."""

    preset: str | None = Field(None, max_length=MAX_NAME_CHARS)
    family: Family | None = None
    layers: Count(1, MAX_LAYERS) | None = None
    decoder_layers: Count(1, MAX_LAYERS) | None = None
    hidden: Count(1, MAX_WIDTH) | None = None
    heads: Count(1, MAX_HEADS) | None = None
    kv_heads: Count(1, MAX_HEADS) | None = None
    head_dim: Count(1, MAX_WIDTH) | None = None
    ffn: Count(1, MAX_FFN) | None = None
    vocab: Count(1, MAX_VOCAB) | None = None
    max_positions: Count(1, MAX_POSITIONS) | None = None
    dropout: Real(ge=0.0, lt=1.0) | None = None
    attention: Attention = "sdpa"
    model_type: str | None = Field(None, pattern=r"^[a-z0-9_]{1,64}$")
    config: dict[str, Any] | None = None


class ModelSpec(_Frozen):
    """A fully resolved architecture. `head_dim` = hidden / heads unless the preset says otherwise
    (T5 d_kv); `decoder_layers` is used by T5 only; `max_positions` None = no limit (T5)."""

    preset: str | None
    family: Family
    layers: int
    decoder_layers: int | None
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    max_positions: int | None
    dropout: float
    attention: Attention
    # family hf only: the transformers model type and the config's own keys (dimensions included)
    model_type: str | None = None
    config: dict[str, Any] | None = None

    def __hash__(self) -> int:  # `config` is a dict: hash the spec's JSON form (equal specs, equal hashes)
        return hash(json.dumps(self.model_dump(mode="json"), sort_keys=True))

    @property
    def label(self) -> str:
        """What this model is called: the preset (``bert-base``), the preset and the dimensions that
        differ from it (``bert-base (layers=2)``), or the family when there is no preset.

        Derived, not stored, so it cannot disagree with the dimensions and leaves the config hash
        and stored records as they were. Derived dimensions (head_dim = hidden / heads, kv_heads =
        heads, T5's decoder_layers = layers) are named only where they differ from that derivation."""
        if self.preset is None:
            return self.family if self.model_type is None else f"{self.family}:{self.model_type}"
        changed = [f"{key}={value}" for key, value in self._changed_dimensions()]
        return f"{self.preset} ({', '.join(changed)})" if changed else self.preset

    @property
    def slug(self) -> str:
        """The label as a safe file-name token (letters, digits, ``. _ + -``): ``bert-base+layers2``."""
        if self.preset is None:
            return self.family if self.model_type is None else f"{self.family}-{self.model_type}"
        changed = "".join(f"+{key}{value}" for key, value in self._changed_dimensions())
        return re.sub(r"[^A-Za-z0-9._+-]", "_", self.preset + changed)

    def _changed_dimensions(self) -> list[tuple[str, Any]]:
        published = PRESETS.get(self.preset)
        if published is None:  # a preset this version does not know (an old record): nothing to compare
            return []
        if self.family == "hf" or published.get("family") == "hf":
            if published.get("family") != self.family:
                return [("family", self.family)]
            reference = resolve_model(ModelSection(preset=self.preset))
            dims = [(key, getattr(self, key)) for key in ARCHITECTURE
                    if getattr(self, key) != getattr(reference, key)]
            mirrored = set(HF_KEYS.values())
            own, ref = self.config or {}, reference.config or {}
            extra = [(f"config.{key}", own.get(key)) for key in sorted(set(own) | set(ref))
                     if key not in mirrored and own.get(key) != ref.get(key)]
            if self.model_type != reference.model_type:
                extra.insert(0, ("model_type", self.model_type))
            return dims + extra
        derived = {"head_dim": self.hidden // self.heads, "kv_heads": self.heads,
                   "decoder_layers": self.layers if self.family == "t5" else None}
        return [(key, getattr(self, key)) for key in ARCHITECTURE
                if getattr(self, key) != published.get(key, derived.get(key))]

    @property
    def experts(self) -> tuple[int, int] | None:
        """(experts per token, experts) of a mixture of experts as its config gives them, else None."""
        config = self.config or {}
        top_k = next((config[k] for k in MOE_TOP_K_KEYS if isinstance(config.get(k), int)), None)
        experts = next((config[k] for k in MOE_EXPERTS_KEYS if isinstance(config.get(k), int)), None)
        return None if top_k is None or experts is None else (top_k, experts)


class TrainSpec(_Frozen):
    """One optimizer step = `grad_accum` micro-batches of `batch_size` sequences of `seq_len`
    tokens (T5: encoder length; `decoder_seq_len` defaults to `seq_len`)."""

    batch_size: Count(1, MAX_BATCH) = 8
    seq_len: Count(1, MAX_POSITIONS) = 128
    decoder_seq_len: Count(1, MAX_POSITIONS) | None = None
    dtype: Dtype = "fp32"
    grad_accum: Count(1, MAX_GRAD_ACCUM) = 1
    compile: bool = False
    checkpointing: bool = False
    lr: Real(gt=0.0, le=MAX_LR) = 1e-4
    seed: Count(0, MAX_SEED) = 0
    # Packed sequences: each row holds documents of `doc_len` tokens (the last one of a row takes
    # the remainder, seq_len mod doc_len); attention runs within each document only.
    pack: bool = False
    doc_len: Count(1, MAX_POSITIONS) | None = None

    @property
    def documents(self) -> tuple[int, ...]:
        """The document lengths of one row: (seq_len,) unless packed."""
        if not self.pack or self.doc_len is None:
            return (self.seq_len,)
        full, rest = divmod(self.seq_len, self.doc_len)
        return (self.doc_len,) * full + ((rest,) if rest else ())


class MeasureSpec(_Frozen):
    """Warm-up steps are timed but kept apart from the `steps` measured ones. Energy is sampled
    every `power_interval_s` over the measured steps; `cpu_tdp_w` is the TDP of the CPUs this
    run can see, when known (else a table or a labelled default is used). `max_minutes` is the
    wall time the user allows the steps: a run whose estimated steps take longer is refused
    before it starts (without it the allowance is a day; `harness run --yes` waives it)."""

    warmup_steps: Count(0, MAX_WARMUP_STEPS) = 2
    steps: Count(1, MAX_STEPS) = 10
    energy: bool = True
    power_interval_s: Real(gt=0.0, le=60.0) = 0.1
    cpu_tdp_w: Real(gt=0.0, le=MAX_CPU_TDP_W) | None = None
    max_minutes: Real(gt=0.0, le=MAX_MINUTES) | None = None


class DistributedSpec(_Frozen):
    """Multi-process runs (under torchrun or srun): how the model is spread over the ranks and
    how long any collective may wait before the run fails."""

    strategy: Literal["ddp", "fsdp"] = "ddp"
    timeout_s: Real(gt=0.0, le=MAX_TIMEOUT_S) = 300.0


class _RawConfig(_Frozen):
    model: ModelSection
    train: TrainSpec = TrainSpec()
    measure: MeasureSpec = MeasureSpec()
    distributed: DistributedSpec = DistributedSpec()
    device: DeviceKind = "auto"


class RunSpec(_Frozen):
    """What to run: resolved model, training step, measurement window and device request."""

    model: ModelSpec
    train: TrainSpec
    measure: MeasureSpec
    device: DeviceKind
    distributed: DistributedSpec = DistributedSpec()

    @property
    def tokens_per_step(self) -> int:
        """Tokens one optimizer step consumes (T5: encoder tokens, as T5's paper counts them)."""
        return self.train.batch_size * self.train.seq_len * self.train.grad_accum

    @property
    def samples_per_step(self) -> int:
        return self.train.batch_size * self.train.grad_accum

    def config_hash(self) -> str:
        """Stable 16-hex digest of the spec, for deduplicating identical runs. Fields added after
        records were first stored are left out while at their defaults, so that a spec that does
        not use them hashes as it always did (:data:`HASH_NEUTRAL_DEFAULTS`)."""
        data = self.model_dump(mode="json")
        for section, defaults in HASH_NEUTRAL_DEFAULTS.items():
            for key, default in defaults.items():
                if data[section].get(key, default) == default:
                    data[section].pop(key, None)
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# Fields added since the first stored records, with their defaults: a field at its default is left
# out of the config hash. Append only.
HASH_NEUTRAL_DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"model_type": None, "config": None},
    "train": {"pack": False, "doc_len": None},
    "measure": {"max_minutes": None},
}


_SECTIONS = {"model": ModelSection, "train": TrainSpec, "measure": MeasureSpec, "distributed": DistributedSpec}


def _format_validation_error(err: ValidationError) -> ConfigError:
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    field = ".".join(loc) or "config"
    if first["type"] == "extra_forbidden":
        if len(loc) == 1:
            allowed = ["model", "train", "measure", "distributed", "device"]
        else:
            allowed = list(_SECTIONS[loc[0]].model_fields)
        return ConfigError(field, f"unknown key; allowed: {', '.join(allowed)}")
    if first["type"] == "missing":
        return ConfigError(field, "required")
    message = first["msg"].removeprefix("Value error, ")
    return ConfigError(field, f"{message} (got {shorten(first.get('input'))})")


def resolve_model(section: ModelSection) -> ModelSpec:
    """Fill a model section from its preset, then check the dimensions fit together."""
    values: dict[str, Any] = {}
    if section.preset is not None:
        if section.preset not in PRESETS:
            raise ConfigError("model.preset",
                              f"unknown preset {section.preset!r}; allowed: {', '.join(PRESETS)}")
        values.update(PRESETS[section.preset])
    given = section.model_dump(exclude_unset=True, exclude_none=True, exclude={"config"})
    if values.get("family", given.get("family")) == "hf" and given.get("family", "hf") == "hf":
        return _resolve_hf(values, given, section)
    for key in HF_ARCHITECTURE:
        if key in given or section.config is not None:
            raise ConfigError(f"model.{key}", "only for family hf")
    values.update(given)
    values.setdefault("attention", section.attention)
    if "family" not in values:
        raise ConfigError("model.family", "required when no preset is given; "
                          "allowed: bert, gpt2, t5, llama, hf")
    for key in ("layers", "hidden", "heads", "ffn", "vocab"):
        if key not in values:
            raise ConfigError(f"model.{key}", "required when no preset is given")
    family, hidden, heads = values["family"], values["hidden"], values["heads"]
    if "head_dim" not in values:
        if hidden % heads:
            raise ConfigError("model.heads", f"{heads} heads do not divide hidden size {hidden}; "
                              "allowed: a divisor of model.hidden")
        values["head_dim"] = hidden // heads
    elif family != "t5" and values["head_dim"] * heads != hidden:
        raise ConfigError("model.head_dim", f"must equal hidden / heads for family {family}")
    kv_heads = values.get("kv_heads", heads)
    if family == "llama":
        if heads % kv_heads:
            raise ConfigError("model.kv_heads", f"{kv_heads} kv heads do not divide {heads} heads; "
                              "allowed: a divisor of model.heads")
    elif kv_heads != heads:
        raise ConfigError("model.kv_heads",
                          f"grouped-query attention is for family llama only; {family} needs "
                          f"kv_heads = heads ({heads})")
    values["kv_heads"] = kv_heads
    if family == "t5":
        values.setdefault("decoder_layers", values["layers"])
    elif "decoder_layers" in values:
        raise ConfigError("model.decoder_layers", "only for family t5")
    values.setdefault("decoder_layers", None)
    values.setdefault("max_positions", None if family == "t5" else 512)
    values.setdefault("dropout", 0.1)
    values.setdefault("preset", None)
    return ModelSpec(**values)


def _positive_int(config: dict[str, Any], key: str) -> int:
    value = config[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"model.config.{key}", f"must be a positive integer (got {value!r})")
    return value


_NUMERIC_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(inf|infinity|nan)", re.IGNORECASE)


def _check_config_values(value: Any, field: str) -> None:
    """A transformers config's own values as numbers the rest of the spec allows: finite reals,
    integers within 64 bits (no NaN, infinity or 10**30 reaches transformers)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_config_values(item, f"{field}.{key}")
    elif isinstance(value, list):
        for item in value:
            _check_config_values(item, field)
    elif isinstance(value, str) and _NUMERIC_TEXT.fullmatch(value.strip()):
        raise ConfigError(field, f"{shorten(value)} is a number written as text (YAML reads 1e5 and 1.0e5 so); "
                          "allowed: a number (1.0e+5 or 100000)")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(field, f"must be a finite number (got {value!r})")
    elif isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63:
        raise ConfigError(field, f"integer beyond 64 bits ({len(str(abs(value)))} digits)")


def _check_mirrored_bounds(dims: dict[str, Any]) -> None:
    """The dimensions read back from an hf config, in the ranges a `model` section allows
    (ModelSection's fields), named by their config key."""
    bounded = {k: v for k, v in dims.items() if v is not None and not (k == "ffn" and v == 0)}
    try:
        ModelSection.model_validate(bounded)
    except ValidationError as err:
        first = err.errors()[0]
        key = HF_KEYS.get(str(first["loc"][0]), str(first["loc"][0]))
        raise ConfigError(f"model.config.{key}", f"{first['msg']} (got {shorten(first.get('input'))})") from None


def _resolve_hf(preset: dict[str, Any], given: dict[str, Any], section: ModelSection) -> ModelSpec:
    """Family hf: `model_type` and the transformers config's own keys (`config`), merged over the
    preset's; dimensions set beside the config overwrite its keys (:data:`HF_KEYS`); the spec's
    dimensions are read back from the config. Whether transformers ships the model type is
    checked when the model is built (harness.build), which imports transformers."""
    model_type = given.get("model_type", preset.get("model_type"))
    if model_type is None:
        raise ConfigError("model.model_type", "required for family hf; allowed: a causal-LM or seq2seq "
                          "model type of the installed transformers (llama, qwen2, mistral, gemma2, mixtral, "
                          "qwen3_moe, ...)")
    config = {**(preset.get("config") or {}), **(section.config or {})}
    for key in config:
        if not isinstance(key, str):
            raise ConfigError("model.config", f"keys must be strings (got {key!r})")
        if key in HF_REFUSED:
            raise ConfigError(f"model.config.{key}", f"not allowed; set by {HF_REFUSED[key]}")
    for key in HF_REQUIRED:
        if key not in config and not any(HF_KEYS.get(d) == key for d in given):
            raise ConfigError(f"model.config.{key}", "required for family hf (the harness reads it for "
                              "labels, formulas and depth slices)")

    def derived(cfg: dict[str, Any]) -> dict[str, Any]:
        hidden, heads = _positive_int(cfg, "hidden_size"), _positive_int(cfg, "num_attention_heads")
        out = {"layers": _positive_int(cfg, "num_hidden_layers"), "hidden": hidden, "heads": heads,
               "vocab": _positive_int(cfg, "vocab_size"),
               "kv_heads": _positive_int(cfg, "num_key_value_heads") if cfg.get("num_key_value_heads")
               is not None else heads,
               "ffn": _positive_int(cfg, "intermediate_size") if cfg.get("intermediate_size") is not None else 0,
               "max_positions": _positive_int(cfg, "max_position_embeddings")
               if cfg.get("max_position_embeddings") is not None else None,
               "decoder_layers": next((_positive_int(cfg, k) for k in ("decoder_layers", "num_decoder_layers")
                                       if cfg.get(k) is not None), None),
               "dropout": float(cfg.get("attention_dropout") or 0.0)}
        if cfg.get("head_dim") is not None:
            out["head_dim"] = _positive_int(cfg, "head_dim")
        elif hidden % heads:
            raise ConfigError("model.config.num_attention_heads", f"{heads} heads do not divide hidden size "
                              f"{hidden}; allowed: a divisor of hidden_size, or give head_dim")
        else:
            out["head_dim"] = hidden // heads
        return out

    dims = {key: given[key] for key in HF_KEYS if key in given}
    if dims:  # write only what differs from what the config implies, so a dumped spec reads back equal
        base = derived(config) if all(k in config for k in HF_REQUIRED) else {}
        for key, value in dims.items():
            if base.get(key) != value:
                config[HF_KEYS[key]] = value
    _check_config_values(config, "model.config")
    spec_dims = derived(config)
    _check_mirrored_bounds(spec_dims)
    heads, kv_heads = spec_dims["heads"], spec_dims["kv_heads"]
    if heads % kv_heads:
        raise ConfigError("model.config.num_key_value_heads", f"{kv_heads} kv heads do not divide {heads} "
                          "heads; allowed: a divisor of num_attention_heads")
    experts = ModelSpec.model_construct(config=config).experts
    if experts is not None and not 1 <= experts[0] <= experts[1]:
        top_key = next(k for k in MOE_TOP_K_KEYS if isinstance(config.get(k), int))
        experts_key = next(k for k in MOE_EXPERTS_KEYS if isinstance(config.get(k), int))
        raise ConfigError(f"model.config.{top_key}", f"{experts[0]} experts per token with {experts[1]} "
                          f"experts (model.config.{experts_key}); allowed: 1..{experts[1]}")
    attention = given.get("attention", preset.get("attention", section.attention))
    return ModelSpec(preset=section.preset, family="hf", attention=attention,
                     model_type=model_type, config=config, **spec_dims)


def _check_packing(model: ModelSpec, train: TrainSpec) -> None:
    """Packed sequences: several documents per row, attention within each (pure checks; what
    needs the built config, a sliding window or logit soft-capping, is checked in harness.build)."""
    if not train.pack:
        if train.doc_len is not None:
            raise ConfigError("train.doc_len", "only with train.pack: true")
        return
    if train.doc_len is None:
        raise ConfigError("train.doc_len", "required with train.pack: true (tokens per document; "
                          "allowed: 1..train.seq_len)")
    if train.doc_len > train.seq_len:
        raise ConfigError("train.doc_len", f"{train.doc_len} exceeds train.seq_len {train.seq_len}; "
                          f"allowed: 1..{train.seq_len}")
    if model.family not in ("gpt2", "llama", "hf") or model.decoder_layers is not None:
        raise ConfigError("train.pack", f"for causal LMs only (families gpt2, llama, hf), not {model.family}")
    if model.attention != "sdpa":
        raise ConfigError("train.pack", "needs model.attention=sdpa: packed attention runs sdpa per document")


def _check_lengths(model: ModelSpec, train: TrainSpec) -> TrainSpec:
    _check_packing(model, train)
    if model.family not in ("t5", "hf") and train.decoder_seq_len is not None:
        raise ConfigError("train.decoder_seq_len", "only for family t5 (or an hf seq2seq model)")
    if model.family == "t5" and train.decoder_seq_len is None:
        train = TrainSpec.model_validate({**train.model_dump(), "decoder_seq_len": train.seq_len})
    limit = model.max_positions
    if limit is not None and train.seq_len > limit:
        raise ConfigError("train.seq_len", f"{train.seq_len} exceeds model.max_positions "
                          f"{limit}; allowed: 1..{limit}")
    return train


def build_spec(raw: dict[str, Any]) -> RunSpec:
    """Validate a raw config mapping (as read from YAML) into a RunSpec."""
    if not isinstance(raw, dict):
        raise ConfigError("config", "top level must be a mapping with sections "
                          "model, train, measure, device")
    try:
        parsed = _RawConfig.model_validate(raw)
    except ValidationError as err:
        raise _format_validation_error(err) from None
    if parsed.train.dtype == "fp8" and parsed.device == "cpu":  # before anything is built
        raise ConfigError("train.dtype", f"{fp8_unsupported('cpu')}; allowed on cpu: fp32, bf16")
    model = resolve_model(parsed.model)
    train = _check_lengths(model, parsed.train)
    return RunSpec(model=model, train=train, measure=parsed.measure, device=parsed.device,
                   distributed=parsed.distributed)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"model.layers=2"`` → (["model", "layers"], 2); the value is read as YAML with the limits
    of :mod:`harness.yamlfile`."""
    key, sep, value = text.partition("=")
    path = [p for p in key.strip().split(".") if p]
    if not sep or not path:
        raise ConfigError("overrides", f"expected key=value with a dotted key, got {shorten(text)}")
    if len(path) > 8 or any(len(p) > 64 for p in path):
        raise ConfigError("overrides", f"key {shorten(key)} is not a config key (at most 8 parts of 64 characters)")
    key = ".".join(path)
    try:
        return path, yamlfile.load_value(value) if value.strip() else None
    except yamlfile.YamlLimitError as err:
        raise ConfigError(key, f"value refused: {err}") from None
    except yaml.YAMLError:
        raise ConfigError(key, f"cannot read value {shorten(value)}") from None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `raw` with each dotted ``key=value`` set.

    Setting ``model.preset`` (to a name) also drops the architecture keys (:data:`ARCHITECTURE`)
    that `raw` gives: they were written for raw's own model or preset, not for the new one. Keys
    set by the same overrides, before or after the preset, still override it; `dropout` and
    `attention` are kept."""
    merged = json.loads(json.dumps(raw))  # deep copy of plain YAML data
    parsed = [parse_override(text) for text in overrides]
    if any(path == ["model", "preset"] and value is not None for path, value in parsed):
        model = merged.get("model")
        if isinstance(model, dict):
            merged["model"] = {k: v for k, v in model.items() if k not in ARCHITECTURE + HF_ARCHITECTURE}
    for path, value in parsed:
        node = merged
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(".".join(path[: i + 1]), "is a value, not a section")
            node = child
        node[path[-1]] = value
    return merged


def read_yaml(path: Path, field: str = "config") -> Any:
    """Read a YAML file (a config, plan, corpus or sweep) with the limits of
    :mod:`harness.yamlfile`; missing, unreadable, refused or malformed files raise ConfigError
    naming `field`."""
    try:
        data = yamlfile.read_file(Path(path))
    except FileNotFoundError:
        raise ConfigError(field, f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(field, f"cannot read {path}: {err.__class__.__name__}") from None
    except yamlfile.YamlLimitError as err:
        raise ConfigError(field, f"{path} refused: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(field, f"malformed YAML in {path}{where}") from None
    return {} if data is None else data


def load_spec(path: Path | None, overrides: list[str] | None = None) -> RunSpec:
    """Read CONFIG (or the packaged default.yaml), apply ``--set`` overrides, validate.

    A CONFIG that names no file but a preset (e.g. ``gpt2``) is read as ``model.preset``.
    A preset gives its dimensions except those set beside it in the same place: a file's
    ``preset: X`` with ``layers: 2`` is X with 2 layers; ``--set model.preset=X`` replaces the
    file's dimensions, and other ``--set`` keys of the same command override X (see
    :func:`apply_overrides`).
    """
    if path is not None and not Path(path).exists() and str(path) in PRESETS:
        raw: dict[str, Any] = {"model": {"preset": str(path)}}
    else:
        raw = read_yaml(path if path is not None else DEFAULT_CONFIG)
    if not isinstance(raw, dict):
        raise ConfigError("config", "top level must be a mapping with sections "
                          "model, train, measure, device")
    return build_spec(apply_overrides(raw, overrides or []))


def with_changes(spec: RunSpec, changes: dict[str, Any]) -> RunSpec:
    """`spec` with dotted fields changed (``{"train.grad_accum": 1}``), validated again like a
    config: the one way to derive a spec from another (``model_copy(update=...)`` skips
    validation and would accept ``seq_len=99999``)."""
    raw = spec.model_dump(mode="json")
    for dotted, value in changes.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        if leaf not in node:
            raise ConfigError(dotted, "unknown field")
        node[leaf] = value
    return build_spec(raw)
