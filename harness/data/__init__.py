"""Data shipped inside the package: the default config, corpora, plans, the price snapshot and the
carbon table. Found with `importlib.resources`, so they are there from any working directory and
in an installed wheel alike."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def data_path(*parts: str) -> Path:
    """The path of a packaged data file or folder, e.g. ``data_path("carbon", "intensity.csv")``.
    setuptools installs package data as plain files, so the traversable is a real path."""
    return Path(str(resources.files(__package__).joinpath(*parts)))
