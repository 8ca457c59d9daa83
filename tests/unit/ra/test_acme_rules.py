"""The RA's ACME rules that need no server: what an order is at a given time (RFC 8555
§7.1.6), which identifiers a profile allows, and whether a CSR names exactly an order's
identifiers (RFC 8555 §7.4)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleetpki.core.acme_problems import AcmeProblem
from fleetpki.core.acme_records import (
    AcmeAuthorization,
    AcmeOrder,
    AuthorizationStatus,
    Identifier,
    OrderStatus,
)
from fleetpki.profiles_loader import load_profiles
from fleetpki.ra.acme.identifiers import checked, normalised
from fleetpki.ra.acme.lifecycle import authorization_status, order_status
from fleetpki.ra.acme.orders import check_csr_names

NOW = dt.datetime(2026, 11, 21, 12, tzinfo=dt.UTC)
DEFAULTS = Path(__file__).parents[3] / "src" / "fleetpki" / "defaults" / "profiles.toml"


def _authorization(status: AuthorizationStatus, expires: dt.datetime = NOW + dt.timedelta(days=1)
                   ) -> AcmeAuthorization:
    return AcmeAuthorization(id="a", account_id="acct", identifier=Identifier("dns", "x.y"),
                             status=status, expires=expires, created_at=NOW, challenges=())


def _order(*authorizations: AcmeAuthorization, status: OrderStatus = OrderStatus.pending,
           expires: dt.datetime = NOW + dt.timedelta(hours=1)) -> AcmeOrder:
    return AcmeOrder(id="o", account_id="acct", profile="edge", status=status,
                     identifiers=(Identifier("dns", "x.y"),),
                     authorization_ids=tuple(a.id for a in authorizations), expires=expires,
                     created_at=NOW)


def test_an_order_is_ready_once_every_authorization_is_valid() -> None:
    valid, pending = (_authorization(AuthorizationStatus.valid),
                      _authorization(AuthorizationStatus.pending))
    assert order_status(_order(valid, pending), [valid, pending], NOW) is OrderStatus.pending
    assert order_status(_order(valid, valid), [valid, valid], NOW) is OrderStatus.ready


def test_an_order_is_invalid_when_an_authorization_cannot_become_valid() -> None:
    for status in (AuthorizationStatus.invalid, AuthorizationStatus.deactivated,
                   AuthorizationStatus.revoked):
        failed = _authorization(status)
        assert order_status(_order(failed), [failed], NOW) is OrderStatus.invalid
    # Expired, by the clock alone.
    stale = _authorization(AuthorizationStatus.valid, expires=NOW - dt.timedelta(seconds=1))
    assert authorization_status(stale, NOW) is AuthorizationStatus.expired
    assert order_status(_order(stale), [stale], NOW) is OrderStatus.invalid
    # Pruned: fewer authorizations than the order names.
    valid = _authorization(AuthorizationStatus.valid)
    assert order_status(_order(valid), [], NOW) is OrderStatus.invalid


def test_an_order_past_its_expiry_is_invalid_but_a_valid_one_stays_valid() -> None:
    valid = _authorization(AuthorizationStatus.valid)
    late = NOW + dt.timedelta(hours=2)
    assert order_status(_order(valid), [valid], late) is OrderStatus.invalid
    assert order_status(_order(valid, status=OrderStatus.valid), [valid], late) \
        is OrderStatus.valid


def test_identifiers_are_normalised_or_refused() -> None:
    assert normalised("dns", "GW1.Edge.Fleet.Internal.") == Identifier("dns",
                                                                       "gw1.edge.fleet.internal")
    assert normalised("ip", "fd00:0::1") == Identifier("ip", "fd00::1")
    assert normalised("dns", "*.edge.fleet.internal").value == "*.edge.fleet.internal"
    for kind, value, problem in [("dns", "localhost", "rejectedIdentifier"),
                                 ("dns", "-bad.example.net", "rejectedIdentifier"),
                                 ("dns", "10.0.0.1", "rejectedIdentifier"),
                                 ("ip", "10.0.0.300", "malformed"),
                                 ("email", "a@b.c", "unsupportedIdentifier")]:
        with pytest.raises(AcmeProblem) as refused:
            normalised(kind, value)
        assert refused.value.kind == problem, (kind, value)


def test_the_profile_decides_which_names_may_be_ordered() -> None:
    edge = load_profiles(DEFAULTS, known_issuers={"issuing"})["edge"]
    allowed = checked(edge, [Identifier("dns", "b.edge.fleet.internal"),
                             Identifier("dns", "a.edge.fleet.internal"),
                             Identifier("dns", "a.edge.fleet.internal"),
                             Identifier("ip", "10.1.2.3")])
    assert allowed == (Identifier("dns", "a.edge.fleet.internal"),
                       Identifier("dns", "b.edge.fleet.internal"), Identifier("ip", "10.1.2.3"))
    with pytest.raises(AcmeProblem) as refused:
        checked(edge, [Identifier("dns", "a.edge.fleet.internal"),
                       Identifier("dns", "www.example.com"), Identifier("ip", "8.8.8.8")])
    assert refused.value.kind == "rejectedIdentifier"
    assert [s.identifier for s in refused.value.subproblems] == [("dns", "www.example.com"),
                                                                ("ip", "8.8.8.8")]
    small = dataclasses.replace(edge, san=dataclasses.replace(edge.san, max_count=1))
    with pytest.raises(AcmeProblem, match="at most 1"):
        checked(small, [Identifier("dns", "a.edge.fleet.internal"),
                        Identifier("dns", "b.edge.fleet.internal")])


def _csr(names: list[x509.GeneralName], cn: str | None = None) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()).public_bytes(
        serialization.Encoding.DER)


def test_a_csr_must_name_exactly_the_order_identifiers() -> None:
    order = [Identifier("dns", "a.edge.fleet.internal"), Identifier("ip", "10.0.0.1")]
    names: list[x509.GeneralName] = [x509.DNSName("A.edge.fleet.internal"),
                                     x509.IPAddress(ipaddress.ip_address("10.0.0.1"))]
    check_csr_names(_csr(names), order)
    check_csr_names(_csr(names, cn="a.edge.fleet.internal"), order)
    check_csr_names(_csr(names, cn="10.0.0.1"), order)
    refusals = [
        (_csr(names[:1]), "missing ip:10.0.0.1"),
        (_csr([*names, x509.DNSName("b.edge.fleet.internal")]),
         "not in the order dns:b.edge.fleet.internal"),
        (_csr(names, cn="b.edge.fleet.internal"), "common name"),
        (_csr([*names, x509.UniformResourceIdentifier("urn:x")]), "only DNS names"),
        (b"garbage", "cannot be read"),
    ]
    for csr, reason in refusals:
        with pytest.raises(AcmeProblem, match=reason) as refused:
            check_csr_names(csr, order)
        assert refused.value.kind == "badCSR"
