"""Frozen records that cross the boundaries between roles (store <-> ra <-> front ends)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum

from fleetpki.core.reasons import RevocationReason


class CertificateStatus(enum.Enum):
    valid = "valid"
    revoked = "revoked"
    expired = "expired"


class CARole(enum.Enum):
    root = "root"
    issuing = "issuing"


@dataclasses.dataclass(frozen=True, slots=True)
class CARecord:
    name: str
    role: CARole
    certificate_der: bytes
    parent: str | None  # name of the CA that signed this one; None for a root
    key_file: str | None  # file name in the key directory; None while the key is offline
    created_at: dt.datetime
    imported: bool = False
    revoked_at: dt.datetime | None = None
    revocation_reason: RevocationReason | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate as the store knows it. `der` is the exact signed bytes returned to clients."""

    serial: int
    issuer: str
    device_id: str
    profile: str
    subject: str
    sans: tuple[str, ...]
    key_spec: str
    key_fingerprint: str
    not_before: dt.datetime
    not_after: dt.datetime
    issued_at: dt.datetime
    der: bytes
    revoked_at: dt.datetime | None = None
    revocation_reason: RevocationReason | None = None
    crl_shard: int | None = None  # which CRL partition lists it (core.revocation_policy)
    invalidity_date: dt.datetime | None = None  # when the key is known or suspected bad

    def status(self, now: dt.datetime) -> CertificateStatus:
        if self.revoked_at is not None:
            return CertificateStatus.revoked
        if self.not_after <= now:
            return CertificateStatus.expired
        return CertificateStatus.valid


@dataclasses.dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: dt.datetime
    actor: str
    action: str
    subject: str  # what the action was about: a serial, a CA name, a device id
    details: dict[str, str]
    prev_hash: str
    hash: str


@dataclasses.dataclass(frozen=True, slots=True)
class RevokedEntry:
    """One line of a CRL (RFC 5280 §5.3). `removed` marks a removeFromCRL entry of a delta CRL:
    a certificate whose hold was lifted after the base CRL was issued."""

    serial: int
    revoked_at: dt.datetime
    reason: RevocationReason | None = None
    invalidity_date: dt.datetime | None = None
    removed: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class RevocationStatus:
    """What an OCSP responder needs to know about one serial, and nothing more."""

    serial: int
    not_after: dt.datetime
    revoked_at: dt.datetime | None = None
    reason: RevocationReason | None = None
    invalidity_date: dt.datetime | None = None
