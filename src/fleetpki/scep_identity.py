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

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from fleetpki.ca.keyfiles import load_key_file
from fleetpki.core.keys import KeyPolicy
from fleetpki.core.names import AttributeRule, SanPolicy, SubjectPolicy
from fleetpki.core.profile import Profile, Renewal, Validity
from fleetpki.core.revocation_policy import RevocationPolicy
from fleetpki.ra.service import IssuanceService
from fleetpki.service_certificates import ServiceFiles, ServiceKind, ensure_service_certificate

if TYPE_CHECKING:
    from fleetpki.protocols.scep.cms import RsaRecipient
    from fleetpki.protocols.scep.handler import ScepIdentity

PROFILE_NAME = "fleetpki-scep-ra"
ACTOR = "fleetpki:scep"
LIFETIME = dt.timedelta(days=365)
RSA_BITS = 3072  # NIST SP 800-57: 128-bit security, like the P-256 CAs it stands in for


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, RSA_BITS)


SCEP_RA = ServiceKind(role="ra", profile=PROFILE_NAME, actor=ACTOR, common_name="SCEP RA",
                      make_key=_rsa_key)


def ra_files(directory: Path, issuer: str, generation: str = "") -> ServiceFiles:
    return ServiceFiles.of(directory, issuer, SCEP_RA.role, generation)


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
              issuance: IssuanceService, passphrase: bytes, now: dt.datetime) -> ServiceFiles:
    return ensure_service_certificate(SCEP_RA, directory, issuer, issuer_certificate,
                                      issuance, passphrase, now)


def load_identity(directory: Path, issuer: str, passphrase: bytes) -> ScepIdentity:
    # Here, not at the top: the SCEP front end's ASN.1 modules are for serve, not for every
    # CLI command that publishes CRLs (and so checks this certificate).
    from fleetpki.protocols.scep.handler import ScepIdentity

    current = _load(ra_files(directory, issuer), passphrase)
    previous = ra_files(directory, issuer, "previous")
    return ScepIdentity(current, (_load(previous, passphrase),) if previous.exists() else ())


def _load(files: ServiceFiles, passphrase: bytes) -> RsaRecipient:
    from fleetpki.protocols.scep.cms import RsaRecipient

    key = load_key_file(files.key, passphrase)
    assert isinstance(key, rsa.RSAPrivateKey)
    return RsaRecipient(x509.load_pem_x509_certificate(files.certificate.read_bytes()), key)
