#!/usr/bin/env python
"""Counting cost at any size: time and peak memory of `harness count`'s torch count.

Target (issue 3): gpt3-175b at batch 1 x 2048, forward and backward, in under 10 s and 1 GB.
Each preset is counted in a fresh subprocess so that its peak RSS is its own.

  .venv/bin/python scripts/bench_count.py [PRESET ...]
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = """
import json, resource, sys, time
from harness.config import build_spec
from harness.flops.count import count_model_flops
preset, seq = sys.argv[1], int(sys.argv[2])
start = time.perf_counter()
count, params = count_model_flops(build_spec({"model": {"preset": preset}, "train": {"batch_size": 1, "seq_len": seq}}))
seconds = time.perf_counter() - start
print(json.dumps({"preset": preset, "seq": seq, "params": params.total, "flops": count.total, "seconds": seconds,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def main() -> int:
    presets = sys.argv[1:] or ["gpt2", "gpt2-xl", "t5-11b", "llama-7b", "gpt3-175b"]
    print(f"{'preset':<12} {'seq':>5} {'params':>16} {'train FLOPs':>24} {'count s':>8} {'peak RSS':>10}")
    for preset in presets:
        seq = 2048 if preset in ("gpt3-175b", "llama-7b") else 512 if preset.startswith("t5") else 1024
        out = subprocess.run([sys.executable, "-c", CHILD, preset, str(seq)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['preset']:<12} {r['seq']:>5} {r['params']:>16,} {r['flops']:>24,} {r['seconds']:>8.2f} "
              f"{r['peak_rss_bytes'] / 2**20:>8.0f} MB")
    print("target: gpt3-175b in < 10 s and < 1 GB (the count time excludes interpreter start-up and imports)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
