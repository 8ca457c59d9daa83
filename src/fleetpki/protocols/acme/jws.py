"""ACME request authentication (RFC 8555 §6.2-§6.5, §7.3.4, §7.3.5): from a POST body to a
request whose signature can be checked, or an AcmeProblem that tells the client what to fix.

Pure code: bytes and parsed JSON in, frozen records out; no I/O, no web framework. The
caller looks the account up (kid -> stored key), checks the nonce (nonces.py plus the
store's record of spent nonces) and compares `url` with the URL it was reached at (§6.4).

joserfc does the cryptography; this module holds the ACME rules it does not know, and keeps
its permissive corners shut:
- its algorithm registry holds "none" and the HMACs: every call here passes an explicit
  allow-list (ACCOUNT_ALGORITHMS; EAB_ALGORITHMS inside an external account binding only);
- it accepts the general serialization, an unprotected header and RFC 7797 unencoded
  payloads, all of which §6.2 forbids: the body is taken apart here before joserfc sees it;
- its 512-byte header bound is too small for an RSA-4096 jwk, so it is raised and our own
  bounds apply (MAX_JWK_BYTES; RSA of 2048 to 4096 bits; P-256, P-384, P-521; Ed25519);
- it reads JSON leniently (duplicate names, any Unicode encoding): we parse strictly first.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError, UnsupportedAlgorithmError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import DictKey, ECKey, Key, OctKey, OKPKey, RSAKey
from joserfc.jwk import thumbprint as rfc7638_thumbprint
from joserfc.registry import HeaderParameter, HeaderRegistryDict
from joserfc.util import urlsafe_b64decode

from fleetpki.core.acme_problems import AcmeProblem

__all__ = [
    "ACCOUNT_ALGORITHMS",
    "EAB_ALGORITHMS",
    "MAX_BODY_BYTES",
    "MAX_JWK_BYTES",
    "AccountPublicKey",
    "BadSignatureAlgorithm",
    "JwsSegments",
    "SignedRequest",
    "jwk_of",
    "parse_jws",
    "public_key_of",
    "thumbprint",
    "verify_external_account_binding",
    "verify_key_change",
]

# RFC 8555 §6.2: ES256 is mandatory, EdDSA (Ed25519) recommended; no "none", no MAC.
ACCOUNT_ALGORITHMS: Final = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512",
                             "PS256", "PS384", "PS512", "EdDSA")
# RFC 8555 §7.3.4: an external account binding is MACed with the key the CA handed out.
EAB_ALGORITHMS: Final = ("HS256", "HS384", "HS512")
MAX_JWK_BYTES: Final = 2048  # compact JSON; an RSA-4096 public JWK is about 740 bytes
MAX_PROTECTED_BYTES: Final = 4096  # base64url text of the protected header
MAX_BODY_BYTES: Final = 65536  # a finalize CSR, the largest ACME payload, is a few KiB
RSA_MIN_BITS: Final = 2048  # NIST SP 800-131A, as for certificates (core/keys.py)
RSA_MAX_BITS: Final = 4096  # bounds the cost of an RSA verification a stranger can ask for
RSA_EXPONENT: Final = 65537  # as core/keys.py: nothing needs another exponent
MIN_MAC_KEY_BYTES: Final = 16

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
_FLATTENED_MEMBERS: Final = ("protected", "payload", "signature")
# RFC 7515 §4.1.11 bars its own names from "crit"; of RFC 8555's, we understand these.
_UNDERSTOOD_CRITICAL: Final = frozenset({"nonce", "url"})
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]+")
_COMPACT: Final = re.compile(rb"\s*[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\s*")

# RFC 8555 §6.4.1 (url), §6.5.2 (nonce) and RFC 7515 §4.1.3-4 (jwk, kid), for joserfc.
_ACME_HEADERS: Final[HeaderRegistryDict] = {
    "nonce": HeaderParameter("Anti-replay nonce (RFC 8555 §6.5.2)", "str"),
    "url": HeaderParameter("Target URL (RFC 8555 §6.4.1)", "str"),
    "kid": HeaderParameter("Account URL or EAB key id (RFC 8555 §6.2, §7.3.4)", "str"),
    "jwk": HeaderParameter("Public key (RFC 8555 §6.2)", "jwk"),
}


class _Registry(jws.JWSRegistry):
    """joserfc's registry with ACME's header parameters, our size bounds and a strict
    allow-list. Unknown non-critical headers are tolerated (RFC 7515 §4); critical ones are
    refused before joserfc sees them."""

    max_header_length = MAX_PROTECTED_BYTES
    max_payload_length = MAX_BODY_BYTES

    def __init__(self, algorithms: Collection[str]) -> None:
        super().__init__(header_registry=_ACME_HEADERS, algorithms=algorithms,
                         strict_check_header=False)

    def get_alg(self, name: str) -> JWSAlgModel:
        """The allow-list only. joserfc's own version also warns on "EdDSA", which RFC 9864
        deprecates for naming two curves at once; RFC 8555 §6.2 still uses the name and we
        accept it with Ed25519 keys only, which removes that ambiguity."""
        if not self.allowed or name not in self.allowed or name not in self.algorithms:
            raise UnsupportedAlgorithmError(f"algorithm {name!r} is not allowed here")
        return self.algorithms[name]


_ACCOUNT_REGISTRY: Final = _Registry(ACCOUNT_ALGORITHMS)
_EAB_REGISTRY: Final = _Registry(EAB_ALGORITHMS)


class BadSignatureAlgorithm(AcmeProblem):
    """RFC 8555 §6.2: the problem document MUST carry an "algorithms" array of what the
    server accepts; AcmeProblem has no such member, so this subclass adds it (and the detail
    names them too, for clients that show only the detail)."""

    def __init__(self, detail: str, algorithms: tuple[str, ...] = ACCOUNT_ALGORITHMS) -> None:
        super().__init__("badSignatureAlgorithm",
                         f"{detail}; this server accepts {', '.join(algorithms)}")
        self.algorithms = algorithms

    def document(self) -> dict[str, Any]:
        document = super().document()
        document["algorithms"] = list(self.algorithms)
        return document


def _malformed(detail: str) -> AcmeProblem:
    return AcmeProblem("malformed", detail)


def _unauthorized(detail: str) -> AcmeProblem:
    return AcmeProblem("unauthorized", detail, status=403)


def _bad_public_key(detail: str) -> AcmeProblem:
    return AcmeProblem("badPublicKey", detail)


def _quote(text: str) -> str:
    """A client's string, shortened, for a detail: echoing kilobytes back helps nobody."""
    return repr(text if len(text) <= 64 else text[:61] + "...")


