"""Which certificate a server-generated key is encrypted to (RFC 7030 §4.4.1), and the
refusals, decided before anything is issued."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from fleetpki.core.errors import BadInput, Unsupported
from fleetpki.protocols.est.key_encryption import (
    ASYMMETRIC_DECRYPT_KEY_ID,
    DECRYPT_KEY_ID,
    key_identifier,
    key_recipient,
)

NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev-1")])


def certificate(key: CertificateIssuerPrivateKeyTypes, *, with_ski: bool = True) -> bytes:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(NAME).issuer_name(NAME)
               .public_key(key.public_key()).serial_number(7)
               .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)))
    if with_ski:
        builder = builder.add_extension(x509.SubjectKeyIdentifier(b"\x42" * 20), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.DER)


def request(*attributes: tuple[x509.ObjectIdentifier, bytes]) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(NAME)
    for oid, value in attributes:
        builder = builder.add_attribute(oid, value, _tag=_ASN1Type.OctetString)
    csr = builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.DER)


def refusal(csr: bytes, client: bytes | None, *, can_sign: bool = True) -> tuple[type, str]:
    with pytest.raises((BadInput, Unsupported)) as refused:
        key_recipient(csr, client, can_sign=can_sign)
    return type(refused.value), str(refused.value)


def test_no_attribute_or_an_unreadable_request_asks_for_no_encryption() -> None:
    client = certificate(ec.generate_private_key(ec.SECP256R1()))
    assert key_recipient(request(), client, can_sign=True) is None
    assert key_recipient(b"\x30\x03garbage", client, can_sign=True) is None  # the RA's to refuse


@pytest.mark.parametrize("key", [ec.generate_private_key(ec.SECP384R1()),
                                 rsa.generate_private_key(65537, 2048)])
def test_the_identifier_of_the_tls_client_certificate_selects_it(
        key: CertificateIssuerPrivateKeyTypes) -> None:
    client = certificate(key)
    found = key_recipient(request((ASYMMETRIC_DECRYPT_KEY_ID, b"\x42" * 20)), client,
                          can_sign=True)
    assert found is not None and found.public_bytes(serialization.Encoding.DER) == client


def test_without_the_extension_the_identifier_is_the_sha1_of_the_public_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    client = certificate(key, with_ski=False)
    expected = x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    assert key_identifier(x509.load_der_x509_certificate(client)) == expected
    assert key_recipient(request((ASYMMETRIC_DECRYPT_KEY_ID, expected)), client,
                         can_sign=True) is not None


def test_refusals_say_what_to_do_instead() -> None:
    ec_client = certificate(ec.generate_private_key(ec.SECP256R1()))
    asymmetric = request((ASYMMETRIC_DECRYPT_KEY_ID, b"\x42" * 20))
    status, message = refusal(request((DECRYPT_KEY_ID, b"\x01")), ec_client)
    assert status is Unsupported and "AsymmetricDecryptKeyIdentifier" in message
    status, message = refusal(asymmetric, ec_client, can_sign=False)
    assert status is Unsupported and "without additional encryption" in message
    status, message = refusal(asymmetric, None)
    assert status is BadInput and "TLS client certificate" in message
    status, message = refusal(request((ASYMMETRIC_DECRYPT_KEY_ID, b"\x43" * 20)), ec_client)
    assert status is BadInput and "43434343" in message and "42424242" in message
    status, message = refusal(asymmetric, certificate(ed25519.Ed25519PrivateKey.generate()))
    assert status is BadInput and "EC or RSA" in message
