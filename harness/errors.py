"""Errors the CLI turns into one line on stderr and exit code 2, and the interrupt (exit code 130)."""

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


class HarnessError(Exception):
    """Base for errors caused by the user's input or environment, never by a bug."""


class ConfigError(HarnessError):
    """A config value is invalid; names the field and what is allowed."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class UncountedOpError(HarnessError):
    """An op that carries real arithmetic (attention) was dispatched without a FLOP formula."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM during a run: nothing was stored."""
