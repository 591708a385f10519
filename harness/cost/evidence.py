"""Evidence: published training throughput, re-expressed in this project's FLOP convention.

The table (harness/data/published/throughput.csv, linked from configs/published/) holds
measurements transcribed from their sources: model shape, sequence length, per-device batch, GPU,
precision, devices, parallelism, the figure as the source prints it and the FLOP convention it
uses (see the table's README). Pure: no torch; the estimate's utilization ladder and
`harness calibrate --with-published` read it.

This project's convention (harness.flops.count, "model" kind): every matmul the model executes,
2·m·n·k each (FLOP = 2·MAC), forward + backward = 3× forward, attention's QKᵀ and PV at full
length (no causal halving), no recomputation. Per token, for the dense decoders and BERT here:

    ours = 6·N_matmul + 12·L·d_attn·T      (PaLM App. B with N = the matmul weights, LM head included)

N_matmul leaves out embeddings looked up (token, position), biases and norm weights, which do no
matmul; the LM head (tied or not) is in it. The sources' conventions:

* ``exact`` (nanoGPT's notebook): the same matmul count; ratio 1 (REFERENCE §3 anchor).
* ``torchtitan``: 6·(N − token embedding) + 12·L·H·Q·T; N − embedding = N_matmul + norm weights.
* ``llm-foundry``: 6·NumParams + 12·L·d·T; NumParams counts the tied embedding once (it is the
  head: in ours), and also the learned position embedding, biases and norms (not in ours).
* ``megatron`` (Narayanan et al. 2021, Eq. 3 and its Appendix): F = 96·B·s·l·h²·(1 + s/(6h) + V/(16·l·h))
  per iteration, matmuls only, with full activation recomputation: the layers' forward runs twice
  (4 passes: 2 forward, 2 backward), the logit layer's 6·B·s·h·V once. Per token that is
  8·N_layers + 16·l·s·h + 6·h·V (N_layers = 12·l·h² at ffn 4h) against ours 6·N_layers + 12·l·s·h +
  6·h·V: ours counts the layers' terms once, 3/4 of theirs, so the paper's "% of peak" is a
  hardware-FLOPs figure (with recomputation) and ours is lower (1.7B: ×0.762, 1T: ×0.750).
* ``stated``: an MFU whose formula the table does not transcribe: taken as model FLOPs, ratio 1,
  labelled.
* ``none stated`` (NVIDIA's BERT README): throughput only; MFU exists only in ours.
"""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from harness.data import data_path
from harness.errors import ConfigError

TABLE = data_path("published", "throughput.csv")
UNITS = ("tokens_per_s_per_device", "sequences_per_s", "s_per_step", "tflops_per_s_per_device", "mfu")
CONVENTIONS = ("exact", "torchtitan", "llm-foundry", "megatron", "stated", "none stated")
FAMILIES = ("gpt2", "mpt", "llama", "bert")
SEQ_WEIGHT = 0.25  # nearest row: |ln params| + SEQ_WEIGHT·|ln seq| (size matters more than length)
SPREAD_FACTOR = 2.0  # the error of a published utilization: spread of rows within this size factor
MIN_NEIGHBOURS = 3   # ... or of the nearest three, when fewer are that close in size


