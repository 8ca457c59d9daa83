"""The DER assembled by CertificateTemplate is byte-identical to cryptography's own builder.

Differential test: for each issuer key type, leaf key type and shape of request, build the same
certificate with `x509.CertificateBuilder` (the reference encoder) and compare TBSCertificate bytes;
then check our signature with the issuer's public key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from fleetpki.ca.ceremony import ca_name, create_issuing, create_root
from fleetpki.ca.certificate_template import CertificateTemplate, _key_kind, _key_usage_for
from fleetpki.ca.signer import Signer
from fleetpki.core.issuance_plan import IssuancePlan, Request, plan_issuance
from fleetpki.core.keys import KeyPolicy, KeySpec
from fleetpki.core.names import AttributeRule, SanPolicy, SanRule, SanType, SubjectPolicy
from fleetpki.core.profile import EXTENDED_KEY_USAGES, Profile, ProfileKind, Urls, Validity
from support.csrs import make_csr, make_key

NOW = dt.datetime(2026, 11, 21, 10, 30, 15, tzinfo=dt.UTC)

PROFILE = Profile(
    name="p", issuer="issuing",
    keys=KeyPolicy(allowed=frozenset({"ec-p256", "ec-p384", "ed25519", "rsa"})),
    validity=Validity(default=dt.timedelta(days=365), maximum=dt.timedelta(days=40 * 365)),
    subject=SubjectPolicy(rules=(("CN", AttributeRule()), ("serialNumber", AttributeRule()),
                                 ("O", AttributeRule()))),
    san=SanPolicy(rules=(SanRule(SanType.uri, pattern=re.compile(".*")),
                         SanRule(SanType.dns, pattern=re.compile(".*")),
                         SanRule(SanType.ip, pattern=re.compile(".*"))), max_count=4),
    key_usage=frozenset({"digitalSignature", "keyEncipherment", "keyAgreement"}),
    extended_key_usage=(EXTENDED_KEY_USAGES["clientAuth"], EXTENDED_KEY_USAGES["serverAuth"]),
    urls=Urls(crl_distribution_points=("http://pki.test/issuing.crl",),
              ocsp=("http://pki.test/ocsp",), ca_issuers=("http://pki.test/issuing.crt",)),
)
SUB_CA = dataclasses.replace(PROFILE, kind=ProfileKind.sub_ca, path_length=0, urls=Urls(),
                             key_usage=frozenset({"keyCertSign", "cRLSign"}),
                             extended_key_usage=())


def reference(template: CertificateTemplate, plan: IssuancePlan, serial: int) -> x509.Certificate:
    profile, signer = template.profile, template.signer
    is_ca = profile.kind is ProfileKind.sub_ca
    builder = (
        x509.CertificateBuilder().subject_name(plan.subject)
        .issuer_name(signer.certificate.subject).public_key(plan.public_key)
        .serial_number(serial).not_valid_before(plan.not_before)
        .not_valid_after(plan.not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=profile.path_length),
                       critical=True)
        .add_extension(_key_usage_for(profile.key_usage_extension(),
                                      _key_kind(plan.public_key)), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(plan.public_key),
                       critical=False)
        .add_extension(signer.authority_key_identifier(), critical=False)
    )
    if profile.extended_key_usage:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(list(profile.extended_key_usage)), critical=False)
    if plan.sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(plan.sans)),
                                        critical=not plan.subject)
    urls = profile.urls
    if urls.crl_distribution_points:
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(u) for u in urls.crl_distribution_points],
            None, None, None)]), critical=False)
    access = [x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                     x509.UniformResourceIdentifier(u)) for u in urls.ocsp]
    access += [x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                      x509.UniformResourceIdentifier(u))
               for u in urls.ca_issuers]
    if access:
        builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
    return builder.sign(signer.private_key, signer.hash_algorithm)


def assemble_and_compare(template: CertificateTemplate, plan: IssuancePlan, serial: int
                         ) -> x509.Certificate:
    """Sign with the template; assert its TBSCertificate equals the reference builder's."""
    ours = x509.load_der_x509_certificate(template.sign(plan, serial))
    assert ours.tbs_certificate_bytes == reference(template, plan, serial).tbs_certificate_bytes
    return ours


