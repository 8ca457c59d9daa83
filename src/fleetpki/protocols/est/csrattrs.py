"""CSR Attributes (RFC 7030 §4.5.2; ASN.1 corrected by RFC 8951 §4): what a CSR should hold.

The server tells a device, before it builds its CSR, which key to generate, how to sign the
request and which attributes to include; the device agent decodes the same message. The
wire form is `CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID`, each element either a bare
OID or an Attribute (type OID plus a non-empty SET of values, RFC 8951 §4).

Encoding follows the example of RFC 7030 §4.5.2: the key type is an Attribute whose type is
the public-key algorithm and whose single value is the EC curve OID (or, for RSA, an INTEGER
modulus size); a key type with no parameter (Ed25519) and the signature algorithm are bare
OIDs. pyasn1's tagging and "empty SEQUENCE OF" quirks stay inside this module.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurveOID
from cryptography.x509.oid import (
    AttributeOID,
    ObjectIdentifier,
    PublicKeyAlgorithmOID,
    SignatureAlgorithmOID,
)

# pyasn1 and its modules ship no type information; the ignores are scoped to these imports.
from pyasn1.codec.der import decoder as der_decoder  # type: ignore[import-untyped, unused-ignore]
from pyasn1.codec.der import encoder as der_encoder  # type: ignore[import-untyped, unused-ignore]
from pyasn1.error import PyAsn1Error  # type: ignore[import-untyped, unused-ignore]
from pyasn1.type import univ  # type: ignore[import-untyped, unused-ignore]
from pyasn1_alt_modules import rfc5652, rfc7030  # type: ignore[import-untyped, unused-ignore]

from fleetpki.core.errors import BadInput
from fleetpki.core.keys import KeyKind, preferred_key_spec
from fleetpki.core.names import SUBJECT_ATTRIBUTES
from fleetpki.core.profile import Profile

__all__ = [
    "CsrAttributes", "csr_attributes_for", "decode_csr_attributes", "encode_csr_attributes",
]

_EC = PublicKeyAlgorithmOID.EC_PUBLIC_KEY
_RSA = PublicKeyAlgorithmOID.RSAES_PKCS1_v1_5  # rsaEncryption, 1.2.840.113549.1.1.1
_ED25519 = PublicKeyAlgorithmOID.ED25519  # RFC 8410 §3: one OID names key and signature
_KEY_ALGORITHMS = frozenset({_EC, _RSA, _ED25519})
_SIGNATURE_ALGORITHMS = frozenset({
    SignatureAlgorithmOID.ECDSA_WITH_SHA256, SignatureAlgorithmOID.ECDSA_WITH_SHA384,
    SignatureAlgorithmOID.ECDSA_WITH_SHA512, SignatureAlgorithmOID.RSA_WITH_SHA256,
    SignatureAlgorithmOID.RSA_WITH_SHA384, SignatureAlgorithmOID.RSA_WITH_SHA512,
    SignatureAlgorithmOID.ED25519,
})

# (key algorithm, parameter, signature) per allowed key type. The hashes mirror
# fleetpki.core.keys.signature_hash (RFC 5480 §4: hash strength matched to the curve), which
# takes a private key and so cannot be asked about a key type; a test pins the two together.
_ALGORITHMS: dict[str, tuple[ObjectIdentifier, ObjectIdentifier | None, ObjectIdentifier]] = {
    "ec-p256": (_EC, EllipticCurveOID.SECP256R1, SignatureAlgorithmOID.ECDSA_WITH_SHA256),
    "ec-p384": (_EC, EllipticCurveOID.SECP384R1, SignatureAlgorithmOID.ECDSA_WITH_SHA384),
    "ec-p521": (_EC, EllipticCurveOID.SECP521R1, SignatureAlgorithmOID.ECDSA_WITH_SHA512),
    "ed25519": (_ED25519, None, SignatureAlgorithmOID.ED25519),
    "rsa": (_RSA, None, SignatureAlgorithmOID.RSA_WITH_SHA256),
}


@dataclasses.dataclass(frozen=True, slots=True)
class CsrAttributes:
    """What the server asks a CSR to hold (RFC 7030 §4.5.2).

    key_algorithm: id-ecPublicKey, rsaEncryption or Ed25519. key_parameter: the EC curve OID,
    or the RSA modulus size in bits. signature_algorithm: how to sign the CSR; for Ed25519 it
    equals key_algorithm and travels as one OID, so decoding a bare Ed25519 OID sets both.
    requested_oids: further bare OIDs, e.g. subject attributes or challengePassword.
    """

    key_algorithm: ObjectIdentifier | None = None
    key_parameter: ObjectIdentifier | int | None = None
    signature_algorithm: ObjectIdentifier | None = None
    requested_oids: tuple[ObjectIdentifier, ...] = ()

    def __post_init__(self) -> None:
        if self.key_parameter is not None and self.key_algorithm is None:
            raise ValueError("a key parameter needs a key algorithm")
        if isinstance(self.key_parameter, int) and self.key_parameter <= 0:
            raise ValueError("an RSA modulus size must be positive")


def encode_csr_attributes(attrs: CsrAttributes) -> bytes:
    """DER of the CsrAttrs SEQUENCE: requested OIDs, then the key type, then the signature."""
    items = [_oid_item(oid) for oid in attrs.requested_oids]
    if attrs.key_algorithm is not None:
        if attrs.key_parameter is None:
            items.append(_oid_item(attrs.key_algorithm))
        else:
            items.append(_attribute_item(attrs.key_algorithm, attrs.key_parameter))
    if attrs.signature_algorithm is not None and not (
        attrs.signature_algorithm == attrs.key_algorithm and attrs.key_parameter is None
    ):
        items.append(_oid_item(attrs.signature_algorithm))
    sequence = rfc7030.CsrAttrs()
    sequence.clear()  # pyasn1 refuses to encode a SEQUENCE OF that was never given a value
    sequence.extend(items)
    encoded: bytes = der_encoder.encode(sequence)
    return encoded


def decode_csr_attributes(der: bytes) -> CsrAttributes:
    """The inverse of encode_csr_attributes, for the agent; BadInput if the DER is malformed.

    Attributes it does not understand (extensionRequest templates, vendor attributes) are
    ignored, as RFC 7030 §4.5.2 lets a client do; bare OIDs that name neither a key nor a
    signature algorithm land in requested_oids. The first key type given wins.
    """
    try:
        decoded, rest = der_decoder.decode(der, asn1Spec=rfc7030.CsrAttrs())
    except PyAsn1Error as exc:
        raise BadInput(f"the CSR attributes are not DER of CsrAttrs (RFC 7030 §4.5.2): "
                       f"{exc}") from None
    if rest:
        raise BadInput(f"{len(rest)} bytes follow the CsrAttrs SEQUENCE")
    key_algorithm: ObjectIdentifier | None = None
    key_parameter: ObjectIdentifier | int | None = None
    signature: ObjectIdentifier | None = None
    requested: list[ObjectIdentifier] = []
    for item in decoded:
        if item.getName() == "oid":
            oid = _oid(item["oid"])
            if oid in _KEY_ALGORITHMS and key_algorithm is None:
                key_algorithm = oid
            if oid in _SIGNATURE_ALGORITHMS and signature is None:
                signature = oid
            if oid not in _KEY_ALGORITHMS | _SIGNATURE_ALGORITHMS:
                requested.append(oid)
            continue
        attr_type = _oid(item["attribute"]["attrType"])
        if attr_type in _KEY_ALGORITHMS and key_algorithm is None:
            key_algorithm = attr_type
            key_parameter = _key_parameter(attr_type, item["attribute"]["attrValues"])
    return CsrAttributes(key_algorithm, key_parameter, signature, tuple(requested))


def csr_attributes_for(profile: Profile, *, challenge_password: bool = False) -> CsrAttributes:
    """What to ask of a device enrolling under `profile`.

    The key is the profile's preferred type (core.keys.preferred_key_spec, the one the server
    generates for serverkeygen); RSA at the policy's floor rounded up to a standard size.
    requested_oids are the subject attributes the profile requires, in the profile's order,
    preceded by challengePassword (PKCS#9) when the caller wants one, e.g. to carry tls-unique
    (RFC 7030 §3.5).
    """
    spec = preferred_key_spec(profile.keys)
    key_algorithm, curve, signature = _ALGORITHMS["rsa" if spec.kind is KeyKind.rsa else str(spec)]
    parameter: ObjectIdentifier | int | None = curve if spec.bits is None else spec.bits
    requested = [SUBJECT_ATTRIBUTES[name] for name, rule in profile.subject.rules if rule.required]
    if challenge_password:
        requested.insert(0, AttributeOID.CHALLENGE_PASSWORD)
    return CsrAttributes(key_algorithm, parameter, signature, tuple(requested))


def _oid_item(oid: ObjectIdentifier) -> Any:
    item = rfc7030.AttrOrOID()
    item["oid"] = univ.ObjectIdentifier(oid.dotted_string)
    return item


def _attribute_item(attr_type: ObjectIdentifier, value: ObjectIdentifier | int) -> Any:
    if isinstance(value, ObjectIdentifier):
        value_der = der_encoder.encode(univ.ObjectIdentifier(value.dotted_string))
    else:
        value_der = der_encoder.encode(univ.Integer(value))
    attribute = rfc5652.Attribute()
    attribute["attrType"] = univ.ObjectIdentifier(attr_type.dotted_string)
    attribute["attrValues"].append(univ.Any(value_der))
    item = rfc7030.AttrOrOID()
    item["attribute"] = attribute
    return item


def _oid(value: Any) -> ObjectIdentifier:
    try:
        return ObjectIdentifier(str(value))
    except ValueError as exc:
        raise BadInput(f"CSR attributes hold an unusable OID {value}: {exc}") from None


def _key_parameter(attr_type: ObjectIdentifier, values: Any) -> ObjectIdentifier | int:
    """The one value of a key-type Attribute: a curve OID or a positive INTEGER size."""
    name = attr_type.dotted_string
    if not len(values):
        raise BadInput(f"the {name} attribute has no value (RFC 8951 §4: SET SIZE (1..MAX))")
    try:
        value, rest = der_decoder.decode(values[0].asOctets())
    except PyAsn1Error as exc:
        raise BadInput(f"the value of the {name} attribute is not DER: {exc}") from None
    if rest:
        raise BadInput(f"bytes follow the value of the {name} attribute")
    if value.tagSet == univ.ObjectIdentifier.tagSet:
        return _oid(value)
    if value.tagSet == univ.Integer.tagSet and int(value) > 0:
        return int(value)
    raise BadInput(f"the {name} attribute must hold a curve OID or a positive key size")
