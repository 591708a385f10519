"""What every `harness` command module shares: where results live, JSON on stdout, SIGTERM."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Optional


def results_dir(value: Optional[Path]) -> Path:
    """--results-dir, else $HARNESS_RESULTS_DIR, else results/."""
    return value or Path(os.environ.get("HARNESS_RESULTS_DIR", "results"))


def print_json(data: Any) -> None:
    """`data` as indented JSON on stdout (dates and paths as strings)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def on_sigterm(signum, frame):
    """SIGTERM handler: raise KeyboardInterrupt, so that a run stops the way Ctrl-C stops it."""
    raise KeyboardInterrupt
