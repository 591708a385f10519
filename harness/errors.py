"""Errors the CLI turns into one line on stderr and exit code 2, and the interrupt (exit code 130).

Messages stay short: a value echoed back is cut to :data:`ECHO_CHARS` characters with its length
stated (:func:`shorten`), and the CLI prints every error as one line of at most
:data:`MAX_LINE_CHARS` characters (:func:`one_line`)."""

from __future__ import annotations

from typing import Any

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
ECHO_CHARS = 80
MAX_LINE_CHARS = 300


def shorten(value: Any, limit: int = ECHO_CHARS) -> str:
    """`value`'s repr, cut to `limit` characters with the full length stated when longer:
    ``'aaaa...' (1,048,576 characters)``."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def one_line(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """`text` on one line (line breaks and tabs become spaces, control characters are escaped)
    and at most `limit` characters, ending in "..." where it was cut."""
    flat = " ".join(str(text).split())
    flat = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in flat)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


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
