"""The DNS resolver the validators ask, and DNS failures in words.

RFC 8555 §11.2 recommends that a CA use only a resolver it trusts; the operator names it in
`ValidationSettings.resolver` (for a fleet, typically the site's own resolver that knows the
gateways' names). Queries go over UDP with dnspython's fallback to TCP on truncation; the
resolver being trusted and near, the §11.2 advice to prefer TCP is left to that resolver's
own upstream queries.
"""

from __future__ import annotations

import dns.asyncresolver
import dns.exception
import dns.resolver

from fleetpki.protocols.acme.challenges.problems import problem, reason
from fleetpki.protocols.acme.challenges.settings import ValidationSettings


def make_resolver(settings: ValidationSettings) -> dns.asyncresolver.Resolver:
    """A resolver with no cache (each validation sees the zone as it is now) whose every
    query is bounded by `settings.timeout`."""
    if settings.resolver is None:
        try:
            resolver = dns.asyncresolver.Resolver()  # /etc/resolv.conf
        except dns.exception.DNSException as error:
            raise problem("dns", "the system resolver configuration cannot be read: "
                                 f"{reason(error)}") from None
    else:
        address, port = settings.resolver
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [address]
        resolver.port = port
    resolver.timeout = settings.timeout
    resolver.lifetime = settings.timeout
    return resolver


def resolver_name(settings: ValidationSettings) -> str:
    if settings.resolver is None:
        return "the system resolver"
    address, port = settings.resolver
    return f"resolver {address} port {port}"


def describe_failure(error: dns.exception.DNSException, settings: ValidationSettings) -> str:
    """Why a query got no usable answer, naming the resolver that was asked."""
    where = resolver_name(settings)
    if isinstance(error, dns.resolver.NXDOMAIN):
        return f"the name does not exist (NXDOMAIN) according to {where}"
    if isinstance(error, dns.resolver.NoAnswer):
        return f"the name exists but has no record of that type according to {where}"
    if isinstance(error, dns.exception.Timeout):
        return f"{where} did not answer within {settings.timeout:g} s"
    if isinstance(error, dns.resolver.NoNameservers):
        return f"{where} could not answer (SERVFAIL, REFUSED or unreachable): {reason(error)}"
    return f"{where} failed: {reason(error)}"
