"""Signing CRLs (RFC 5280 §5) by assembling the TBSCertList DER directly, then signing it once.

cryptography's CertificateRevocationListBuilder copies its entries on every
add_revoked_certificate (quadratic: 40,000 entries take seconds, a million would take about half
an hour) and cannot write expiredCertsOnCRL. Here, as in certificate_template, everything that is
the same for the whole CRL (issuer, algorithm, extensions, the entry extensions of each reason)
is encoded once; each entry is appended to one buffer as it streams past, so a million entries
never exist as a million Python objects at once. The output is byte-identical to the builder's
for the same inputs (tests/unit/ca/test_crl_signing.py holds that line); entries keep the order
they arrive in.

The root's CRL, covering its issuing CAs, is signed here during the offline step; the per-issuer
publishing pipeline builds on the same function.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

from fleetpki.ca.signature import signature_algorithm
from fleetpki.ca.signer import Signer
from fleetpki.core import der
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import RevokedEntry

__all__ = ["CrlFields", "sign_crl"]


@dataclasses.dataclass(frozen=True, slots=True)
class CrlFields:
    """What a CRL says besides its entries. Checked on construction."""

    number: int  # cRLNumber (RFC 5280 §5.2.3)
    this_update: dt.datetime
    next_update: dt.datetime
    # issuingDistributionPoint with fullName=[URI] (§5.2.5); None: no IDP
    distribution_point: str | None = None
    only_user_certs: bool = False  # IDP onlyContainsUserCerts; needs distribution_point
    delta_of: int | None = None  # deltaCRLIndicator: the base CRL's number, critical (§5.2.4)
    freshest: str | None = None  # freshestCRL (§5.2.6): one DistributionPoint fullName URI
    # expiredCertsOnCRL (ITU-T X.509 (10/2016), OID 2.5.29.60): the CRL keeps the entries of
    # certificates that expired at or after this time
    expired_certs_since: dt.datetime | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.number < _TWENTY_OCTETS:
            raise ValueError("RFC 5280 §5.2.3: cRLNumber is a non-negative integer of at most "
                             "20 octets")
        if self.next_update <= self.this_update:
            raise ValueError("nextUpdate must be later than thisUpdate")
        if self.only_user_certs and self.distribution_point is None:
            raise ValueError("onlyContainsUserCerts is written in the issuingDistributionPoint: "
                             "give its distribution_point")
        if self.delta_of is not None and not 0 <= self.delta_of < self.number:
            raise ValueError("RFC 5280 §5.2.4: a delta CRL's base CRL number is one of an "
                             "earlier CRL, below the delta's own cRLNumber")
        for uri in (self.distribution_point, self.freshest):
            if uri is not None and not (uri.isascii() and uri):
                raise ValueError(f"a distribution point is an ASCII URI (IA5String), not "
                                 f"{uri!r}")


def sign_crl(signer: Signer, fields: CrlFields, entries: Iterable[RevokedEntry]) -> bytes:
    """DER of the signed CRL. Streams `entries` once (it may be a generator from the store).

    Times are written in whole seconds (UTCTime through 2049, RFC 5280 §5.1.2.4-6); an entry
    with reason None or unspecified has no reasonCode (§5.3.1), and a `removed` entry has
    reasonCode removeFromCRL whatever its reason (§5.2.4)."""
    algorithm, sign = signature_algorithm(signer)
    tbs = _tbs_cert_list(signer, fields, algorithm, _revoked_certificates(entries))
    signature = der.tlv(der.BIT_STRING, b"\x00" + sign(tbs))
    # CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue }
    return b"".join((der.header(der.SEQUENCE, len(tbs) + len(algorithm) + len(signature)),
                     tbs, algorithm, signature))


_TWENTY_OCTETS = 1 << 159  # the largest positive INTEGER that fits 20 content octets, plus one
_VERSION_2 = der.integer(1)
_CRL_EXTENSIONS_TAG = 0  # crlExtensions [0] EXPLICIT Extensions
_URI_TAG = 6  # GeneralName uniformResourceIdentifier [6] IMPLICIT IA5String
_AKI = der.oid("2.5.29.35")
_CRL_NUMBER = der.oid("2.5.29.20")
_ISSUING_DISTRIBUTION_POINT = der.oid("2.5.29.28")
_DELTA_CRL_INDICATOR = der.oid("2.5.29.27")
_FRESHEST_CRL = der.oid("2.5.29.46")
_EXPIRED_CERTS_ON_CRL = der.oid("2.5.29.60")
_REASON_CODE = der.oid("2.5.29.21")
_INVALIDITY_DATE = der.oid("2.5.29.24")

# CRLReason ::= ENUMERATED (RFC 5280 §5.3.1). 'unspecified' maps to None: the extension is left
# out rather than say nothing.
_REASON_CODES: dict[RevocationReason, int | None] = {
    RevocationReason.unspecified: None,
    RevocationReason.key_compromise: 1,
    RevocationReason.ca_compromise: 2,
    RevocationReason.affiliation_changed: 3,
    RevocationReason.superseded: 4,
    RevocationReason.cessation_of_operation: 5,
    RevocationReason.certificate_hold: 6,
    RevocationReason.privilege_withdrawn: 9,
    RevocationReason.aa_compromise: 10,
}
_REMOVE_FROM_CRL = 8


def _extension(oid: bytes, value: bytes, *, critical: bool = False) -> bytes:
    """Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }"""
    return der.sequence(oid, der.BOOLEAN_TRUE if critical else b"",
                        der.tlv(der.OCTET_STRING, value))


# The reasonCode extension of each code, encoded once.
_REASON_EXTENSIONS = {code: _extension(_REASON_CODE, der.enumerated(code))
                      for code in (*(c for c in _REASON_CODES.values() if c is not None),
                                   _REMOVE_FROM_CRL)}
# crlEntryExtensions of an entry with nothing but a reason, keyed by id() of the reason (None or
# an enum member, all singletons): Enum.__hash__ is Python code, too slow for a million look-ups.
_EXTENSIONS_BY_REASON: dict[int, bytes] = {id(None): b""} | {
    id(reason): der.sequence(_REASON_EXTENSIONS[code]) if code is not None else b""
    for reason, code in _REASON_CODES.items()
}
# An invalidityDate extension is these octets, then the 17-octet GeneralizedTime (§5.3.2).
_INVALIDITY_DATE_PREFIX = _extension(_INVALIDITY_DATE, bytes(17))[:-17]


def _revoked_certificates(entries: Iterable[RevokedEntry]) -> bytearray:
    """The content of revokedCertificates (RFC 5280 §5.1.2.6), in the order given:
    SEQUENCE { userCertificate, revocationDate, crlEntryExtensions OPTIONAL } per entry.

    The hot path of a large CRL: local names, table look-ups, appends to one buffer. Revocation
    times are encoded afresh for every entry, deliberately: each entry from a store carries a new
    datetime object, and finding a shared second in a cache (hashing an aware datetime, or
    computing its second) cost as much as der.time's table encoding in measurements, and more
    when few entries share a second."""
    out = bytearray()
    by_reason = _EXTENSIONS_BY_REASON
    encode_time = der.time
    for entry in entries:
        serial = entry.serial
        when = encode_time(entry.revoked_at)
        if entry.invalidity_date is None and not entry.removed:
            extensions = by_reason[id(entry.reason)]
        else:
            extensions = _entry_extensions(entry)
        size = serial.bit_length() // 8 + 1  # minimal two's complement: room for a sign bit
        length = 2 + size + len(when) + len(extensions)
        if length < 0x80 and serial >= 0:
            # The SEQUENCE header, the INTEGER header and the serial's octets in one to_bytes:
            # 30 <length> 02 <size> <serial>. Every real entry fits a one-octet length.
            out += (((0x30 << 24 | length << 16 | 0x02 << 8 | size) << (8 * size) | serial)
                    .to_bytes(size + 4, "big"))
            out += when
            out += extensions
        else:  # a negative (refused by der.integer) or absurdly long serial
            out += der.sequence(der.integer(serial), when, extensions)
    return out


def _entry_extensions(entry: RevokedEntry) -> bytes:
    """crlEntryExtensions of an entry with an invalidity date or removed from the base CRL."""
    code = _REMOVE_FROM_CRL if entry.removed else (
        None if entry.reason is None else _REASON_CODES[entry.reason])
    reason = b"" if code is None else _REASON_EXTENSIONS[code]
    if entry.invalidity_date is None:
        return der.sequence(reason)
    # §5.3.2: invalidityDate is always GeneralizedTime, in whole seconds.
    return der.sequence(reason, _INVALIDITY_DATE_PREFIX,
                        der.generalized_time(entry.invalidity_date))


def _tbs_cert_list(signer: Signer, fields: CrlFields, algorithm: bytes, revoked: bytearray
                   ) -> bytes:
    """TBSCertList (RFC 5280 §5.1.2), version 2; `revoked` is revokedCertificates' content."""
    parts: list[bytes | bytearray] = [
        _VERSION_2,
        algorithm,
        signer.certificate.subject.public_bytes(),
        der.time(fields.this_update),
        der.time(fields.next_update),
    ]
    if revoked:  # §5.1.2.6: absent when nothing is revoked, never an empty SEQUENCE
        parts += (der.header(der.SEQUENCE, len(revoked)), revoked)
    parts.append(der.context(_CRL_EXTENSIONS_TAG, der.sequence(*_crl_extensions(signer, fields))))
    return b"".join((der.header(der.SEQUENCE, sum(len(p) for p in parts)), *parts))


