"""Calibrate: a utilization model per device and dtype, fitted to the stored runs.

MFU = a + b·ln(hidden) + c·ln(tokens per device step) + d·ln(seq_len), with b, c >= 0 so that
utilization never falls as the model widens or the step grows (monotone), d free (longer
sequences spend more time in attention). Least squares over every feasible active set of the
constraints; with few runs the seq_len and then the tokens term are dropped. The fit's error is
its RMSE in MFU (fraction of peak) and, from 5 runs up, its leave-one-out RMSE; estimates carry
± the larger of the two into the cost range.

MFU is against the datasheet peak where the device has one (GPUs), else against the measured
matmul peak (CPUs); `mfu_basis` says which.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from harness.errors import ConfigError
from harness.results.record import RunRecord

CALIBRATION_FILE = "calibration.json"
FEATURES = ("ln_hidden", "ln_tokens_per_step", "ln_seq_len")
MONOTONE = ("ln_hidden", "ln_tokens_per_step")  # coefficients constrained >= 0
MIN_RUNS = 2


@dataclass(frozen=True)
class CalibrationFit:
    """One device model and dtype's utilization fit."""

    device: str
    gpu: str | None              # the datasheet row, where the device has one
    dtype: str
    mfu_basis: str               # datasheet | measured peak
    n: int
    coef: dict[str, float]       # intercept and one per feature used (0 when dropped or clamped)
    rmse: float
    loo_rmse: float | None
    ranges: dict[str, list[float]]  # hidden, tokens_per_step, seq_len seen: outside them is extrapolation
    runs: list[str]

    @property
    def error(self) -> float:
        return max(self.rmse, self.loo_rmse or 0.0)

    def predict(self, hidden: int, tokens_per_step: float, seq_len: int) -> float:
        x = _features(hidden, tokens_per_step, seq_len)
        value = self.coef["intercept"] + sum(self.coef.get(k, 0.0) * x[k] for k in FEATURES)
        return min(1.0, max(1e-4, value))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _features(hidden: int, tokens_per_step: float, seq_len: int) -> dict[str, float]:
    return {"ln_hidden": math.log(hidden), "ln_tokens_per_step": math.log(tokens_per_step),
            "ln_seq_len": math.log(seq_len)}


def _solve(x: np.ndarray, y: np.ndarray, used: Sequence[str]) -> tuple[dict[str, float], float]:
    columns = [np.ones(len(y))] + [x[:, FEATURES.index(k)] for k in used]
    a = np.column_stack(columns)
    beta, *_ = np.linalg.lstsq(a, y, rcond=None)
    coef = {"intercept": float(beta[0]), **{k: 0.0 for k in FEATURES}}
    coef.update({k: float(b) for k, b in zip(used, beta[1:])})
    sse = float(np.sum((a @ beta - y) ** 2))
    return coef, sse


def fit_mfu(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Constrained least squares: the best fit over feature subsets whose monotone coefficients
    come out >= 0. Features beyond n - 1 are not used (the seq_len term goes first)."""
    usable = list(FEATURES[: max(0, min(len(FEATURES), len(y) - 1))])
    best: tuple[float, dict[str, float]] | None = None
    for r in range(len(usable), -1, -1):
        for used in itertools.combinations(usable, r):
            coef, sse = _solve(x, y, used)
            if any(coef[k] < 0 for k in MONOTONE):
                continue
            if best is None or sse < best[0] - 1e-15:
                best = (sse, coef)
    assert best is not None  # the intercept-only fit is always feasible
    return best[1]


def _mfu(record: RunRecord) -> tuple[float, str]:
    """MFU against the datasheet peak where there is one, else against the measured peak."""
    if record.mfu_datasheet is not None:
        return record.mfu_datasheet, "datasheet"
    return record.mfu_measured, "measured peak"


def calibrate(records: Sequence[RunRecord], *, device: str | None = None) -> list[CalibrationFit]:
    """Fit every (device, dtype) group of `records` with at least MIN_RUNS runs; `device`
    keeps only devices whose name or datasheet row contains it (case-insensitive)."""
    from harness.hardware import datasheet_row

    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    for r in records:
        if r.depth_extrapolation:  # predicted runs do not calibrate
            continue
        groups.setdefault((r.device.name or r.device.type, r.dtype, _mfu(r)[1]), []).append(r)
    fits = []
    for (name, dtype, basis), rows in sorted(groups.items()):
        row = datasheet_row(name) if rows[0].device.type == "cuda" else None
        if device is not None and device.lower() not in f"{name} {row.gpu if row else ''}".lower():
            continue
        if len(rows) < MIN_RUNS:
            continue
        x = np.array([list(_features(r.model.hidden, r.tokens_per_device_step, r.seq_len).values()) for r in rows])
        y = np.array([_mfu(r)[0] for r in rows])
        coef = fit_mfu(x, y)
        pred = np.array([_predict(coef, xi) for xi in x])
        rmse = float(np.sqrt(np.mean((pred - y) ** 2)))
        loo = None
        if len(rows) >= 5:
            errors = []
            for i in range(len(rows)):
                keep = np.arange(len(rows)) != i
                c = fit_mfu(x[keep], y[keep])
                errors.append(_predict(c, x[i]) - y[i])
            loo = float(np.sqrt(np.mean(np.square(errors))))
        tokens = [r.tokens_per_device_step for r in rows]
        ranges = {"hidden": [min(r.model.hidden for r in rows), max(r.model.hidden for r in rows)],
                  "tokens_per_step": [min(tokens), max(tokens)],
                  "seq_len": [min(r.seq_len for r in rows), max(r.seq_len for r in rows)]}
        fits.append(CalibrationFit(name, row.gpu if row else None, dtype, basis, len(rows), coef, rmse, loo,
                                   ranges, [r.run_id for r in rows]))
    return fits


def _predict(coef: dict[str, float], x: np.ndarray) -> float:
    return coef["intercept"] + sum(coef[k] * x[i] for i, k in enumerate(FEATURES))


def write_calibration(fits: Sequence[CalibrationFit], results_dir: Path) -> Path:
    from harness.files import write_json_atomic

    path = results_dir / CALIBRATION_FILE
    write_json_atomic(path, {"created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                             "model": "MFU = a + b ln(hidden) + c ln(tokens per device step) + d ln(seq_len); "
                                      "b, c >= 0", "fits": [f.to_dict() for f in fits]})
    return path


def read_calibration(results_dir: Path) -> list[CalibrationFit]:
    """The calibration table under `results_dir`, or [] when there is none."""
    import json

    path = results_dir / CALIBRATION_FILE
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [CalibrationFit(**f) for f in data["fits"]]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError("calibration", f"{path} is not a calibration table; run `harness calibrate` again") from None


def find_fit(fits: Sequence[CalibrationFit], gpu: str, dtype: str) -> CalibrationFit | None:
    """The fit for datasheet row `gpu` (or device name) and `dtype`, the one with most runs."""
    matches = [f for f in fits if f.dtype == dtype and gpu in (f.gpu, f.device)]
    return max(matches, key=lambda f: f.n) if matches else None
