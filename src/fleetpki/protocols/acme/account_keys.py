"""ACME account keys (RFC 8555 §6.2): which public JWKs the server accepts, in one
canonical form, and their thumbprints (RFC 7638). An account key is also compared with a
certificate's key (revokeCert, RFC 8555 §7.6; the account key must not be certified, §11.1),
so conversion works both ways between JWK and `cryptography` keys, through joserfc."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from joserfc.errors import JoseError
from joserfc.jwk import DictKey, ECKey, OKPKey, RSAKey
from joserfc.jwk import thumbprint as rfc7638_thumbprint

from fleetpki.core.acme_problems import AcmeProblem
from fleetpki.protocols.acme.jose_input import b64decode, bad_public_key, malformed, quote

MAX_JWK_BYTES: Final = 2048  # compact JSON; an RSA-4096 public JWK is about 740 bytes
RSA_MIN_BITS: Final = 2048  # NIST SP 800-131A, as for certificates (core/keys.py)
RSA_MAX_BITS: Final = 4096  # bounds the cost of an RSA verification a stranger can ask for
RSA_EXPONENT: Final = 65537  # as core/keys.py: nothing needs another exponent

AccountPublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

# RFC 7518 §3.1 and RFC 8037 §3.1: the key each algorithm takes (ES* names its curve).
_KEY_FOR_ALG: Final[Mapping[str, tuple[str, str | None]]] = {
    "ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "ES512": ("EC", "P-521"),
    "RS256": ("RSA", None), "RS384": ("RSA", None), "RS512": ("RSA", None),
    "PS256": ("RSA", None), "PS384": ("RSA", None), "PS512": ("RSA", None),
    "EdDSA": ("OKP", "Ed25519"),
}
# RFC 7638 §3.2: the members that make up each key type's thumbprint; our canonical JWK.
_KEY_MEMBERS: Final[Mapping[str, tuple[str, ...]]] = {
    "EC": ("crv", "x", "y"), "RSA": ("e", "n"), "OKP": ("crv", "x"),
}
_CURVES: Final[Mapping[str, tuple[str, ...]]] = {
    "EC": ("P-256", "P-384", "P-521"), "OKP": ("Ed25519",),
}
_EC_CURVES: Final = {"secp256r1", "secp384r1", "secp521r1"}  # cryptography's names
_KEY_CLASSES: Final[Mapping[str, type[ECKey] | type[RSAKey] | type[OKPKey]]] = {
    "EC": ECKey, "RSA": RSAKey, "OKP": OKPKey,
}
# RFC 7518 §6.2.2, §6.3.2, §6.4 and RFC 8037 §2: members only a private or secret key has.
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


@dataclasses.dataclass(frozen=True, slots=True)
class ImportedKey:
    jwk: dict[str, str]  # canonical: kty and the RFC 7638 members only
    key: ECKey | RSAKey | OKPKey


def policy_key(public_key: CertificatePublicKeyTypes) -> AccountPublicKey:
    """The account keys this server accepts (RFC 8555 §6.2 lets it refuse others as
    badPublicKey): RSA of 2048 to 4096 bits with e = 65537, P-256/384/521, Ed25519."""
    if isinstance(public_key, rsa.RSAPublicKey):
        if not RSA_MIN_BITS <= public_key.key_size <= RSA_MAX_BITS:
            raise bad_public_key(f"RSA key of {public_key.key_size} bits; this server accepts "
                                  f"{RSA_MIN_BITS} to {RSA_MAX_BITS} bits")
        if public_key.public_numbers().e != RSA_EXPONENT:
            raise bad_public_key(f"RSA public exponent must be {RSA_EXPONENT}")
        return public_key
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in _EC_CURVES:
            raise bad_public_key(f"EC curve {public_key.curve.name} is not accepted; use "
                                  "P-256, P-384 or P-521")
        return public_key
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return public_key
    raise bad_public_key(f"{type(public_key).__name__} keys are not accepted; use EC "
                          "(P-256, P-384, P-521), RSA (2048 to 4096 bits) or Ed25519")


def _joserfc_key(public_key: AccountPublicKey) -> ECKey | RSAKey | OKPKey:
    if isinstance(public_key, rsa.RSAPublicKey):
        return RSAKey.import_key(public_key)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return ECKey.import_key(public_key)
    return OKPKey.import_key(public_key)


def jwk_of(public_key: CertificatePublicKeyTypes) -> dict[str, str]:
    """The canonical public JWK of a key: kty and its RFC 7638 §3.2 members, encoded as RFC
    7518 §6.2.1 and §6.3.1 say (EC coordinates at full length, RSA integers minimal). Keys
    outside the account key policy raise badPublicKey."""
    key = _joserfc_key(policy_key(public_key))
    data = key.as_dict(private=False)
    return {"kty": key.key_type, **{name: str(data[name]) for name in _KEY_MEMBERS[key.key_type]}}


def _rsa_size_first(modulus: object, what: str) -> None:
    """Refuse an RSA modulus out of bounds before joserfc parses it: importing an 8192-bit
    key costs, and joserfc warns (SecurityWarning) below 2048 bits instead of refusing."""
    bits = int.from_bytes(b64decode(modulus, f"{what} n"), "big").bit_length()
    if not RSA_MIN_BITS <= bits <= RSA_MAX_BITS:
        raise bad_public_key(f"{what} is an RSA key of {bits} bits; this server accepts "
                              f"{RSA_MIN_BITS} to {RSA_MAX_BITS} bits")


def _key_members(value: Mapping[str, Any], what: str) -> DictKey:
    """kty and the members RFC 7638 §3.2 names for it, checked for shape; other public
    members (use, alg, kid, ...) are dropped, as a thumbprint drops them."""
    kty = value.get("kty")
    if not isinstance(kty, str) or kty not in _KEY_MEMBERS:
        shown = quote(kty) if isinstance(kty, str) else "missing or not a string"
        raise bad_public_key(f"{what} has kty {shown}; this server accepts EC (P-256, "
                              "P-384, P-521), RSA (2048 to 4096 bits) and OKP (Ed25519)")
    members: DictKey = {"kty": kty}
    for name in _KEY_MEMBERS[kty]:
        member = value.get(name)
        if not isinstance(member, str) or not member:
            raise bad_public_key(f"{what}: {kty} keys need {name}, a non-empty string")
        members[name] = member
    if kty in _CURVES and members["crv"] not in _CURVES[kty]:
        raise bad_public_key(f"{what} is on curve {quote(str(members['crv']))}; accepted "
                              f"{kty} curves: {', '.join(_CURVES[kty])}")
    return members


def import_jwk(value: object, what: str) -> ImportedKey:
    """A public JWK, checked against the account key policy and imported by joserfc."""
    if not isinstance(value, Mapping):
        raise malformed(f"{what} must be a JSON object (a JWK, RFC 7517)")
    try:
        size = len(json.dumps(dict(value), separators=(",", ":")))
    except (TypeError, ValueError, RecursionError):
        raise malformed(f"{what} is not a JSON object") from None
    if size > MAX_JWK_BYTES:
        raise bad_public_key(f"{what} is {size} bytes of JSON; at most {MAX_JWK_BYTES} are "
                              "accepted")
    private = sorted(_PRIVATE_MEMBERS.intersection(value))
    if private:
        raise bad_public_key(f"{what} contains private key member(s) {', '.join(private)}: "
                              "send only the public key, and consider this private key exposed")
    members = _key_members(value, what)
    if members["kty"] == "RSA":
        _rsa_size_first(members["n"], what)
    try:
        key = _KEY_CLASSES[str(members["kty"])].import_key(members)
        canonical = jwk_of(key.public_key)
    except (JoseError, ValueError, TypeError) as error:
        raise bad_public_key(f"{what} is not a valid {members['kty']} public key "
                              f"({error})") from None
    if canonical != members:
        raise bad_public_key(f"{what} is not encoded canonically: EC coordinates take the "
                              "curve's full length (RFC 7518 §6.2.1.2), integers no leading "
                              "zero octets (RFC 7518 §2)")
    return ImportedKey(canonical, key)


def check_key_fits(alg: str, jwk: Mapping[str, str], what: str) -> None:
    """RFC 8555 §6.2: "alg" is "ES256" but the key is not a P-256 key -> badPublicKey."""
    kty, crv = _KEY_FOR_ALG[alg]
    if jwk["kty"] != kty or (crv is not None and jwk.get("crv") != crv):
        have = " ".join(filter(None, (jwk["kty"], jwk.get("crv"))))
        need = " ".join(filter(None, (kty, crv)))
        raise bad_public_key(f"{what} is signed with {alg}, which takes an {need} key, but "
                              f"the key is {have}")


def public_key_of(jwk: Mapping[str, object]) -> AccountPublicKey:
    """The `cryptography` public key of a JWK, e.g. to compare with a certificate's key in
    a revokeCert signed with that key (RFC 8555 §7.6). Raises malformed or badPublicKey."""
    return policy_key(import_jwk(jwk, "jwk").key.public_key)


def thumbprint(jwk: Mapping[str, object]) -> str:
    """RFC 7638 JWK thumbprint: SHA-256 over the required members only (§3.2), base64url
    without padding. Names an account key (one key, one account) and makes key
    authorizations (RFC 8555 §8.1)."""
    return rfc7638_thumbprint(dict(import_jwk(jwk, "jwk").jwk))


def same_key(value: object, expected: Mapping[str, object], what: str) -> bool:
    """Whether `value` is a public JWK of the same key as `expected` (compared canonically:
    member order, extra members and JSON spacing do not matter)."""
    try:
        found = import_jwk(value, what).jwk
    except AcmeProblem as problem:
        raise malformed(problem.detail) from None
    return found == import_jwk(expected, "the expected key").jwk