@dataclass(frozen=True)
class PublishedRow:
    """One published measurement, as its source prints it (see the table's README)."""

    id: str
    source: str
    model: str
    preset: str | None
    family: str
    params: float
    layers: int
    d_model: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    seq_len: int | None
    micro_batch: int | None
    grad_accum: int | None
    gpu: str
    dtype: str
    devices: int | None
    parallelism: str
    figure: float
    figure_high: float | None
    unit: str
    stated_mfu: float | None
    convention: str
    url: str
    date: str
    notes: str

    # ---- FLOPs per token in each convention ----

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    @property
    def matmul_params(self) -> int:
        """Weights that do a matmul per token: the layers' projections and the LM head (BERT: its
        MLM transform too); no embedding lookups, biases or norms."""
        d, f, L, V = self.d_model, self.ffn, self.layers, self.vocab
        if self.family == "llama":  # q, o: d²; k, v: d·kv·Q each; SwiGLU: 3·d·ffn; untied head
            return L * (2 * d * d + 2 * d * self.kv_heads * self.head_dim + 3 * d * f) + V * d
        layer = 4 * d * d + 2 * d * f
        if self.family == "bert":  # BertForMaskedLM: the transform (d²) and decoder (d·V) on every token
            return L * layer + d * d + d * V
        return L * layer + V * d  # gpt2, mpt: tied head

    def attention_flops_per_token(self, seq_len: int) -> int:
        """12·L·d_attn·T: QKᵀ and PV (4·T·d_attn per token forward) × 3 for training."""
        return 12 * self.layers * self.heads * self.head_dim * seq_len

    def project_flops_per_token(self, seq_len: int | None = None) -> float | None:
        """Model FLOPs per training token in this project's convention (module docstring)."""
        seq = seq_len or self.seq_len
        if seq is None:
            return None
        return 6 * self.matmul_params + self.attention_flops_per_token(seq)

    def source_flops_per_token(self) -> float | None:
        """FLOPs per token as the source counts them; None where it states no formula."""
        if self.seq_len is None:
            return None
        attn = self.attention_flops_per_token(self.seq_len)
        if self.convention == "exact":
            return self.project_flops_per_token()
        if self.convention == "torchtitan":
            norms = 2 * self.d_model * self.layers + self.d_model
            return 6 * (self.matmul_params + norms) + attn
        if self.convention == "llm-foundry":
            return 6 * self.params + attn
        if self.convention == "megatron":  # Eq. 3 / (B·s): the layers' matmuls 4 passes, the logit layer 3
            layers, head = self.matmul_params - self.vocab * self.d_model, self.vocab * self.d_model
            return 4 * 2 * layers + 4 * 4 * self.layers * self.heads * self.head_dim * self.seq_len + 6 * head
        return None

    @property
    def convention_ratio(self) -> float | None:
        """ours / the source's FLOPs per token: 1 for an MFU taken as it is stated."""
        if self.convention == "stated":
            return 1.0
        source = self.source_flops_per_token()
        ours = self.project_flops_per_token()
        return None if source is None or ours is None else ours / source

    # ---- the figure ----

    @property
    def tokens_per_s_per_device(self) -> float | None:
        """Training tokens per second per device, from the figure in its own unit."""
        if self.unit == "tokens_per_s_per_device":
            return self.figure
        if self.unit == "sequences_per_s":
            return self.figure * self.seq_len / (self.devices or 1)
        if self.unit == "s_per_step":
            return self.micro_batch * self.grad_accum * self.seq_len / self.figure
        if self.unit == "tflops_per_s_per_device":  # achieved FLOP/s in the source's convention
            per_token = self.source_flops_per_token()
            return None if per_token is None else self.figure * 1e12 / per_token
        return None

    def peak_flops_per_s(self) -> float | None:
        """The datasheet peak of the row's GPU and precision; None for fp8 (mixed with bf16: no peak
        defines MFU, as torchtitan says) or a GPU without a row."""
        from harness.hardware import MATH_MODES, datasheet_by_name

        if self.dtype == "fp8" or self.dtype not in MATH_MODES:  # the datasheet's fp8 column is no MFU peak here
            return None
        try:
            return datasheet_by_name(self.gpu, self.dtype)[1]
        except ConfigError:
            return None

    def source_mfu(self) -> float | None:
        """The row's MFU recomputed from its own numbers in its source's convention."""
        if self.unit == "mfu":
            return self.figure
        peak, per_token, rate = self.peak_flops_per_s(), self.source_flops_per_token(), self.tokens_per_s_per_device
        if peak is None or per_token is None or rate is None:
            return None
        return rate * per_token / peak

    def mfu(self) -> float | None:
        """MFU in this project's convention against the datasheet peak (low end of a stated range)."""
        if self.unit == "mfu":
            return self.figure * self.convention_ratio
        peak, per_token, rate = self.peak_flops_per_s(), self.project_flops_per_token(), self.tokens_per_s_per_device
        if peak is None or per_token is None or rate is None:
            return None
        return rate * per_token / peak

    def mfu_range(self) -> tuple[float, float] | None:
        low = self.mfu()
        if low is None:
            return None
        high = low if self.figure_high is None else self.figure_high * self.convention_ratio
        return low, high

    @property
    def tokens_per_device_step(self) -> float | None:
        if self.micro_batch is None or self.seq_len is None:
            return None
        return self.micro_batch * (self.grad_accum or 1) * self.seq_len

    @property
    def label(self) -> str:
        return f"{self.source}: {self.model}, seq {self.seq_len or '?'}, {self.devices or '?'}x {self.gpu} {self.dtype}"

    def conversion_text(self) -> str:
        ratio = self.convention_ratio
        how = {"exact": "same matmul count as ours",
               "torchtitan": "6(N - embedding) + 12LHQT: norms counted, otherwise ours",
               "llm-foundry": "6·NumParams + 12LdT: position embedding, biases, norms counted; not in ours",
               "megatron": "Eq. 3, 96Bslh²(1 + s/6h + V/16lh): full recomputation's extra forward counted; not in ours",
               "stated": "formula not transcribed: taken as model FLOPs",
               "none stated": "no FLOP count stated: ours only"}[self.convention]
        return how + ("" if ratio is None else f" (ours / theirs = {ratio:.4f})")


def _int(value: str) -> int | None:
    return int(value) if value.strip() else None


def _float(value: str) -> float | None:
    return float(value) if value.strip() else None