# --- strict JSON and base64url -------------------------------------------------------------

def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """RFC 7515 §5.2 lets a recipient refuse duplicate names; joserfc would keep the last,
    so two readers of one header could disagree."""
    members = dict(pairs)
    if len(members) != len(pairs):
        raise ValueError("duplicate member names")
    return members


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 §6)")


def _load_json(data: bytes, what: str) -> Any:
    """RFC 8259 JSON in UTF-8 (§8.1), strictly. Strings must encode back to UTF-8: a lone
    surrogate could be neither stored nor echoed back in a problem document."""
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_unique_members,
                           parse_constant=_no_constant)
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise _malformed(f"{what} is nested too deeply") from None
    except UnicodeEncodeError:
        raise _malformed(f"{what} has a string that is not Unicode (a lone surrogate "
                         "escape such as \\ud800)") from None
    except ValueError as error:
        raise _malformed(f"{what} is not valid UTF-8 JSON: {error}") from None
    return value


def _b64decode(text: object, what: str) -> bytes:
    """RFC 8555 §6.1 and RFC 7515 §2: base64url without padding, and nothing else."""
    if not isinstance(text, str):
        raise _malformed(f"{what} must be a base64url string")
    try:
        return urlsafe_b64decode(text.encode("ascii"))
    except ValueError:
        raise _malformed(f"{what} is not base64url without padding "
                         "(RFC 7515 §2, RFC 8555 §6.1)") from None


# --- the flattened JSON serialization ------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class JwsSegments:
    """The three base64url members as received: a signature covers these exact strings
    (RFC 7515 §5.2), not a re-encoding of what they decode to."""

    protected: str
    payload: str
    signature: str


@dataclasses.dataclass(frozen=True, slots=True)
class _Decoded:
    segments: JwsSegments
    header: dict[str, Any]
    payload: bytes


