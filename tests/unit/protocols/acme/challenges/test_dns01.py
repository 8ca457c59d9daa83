"""dns-01 against a real DNS server on the loopback (RFC 8555 §8.4), named by
settings.resolver."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from fleetpki.core.acme_problems import AcmeProblem
from fleetpki.core.acme_records import Identifier
from fleetpki.protocols.acme.challenges import ValidationSettings, validate
from fleetpki.protocols.acme.challenges.keyauth import dns_txt_value
from support.acme_loopback import KEY_AUTH, THUMBPRINT, TOKEN, DnsServer

GATEWAY = Identifier("dns", "gw.example")
RECORD = "_acme-challenge.gw.example"
VALUE = dns_txt_value(KEY_AUTH)


def settings(server: DnsServer, **overrides: Any) -> ValidationSettings:
    values: dict[str, Any] = {"resolver": server.address, "timeout": 2.0, "total_timeout": 5.0}
    values.update(overrides)
    return ValidationSettings(**values)


def run(identifier: Identifier, config: ValidationSettings) -> None:
    asyncio.run(validate("dns-01", identifier, TOKEN, THUMBPRINT, config))


def refused(identifier: Identifier, config: ValidationSettings) -> AcmeProblem:
    with pytest.raises(AcmeProblem) as caught:
        run(identifier, config)
    assert caught.value.status == 400
    return caught.value


def test_the_record_value_is_the_unpadded_base64url_digest() -> None:
    # RFC 8555 §8.4: 32 bytes -> 43 base64url characters, no "=".
    assert len(VALUE) == 43 and "=" not in VALUE


def test_valid_when_one_of_the_records_matches(dns_server: DnsServer) -> None:
    dns_server.add(RECORD, "TXT", '"left-over-from-another-challenge"', f'"{VALUE}"')
    run(GATEWAY, settings(dns_server))
    assert dns_server.queries == [(RECORD + ".", "TXT")]


def test_valid_when_the_value_is_split_into_several_strings(dns_server: DnsServer) -> None:
    dns_server.add(RECORD, "TXT", f'"{VALUE[:20]}" "{VALUE[20:]}"')
    run(GATEWAY, settings(dns_server))


def test_valid_through_a_cname(dns_server: DnsServer) -> None:
    dns_server.add_cname(RECORD, "gw.acme-delegation.example")
    dns_server.add("gw.acme-delegation.example", "TXT", f'"{VALUE}"')
    run(GATEWAY, settings(dns_server))


def test_wildcard_is_validated_at_the_base_name(dns_server: DnsServer) -> None:
    dns_server.add(RECORD, "TXT", f'"{VALUE}"')
    run(Identifier("dns", "*.gw.example"), settings(dns_server))


def test_refused_when_the_value_is_wrong(dns_server: DnsServer) -> None:
    dns_server.add(RECORD, "TXT", '"wrong-value"')
    problem = refused(GATEWAY, settings(dns_server))
    assert problem.kind == "incorrectResponse"
    assert f"TXT lookup of {RECORD}: found 1 record(s)" in problem.detail
    assert VALUE in problem.detail and "'wrong-value'" in problem.detail


def test_refused_when_the_name_does_not_exist(dns_server: DnsServer) -> None:
    problem = refused(GATEWAY, settings(dns_server))
    assert problem.kind == "dns"
    assert "NXDOMAIN" in problem.detail and RECORD in problem.detail
    assert f"resolver 127.0.0.1 port {dns_server.address[1]}" in problem.detail


def test_refused_when_the_name_has_no_txt_record(dns_server: DnsServer) -> None:
    dns_server.add(RECORD, "A", "127.0.0.1")
    problem = refused(GATEWAY, settings(dns_server))
    assert problem.kind == "dns" and "no record of that type" in problem.detail


def test_refused_when_the_resolver_does_not_answer(dns_server: DnsServer) -> None:
    dns_server.silent = True
    started = time.monotonic()
    problem = refused(GATEWAY, settings(dns_server, timeout=0.3))
    assert time.monotonic() - started < 2.0
    assert problem.kind == "dns" and "did not answer within 0.3 s" in problem.detail
