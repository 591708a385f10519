"""Calibrate: a utilization model per device and dtype, fitted to the stored runs.

MFU = a + b·ln(hidden) + c·ln(tokens per device step) + d·ln(seq_len), with b, c >= 0 so that
utilization never falls as the model widens or the step grows (monotone), d free (longer
sequences spend more time in attention).

Only what the runs determine is fitted. A feature that does not vary across the runs (one width,
one length) is dropped; so is one that is an exact affine function of the features kept before
it (one batch: ln tokens = ln batch + ln seq_len, so seq_len goes with tokens), in the order
hidden, tokens per step, seq_len, which also drops seq_len and then tokens when there are too few
runs. A dropped feature's coefficient is exactly 0 and `features_dropped` says why. The rest are
fitted by least squares over every feasible active set of the constraints.

The fit's error is its leave-one-out RMSE in MFU (fraction of peak) at the features it used
(each run predicted by the same fit of the others); with fewer than 3 runs it is unknown (None).
`CalibrationFit.predict_sourced` says when a size lies outside what was measured and widens the
error with the distance.

MFU is against the datasheet peak where the device has one (GPUs), else against the measured
matmul peak (CPUs); `mfu_basis` says which.

`calibrate(..., published=True)` (`harness calibrate --with-published`) adds the published
measurements of harness.cost.evidence on each datasheet GPU as points beside the local runs,
their MFU re-expressed in this project's FLOP convention, each marked "published:<id>".
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from harness.errors import ConfigError
from harness.results.record import RunRecord

CALIBRATION_FILE = "calibration.json"
FEATURES = ("ln_hidden", "ln_tokens_per_step", "ln_seq_len")  # in the order they are kept
MONOTONE = ("ln_hidden", "ln_tokens_per_step")  # coefficients constrained >= 0
RANGE_KEYS = {"ln_hidden": "hidden", "ln_tokens_per_step": "tokens_per_step", "ln_seq_len": "seq_len"}
MIN_RUNS = 2
MIN_RUNS_FOR_ERROR = 3  # leave-one-out: each run predicted by a fit of at least two others
LN_TOLERANCE = 1e-9     # natural-log units: a smaller spread or residual in the runs is exactly none
SIZE_TOLERANCE = 1e-6   # natural-log units: a size this close to a measured range or relation is on it


class Prediction(NamedTuple):
    """A fit's MFU at one size, with its error and what it extrapolates."""

    value: float           # MFU, fraction of peak (clamped to [1e-4, 1])
    error: float | None    # ± in MFU, widened outside the measured sizes; None: unknown (< 3 runs)
    note: str | None       # each feature outside what was measured, and how far; None inside


