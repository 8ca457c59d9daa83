"""Durations as profiles write them: explicit units, no floats, no ambiguity."""

from __future__ import annotations

import datetime as dt
import re

_DURATION = re.compile(r"^(\d+)([smhd])$")


def parse_duration(text: str) -> dt.timedelta:
    """'90d', '12h', '30m', '45s' as a timedelta. Durations in profiles are always explicit."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError(f"duration {text!r} must be a number followed by s, m, h or d (e.g. 90d)")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return dt.timedelta(seconds=int(match.group(1)) * unit)


def format_duration(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"

