"""Signing end-entity (and sub-CA) certificates from a decided IssuancePlan.

What a certificate contains was decided in core.issuance_plan; this module only turns the plan
into DER. Extensions that depend only on the profile and the issuer are built once per template,
not per certificate: at manufacturing rates that is a measurable share of the work.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID

from fleetpki.ca.signer import Signer
from fleetpki.core.issuance_plan import IssuancePlan
from fleetpki.core.profile import Profile, ProfileKind


class CertificateTemplate:
    """One profile signed by one issuer. Immutable after construction."""

    def __init__(self, profile: Profile, signer: Signer) -> None:
        if profile.issuer != signer.name:
            raise ValueError(f"profile {profile.name} is issued by {profile.issuer}, "
                             f"not {signer.name}")
        self.profile = profile
        self.signer = signer
        is_ca = profile.kind is ProfileKind.sub_ca
        self._basic_constraints = x509.BasicConstraints(
            ca=is_ca, path_length=profile.path_length if is_ca else None)
        self._aki = signer.authority_key_identifier()
        self._eku = (x509.ExtendedKeyUsage(list(profile.extended_key_usage))
                     if profile.extended_key_usage else None)
        self._pointer_extensions = _pointer_extensions(profile)
        self._key_usage = profile.key_usage_extension()

    def sign(self, plan: IssuancePlan, serial: int) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(plan.subject)
            .issuer_name(self.signer.certificate.subject)
            .public_key(plan.public_key)
            .serial_number(serial)
            .not_valid_before(plan.not_before)
            .not_valid_after(plan.not_after)
            .add_extension(self._basic_constraints, critical=True)
            .add_extension(_key_usage_for(self._key_usage, plan), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(plan.public_key),
                           critical=False)
            .add_extension(self._aki, critical=False)
        )
        if self._eku is not None:
            builder = builder.add_extension(self._eku, critical=False)
        if plan.sans:
            # RFC 5280 §4.2.1.6: SAN is critical when the subject is empty.
            builder = builder.add_extension(x509.SubjectAlternativeName(list(plan.sans)),
                                            critical=not plan.subject)
        for extension in self._pointer_extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(self.signer.private_key, self.signer.hash_algorithm)


def _key_usage_for(usage: x509.KeyUsage, plan: IssuancePlan) -> x509.KeyUsage:
    """Drop usages the key cannot have: keyEncipherment is RSA-only (RFC 4055 §1.2), and
    keyAgreement is meaningless for RSA and Ed25519 keys (RFC 8410 §5, RFC 5480 §3). A profile
    that allows several key types lists the union; each certificate gets what its key supports."""
    is_rsa = isinstance(plan.public_key, rsa.RSAPublicKey)
    is_ec = isinstance(plan.public_key, ec.EllipticCurvePublicKey)
    key_agreement = usage.key_agreement and is_ec
    return x509.KeyUsage(
        digital_signature=usage.digital_signature,
        content_commitment=usage.content_commitment,
        key_encipherment=usage.key_encipherment and is_rsa,
        data_encipherment=usage.data_encipherment and is_rsa,
        key_agreement=key_agreement,
        key_cert_sign=usage.key_cert_sign,
        crl_sign=usage.crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _pointer_extensions(profile: Profile) -> list[x509.ExtensionType]:
    extensions: list[x509.ExtensionType] = []
    urls = profile.urls
    if urls.crl_distribution_points:
        extensions.append(x509.CRLDistributionPoints([
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(u) for u in urls.crl_distribution_points],
                relative_name=None, reasons=None, crl_issuer=None)
        ]))
    access = [x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                     x509.UniformResourceIdentifier(u)) for u in urls.ocsp]
    access += [x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                      x509.UniformResourceIdentifier(u)) for u in urls.ca_issuers]
    if access:
        extensions.append(x509.AuthorityInformationAccess(access))
    return extensions
