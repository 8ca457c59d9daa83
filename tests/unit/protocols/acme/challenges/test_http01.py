"""http-01 against a real HTTP server on the loopback (RFC 8555 §8.3, RFC 8738 §5).

The name "gw.example" exists only in the settings' hosts override, so every test also proves
that the override is what sends the validator to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from fleetpki.core.acme_problems import AcmeProblem
from fleetpki.core.acme_records import Identifier
from fleetpki.protocols.acme.challenges import ValidationSettings, validate
from support.acme_loopback import (
    KEY_AUTH,
    THUMBPRINT,
    TOKEN,
    HttpServer,
    closed_port,
    make_certificate,
    server_context,
)

PATH = f"/.well-known/acme-challenge/{TOKEN}"
GATEWAY = Identifier("dns", "gw.example")
LOOPBACK = {"gw.example": ("127.0.0.1",), "other.example": ("127.0.0.1",)}


def settings(port: int, **overrides: Any) -> ValidationSettings:
    values: dict[str, Any] = {"hosts": LOOPBACK, "http_port": port, "timeout": 2.0,
                              "total_timeout": 5.0}
    values.update(overrides)
    return ValidationSettings(**values)


def run(identifier: Identifier, config: ValidationSettings) -> None:
    asyncio.run(validate("http-01", identifier, TOKEN, THUMBPRINT, config))


def refused(identifier: Identifier, config: ValidationSettings) -> AcmeProblem:
    with pytest.raises(AcmeProblem) as caught:
        run(identifier, config)
    assert caught.value.status == 400
    return caught.value


def test_valid_when_body_is_the_key_authorization(
        http_server: Callable[..., HttpServer]) -> None:
    server = http_server()
    # RFC 8555 §8.3 step 4: trailing whitespace is ignored.
    server.route(PATH, body=KEY_AUTH.encode() + b"\r\n \t")
    run(GATEWAY, settings(server.port))
    assert server.requests == [(PATH, f"gw.example:{server.port}")]


def test_refused_when_body_is_another_value(http_server: Callable[..., HttpServer]) -> None:
    server = http_server()
    server.route(PATH, body=b"not-the-key-authorization")
    problem = refused(GATEWAY, settings(server.port))
    assert problem.kind == "incorrectResponse"
    assert f"http://gw.example:{server.port}{PATH}" in problem.detail
    assert "(at 127.0.0.1)" in problem.detail
    assert KEY_AUTH in problem.detail and "'not-the-key-authorization'" in problem.detail


def test_refused_when_leading_whitespace_precedes_the_key_authorization(
        http_server: Callable[..., HttpServer]) -> None:
    server = http_server()
    server.route(PATH, body=b" " + KEY_AUTH.encode())
    assert refused(GATEWAY, settings(server.port)).kind == "incorrectResponse"


def test_refused_on_404_without_echoing_the_page(http_server: Callable[..., HttpServer]) -> None:
    server = http_server()  # no route: 404 with an HTML body
    problem = refused(GATEWAY, settings(server.port))
    assert problem.kind == "incorrectResponse"
    assert "HTTP 404" in problem.detail and "expected 200" in problem.detail
    assert "nothing here" not in problem.detail  # RFC 8555 §10.4


def test_follows_redirects_within_the_limit_resolving_each_host(
        http_server: Callable[..., HttpServer]) -> None:
    server = http_server()
    port = server.port
    server.route(PATH, status=301, headers=(("Location", "/hop/1"),))
    server.route("/hop/1", status=302,
                 headers=(("Location", f"http://other.example:{port}/hop/2"),))
    server.route("/hop/2", status=307, headers=(("Location", "final"),))
    server.route("/hop/final", body=KEY_AUTH.encode())
    run(GATEWAY, settings(port, max_redirects=3))
    assert [host for _, host in server.requests] == [
        f"gw.example:{port}", f"gw.example:{port}", f"other.example:{port}",
        f"other.example:{port}"]


def test_refused_beyond_the_redirect_limit(http_server: Callable[..., HttpServer]) -> None:
    server = http_server()
    server.route(PATH, status=302, headers=(("Location", "/hop/1"),))
    server.route("/hop/1", status=302, headers=(("Location", "/hop/2"),))
    server.route("/hop/2", status=302, headers=(("Location", "/hop/3"),))
    server.route("/hop/3", body=KEY_AUTH.encode())
    problem = refused(GATEWAY, settings(server.port, max_redirects=2))
    assert problem.kind == "connection"
    assert "more than 2 times" in problem.detail and "/hop/3" in problem.detail
    assert len(server.requests) == 3


def test_refused_redirect_to_a_port_not_allowed(http_server: Callable[..., HttpServer]) -> None:
    server = http_server()
    server.route(PATH, status=302, headers=(("Location", f"http://gw.example:9{PATH}"),))
    problem = refused(GATEWAY, settings(server.port))
    assert problem.kind == "connection"
    assert "port 9 is not followed" in problem.detail
    assert f"allowed: 80, {server.port}" in problem.detail


def test_refused_redirect_to_another_scheme(http_server: Callable[..., HttpServer]) -> None:
    server = http_server()
    server.route(PATH, status=302, headers=(("Location", "ftp://gw.example/token"),))
    problem = refused(GATEWAY, settings(server.port))
    assert problem.kind == "connection" and "only http and https" in problem.detail


def test_follows_redirect_to_https_without_verifying_the_certificate(
        http_server: Callable[..., HttpServer], tmp_path: Path) -> None:
    plain = http_server()
    names: list[str] = []
    # A certificate for some other name, self-signed: nothing a verifier would accept.
    files = make_certificate(tmp_path, [x509.DNSName("unrelated.example")])
    secure = http_server(tls=server_context(files, None, names))
    secure.route(PATH, body=KEY_AUTH.encode())
    plain.route(PATH, status=301,
                headers=(("Location", f"https://gw.example:{secure.port}{PATH}"),))
    run(GATEWAY, settings(plain.port, tls_alpn_port=secure.port))
    assert secure.requests == [(PATH, f"gw.example:{secure.port}")]
    assert names == ["gw.example"]  # SNI names the host, though the connection went to an IP


def test_times_out_on_a_slow_server(http_server: Callable[..., HttpServer]) -> None:
    server = http_server()
    server.route(PATH, body=KEY_AUTH.encode(), delay=3.0)
    started = time.monotonic()
    problem = refused(GATEWAY, settings(server.port, timeout=0.3))
    assert time.monotonic() - started < 2.0
    assert problem.kind == "connection"
    assert "no complete answer within 0.3 s" in problem.detail


def test_total_timeout_bounds_the_whole_validation(
        http_server: Callable[..., HttpServer]) -> None:
    server = http_server()
    server.route(PATH, body=KEY_AUTH.encode(), delay=3.0)
    started = time.monotonic()
    problem = refused(GATEWAY, settings(server.port, timeout=5.0, total_timeout=0.4))
    assert time.monotonic() - started < 2.0
    assert problem.kind == "connection" and "did not finish within 0.4 s" in problem.detail


@pytest.mark.parametrize("declare_length", [True, False])
def test_refused_when_the_body_is_too_long(http_server: Callable[..., HttpServer],
                                           declare_length: bool) -> None:
    server = http_server()
    server.route(PATH, body=KEY_AUTH.encode() + b" " * 9000, declare_length=declare_length)
    problem = refused(GATEWAY, settings(server.port))
    assert problem.kind == "incorrectResponse"
    assert "longer than 8192 bytes" in problem.detail


def test_connection_refused_names_the_address_and_port() -> None:
    port = closed_port()
    problem = refused(GATEWAY, settings(port))
    assert problem.kind == "connection"
    assert f"could not connect to gw.example port {port}" in problem.detail
    assert "127.0.0.1:" in problem.detail


def test_tries_the_next_address_when_one_cannot_be_reached(
        http_server: Callable[..., HttpServer]) -> None:
    server = http_server()  # on 127.0.0.1 only: ::1 refuses
    server.route(PATH, body=KEY_AUTH.encode())
    run(GATEWAY, settings(server.port, hosts={"gw.example": ("::1", "127.0.0.1")}))
    assert len(server.requests) == 1


def test_ip_identifier_names_the_address_in_the_host_header(
        http_server: Callable[..., HttpServer]) -> None:
    server = http_server()
    server.route(PATH, body=KEY_AUTH.encode())
    run(Identifier("ip", "127.0.0.1"), settings(server.port, hosts={}))
    assert server.requests == [(PATH, f"127.0.0.1:{server.port}")]


def test_ipv6_identifier_is_bracketed_in_the_host_header(
        http_server: Callable[..., HttpServer]) -> None:
    server = http_server("::1")
    server.route(PATH, body=KEY_AUTH.encode())
    run(Identifier("ip", "::1"), settings(server.port, hosts={}))
    assert server.requests == [(PATH, f"[::1]:{server.port}")]
