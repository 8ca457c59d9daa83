"""What operators type into the API and the dashboard, read the same way by both: serials,
serial prefixes and times. Anything unreadable is BadInput, with what to type instead."""

from __future__ import annotations

import datetime as dt

from fleetpki.core.errors import BadInput
from fleetpki.core.serials import parse_serial

_HEX = set("0123456789abcdef")


def serial(text: str) -> int:
    try:
        return parse_serial(text)
    except ValueError as error:
        raise BadInput(str(error)) from None


def serial_prefix(text: str) -> str:
    """Leading hex digits, as the store keeps serials: lower case, no colons, no leading
    zeros."""
    cleaned = text.strip().lower().replace(":", "")
    if not cleaned or not set(cleaned) <= _HEX:
        raise BadInput("serial: give hexadecimal digits")
    return cleaned.lstrip("0") or "0"


def moment(text: str, name: str) -> dt.datetime:
    """An ISO 8601 date or time; without an offset it is UTC, the only zone the store knows."""
    try:
        return utc(dt.datetime.fromisoformat(text))
    except ValueError:
        raise BadInput(f"{name}: {text!r} is not a date or time (use e.g. 2027-01-31 or "
                       "2027-01-31T12:00:00Z)") from None


def utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
