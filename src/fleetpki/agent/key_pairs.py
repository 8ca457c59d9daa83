"""A key and its certificate as files: loading them, and telling damage from unreadability.

The distinction is the keystore's whole safety rule: a file that is absent or does not parse
is damage, which load() may repair from another generation; a file that is there but cannot
be read (a permission, a failing disk, a FIFO put in its place) is not, and the session must
stop with the identity kept rather than "repair" a working identity away.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from fleetpki.agent import durable


class KeystoreError(Exception):
    """A problem with the identity directory that a person must fix; the message says how."""


class Unreadable(KeystoreError):
    """A file that exists but cannot be read: not damage, so nothing may be repaired, and the
    session stops with this message."""

    def __init__(self, path: Path, error: OSError) -> None:
        remedy = ("put the file back in its place" if isinstance(error, durable.NotRegularFile)
                  else "fix its permissions (or the disk)")
        super().__init__(f"cannot read {path}: {error.strerror or error}; {remedy}; the "
                         "identity is kept")


@dataclasses.dataclass(frozen=True, slots=True)
class Pair:
    """A key and its certificate (with the chain above it), as files a TLS stack can load."""

    # Keys compare by identity: equal pairs are those with equal certificates and files.
    key: CertificateIssuerPrivateKeyTypes = dataclasses.field(repr=False, compare=False)
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key_file: Path
    certificate_file: Path
    chain_file: Path | None = None
    fullchain_file: Path | None = None  # leaf then chain: what a TLS client presents


def load_pair(key_file: Path, certificate_file: Path, chain_file: Path | None) -> Pair | None:
    """The pair, or None if a file is absent or does not parse, or the key does not match the
    certificate (damage). Unreadable if a file is there but cannot be read."""
    try:
        certificates = x509.load_pem_x509_certificates(read(certificate_file))
        chain_pem = read(chain_file) if chain_file is not None else b""
        chain = x509.load_pem_x509_certificates(chain_pem) if chain_pem else []
        key = load_key(key_file)
    except (FileNotFoundError, ValueError, TypeError):
        return None
    if key is None or public_der(key) != public_der_of(certificates[0]):
        return None
    return Pair(key, certificates[0], tuple(chain or certificates[1:]), key_file,
                certificate_file, chain_file)


def load_key(path: Path) -> CertificateIssuerPrivateKeyTypes | None:
    """An unencrypted PEM private key that can sign certificates and CSRs; None for another
    kind. FileNotFoundError, ValueError and TypeError are damage; Unreadable is not."""
    key = serialization.load_pem_private_key(read(path), password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | dsa.DSAPrivateKey
                  | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return key
    return None


def read(path: Path) -> bytes:
    """The file's bytes; FileNotFoundError if it is absent, Unreadable for any other OS
    error, which must never be mistaken for damage."""
    try:
        return durable.read_regular(path)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise Unreadable(path, error) from None


def public_der(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def public_der_of(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)


def key_pem(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
