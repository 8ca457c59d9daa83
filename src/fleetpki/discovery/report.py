"""What a scan found that an operator should act on: expiry, and policy broken.

The checks are few and each says where its rule comes from. Change this module first if a
rule changes.

  expired     notAfter has passed.
  expiring    notAfter is within the warning period (30 days unless told otherwise).
  policy      breaks policy:
              - an RSA or DSA key under 2048 bits, an EC key under 256 bits (NIST SP 800-131A,
                the floor core/keys.py applies to everything fleetpki issues);
              - a signature with MD2, MD4, MD5 or SHA-1 (SP 800-131A; collisions are
                practical), except on a self-issued certificate, whose self-signature no
                relying party depends on;
              - what RFC 5280 forbids and the parser still read (a serial that is not a
                positive number of at most 20 octets, §4.1.2.2);
              - ours only: signed by one of our CAs but unknown to the store (issued outside
                the issuance cycle, so a CA key may be in the wrong hands); revoked; a key
                the profile it was issued under no longer allows.
  info        for the record, not a breach: not yet valid; a certificate of ours whose profile
              is not in profiles.toml (its key was not checked); an external leaf valid for
              more than 398 days, what browsers accept for TLS servers (CA/Browser Forum BR
              §6.3.2), which device fleets need not follow.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Iterable, Mapping
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

from fleetpki.core.errors import PolicyViolation
from fleetpki.core.keys import RSA_FLOOR_BITS, KeyPolicy
from fleetpki.core.records import IssuedCertificate
from fleetpki.discovery.chain import ServedCertificate, ServedChain
from fleetpki.discovery.ownership import OurCAs

DEFAULT_WARN_WITHIN = dt.timedelta(days=30)
EC_FLOOR_BITS = 256
BROWSER_MAX_VALIDITY = dt.timedelta(days=398)
_MAX_SERIAL = 1 << 159  # 20 octets of DER INTEGER, positive (RFC 5280 §4.1.2.2)
# Signature algorithms over a broken hash, by the OID's name (chain.signature_algorithm_name).
_WEAK_SIGNATURES = frozenset({
    "md2WithRSAEncryption", "md4WithRSAEncryption", "md5WithRSAEncryption",
    "sha1WithRSAEncryption", "ecdsa-with-SHA1", "dsa-with-sha1",
    # OIDs cryptography has no name for: md2/md4 RSA, and SHA-1 RSA under its old OIW OID.
    "1.2.840.113549.1.1.2", "1.2.840.113549.1.1.3", "1.3.14.3.2.29",
})


class FindingKind(enum.Enum):
    expired = "expired"
    expiring = "expiring"
    policy = "policy"
    info = "info"


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    kind: FindingKind
    message: str


class IssuedLookup(Protocol):
    """What the report reads of the store: the record of a certificate we issued."""

    def get_certificate(self, serial: int, issuer: str | None = None
                        ) -> IssuedCertificate | None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class CertificateReport:
    served: ServedCertificate
    findings: tuple[Finding, ...]

    def has(self, kind: FindingKind) -> bool:
        return any(f.kind is kind for f in self.findings)


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointReport:
    chain: ServedChain
    certificates: tuple[CertificateReport, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Summary:
    endpoints: int
    answered: int  # served a TLS certificate
    recorded: int  # certificates recorded: one per endpoint and fingerprint
    expired: int
    expiring: int
    policy: int  # certificates that break policy


class Classifier:
    """Findings for each served certificate, as of `now`.

    `key_policies` maps each profile name to its key policy; the store lookup finds the
    profile a certificate of ours was issued under."""

    def __init__(self, issued: IssuedLookup, key_policies: Mapping[str, KeyPolicy], *,
                 now: dt.datetime, warn_within: dt.timedelta = DEFAULT_WARN_WITHIN,
                 ours: OurCAs | None = None) -> None:
        self._issued = issued
        self._key_policies = key_policies
        self._now = now
        self._warn_within = warn_within
        self._our_cas = ours  # our CA certificates are in the cas table, not among the issued

    def endpoint(self, chain: ServedChain) -> EndpointReport:
        return EndpointReport(chain, tuple(CertificateReport(c, tuple(self.findings(c)))
                                           for c in chain.certificates))

    def findings(self, served: ServedCertificate) -> list[Finding]:
        found = validity_findings(served, self._now, self._warn_within)
        found += key_findings(served)
        found += signature_findings(served)
        found += conformance_findings(served)
        if served.record.issued_by_us is not None:
            found += self._ours(served)
        elif served.record.position == 0:
            found += lifetime_findings(served)
        return found

    def _ours(self, served: ServedCertificate) -> list[Finding]:
        record = served.record
        ca = record.issued_by_us
        if ca is None or (self._our_cas is not None and self._our_cas.is_our_ca(record.der)):
            return []
        issued = self._issued.get_certificate(record.serial, ca)
        if issued is None:
            return [_policy(f"signed by our CA '{ca}' but unknown to the store: it was not "
                            "issued by fleetpki's issuance cycle; check who holds that CA key")]
        found = []
        if issued.revoked_at is not None:
            reason = issued.revocation_reason.value if issued.revocation_reason else "no reason"
            found.append(_policy(f"revoked on {issued.revoked_at:%Y-%m-%d} ({reason}) "
                                 "and still served"))
        policy = self._key_policies.get(issued.profile)
        if policy is None:
            found.append(Finding(FindingKind.info, f"issued under profile '{issued.profile}', "
                                 "which profiles.toml does not define: key not checked"))
        elif served.public_key is not None:
            try:
                policy.check(served.public_key)
            except PolicyViolation as exc:
                found.append(_policy(f"profile '{issued.profile}' no longer allows its key: "
                                     f"{exc}"))
        return found


def validity_findings(served: ServedCertificate, now: dt.datetime, warn_within: dt.timedelta
                      ) -> list[Finding]:
    record = served.record
    if record.not_after <= now:
        days = (now - record.not_after).days
        return [Finding(FindingKind.expired,
                        f"expired on {record.not_after:%Y-%m-%d} ({_days(days)} ago)")]
    found = []
    if record.not_after <= now + warn_within:
        days = (record.not_after - now).days
        found.append(Finding(FindingKind.expiring,
                             f"expires on {record.not_after:%Y-%m-%d} (in {_days(days)})"))
    if record.not_before > now:
        found.append(Finding(FindingKind.info,
                             f"not valid before {record.not_before:%Y-%m-%d %H:%M} UTC"))
    return found


def key_findings(served: ServedCertificate) -> list[Finding]:
    key = served.public_key
    if isinstance(key, rsa.RSAPublicKey | dsa.DSAPublicKey) and key.key_size < RSA_FLOOR_BITS:
        kind = "RSA" if isinstance(key, rsa.RSAPublicKey) else "DSA"
        return [_policy(f"weak key: {kind} {key.key_size} bits (minimum {RSA_FLOOR_BITS})")]
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < EC_FLOOR_BITS:
        return [_policy(f"weak key: EC {key.curve.name}, {key.curve.key_size} bits "
                        f"(minimum {EC_FLOOR_BITS})")]
    return []


def signature_findings(served: ServedCertificate) -> list[Finding]:
    record = served.record
    if record.signature_algorithm not in _WEAK_SIGNATURES or record.subject == record.issuer_name:
        return []
    return [_policy(f"weak signature: {record.signature_algorithm} (SHA-1 and MD5 collisions "
                    "are practical)")]


def conformance_findings(served: ServedCertificate) -> list[Finding]:
    found = [_policy(f"non-conforming: {note}") for note in served.notes]
    serial = served.record.serial
    if serial >= _MAX_SERIAL:
        found.append(_policy("non-conforming: serial number longer than 20 octets "
                             "(RFC 5280 §4.1.2.2)"))
    return found


def lifetime_findings(served: ServedCertificate) -> list[Finding]:
    record = served.record
    lifetime = record.not_after - record.not_before
    if lifetime <= BROWSER_MAX_VALIDITY or _is_ca(served.certificate):
        return []
    return [Finding(FindingKind.info, f"valid for {lifetime.days} days, more than the "
                    f"{BROWSER_MAX_VALIDITY.days} browsers accept for TLS servers")]


def summarize(reports: Iterable[EndpointReport]) -> Summary:
    endpoints = answered = expired = expiring = policy = 0
    recorded: set[tuple[str, int, str]] = set()
    for report in reports:
        endpoints += 1
        answered += report.chain.error is None
        for c in report.certificates:
            key = (c.served.record.host, c.served.record.port, c.served.record.fingerprint)
            if key in recorded:
                continue  # a chain that repeats a certificate: one row, counted once
            recorded.add(key)
            expired += c.has(FindingKind.expired)
            expiring += c.has(FindingKind.expiring)
            policy += c.has(FindingKind.policy)
    return Summary(endpoints, answered, len(recorded), expired, expiring, policy)


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints)
                    .value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


def _policy(message: str) -> Finding:
    return Finding(FindingKind.policy, message)


def _days(n: int) -> str:
    if n == 0:
        return "less than a day"
    return "1 day" if n == 1 else f"{n} days"