def _decode_flattened(value: object, what: str) -> _Decoded:
    """RFC 8555 §6.2: the flattened JSON serialization (RFC 7515 §7.2.2), one signature, no
    unprotected header, no detached payload: exactly protected, payload and signature."""
    if not isinstance(value, dict):
        raise _malformed(f"{what} must be a JWS in the flattened JSON serialization "
                         "(RFC 7515 §7.2.2): an object with protected, payload and signature")
    if "signatures" in value:
        raise _malformed(f"{what} uses the general JSON serialization; RFC 8555 §6.2 needs "
                         "the flattened one, with a single signature")
    if "header" in value:
        raise _malformed(f"{what} has an unprotected header, which RFC 8555 §6.2 forbids: "
                         "put every header parameter in protected")
    missing = [name for name in _FLATTENED_MEMBERS if name not in value]
    if missing:
        raise _malformed(f"{what} lacks {', '.join(missing)} (RFC 8555 §6.2: the payload "
                         "may not be detached; POST-as-GET sends \"payload\": \"\")")
    if len(value) != len(_FLATTENED_MEMBERS):
        extra = sorted(str(name) for name in value if name not in _FLATTENED_MEMBERS)
        raise _malformed(f"{what} has members other than protected, payload and signature: "
                         f"{', '.join(_quote(name) for name in extra[:5])}")
    if isinstance(value["protected"], str) and len(value["protected"]) > MAX_PROTECTED_BYTES:
        raise _malformed(f"{what}: protected header exceeds {MAX_PROTECTED_BYTES} bytes")
    header = _load_json(_b64decode(value["protected"], f"{what}: protected"),
                        f"{what}: the protected header")
    if not isinstance(header, dict):
        raise _malformed(f"{what}: the protected header must be a JSON object")
    payload = _b64decode(value["payload"], f"{what}: payload")
    _b64decode(value["signature"], f"{what}: signature")  # empty: fails verification
    segments = JwsSegments(value["protected"], value["payload"], value["signature"])
    return _Decoded(segments, header, payload)


# --- protected header parameters -----------------------------------------------------------

def _check_extensions(header: Mapping[str, Any], what: str) -> None:
    """RFC 7515 §4.1.11: refuse a critical parameter we do not understand; RFC 8555 §6.2:
    no RFC 7797 unencoded payload ("b64")."""
    if "b64" in header:
        raise _malformed(f"{what}: the unencoded payload option (b64, RFC 7797) is not "
                         "allowed in ACME (RFC 8555 §6.2)")
    if "crit" in header:
        crit = header["crit"]
        if not isinstance(crit, list) or not crit or not all(isinstance(n, str) for n in crit):
            raise _malformed(f"{what}: crit must be a non-empty list of header names "
                             "(RFC 7515 §4.1.11)")
        unknown = sorted(name for name in crit if name not in _UNDERSTOOD_CRITICAL)
        if unknown:
            raise _malformed(f"{what} marks parameters this server does not understand as "
                             f"critical: {', '.join(_quote(name) for name in unknown[:5])} "
                             "(RFC 7515 §4.1.11)")
        absent = sorted(name for name in crit if name not in header)
        if absent:
            raise _malformed(f"{what} lists {', '.join(absent)} in crit without sending it")


def _check_registered(header: dict[str, Any], registry: _Registry, what: str) -> None:
    """joserfc's own check of the registered parameters' types (kid, jwk, x5u, ...)."""
    try:
        registry.check_header(header)
    except JoseError as error:
        raise _malformed(f"{what}: {error.description}") from None


def _alg(header: Mapping[str, Any], what: str) -> str:
    """RFC 8555 §6.2: alg is required and MUST NOT be "none" or a MAC."""
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise _malformed(f"{what} needs alg, a string (RFC 7515 §4.1.1)")
    if alg in ACCOUNT_ALGORITHMS:
        return alg
    if alg == "none":
        raise BadSignatureAlgorithm(f"{what} has alg \"none\": ACME requests must be signed")
    if alg in EAB_ALGORITHMS:
        raise BadSignatureAlgorithm(f"{what} has alg {alg}: MAC algorithms are accepted only "
                                    "inside externalAccountBinding (RFC 8555 §6.2, §7.3.4)")
    raise BadSignatureAlgorithm(f"{what} has alg {_quote(alg)}, which this server does not "
                                "support")