def _crl_extensions(signer: Signer, fields: CrlFields) -> list[bytes]:
    """AKI and cRLNumber (both required, §5.2.1, §5.2.3), then what `fields` asks for."""
    extensions = [
        _extension(_AKI, signer.authority_key_identifier().public_bytes()),
        _extension(_CRL_NUMBER, der.integer(fields.number)),
    ]
    if fields.distribution_point is not None:
        # §5.2.5: critical. IssuingDistributionPoint ::= SEQUENCE { distributionPoint [0],
        # onlyContainsUserCerts [1] IMPLICIT BOOLEAN DEFAULT FALSE, ... }
        only_user = (der.context(1, b"\xff", constructed=False) if fields.only_user_certs
                     else b"")
        extensions.append(_extension(_ISSUING_DISTRIBUTION_POINT, der.sequence(
            _distribution_point_name(fields.distribution_point), only_user), critical=True))
    if fields.delta_of is not None:
        # §5.2.4: BaseCRLNumber, critical.
        extensions.append(_extension(_DELTA_CRL_INDICATOR, der.integer(fields.delta_of),
                                     critical=True))
    if fields.freshest is not None:
        # §5.2.6: CRLDistributionPoints syntax, one DistributionPoint, non-critical.
        extensions.append(_extension(_FRESHEST_CRL, der.sequence(der.sequence(
            _distribution_point_name(fields.freshest)))))
    if fields.expired_certs_since is not None:
        # ITU-T X.509 (10/2016): ExpiredCertsOnCRL ::= GeneralizedTime, non-critical.
        extensions.append(_extension(_EXPIRED_CERTS_ON_CRL,
                                     der.generalized_time(fields.expired_certs_since)))
    return extensions


def _distribution_point_name(uri: str) -> bytes:
    """distributionPoint [0] { fullName [0] IMPLICIT GeneralNames { [6] uri } }: explicit outer
    tag, as DistributionPointName is a CHOICE (X.680 §31.2.7)."""
    return der.context(0, der.context(0, der.context(_URI_TAG, uri.encode("ascii"),
                                                     constructed=False)))
