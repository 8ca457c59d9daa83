"""Certificates fleetpki issues to its own protocol services (the SCEP RA, the CMP server):
one per issuing CA, issued through the normal cycle under a built-in profile, kept as a PEM
certificate and an encrypted key file, and replaced in the last third of their life. The
previous pair is kept beside the new one, for clients that still hold it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from fleetpki.ca.keyfiles import write_key_file, write_private_file
from fleetpki.core.issuance_plan import Request
from fleetpki.ra.api import Authorization
from fleetpki.ra.service import IssuanceService


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceFiles:
    certificate: Path  # PEM
    key: Path  # PKCS#8 PEM, encrypted with the CA key passphrase

    @classmethod
    def of(cls, directory: Path, issuer: str, role: str, generation: str = "") -> ServiceFiles:
        suffix = f"-{generation}" if generation else ""
        return cls(directory / f"{issuer}-{role}{suffix}.pem",
                   directory / f"{issuer}-{role}{suffix}-key.pem")

    def exists(self) -> bool:
        return self.certificate.exists() and self.key.exists()


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceKind:
    """What distinguishes one service's certificates: file role, built-in profile, name."""

    role: str  # file name part, e.g. "ra"
    profile: str  # the built-in profile's name
    actor: str  # who the audit log says asked
    common_name: str  # appended to the issuer's name
    make_key: Callable[[], CertificateIssuerPrivateKeyTypes]


def ensure_service_certificate(kind: ServiceKind, directory: Path, issuer: str,
                               issuer_certificate: x509.Certificate,
                               issuance: IssuanceService, passphrase: bytes,
                               now: dt.datetime) -> ServiceFiles:
    """Keep the certificate while it comes from this CA and is outside the last third of its
    life; otherwise issue a new one, keeping the old pair as the previous generation."""
    files = ServiceFiles.of(directory, issuer, kind.role)
    if _still_good(files, issuer_certificate, now):
        return files
    key = kind.make_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                            f"{issuer} {kind.common_name}")])
    record = issuance.issue(Request(subject=subject, sans=(), public_key=key.public_key()),
                            kind.profile, Authorization(actor=kind.actor))
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    if files.exists():
        previous = ServiceFiles.of(directory, issuer, kind.role, "previous")
        files.certificate.replace(previous.certificate)
        files.key.replace(previous.key)
    write_key_file(files.key, key, passphrase)
    write_private_file(files.certificate, x509.load_der_x509_certificate(record.der)
                       .public_bytes(serialization.Encoding.PEM))
    return files


_Loaded = TypeVar("_Loaded")


def following_rollover(files_of: Callable[[str], ServiceFiles],
                       load: Callable[[str], _Loaded]) -> Callable[[str], _Loaded]:
    """The service identity of an issuer, loaded once and loaded again when its certificate
    file changes (a rollover by another process: the file's mtime says when)."""
    loaded: dict[str, tuple[int, _Loaded]] = {}

    def identity(issuer: str) -> _Loaded:
        stamp = files_of(issuer).certificate.stat().st_mtime_ns
        cached = loaded.get(issuer)
        if cached is None or cached[0] != stamp:
            cached = loaded[issuer] = (stamp, load(issuer))
        return cached[1]

    return identity


def _still_good(files: ServiceFiles, issuer_certificate: x509.Certificate,
                now: dt.datetime) -> bool:
    if not files.exists():
        return False
    try:
        certificate = x509.load_pem_x509_certificate(files.certificate.read_bytes())
        certificate.verify_directly_issued_by(issuer_certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    return now < certificate.not_valid_after_utc - lifetime / 3
