"""The `harness` app and its entry point. Errors in input: one line on stderr (at most 300
characters, see `harness.errors.one_line`), exit code 2, nothing written; an interrupt: exit
code 130, nothing written."""

from __future__ import annotations

import sys

import typer

from harness.cli.common import as_flags
from harness.errors import EXIT_INTERRUPTED, ConfigError, HarnessError, Interrupted, one_line

try:  # recent typer vendors click; older versions use click itself
    from typer._click.exceptions import ClickException as _ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException as _ClickException

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Empirical FLOPs profiler and benchmark harness for transformer training.")

EXIT_USAGE = 2


def main(argv: list[str] | None = None) -> int:
    """Entry point: maps input errors to exit 2 and interrupts to exit 130, without tracebacks."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="harness", standalone_mode=False)
    except HarnessError as err:
        print(one_line(f"harness: error: {as_flags(err) if isinstance(err, ConfigError) else err}"), file=sys.stderr)
        return EXIT_USAGE
    except _ClickException as err:
        print(one_line(f"harness: error: {err.format_message()}"), file=sys.stderr)
        return EXIT_USAGE
    except (Interrupted, KeyboardInterrupt, typer.Abort):
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED:  # typer turns a stray KeyboardInterrupt into exit code 130
        print("harness: interrupted; no record was written", file=sys.stderr)
    return code if isinstance(code, int) else 0

