"""Building requests and keys for tests, including deliberately bad ones."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

PrivateKey = CertificateIssuerPrivateKeyTypes


def make_key(kind: str = "ec-p256") -> PrivateKey:
    if kind == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ec-p224":
        return ec.generate_private_key(ec.SECP224R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[4:]))
    raise ValueError(kind)


def make_csr(cn: str | None = "sensor-0001", *, key: PrivateKey | None = None,
             sans: list[x509.GeneralName] | None = None,
             extensions: list[tuple[x509.ExtensionType, bool]] | None = None,
             attributes: list[x509.NameAttribute] | None = None,
             ) -> tuple[x509.CertificateSigningRequest, PrivateKey]:
    key = key or make_key()
    names = list(attributes or [])
    if cn is not None:
        names.insert(0, x509.NameAttribute(NameOID.COMMON_NAME, cn))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    for extension, critical in extensions or []:
        builder = builder.add_extension(extension, critical=critical)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm), key
