"""CMS (RFC 5652) pieces that SCEP's messages and CMP's key envelopes both write."""

from __future__ import annotations

from cryptography import x509

from fleetpki.core import der


def attribute(oid: str, *values: bytes) -> bytes:
    """An Attribute (RFC 5652 §5.3): its type and the DER of each value."""
    return der.sequence(der.oid(oid), der.set_of(*values))


def issuer_and_serial(certificate: x509.Certificate) -> bytes:
    """IssuerAndSerialNumber (RFC 5652 §10.2.4) of a signer's or recipient's certificate."""
    return der.sequence(certificate.issuer.public_bytes(),
                        der.signed_integer(certificate.serial_number))
