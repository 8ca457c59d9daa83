"""The few DER (X.690) encodings that certificate, CRL, OCSP and CMS assembly need, and nothing
more.

Kept deliberately small: lengths, tags, INTEGER, ENUMERATED, OBJECT IDENTIFIER, OCTET STRING,
SET OF, Time, and reading the top-level elements of a SEQUENCE. Certificates and CRLs built with
it are checked byte for byte against cryptography's own encoder in
tests/unit/ca/test_certificate_assembly.py and tests/unit/ca/test_crl_signing.py; CMS messages
are read back by openssl and the SCEP clients in tests/integration.
"""

from __future__ import annotations

import datetime as dt

SEQUENCE = 0x30
SET = 0x31
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
ENUMERATED = 0x0A
BOOLEAN_TRUE = b"\x01\x01\xff"
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18


def length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + length(len(body)) + body


def header(tag: int, size: int) -> bytes:
    """Tag and length alone, for an element whose `size` content octets are written separately
    (a large body assembled elsewhere need not be copied once more to prepend them)."""
    return bytes((tag,)) + length(size)


def context(number: int, body: bytes, *, constructed: bool = True) -> bytes:
    """A context-specific tag [number] (0-30) around `body`: constructed for EXPLICIT tagging and
    for IMPLICIT tagging of a constructed type, primitive for IMPLICIT tagging of a primitive."""
    if not 0 <= number <= 30:
        raise ValueError("only low tag numbers are needed here")
    return tlv((0xA0 if constructed else 0x80) | number, body)


def sequence(*parts: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(parts))


def set_of(*parts: bytes) -> bytes:
    """X.690 §11.6: the elements of a DER SET OF are sorted by their encodings."""
    return tlv(SET, b"".join(sorted(parts)))


def octet_string(value: bytes) -> bytes:
    return tlv(OCTET_STRING, value)


def integer(value: int) -> bytes:
    """Positive integers only (serials, versions): the minimal two's-complement form."""
    if value < 0:
        raise ValueError("negative integers are not needed here")
    return tlv(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def signed_integer(value: int) -> bytes:
    """Any integer, for serials others chose: a device's self-signed certificate may carry a
    negative one, which RFC 5280 forbids but clients still send."""
    if value >= 0:
        return integer(value)
    size = (value + 1).bit_length() // 8 + 1
    return tlv(INTEGER, value.to_bytes(size, "big", signed=True))


def enumerated(value: int) -> bytes:
    """ENUMERATED is encoded like INTEGER (X.690 §8.4); small non-negative values only."""
    return bytes((ENUMERATED,)) + integer(value)[1:]


def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray(_base128(40 * arcs[0] + arcs[1]))
    for arc in arcs[2:]:
        body += _base128(arc)
    return tlv(OID, bytes(body))


def time(moment: dt.datetime) -> bytes:
    """RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; always seconds, Z.

    Digits come from a table, in one join: strftime costs several times more, and a CRL
    encodes a time for every entry."""
    moment = moment.astimezone(dt.UTC)
    two, year = _TWO_DIGITS, moment.year
    if not 1950 <= year < 2050:
        return generalized_time(moment)
    return b"".join((_UTC_TIME_HEADER, two[year % 100], two[moment.month], two[moment.day],
                     two[moment.hour], two[moment.minute], two[moment.second], b"Z"))


def generalized_time(moment: dt.datetime) -> bytes:
    """GeneralizedTime in the one form RFC 5280 §4.1.2.5.2 allows, YYYYMMDDHHMMSSZ (whole
    seconds, no fraction), whatever the year: what invalidityDate (§5.3.2) always uses."""
    moment = moment.astimezone(dt.UTC)
    two, year = _TWO_DIGITS, moment.year
    return b"".join((_GENERALIZED_TIME_HEADER, two[year // 100], two[year % 100],
                     two[moment.month], two[moment.day], two[moment.hour], two[moment.minute],
                     two[moment.second], b"Z"))


_UTC_TIME_HEADER = bytes((UTC_TIME, 13))
_GENERALIZED_TIME_HEADER = bytes((GENERALIZED_TIME, 15))
_TWO_DIGITS = [b"%02d" % n for n in range(100)]


def elements(der: bytes) -> list[bytes]:
    """The encoded elements (tag, length and content) directly inside a SEQUENCE."""
    if not der or der[0] != SEQUENCE:
        raise ValueError("not a DER SEQUENCE")
    start, end = _header(der, 0)
    out = []
    while start < end:
        _, content_end = _header(der, start)
        out.append(der[start:content_end])
        start = content_end
    return out


def content(element: bytes) -> bytes:
    """The content octets of one encoded element."""
    start, end = _header(element, 0)
    return element[start:end]


def _header(der: bytes, offset: int) -> tuple[int, int]:
    """(start of content, end of content) of the element at offset."""
    first = der[offset + 1]
    if first < 0x80:
        start = offset + 2
        size = first
    else:
        count = first & 0x7F
        start = offset + 2 + count
        size = int.from_bytes(der[offset + 2:start], "big")
    if start + size > len(der):
        raise ValueError("truncated DER")
    return start, start + size


def _base128(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))
