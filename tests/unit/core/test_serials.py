"""Serials: positive, >= 64 bits of CSPRNG output, at most 20 octets, parsed as operators paste."""

from __future__ import annotations

import pytest
from cryptography import x509

from fleetpki.core.serials import RandomSerials, parse_serial, serial_hex


def test_serials_are_positive_long_and_fit_20_octets() -> None:
    source = RandomSerials()
    serials = [source.next_serial() for _ in range(10_000)]
    assert len(set(serials)) == len(serials)
    for serial in serials:
        assert serial > 0
        assert serial.bit_length() > 64
        # DER INTEGER content: magnitude plus a sign octet when the top bit is set.
        assert (serial.bit_length() + 8) // 8 <= 20


def test_random_serial_number_of_cryptography_is_not_used_blindly() -> None:
    # cryptography's helper gives 159 bits; ours gives 127 to keep DER at 16 octets.
    assert x509.random_serial_number().bit_length() <= 159


@pytest.mark.parametrize("text", ["0a:1b:2c", "0x0a1b2c", "A1B2C", " a1b2c "])
def test_parse_serial_accepts_common_forms(text: str) -> None:
    assert serial_hex(parse_serial(text)) == text.strip().lower().replace(":", "").removeprefix(
        "0x").lstrip("0")


@pytest.mark.parametrize("text", ["", "xyz", "0", "1" * 41])
def test_parse_serial_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError):
        parse_serial(text)
