"""Corpora and training plans: how many tokens a whole training job consumes, and at which lengths.

A corpus gives its size in tokens, or in bytes or words with a ratio to tokens, and says where
the ratio comes from. A plan is one or more phases; each phase gives steps × batch × sequence
length, or a number of tokens, or a number of epochs over the corpus. Building these is pure (no
I/O): `load_corpus` / `load_plan` read YAML from `harness/data/corpora/` and `harness/data/plans/` (or any
file) and validate it, raising ConfigError naming the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.config import MAX_POSITIONS, Count, Real, read_yaml
from harness.data import data_path
from harness.errors import ConfigError, shorten

CONFIGS_DIR = data_path()
CORPORA_DIR = CONFIGS_DIR / "corpora"
PLANS_DIR = CONFIGS_DIR / "plans"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Bounds of corpus and plan sizes (README, "Corpora and plans"): finite, positive and far above any
# published training job (GPT-3: 3e11 tokens; Llama 3: 1.5e13), so that nothing real is refused.
MAX_TOKENS = 1e16
MAX_BYTES = 1e18
MAX_RATIO = 1e3             # bytes per token, tokens per word
MAX_PLAN_STEPS = 10**9
MAX_PLAN_BATCH = 2**24      # sequences per optimizer step, all devices
MAX_EPOCHS = 1e6


class Corpus(_Frozen):
    """A training corpus. Exactly one of `tokens`, `bytes` (+ `bytes_per_token`) or `words`
    (+ `tokens_per_word`); `ratio_source` says where a ratio comes from."""

    name: str
    description: str = ""
    source: str = ""                  # where the size comes from
    tokens: Real(gt=0, le=MAX_TOKENS) | None = None
    bytes: Real(gt=0, le=MAX_BYTES) | None = None
    bytes_per_token: Real(gt=0, le=MAX_RATIO) | None = None
    words: Real(gt=0, le=MAX_TOKENS) | None = None
    tokens_per_word: Real(gt=0, le=MAX_RATIO) | None = None
    ratio_source: str | None = None
    plan: str | None = None           # the recipe usually trained on it (a plan name)

    @model_validator(mode="after")
    def _one_size(self) -> "Corpus":
        given = [k for k in ("tokens", "bytes", "words") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of tokens, bytes, words")
        ratio = {"bytes": "bytes_per_token", "words": "tokens_per_word"}.get(given[0])
        if ratio and getattr(self, ratio) is None:
            raise ValueError(f"{given[0]} needs {ratio}")
        if ratio and not self.ratio_source:
            raise ValueError(f"{ratio} needs ratio_source: say where the ratio comes from")
        return self

    @property
    def size_tokens(self) -> float:
        """Tokens in one epoch."""
        if self.tokens is not None:
            return self.tokens
        if self.bytes is not None:
            return self.bytes / self.bytes_per_token
        return self.words * self.tokens_per_word

    @property
    def size_provenance(self) -> str:
        """'stated' when the source gives tokens, else how they were derived."""
        if self.tokens is not None:
            return "stated"
        if self.bytes is not None:
            return f"bytes / {self.bytes_per_token} bytes per token ({self.ratio_source})"
        return f"words x {self.tokens_per_word} tokens per word ({self.ratio_source})"


class Phase(_Frozen):
    """One phase of a plan: `steps` x `batch_size` x `seq_len`, or `tokens`, or `epochs`.
    `seq_len` None = the measured run's length."""

    name: str = ""
    steps: Count(1, MAX_PLAN_STEPS) | None = None
    batch_size: Count(1, MAX_PLAN_BATCH) | None = None
    seq_len: Count(1, MAX_POSITIONS) | None = None
    decoder_seq_len: Count(1, MAX_POSITIONS) | None = None  # T5; default: the run's
    tokens: Real(gt=0, le=MAX_TOKENS) | None = None
    epochs: Real(gt=0, le=MAX_EPOCHS) | None = None

    @model_validator(mode="after")
    def _one_volume(self) -> "Phase":
        forms = [self.steps is not None, self.tokens is not None, self.epochs is not None]
        if sum(forms) != 1:
            raise ValueError("give exactly one of steps (with batch_size and seq_len), tokens, epochs")
        if self.steps is not None and (self.batch_size is None or self.seq_len is None):
            raise ValueError("steps needs batch_size and seq_len")
        if self.steps is None and self.batch_size is not None:
            raise ValueError("batch_size goes with steps")
        return self

    def tokens_total(self, corpus: Corpus | None) -> float:
        """Training tokens of this phase (epochs need a corpus)."""
        if self.steps is not None:
            return float(self.steps * self.batch_size * self.seq_len)
        if self.tokens is not None:
            return self.tokens
        if corpus is None:
            raise ConfigError("plan.phases.epochs", "epochs need a corpus (--corpus)")
        return self.epochs * corpus.size_tokens


