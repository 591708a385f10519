"""One GPU check: does this project's GPU path measure what it says it does?

Run by scripts/gpu_check.sh. In under 5 minutes on one GPU it measures, through the harness API
in this process (records written under results/reference/gpu_check/):

  timing     a bf16 GPT-2 (124M) run: the record's CUDA-event step times (sum over the measured
             steps) against wall-clock (perf_counter) over the same window; within 2%
  energy     NVML's energy counter against integrated NVML power samples, over one window of
             steady bf16 matmuls (harness.measure.energy's own sources); within 5%; and the
             run's record reads the counter
  peak       the record's measured bf16 matmul peak against the datasheet (45-100%: stas00
             measured 80% on H100, 51% on MI300X); unknown GPUs have no datasheet row: n/a
  compile    torch.compile against eager: compiled median step within 1.05x of eager
  fp8        where the GPU has FP8 tensor cores and torchao is installed: a llama-shaped model
             (110M non-embedding parameters) in fp8 and bf16; the record names both peaks; the
             measured FP8 matmul peak against the FP8 datasheet (40-100%)
  ddp, fsdp  with two or more visible GPUs: each over all of them (torchrun); weak-scaling
             efficiency against the one-GPU run (>= 0.8 DDP, >= 0.7 FSDP)

Every comparison prints measured vs reference and pass/fail; the table and the rows go to
results/reference/gpu_check_<gpu>.txt/.json. Exit 0 when nothing failed (skips are not
failures), 1 otherwise. Without a GPU: one line, exit 0, before importing torch.
"""

from __future__ import annotations

import gc
import glob
import json
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def gpu_device_nodes() -> list[str]:
    """Device files of NVIDIA (/dev/nvidia0...) or AMD ROCm (/dev/kfd) GPUs: no torch needed."""
    return sorted(glob.glob("/dev/nvidia[0-9]*")) + (["/dev/kfd"] if os.path.exists("/dev/kfd") else [])


@dataclass
class Row:
    check: str
    measured: str
    reference: str
    status: str   # pass | FAIL | skip | info
    note: str = ""


def within(measured: float, reference: float, rel: float) -> bool:
    return reference > 0 and abs(measured - reference) / reference <= rel


def status(ok: bool) -> str:
    return "pass" if ok else "FAIL"


class WallCheckedClock:
    """harness's CUDA-event clock, with perf_counter read after each start and stop, so that the
    record's event times can be checked against wall-clock over the same steps."""

    def __init__(self, inner=None):
        from harness.measure.timing import CudaEventClock

        self.inner = inner or CudaEventClock("cuda")  # another clock: a seam for the CPU test
        self.name = self.inner.name
        self.wall: list[tuple[float, float]] = []

    def start(self):
        token = self.inner.start()        # synchronises, then records the start event
        return token, time.perf_counter()

    def stop(self, token) -> float:
        event, t0 = token
        seconds = self.inner.stop(event)  # records the end event, then synchronises
        self.wall.append((t0, time.perf_counter()))
        return seconds


def _spec(model: str | None, overrides: list[str]):
    """A preset with overrides, or (model None) a model given by its overrides alone."""
    from harness.config import apply_overrides, build_spec

    return build_spec(apply_overrides({"model": {"preset": model} if model else {}}, overrides))


def _save(record, out: Path) -> None:
    folder = out / "gpu_check"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{record.run_id}.json").write_text(json.dumps(record.to_dict(), indent=1) + "\n")


def _run(model: str | None, overrides: list[str], out: Path, clock=None):
    from harness.measure.run import measure

    record = measure(_spec(model, overrides), clock=clock)
    _save(record, out)
    return record


GPT2 = ["device=cuda", "train.dtype=bf16", "train.batch_size=16", "train.seq_len=1024",
        "measure.warmup_steps=5", "measure.steps=40", "model.dropout=0.0"]
