"""tls-alpn-01 against a real TLS server on the loopback (RFC 8737 §3, RFC 8738 §6).

The server presents certificates made here with `cryptography`, right and wrong in one
respect each, and records the SNI name it was sent.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from fleetpki.core.acme_problems import AcmeProblem
from fleetpki.core.acme_records import Identifier
from fleetpki.protocols.acme.challenges import ValidationSettings, validate
from fleetpki.protocols.acme.challenges.alpn_certificate import (
    check_certificate,
    expected_extension_value,
)
from fleetpki.protocols.acme.challenges.target import parse_identifier
from support.acme_loopback import (
    DIGEST,
    THUMBPRINT,
    TOKEN,
    AlpnServer,
    HttpServer,
    closed_port,
    make_certificate,
    server_context,
)

GATEWAY = Identifier("dns", "gw.example")
RIGHT = expected_extension_value(DIGEST)


def settings(port: int, **overrides: Any) -> ValidationSettings:
    values: dict[str, Any] = {"hosts": {"gw.example": ("127.0.0.1",)}, "tls_alpn_port": port,
                              "timeout": 2.0, "total_timeout": 5.0}
    values.update(overrides)
    return ValidationSettings(**values)


def run(identifier: Identifier, config: ValidationSettings) -> None:
    asyncio.run(validate("tls-alpn-01", identifier, TOKEN, THUMBPRINT, config))


def refused(identifier: Identifier, config: ValidationSettings) -> AcmeProblem:
    with pytest.raises(AcmeProblem) as caught:
        run(identifier, config)
    assert caught.value.status == 400
    return caught.value


def serve(start: Callable[..., AlpnServer], tmp_path: Path, sans: list[x509.GeneralName],
          *, acme_value: bytes | None = RIGHT, critical: bool = True,
          alpn: list[str] | None = None, host: str = "127.0.0.1",
          ) -> tuple[AlpnServer, list[str]]:
    names: list[str] = []
    files = make_certificate(tmp_path, sans, acme_value=acme_value, critical=critical)
    context = server_context(files, ["acme-tls/1"] if alpn is None else alpn, names)
    return start(context, host), names


def test_valid_with_a_proper_acme_certificate(alpn_server: Callable[..., AlpnServer],
                                             tmp_path: Path) -> None:
    server, names = serve(alpn_server, tmp_path, [x509.DNSName("gw.example")])
    run(GATEWAY, settings(server.port))
    assert names == ["gw.example"]


def test_dns_name_compared_without_regard_to_case(alpn_server: Callable[..., AlpnServer],
                                                  tmp_path: Path) -> None:
    server, _ = serve(alpn_server, tmp_path, [x509.DNSName("GW.Example")])
    run(GATEWAY, settings(server.port))  # RFC 8737 §3, RFC 4343


def test_refused_when_the_digest_is_wrong(alpn_server: Callable[..., AlpnServer],
                                         tmp_path: Path) -> None:
    wrong = expected_extension_value(bytes(32))
    server, _ = serve(alpn_server, tmp_path, [x509.DNSName("gw.example")], acme_value=wrong)
    problem = refused(GATEWAY, settings(server.port))
    assert problem.kind == "incorrectResponse"
    assert f"holds SHA-256 {bytes(32).hex()}" in problem.detail
    assert DIGEST.hex() in problem.detail
    assert f"127.0.0.1 port {server.port}" in problem.detail


def test_refused_when_the_extension_is_not_critical(alpn_server: Callable[..., AlpnServer],
                                                   tmp_path: Path) -> None:
    server, _ = serve(alpn_server, tmp_path, [x509.DNSName("gw.example")], critical=False)
    problem = refused(GATEWAY, settings(server.port))
    assert problem.kind == "incorrectResponse" and "not marked critical" in problem.detail


def test_refused_when_the_extension_is_missing(alpn_server: Callable[..., AlpnServer],
                                              tmp_path: Path) -> None:
    server, _ = serve(alpn_server, tmp_path, [x509.DNSName("gw.example")], acme_value=None)
    problem = refused(GATEWAY, settings(server.port))
    assert problem.kind == "incorrectResponse" and "no acmeIdentifier" in problem.detail


def test_refused_when_the_extension_is_not_an_octet_string(
        alpn_server: Callable[..., AlpnServer], tmp_path: Path) -> None:
    server, _ = serve(alpn_server, tmp_path, [x509.DNSName("gw.example")], acme_value=DIGEST)
    problem = refused(GATEWAY, settings(server.port))
    assert "not a DER OCTET STRING" in problem.detail


def test_refused_with_an_extra_subject_alt_name(alpn_server: Callable[..., AlpnServer],
                                               tmp_path: Path) -> None:
    server, _ = serve(alpn_server, tmp_path,
                      [x509.DNSName("gw.example"), x509.DNSName("other.example")])
    problem = refused(GATEWAY, settings(server.port))
    assert problem.kind == "incorrectResponse"
    assert "exactly DNS:gw.example; found DNS:gw.example, DNS:other.example" in problem.detail


def test_refused_without_alpn_agreement(alpn_server: Callable[..., AlpnServer],
                                        tmp_path: Path) -> None:
    server, _ = serve(alpn_server, tmp_path, [x509.DNSName("gw.example")], alpn=["http/1.1"])
    problem = refused(GATEWAY, settings(server.port))
    assert problem.kind == "tls" and "not acme-tls/1" in problem.detail


def test_refused_when_the_server_ignores_alpn(alpn_server: Callable[..., AlpnServer],
                                             tmp_path: Path) -> None:
    server, _ = serve(alpn_server, tmp_path, [x509.DNSName("gw.example")], alpn=[])
    problem = refused(GATEWAY, settings(server.port))
    assert problem.kind == "tls" and "no ALPN protocol" in problem.detail


def test_refused_when_the_port_speaks_plain_http(
        http_server: Callable[..., HttpServer]) -> None:
    server = http_server()
    problem = refused(GATEWAY, settings(server.port))
    assert problem.kind == "tls" and "the TLS handshake failed" in problem.detail


def test_connection_refused_names_the_address_and_port() -> None:
    port = closed_port()
    problem = refused(GATEWAY, settings(port))
    assert problem.kind == "connection"
    assert f"could not connect to gw.example port {port}" in problem.detail


def test_ip_identifier_uses_the_reverse_name_and_an_ip_san(
        alpn_server: Callable[..., AlpnServer], tmp_path: Path) -> None:
    san = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    server, names = serve(alpn_server, tmp_path, [san])
    run(Identifier("ip", "127.0.0.1"), settings(server.port, hosts={}))
    assert names == ["1.0.0.127.in-addr.arpa"]  # RFC 8738 §6


def test_ipv6_identifier_uses_the_ip6_arpa_name(alpn_server: Callable[..., AlpnServer],
                                                tmp_path: Path) -> None:
    san = x509.IPAddress(ipaddress.ip_address("::1"))
    server, names = serve(alpn_server, tmp_path, [san], host="::1")
    run(Identifier("ip", "::1"), settings(server.port, hosts={}))
    assert names == ["1." + "0." * 31 + "ip6.arpa"]


def test_ip_identifier_refused_with_a_dns_san(alpn_server: Callable[..., AlpnServer],
                                             tmp_path: Path) -> None:
    server, _ = serve(alpn_server, tmp_path, [x509.DNSName("127.0.0.1")])
    problem = refused(Identifier("ip", "127.0.0.1"), settings(server.port, hosts={}))
    assert "exactly IP:127.0.0.1; found DNS:127.0.0.1" in problem.detail


def test_certificate_that_cannot_be_parsed_is_an_incorrect_response() -> None:
    with pytest.raises(AcmeProblem) as caught:
        check_certificate(b"\x30\x03garbage", parse_identifier(GATEWAY), DIGEST, "TLS to x")
    assert caught.value.kind == "incorrectResponse" and "cannot be parsed" in caught.value.detail
