"""What an endpoint served, described: one record per certificate of its chain.

The bytes come from an unverified handshake with any host on the network, so parsing is
defensive: a certificate cryptography cannot parse is reported, not recorded, and what the
parser tolerates but RFC 5280 forbids (a negative serial) is kept as a note for the report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.utils import CryptographyDeprecationWarning

from fleetpki.core.discovery_records import DiscoveredCertificate
from fleetpki.core.errors import PolicyViolation
from fleetpki.core.keys import describe
from fleetpki.discovery.ownership import OurCAs
from fleetpki.discovery.scanner import ScanResult
from fleetpki.discovery.targets import Endpoint

KEY_SPEC_LENGTH = 16  # the store's column


@dataclasses.dataclass(frozen=True, slots=True)
class ServedCertificate:
    record: DiscoveredCertificate
    certificate: x509.Certificate
    public_key: CertificatePublicKeyTypes | None  # None: an algorithm cryptography lacks
    notes: tuple[str, ...] = ()  # what the parser accepted but the RFC does not


@dataclasses.dataclass(frozen=True, slots=True)
class ServedChain:
    endpoint: Endpoint
    error: str | None  # why the endpoint served nothing (ScanResult.error)
    certificates: tuple[ServedCertificate, ...] = ()
    unparsable: tuple[str, ...] = ()  # 'certificate 2: <why>', for chain positions 0..


def describe_chain(result: ScanResult, ours: OurCAs) -> ServedChain:
    served = []
    unparsable = []
    for position, der in enumerate(result.chain):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                # Fields are read here, inside the handler: cryptography parses some lazily.
                certificate = x509.load_der_x509_certificate(der)
                public_key = _public_key(certificate)
                record = _record(result.endpoint, position, der, certificate, public_key, ours)
            except ValueError as exc:
                unparsable.append(f"certificate {position}: cannot be parsed ({exc})")
                continue
        notes = tuple(dict.fromkeys(str(w.message) for w in caught
                                    if issubclass(w.category, CryptographyDeprecationWarning)))
        for other in caught:  # anything else was not about this certificate: pass it on
            if not issubclass(other.category, CryptographyDeprecationWarning):
                warnings.warn_explicit(other.message, other.category, other.filename,
                                       other.lineno)
        served.append(ServedCertificate(record, certificate, public_key, notes))
    return ServedChain(result.endpoint, result.error, tuple(served), tuple(unparsable))


def key_text(public_key: CertificatePublicKeyTypes) -> str:
    """The key as issued certificates describe theirs ('ec-p256', 'rsa-1024'), and a
    readable name for what fleetpki never issues ('ec-secp224r1', 'dsa-1024')."""
    try:
        return str(describe(public_key))
    except PolicyViolation:
        pass
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        text = f"ec-{public_key.curve.name}"
    elif isinstance(public_key, rsa.RSAPublicKey | dsa.DSAPublicKey):
        kind = "rsa" if isinstance(public_key, rsa.RSAPublicKey) else "dsa"
        text = f"{kind}-{public_key.key_size}"
    elif isinstance(public_key, ed448.Ed448PublicKey):
        text = "ed448"
    elif isinstance(public_key, x25519.X25519PublicKey | x448.X448PublicKey):
        text = "x25519" if isinstance(public_key, x25519.X25519PublicKey) else "x448"
    else:
        text = type(public_key).__name__.lower()
    return text[:KEY_SPEC_LENGTH]


def signature_algorithm_name(certificate: x509.Certificate) -> str:
    """The signature algorithm OID's name ('ecdsa-with-SHA256'), or the dotted OID."""
    oid = certificate.signature_algorithm_oid
    name = oid._name  # cryptography's registry of names; 'Unknown OID' when it has none
    return oid.dotted_string if name == "Unknown OID" else name


def _record(endpoint: Endpoint, position: int, der: bytes, certificate: x509.Certificate,
            public_key: CertificatePublicKeyTypes | None, ours: OurCAs
            ) -> DiscoveredCertificate:
    return DiscoveredCertificate(
        host=endpoint.host, port=endpoint.port, fingerprint=hashlib.sha256(der).hexdigest(),
        position=position, subject=certificate.subject.rfc4514_string(),
        issuer_name=certificate.issuer.rfc4514_string(), serial=certificate.serial_number,
        not_before=certificate.not_valid_before_utc, not_after=certificate.not_valid_after_utc,
        key_spec=key_text(public_key) if public_key is not None else "unknown",
        signature_algorithm=signature_algorithm_name(certificate),
        issued_by_us=ours.issuer_of(certificate), der=der)


def _public_key(certificate: x509.Certificate) -> CertificatePublicKeyTypes | None:
    """None for a key algorithm cryptography does not know (GOST, SM2): recorded as such."""
    try:
        return certificate.public_key()
    except UnsupportedAlgorithm:
        return None