@dataclass(frozen=True)
class CalibrationFit:
    """One device model and dtype's utilization fit."""

    device: str
    gpu: str | None              # the datasheet row, where the device has one
    dtype: str
    mfu_basis: str               # datasheet | measured peak
    n: int
    coef: dict[str, float]       # intercept and one per feature: exactly 0 for a feature not used
    features_used: list[str]     # those with a fitted coefficient, in FEATURES order
    features_dropped: dict[str, str]  # every other feature, and why
    relations: dict[str, dict[str, float]]  # dropped as collinear: ln x = intercept + sum(k * ln y), in every run
    rmse: float                  # in-sample, MFU
    loo_rmse: float | None       # leave-one-out at features_used, MFU; None with fewer than 3 runs
    ranges: dict[str, list[float]]  # hidden, tokens_per_step, seq_len seen: outside them is extrapolation
    runs: list[str]
    published: list[str] = field(default_factory=list)  # the points from the evidence table ("published:<id>")

    @property
    def error(self) -> float | None:
        """± in MFU inside the measured sizes: the leave-one-out RMSE; None when unknown."""
        return self.loo_rmse

    def predict(self, hidden: int, tokens_per_step: float, seq_len: int) -> float:
        """MFU at this size (fraction of peak, clamped to [1e-4, 1]); see `predict_sourced`."""
        x = _features(hidden, tokens_per_step, seq_len)
        value = self.coef["intercept"] + sum(self.coef.get(k, 0.0) * x[k] for k in FEATURES)
        return min(1.0, max(1e-4, value))

    def extrapolation(self, hidden: int, tokens_per_step: float, seq_len: int) -> tuple[float, list[str]]:
        """How far this size lies from what was measured (D, natural-log units), and each reason.

        D = the sum, over every feature but those dropped because they moved with others, of its
        distance outside the measured [min, max] (0 inside), plus, for each feature so dropped,
        the size's distance from the relation every run obeyed (one batch: ln of the new batch
        over the measured one). A feature so dropped is still named when outside its range, but
        not counted again: the features it moves with and the relation already place it."""
        x = _features(hidden, tokens_per_step, seq_len)
        given = {"hidden": hidden, "tokens_per_step": tokens_per_step, "seq_len": seq_len}
        distance, reasons = 0.0, []
        for name in FEATURES:
            key = RANGE_KEYS[name]
            lo, hi = self.ranges[key]
            d = max(0.0, math.log(lo) - x[name], x[name] - math.log(hi))
            if d > SIZE_TOLERANCE:
                distance += 0.0 if name in self.relations else d
                measured = f"{lo:g}" if lo == hi else f"{lo:g}–{hi:g}"
                reasons.append(f"{key} {given[key]:g} outside the measured {measured} ({d:.2f} in ln)")
        for name, rel in self.relations.items():
            d = abs(x[name] - rel["intercept"] - sum(c * x[k] for k, c in rel.items() if k != "intercept"))
            if d <= SIZE_TOLERANCE:
                continue
            distance += d
            if _one_batch(name, rel):
                reasons.append(f"batch {tokens_per_step / seq_len:g} (tokens_per_step / seq_len) against the "
                               f"measured {math.exp(-rel['intercept']):g} ({d:.2f} in ln)")
            else:
                reasons.append(f"{RANGE_KEYS[name]} {given[RANGE_KEYS[name]]:g} with these sizes is {d:.2f} in ln "
                               f"off {_relation_text(name, rel)}, which every run obeyed")
        return distance, reasons

    def predict_sourced(self, hidden: int, tokens_per_step: float, seq_len: int) -> Prediction:
        """MFU at this size with its error and a note on what it extrapolates.

        error = self.error × (1 + D), D being `extrapolation()`'s distance in natural-log units:
        how far the size lies outside the measured ranges (hidden 4096 against 256–1024 adds
        ln 4 = 1.39: the error is 2.39 times the fit's) and off any exact relation the runs obeyed.
        Inside every range and relation D = 0 and the note is None. An unknown error (fewer than 3
        runs) stays None."""
        distance, reasons = self.extrapolation(hidden, tokens_per_step, seq_len)
        error = None if self.error is None else self.error * (1.0 + distance)
        note = None
        if reasons:
            widened = f"error × {1 + distance:.2f}" if error is not None else "error unknown: fewer than 3 runs"
            note = f"extrapolated beyond the {self.n} calibration runs: " + "; ".join(reasons) + f" ({widened})"
        return Prediction(self.predict(hidden, tokens_per_step, seq_len), error, note)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _features(hidden: int, tokens_per_step: float, seq_len: int) -> dict[str, float]:
    return {"ln_hidden": math.log(hidden), "ln_tokens_per_step": math.log(tokens_per_step),
            "ln_seq_len": math.log(seq_len)}


def _one_batch(name: str, rel: dict[str, float]) -> bool:
    """Whether `rel` says ln seq_len = ln tokens_per_step - ln batch: every run had one batch."""
    return name == "ln_seq_len" and rel.keys() == {"intercept", "ln_tokens_per_step"} \
        and abs(rel["ln_tokens_per_step"] - 1.0) <= LN_TOLERANCE


def _relation_text(name: str, rel: dict[str, float]) -> str:
    terms = " ".join(f"{'+' if c >= 0 else '-'} {abs(c):.3g}·ln {RANGE_KEYS[k]}" for k, c in rel.items()
                     if k != "intercept")
    return f"ln {RANGE_KEYS[name]} = {rel['intercept']:.3f} {terms}"


