"""Sweep: a grid of runs (presets or dimensions × batch × length × dtype × compile), resumable.

A sweep file names a base config and a grid of dotted config keys, each with a list of values:

    name: gpt2-widths
    base: configs/tiny-gpt2.yaml      # a config file or a preset name; default the packaged default.yaml
    grid:
      model.hidden: [128, 256]
      train.batch_size: [4, 8]
      train.dtype: [fp32, bf16]
    largest_batch: false              # true: search each point's largest batch (double, then bisect)
    max_batch: 1024

Every point is a normal run record with `sweep = {name, point, overrides}`. The sweep's state —
each point measured, failed (out of memory, with the error) or pending — is written atomically to
results/sweeps/<name>.json after every point, so an interrupt loses nothing and `--resume` skips
points already measured (by config hash) or already failed for lack of memory.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.config import MAX_BATCH, Count, RunSpec, load_spec, read_yaml, with_changes
from harness.errors import ConfigError, shorten
from harness.results.record import SweepInfo

SWEEPS_DIR = "sweeps"
# A grid of more points than this runs only when confirmed (`harness sweep --yes`); one of more
# than MAX_POINTS never (each point's spec is built and kept before the first runs).
CONFIRM_POINTS = 1_000
MAX_POINTS = 100_000


class SweepFile(BaseModel):
    """A sweep file as written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    base: str | None = None
    grid: dict[str, list[Any]] = Field(min_length=1, max_length=64)
    largest_batch: bool = False
    max_batch: Count(1, MAX_BATCH) = 1024


@dataclass(frozen=True)
class SweepPoint:
    """One grid point: its overrides and the spec they make."""

    index: int
    overrides: tuple[str, ...]
    spec: RunSpec

    @property
    def config_hash(self) -> str:
        return self.spec.config_hash()


@dataclass(frozen=True)
class Sweep:
    name: str
    base: str | None
    points: tuple[SweepPoint, ...]
    largest_batch: bool = False
    max_batch: int = 1024


