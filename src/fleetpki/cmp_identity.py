"""The CMP server certificates (RFC 9483 §3.3: responses are signed by the CA or an RA with a
certificate of its own): one per issuing CA, issued by it and rolled over automatically.

The CA key only signs certificates and CRLs (and can stay in an HSM); what the network sees
signed in every CMP response is this P-256 key, with the id-kp-cmcRA extended key usage that
marks a certificate authorised to speak CMP for the CA (RFC 6402 §2.10), and id-kp-cmKGA, since
it also signs the centrally generated keys it hands out (RFC 9483 §4.1.6). Clients pin it
(`openssl cmp -srvcert`) or check it against the root (`-trusted`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ObjectIdentifier

from fleetpki.ca.keyfiles import load_key_file
from fleetpki.core.keys import KeyPolicy
from fleetpki.core.names import AttributeRule, SanPolicy, SubjectPolicy
from fleetpki.core.profile import Profile, Renewal, Validity
from fleetpki.core.revocation_policy import RevocationPolicy
from fleetpki.ra.service import IssuanceService
from fleetpki.service_certificates import ServiceFiles, ServiceKind, ensure_service_certificate

if TYPE_CHECKING:
    from fleetpki.protocols.cmp.exchange import CmpIdentity

PROFILE_NAME = "fleetpki-cmp-server"
ACTOR = "fleetpki:cmp"
LIFETIME = dt.timedelta(days=365)
KP_CMC_RA = "1.3.6.1.5.5.7.3.28"  # RFC 6402 §2.10: may speak CMP (CMC) for the CA
KP_CM_KGA = "1.3.6.1.5.5.7.3.32"  # RFC 9480 §2.2: may generate keys for others


def _ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


CMP_SERVER = ServiceKind(role="cmp", profile=PROFILE_NAME, actor=ACTOR,
                         common_name="CMP server", make_key=_ec_key)


def cmp_files(directory: Path, issuer: str) -> ServiceFiles:
    return ServiceFiles.of(directory, issuer, CMP_SERVER.role)


def cmp_profile(issuer: str) -> Profile:
    return Profile(
        name=PROFILE_NAME, issuer=issuer, description="CMP server: signs CMP responses",
        keys=KeyPolicy(allowed=frozenset({"ec-p256"})),
        validity=Validity(default=LIFETIME, maximum=LIFETIME),
        subject=SubjectPolicy(rules=(("CN", AttributeRule(required=True)),)),
        san=SanPolicy(rules=(), max_count=0),
        key_usage=frozenset({"digitalSignature"}),
        extended_key_usage=(ObjectIdentifier(KP_CMC_RA), ObjectIdentifier(KP_CM_KGA)),
        revocation=RevocationPolicy(),
        renewal=Renewal(window_fraction=0.33),
    )


def ensure_cmp_server(directory: Path, issuer: str, issuer_certificate: x509.Certificate,
                      issuance: IssuanceService, passphrase: bytes, now: dt.datetime
                      ) -> ServiceFiles:
    return ensure_service_certificate(CMP_SERVER, directory, issuer, issuer_certificate,
                                      issuance, passphrase, now)


def load_cmp_identity(directory: Path, issuer: str, passphrase: bytes) -> CmpIdentity:
    # Here, not at the top: the CMP front end pulls in pyasn1's CMP modules, which every
    # CLI command that publishes CRLs (and so checks this certificate) would otherwise load.
    from fleetpki.protocols.cmp.exchange import CmpIdentity

    files = cmp_files(directory, issuer)
    return CmpIdentity(x509.load_pem_x509_certificate(files.certificate.read_bytes()),
                       load_key_file(files.key, passphrase))