# A llama-shaped model of 110M non-embedding parameters (134M in all): every linear layer's shape
# is a multiple of 16, as FP8 kernels need.
LLAMA = ["device=cuda", "model.family=llama", "model.layers=12", "model.hidden=768", "model.heads=12",
         "model.kv_heads=12", "model.ffn=2048", "model.vocab=32000", "model.max_positions=2048", "model.dropout=0.0",
         "train.batch_size=16", "train.seq_len=1024", "measure.warmup_steps=5", "measure.steps=30"]


def check_timing_peak(rows: list[Row], out: Path, overrides: list[str] = GPT2, inner_clock=None):
    clock = WallCheckedClock(inner_clock)
    record = _run("gpt2", overrides, out, clock=clock)
    steps = record.timing.steps
    window = clock.wall[-steps:]                       # the measured steps (after the warm-up ones)
    wall_s = window[-1][1] - window[0][0]
    events_s = sum(record.step_times_s)
    rows.append(Row(f"timing: {record.timing.clock} vs wall-clock", f"{events_s:.4f} s ({steps} steps, record)",
                    f"{wall_s:.4f} s wall", status(within(events_s, wall_s, 0.02)),
                    f"{(events_s - wall_s) / wall_s:+.2%}, tolerance 2%; median step {record.median_step_s * 1e3:.2f} ms"))
    methods = record.energy.methods if record.energy else {}
    gpu_methods = {k: v for k, v in methods.items() if k.startswith("gpu")}
    import torch

    if torch.version.hip:
        rows.append(Row("energy: record reads NVML's counter", "-", "counter", "skip", "ROCm: no NVML"))
    else:
        rows.append(Row("energy: record reads NVML's counter", ", ".join(f"{k} {v}" for k, v in gpu_methods.items())
                        or "no GPU energy", "counter",
                        status(bool(gpu_methods) and set(gpu_methods.values()) == {"counter"}),
                        f"{record.energy.joules_per_step:.2f} J/step" if record.energy else ""))
    sheet, measured = record.peak_flops_datasheet, record.peak_flops_measured
    label = f"peak: measured {record.peaks.measured.dtype} matmul vs datasheet"
    if sheet:
        ratio = measured / sheet
        rows.append(Row(label, f"{measured / 1e12:,.1f} TFLOP/s", f"{sheet / 1e12:,.1f} TFLOP/s ({record.peaks.datasheet.gpu})",
                        status(0.45 <= ratio <= 1.0), f"{ratio:.1%}; expected 45-100% (stas00: H100 80%, MI300X 51%)"))
    else:
        rows.append(Row(label, f"{measured / 1e12:,.1f} TFLOP/s", f"unknown: no datasheet row for {record.device.name!r}",
                        "info"))
    rows.append(Row(f"{record.dtype} run: MFU", f"{record.mfu_measured:.1%} of measured peak",
                    "n/a" if record.mfu_datasheet is None else f"{record.mfu_datasheet:.1%} of datasheet", "info",
                    f"{record.tokens_per_s:,.0f} tokens/s, {record.params / 1e6:.0f}M params"))
    return record


def check_energy(rows: list[Row], seconds: float = 8.0) -> None:
    """The counter and integrated power over one window of steady matmuls, both read by
    harness.measure.energy (the integrated one forced by a source that skips the counter)."""
    import torch

    if torch.version.hip:
        rows.append(Row("energy: NVML counter vs integrated power", "-", "-", "skip",
                        "NVML is NVIDIA's; this harness reads no ROCm (amdsmi) energy"))
        return
    import pynvml

    from harness.measure.energy import NvmlSource, PowerSampler, job_gpus

    class PowerOnly(NvmlSource):
        def begin(self, t: float) -> None:
            self.t0 = t
            for i, handle in self.handles:
                self.power[i] = [(t, self.nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0)]

    pynvml.nvmlInit()
    gpus = job_gpus([torch.cuda.current_device()], os.environ.get("CUDA_VISIBLE_DEVICES"))
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)

    def burn(duration_s: float) -> None:
        end = time.perf_counter() + duration_s
        while time.perf_counter() < end:
            for _ in range(20):
                torch.mm(a, a)
            torch.cuda.synchronize()

    burn(3.0)  # reach steady power first: NVML's power reading averages over about a second
    sampler = PowerSampler([NvmlSource(pynvml, gpus), PowerOnly(pynvml, gpus)], interval_s=0.05)
    with sampler:
        burn(seconds)
    counter, integrated = sampler.reading.components
    rows.append(Row("energy: NVML counter vs integrated power", f"{counter.energy_j:,.1f} J ({counter.method})",
                    f"{integrated.energy_j:,.1f} J ({integrated.method}, {sampler.reading.samples} samples)",
                    status(counter.method == "counter" and within(counter.energy_j, integrated.energy_j, 0.05)),
                    f"{(counter.energy_j - integrated.energy_j) / integrated.energy_j:+.2%} over "
                    f"{sampler.reading.window_s:.1f} s at {counter.avg_w:.0f} W; tolerance 5%"))