def select_features(x: np.ndarray, candidates: Sequence[str] = FEATURES
                    ) -> tuple[list[str], dict[str, str], dict[str, dict[str, float]]]:
    """The features of `candidates` (columns of `x`, in FEATURES order) the runs determine.
    Returns those kept, each dropped one with its reason, and for each dropped as collinear the
    exact relation to the kept ones. A feature is dropped when its ln does not vary, or when it
    is an affine function of the intercept and the features kept before it."""
    n = len(x)
    kept: list[str] = []
    dropped: dict[str, str] = {}
    relations: dict[str, dict[str, float]] = {}
    for name in candidates:
        col = x[:, FEATURES.index(name)]
        if np.ptp(col) <= LN_TOLERANCE:
            dropped[name] = f"does not vary: every run has {RANGE_KEYS[name]} {math.exp(col[0]):.6g}"
            continue
        a = np.column_stack([np.ones(n)] + [x[:, FEATURES.index(k)] for k in kept])
        beta, *_ = np.linalg.lstsq(a, col, rcond=None)
        if np.max(np.abs(a @ beta - col)) > LN_TOLERANCE:
            kept.append(name)
            continue
        rel = {"intercept": float(beta[0]), **{k: float(b) for k, b in zip(kept, beta[1:]) if abs(b) > LN_TOLERANCE}}
        relations[name] = rel
        if _one_batch(name, rel):
            dropped[name] = (f"one batch: every run has tokens_per_step / seq_len = {math.exp(-rel['intercept']):.6g}, "
                             "so seq_len moves with tokens_per_step")
        else:
            why = "too few runs to separate it from" if len(kept) + 1 >= n else "moves with"
            others = ", ".join(RANGE_KEYS[k] for k in rel if k != "intercept") or "the intercept"
            dropped[name] = f"{why} {others}: {_relation_text(name, rel)} in every run"
    return kept, dropped, relations


def _solve(x: np.ndarray, y: np.ndarray, used: Sequence[str]) -> tuple[dict[str, float], float]:
    columns = [np.ones(len(y))] + [x[:, FEATURES.index(k)] for k in used]
    a = np.column_stack(columns)
    beta, *_ = np.linalg.lstsq(a, y, rcond=None)
    coef = {"intercept": float(beta[0]), **{k: 0.0 for k in FEATURES}}
    coef.update({k: float(b) for k, b in zip(used, beta[1:])})
    sse = float(np.sum((a @ beta - y) ** 2))
    return coef, sse


def fit_mfu(x: np.ndarray, y: np.ndarray, candidates: Sequence[str]) -> tuple[dict[str, float], list[str]]:
    """Constrained least squares on `candidates` (features `select_features` kept): the best fit
    over subsets of them whose monotone coefficients come out >= 0. Returns the coefficients (0
    for every feature outside the subset) and the subset used."""
    best: tuple[float, dict[str, float], list[str]] | None = None
    for r in range(len(candidates), -1, -1):
        for used in itertools.combinations(candidates, r):
            coef, sse = _solve(x, y, used)
            if any(coef[k] < 0 for k in MONOTONE):
                continue
            if best is None or sse < best[0] - 1e-15:
                best = (sse, coef, list(used))
    assert best is not None  # the intercept-only fit is always feasible
    return best[1], best[2]


def leave_one_out_rmse(x: np.ndarray, y: np.ndarray, features: Sequence[str]) -> float | None:
    """RMSE in MFU of each run predicted by the fit of the others, at `features` (less any that
    the others alone do not determine); None with fewer than MIN_RUNS_FOR_ERROR runs."""
    if len(y) < MIN_RUNS_FOR_ERROR:
        return None
    errors = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        candidates, _, _ = select_features(x[keep], features)
        coef, _ = fit_mfu(x[keep], y[keep], candidates)
        errors.append(_predict(coef, x[i]) - y[i])
    return float(np.sqrt(np.mean(np.square(errors))))


def _mfu(record: RunRecord) -> tuple[float, str]:
    """MFU against the datasheet peak where there is one, else against the measured peak."""
    if record.mfu_datasheet is not None:
        return record.mfu_datasheet, "datasheet"
    return record.mfu_measured, "measured peak"


