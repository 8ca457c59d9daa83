"""ACME identifiers (RFC 8555 §9.7.7, RFC 8738): normalised, and checked against the profile.

An order may ask only for names its profile's SAN rules allow (DESIGN.md §2: a request narrows
its profile, never widens it); each refused name is its own subproblem (RFC 8555 §6.7.1), so
that a client ordering ten names learns which ones to drop.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from cryptography import x509

from fleetpki.core.acme_problems import AcmeProblem, Subproblem
from fleetpki.core.acme_records import Identifier
from fleetpki.core.errors import PolicyViolation
from fleetpki.core.profile import Profile

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
MAX_IDENTIFIERS = 100


def normalised(type_: str, value: str) -> Identifier:
    """The identifier in the one form it is stored and compared in; AcmeProblem if it is
    not a host name (lower case, LDH labels, an optional leading "*.") or an IP address."""
    if type_ == "dns":
        name = value.lower().rstrip(".")
        labels = name.split(".")
        body = labels[1:] if labels[0] == "*" else labels
        if len(name) > 253 or len(body) < 2 or not all(_LABEL.match(label) for label in body):
            raise AcmeProblem("rejectedIdentifier", f"{value[:80]!r} is not a host name",
                              subproblems=(Subproblem("malformed", "not a host name",
                                                      ("dns", value[:253])),))
        if body[-1].isdigit():
            raise AcmeProblem("rejectedIdentifier", f"{value!r} looks like an IP address: "
                              "order it as an \"ip\" identifier (RFC 8738)")
        return Identifier("dns", name)
    if type_ == "ip":
        try:
            return Identifier("ip", str(ipaddress.ip_address(value)))
        except ValueError:
            raise AcmeProblem("malformed", f"{value[:80]!r} is not an IP address") from None
    raise AcmeProblem("unsupportedIdentifier", f"identifier type {type_[:20]!r} is not "
                      "supported (supported: dns, ip)")


def checked(profile: Profile, identifiers: Sequence[Identifier]) -> tuple[Identifier, ...]:
    """Sorted and without duplicates; AcmeProblem rejectedIdentifier with one subproblem
    per name the profile does not allow."""
    unique = tuple(sorted(set(identifiers)))
    if not unique:
        raise AcmeProblem("malformed", "an order needs at least one identifier")
    limit = min(profile.san.max_count, MAX_IDENTIFIERS)
    if len(unique) > limit:
        raise AcmeProblem("rejectedIdentifier", f"{len(unique)} identifiers ordered; profile "
                          f"'{profile.name}' allows at most {limit} names per certificate")
    refused = []
    for identifier in unique:
        try:
            profile.san.apply([general_name(identifier)])
        except PolicyViolation:
            refused.append(Subproblem(
                "rejectedIdentifier", f"profile '{profile.name}' does not allow {identifier}",
                (identifier.type, identifier.value)))
    if refused:
        names = ", ".join(str(s.identifier[1]) for s in refused if s.identifier)
        raise AcmeProblem("rejectedIdentifier", f"this server will not issue for {names}",
                          subproblems=tuple(refused))
    return unique


def general_name(identifier: Identifier) -> x509.GeneralName:
    if identifier.type == "ip":
        return x509.IPAddress(ipaddress.ip_address(identifier.value))
    return x509.DNSName(identifier.value)


def of_general_name(name: x509.GeneralName) -> Identifier | None:
    """The identifier a SAN of a CSR names; None for SAN types ACME cannot order."""
    if isinstance(name, x509.DNSName):
        return Identifier("dns", name.value.lower().rstrip("."))
    if isinstance(name, x509.IPAddress) and not isinstance(
            name.value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return Identifier("ip", str(name.value))
    return None
