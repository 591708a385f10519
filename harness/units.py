"""Units: numbers printed with SI prefixes, one convention for every table and figure."""

from __future__ import annotations


def si(value: float | None, unit: str) -> str:
    """``si(3.2e12, "FLOP/s")`` → ``"3.2 TFLOP/s"``; None → ``"unknown"`` (never a guess)."""
    if value is None:
        return "unknown"
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def usd(value: float | None) -> str:
    """Dollars: whole above $100, cents below, two significant figures under a cent; None → n/a."""
    if value is None:
        return "n/a"
    if value >= 100:
        return f"${value:,.0f}"
    return f"${value:,.2f}" if value >= 0.01 else f"${value:.2g}"