def fit_group(x: np.ndarray, y: np.ndarray) -> tuple[dict[str, float], list[str], dict[str, str],
                                                     dict[str, dict[str, float]], float, float | None]:
    """One group's fit: coefficients, features used, those dropped (with reasons), the relations
    of those dropped as collinear, in-sample RMSE and leave-one-out RMSE at the features used."""
    candidates, dropped, relations = select_features(x)
    coef, used = fit_mfu(x, y, candidates)
    for name in candidates:
        if name not in used:
            dropped[name] = "left out by the constraint b, c >= 0 (every fit with it had a negative " \
                            "width or tokens coefficient)"
    pred = np.array([_predict(coef, xi) for xi in x])
    rmse = float(np.sqrt(np.mean((pred - y) ** 2)))
    return coef, used, {k: dropped[k] for k in FEATURES if k in dropped}, relations, rmse, \
        leave_one_out_rmse(x, y, used)


@dataclass(frozen=True)
class _Point:
    """One calibration point: a stored run, or a published measurement (harness.cost.evidence)."""

    id: str
    hidden: int
    tokens_per_step: float
    seq_len: int
    mfu: float
    published: bool


def published_points(rows: Sequence | None = None) -> dict[tuple[str, str], list[_Point]]:
    """Published rows usable as calibration points, by (datasheet GPU, dtype): those with a length,
    a per-device batch and an MFU in this project's convention (against the datasheet peak)."""
    from harness.cost.evidence import load_published

    out: dict[tuple[str, str], list[_Point]] = {}
    for r in load_published() if rows is None else rows:
        mfu = r.mfu()
        if mfu is None or r.tokens_per_device_step is None or r.seq_len is None:
            continue
        out.setdefault((r.gpu, r.dtype), []).append(
            _Point(f"published:{r.id}", r.d_model, r.tokens_per_device_step, r.seq_len, mfu, True))
    return out


def calibrate(records: Sequence[RunRecord], *, device: str | None = None,
              published: bool | Sequence = False) -> list[CalibrationFit]:
    """Fit every (device, dtype) group of `records` with at least MIN_RUNS points; `device`
    keeps only devices whose name or datasheet row contains it (case-insensitive). `published`
    (True: the packaged evidence table; or a sequence of its rows) adds the published
    measurements on each datasheet GPU as points beside the local runs, each marked
    ("published:<id>" in `runs`, listed in `published`); MFU in this project's convention."""
    from harness.hardware import datasheet_row

    groups: dict[tuple[str, str, str], list[_Point]] = {}
    gpus: dict[str, str | None] = {}
    for r in records:
        if r.depth_extrapolation:  # predicted runs do not calibrate
            continue
        name = r.device.name or r.device.type
        row = datasheet_row(name) if r.device.type == "cuda" else None
        gpus[name] = row.gpu if row else None
        mfu, basis = _mfu(r)
        groups.setdefault((name, r.dtype, basis), []).append(
            _Point(r.run_id, r.model.hidden, r.tokens_per_device_step, r.seq_len, mfu, False))
    if published is not False:
        extra = published_points(None if published is True else published)
        for (gpu, dtype), points in extra.items():
            local = [k for k in groups if gpus.get(k[0]) == gpu and k[1] == dtype and k[2] == "datasheet"]
            key = local[0] if local else (gpu, dtype, "datasheet")
            gpus.setdefault(key[0], gpu)
            groups.setdefault(key, []).extend(points)
    fits = []
    for (name, dtype, basis), points in sorted(groups.items()):
        gpu = gpus.get(name)
        if device is not None and device.lower() not in f"{name} {gpu or ''}".lower():
            continue
        if len(points) < MIN_RUNS:
            continue
        x = np.array([list(_features(p.hidden, p.tokens_per_step, p.seq_len).values()) for p in points])
        y = np.array([p.mfu for p in points])
        coef, used, dropped, relations, rmse, loo = fit_group(x, y)
        tokens = [p.tokens_per_step for p in points]
        ranges = {"hidden": [min(p.hidden for p in points), max(p.hidden for p in points)],
                  "tokens_per_step": [min(tokens), max(tokens)],
                  "seq_len": [min(p.seq_len for p in points), max(p.seq_len for p in points)]}
        fits.append(CalibrationFit(device=name, gpu=gpu, dtype=dtype, mfu_basis=basis,
                                   n=len(points), coef=coef, features_used=used, features_dropped=dropped,
                                   relations=relations, rmse=rmse, loo_rmse=loo, ranges=ranges,
                                   runs=[p.id for p in points], published=[p.id for p in points if p.published]))
    return fits