class Plan(_Frozen):
    """A training recipe: phases run one after the other."""

    name: str
    description: str = ""
    source: str = ""
    corpus: str | None = None         # the corpus the recipe was written for
    phases: tuple[Phase, ...] = Field(min_length=1, max_length=1000)


def one_epoch() -> Plan:
    """The plan used when none is given: one pass over the corpus at the measured length."""
    return Plan(name="one-epoch", description="one epoch at the measured sequence length",
                source="default (no plan given)", phases=(Phase(name="epoch", epochs=1),))


def _error(err: ValidationError, prefix: str, model: type[BaseModel]) -> ConfigError:
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    field = ".".join([prefix, *loc]) if loc else prefix
    if first["type"] == "extra_forbidden":
        owner = Phase if "phases" in loc else model
        return ConfigError(field, f"unknown key; allowed: {', '.join(owner.model_fields)}")
    if first["type"] == "missing":
        return ConfigError(field, "required")
    message = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    return ConfigError(field, message if isinstance(got, dict) else f"{message} (got {shorten(got)})")


def build_corpus(raw: Any, *, name: str = "corpus") -> Corpus:
    """Validate a corpus mapping (pure)."""
    if not isinstance(raw, dict):
        raise ConfigError("corpus", "must be a mapping")
    try:
        return Corpus.model_validate({"name": name, **raw})
    except ValidationError as err:
        raise _error(err, "corpus", Corpus) from None


def build_plan(raw: Any, *, name: str = "plan") -> Plan:
    """Validate a plan mapping (pure)."""
    if not isinstance(raw, dict):
        raise ConfigError("plan", "must be a mapping")
    try:
        return Plan.model_validate({"name": name, **raw})
    except ValidationError as err:
        raise _error(err, "plan", Plan) from None


def _available(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _locate(name_or_path: str, folder: Path, kind: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise ConfigError(f"{kind}.file", f"file not found: {path}")
        return path
    candidate = folder / f"{name_or_path}.yaml"
    if not candidate.exists():
        raise ConfigError(f"{kind}.file", f"unknown {kind} {name_or_path!r}; allowed: "
                          f"{', '.join(_available(folder))} or a YAML file")
    return candidate


def load_corpus(name_or_path: str) -> Corpus:
    """A corpus by name (harness/data/corpora/NAME.yaml) or from a YAML file."""
    path = _locate(name_or_path, CORPORA_DIR, "corpus")
    return build_corpus(read_yaml(path, "corpus.file"), name=path.stem)


def load_plan(name_or_path: str) -> Plan:
    """A plan by name (harness/data/plans/NAME.yaml) or from a YAML file."""
    path = _locate(name_or_path, PLANS_DIR, "plan")
    return build_plan(read_yaml(path, "plan.file"), name=path.stem)


def corpora() -> list[str]:
    return _available(CORPORA_DIR)


def plans() -> list[str]:
    return _available(PLANS_DIR)