def parse_rows(lines: Sequence[dict[str, str]], where: str = "published table") -> tuple[PublishedRow, ...]:
    """Rows of the table, checked; ConfigError naming the row and column otherwise."""
    rows = []
    for i, raw in enumerate(lines):
        name = raw.get("id") or f"row {i + 1}"
        try:
            row = PublishedRow(
                id=raw["id"], source=raw["source"], model=raw["model"], preset=raw["preset"] or None,
                family=raw["family"], params=float(raw["params"]), layers=int(raw["layers"]),
                d_model=int(raw["d_model"]), heads=int(raw["heads"]), kv_heads=int(raw["kv_heads"]),
                ffn=int(raw["ffn"]), vocab=int(raw["vocab"]), seq_len=_int(raw["seq_len"]),
                micro_batch=_int(raw["micro_batch"]), grad_accum=_int(raw["grad_accum"]), gpu=raw["gpu"],
                dtype=raw["dtype"], devices=_int(raw["devices"]), parallelism=raw["parallelism"],
                figure=float(raw["figure"]), figure_high=_float(raw["figure_high"]), unit=raw["unit"],
                stated_mfu=_float(raw["stated_mfu"]), convention=raw["convention"], url=raw["url"],
                date=raw["date"], notes=raw["notes"])
        except (KeyError, ValueError) as err:
            raise ConfigError(f"{where}.{name}", f"unreadable row: {err}") from None
        for field, value, allowed in (("unit", row.unit, UNITS), ("convention", row.convention, CONVENTIONS),
                                      ("family", row.family, FAMILIES)):
            if value not in allowed:
                raise ConfigError(f"{where}.{name}.{field}", f"{value!r}; allowed: {', '.join(allowed)}")
        if not row.url.startswith("https://"):
            raise ConfigError(f"{where}.{name}.url", "must be an https URL")
        rows.append(row)
    return tuple(rows)


@functools.lru_cache(maxsize=4)
def load_published(path: Path = TABLE) -> tuple[PublishedRow, ...]:
    """The packaged table (or `path`), parsed once."""
    with open(path, newline="", encoding="utf-8") as handle:
        return parse_rows(list(csv.DictReader(handle)), str(path.name))


@dataclass(frozen=True)
class PublishedUtilization:
    """The published row a projection stands on, its MFU in our convention and ± the spread."""

    row: PublishedRow
    value: float
    error: float
    distance: float   # |ln params| + SEQ_WEIGHT·|ln seq| from the model estimated
    neighbours: tuple[str, ...]  # the rows whose spread is the error
    ties: tuple[str, ...] = ()   # rows as near as `row` (same model and length): the value is their mean

    @property
    def source(self) -> str:
        r = self.row
        where = (f"{r.params / 1e9:.3g}B params, seq {r.seq_len or '?'}, {r.devices or '?'} device(s), "
                 f"{r.parallelism}")
        ids = ", ".join(self.ties) if len(self.ties) > 1 else r.id
        mean = f"mean of {len(self.ties)} equally near rows, " if len(self.ties) > 1 else ""
        return (f"published: {r.source} ({ids}: {where}; {r.url}, {r.date}); MFU {self.value:.3f} ({mean}in this "
                f"project's convention: {r.conversion_text()}), ±{self.error:.3f} = half the spread of "
                f"{len(self.neighbours)} published row(s) near its size on {r.gpu} {r.dtype}")


def nearest_published(gpu: str, dtype: str, params: float, seq_len: int | None,
                      rows: Sequence[PublishedRow] | None = None) -> PublishedUtilization | None:
    """The published row nearest to a model of `params` at `seq_len` on datasheet GPU `gpu` in
    `dtype` (same GPU row and precision; nearest by size, then length), or None. Rows equally near
    (one model and length, several setups) are averaged; the error is half the spread of the rows
    within SPREAD_FACTOR of its size (at least the MIN_NEIGHBOURS nearest)."""
    rows = load_published() if rows is None else rows
    usable = [r for r in rows if r.gpu == gpu and r.dtype == dtype and r.mfu() is not None]
    if not usable:
        return None

    def distance(r: PublishedRow) -> float:
        d = abs(math.log(r.params / params))
        if seq_len and r.seq_len:
            d += SEQ_WEIGHT * abs(math.log(r.seq_len / seq_len))
        return d

    nearest = min(distance(r) for r in usable)
    best = sorted((r for r in usable if distance(r) <= nearest + 1e-9), key=lambda r: r.id)
    near = [r for r in usable if abs(math.log(r.params / best[0].params)) <= math.log(SPREAD_FACTOR)]
    if len(near) < MIN_NEIGHBOURS:  # too few of a similar size: the nearest few, whatever their size
        near = sorted(usable, key=lambda r: (distance(r), r.id))[:MIN_NEIGHBOURS]
    values = [v for r in near for v in r.mfu_range()]
    mids = [sum(r.mfu_range()) / 2 for r in best]
    ties = max(v for r in best for v in r.mfu_range()) - min(v for r in best for v in r.mfu_range())
    error = max((max(values) - min(values)) / 2, ties / 2)
    return PublishedUtilization(best[0], sum(mids) / len(mids), error, nearest, tuple(r.id for r in near),
                                tuple(r.id for r in best))
