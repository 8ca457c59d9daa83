"""The admin API's JSON shapes. Inputs refuse unknown fields: a misspelt field is an error
the caller sees, not a setting silently ignored."""

from __future__ import annotations

import datetime as dt
from typing import Any, Generic, Literal, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import BaseModel, ConfigDict, Field, field_validator

from fleetpki.core.api_tokens import ApiToken, Role
from fleetpki.core.discovery_records import DiscoveredCertificate
from fleetpki.core.enrollment_records import BootstrapCredential, PendingEnrollment
from fleetpki.core.inventory_records import DeviceSummary
from fleetpki.core.keys import describe
from fleetpki.core.profile import Profile
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import AuditEntry, CARecord, IssuedCertificate
from fleetpki.core.serials import serial_hex

T = TypeVar("T")
ReasonName = Literal[tuple(r.value for r in RevocationReason)]  # type: ignore[valid-type]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Problem(BaseModel):
    """Every error answer: a code a program can branch on, a message a person can act on."""

    error: str
    message: str
    details: list[dict[str, str]] | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": text} for status, text in (
        (400, "Bad input (the message says which and why)"),
        (401, "No token, or one unknown, expired or revoked"),
        (403, "The token's role does not allow this"),
        (404, "No such resource"),
        (409, "Conflicts with the current state (e.g. already revoked)"),
        (413, "Request body too large"),
        (415, "A body that is not sent as application/json"),
        (422, "A field is missing, unknown or of the wrong type"),
    )}


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next page; absent on the last page.")


class CertificateOut(BaseModel):
    serial: str = Field(description="Lower-case hexadecimal.")
    issuer: str
    device_id: str
    profile: str
    subject: str
    sans: list[str]
    key_spec: str
    not_before: dt.datetime
    not_after: dt.datetime
    issued_at: dt.datetime
    status: Literal["valid", "expired", "revoked"]
    revoked_at: dt.datetime | None = None
    revocation_reason: str | None = None
    invalidity_date: dt.datetime | None = None

    @classmethod
    def of(cls, cert: IssuedCertificate, now: dt.datetime) -> CertificateOut:
        return cls(serial=serial_hex(cert.serial), issuer=cert.issuer,
                   device_id=cert.device_id, profile=cert.profile, subject=cert.subject,
                   sans=list(cert.sans), key_spec=cert.key_spec, not_before=cert.not_before,
                   not_after=cert.not_after, issued_at=cert.issued_at,
                   status=cert.status(now).value, revoked_at=cert.revoked_at,
                   revocation_reason=(cert.revocation_reason.value
                                      if cert.revocation_reason else None),
                   invalidity_date=cert.invalidity_date)


class CertificateDetail(CertificateOut):
    pem: str

    @classmethod
    def of(cls, cert: IssuedCertificate, now: dt.datetime) -> CertificateDetail:
        pem = x509.load_der_x509_certificate(cert.der).public_bytes(Encoding.PEM).decode()
        return cls(**CertificateOut.of(cert, now).model_dump(), pem=pem)


class DeviceOut(BaseModel):
    device_id: str
    certificates: int
    valid: int = Field(description="Certificates unexpired and unrevoked now.")
    profiles: list[str]
    first_issued: dt.datetime
    last_issued: dt.datetime
    latest_not_after: dt.datetime

    @classmethod
    def of(cls, device: DeviceSummary) -> DeviceOut:
        return cls(device_id=device.device_id, certificates=device.certificates,
                   valid=device.valid, profiles=list(device.profiles),
                   first_issued=device.first_issued, last_issued=device.last_issued,
                   latest_not_after=device.latest_not_after)


class DeviceDetail(DeviceOut):
    history: list[CertificateOut] = Field(description="Newest first.")


class RevokeIn(Strict):
    reason: ReasonName = "unspecified"  # type: ignore[valid-type]
    invalidity_date: dt.datetime | None = Field(
        None, description="When the key was known or suspected to be compromised (not in the "
        "future).")

    @field_validator("invalidity_date", mode="before")
    @classmethod
    def _iso_text_only(cls, value: object) -> object:
        """Only ISO 8601 text: a bare number would be read as seconds since 1970."""
        if value is not None and not isinstance(value, str):
            raise ValueError("give the time as ISO 8601 text, e.g. 2027-01-31T12:00:00Z")
        return value


class RevokeDeviceIn(Strict):
    reason: ReasonName = "unspecified"  # type: ignore[valid-type]


class CAOut(BaseModel):
    name: str
    role: str
    parent: str | None
    subject: str
    key_spec: str
    not_before: dt.datetime
    not_after: dt.datetime
    key_online: bool = Field(description="False while the key is kept offline.")
    imported: bool
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, record: CARecord) -> CAOut:
        cert = x509.load_der_x509_certificate(record.certificate_der)
        return cls(name=record.name, role=record.role.value, parent=record.parent,
                   subject=cert.subject.rfc4514_string(),
                   key_spec=str(describe(cert.public_key())),
                   not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                   key_online=record.key_file is not None, imported=record.imported,
                   revoked_at=record.revoked_at)


