"""The entry point: public API, what is refused before any network traffic, the edge that
lets nothing but AcmeProblem out, and the settings' own checks."""

from __future__ import annotations

import asyncio
import json

import pytest

import fleetpki.protocols.acme.challenges as challenges
from fleetpki.core.acme_problems import AcmeProblem
from fleetpki.core.acme_records import Identifier
from fleetpki.protocols.acme.challenges import (
    SUPPORTED,
    ValidationSettings,
    key_authorization,
    offered_challenge_types,
    validate,
)
from support.acme_loopback import THUMBPRINT, TOKEN, closed_port

DNS = Identifier("dns", "gw.example")
IP = Identifier("ip", "192.0.2.1")


def refused(challenge_type: str, identifier: Identifier, token: str = TOKEN,
            *, wildcard: bool = False) -> AcmeProblem:
    settings = ValidationSettings(hosts={"gw.example": ("127.0.0.1",)},
                                  http_port=closed_port(), timeout=1.0)
    with pytest.raises(AcmeProblem) as caught:
        asyncio.run(validate(challenge_type, identifier, token, THUMBPRINT, settings,
                             wildcard=wildcard))
    assert caught.value.status == 400
    return caught.value


def test_public_api_is_pinned() -> None:
    assert sorted(challenges.__all__) == [
        "SUPPORTED", "ValidationSettings", "key_authorization", "offered_challenge_types",
        "validate"]


def test_key_authorization_is_token_dot_thumbprint() -> None:
    assert key_authorization("tok_-1", "thumb-_2") == "tok_-1.thumb-_2"  # RFC 8555 §8.1


@pytest.mark.parametrize(("token", "thumbprint"), [("", "t"), ("a/b", "t"), ("a=", "t"),
                                                    ("a", "t.u")])
def test_key_authorization_refuses_what_is_not_base64url(token: str, thumbprint: str) -> None:
    with pytest.raises(ValueError, match="base64url"):
        key_authorization(token, thumbprint)


def test_supported_challenges_per_identifier_type() -> None:
    assert SUPPORTED == {"dns": ("http-01", "tls-alpn-01", "dns-01"),
                         "ip": ("http-01", "tls-alpn-01")}
    assert offered_challenge_types(IP) == ("http-01", "tls-alpn-01")  # RFC 8738 §4, §7


def test_only_dns01_is_offered_for_a_wildcard() -> None:
    assert offered_challenge_types(Identifier("dns", "*.gw.example")) == ("dns-01",)
    assert offered_challenge_types(DNS, wildcard=True) == ("dns-01",)
    assert offered_challenge_types(Identifier("email", "a@b.example")) == ()


def test_dns01_refused_for_an_ip_identifier() -> None:
    problem = refused("dns-01", IP)
    assert problem.kind == "unsupportedIdentifier" and "http-01 or tls-alpn-01" in problem.detail


@pytest.mark.parametrize("challenge_type", ["http-01", "tls-alpn-01"])
def test_connecting_challenges_refused_for_a_wildcard(challenge_type: str) -> None:
    assert refused(challenge_type, Identifier("dns", "*.gw.example")).kind == "malformed"
    assert refused(challenge_type, DNS, wildcard=True).kind == "malformed"


def test_unknown_challenge_type_is_malformed() -> None:
    problem = refused("tls-sni-01", DNS)
    assert problem.kind == "malformed" and "tls-sni-01" in problem.detail


def test_unknown_identifier_type_is_unsupported() -> None:
    assert refused("http-01", Identifier("email", "a@b.example")).kind == "unsupportedIdentifier"


@pytest.mark.parametrize("value", ["gw.example/../admin", "gw.example:8080", "user@gw.example",
                                   "192.0.2.1", "-gw.example", "gw..example", "*.*.example",
                                   ""])
def test_dns_identifier_that_is_not_a_host_name_is_malformed(value: str) -> None:
    assert refused("http-01", Identifier("dns", value)).kind == "malformed"


@pytest.mark.parametrize("value", ["192.0.2.256", "fe80::1%eth0", "gw.example"])
def test_ip_identifier_that_is_not_an_address_is_malformed(value: str) -> None:
    assert refused("http-01", Identifier("ip", value)).kind == "malformed"


def test_token_outside_base64url_is_refused_before_any_request() -> None:
    problem = refused("http-01", DNS, token="../../etc/passwd")
    assert problem.kind == "malformed" and "base64url" in problem.detail


def test_unforeseen_errors_leave_as_a_connection_problem(monkeypatch: pytest.MonkeyPatch,
                                                        ) -> None:
    async def broken(host: str, settings: ValidationSettings) -> tuple[str, ...]:
        raise RuntimeError("resolver exploded")

    monkeypatch.setattr("fleetpki.protocols.acme.challenges.http01.resolve", broken)
    problem = refused("http-01", DNS)
    assert problem.kind == "connection"
    assert "RuntimeError: resolver exploded" in problem.detail


def test_problem_document_is_rfc8555_problem_json() -> None:
    document = refused("http-01", DNS).document()
    assert document["type"] == "urn:ietf:params:acme:error:connection"
    assert document["status"] == 400
    assert json.loads(json.dumps(document)) == document


def test_detail_is_clipped_to_a_sane_length() -> None:
    problem = refused("http-01", DNS, token="t" * 2000)  # the URL alone is over 2000 characters
    assert problem.kind == "connection"
    assert len(problem.detail) == 800 and problem.detail.endswith("...")


def test_settings_normalise_the_hosts_override() -> None:
    settings = ValidationSettings(hosts={"GW.Example.": ("::0001", "127.0.0.1")})
    assert dict(settings.hosts) == {"gw.example": ("::1", "127.0.0.1")}
    assert settings.http_port == 80 and settings.tls_alpn_port == 443
    assert settings.timeout == 10.0 and settings.total_timeout == 30.0
    assert settings.max_redirects == 10 and settings.max_body == 8192


@pytest.mark.parametrize("bad", [
    {"hosts": {"gw.example": ("not-an-address",)}},
    {"hosts": {"gw.example": "127.0.0.1"}},
    {"hosts": {"gw.example": ()}},
    {"http_port": 0}, {"tls_alpn_port": 70000}, {"resolver": ("dns.example", 53)},
    {"resolver": ("127.0.0.1", 0)}, {"timeout": 0}, {"total_timeout": -1},
    {"max_redirects": -1}, {"max_body": 0},
])
def test_settings_refuse_nonsense(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ValidationSettings(**bad)  # type: ignore[arg-type]