def _value_text(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def build_sweep(raw: Any, *, default_name: str = "sweep", confirmed: bool = False) -> Sweep:
    """Validate a sweep mapping and expand its grid (cartesian product, keys in file order).
    Every point's spec is validated here, so a bad value fails before anything runs. A grid of
    more than CONFIRM_POINTS points needs `confirmed`; one of more than MAX_POINTS is refused."""
    if not isinstance(raw, dict):
        raise ConfigError("sweep", "must be a mapping with name, base, grid")
    try:
        parsed = SweepFile.model_validate({"name": default_name, **raw})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "sweep"
        if first["type"] == "extra_forbidden":
            return_msg = f"unknown key; allowed: {', '.join(SweepFile.model_fields)}"
        else:
            return_msg = first["msg"] + (f" (got {shorten(first.get('input'))})" if first["type"] != "missing" else "")
        raise ConfigError(f"sweep.{where}", return_msg) from None
    for key, values in parsed.grid.items():
        if not values:
            raise ConfigError(f"sweep.grid.{key}", "needs at least one value")
    size = math.prod(len(values) for values in parsed.grid.values())
    if size > MAX_POINTS:
        raise ConfigError("sweep.grid", f"{size:,} points; allowed: up to {MAX_POINTS:,} (split the sweep)")
    if size > CONFIRM_POINTS and not confirmed:
        raise ConfigError("sweep.grid", f"{size:,} points is over {CONFIRM_POINTS:,}; pass --yes to run them all")
    base = Path(parsed.base) if parsed.base is not None else None
    keys = list(parsed.grid)
    points = []
    for index, combo in enumerate(itertools.product(*(parsed.grid[k] for k in keys))):
        overrides = tuple(f"{k}={_value_text(v)}" for k, v in zip(keys, combo))
        try:
            spec = load_spec(base, list(overrides))
        except ConfigError as err:
            raise ConfigError(f"sweep.grid point {index} ({', '.join(overrides)}): {err.field}", err.message) from None
        points.append(SweepPoint(index, overrides, spec))
    return Sweep(parsed.name, parsed.base, tuple(points), parsed.largest_batch, parsed.max_batch)


def load_sweep(path: Path, *, confirmed: bool = False) -> Sweep:
    return build_sweep(read_yaml(path, "sweep.file"), default_name=Path(path).stem, confirmed=confirmed)


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA OOM, a CPU allocator failure, MemoryError, or a run refused before it started because
    its estimated memory is more than the device has (harness.measure.fit.DoesNotFit)."""
    if isinstance(err, MemoryError):
        return True
    from harness.measure.fit import DoesNotFit

    if isinstance(err, DoesNotFit):
        return True
    try:
        import torch

        if isinstance(err, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover
        pass
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                              or "failed to allocate" in text)


def largest_batch(fits: Callable[[int], bool], *, start: int = 1, max_batch: int = 1024) -> tuple[int | None, list[int]]:
    """The largest batch for which `fits(batch)` holds: double from `start` until it fails or
    reaches `max_batch`, then bisect between the last fit and the first failure.
    Returns (largest fitting batch or None, batches tried in order)."""
    tried: list[int] = []

    def check(b: int) -> bool:
        tried.append(b)
        return fits(b)

    if not check(start):
        return None, tried
    good, bad = start, None
    while bad is None and good < max_batch:
        candidate = min(good * 2, max_batch)
        if check(candidate):
            good = candidate
        else:
            bad = candidate
    if bad is None:
        return good, tried
    while bad - good > 1:
        mid = (good + bad) // 2
        if check(mid):
            good = mid
        else:
            bad = mid
    return good, tried


@dataclass
class SweepState:
    """Per point: status measured | failed | pending, run id, error. Written after every point."""

    name: str
    source: str
    points: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "points": self.points}


def state_path(results_dir: Path, name: str) -> Path:
    return results_dir / SWEEPS_DIR / f"{name}.json"


class _StatePoint(BaseModel):
    """One point of a stored sweep state, as `run_sweep` writes it (other keys are kept)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    index: Count(0, MAX_POINTS)
    overrides: list[str]
    point_hash: str
    config_hash: str | None = None
    status: Literal["measured", "failed", "pending"]
    run_id: str | None = None
    error: str | None = None


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source: str
    points: list[_StatePoint] = Field(max_length=MAX_POINTS)


def read_state(results_dir: Path, name: str) -> dict[str, Any] | None:
    """The stored state of sweep `name`, validated (None when there is none); a file that is not
    a sweep state is a ConfigError naming it and the first wrong field."""
    path = state_path(results_dir, name)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        raise ConfigError("sweep.resume", f"sweep state {path} is unreadable; remove it to start over") from None
    try:
        return _State.model_validate(data).model_dump()
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "state"
        raise ConfigError("sweep.resume", f"sweep state {path} is not one this harness wrote ({where}: "
                          f"{first['msg']}); remove it to start over") from None


def run_sweep(sweep: Sweep, *, results_dir: Path, resume: bool = False, source: str = "",
              measure: Callable[[RunSpec], Any] | None = None, save: Callable | None = None,
              measured_hashes: Sequence[str] = (), on_point: Callable[[dict[str, Any]], None] | None = None
              ) -> SweepState:
    """Measure every point in order, saving each record; out-of-memory points are recorded as
    failed and the sweep goes on. `measure` and `save` are seams (default: the real ones).
    `measured_hashes` are config hashes already stored (skipped with --resume)."""
    from harness.files import write_json_atomic

    if measure is None:
        from harness.measure.run import measure
    if save is None:
        from harness.results.store import save
    previous = read_state(results_dir, sweep.name) if resume else None
    if not resume and state_path(results_dir, sweep.name).exists():
        raise ConfigError("sweep.resume", f"sweep {sweep.name!r} has state in {state_path(results_dir, sweep.name)}; "
                          "pass --resume to continue it, or remove the file to start over")
    failed_before = {p["point_hash"]: p for p in (previous or {}).get("points", []) if p["status"] == "failed"}
    done_before = {p["point_hash"]: p for p in (previous or {}).get("points", []) if p["status"] == "measured"}
    state = SweepState(sweep.name, source)
    for point in sweep.points:
        entry: dict[str, Any] = {"index": point.index, "overrides": list(point.overrides),
                                 "point_hash": point.config_hash, "config_hash": None, "status": "pending",
                                 "run_id": None, "error": None}
        known = resume and (point.config_hash in measured_hashes or point.config_hash in done_before)
        if known:
            before = done_before.get(point.config_hash, {})
            entry.update(status="measured", run_id=before.get("run_id"),
                         config_hash=before.get("config_hash", point.config_hash),
                         note="skipped on resume: already measured")
        elif resume and point.config_hash in failed_before:
            entry.update(status="failed", error=failed_before[point.config_hash]["error"],
                         note="skipped on resume: failed before")
        else:
            spec = point.spec
            if sweep.largest_batch:
                best, tried = largest_batch(lambda b: _fits(spec, b, measure), max_batch=sweep.max_batch)
                entry["largest_batch_search"] = {"tried": tried, "largest": best}
                if best is None:
                    entry.update(status="failed", error="out of memory at batch 1")
                    spec = None
                else:
                    spec = _with_batch(spec, best)
                    entry["overrides"].append(f"train.batch_size={best}")
            if spec is not None:
                try:
                    record = measure(spec)
                except Exception as err:  # noqa: BLE001 (only memory failures are absorbed)
                    if not is_out_of_memory(err):
                        raise
                    entry.update(status="failed", error=f"out of memory: {str(err).splitlines()[0][:200]}")
                else:
                    record = record.evolve(sweep=SweepInfo(name=sweep.name, point=point.index,
                                                           overrides=list(entry["overrides"])))
                    save(record, results_dir)
                    entry.update(status="measured", run_id=record.run_id, config_hash=record.config_hash)
        state.points.append(entry)
        write_json_atomic(state_path(results_dir, sweep.name), state.to_dict())
        if on_point is not None:
            on_point(entry)
    return state


def _with_batch(spec: RunSpec, batch: int) -> RunSpec:
    return with_changes(spec, {"train.batch_size": batch})


def _fits(spec: RunSpec, batch: int, measure: Callable[[RunSpec], Any]) -> bool:
    """One short trial at `batch` (no warm-up, one step); out of memory → False."""
    trial = with_changes(spec, {"train.batch_size": batch, "measure.warmup_steps": 0, "measure.steps": 1,
                                "measure.energy": False})
    try:
        measure(trial)
    except Exception as err:  # noqa: BLE001
        if is_out_of_memory(err):
            return False
        raise
    return True
