"""The SCEP RA certificates (RFC 8894 §2.1, §4.2.1.2): one per issuing CA that serves SCEP,
issued by it and rolled over automatically.

SCEP clients encrypt their requests to the CA's key with RSA key transport, and fleetpki's CAs
are usually EC, so an RSA RA certificate stands in for the CA: it decrypts requests and signs
replies. Even an RSA CA gets one: the CA key then only signs certificates and CRLs (and can
stay in an HSM), never decrypts what anyone on the network sends. Like the OCSP responder
(ocsp_identity.py) it goes through the normal issuance cycle under a built-in profile.

Clients keep the RA certificate they fetched (strongSwan's --cacert-enc), so at rollover the
previous pair is kept beside the new one: requests encrypted to it are still read, replies are
signed with the new one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from fleetpki.ca.keyfiles import load_key_file, write_key_file, write_private_file
from fleetpki.core.issuance_plan import Request
from fleetpki.core.keys import KeyPolicy
from fleetpki.core.names import AttributeRule, SanPolicy, SubjectPolicy
from fleetpki.core.profile import Profile, Renewal, Validity
from fleetpki.core.revocation_policy import RevocationPolicy
from fleetpki.protocols.scep.cms import RsaRecipient
from fleetpki.protocols.scep.handler import ScepIdentity
from fleetpki.ra.api import Authorization
from fleetpki.ra.service import IssuanceService

PROFILE_NAME = "fleetpki-scep-ra"
ACTOR = "fleetpki:scep"
LIFETIME = dt.timedelta(days=365)
RSA_BITS = 3072  # NIST SP 800-57: 128-bit security, like the P-256 CAs it stands in for


@dataclasses.dataclass(frozen=True, slots=True)
class RaFiles:
    certificate: Path  # PEM
    key: Path  # PKCS#8 PEM, encrypted with the CA key passphrase

    @classmethod
    def of(cls, directory: Path, issuer: str, generation: str = "") -> RaFiles:
        suffix = f"-{generation}" if generation else ""
        return cls(directory / f"{issuer}-ra{suffix}.pem",
                   directory / f"{issuer}-ra{suffix}-key.pem")

    def exists(self) -> bool:
        return self.certificate.exists() and self.key.exists()


def ra_profile(issuer: str) -> Profile:
    return Profile(
        name=PROFILE_NAME, issuer=issuer, description="SCEP RA: decrypts requests, signs replies",
        keys=KeyPolicy(allowed=frozenset({"rsa"}), rsa_min_bits=RSA_BITS),
        validity=Validity(default=LIFETIME, maximum=LIFETIME),
        subject=SubjectPolicy(rules=(("CN", AttributeRule(required=True)),)),
        san=SanPolicy(rules=(), max_count=0),
        # keyEncipherment: clients pick the certificate to encrypt to by it.
        key_usage=frozenset({"digitalSignature", "keyEncipherment"}),
        extended_key_usage=(),
        revocation=RevocationPolicy(),
        renewal=Renewal(window_fraction=0.33),
    )


def ensure_ra(directory: Path, issuer: str, issuer_certificate: x509.Certificate,
              issuance: IssuanceService, passphrase: bytes, now: dt.datetime) -> RaFiles:
    """Keep the RA certificate while it comes from this CA and is outside the last third of
    its life; otherwise issue a new one, keeping the old pair as the previous generation."""
    files = RaFiles.of(directory, issuer)
    if _still_good(files, issuer_certificate, now):
        return files
    key = rsa.generate_private_key(65537, RSA_BITS)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{issuer} SCEP RA")])
    record = issuance.issue(Request(subject=subject, sans=(), public_key=key.public_key()),
                            PROFILE_NAME, Authorization(actor=ACTOR))
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    if files.exists():
        previous = RaFiles.of(directory, issuer, "previous")
        files.certificate.replace(previous.certificate)
        files.key.replace(previous.key)
    write_key_file(files.key, key, passphrase)
    write_private_file(files.certificate, x509.load_der_x509_certificate(record.der)
                       .public_bytes(serialization.Encoding.PEM))
    return files


def load_identity(directory: Path, issuer: str, passphrase: bytes) -> ScepIdentity:
    current = _load(RaFiles.of(directory, issuer), passphrase)
    previous = RaFiles.of(directory, issuer, "previous")
    return ScepIdentity(current, (_load(previous, passphrase),) if previous.exists() else ())


def _load(files: RaFiles, passphrase: bytes) -> RsaRecipient:
    key = load_key_file(files.key, passphrase)
    assert isinstance(key, rsa.RSAPrivateKey)
    return RsaRecipient(x509.load_pem_x509_certificate(files.certificate.read_bytes()), key)


def _still_good(files: RaFiles, issuer_certificate: x509.Certificate, now: dt.datetime) -> bool:
    if not files.exists():
        return False
    try:
        certificate = x509.load_pem_x509_certificate(files.certificate.read_bytes())
        certificate.verify_directly_issued_by(issuer_certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    return now < certificate.not_valid_after_utc - lifetime / 3
