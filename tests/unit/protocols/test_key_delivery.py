"""Centrally generated keys, enveloped for the device three ways, opened by `openssl cms`
(not by fleetpki): to a password (PWRI), to an EC certificate (ECDH key agreement), to an RSA
certificate (RSAES-OAEP); the key package's signature checked by `openssl cms -verify`."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from fleetpki.core import der
from fleetpki.protocols import key_delivery
from support.lint import require_tool


def _self_signed(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey,
                 cn: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=1))
               .not_valid_after(now + dt.timedelta(days=1)))
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


def _pem(path: Path, value: x509.Certificate | object) -> Path:
    if isinstance(value, x509.Certificate):
        path.write_bytes(value.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(value.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    return path


def _openssl(*args: str) -> bytes:
    result = subprocess.run([require_tool("openssl"), *args], capture_output=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes, Path]:
    """(SignedData, the PKCS#8 inside, the signer's certificate file)."""
    work = tmp_path_factory.mktemp("kga")
    kga_key = ec.generate_private_key(ec.SECP256R1())
    kga = _self_signed(kga_key, "key generation authority")
    new = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    return key_delivery.signed_key_package(new, kga, kga_key), new, _pem(work / "kga.pem", kga)


def _content_info(oid: str, content: bytes) -> bytes:
    return der.sequence(der.oid(oid), der.context(0, content))


def test_the_key_package_verifies_and_holds_the_key(package: tuple[bytes, bytes, Path],
                                                    tmp_path: Path) -> None:
    signed, pkcs8, kga = package
    (tmp_path / "signed.der").write_bytes(_content_info(key_delivery.ID_SIGNED_DATA, signed))
    content = _openssl("cms", "-verify", "-inform", "DER", "-in", str(tmp_path / "signed.der"),
                       "-CAfile", str(kga), "-purpose", "any", "-binary")
    assert der.elements(content) == [pkcs8]  # AsymmetricKeyPackage of the one key


@pytest.mark.parametrize("kind", ["password", "ec", "rsa"])
def test_openssl_opens_the_envelope(kind: str, package: tuple[bytes, bytes, Path],
                                    tmp_path: Path) -> None:
    signed, _, _ = package
    if kind == "password":
        enveloped = key_delivery.for_password(signed, b"device secret")
        how = ["-pwri_password", "device secret"]
    else:
        device_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
            ec.generate_private_key(ec.SECP384R1()) if kind == "ec"
            else rsa.generate_private_key(65537, 2048))
        device = _self_signed(device_key, "device")
        enveloped = key_delivery.for_certificate(signed, device)
        how = ["-recip", str(_pem(tmp_path / "device.pem", device)),
               "-inkey", str(_pem(tmp_path / "device.key", device_key))]
    (tmp_path / "env.der").write_bytes(_content_info(key_delivery.ID_ENVELOPED_DATA, enveloped))
    opened = _openssl("cms", "-decrypt", "-inform", "DER", "-in", str(tmp_path / "env.der"),
                      "-binary", *how)
    assert opened == signed


def test_an_ed25519_certificate_cannot_receive_a_key(package: tuple[bytes, bytes, Path]
                                                     ) -> None:
    device = _self_signed(ed25519.Ed25519PrivateKey.generate(), "ed-device")
    with pytest.raises(key_delivery.CannotDeliver):
        key_delivery.for_certificate(package[0], device)
