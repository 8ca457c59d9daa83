"""The TLS certificate `fleetpki serve` presents: issued by fleetpki itself, renewed on start.

Devices already trust the fleet's root (they fetched it with /cacerts or got it at the
factory), so a server certificate from the fleet's own issuing CA needs no outside CA. It goes
through the normal issuance cycle (serial ledger, audit log, inventory) under a built-in
profile that no profiles.toml edit can widen.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleetpki.ca.keyfiles import write_key_file, write_private_file
from fleetpki.core.issuance_plan import Request
from fleetpki.core.keys import KeyPolicy
from fleetpki.core.names import AttributeRule, SanPolicy, SanRule, SanType, SubjectPolicy
from fleetpki.core.profile import Profile, Renewal, Validity
from fleetpki.ra.api import Authorization
from fleetpki.ra.service import IssuanceService

PROFILE_NAME = "fleetpki-server"
ACTOR = "fleetpki:serve"
_LIFETIME = dt.timedelta(days=90)


@dataclasses.dataclass(frozen=True, slots=True)
class ServerCredentials:
    chain_file: Path  # leaf then issuing CA, PEM
    key_file: Path  # PKCS#8 PEM, encrypted with the CA key passphrase

    @classmethod
    def in_directory(cls, directory: Path) -> ServerCredentials:
        return cls(directory / "tls-chain.pem", directory / "tls-key.pem")


def server_profile(issuer: str) -> Profile:
    return Profile(
        name=PROFILE_NAME, issuer=issuer, description="TLS certificate of fleetpki serve",
        keys=KeyPolicy(allowed=frozenset({"ec-p256"})),
        validity=Validity(default=_LIFETIME, maximum=_LIFETIME),
        subject=SubjectPolicy(rules=(("CN", AttributeRule(required=True)),)),
        san=SanPolicy(rules=(SanRule(SanType.dns, pattern=re.compile(r"^[A-Za-z0-9.-]{1,253}$")),
                             SanRule(SanType.ip)), required=True, max_count=16),
        key_usage=frozenset({"digitalSignature"}),
        extended_key_usage=(ExtendedKeyUsageOID.SERVER_AUTH,),
        renewal=Renewal(window_fraction=0.33),
    )


def ensure_server_certificate(directory: Path, hostnames: Sequence[str], issuer: str,
                              issuance: IssuanceService, chain: Sequence[x509.Certificate],
                              passphrase: bytes, now: dt.datetime) -> ServerCredentials:
    """Reuse the certificate on disk while it names the configured hosts, comes from `issuer`
    and is outside its renewal window; otherwise issue a fresh one. Returns the files."""
    credentials = ServerCredentials.in_directory(directory)
    if _still_good(credentials, hostnames, chain[0], now):
        return credentials
    key = ec.generate_private_key(ec.SECP256R1())
    request = Request(subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]),
                      sans=tuple(_general_name(h) for h in hostnames),
                      public_key=key.public_key())
    record = issuance.issue(request, PROFILE_NAME, Authorization(actor=ACTOR))
    leaf = x509.load_der_x509_certificate(record.der)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    write_key_file(credentials.key_file, key, passphrase)
    # The leaf and the CAs below the root: clients hold the root as their trust anchor.
    intermediates = list(chain[:-1]) if len(chain) > 1 else list(chain)
    write_private_file(credentials.chain_file, b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in (leaf, *intermediates)))
    return credentials


def _still_good(credentials: ServerCredentials, hostnames: Sequence[str],
                issuer: x509.Certificate, now: dt.datetime) -> bool:
    if not (credentials.chain_file.exists() and credentials.key_file.exists()):
        return False
    try:
        leaf = x509.load_pem_x509_certificates(credentials.chain_file.read_bytes())[0]
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, IndexError, x509.ExtensionNotFound):
        return False
    if set(names) != {_general_name(h) for h in hostnames} or leaf.issuer != issuer.subject:
        return False
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    return now < leaf.not_valid_after_utc - lifetime / 3


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)