def _predict(coef: dict[str, float], x: np.ndarray) -> float:
    return coef["intercept"] + sum(coef[k] * x[i] for i, k in enumerate(FEATURES))


MODEL_TEXT = ("MFU = a + b ln(hidden) + c ln(tokens per device step) + d ln(seq_len); b, c >= 0; features that "
              "do not vary, or move with one kept before them, are dropped (coefficient 0); error = leave-one-out "
              "RMSE at features_used (null: fewer than 3 runs)")


def write_calibration(fits: Sequence[CalibrationFit], results_dir: Path) -> Path:
    from harness.files import write_json_atomic

    path = results_dir / CALIBRATION_FILE
    write_json_atomic(path, {"created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                             "model": MODEL_TEXT, "fits": [f.to_dict() for f in fits]})
    return path


def read_calibration(results_dir: Path) -> list[CalibrationFit]:
    """The calibration table under `results_dir`, or [] when there is none. A table written
    before fits recorded their features (no `features_used`) is refused: its coefficients may
    weigh a feature the runs never varied."""
    import json

    path = results_dir / CALIBRATION_FILE
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        raw = data["fits"]
        if any("features_used" not in f for f in raw):
            raise ConfigError("calibration", f"{path} was written by an older harness (its fits do not record "
                              "which features they used, and may weigh one the runs never varied); run "
                              "`harness calibrate` again")
        return [_valid_fit(f) for f in raw]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
        why = f" ({err})" if isinstance(err, _BadFit) else ""
        raise ConfigError("calibration", f"{path} is not a calibration table{why}; run `harness calibrate` "
                          "again") from None


class _BadFit(ValueError):
    """A fit of a calibration file whose fields are not what `write_calibration` writes."""


def _valid_fit(raw: dict) -> CalibrationFit:
    """A fit as read from a calibration file, checked field by field: types (pydantic), every
    coefficient, error and range finite, the coefficients those of FEATURES, the ranges ordered."""
    import math

    from pydantic import TypeAdapter, ValidationError

    try:
        if isinstance(raw, dict) and isinstance(raw.get("n"), bool):  # lax validation would read true as 1
            raise _BadFit("n: an integer, not true/false")
        fit = TypeAdapter(CalibrationFit).validate_python(raw)
    except ValidationError as err:
        first = err.errors()[0]
        raise _BadFit(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    numbers = [*fit.coef.values(), fit.rmse, *([fit.loo_rmse] if fit.loo_rmse is not None else [])]
    numbers += [x for pair in fit.ranges.values() for x in pair]
    if not all(math.isfinite(x) for x in numbers):
        raise _BadFit("a coefficient, error or range is not finite")
    if set(fit.coef) != {"intercept", *FEATURES} or not set(fit.features_used) <= set(FEATURES):
        raise _BadFit(f"coefficients must be intercept, {', '.join(FEATURES)}")
    if set(fit.ranges) != {"hidden", "tokens_per_step", "seq_len"} or any(
            len(pair) != 2 or not 0 < pair[0] <= pair[1] for pair in fit.ranges.values()):
        raise _BadFit("ranges must give hidden, tokens_per_step and seq_len as [low, high] > 0")
    if fit.n < 1:
        raise _BadFit("n must be at least 1")
    return fit


def find_fit(fits: Sequence[CalibrationFit], gpu: str, dtype: str) -> CalibrationFit | None:
    """The fit for datasheet row `gpu` (or device name) and `dtype`, the one with most runs."""
    matches = [f for f in fits if f.dtype == dtype and gpu in (f.gpu, f.device)]
    return max(matches, key=lambda f: f.n) if matches else None
