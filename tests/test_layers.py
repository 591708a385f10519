"""The import contracts in pyproject.toml (`[tool.importlinter]`) hold: checked in-process with
import-linter, so a broken contract fails this test with import-linter's own report (the contract
and the import chain that breaks it)."""

from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter is in the test extra: pip install -e '.[test]'")

from importlinter import api  # noqa: E402  (configures import-linter)
from importlinter.application import use_cases  # noqa: E402

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_pyproject_lists_the_contracts():
    contracts = api.read_configuration(str(PYPROJECT))["contracts_options"]
    assert {c["id"] for c in contracts} >= {"results-no-measure", "spec-no-torch", "flops-upstream", "cli-on-top"}


def test_import_contracts_hold(capsys):
    kept = use_cases.lint_imports(config_filename=str(PYPROJECT), cache_dir=None, no_logo=True)
    report = capsys.readouterr().out
    assert kept, "an import contract is broken:\n" + report
    assert "0 broken" in report
