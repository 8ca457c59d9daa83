"""Where the validators connect: hosts override, configured resolver (a real DNS server on
the loopback), system resolver, IP literals."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fleetpki.core.acme_problems import AcmeProblem
from fleetpki.protocols.acme.challenges import ValidationSettings
from fleetpki.protocols.acme.challenges.addresses import resolve
from support.acme_loopback import DnsServer


def addresses(host: str, **settings: Any) -> tuple[str, ...]:
    return asyncio.run(resolve(host, ValidationSettings(**settings)))


def refused(host: str, **settings: Any) -> AcmeProblem:
    with pytest.raises(AcmeProblem) as caught:
        addresses(host, **settings)
    return caught.value


def test_ip_literals_are_used_as_they_are_in_canonical_form() -> None:
    assert addresses("127.0.0.1") == ("127.0.0.1",)
    assert addresses("0:0::1") == ("::1",)


def test_hosts_override_wins_over_the_resolver(dns_server: DnsServer) -> None:
    dns_server.add("gw.example", "A", "192.0.2.7")
    found = addresses("GW.Example.", hosts={"gw.example": ("127.0.0.1", "::1")},
                      resolver=dns_server.address)
    assert found == ("127.0.0.1", "::1")
    assert dns_server.queries == []


def test_resolver_gives_a_records_then_aaaa(dns_server: DnsServer) -> None:
    dns_server.add("gw.example", "A", "127.0.0.1", "127.0.0.2")
    dns_server.add("gw.example", "AAAA", "::1")
    found = addresses("gw.example", resolver=dns_server.address)
    # dnspython shuffles the records of an RRset on the wire: their order is the server's.
    assert sorted(found[:2]) == ["127.0.0.1", "127.0.0.2"] and found[2:] == ("::1",)


def test_resolver_nxdomain_is_a_dns_problem(dns_server: DnsServer) -> None:
    problem = refused("missing.example", resolver=dns_server.address, timeout=2.0)
    assert problem.kind == "dns"
    assert "missing.example" in problem.detail and "NXDOMAIN" in problem.detail
    assert dns_server.queries == [("missing.example.", "A")]  # no AAAA after NXDOMAIN


def test_name_without_address_records_is_a_dns_problem(dns_server: DnsServer) -> None:
    dns_server.add("gw.example", "TXT", '"only text here"')
    problem = refused("gw.example", resolver=dns_server.address, timeout=2.0)
    assert problem.kind == "dns" and "no A or AAAA record" in problem.detail


def test_silent_resolver_is_a_dns_problem(dns_server: DnsServer) -> None:
    dns_server.silent = True
    problem = refused("gw.example", resolver=dns_server.address, timeout=0.3)
    assert problem.kind == "dns" and "did not answer within 0.3 s" in problem.detail


def test_system_resolver_reads_the_hosts_file() -> None:
    found = addresses("localhost", timeout=5.0)
    assert "127.0.0.1" in found or "::1" in found
