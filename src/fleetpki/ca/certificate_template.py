"""Signing end-entity (and sub-CA) certificates from a decided IssuancePlan.

What a certificate contains was decided in core.issuance_plan; this module only turns the plan
into DER. Everything that depends only on the profile and the issuer (issuer name, signature
algorithm, basicConstraints, keyUsage, EKU, AKI, CRL and OCSP pointers) is encoded once per
template; per certificate only the serial, validity, subject, key, SKI and SAN are encoded and the
TBSCertificate is signed. At manufacturing rates this halves the cost of a certificate compared
with building it field by field. The output is byte-identical to cryptography's CertificateBuilder
for the same inputs (tests/unit/ca/test_certificate_assembly.py holds that line).
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID

from fleetpki.ca.signature import signature_algorithm
from fleetpki.ca.signer import Signer
from fleetpki.core import der
from fleetpki.core.issuance_plan import IssuancePlan
from fleetpki.core.profile import Profile, ProfileKind
from fleetpki.core.revocation_policy import fill_shard

_VERSION_3 = der.tlv(0xA0, der.integer(2))
_EXTENSIONS_TAG = 0xA3
_SKI_OID = der.oid("2.5.29.14")
_SAN_OID = der.oid("2.5.29.17")


class CertificateTemplate:
    """One profile signed by one issuer. Immutable after construction."""

    def __init__(self, profile: Profile, signer: Signer) -> None:
        if profile.issuer != signer.name:
            raise ValueError(f"profile {profile.name} is issued by {profile.issuer}, "
                             f"not {signer.name}")
        self.profile = profile
        self.signer = signer
        self._issuer_name = signer.certificate.subject.public_bytes()
        self._algorithm, self._sign = signature_algorithm(signer)
        is_ca = profile.kind is ProfileKind.sub_ca
        self._basic_constraints = _extension(x509.BasicConstraints(
            ca=is_ca, path_length=profile.path_length if is_ca else None), critical=True)
        usage = profile.key_usage_extension()
        self._key_usage = {kind: _extension(_key_usage_for(usage, kind), critical=True)
                           for kind in ("rsa", "ec", "other")}
        self._aki = _extension(signer.authority_key_identifier(), critical=False)
        # A sharded profile points each certificate at its own CRL partition: one encoded
        # pointer block per shard, chosen by serial at signing time.
        shards = profile.revocation.crl_shards if profile.revocation.sharded else 1
        self._after_san = [
            b"".join(_extension(e, critical=False) for e in _pointer_extensions(profile, shard))
            for shard in (range(shards) if profile.revocation.sharded else (None,))]
        self._eku = (_extension(x509.ExtendedKeyUsage(list(profile.extended_key_usage)),
                                critical=False) if profile.extended_key_usage else b"")

    def sign(self, plan: IssuancePlan, serial: int) -> bytes:
        """The DER certificate for `plan` with `serial`, signed once."""
        subject = plan.subject.public_bytes()
        extensions = [
            self._basic_constraints,
            self._key_usage[_key_kind(plan.public_key)],
            der.sequence(_SKI_OID, der.tlv(der.OCTET_STRING,
                                           der.tlv(der.OCTET_STRING, _ski(plan.spki_der)))),
            self._aki,
            self._eku,
        ]
        if plan.sans:
            # RFC 5280 §4.2.1.6: SAN is critical when the subject is empty.
            extensions.append(der.sequence(
                _SAN_OID, b"" if plan.subject else der.BOOLEAN_TRUE,
                der.tlv(der.OCTET_STRING, x509.SubjectAlternativeName(list(plan.sans))
                        .public_bytes())))
        extensions.append(self._after_san[plan.crl_shard(serial) or 0])
        tbs = der.sequence(
            _VERSION_3,
            der.integer(serial),
            self._algorithm,
            self._issuer_name,
            der.sequence(der.time(plan.not_before), der.time(plan.not_after)),
            subject,
            plan.spki_der,
            der.tlv(_EXTENSIONS_TAG, der.sequence(*extensions)),
        )
        signature = self._sign(tbs)
        return der.sequence(tbs, self._algorithm, der.tlv(der.BIT_STRING, b"\x00" + signature))


def _extension(value: x509.ExtensionType, *, critical: bool) -> bytes:
    """Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }"""
    return der.sequence(der.oid(value.oid.dotted_string), der.BOOLEAN_TRUE if critical else b"",
                        der.tlv(der.OCTET_STRING, value.public_bytes()))


def _ski(spki: bytes) -> bytes:
    """RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING's value."""
    bit_string = der.content(der.elements(spki)[1])
    return hashlib.sha1(bit_string[1:], usedforsecurity=False).digest()


def _key_kind(public_key: CertificatePublicKeyTypes) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "ec"
    return "other"


def _key_usage_for(usage: x509.KeyUsage, kind: str) -> x509.KeyUsage:
    """Drop usages the key cannot have: keyEncipherment is RSA-only (RFC 4055 §1.2), and
    keyAgreement is meaningless for RSA and Ed25519 keys (RFC 8410 §5, RFC 5480 §3). A profile that
    allows several key types lists the union; each certificate gets what its key supports."""
    return x509.KeyUsage(
        digital_signature=usage.digital_signature,
        content_commitment=usage.content_commitment,
        key_encipherment=usage.key_encipherment and kind == "rsa",
        data_encipherment=usage.data_encipherment and kind == "rsa",
        key_agreement=usage.key_agreement and kind == "ec",
        key_cert_sign=usage.key_cert_sign,
        crl_sign=usage.crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _pointer_extensions(profile: Profile, shard: int | None) -> list[x509.ExtensionType]:
    extensions: list[x509.ExtensionType] = []
    urls = profile.urls
    if urls.crl_distribution_points:
        extensions.append(x509.CRLDistributionPoints([_distribution_point(
            urls.crl_distribution_points, shard)]))
    access = [x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                     x509.UniformResourceIdentifier(u)) for u in urls.ocsp]
    access += [x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                      x509.UniformResourceIdentifier(u)) for u in urls.ca_issuers]
    if access:
        extensions.append(x509.AuthorityInformationAccess(access))
    if urls.freshest_crl:
        extensions.append(x509.FreshestCRL([_distribution_point(urls.freshest_crl, shard)]))
    if profile.ocsp_no_check:
        extensions.append(x509.OCSPNoCheck())
    return extensions


def _distribution_point(urls: tuple[str, ...], shard: int | None) -> x509.DistributionPoint:
    return x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(fill_shard(u, shard)) for u in urls],
        relative_name=None, reasons=None, crl_issuer=None)
