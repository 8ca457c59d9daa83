"""Target parsing: every accepted form, deduplication, and refusals that quote the input and
say what to write instead."""

from __future__ import annotations

import pytest

from fleetpki.discovery.targets import (
    Endpoint,
    TargetError,
    parse_targets,
    targets_from_lines,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("gw1.example.com:8443", [Endpoint("gw1.example.com", 8443)]),
    ("GW1.Example.COM.", [Endpoint("gw1.example.com", 443)]),
    ("_tls.internal:993", [Endpoint("_tls.internal", 993)]),
    ("192.0.2.10", [Endpoint("192.0.2.10", 443)]),
    ("192.0.2.10:8443", [Endpoint("192.0.2.10", 8443)]),
    ("2001:db8::1", [Endpoint("2001:db8::1", 443)]),
    ("[2001:DB8:0::1]:8443", [Endpoint("2001:db8::1", 8443)]),
    ("[::1]", [Endpoint("::1", 443)]),
    ("192.0.2.0/30", [Endpoint("192.0.2.1", 443), Endpoint("192.0.2.2", 443)]),
    ("192.0.2.0/31:8443", [Endpoint("192.0.2.0", 8443), Endpoint("192.0.2.1", 8443)]),
    ("192.0.2.7/32", [Endpoint("192.0.2.7", 443)]),
    ("192.0.2.5/30", [Endpoint("192.0.2.5", 443), Endpoint("192.0.2.6", 443)]),
    ("[2001:db8::/127]:636", [Endpoint("2001:db8::", 636), Endpoint("2001:db8::1", 636)]),
    ("  10.0.0.1:443  ", [Endpoint("10.0.0.1", 443)]),
])
def test_accepted_forms(text: str, expected: list[Endpoint]) -> None:
    assert parse_targets([text]) == expected


def test_the_default_port_applies_to_hosts_and_ranges_only() -> None:
    assert parse_targets(["a.example", "10.0.0.0/31", "b.example:443"], default_port=8443) == [
        Endpoint("a.example", 8443), Endpoint("10.0.0.0", 8443), Endpoint("10.0.0.1", 8443),
        Endpoint("b.example", 443)]


def test_duplicates_are_scanned_once_in_first_mention_order() -> None:
    assert parse_targets(["10.0.0.2", "10.0.0.0/30", "[::1]:443", "::1", "10.0.0.2:443"]) == [
        Endpoint("10.0.0.2", 443), Endpoint("10.0.0.1", 443), Endpoint("::1", 443)]


def test_an_ipv6_endpoint_prints_in_brackets() -> None:
    assert str(Endpoint("2001:db8::1", 443)) == "[2001:db8::1]:443"
    assert str(Endpoint("10.0.0.1", 443)) == "10.0.0.1:443"


def test_a_16_is_the_largest_range() -> None:
    assert len(parse_targets(["10.1.0.0/16"])) == 65_534
    with pytest.raises(TargetError, match=r"'10.0.0.0/15' has 131,072 addresses.*split it"):
        parse_targets(["10.0.0.0/15"])
    with pytest.raises(TargetError, match=r"at most 65,536 \(a /112\)"):
        parse_targets(["2001:db8::/64"])


@pytest.mark.parametrize(("text", "says"), [
    ("", "empty target"),
    ("host:0", "from 1 to 65535"),
    ("host:65536", "from 1 to 65535"),
    ("host:https", "must be a number"),
    (":443", "no host before ':'"),
    ("[::1:443", "closing ']'"),
    ("[::1]443", "expected ':PORT'"),
    ("[]:443", "closing ']'"),
    ("2001:db8::zz", "not an IPv6 address; write [ADDRESS]:PORT"),
    ("[example.com]:443", "brackets are for IPv6 addresses only"),
    ("[::zz]:443", "not an IPv6 address"),
    ("300.1.2.3", "not an IPv4 address"),
    ("10.0.0", "not an IPv4 address"),
    ("bad_host!.example", "not a host name, an IP address or a CIDR range"),
    ("-lead.example", "not a host name"),
    ("a..b", "not a host name"),
    ("x" * 64 + ".example", "not a host name"),
    ("10.0.0.0/33", "not a CIDR range"),
    ("example.com/24", "not a CIDR range"),
])
def test_bad_targets_are_refused_with_the_reason(text: str, says: str) -> None:
    with pytest.raises(TargetError) as caught:
        parse_targets([text])
    assert says in str(caught.value)
    if text.strip():
        assert repr(text.strip()) in str(caught.value)


def test_a_bad_default_port_is_refused() -> None:
    with pytest.raises(TargetError, match="--port"):
        parse_targets(["a.example"], default_port=0)


def test_a_long_bad_name_fails_fast() -> None:
    """Name checks go label by label: no pattern that backtracks on a long bad input."""
    with pytest.raises(TargetError):
        parse_targets(["a" * 5000 + "!"])


def test_a_targets_file_skips_blanks_and_comments() -> None:
    lines = ["# the gateways", "", "gw1.example:8443  # rack 4", "   10.0.0.0/30", "#x:1"]
    assert targets_from_lines(lines, source="t.txt") == ["gw1.example:8443", "10.0.0.0/30"]


def test_a_targets_file_line_with_two_targets_names_its_line() -> None:
    with pytest.raises(TargetError, match=r"t.txt, line 2: one target per line"):
        targets_from_lines(["a.example", "b.example c.example"], source="t.txt")
