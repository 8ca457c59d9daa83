"""CSR attributes as SCEP brings them: the challengePassword read from the DER and taken out
before a request is held, and strongSwan's unsorted attributes SET repaired (core/csr.py).

The strongSwan-style CSR is built by hand with core/der.py: cryptography writes sorted SETs and
refuses to read unsorted ones, so it cannot make the test input itself.
"""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import AttributeOID, NameOID

from fleetpki.core import der
from fleetpki.core.csr import (
    canonical_csr,
    challenge_password,
    load_csr,
    without_challenge_password,
)
from fleetpki.core.errors import BadInput

PASSWORD = "secret-pw-0001"
_CHALLENGE = "1.2.840.113549.1.9.7"
_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
_SAN = "2.5.29.17"
_SHA256_WITH_RSA = "1.2.840.113549.1.1.11"
_ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2"

Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def made_by_cryptography(key: Key, *, password: str | None = PASSWORD, san: bool = True
                         ) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "router-0001")]))
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("router-0001.example")]), critical=False)
    if password is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, password.encode())
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def attribute(oid: str, value: bytes) -> bytes:
    return der.sequence(der.oid(oid), der.tlv(der.SET, value))


def strongswan_csr(key: Key, *, password: str = PASSWORD, sort: bool = False) -> bytes:
    """A CSR whose attributes SET is written as strongSwan's pki writes it: extensionRequest,
    then challengePassword (not DER order), signed over exactly those bytes."""
    san = x509.SubjectAlternativeName([x509.DNSName("router-0001.example")]).public_bytes()
    extensions = attribute(_EXTENSION_REQUEST, der.sequence(
        der.sequence(der.oid(_SAN), der.octet_string(san))))
    challenge = attribute(_CHALLENGE, der.tlv(0x13, password.encode()))  # PrintableString
    items = [extensions, challenge]
    assert items != sorted(items), "the test input must be out of DER order"
    if sort:
        items.sort()
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "router-0001")]).public_bytes()
    info = der.sequence(der.integer(0), subject, spki, der.context(0, b"".join(items)))
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(info, padding.PKCS1v15(), hashes.SHA256())
        algorithm = der.sequence(der.oid(_SHA256_WITH_RSA), der.tlv(der.NULL, b""))
    else:
        signature = key.sign(info, ec.ECDSA(hashes.SHA256()))
        algorithm = der.sequence(der.oid(_ECDSA_WITH_SHA256))
    return der.sequence(info, algorithm, der.tlv(der.BIT_STRING, b"\x00" + signature))


def attribute_items(data: bytes) -> list[bytes]:
    info = der.elements(data)[0]
    attributes = der.elements(info)[3]
    return der.elements(der.tlv(der.SEQUENCE, der.content(attributes)))


# -- challenge_password ---------------------------------------------------------------------

def test_challenge_password_is_read_from_a_csr(rsa_key: rsa.RSAPrivateKey) -> None:
    assert challenge_password(made_by_cryptography(rsa_key)) == PASSWORD


def test_challenge_password_is_none_without_one(rsa_key: rsa.RSAPrivateKey) -> None:
    assert challenge_password(made_by_cryptography(rsa_key, password=None)) is None
    assert challenge_password(made_by_cryptography(rsa_key, password=None, san=False)) is None


def test_challenge_password_is_read_from_a_csr_cryptography_refuses(
        rsa_key: rsa.RSAPrivateKey) -> None:
    unsorted = strongswan_csr(rsa_key, password="bt-1:abc")
    with pytest.raises(BadInput):
        load_csr(unsorted)
    assert challenge_password(unsorted) == "bt-1:abc"


@pytest.mark.parametrize("data", [b"", b"garbage", b"\x30\x03\x02\x01", b"\x30\x00"])
def test_challenge_password_of_garbage_is_none(data: bytes) -> None:
    assert challenge_password(data) is None


# -- without_challenge_password ---------------------------------------------------------------