def check_compile(rows: list[Row], eager, out: Path) -> None:
    record = _run("gpt2", GPT2 + ["train.compile=true"], out)
    ratio = record.median_step_s / eager.median_step_s
    rows.append(Row("compile: torch.compile vs eager step", f"{record.median_step_s * 1e3:.2f} ms compiled",
                    f"{eager.median_step_s * 1e3:.2f} ms eager", status(ratio <= 1.05),
                    f"{ratio:.3f}x; expected <= 1.05x"))


def check_fp8(rows: list[Row], out: Path) -> None:
    import importlib.util

    import torch

    from harness.measure.train import FP8_INSTALL, device_fp8_unsupported

    why = device_fp8_unsupported(torch.device("cuda"))
    if why is not None:
        rows.append(Row("fp8", "-", "-", "skip", why))
        return
    if importlib.util.find_spec("torchao") is None:
        rows.append(Row("fp8", "-", "-", "skip", f"torchao not installed: {FP8_INSTALL}"))
        return
    bf16 = _run(None, LLAMA + ["train.dtype=bf16"], out)
    fp8 = _run(None, LLAMA + ["train.dtype=fp8"], out)
    named = {u.peak: u for u in fp8.utilization}
    sheets = [u for u in fp8.utilization if u.kind == "datasheet"]
    rows.append(Row("fp8: record names both datasheet peaks", ", ".join(u.peak for u in sheets),
                    "datasheet fp8 and datasheet bf16",
                    status([u.mode for u in sheets] == ["fp8", "bf16"]),
                    "; ".join(f"MFU {u.mfu:.1%} vs {u.peak}" for u in sheets if u.mfu is not None)))
    rows.append(Row("fp8: linear layers converted", f"{fp8.fp8.converted_linear} float8, {len(fp8.fp8.kept_linear)} kept",
                    "84 (12 layers x 7) float8, lm_head kept", status(fp8.fp8.converted_linear == 84), fp8.fp8.library))
    measured = named.get("measured fp8 matmul")
    sheet = named.get(sheets[0].peak) if sheets else None
    if measured and sheet and sheet.flops_per_s:
        ratio = measured.flops_per_s / sheet.flops_per_s
        rows.append(Row("fp8: measured FP8 matmul vs datasheet", f"{measured.flops_per_s / 1e12:,.1f} TFLOP/s",
                        f"{sheet.flops_per_s / 1e12:,.1f} TFLOP/s", status(0.4 <= ratio <= 1.0),
                        f"{ratio:.1%}; expected 40-100%"))
    rows.append(Row("fp8 vs bf16 step (llama 134M)", f"{fp8.median_step_s * 1e3:.2f} ms fp8",
                    f"{bf16.median_step_s * 1e3:.2f} ms bf16", "info",
                    f"{bf16.median_step_s / fp8.median_step_s:.2f}x speed-up, both eager (torchao's fp8 is "
                    "fastest under torch.compile; small models gain little)"))


