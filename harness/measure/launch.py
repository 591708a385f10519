"""Launch: a measurement in a child process, the one way: ``python -m harness run ... --json`` in
a fresh process (its peak memory its own) or under torchrun (several ranks), read back as a
RunRecord. A child that fails raises HarnessError with its last stderr line (RankFailure naming
the rank under torchrun); one interrupted (exit 130) raises Interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Mapping, Sequence

from harness.errors import EXIT_INTERRUPTED, HarnessError, Interrupted
from harness.results.record import RunRecord



def child_record(argv: Sequence[str], *, env: Mapping[str, str] | None = None, nproc: int = 1,
                 python: str | None = None, **torchrun) -> RunRecord:
    """Run ``harness <argv> --json`` (argv starts with "run") in a fresh process, with `env`
    added to this process's environment, or on `nproc` ranks under torchrun (`torchrun`: nnodes,
    node_rank, rdzv_endpoint); the record it printed. `python` replaces this interpreter (a
    seam for tests)."""
    if nproc > 1 or torchrun.get("nnodes", 1) > 1:
        from harness.measure.distributed import launch

        return _record(launch([*argv, "--json"], nproc=nproc, **torchrun))
    done = subprocess.run([python or sys.executable, "-m", "harness", *argv, "--json"], capture_output=True, text=True,
                          check=False, env={**os.environ, **env} if env else None)
    if done.returncode == EXIT_INTERRUPTED:
        raise Interrupted
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        last = lines[-1] if lines else "(no output on stderr)"
        if done.returncode < 0:  # SIGKILL is what the kernel's out-of-memory killer sends
            name = signal.Signals(-done.returncode).name
            raise HarnessError(f"killed by {name}{' (out of memory?)' if name == 'SIGKILL' else ''}; "
                               f"last stderr line: {last}")
        raise HarnessError(f"exit code {done.returncode}: {last}")
    return _record(done.stdout)


def _record(stdout: str) -> RunRecord:
    try:
        data = json.loads(stdout)
    except json.JSONDecodeError:
        raise HarnessError("the child printed no JSON record on stdout") from None
    return RunRecord.from_json(data, "the child's record")