def test_challenge_password_is_taken_out_and_the_rest_kept(rsa_key: rsa.RSAPrivateKey) -> None:
    original = made_by_cryptography(rsa_key)
    redacted = without_challenge_password(original)
    assert redacted is not None
    assert PASSWORD.encode() not in redacted and PASSWORD.encode() in original
    csr = x509.load_der_x509_csr(redacted)
    with pytest.raises(x509.AttributeNotFound):
        csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD)
    assert csr.subject.rfc4514_string() == "CN=router-0001"
    assert csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == \
        x509.SubjectAlternativeName([x509.DNSName("router-0001.example")])
    assert csr.public_key() == rsa_key.public_key()
    # The signature covered the password: it no longer verifies (callers check it first).
    assert not csr.is_signature_valid
    assert challenge_password(redacted) is None


def test_a_csr_with_only_a_challenge_password_keeps_an_empty_attributes_set(
        ec_key: ec.EllipticCurvePrivateKey) -> None:
    redacted = without_challenge_password(made_by_cryptography(ec_key, san=False))
    assert redacted is not None
    assert list(x509.load_der_x509_csr(redacted).attributes) == []


def test_nothing_to_take_out_is_none(rsa_key: rsa.RSAPrivateKey) -> None:
    assert without_challenge_password(made_by_cryptography(rsa_key, password=None)) is None
    assert without_challenge_password(
        made_by_cryptography(rsa_key, password=None, san=False)) is None


def test_without_challenge_password_refuses_what_is_not_a_csr() -> None:
    with pytest.raises(BadInput):
        without_challenge_password(b"not a csr")


# -- canonical_csr ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_unsorted_attributes_are_sorted_after_the_signature_checks(
        kind: str, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> None:
    key: Key = rsa_key if kind == "rsa" else ec_key
    unsorted = strongswan_csr(key)
    repaired, proven = canonical_csr(unsorted)
    assert proven is True
    assert repaired != unsorted and len(repaired) == len(unsorted)
    items = attribute_items(repaired)
    assert items == sorted(items) == sorted(attribute_items(unsorted))
    csr = load_csr(repaired)
    assert csr.subject.rfc4514_string() == "CN=router-0001"
    assert csr.public_key() == key.public_key()
    assert csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == \
        x509.SubjectAlternativeName([x509.DNSName("router-0001.example")])
    assert challenge_password(repaired) == PASSWORD
    # The signature was over the unsorted bytes: the sorted copy's does not verify.
    assert not csr.is_signature_valid


def test_the_repaired_csr_is_what_a_sorted_writer_would_have_made(
        rsa_key: rsa.RSAPrivateKey) -> None:
    repaired, _ = canonical_csr(strongswan_csr(rsa_key))
    sorted_info = der.elements(strongswan_csr(rsa_key, sort=True))[0]
    assert der.elements(repaired)[0] == sorted_info


def test_a_tampered_unsorted_csr_comes_back_unchanged_and_unproven(
        rsa_key: rsa.RSAPrivateKey) -> None:
    unsorted = bytearray(strongswan_csr(rsa_key))
    at = unsorted.find(b"router-0001")
    unsorted[at + len("router-000")] = ord("2")  # the signature now covers another name
    tampered = bytes(unsorted)
    assert canonical_csr(tampered) == (tampered, False)


def test_an_unsorted_csr_signed_by_another_key_is_not_proven(
        rsa_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(65537, 2048)
    mine = strongswan_csr(rsa_key)
    theirs = strongswan_csr(other)
    # Our request's body with the other key's signature over its own body.
    forged = der.sequence(*der.elements(mine)[:2], der.elements(theirs)[2])
    assert canonical_csr(forged) == (forged, False)


def test_a_normal_csr_is_returned_as_is(rsa_key: rsa.RSAPrivateKey) -> None:
    normal = made_by_cryptography(rsa_key)
    result, proven = canonical_csr(normal)
    assert result is normal and proven is False


@pytest.mark.parametrize("data", [b"", b"garbage", b"\x30\x03\x02\x01\x00", b"\x30\x80\x00"])
def test_garbage_is_returned_as_is_for_load_csr_to_judge(data: bytes) -> None:
    assert canonical_csr(data) == (data, False)
