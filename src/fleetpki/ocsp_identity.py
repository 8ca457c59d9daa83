"""The delegated OCSP responders (RFC 6960 §4.2.2.2): one per issuing CA, issued by it and
rolled over automatically.

Responses are signed by a short-lived responder key rather than by the CA key itself, so the CA
key signs once a month instead of once per answer, and a CA key kept in an HSM is not on the hot
path. The certificate carries id-pkix-ocsp-nocheck (§4.2.2.2.1): clients do not ask about the
responder's own status, and a compromised responder key is dealt with by the short lifetime.
Like the server's TLS certificate (server_identity.py) it goes through the normal issuance cycle
under a built-in profile that no profiles.toml edit can widen.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleetpki.ca.keyfiles import load_key_file, write_key_file, write_private_file
from fleetpki.core.issuance_plan import Request
from fleetpki.core.keys import KeyPolicy
from fleetpki.core.names import AttributeRule, SanPolicy, SubjectPolicy
from fleetpki.core.profile import Profile, Renewal, Validity
from fleetpki.core.revocation_policy import RevocationPolicy
from fleetpki.ra.api import Authorization
from fleetpki.ra.service import IssuanceService
from fleetpki.revocation.ocsp_responder import ResponderKey

PROFILE_NAME = "fleetpki-ocsp"
ACTOR = "fleetpki:ocsp"
LIFETIME = dt.timedelta(days=30)


@dataclasses.dataclass(frozen=True, slots=True)
class ResponderFiles:
    certificate: Path  # PEM, the responder certificate alone
    key: Path  # PKCS#8 PEM, encrypted with the CA key passphrase

    @classmethod
    def of(cls, directory: Path, issuer: str) -> ResponderFiles:
        return cls(directory / f"{issuer}-responder.pem", directory / f"{issuer}-responder-key.pem")


def responder_profile(issuer: str) -> Profile:
    return Profile(
        name=PROFILE_NAME, issuer=issuer, description="delegated OCSP responder",
        keys=KeyPolicy(allowed=frozenset({"ec-p256"})),
        validity=Validity(default=LIFETIME, maximum=LIFETIME),
        subject=SubjectPolicy(rules=(("CN", AttributeRule(required=True)),)),
        san=SanPolicy(rules=(), max_count=0),
        key_usage=frozenset({"digitalSignature"}),
        extended_key_usage=(ExtendedKeyUsageOID.OCSP_SIGNING,),
        ocsp_no_check=True,
        # Its status is never asked (nocheck) and it lives a month: no pointers, no CRL.
        revocation=RevocationPolicy(short_lived=True),
        renewal=Renewal(window_fraction=0.33),
    )


def ensure_responder(directory: Path, issuer: str, issuer_certificate: x509.Certificate,
                     issuance: IssuanceService, passphrase: bytes, now: dt.datetime,
                     *, answer_validity: dt.timedelta) -> ResponderFiles:
    """Keep the responder on disk while it comes from this CA and outlives, by a margin, every
    answer it could still sign; otherwise issue a new one (the old files are replaced
    atomically, so workers reading them see one pair or the other)."""
    files = ResponderFiles.of(directory, issuer)
    if _still_good(files, issuer_certificate, now, answer_validity):
        return files
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{issuer} OCSP responder")])
    record = issuance.issue(Request(subject=subject, sans=(), public_key=key.public_key()),
                            PROFILE_NAME, Authorization(actor=ACTOR))
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    write_key_file(files.key, key, passphrase)
    write_private_file(files.certificate, x509.load_der_x509_certificate(record.der)
                       .public_bytes(serialization.Encoding.PEM))
    return files


def load_responder(files: ResponderFiles, issuer: str, issuer_certificate: x509.Certificate,
                   passphrase: bytes) -> ResponderKey:
    certificate = x509.load_pem_x509_certificate(files.certificate.read_bytes())
    return ResponderKey(issuer=issuer, issuer_certificate=issuer_certificate,
                        certificate=certificate,
                        private_key=load_key_file(files.key, passphrase))


def _still_good(files: ResponderFiles, issuer_certificate: x509.Certificate, now: dt.datetime,
                answer_validity: dt.timedelta) -> bool:
    if not (files.certificate.exists() and files.key.exists()):
        return False
    try:
        certificate = x509.load_pem_x509_certificate(files.certificate.read_bytes())
    except ValueError:
        return False
    if certificate.issuer != issuer_certificate.subject:
        return False
    try:
        certificate.verify_directly_issued_by(issuer_certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    margin = max(LIFETIME / 3, 2 * answer_validity)
    return now < certificate.not_valid_after_utc - margin
