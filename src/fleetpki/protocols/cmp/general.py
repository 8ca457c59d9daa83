"""General messages (genm/genp, RFC 9810 §5.3.19; RFC 9483 §4.3): what a device may ask
besides a certificate. Each answer is one InfoTypeAndValue; a type this server does not know
is left out of the genp (RFC 9810 §5.3.19: the receiver may ignore what it does not know).

- caCerts: the issuing CA of the label's profile and its parents to the root;
- rootCaCert -> rootCaKeyUpdate: the value is absent, which says "no update": fleetpki rolls
  a root over by provisioning future roots on devices (docs/trust.md), not with link
  certificates;
- certReqTemplate: an empty template (the profile decides subject and extensions whatever a
  request says) and the key type the profile prefers, as an algId control;
- crlStatusList -> crls, and the older currentCRL: the issuing CA's full CRL, unless the
  device's copy is as new;
- signKeyPairTypes: the key types the profile accepts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyasn1_alt_modules import rfc9810  # type: ignore[import-untyped, unused-ignore]

from fleetpki.core import der
from fleetpki.core.keys import KeySpec, preferred_key_spec
from fleetpki.core.profile import Profile
from fleetpki.protocols.cmp.asn1 import (
    IT_CA_CERTS,
    IT_CERT_REQ_TEMPLATE,
    IT_CRL_STATUS_LIST,
    IT_CRLS,
    IT_CURRENT_CRL,
    IT_ROOT_CA_CERT,
    IT_ROOT_CA_KEY_UPDATE,
    IT_SIGN_KEY_PAIR_TYPES,
    REG_CTRL_ALG_ID,
    decode,
    itav,
)
from fleetpki.protocols.cmp.codec import InfoRequest
from fleetpki.protocols.cms_parts import algorithm_identifier

_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
_CURVES = {"secp256r1": "1.2.840.10045.3.1.7", "secp384r1": "1.3.132.0.34",
           "secp521r1": "1.3.132.0.35"}
_RSA = "1.2.840.113549.1.1.1"
_ED25519 = "1.3.101.112"


@dataclasses.dataclass(frozen=True, slots=True)
class GeneralContext:
    profile: Profile
    chain: Sequence[x509.Certificate]  # issuing CA first, root last
    crl: Callable[[], bytes | None]  # the issuing CA's current full CRL, DER


def answer(infos: Sequence[InfoRequest], context: GeneralContext) -> list[bytes]:
    """The genp's InfoTypeAndValue list, in the order asked."""
    answers: list[bytes] = []
    for info in infos:
        made = _ANSWERS.get(info.info_type)
        if made is not None:
            answers.extend(made(info, context))
    return answers


def _ca_certs(_: InfoRequest, context: GeneralContext) -> list[bytes]:
    return [itav(IT_CA_CERTS, der.sequence(*(c.public_bytes(serialization.Encoding.DER)
                                             for c in context.chain)))]


def _root_update(_: InfoRequest, __: GeneralContext) -> list[bytes]:
    return [itav(IT_ROOT_CA_KEY_UPDATE)]


def _template(_: InfoRequest, context: GeneralContext) -> list[bytes]:
    spec = preferred_key_spec(context.profile.keys)
    control = der.sequence(der.oid(REG_CTRL_ALG_ID), key_algorithm(spec))
    return [itav(IT_CERT_REQ_TEMPLATE, der.sequence(der.sequence(), der.sequence(control)))]


def _sign_key_types(_: InfoRequest, context: GeneralContext) -> list[bytes]:
    allowed = context.profile.keys.allowed
    specs = [KeySpec.parse(name) for name in sorted(allowed) if name != "rsa"]
    if "rsa" in allowed:
        specs.append(preferred_key_spec(dataclasses.replace(context.profile.keys,
                                                            allowed=frozenset({"rsa"}))))
    return [itav(IT_SIGN_KEY_PAIR_TYPES, der.sequence(*(key_algorithm(s) for s in specs)))]


def _current_crl(_: InfoRequest, context: GeneralContext) -> list[bytes]:
    crl = context.crl()
    return [itav(IT_CURRENT_CRL, crl)] if crl is not None else []


def _crl_status(info: InfoRequest, context: GeneralContext) -> list[bytes]:
    """RFC 9483 §4.3.4: the CRL the device names by issuer or distribution point, when ours
    is newer than the thisUpdate it holds; an absent value when it is current."""
    crl = context.crl()
    if crl is None:
        return [itav(IT_CRLS)]
    ours = x509.load_der_x509_crl(crl).last_update_utc
    held = _held_this_update(info.value)
    if held is not None and held >= ours:
        return [itav(IT_CRLS)]
    return [itav(IT_CRLS, der.sequence(crl))]


def _held_this_update(value: bytes | None) -> dt.datetime | None:
    """The newest thisUpdate in a CRLStatusList; None when the device holds no CRL."""
    if value is None:
        return None
    statuses: Any = decode(value, rfc9810.CRLStatusListValue(), "CRLStatusList")
    held = None
    for status in statuses:
        time = status["thisUpdate"]
        if time.isValue:
            moment = time.getComponent().asDateTime
            moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
            held = moment if held is None or moment > held else held
    return held


def key_algorithm(spec: KeySpec) -> bytes:
    """The AlgorithmIdentifier of a SubjectPublicKeyInfo of this key type."""
    text = str(spec)
    if text == "ed25519":
        return algorithm_identifier(_ED25519)
    if text.startswith("rsa"):
        return algorithm_identifier(_RSA, der.tlv(der.NULL, b""))
    assert spec.curve is not None
    return algorithm_identifier(_EC_PUBLIC_KEY, der.oid(_CURVES[spec.curve]))


_ANSWERS: dict[str, Callable[[InfoRequest, GeneralContext], list[bytes]]] = {
    IT_CA_CERTS: _ca_certs,
    IT_ROOT_CA_CERT: _root_update,
    IT_CERT_REQ_TEMPLATE: _template,
    IT_CRL_STATUS_LIST: _crl_status,
    IT_CURRENT_CRL: _current_crl,
    IT_SIGN_KEY_PAIR_TYPES: _sign_key_types,
}
