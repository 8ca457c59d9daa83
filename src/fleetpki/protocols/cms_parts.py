"""CMS (RFC 5652) pieces that SCEP's messages, CMP's and EST's key envelopes write."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from fleetpki.core import der


def algorithm_identifier(oid: str, parameters: bytes | None = None) -> bytes:
    return der.sequence(der.oid(oid), *([parameters] if parameters is not None else []))


def sign(key: PrivateKeyTypes, data: bytes) -> tuple[bytes, bytes]:
    """(AlgorithmIdentifier DER, signature) of `data` with a server's key: ECDSA or RSA
    PKCS #1 v1.5 with SHA-256, or Ed25519."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return algorithm_identifier("1.2.840.10045.4.3.2"), key.sign(data, ec.ECDSA(
            hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return (algorithm_identifier("1.2.840.113549.1.1.11", der.tlv(der.NULL, b"")),
                key.sign(data, padding.PKCS1v15(), hashes.SHA256()))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return algorithm_identifier("1.3.101.112"), key.sign(data)
    raise TypeError(f"cannot sign with a {type(key).__name__}")


def attribute(oid: str, *values: bytes) -> bytes:
    """An Attribute (RFC 5652 §5.3): its type and the DER of each value."""
    return der.sequence(der.oid(oid), der.set_of(*values))


def issuer_and_serial(certificate: x509.Certificate) -> bytes:
    """IssuerAndSerialNumber (RFC 5652 §10.2.4) of a signer's or recipient's certificate."""
    return der.sequence(certificate.issuer.public_bytes(),
                        der.signed_integer(certificate.serial_number))
