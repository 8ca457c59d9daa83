"""Apply a profile to a request: the one place that decides what a certificate will contain.

The CSR contributes its public key and the names it asks for; the profile contributes everything
else. Requested extensions are checked, never copied (DESIGN.md §2): a request can narrow what its
profile allows, never widen it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtensionOID

from fleetpki.core.csr import malformed
from fleetpki.core.errors import PolicyViolation
from fleetpki.core.keys import KeySpec
from fleetpki.core.names import SUBJECT_ATTRIBUTES, SanType, san_text
from fleetpki.core.profile import EXTENDED_KEY_USAGES, Profile, ProfileKind
from fleetpki.core.revocation_policy import crl_shard

# Requested extensions we understand and check against the profile. Anything else is dropped if
# non-critical; a critical one we do not understand is refused (RFC 5280 §4.2).
_CHECKED = {
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
}
_EKU_NAMES = {oid: name for name, oid in EXTENDED_KEY_USAGES.items()}


@dataclasses.dataclass(frozen=True, slots=True)
class IssuancePlan:
    """Everything the CA needs to sign, decided and validated. Built only by `plan_issuance`."""

    profile: str
    issuer: str
    device_id: str
    subject: x509.Name
    sans: tuple[x509.GeneralName, ...]
    public_key: CertificatePublicKeyTypes
    spki_der: bytes  # the SubjectPublicKeyInfo, encoded once for the certificate and fingerprint
    key_spec: KeySpec
    not_before: dt.datetime
    not_after: dt.datetime
    crl_shards: int = 1  # the profile's partition count when the plan was made

    def crl_shard(self, serial: int) -> int | None:
        return crl_shard(serial, self.crl_shards)


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """What a requester asks for, whatever protocol carried it."""

    subject: x509.Name
    sans: tuple[x509.GeneralName, ...]
    public_key: CertificatePublicKeyTypes
    extensions: x509.Extensions = dataclasses.field(
        default_factory=lambda: x509.Extensions([]))
    validity: dt.timedelta | None = None  # None: the profile's default

    @classmethod
    def from_csr(cls, csr: x509.CertificateSigningRequest,
                 validity: dt.timedelta | None = None) -> Request:
        try:
            extensions = csr.extensions
            subject = csr.subject
            public_key = csr.public_key()
        except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
            raise malformed(exc) from None
        try:
            sans = tuple(extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except x509.ExtensionNotFound:
            sans = ()
        return cls(subject=subject, sans=sans, public_key=public_key, extensions=extensions,
                   validity=validity)


def plan_issuance(profile: Profile, request: Request, *, now: dt.datetime,
                  issuer_not_after: dt.datetime) -> IssuancePlan:
    """Decide the certificate, or raise PolicyViolation with the first reason to refuse."""
    key_spec = profile.keys.check(request.public_key)
    _check_requested_extensions(profile, request.extensions)
    subject = profile.subject.apply(request.subject)
    sans = profile.san.apply(list(request.sans))
    if not subject and not sans:
        raise PolicyViolation("the certificate would have neither a subject nor a "
                              "subjectAltName (RFC 5280 §4.1.2.6)", field="subject")
    validity = request.validity if request.validity is not None else profile.validity.default
    if validity <= dt.timedelta(0):
        raise PolicyViolation("requested validity must be positive", field="validity")
    if validity > profile.validity.maximum:
        raise PolicyViolation(
            f"requested validity of {validity.days} days exceeds the profile maximum of "
            f"{profile.validity.maximum.days} days", field="validity")
    not_before = (now - profile.validity.backdate).replace(microsecond=0)
    # A certificate never outlives its issuer: path validation would reject it after the
    # issuer expires anyway, and a device should renew before then rather than be surprised.
    not_after = min(now + validity, issuer_not_after).replace(microsecond=0)
    if not_after <= now:
        raise PolicyViolation(f"issuing CA '{profile.issuer}' has expired", field="issuer")
    return IssuancePlan(
        profile=profile.name, issuer=profile.issuer,
        device_id=device_id_of(subject, sans, profile.device_id_from),
        subject=subject, sans=sans, public_key=request.public_key,
        spki_der=request.public_key.public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo),
        key_spec=key_spec,
        not_before=not_before, not_after=not_after,
        crl_shards=profile.revocation.crl_shards,
    )


def device_id_of(subject: x509.Name, sans: tuple[x509.GeneralName, ...], attribute: str) -> str:
    """The device identity a certificate names: a subject attribute, the first URI SAN, or
    the first SAN (its value without the type: a host name or an address)."""
    if attribute == "san":
        if not sans:
            raise PolicyViolation("the profile identifies devices by their first "
                                  "subjectAltName, and the request has none", field="san")
        return san_text(sans[0])[1]
    if attribute == "san:uri":
        for name in sans:
            san_type, value = san_text(name)
            if san_type is SanType.uri:
                return value
        raise PolicyViolation("the profile identifies devices by a URI subjectAltName, and the "
                              "request has none", field="san")
    values = subject.get_attributes_for_oid(SUBJECT_ATTRIBUTES[attribute])
    if not values or not isinstance(values[0].value, str):
        raise PolicyViolation(f"the profile identifies devices by subject {attribute}, and the "
                              "request has none", field=f"subject.{attribute}")
    return values[0].value


def _check_requested_extensions(profile: Profile, extensions: x509.Extensions) -> None:
    for extension in extensions:
        value = extension.value
        if isinstance(value, x509.BasicConstraints):
            if value.ca and profile.kind is not ProfileKind.sub_ca:
                raise PolicyViolation("request asks for CA:TRUE; this profile issues end-entity "
                                      "certificates only", field="basic_constraints")
        elif isinstance(value, x509.ExtendedKeyUsage):
            foreign = [oid for oid in value if oid not in profile.extended_key_usage]
            if foreign:
                names = ", ".join(_EKU_NAMES.get(o, o.dotted_string) for o in foreign)
                raise PolicyViolation(f"request asks for extended key usage {names}, which this "
                                      "profile does not allow", field="extended_key_usage")
        elif isinstance(value, x509.KeyUsage):
            allowed = profile.key_usage_extension()
            for attr in ("digital_signature", "content_commitment", "key_encipherment",
                         "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign"):
                if getattr(value, attr) and not getattr(allowed, attr):
                    raise PolicyViolation(f"request asks for key usage {attr}, which this "
                                          "profile does not allow", field="key_usage")
        elif extension.oid not in _CHECKED and extension.critical:
            raise PolicyViolation(
                f"request carries a critical extension {extension.oid.dotted_string} that "
                "fleetpki does not understand", field="extensions")
