"""Opaque page cursors. Lists page by key (the last row seen), never by offset, so that
page 20,000 of a million certificates costs what page 1 does."""

from __future__ import annotations

import base64
import binascii
import datetime as dt

from fleetpki.core.errors import BadInput

_SERIAL_HEX = set("0123456789abcdef")


def encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def decode(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadInput("invalid cursor: pass back the next_cursor of the previous page "
                       "unchanged") from None


def certificate_cursor(not_after: dt.datetime, serial: str) -> str:
    return encode(f"{not_after.isoformat()}|{serial}")


def parse_certificate_cursor(cursor: str) -> tuple[dt.datetime, str]:
    moment, _, serial = decode(cursor).partition("|")
    try:
        when = dt.datetime.fromisoformat(moment)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None or not serial or not set(serial) <= _SERIAL_HEX:
        raise BadInput("invalid cursor: pass back the next_cursor of the previous page "
                       "unchanged")
    return when, serial
