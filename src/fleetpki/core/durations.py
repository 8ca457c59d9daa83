"""Durations as profiles write them: explicit units, no floats, no ambiguity."""

from __future__ import annotations

import datetime as dt
import re

_DURATION = re.compile(r"^(\d+)([smhd])$")
# Longer than any certificate, schedule or timeout could need, and far inside what datetime
# arithmetic takes (year 9999): a larger number is a typo, and refused.
MAX_DURATION = dt.timedelta(days=200 * 365)


def parse_duration(text: str) -> dt.timedelta:
    """'90d', '12h', '30m', '45s' as a timedelta. Durations in profiles are always explicit."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError(f"duration {text!r} must be a number followed by s, m, h or d "
                         f"(e.g. 90d)")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    digits = match.group(1)
    if len(digits) > 12 or int(digits) * unit > MAX_DURATION.total_seconds():
        raise ValueError(f"duration {text!r} is longer than {MAX_DURATION.days} days")
    return dt.timedelta(seconds=int(digits) * unit)


def format_duration(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"