def _nonce(header: Mapping[str, Any], what: str) -> str:
    """RFC 8555 §6.5: missing or empty is badNonce (the client retries with the fresh nonce
    it gets back); present but not base64url is malformed (§6.5.2)."""
    nonce = header.get("nonce")
    if nonce is None or nonce == "":
        raise AcmeProblem("badNonce", f"{what} has no nonce: fetch one from newNonce, or use "
                                      "the Replay-Nonce of the last response (RFC 8555 §6.5)")
    if not isinstance(nonce, str) or not _BASE64URL.fullmatch(nonce):
        raise _malformed(f"{what}: nonce must be base64url without padding (RFC 8555 §6.5.2)")
    return nonce


def _url(header: Mapping[str, Any], what: str) -> str:
    url = header.get("url")
    if not isinstance(url, str) or not url:
        raise _malformed(f"{what} needs url, the exact URL the request is sent to "
                         "(RFC 8555 §6.4.1)")
    return url


def _forbid_nonce(header: Mapping[str, Any], what: str, clause: str) -> None:
    if "nonce" in header:
        raise _malformed(f"{what} must not carry a nonce (RFC 8555 {clause}): only the outer "
                         "JWS does")


def _same_url(header: Mapping[str, Any], outer_url: str, what: str) -> None:
    """RFC 8555 §7.3.4 and §7.3.5: the inner url equals the outer one; a URL that does not
    match is refused as unauthorized, as §6.4 does for the request URL."""
    url = _url(header, what)
    if url != outer_url:
        raise _unauthorized(f"{what} has url {_quote(url)}, but the outer JWS has "
                            f"{_quote(outer_url)}; they must be the same string")


# --- public keys ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class _ImportedKey:
    jwk: dict[str, str]  # canonical: kty and the RFC 7638 members only
    key: ECKey | RSAKey | OKPKey


