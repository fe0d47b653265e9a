"""Units people type: bandwidth as bytes per second (pure)."""

from __future__ import annotations

_RATE_UNITS = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9}


def parse_rate(text: str) -> float:
    """'50M' -> 50e6 bytes per second; ValueError with a readable message otherwise."""
    number = text.rstrip("KMGkmg")
    unit = text[len(number) :].upper()
    try:
        value = float(number) * _RATE_UNITS[unit]
    except (ValueError, KeyError):
        raise ValueError(f"bandwidth {text!r}: bytes per second, e.g. 50M") from None
    if value <= 0:
        raise ValueError(f"bandwidth {text!r} must be positive")
    return value
