"""Profiles: the policy template every certificate of a device type is built from.

A profile is a frozen, validated object (config.py builds it from TOML once, at start). The
issuance code reads typed fields, never a dict, so a typo in a profile fails at load, not at the
millionth enrollment.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from fleetpki.core.keys import KeyPolicy
from fleetpki.core.names import SanPolicy, SubjectPolicy
from fleetpki.core.revocation_policy import RevocationPolicy

KEY_USAGES = (
    "digitalSignature", "contentCommitment", "keyEncipherment", "dataEncipherment",
    "keyAgreement", "keyCertSign", "cRLSign",
)

EXTENDED_KEY_USAGES: dict[str, ObjectIdentifier] = {
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
}


class ProfileKind(enum.Enum):
    end_entity = "end-entity"
    sub_ca = "sub-ca"


@dataclasses.dataclass(frozen=True, slots=True)
class Validity:
    default: dt.timedelta
    maximum: dt.timedelta
    # Device clocks drift and some boot at 1970 until NTP answers: backdating notBefore a little
    # keeps a freshly issued certificate usable on a device whose clock runs slightly behind.
    backdate: dt.timedelta = dt.timedelta(minutes=5)


@dataclasses.dataclass(frozen=True, slots=True)
class Renewal:
    """When a device should renew, and how late it may still renew with its current cert."""

    # Renewal opens when this much of the lifetime is left (e.g. 0.33: the last third).
    window_fraction: float = 0.33
    # After expiry, re-enrollment with the expired certificate is accepted for this long.
    # Off by default: an expired credential proving possession is a policy decision.
    grace_after_expiry: dt.timedelta = dt.timedelta(0)
    # How often an agent asks for renewal information (the Retry-After of `renewalinfo`):
    # the longest an online device takes to hear that an operator pulled renewals forward.
    info_interval: dt.timedelta = dt.timedelta(days=1)


@dataclasses.dataclass(frozen=True, slots=True)
class Enrollment:
    """How devices may enroll into the profile over the protocols (EST, SCEP, CMP, ACME)."""

    # Hold every enrollment for an operator's approval (RFC 7030 §4.2.3: 202 + Retry-After).
    manual_approval: bool = False
    retry_after: dt.timedelta = dt.timedelta(seconds=60)
    # Server-side key generation (RFC 7030 §4.4): the server sees the private key once, in
    # memory, to send it to the device. Off unless a profile asks, since the key then leaves a
    # place other than the device.
    server_keygen: bool = False
    # SCEP (RFC 8894) for this profile: off unless asked, since SCEP carries only RSA keys,
    # PKCS #1 v1.5 key transport and a shared challenge (docs/protocols.md).
    scep: bool = False
    # An HTTP(S) service that says whether a SCEP challengePassword is good (ra/challenges.py).
    challenge_callback: str | None = None
    # ACME (RFC 8555) for this profile: off unless asked, since ACME proves control of a DNS
    # name or an IP address, which identifies a server, not a device.
    acme: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Urls:
    """Pointers the certificates carry. CRL URLs of a sharded profile hold `{shard}`."""

    crl_distribution_points: tuple[str, ...] = ()
    ocsp: tuple[str, ...] = ()
    ca_issuers: tuple[str, ...] = ()
    freshest_crl: tuple[str, ...] = ()  # where the delta CRLs are (RFC 5280 §4.2.1.15)


@dataclasses.dataclass(frozen=True, slots=True)
class Profile:
    name: str
    issuer: str  # name of the issuing CA that signs this profile's certificates
    keys: KeyPolicy
    validity: Validity
    subject: SubjectPolicy
    san: SanPolicy
    key_usage: frozenset[str]
    extended_key_usage: tuple[ObjectIdentifier, ...]
    kind: ProfileKind = ProfileKind.end_entity
    path_length: int | None = None  # only for sub-CA profiles
    urls: Urls = Urls()
    revocation: RevocationPolicy = RevocationPolicy()
    # id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1): only for delegated OCSP responders.
    ocsp_no_check: bool = False
    renewal: Renewal = Renewal()
    enrollment: Enrollment = Enrollment()
    # Which name identifies the device: a subject attribute ("CN", "serialNumber"), "san:uri"
    # (the first URI subjectAltName) or "san" (the first subjectAltName of any type: ACME).
    device_id_from: str = "CN"
    description: str = ""

    def key_usage_extension(self) -> x509.KeyUsage:
        flags = {name: name in self.key_usage for name in KEY_USAGES}
        return x509.KeyUsage(
            digital_signature=flags["digitalSignature"],
            content_commitment=flags["contentCommitment"],
            key_encipherment=flags["keyEncipherment"],
            data_encipherment=flags["dataEncipherment"],
            key_agreement=flags["keyAgreement"],
            key_cert_sign=flags["keyCertSign"],
            crl_sign=flags["cRLSign"],
            encipher_only=False,
            decipher_only=False,
        )
