"""The command line: one `typer` app, and each command group in a file of its own."""

from harness.cli import calib, cost, results
from harness.cli.app import app, main

cost.register(app)
results.register(app)
calib.register(app)

__all__ = ["app", "main"]
