"""Delivering a server-generated private key to a device: the key, as an
AsymmetricKeyPackage (RFC 5958), is signed by the key generation authority and enveloped for
the device. CMP (RFC 9483 §4.1.6, RFC 9810 §5.2.2) signs with its server certificate, which
carries id-kp-cmKGA; EST (RFC 7030 §4.4.2) with the server's TLS certificate.

- to the shared secret, when a CMP request was MAC-protected: PasswordRecipientInfo
  (RFC 3211) with PBKDF2-HMAC-SHA256 and the id-alg-PWRI-KEK wrap;
- to the key of a certificate (the one that signed a CMP request, the one an EST request's
  AsymmetricDecryptKeyIdentifier names): KeyAgreeRecipientInfo with
  ephemeral-static ECDH and the X9.63 KDF (RFC 5753) for an EC key, KeyTransRecipientInfo with
  RSAES-OAEP (RFC 8017, SHA-256) for an RSA key. An Ed25519 certificate cannot be encrypted to.

The content is AES-256-CBC. Every structure is an EnvelopedData without its ContentInfo, which
is how CMP's CertifiedKeyPair.privateKey carries it; EST wraps it in one (`content_info`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asymmetric_padding
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from fleetpki.core import der
from fleetpki.protocols.cms_parts import algorithm_identifier, attribute, issuer_and_serial, sign

ID_SIGNED_DATA = "1.2.840.113549.1.7.2"
ID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
ASYMMETRIC_KEY_PACKAGE = "2.16.840.1.101.2.1.2.78.5"  # id-ct-KP-aKeyPackage, RFC 5958
_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_SHA256 = "2.16.840.1.101.3.4.2.1"
_HMAC_SHA256 = "1.2.840.113549.2.9"
_PBKDF2 = "1.2.840.113549.1.5.12"
_PWRI_KEK = "1.2.840.113549.1.9.16.3.9"
_AES256_CBC = "2.16.840.1.101.3.4.1.42"
_AES256_WRAP = "2.16.840.1.101.3.4.1.45"
_ECDH_SHA256_KDF = "1.3.132.1.11.1"  # dhSinglePass-stdDH-sha256kdf-scheme
_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
_RSAES_OAEP = "1.2.840.113549.1.1.7"
_MGF1 = "1.2.840.113549.1.1.8"
PWRI_ITERATIONS = 100_000


class CannotDeliver(Exception):
    """No way to encrypt a key to this requester."""


@dataclasses.dataclass(frozen=True)
class KeyGenerationAuthority:
    """Who signs key packages: a certificate the device can check, and its key."""

    certificate: x509.Certificate
    key: PrivateKeyTypes


def signed_key_package(pkcs8: bytes, signer: x509.Certificate, key: PrivateKeyTypes) -> bytes:
    """SignedData (RFC 5652 §5) of an AsymmetricKeyPackage holding the one key."""
    content = der.sequence(pkcs8)  # AsymmetricKeyPackage ::= SEQUENCE OF OneAsymmetricKey
    attributes = der.set_of(
        attribute(_CONTENT_TYPE, der.oid(ASYMMETRIC_KEY_PACKAGE)),
        attribute(_MESSAGE_DIGEST, der.octet_string(hashlib.sha256(content).digest())))
    signature_algorithm, signature = sign(key, attributes)
    signer_info = der.sequence(
        der.integer(1), issuer_and_serial(signer), algorithm_identifier(_SHA256),
        der.context(0, der.content(attributes)),  # [0] IMPLICIT SET OF Attribute
        signature_algorithm, der.octet_string(signature))
    return der.sequence(
        der.integer(3), der.set_of(algorithm_identifier(_SHA256)),
        der.sequence(der.oid(ASYMMETRIC_KEY_PACKAGE), der.context(0, der.octet_string(content))),
        der.context(0, signer.public_bytes(serialization.Encoding.DER)),
        der.set_of(signer_info))


def for_password(content: bytes, password: bytes) -> bytes:
    """EnvelopedData of SignedData `content`, openable with the shared secret (RFC 3211)."""
    cek = os.urandom(32)
    salt, iv = os.urandom(16), os.urandom(16)
    kek = hashlib.pbkdf2_hmac("sha256", password, salt, PWRI_ITERATIONS, 32)
    derivation = algorithm_identifier(_PBKDF2, der.sequence(
        der.octet_string(salt), der.integer(PWRI_ITERATIONS), der.integer(32),
        algorithm_identifier(_HMAC_SHA256)))
    recipient = der.context(3, b"".join((  # pwri [3] IMPLICIT PasswordRecipientInfo
        der.integer(0),
        der.context(0, der.content(derivation)),  # [0] IMPLICIT AlgorithmIdentifier
        algorithm_identifier(_PWRI_KEK, algorithm_identifier(_AES256_CBC, der.octet_string(iv))),
        der.octet_string(_pwri_wrap(kek, iv, cek)))))
    return _enveloped(3, recipient, content, cek)


def for_certificate(content: bytes, certificate: x509.Certificate) -> bytes:
    """EnvelopedData of SignedData `content` for the holder of `certificate`'s key."""
    cek = os.urandom(32)
    public_key = certificate.public_key()
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return _enveloped(2, _key_agreement(certificate, public_key, cek), content, cek)
    if isinstance(public_key, rsa.RSAPublicKey):
        oaep = der.sequence(
            der.context(0, algorithm_identifier(_SHA256)),
            der.context(1, algorithm_identifier(_MGF1, algorithm_identifier(_SHA256))))
        encrypted = public_key.encrypt(cek, asymmetric_padding.OAEP(
            asymmetric_padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
        recipient = der.sequence(der.integer(0), issuer_and_serial(certificate),
                                 algorithm_identifier(_RSAES_OAEP, oaep),
                                 der.octet_string(encrypted))
        return _enveloped(2, recipient, content, cek)
    raise CannotDeliver(f"a key cannot be encrypted to a {type(public_key).__name__} "
                        "certificate, only to an EC or RSA one")


def _key_agreement(certificate: x509.Certificate, public_key: ec.EllipticCurvePublicKey,
                   cek: bytes) -> bytes:
    """KeyAgreeRecipientInfo, ephemeral-static ECDH (RFC 5753 §3.1)."""
    ephemeral = ec.generate_private_key(public_key.curve)
    shared = ephemeral.exchange(ec.ECDH(), public_key)
    wrap = algorithm_identifier(_AES256_WRAP)
    shared_info = der.sequence(wrap, der.context(2, der.octet_string((256).to_bytes(4, "big"))))
    kek = X963KDF(hashes.SHA256(), 32, shared_info).derive(shared)
    point = ephemeral.public_key().public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.UncompressedPoint)
    originator = der.context(0, der.context(1, b"".join((  # [0] { originatorKey [1] }
        algorithm_identifier(_EC_PUBLIC_KEY), der.tlv(der.BIT_STRING, b"\x00" + point)))))
    encrypted_key = der.sequence(issuer_and_serial(certificate),
                                 der.octet_string(aes_key_wrap(kek, cek)))
    return der.context(1, b"".join((  # kari [1] IMPLICIT KeyAgreeRecipientInfo
        der.integer(3), originator, algorithm_identifier(_ECDH_SHA256_KDF, wrap),
        der.sequence(encrypted_key))))


def _enveloped(version: int, recipient: bytes, content: bytes, cek: bytes) -> bytes:
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(content) + padder.finalize()) + \
        encryptor.finalize()
    encrypted = der.sequence(der.oid(ID_SIGNED_DATA),
                             algorithm_identifier(_AES256_CBC, der.octet_string(iv)),
                             der.context(0, ciphertext, constructed=False))
    return der.sequence(der.integer(version), der.set_of(recipient), encrypted)


def _pwri_wrap(kek: bytes, iv: bytes, cek: bytes) -> bytes:
    """RFC 3211 §2.3.1: length, check bytes, key, padding to at least two blocks; encrypted
    twice with CBC, the second time chained from the last block of the first."""
    block = 16
    check = bytes(b ^ 0xFF for b in cek[:3])
    body = bytes((len(cek),)) + check + cek
    size = max(2 * block, -(-len(body) // block) * block)
    body += os.urandom(size - len(body))
    first = Cipher(algorithms.AES(kek), modes.CBC(iv)).encryptor().update(body)
    return Cipher(algorithms.AES(kek), modes.CBC(first[-block:])).encryptor().update(first)


def content_info(enveloped: bytes) -> bytes:
    """ContentInfo (RFC 5652 §3) of an EnvelopedData from this module."""
    return der.sequence(der.oid(ID_ENVELOPED_DATA), der.context(0, enveloped))