@pytest.fixture(scope="module", params=["ec-p256", "ec-p384", "ed25519", "rsa-2048"])
def issuing(request: pytest.FixtureRequest) -> Signer:
    spec = KeySpec.parse(request.param)
    root = create_root("root", ca_name("Root", "Test"), spec, now=NOW)
    return create_issuing("issuing", ca_name("Issuing", "Test"), spec, root, now=NOW)


SHAPES = {
    "cn-only": dict(cn="device-1"),
    "attributes-and-sans": dict(
        cn="device-2",
        attributes=[x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN-42"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Ünïcode")],
        sans=[x509.UniformResourceIdentifier("urn:dev:mac:0a1b2c3d4e5f"),
              x509.DNSName("d2.example.test")]),
    "empty-subject-critical-san": dict(
        cn=None, sans=[x509.UniformResourceIdentifier("urn:dev:mac:00aabbccddee")]),
}


@pytest.mark.parametrize("leaf_key", ["ec-p256", "ec-p384", "ed25519", "rsa-2048"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_assembled_certificate_matches_cryptography_builder(issuing: Signer, leaf_key: str,
                                                            shape: str) -> None:
    csr, _ = make_csr(key=make_key(leaf_key), **SHAPES[shape])  # type: ignore[arg-type]
    profile = PROFILE if SHAPES[shape]["cn"] else dataclasses.replace(
        PROFILE, device_id_from="san:uri")
    plan = plan_issuance(profile, Request.from_csr(csr), now=NOW,
                         issuer_not_after=issuing.certificate.not_valid_after_utc)
    serial = (1 << 127) | 0xFF  # top bit set: needs a leading zero octet
    ours = assemble_and_compare(CertificateTemplate(profile, issuing), plan, serial)
    ours.verify_directly_issued_by(issuing.certificate)


def test_dates_from_2050_use_generalized_time(issuing: Signer) -> None:
    csr, _ = make_csr("device-3")
    late = NOW.replace(year=2049, month=12, day=1)
    plan = plan_issuance(PROFILE, Request.from_csr(csr), now=late,
                         issuer_not_after=late + dt.timedelta(days=3650))
    ours = assemble_and_compare(CertificateTemplate(PROFILE, issuing), plan, 7 << 70)
    assert ours.not_valid_after_utc.year == 2050


def test_sub_ca_profile_matches_builder(issuing: Signer) -> None:
    csr, _ = make_csr("Sub CA 1")
    plan = plan_issuance(SUB_CA, Request.from_csr(csr), now=NOW,
                         issuer_not_after=issuing.certificate.not_valid_after_utc)
    ours = assemble_and_compare(CertificateTemplate(SUB_CA, issuing), plan, 123456789 << 64)
    assert ours.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0


def test_signature_algorithm_matches_issuer_key(issuing: Signer) -> None:
    csr, _ = make_csr("device-4")
    plan = plan_issuance(PROFILE, Request.from_csr(csr), now=NOW,
                         issuer_not_after=issuing.certificate.not_valid_after_utc)
    template = CertificateTemplate(PROFILE, issuing)
    ours = x509.load_der_x509_certificate(template.sign(plan, 99 << 64))
    key = issuing.certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        assert ours.signature_hash_algorithm is not None
        key.verify(ours.signature, ours.tbs_certificate_bytes,
                   ec.ECDSA(ours.signature_hash_algorithm))
    elif isinstance(key, rsa.RSAPublicKey):
        assert ours.signature_hash_algorithm is not None
        key.verify(ours.signature, ours.tbs_certificate_bytes, padding.PKCS1v15(),
                   ours.signature_hash_algorithm)
    else:
        assert isinstance(key, ed25519.Ed25519PublicKey)
        key.verify(ours.signature, ours.tbs_certificate_bytes)
