"""The command line: one `typer` app, and each command group in a file of its own."""

from harness.cli import calib, cost, inspect, results, run
from harness.cli.app import app, main

for group in (run, inspect, cost, results, calib):
    group.register(app)

__all__ = ["app", "main"]
