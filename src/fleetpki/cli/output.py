"""How certificates and CAs are shown to people."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from rich.console import Console
from rich.table import Table

from fleetpki.core.records import CARecord, IssuedCertificate
from fleetpki.core.serials import serial_hex

console = Console()


def pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(
        serialization.Encoding.PEM).decode("ascii")


def certificate_table(rows: list[IssuedCertificate], now: dt.datetime) -> Table:
    table = Table(show_lines=False)
    table.add_column("serial", no_wrap=True)
    for column in ("device", "profile", "status", "not after", "key"):
        table.add_column(column)
    for cert in rows:
        table.add_row(serial_hex(cert.serial), cert.device_id, cert.profile,
                      cert.status(now).value, f"{cert.not_after:%Y-%m-%d %H:%M}", cert.key_spec)
    return table


def certificate_details(cert: IssuedCertificate, now: dt.datetime) -> dict[str, object]:
    details: dict[str, object] = {
        "serial": serial_hex(cert.serial), "issuer": cert.issuer, "device_id": cert.device_id,
        "profile": cert.profile, "subject": cert.subject, "sans": list(cert.sans),
        "status": cert.status(now).value, "not_before": cert.not_before.isoformat(),
        "not_after": cert.not_after.isoformat(), "issued_at": cert.issued_at.isoformat(),
        "key": cert.key_spec, "key_fingerprint_sha256": cert.key_fingerprint,
    }
    if cert.revoked_at is not None:
        details["revoked_at"] = cert.revoked_at.isoformat()
        details["revocation_reason"] = cert.revocation_reason.value \
            if cert.revocation_reason else None
    return details


def ca_table(records: list[CARecord]) -> Table:
    table = Table()
    for column in ("name", "role", "parent", "subject", "key", "not after", "state"):
        table.add_column(column)
    for record in records:
        cert = x509.load_der_x509_certificate(record.certificate_der)
        table.add_row(record.name, record.role.value, record.parent or "-",
                      cert.subject.rfc4514_string(),
                      "online" if record.key_file else "offline",
                      f"{cert.not_valid_after_utc:%Y-%m-%d}",
                      "revoked" if record.revoked_at else "active")
    return table