def _policy_key(public_key: CertificatePublicKeyTypes) -> AccountPublicKey:
    """The account keys this server accepts (RFC 8555 §6.2 lets it refuse others as
    badPublicKey): RSA of 2048 to 4096 bits with e = 65537, P-256/384/521, Ed25519."""
    if isinstance(public_key, rsa.RSAPublicKey):
        if not RSA_MIN_BITS <= public_key.key_size <= RSA_MAX_BITS:
            raise _bad_public_key(f"RSA key of {public_key.key_size} bits; this server accepts "
                                  f"{RSA_MIN_BITS} to {RSA_MAX_BITS} bits")
        if public_key.public_numbers().e != RSA_EXPONENT:
            raise _bad_public_key(f"RSA public exponent must be {RSA_EXPONENT}")
        return public_key
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in _EC_CURVES:
            raise _bad_public_key(f"EC curve {public_key.curve.name} is not accepted; use "
                                  "P-256, P-384 or P-521")
        return public_key
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return public_key
    raise _bad_public_key(f"{type(public_key).__name__} keys are not accepted; use EC "
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
    key = _joserfc_key(_policy_key(public_key))
    data = key.as_dict(private=False)
    return {"kty": key.key_type, **{name: str(data[name]) for name in _KEY_MEMBERS[key.key_type]}}


def _rsa_size_first(modulus: object, what: str) -> None:
    """Refuse an RSA modulus out of bounds before joserfc parses it: importing an 8192-bit
    key costs, and joserfc warns (SecurityWarning) below 2048 bits instead of refusing."""
    bits = int.from_bytes(_b64decode(modulus, f"{what} n"), "big").bit_length()
    if not RSA_MIN_BITS <= bits <= RSA_MAX_BITS:
        raise _bad_public_key(f"{what} is an RSA key of {bits} bits; this server accepts "
                              f"{RSA_MIN_BITS} to {RSA_MAX_BITS} bits")


def _key_members(value: Mapping[str, Any], what: str) -> DictKey:
    """kty and the members RFC 7638 §3.2 names for it, checked for shape; other public
    members (use, alg, kid, ...) are dropped, as a thumbprint drops them."""
    kty = value.get("kty")
    if not isinstance(kty, str) or kty not in _KEY_MEMBERS:
        shown = _quote(kty) if isinstance(kty, str) else "missing or not a string"
        raise _bad_public_key(f"{what} has kty {shown}; this server accepts EC (P-256, "
                              "P-384, P-521), RSA (2048 to 4096 bits) and OKP (Ed25519)")
    members: DictKey = {"kty": kty}
    for name in _KEY_MEMBERS[kty]:
        member = value.get(name)
        if not isinstance(member, str) or not member:
            raise _bad_public_key(f"{what}: {kty} keys need {name}, a non-empty string")
        members[name] = member
    if kty in _CURVES and members["crv"] not in _CURVES[kty]:
        raise _bad_public_key(f"{what} is on curve {_quote(str(members['crv']))}; accepted "
                              f"{kty} curves: {', '.join(_CURVES[kty])}")
    return members


def _import_jwk(value: object, what: str) -> _ImportedKey:
    """A public JWK, checked against the account key policy and imported by joserfc."""
    if not isinstance(value, Mapping):
        raise _malformed(f"{what} must be a JSON object (a JWK, RFC 7517)")
    try:
        size = len(json.dumps(dict(value), separators=(",", ":")))
    except (TypeError, ValueError, RecursionError):
        raise _malformed(f"{what} is not a JSON object") from None
    if size > MAX_JWK_BYTES:
        raise _bad_public_key(f"{what} is {size} bytes of JSON; at most {MAX_JWK_BYTES} are "
                              "accepted")
    private = sorted(_PRIVATE_MEMBERS.intersection(value))
    if private:
        raise _bad_public_key(f"{what} contains private key member(s) {', '.join(private)}: "
                              "send only the public key, and consider this private key exposed")
    members = _key_members(value, what)
    if members["kty"] == "RSA":
        _rsa_size_first(members["n"], what)
    try:
        key = _KEY_CLASSES[str(members["kty"])].import_key(members)
        canonical = jwk_of(key.public_key)
    except (JoseError, ValueError, TypeError) as error:
        raise _bad_public_key(f"{what} is not a valid {members['kty']} public key "
                              f"({error})") from None
    if canonical != members:
        raise _bad_public_key(f"{what} is not encoded canonically: EC coordinates take the "
                              "curve's full length (RFC 7518 §6.2.1.2), integers no leading "
                              "zero octets (RFC 7518 §2)")
    return _ImportedKey(canonical, key)


def _check_key_fits(alg: str, jwk: Mapping[str, str], what: str) -> None:
    """RFC 8555 §6.2: "alg" is "ES256" but the key is not a P-256 key -> badPublicKey."""
    kty, crv = _KEY_FOR_ALG[alg]
    if jwk["kty"] != kty or (crv is not None and jwk.get("crv") != crv):
        have = " ".join(filter(None, (jwk["kty"], jwk.get("crv"))))
        need = " ".join(filter(None, (kty, crv)))
        raise _bad_public_key(f"{what} is signed with {alg}, which takes an {need} key, but "
                              f"the key is {have}")


def public_key_of(jwk: Mapping[str, object]) -> AccountPublicKey:
    """The `cryptography` public key of a JWK, e.g. to compare with a certificate's key in
    a revokeCert signed with that key (RFC 8555 §7.6). Raises malformed or badPublicKey."""
    return _policy_key(_import_jwk(jwk, "jwk").key.public_key)


def thumbprint(jwk: Mapping[str, object]) -> str:
    """RFC 7638 JWK thumbprint: SHA-256 over the required members only (§3.2), base64url
    without padding. Names an account key (one key, one account) and makes key
    authorizations (RFC 8555 §8.1)."""
    return rfc7638_thumbprint(dict(_import_jwk(jwk, "jwk").jwk))


def _same_key(value: object, expected: Mapping[str, object], what: str) -> bool:
    """Whether `value` is a public JWK of the same key as `expected` (compared canonically:
    member order, extra members and JSON spacing do not matter)."""
    try:
        found = _import_jwk(value, what).jwk
    except AcmeProblem as problem:
        raise _malformed(problem.detail) from None
    return found == _import_jwk(expected, "the expected key").jwk


# --- signatures ----------------------------------------------------------------------------

def _verify_signature(segments: JwsSegments, key: Key, registry: _Registry,
                      what: str, key_name: str) -> None:
    value: jws.FlattenedJSONSerialization = {
        "protected": segments.protected, "payload": segments.payload,
        "signature": segments.signature}
    try:
        jws.deserialize_json(value, key, registry=registry)
    except BadSignatureError:
        raise _unauthorized(f"{what}: the signature does not verify with {key_name}") from None
    except (JoseError, ValueError, TypeError) as error:
        raise _malformed(f"{what} could not be verified ({error})") from None


@dataclasses.dataclass(frozen=True, slots=True)
class SignedRequest:
    """What the server learns from an ACME POST body (RFC 8555 §6.2). Nothing in it is
    authenticated until `verify` returns: look the key up by `kid` (or take `jwk` for
    newAccount and revokeCert by certificate key), then call `verify`."""

    alg: str
    nonce: str  # base64url; not yet checked for freshness (nonces.py, store)
    url: str  # to compare with the URL the request came to (§6.4): unauthorized if not equal
    kid: str | None  # the account URL
    jwk: dict[str, str] | None  # the canonical public JWK (kty and RFC 7638 members)
    payload: bytes
    segments: JwsSegments = dataclasses.field(repr=False)

    @property
    def is_post_as_get(self) -> bool:
        """RFC 8555 §6.3: a POST-as-GET carries a zero-length payload ("payload": "")."""
        return self.payload == b""

    def verify(self, jwk: Mapping[str, object]) -> None:
        """Verify the signature with `jwk`: the account's stored key for a kid request, or
        `self.jwk`. Raises unauthorized if it does not verify, badPublicKey if the key does
        not suit `alg` or the policy, malformed otherwise; returns nothing on success."""
        key_name = "its jwk" if self.kid is None else "the key of account " + _quote(self.kid)
        key = _import_jwk(jwk, key_name)
        _check_key_fits(self.alg, key.jwk, "the request")
        _verify_signature(self.segments, key.key, _ACCOUNT_REGISTRY, "the request", key_name)


def _key_reference(header: Mapping[str, Any], alg: str,
                   what: str) -> tuple[str | None, dict[str, str] | None]:
    """RFC 8555 §6.2: exactly one of jwk (newAccount, revokeCert by certificate key) and
    kid (every other request: the account URL)."""
    if ("jwk" in header) == ("kid" in header):
        raise _malformed(f"{what} must carry exactly one of jwk and kid (RFC 8555 §6.2): jwk "
                         "for newAccount and for revokeCert signed with the certificate key, "
                         "kid (the account URL) for everything else")
    if "kid" in header:
        kid = header["kid"]
        if not isinstance(kid, str) or not kid:
            raise _malformed(f"{what}: kid must be the account URL, a non-empty string")
        return kid, None
    imported = _import_jwk(header["jwk"], f"{what} jwk")
    _check_key_fits(alg, imported.jwk, what)
    return None, imported.jwk


def parse_jws(body: bytes) -> SignedRequest:
    """Take an ACME POST body apart (RFC 8555 §6.2). Raises AcmeProblem: malformed,
    badSignatureAlgorithm, badNonce (no nonce) or badPublicKey (jwk refused)."""
    if len(body) > MAX_BODY_BYTES:
        raise _malformed(f"request body exceeds {MAX_BODY_BYTES} bytes")
    if _COMPACT.fullmatch(body):
        raise _malformed("request body is a JWS in the compact serialization; RFC 8555 §6.2 "
                         "needs the flattened JSON serialization (Content-Type "
                         "application/jose+json)")
    decoded = _decode_flattened(_load_json(body, "request body"), "request body")
    header, what = decoded.header, "protected header"
    _check_extensions(header, what)
    alg = _alg(header, what)
    nonce = _nonce(header, what)
    url = _url(header, what)
    kid, jwk = _key_reference(header, alg, what)
    _check_registered(header, _ACCOUNT_REGISTRY, what)
    return SignedRequest(alg, nonce, url, kid, jwk, decoded.payload, decoded.segments)


# --- external account binding (RFC 8555 §7.3.4) --------------------------------------------

def _eab_header(header: Mapping[str, Any], url: str, what: str) -> tuple[str, str]:
    """The binding's alg and kid, after the header checks of §7.3.4."""
    _check_extensions(header, what)
    alg = header.get("alg")
    if alg not in EAB_ALGORITHMS:
        shown = _quote(alg) if isinstance(alg, str) else "missing"
        raise _malformed(f"{what} must be MACed with one of {', '.join(EAB_ALGORITHMS)} "
                         f"(RFC 8555 §7.3.4); its alg is {shown}")
    _forbid_nonce(header, what, "§7.3.4")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _malformed(f"{what} needs kid, the key identifier the CA gave you")
    _same_url(header, url, what)
    return str(alg), kid


def verify_external_account_binding(eab: object, account_jwk: Mapping[str, object], url: str,
                                     mac_key: Callable[[str], bytes | None]) -> str:
    """Check a newAccount payload's externalAccountBinding (RFC 8555 §7.3.4) and return
    its key id. `eab` is the member's parsed JSON (None if absent: externalAccountRequired),
    `account_jwk` the outer JWS's jwk, `url` its url; `mac_key(kid)` gives the MAC key, or
    None for an unknown key id. Whether the key id is still unused is the caller's check.
    A MAC key shorter than MIN_MAC_KEY_BYTES is a server misconfiguration: ValueError."""
    what = "externalAccountBinding"
    if eab is None:
        raise AcmeProblem("externalAccountRequired", "this server needs an "
                          "externalAccountBinding in newAccount, made with the key id and MAC "
                          "key your operator gave you (RFC 8555 §7.3.4)")
    decoded = _decode_flattened(eab, what)
    alg, kid = _eab_header(decoded.header, url, what)
    _check_registered(decoded.header, _EAB_REGISTRY, what)
    secret = mac_key(kid)
    if secret is None:
        raise _unauthorized(f"{what}: unknown key id {_quote(kid)}")
    if len(secret) < MIN_MAC_KEY_BYTES:
        raise ValueError(f"the MAC key of EAB key id {kid!r} is shorter than "
                         f"{MIN_MAC_KEY_BYTES} bytes")
    _verify_signature(decoded.segments, OctKey.import_key(secret), _EAB_REGISTRY, f"{what} "
                      f"({alg})", f"the MAC key of key id {_quote(kid)}: MAC with the "
                      "base64url-decoded key the CA gave you")
    payload = _load_json(decoded.payload, f"{what} payload")
    if not _same_key(payload, account_jwk, f"{what} payload"):
        raise _unauthorized(f"{what} binds another key than the one that signs this "
                            "newAccount request: its payload must be the account's jwk")
    return kid


# --- account key rollover (RFC 8555 §7.3.5) ------------------------------------------------

def _key_change_payload(payload: bytes, account_url: str, old_jwk: Mapping[str, object],
                        what: str) -> None:
    """§7.3.5 steps 5, 7 and 8: {"account": the account URL, "oldKey": the current key}."""
    change = _load_json(payload, f"{what} payload")
    if not isinstance(change, dict) or not isinstance(change.get("account"), str) \
            or "oldKey" not in change:
        raise _malformed(f"{what} payload must be an object with account (the account URL) "
                         "and oldKey (the current account key)")
    if change["account"] != account_url:
        raise _unauthorized(f"{what} names account {_quote(change['account'])}, but the "
                            "request is signed for another account")
    if not _same_key(change["oldKey"], old_jwk, f"{what} oldKey"):
        raise _unauthorized(f"{what}: oldKey is not the current key of this account")


def verify_key_change(inner: object, outer: SignedRequest, account_url: str,
                      old_jwk: Mapping[str, object]) -> dict[str, str]:
    """Check a keyChange request's inner JWS (RFC 8555 §7.3.5) and return the new public
    JWK (canonical). `inner` is the outer payload's parsed JSON; `outer` must already be
    verified with `old_jwk`, the account's current key. Whether another account holds the
    new key (step 9, 409 Conflict) is the caller's check."""
    what = "keyChange inner JWS"
    if outer.kid is None:
        raise _malformed("keyChange must be signed with the account key, identified by kid")
    decoded = _decode_flattened(inner, what)
    header = decoded.header
    _check_extensions(header, what)
    alg = _alg(header, what)
    _forbid_nonce(header, what, "§7.3.5")
    if "kid" in header or "jwk" not in header:
        raise _malformed(f"{what} must carry the new key as jwk, and no kid (RFC 8555 §7.3.5)")
    new_key = _import_jwk(header["jwk"], f"{what} jwk")
    _check_key_fits(alg, new_key.jwk, what)
    _same_url(header, outer.url, what)
    _check_registered(header, _ACCOUNT_REGISTRY, what)
    _verify_signature(decoded.segments, new_key.key, _ACCOUNT_REGISTRY, what,
                      "its jwk: it must be signed with the new key")
    _key_change_payload(decoded.payload, account_url, old_jwk, what)
    if new_key.jwk == _import_jwk(old_jwk, "the account key").jwk:
        raise _malformed(f"{what}: the new key is the current account key")
    return new_key.jwk
