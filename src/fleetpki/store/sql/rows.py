"""Row <-> record conversion, kept in one place so every query returns the same shapes."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from fleetpki.core.errors import AuditChainBroken
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import AuditEntry, CARecord, CARole, IssuedCertificate
from fleetpki.core.serials import serial_hex


def utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def stored_moment(value: str | dt.datetime) -> dt.datetime:
    """A stored UTC timestamp as an aware datetime, from SQLite's text (raw driver reads) or a
    driver datetime."""
    if isinstance(value, str):  # "+00:00" appended: datetime.replace costs 5x the parse
        return dt.datetime.fromisoformat(value + "+00:00")
    return utc(value)


def certificate_row(cert: IssuedCertificate, stamp: Callable[[dt.datetime | None], Any]
                    ) -> tuple[Any, ...]:
    """Driver-ready values in the order of the certificates table's columns."""
    return (
        cert.issuer, serial_hex(cert.serial), cert.device_id, cert.profile, cert.subject,
        "\n".join(cert.sans), cert.key_spec, cert.key_fingerprint, stamp(cert.not_before),
        stamp(cert.not_after), stamp(cert.issued_at), cert.der, stamp(cert.revoked_at),
        cert.revocation_reason.value if cert.revocation_reason else None,
        cert.crl_shard, stamp(cert.invalidity_date), None,
    )


def certificate_record(row: Any) -> IssuedCertificate:
    return IssuedCertificate(
        serial=int(row.serial, 16),
        issuer=row.issuer,
        device_id=row.device_id,
        profile=row.profile,
        subject=row.subject,
        sans=tuple(row.sans.split("\n")) if row.sans else (),
        key_spec=row.key_spec,
        key_fingerprint=row.key_fingerprint,
        not_before=utc(row.not_before),
        not_after=utc(row.not_after),
        issued_at=utc(row.issued_at),
        der=bytes(row.der),
        revoked_at=utc(row.revoked_at) if row.revoked_at is not None else None,
        revocation_reason=(RevocationReason(row.revocation_reason)
                           if row.revocation_reason else None),
        crl_shard=row.crl_shard,
        invalidity_date=utc(row.invalidity_date) if row.invalidity_date is not None else None,
    )


# The columns certificate_values() reads, for raw driver queries.
CERTIFICATE_FIELDS = ("issuer, serial, device_id, profile, subject, sans, key_spec, "
                      "key_fingerprint, not_before, not_after, issued_at, der, revoked_at, "
                      "revocation_reason, crl_shard, invalidity_date")


def certificate_values(values: tuple[Any, ...]) -> IssuedCertificate:
    """certificate_record for a raw driver row of CERTIFICATE_FIELDS."""
    (issuer, serial, device_id, profile, subject, sans, key_spec, fingerprint, not_before,
     not_after, issued_at, der, revoked_at, reason, shard, invalidity) = values
    return IssuedCertificate(
        serial=int(serial, 16), issuer=issuer, device_id=device_id, profile=profile,
        subject=subject, sans=tuple(sans.split("\n")) if sans else (), key_spec=key_spec,
        key_fingerprint=fingerprint, not_before=stored_moment(not_before),
        not_after=stored_moment(not_after), issued_at=stored_moment(issued_at),
        der=bytes(der),
        revoked_at=stored_moment(revoked_at) if revoked_at is not None else None,
        revocation_reason=RevocationReason(reason) if reason else None, crl_shard=shard,
        invalidity_date=stored_moment(invalidity) if invalidity is not None else None)


def ca_record(row: Any) -> CARecord:
    return CARecord(
        name=row.name, role=CARole(row.role), certificate_der=bytes(row.certificate_der),
        parent=row.parent, key_file=row.key_file, created_at=utc(row.created_at),
        imported=bool(row.imported),
        revoked_at=utc(row.revoked_at) if row.revoked_at is not None else None,
        revocation_reason=(RevocationReason(row.revocation_reason)
                           if row.revocation_reason else None),
    )


def audit_record(row: Any) -> AuditEntry:
    """AuditChainBroken for a row that no longer parses: only an edit behind fleetpki's back
    makes one, and verification must say so rather than fail on it."""
    try:
        details = json.loads(row.details)
        if not isinstance(details, dict):
            raise TypeError("details are not a JSON object")
        return AuditEntry(
            seq=row.seq, at=utc(row.at), actor=row.actor, action=row.action,
            subject=row.subject, details=details, prev_hash=row.prev_hash, hash=row.hash,
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise AuditChainBroken(f"audit entry {row.seq} cannot be read, so it was modified "
                               f"after it was written ({exc})") from None