class ProfileOut(BaseModel):
    name: str
    description: str
    issuer: str
    kind: str
    key_algorithms: list[str]
    rsa_min_bits: int
    validity_default_days: float
    validity_max_days: float
    key_usage: list[str]
    extended_key_usage: list[str]
    manual_approval: bool
    server_keygen: bool
    renewal_window_fraction: float
    renewal_grace_days: float
    crl_distribution_points: list[str]
    ocsp: list[str]

    @classmethod
    def of(cls, profile: Profile) -> ProfileOut:
        day = dt.timedelta(days=1)
        return cls(
            name=profile.name, description=profile.description, issuer=profile.issuer,
            kind=profile.kind.value, key_algorithms=sorted(profile.keys.allowed),
            rsa_min_bits=profile.keys.rsa_min_bits,
            validity_default_days=profile.validity.default / day,
            validity_max_days=profile.validity.maximum / day,
            key_usage=sorted(profile.key_usage),
            extended_key_usage=[o.dotted_string for o in profile.extended_key_usage],
            manual_approval=profile.enrollment.manual_approval,
            server_keygen=profile.enrollment.server_keygen,
            renewal_window_fraction=profile.renewal.window_fraction,
            renewal_grace_days=profile.renewal.grace_after_expiry / day,
            crl_distribution_points=list(profile.urls.crl_distribution_points),
            ocsp=list(profile.urls.ocsp))


class CredentialIn(Strict):
    profile: str = Field(min_length=1, max_length=64)
    lifetime_hours: float = Field(24.0, gt=0, le=3 * 366 * 24)
    max_uses: int = Field(1, ge=1, le=10_000_000)
    device_id: str | None = Field(None, min_length=1, max_length=256)
    id: str | None = Field(None, min_length=1, max_length=128,
                           description="Default: generated.")


class CredentialOut(BaseModel):
    id: str
    profile: str
    device_id: str | None
    max_uses: int
    uses: int
    expires_at: dt.datetime
    created_at: dt.datetime
    created_by: str
    disabled_at: dt.datetime | None

    @classmethod
    def of(cls, c: BootstrapCredential) -> CredentialOut:
        return cls(id=c.id, profile=c.profile, device_id=c.device_id, max_uses=c.max_uses,
                   uses=c.uses, expires_at=c.expires_at, created_at=c.created_at,
                   created_by=c.created_by, disabled_at=c.disabled_at)


class CredentialCreated(CredentialOut):
    secret: str = Field(description="Shown once: only its hash is stored.")


class PendingOut(BaseModel):
    id: str
    profile: str
    device_id: str
    actor: str
    requested_at: dt.datetime
    state: str
    decided_by: str | None
    decided_at: dt.datetime | None
    serial: str | None
    issuer: str | None
    reason: str

    @classmethod
    def of(cls, p: PendingEnrollment) -> PendingOut:
        return cls(id=p.id, profile=p.profile, device_id=p.device_id, actor=p.actor,
                   requested_at=p.requested_at, state=p.state.value, decided_by=p.decided_by,
                   decided_at=p.decided_at,
                   serial=serial_hex(p.serial) if p.serial is not None else None,
                   issuer=p.issuer, reason=p.reason)


class RejectIn(Strict):
    reason: str = Field(min_length=1, max_length=1000)


class AuditEntryOut(BaseModel):
    seq: int
    at: dt.datetime
    actor: str
    action: str
    subject: str
    details: dict[str, str]
    hash: str

    @classmethod
    def of(cls, e: AuditEntry) -> AuditEntryOut:
        return cls(seq=e.seq, at=e.at, actor=e.actor, action=e.action, subject=e.subject,
                   details=e.details, hash=e.hash)


class AuditVerification(BaseModel):
    intact: bool
    entries: int
    head_seq: int
    problem: str | None = None


class TokenIn(Strict):
    name: str = Field(min_length=1, max_length=128)
    role: Role
    lifetime_days: float = Field(90.0, gt=0, le=2 * 366)


class TokenOut(BaseModel):
    id: str
    name: str
    role: Role
    created_at: dt.datetime
    created_by: str
    expires_at: dt.datetime
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, t: ApiToken) -> TokenOut:
        return cls(id=t.id, name=t.name, role=t.role, created_at=t.created_at,
                   created_by=t.created_by, expires_at=t.expires_at, revoked_at=t.revoked_at)


class TokenCreated(TokenOut):
    token: str = Field(description="Shown once: only the hash of its secret is stored.")


class WhoAmI(BaseModel):
    actor: str
    role: Role
    token_id: str
    expires_at: dt.datetime


class SummaryOut(BaseModel):
    computed_at: dt.datetime | None = Field(
        description="When the summary was computed; null before the first pass.")
    seconds: float | None
    summary: dict[str, Any] | None


class DiscoveredOut(BaseModel):
    endpoint: str
    position: int = Field(description="0: the certificate the endpoint served; 1..: its chain.")
    subject: str
    issuer_name: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    key_spec: str
    signature_algorithm: str
    issued_by_us: str | None = Field(description="Our CA that signed it; null: not ours.")
    first_seen: dt.datetime | None
    last_seen: dt.datetime | None
    fingerprint: str

    @classmethod
    def of(cls, d: DiscoveredCertificate) -> DiscoveredOut:
        return cls(endpoint=d.endpoint, position=d.position, subject=d.subject,
                   issuer_name=d.issuer_name, serial=serial_hex(d.serial),
                   not_before=d.not_before, not_after=d.not_after, key_spec=d.key_spec,
                   signature_algorithm=d.signature_algorithm, issued_by_us=d.issued_by_us,
                   first_seen=d.first_seen, last_seen=d.last_seen, fingerprint=d.fingerprint)