def check_distributed(rows: list[Row], single, out: Path, gpus: int) -> None:
    from harness.measure.launch import child_record

    for strategy, floor in (("ddp", 0.8), ("fsdp", 0.7)):
        argv = ["run", "gpt2", *[a for s in GPT2 + [f"distributed.strategy={strategy}"] for a in ("--set", s)],
                "--results-dir", str(out / "gpu_check" / "store")]
        record = child_record(argv, nproc=gpus)
        _save(record, out)
        efficiency = record.per_device_tokens_per_s / single.tokens_per_s
        ok = record.world_size == gpus and record.strategy == strategy and efficiency >= floor
        rows.append(Row(f"{strategy}: {gpus} GPUs vs one", f"{record.per_device_tokens_per_s:,.0f} tokens/s/GPU "
                        f"(world {record.world_size}, {record.strategy})", f"{single.tokens_per_s:,.0f} tokens/s on one",
                        status(ok), f"weak-scaling efficiency {efficiency:.1%}; expected >= {floor:.0%}"))


def table(rows: list[Row]) -> str:
    cols = ("check", "measured", "reference", "status", "note")
    widths = [max(len(c), *(len(getattr(r, c)) for r in rows)) for c in cols]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()
    return "\n".join([line(cols), line(["-" * w for w in widths]), *(line([getattr(r, c) for c in cols]) for r in rows)])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[args.index("--out") + 1]) if "--out" in args else ROOT / "results" / "reference"
    if not gpu_device_nodes():
        print("gpu_check: no GPU on this machine (no /dev/nvidia* or /dev/kfd); nothing to check")
        return 0
    import torch

    if not torch.cuda.is_available():
        print(f"gpu_check: no GPU usable by torch {torch.__version__} (torch.cuda.is_available() is False); "
              "nothing to check")
        return 0
    sys.path.insert(0, str(ROOT))  # this checkout's harness
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # torchrun's too
    name = torch.cuda.get_device_name(0)
    gpus = torch.cuda.device_count()
    platform = f"ROCm {torch.version.hip}" if torch.version.hip else f"CUDA {torch.version.cuda}"
    print(f"gpu_check: {gpus} x {name} ({platform}, torch {torch.__version__})", flush=True)
    started = time.perf_counter()
    rows: list[Row] = []

    def attempt(label: str, fn, *a):
        try:
            return fn(*a)
        except Exception as err:  # a failed check is a row, and the others still run
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            rows.append(Row(label, "-", "-", "FAIL", f"{type(err).__name__}: {first}"))
            traceback.print_exc(file=sys.stderr)
            return None
        finally:  # hand the cached GPU memory back: the next check (or torchrun's ranks) needs it
            gc.collect()
            torch.cuda.empty_cache()

    single = attempt("timing/peak (bf16 gpt2)", check_timing_peak, rows, out)
    attempt("energy (counter vs integrated)", check_energy, rows)
    if single is not None:
        attempt("compile", check_compile, rows, single, out)
    attempt("fp8", check_fp8, rows, out)
    if gpus >= 2 and single is not None:
        attempt("ddp/fsdp", check_distributed, rows, single, out, gpus)
    else:
        rows.append(Row("ddp, fsdp", "-", "-", "skip", f"{gpus} visible GPU: needs two or more"))
    text = table(rows)
    print(text)
    elapsed = time.perf_counter() - started
    from harness.hardware import normalise_gpu

    slug = normalise_gpu(name).lower()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"gpu_check_{slug}.txt").write_text(f"{gpus} x {name} ({platform}, torch {torch.__version__}), "
                                               f"{elapsed:.0f} s\n{text}\n")
    (out / f"gpu_check_{slug}.json").write_text(json.dumps(
        {"gpu": name, "gpus": gpus, "platform": platform, "torch": torch.__version__, "elapsed_s": elapsed,
         "rows": [asdict(r) for r in rows]}, indent=1) + "\n")
    failed = [r.check for r in rows if r.status == "FAIL"]
    print(f"gpu_check: {len(rows) - len(failed)}/{len(rows)} rows passed or skipped in {elapsed:.0f} s; "
          f"written to {out}/gpu_check_{slug}.txt" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
