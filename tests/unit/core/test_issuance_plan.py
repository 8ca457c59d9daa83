"""The profile decides; a request can only narrow it. One test per way to ask for too much."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from fleetpki.core.errors import PolicyViolation
from fleetpki.core.issuance_plan import Request, plan_issuance
from fleetpki.core.keys import KeyPolicy
from fleetpki.core.names import AttributeRule, SanPolicy, SanRule, SanType, SubjectPolicy
from fleetpki.core.profile import Profile, Validity
from support.csrs import make_csr, make_key

NOW = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
ISSUER_END = NOW + dt.timedelta(days=3650)


def profile(**changes: object) -> Profile:
    base = Profile(
        name="sensor", issuer="issuing",
        keys=KeyPolicy(allowed=frozenset({"ec-p256", "ec-p384"})),
        validity=Validity(default=dt.timedelta(days=365), maximum=dt.timedelta(days=398)),
        subject=SubjectPolicy(rules=(
            ("CN", AttributeRule(required=True, pattern=re.compile(r"sensor-\d{4}"))),
            ("serialNumber", AttributeRule(pattern=re.compile(r"[A-Z0-9]{4,8}"))),
        ), fixed=(("O", "Acme"),)),
        san=SanPolicy(rules=(
            SanRule(SanType.uri, pattern=re.compile(r"urn:dev:mac:[0-9a-f]{12}")),
            SanRule(SanType.dns, under_domain="devices.acme.test"),
        ), max_count=2),
        key_usage=frozenset({"digitalSignature"}),
        extended_key_usage=(ExtendedKeyUsageOID.CLIENT_AUTH,),
    )
    return Profile(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, **changes})


def plan(request: Request, prof: Profile | None = None):  # type: ignore[no-untyped-def]
    return plan_issuance(prof or profile(), request, now=NOW, issuer_not_after=ISSUER_END)


def request_for(**kwargs: object) -> Request:
    csr, _ = make_csr(**kwargs)  # type: ignore[arg-type]
    return Request.from_csr(csr)


def refused(request: Request, match: str, prof: Profile | None = None) -> PolicyViolation:
    with pytest.raises(PolicyViolation, match=match) as info:
        plan(request, prof)
    return info.value


def test_plan_takes_names_from_request_and_everything_else_from_profile() -> None:
    sans = [x509.UniformResourceIdentifier("urn:dev:mac:0a1b2c3d4e5f"),
            x509.DNSName("s1.devices.acme.test")]
    result = plan(request_for(sans=sans))
    assert result.device_id == "sensor-0001"
    assert result.subject.rfc4514_string() == "CN=sensor-0001,O=Acme"
    assert list(result.sans) == sans
    assert result.not_after - NOW == dt.timedelta(days=365)
    assert result.not_before == NOW - dt.timedelta(minutes=5)


def test_refused_when_csr_asks_for_ca_true() -> None:
    bc = (x509.BasicConstraints(ca=True, path_length=None), True)
    refused(request_for(extensions=[bc]), "CA:TRUE")


def test_ca_false_in_csr_is_accepted() -> None:
    bc = (x509.BasicConstraints(ca=False, path_length=None), True)
    assert plan(request_for(extensions=[bc])).device_id == "sensor-0001"


def test_refused_when_csr_asks_for_foreign_eku() -> None:
    eku = (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
    error = refused(request_for(extensions=[eku]), "codeSigning")
    assert error.field == "extended_key_usage"


def test_eku_inside_profile_is_accepted() -> None:
    eku = (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
    plan(request_for(extensions=[eku]))


def test_refused_when_key_usage_exceeds_profile() -> None:
    ku = (x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                        data_encipherment=False, key_agreement=False, key_cert_sign=True,
                        crl_sign=False, encipher_only=False, decipher_only=False), True)
    refused(request_for(extensions=[ku]), "key_cert_sign")


def test_refused_when_san_outside_rules() -> None:
    refused(request_for(sans=[x509.DNSName("evil.example.com")]), "not allowed")


def test_refused_when_dns_only_looks_like_the_domain() -> None:
    refused(request_for(sans=[x509.DNSName("xdevices.acme.test")]), "not allowed")


def test_refused_when_uri_pattern_only_partly_matches() -> None:
    refused(request_for(sans=[x509.UniformResourceIdentifier("urn:dev:mac:0a1b2c3d4e5fff")]),
            "not allowed")


def test_refused_when_too_many_sans() -> None:
    sans = [x509.DNSName(f"s{i}.devices.acme.test") for i in range(3)]
    refused(request_for(sans=sans), "at most 2")


def test_refused_for_ip_san_when_no_ip_rule() -> None:
    refused(request_for(sans=[x509.IPAddress(ipaddress.ip_address("10.0.0.1"))]), "not allowed")


def test_refused_when_validity_longer_than_maximum() -> None:
    csr, _ = make_csr()
    refused(Request.from_csr(csr, validity=dt.timedelta(days=399)), "exceeds")


def test_zero_validity_is_refused_not_taken_for_the_default() -> None:
    csr, _ = make_csr()
    refused(Request.from_csr(csr, validity=dt.timedelta(0)), "must be positive")


def test_shorter_validity_is_honoured() -> None:
    csr, _ = make_csr()
    result = plan(Request.from_csr(csr, validity=dt.timedelta(days=30)))
    assert result.not_after - NOW == dt.timedelta(days=30)


def test_validity_is_capped_at_issuer_expiry() -> None:
    csr, _ = make_csr()
    soon = NOW + dt.timedelta(days=10)
    result = plan_issuance(profile(), Request.from_csr(csr), now=NOW, issuer_not_after=soon)
    assert result.not_after == soon


@pytest.mark.parametrize("kind", ["rsa-2048", "ed25519", "ec-p224"])
def test_refused_for_key_type_outside_profile(kind: str) -> None:
    refused(request_for(key=make_key(kind)), "not allowed")


def test_refused_for_weak_rsa_even_if_profile_allows_rsa() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    prof = profile(keys=KeyPolicy(allowed=frozenset({"rsa"}), rsa_min_bits=2048))
    refused(request_for(key=weak), "too weak", prof)


def test_refused_when_required_subject_attribute_missing() -> None:
    refused(request_for(cn=None, sans=[x509.DNSName("a.devices.acme.test")]), "required")


def test_refused_when_subject_attribute_breaks_pattern() -> None:
    refused(request_for(cn="sensor-12345"), "does not match")


def test_refused_for_subject_attribute_not_in_profile() -> None:
    ou = [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Ops")]
    refused(request_for(attributes=ou), "OU is not allowed")


def test_refused_when_fixed_attribute_differs() -> None:
    org = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evil Corp")]
    refused(request_for(attributes=org), "differs")


def test_refused_for_unknown_critical_extension() -> None:
    unknown = (x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
               True)
    refused(request_for(extensions=[unknown]), "critical extension")


def test_unknown_noncritical_extension_is_ignored_not_copied() -> None:
    unknown = (x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
               False)
    assert plan(request_for(extensions=[unknown])).device_id == "sensor-0001"


def test_device_id_from_uri_san() -> None:
    prof = profile(device_id_from="san:uri")
    uri = x509.UniformResourceIdentifier("urn:dev:mac:00aabbccddee")
    assert plan(request_for(sans=[uri]), prof).device_id == "urn:dev:mac:00aabbccddee"
    refused(request_for(), "URI subjectAltName", prof)
