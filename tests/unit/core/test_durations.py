from __future__ import annotations

import datetime as dt

import pytest

from fleetpki.core.durations import MAX_DURATION, format_duration, parse_duration


@pytest.mark.parametrize(("text", "expected"), [
    ("90d", dt.timedelta(days=90)), (" 12h ", dt.timedelta(hours=12)),
    ("30m", dt.timedelta(minutes=30)), ("45s", dt.timedelta(seconds=45)),
    ("0d", dt.timedelta(0)), (f"{MAX_DURATION.days}d", MAX_DURATION),
])
def test_parses_explicit_units(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize(("text", "says"), [
    ("90", "followed by s, m, h or d"), ("1.5d", "followed by"), ("-1d", "followed by"),
    ("99999999999999999999d", "longer than"),
    (f"{MAX_DURATION.days + 1}d", "longer than"), ("999999999999s", "longer than"),
])
def test_refuses_with_a_message(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_duration(text)
