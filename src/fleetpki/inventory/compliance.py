"""Does a certificate still meet its profile's *current* policy?

Profiles tighten over a fleet's life (a curve retired, a shorter maximum validity, a new CRL
distribution point), and certificates issued under the old rules stay in the field until
they are renewed. These checks find them. They compare against the profile as loaded now, so
the answer changes when profiles.toml changes, not when the certificate does.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from fleetpki.core.inventory_records import CertificateFact
from fleetpki.core.keys import RSA_FLOOR_BITS
from fleetpki.core.profile import Profile

_RSA = re.compile(r"^rsa-(\d+)$")


class Finding(enum.Enum):
    weak_key = "weak key"  # the key's algorithm or size is no longer allowed
    validity_too_long = "validity too long"  # longer than the profile's maximum
    missing_extension = "missing extension"  # the profile now puts in one this lacks
    profile_removed = "profile removed"  # no profile of that name is configured any more


def key_allowed(key_spec: str, profile: Profile) -> bool:
    rsa = _RSA.match(key_spec)
    if rsa is not None:
        floor = max(profile.keys.rsa_min_bits, RSA_FLOOR_BITS)
        return "rsa" in profile.keys.allowed and int(rsa.group(1)) >= floor
    return key_spec in profile.keys.allowed


def expected_extensions(profile: Profile) -> frozenset[x509.ObjectIdentifier]:
    """What ca/certificate_template.py would put in a certificate of this profile today;
    subjectAltName is left out, as it depends on the request."""
    wanted = {ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE,
              ExtensionOID.SUBJECT_KEY_IDENTIFIER, ExtensionOID.AUTHORITY_KEY_IDENTIFIER}
    if profile.extended_key_usage:
        wanted.add(ExtensionOID.EXTENDED_KEY_USAGE)
    if profile.urls.crl_distribution_points:
        wanted.add(ExtensionOID.CRL_DISTRIBUTION_POINTS)
    if profile.urls.ocsp or profile.urls.ca_issuers:
        wanted.add(ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
    if profile.urls.freshest_crl:
        wanted.add(ExtensionOID.FRESHEST_CRL)
    if profile.ocsp_no_check:
        wanted.add(ExtensionOID.OCSP_NO_CHECK)
    return frozenset(wanted)


class ComplianceCheck:
    """Checks certificates against a set of profiles; caches what each profile expects."""

    def __init__(self, profiles: Mapping[str, Profile]) -> None:
        self._profiles = profiles
        self._expected = {name: expected_extensions(p) for name, p in profiles.items()}

    def findings(self, fact: CertificateFact) -> list[Finding]:
        profile = self._profiles.get(fact.profile)
        if profile is None:
            return [Finding.profile_removed]
        found = []
        if not key_allowed(fact.key_spec, profile):
            found.append(Finding.weak_key)
        if fact.not_after - fact.not_before > profile.validity.maximum + \
                profile.validity.backdate:
            found.append(Finding.validity_too_long)
        if fact.der is not None and self.missing_extensions(fact.der, profile.name):
            found.append(Finding.missing_extension)
        return found

    def missing_extensions(self, der: bytes, profile: str) -> list[str]:
        try:
            present = {e.oid for e in x509.load_der_x509_certificate(der).extensions}
        except ValueError:  # undecodable extensions: none of them can be relied on
            present = set()
        return sorted(oid._name for oid in self._expected[profile] - present)
