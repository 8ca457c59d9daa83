"""CA ceremonies: creating a root, creating or importing an issuing CA.

These run rarely and by hand; they return certificates and keys and leave persistence to the
caller (wiring), so that the same code serves `fleetpki init`, tests and an offline laptop.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from fleetpki.ca.signer import Signer
from fleetpki.core.errors import BadInput
from fleetpki.core.keys import KeySpec, signature_hash
from fleetpki.core.serials import RandomSerials

ROOT_VALIDITY = dt.timedelta(days=20 * 365 + 5)
ISSUING_VALIDITY = dt.timedelta(days=10 * 365 + 2)


def ca_name(common_name: str, organization: str | None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def create_root(name: str, subject: x509.Name, key_spec: KeySpec, *, now: dt.datetime,
                validity: dt.timedelta = ROOT_VALIDITY) -> Signer:
    key = key_spec.generate()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    certificate = (
        _ca_builder(subject, subject, key, now, validity, path_length=None)
        .add_extension(ski, critical=False)
        # RFC 5280 §4.2.1.1: AKI may be omitted in a self-signed root; we include it (equal to
        # SKI) because some verifiers build chains faster with it.
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .sign(key, signature_hash(key))
    )
    return Signer(name=name, certificate=certificate, private_key=key)


def create_issuing(name: str, subject: x509.Name, key_spec: KeySpec, parent: Signer, *,
                   now: dt.datetime, validity: dt.timedelta = ISSUING_VALIDITY,
                   path_length: int = 0) -> Signer:
    key = key_spec.generate()
    not_after = min(now + validity, parent.certificate.not_valid_after_utc)
    certificate = (
        _ca_builder(subject, parent.certificate.subject, key, now, not_after - now,
                    path_length=path_length)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(parent.authority_key_identifier(), critical=False)
        .sign(parent.private_key, parent.hash_algorithm)
    )
    return Signer(name=name, certificate=certificate, private_key=key)


def check_importable_ca(name: str, certificate: x509.Certificate,
                        key: CertificateIssuerPrivateKeyTypes, *, now: dt.datetime) -> Signer:
    """An existing CA brought in from elsewhere must be a usable CA and match its key."""
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise BadInput("imported certificate has no basicConstraints: not a CA") from None
    if not constraints.ca:
        raise BadInput("imported certificate is not a CA (basicConstraints CA:FALSE)")
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.key_cert_sign:
            raise BadInput("imported CA certificate lacks keyUsage keyCertSign")
    except x509.ExtensionNotFound:
        pass  # RFC 5280 §4.2.1.3 requires it for CAs, but older CAs omit it; accept.
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if certificate.public_key().public_bytes(serialization.Encoding.DER, spki) != \
            key.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise BadInput("the private key does not belong to the imported certificate")
    if certificate.not_valid_after_utc <= now:
        raise BadInput(f"imported CA certificate expired on "
                       f"{certificate.not_valid_after_utc:%Y-%m-%d}")
    return Signer(name=name, certificate=certificate, private_key=key)


def _ca_builder(subject: x509.Name, issuer: x509.Name, key: CertificateIssuerPrivateKeyTypes,
                now: dt.datetime, validity: dt.timedelta, *, path_length: int | None
                ) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(RandomSerials().next_serial())
        .not_valid_before(now.replace(microsecond=0) - dt.timedelta(minutes=5))
        .not_valid_after((now + validity).replace(microsecond=0))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    )
