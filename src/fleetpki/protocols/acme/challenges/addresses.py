"""Where to connect for a host: the addresses http-01 and tls-alpn-01 try, in order.

RFC 8555 §8.3 and RFC 8737 §3 leave the choice among a name's A and AAAA addresses to the
server. The order here: an IP literal is used as it is (RFC 8738 §4: the DNS step is skipped);
then the operator's `hosts` override; then the configured resolver, A records before AAAA;
else the system's getaddrinfo, in the order it returns (RFC 6724 sorting). Callers try the
next address only when the previous one cannot be connected to.
"""

from __future__ import annotations

import asyncio
import socket

import dns.exception
import dns.resolver

from fleetpki.protocols.acme.challenges.dnsclient import (
    describe_failure,
    make_resolver,
    resolver_name,
)
from fleetpki.protocols.acme.challenges.problems import problem
from fleetpki.protocols.acme.challenges.settings import ValidationSettings
from fleetpki.protocols.acme.challenges.target import ip_literal


async def resolve(host: str, settings: ValidationSettings) -> tuple[str, ...]:
    """The addresses of `host` (a DNS name or an IP literal), canonical text, no duplicates.
    Raises the "dns" problem when there are none."""
    literal = ip_literal(host)
    if literal is not None:
        return (str(literal),)
    name = host.rstrip(".").lower()
    override = settings.hosts.get(name)
    if override is not None:
        return override
    if settings.resolver is not None:
        return await _ask_resolver(name, settings)
    return await _ask_system(name, settings)


async def _ask_resolver(name: str, settings: ValidationSettings) -> tuple[str, ...]:
    resolver = make_resolver(settings)
    found: list[str] = []
    failures: list[str] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(name, rdtype)
        except dns.resolver.NXDOMAIN as error:
            # Definitive for every type: no point asking for AAAA.
            raise problem("dns", f"{name}: {describe_failure(error, settings)}") from None
        except dns.resolver.NoAnswer:
            continue
        except dns.exception.DNSException as error:
            # One family failing is tolerated when the other one gives addresses.
            failures.append(f"{rdtype}: {describe_failure(error, settings)}")
            continue
        found.extend(rdata.to_text() for rdata in answer)
    if found:
        return _unique(found)
    if failures:
        raise problem("dns", f"{name}: the lookup failed ({'; '.join(failures)})")
    raise problem("dns", f"{name} has no A or AAAA record according to "
                         f"{resolver_name(settings)}")


async def _ask_system(name: str, settings: ValidationSettings) -> tuple[str, ...]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(settings.timeout):
            infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise problem("dns", f"{name} does not resolve with the system resolver: "
                             f"{error.strerror or error}") from None
    except TimeoutError:
        raise problem("dns", f"the system resolver did not resolve {name} within "
                             f"{settings.timeout:g} s") from None
    addresses = [str(info[4][0]).split("%", 1)[0] for info in infos]
    if not addresses:
        raise problem("dns", f"{name} has no address according to the system resolver")
    return _unique(addresses)


def bracketed(address: str) -> str:
    """An address as it reads in a list of "address: outcome" (IPv6 in brackets, RFC 3986)."""
    return f"[{address}]" if ":" in address else address


def _unique(addresses: list[str]) -> tuple[str, ...]:
    """Canonical text (RFC 5952 for IPv6), first occurrence kept."""
    canonical: dict[str, None] = {}
    for text in addresses:
        address = ip_literal(text)
        if address is not None:
            canonical[str(address)] = None
    return tuple(canonical)
