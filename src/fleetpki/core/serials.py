"""Certificate serial numbers.

RFC 5280 §4.1.2.2: positive, at most 20 octets. CA/Browser Forum BR §7.1 (adopted here for
devices too): at least 64 bits of CSPRNG output, so that serials cannot be predicted. We take
127 bits from the OS CSPRNG, which keeps the DER encoding at 16 octets (no sign byte needed) and
leaves collision odds negligible; uniqueness per issuer is still enforced by the store.
"""

from __future__ import annotations

import secrets
from typing import Protocol

SERIAL_BITS = 127


class SerialSource(Protocol):
    def next_serial(self) -> int: ...


class RandomSerials:
    def next_serial(self) -> int:
        while True:
            serial = secrets.randbits(SERIAL_BITS)
            # Ensure at least 64 significant bits so no serial is trivially short.
            if serial >> 64:
                return serial


def serial_hex(serial: int) -> str:
    """Canonical text form used in the store and the CLI: lower-case hex, no leading zeros."""
    return format(serial, "x")


def parse_serial(text: str) -> int:
    """Accept hex with or without colons or a 0x prefix, as operators paste them."""
    cleaned = text.strip().lower().replace(":", "")
    cleaned = cleaned.removeprefix("0x")
    if not cleaned or len(cleaned) > 40:
        raise ValueError(f"not a serial number: {text!r}")
    try:
        value = int(cleaned, 16)
    except ValueError:
        raise ValueError(f"not a hexadecimal serial number: {text!r}") from None
    if value <= 0:
        raise ValueError("serial numbers are positive (RFC 5280 §4.1.2.2)")
    return value
