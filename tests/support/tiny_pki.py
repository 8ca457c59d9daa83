"""A few EC P-256 certificates made directly with `cryptography`, for tests of the TLS layer
that must not depend on fleetpki's own CA code."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NOW = dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def write(self, directory: Path, name: str, password: bytes | None = None) -> None:
        """<name>.pem and <name>.key (PKCS#8, encrypted when a password is given)."""
        encryption = (serialization.BestAvailableEncryption(password) if password
                      else serialization.NoEncryption())
        (directory / f"{name}.pem").write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{name}.key").write_bytes(self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))


def issue(cn: str, issuer: Issued | None = None, *, ca: bool = False,
          days: tuple[int, int] = (-1, 30), ip: str | None = None) -> Issued:
    """Self-signed without an issuer; validity in days relative to now; an IP SAN if asked."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Fleet"),
                         x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.cert.subject if issuer else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW + dt.timedelta(days=days[0]))
               .not_valid_after(NOW + dt.timedelta(days=days[1]))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False)
    return Issued(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)
