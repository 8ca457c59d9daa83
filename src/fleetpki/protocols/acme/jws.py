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
  bounds apply (account_keys.py: RSA of 2048 to 4096 bits; P-256, P-384, P-521; Ed25519);
- it reads JSON leniently (duplicate names, any Unicode encoding): we parse strictly first.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError, UnsupportedAlgorithmError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import Key, OctKey
from joserfc.registry import HeaderParameter, HeaderRegistryDict

from fleetpki.core.acme_problems import AcmeProblem
from fleetpki.protocols.acme.account_keys import check_key_fits, import_jwk, same_key
from fleetpki.protocols.acme.jose_input import (
    b64decode,
    load_json,
    malformed,
    quote,
    unauthorized,
)

__all__ = [
    "ACCOUNT_ALGORITHMS",
    "EAB_ALGORITHMS",
    "MAX_BODY_BYTES",
    "BadSignatureAlgorithm",
    "JwsSegments",
    "SignedRequest",
    "parse_jws",
    "verify_external_account_binding",
    "verify_key_change",
]

# RFC 8555 §6.2: ES256 is mandatory, EdDSA (Ed25519) recommended; no "none", no MAC.
ACCOUNT_ALGORITHMS: Final = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512",
                             "PS256", "PS384", "PS512", "EdDSA")
# RFC 8555 §7.3.4: an external account binding is MACed with the key the CA handed out.
EAB_ALGORITHMS: Final = ("HS256", "HS384", "HS512")
MIN_MAC_KEY_BYTES: Final = 16
MAX_PROTECTED_BYTES: Final = 4096  # base64url text of the protected header
MAX_BODY_BYTES: Final = 65536  # a finalize CSR, the largest ACME payload, is a few KiB

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
        raise malformed(f"{what} must be a JWS in the flattened JSON serialization "
                         "(RFC 7515 §7.2.2): an object with protected, payload and signature")
    if "signatures" in value:
        raise malformed(f"{what} uses the general JSON serialization; RFC 8555 §6.2 needs "
                         "the flattened one, with a single signature")
    if "header" in value:
        raise malformed(f"{what} has an unprotected header, which RFC 8555 §6.2 forbids: "
                         "put every header parameter in protected")
    missing = [name for name in _FLATTENED_MEMBERS if name not in value]
    if missing:
        raise malformed(f"{what} lacks {', '.join(missing)} (RFC 8555 §6.2: the payload "
                         "may not be detached; POST-as-GET sends \"payload\": \"\")")
    if len(value) != len(_FLATTENED_MEMBERS):
        extra = sorted(str(name) for name in value if name not in _FLATTENED_MEMBERS)
        raise malformed(f"{what} has members other than protected, payload and signature: "
                         f"{', '.join(quote(name) for name in extra[:5])}")
    if isinstance(value["protected"], str) and len(value["protected"]) > MAX_PROTECTED_BYTES:
        raise malformed(f"{what}: protected header exceeds {MAX_PROTECTED_BYTES} bytes")
    header = load_json(b64decode(value["protected"], f"{what}: protected"),
                        f"{what}: the protected header")
    if not isinstance(header, dict):
        raise malformed(f"{what}: the protected header must be a JSON object")
    payload = b64decode(value["payload"], f"{what}: payload")
    b64decode(value["signature"], f"{what}: signature")  # empty: fails verification
    segments = JwsSegments(value["protected"], value["payload"], value["signature"])
    return _Decoded(segments, header, payload)


# --- protected header parameters -----------------------------------------------------------

def _check_extensions(header: Mapping[str, Any], what: str) -> None:
    """RFC 7515 §4.1.11: refuse a critical parameter we do not understand; RFC 8555 §6.2:
    no RFC 7797 unencoded payload ("b64")."""
    if "b64" in header:
        raise malformed(f"{what}: the unencoded payload option (b64, RFC 7797) is not "
                         "allowed in ACME (RFC 8555 §6.2)")
    if "crit" in header:
        crit = header["crit"]
        if not isinstance(crit, list) or not crit or not all(isinstance(n, str) for n in crit):
            raise malformed(f"{what}: crit must be a non-empty list of header names "
                             "(RFC 7515 §4.1.11)")
        unknown = sorted(name for name in crit if name not in _UNDERSTOOD_CRITICAL)
        if unknown:
            raise malformed(f"{what} marks parameters this server does not understand as "
                             f"critical: {', '.join(quote(name) for name in unknown[:5])} "
                             "(RFC 7515 §4.1.11)")
        absent = sorted(name for name in crit if name not in header)
        if absent:
            raise malformed(f"{what} lists {', '.join(absent)} in crit without sending it")


def _check_registered(header: dict[str, Any], registry: _Registry, what: str) -> None:
    """joserfc's own check of the registered parameters' types (kid, jwk, x5u, ...)."""
    try:
        registry.check_header(header)
    except JoseError as error:
        raise malformed(f"{what}: {error.description}") from None


def _alg(header: Mapping[str, Any], what: str) -> str:
    """RFC 8555 §6.2: alg is required and MUST NOT be "none" or a MAC."""
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise malformed(f"{what} needs alg, a string (RFC 7515 §4.1.1)")
    if alg in ACCOUNT_ALGORITHMS:
        return alg
    if alg == "none":
        raise BadSignatureAlgorithm(f"{what} has alg \"none\": ACME requests must be signed")
    if alg in EAB_ALGORITHMS:
        raise BadSignatureAlgorithm(f"{what} has alg {alg}: MAC algorithms are accepted only "
                                    "inside externalAccountBinding (RFC 8555 §6.2, §7.3.4)")
    raise BadSignatureAlgorithm(f"{what} has alg {quote(alg)}, which this server does not "
                                "support")


def _nonce(header: Mapping[str, Any], what: str) -> str:
    """RFC 8555 §6.5: missing or empty is badNonce (the client retries with the fresh nonce
    it gets back); present but not base64url is malformed (§6.5.2)."""
    nonce = header.get("nonce")
    if nonce is None or nonce == "":
        raise AcmeProblem("badNonce", f"{what} has no nonce: fetch one from newNonce, or use "
                                      "the Replay-Nonce of the last response (RFC 8555 §6.5)")
    if not isinstance(nonce, str) or not _BASE64URL.fullmatch(nonce):
        raise malformed(f"{what}: nonce must be base64url without padding (RFC 8555 §6.5.2)")
    return nonce


def _url(header: Mapping[str, Any], what: str) -> str:
    url = header.get("url")
    if not isinstance(url, str) or not url:
        raise malformed(f"{what} needs url, the exact URL the request is sent to "
                         "(RFC 8555 §6.4.1)")
    return url


def _forbid_nonce(header: Mapping[str, Any], what: str, clause: str) -> None:
    if "nonce" in header:
        raise malformed(f"{what} must not carry a nonce (RFC 8555 {clause}): only the outer "
                         "JWS does")


def _same_url(header: Mapping[str, Any], outer_url: str, what: str) -> None:
    """RFC 8555 §7.3.4 and §7.3.5: the inner url equals the outer one; a URL that does not
    match is refused as unauthorized, as §6.4 does for the request URL."""
    url = _url(header, what)
    if url != outer_url:
        raise unauthorized(f"{what} has url {quote(url)}, but the outer JWS has "
                            f"{quote(outer_url)}; they must be the same string")


# --- signatures ----------------------------------------------------------------------------

def _verify_signature(segments: JwsSegments, key: Key, registry: _Registry,
                      what: str, key_name: str) -> None:
    value: jws.FlattenedJSONSerialization = {
        "protected": segments.protected, "payload": segments.payload,
        "signature": segments.signature}
    try:
        jws.deserialize_json(value, key, registry=registry)
    except BadSignatureError:
        raise unauthorized(f"{what}: the signature does not verify with {key_name}") from None
    except (JoseError, ValueError, TypeError) as error:
        raise malformed(f"{what} could not be verified ({error})") from None


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
        key_name = "its jwk" if self.kid is None else "the key of account " + quote(self.kid)
        key = import_jwk(jwk, key_name)
        check_key_fits(self.alg, key.jwk, "the request")
        _verify_signature(self.segments, key.key, _ACCOUNT_REGISTRY, "the request", key_name)


def _key_reference(header: Mapping[str, Any], alg: str,
                   what: str) -> tuple[str | None, dict[str, str] | None]:
    """RFC 8555 §6.2: exactly one of jwk (newAccount, revokeCert by certificate key) and
    kid (every other request: the account URL)."""
    if ("jwk" in header) == ("kid" in header):
        raise malformed(f"{what} must carry exactly one of jwk and kid (RFC 8555 §6.2): jwk "
                         "for newAccount and for revokeCert signed with the certificate key, "
                         "kid (the account URL) for everything else")
    if "kid" in header:
        kid = header["kid"]
        if not isinstance(kid, str) or not kid:
            raise malformed(f"{what}: kid must be the account URL, a non-empty string")
        return kid, None
    imported = import_jwk(header["jwk"], f"{what} jwk")
    check_key_fits(alg, imported.jwk, what)
    return None, imported.jwk


def parse_jws(body: bytes) -> SignedRequest:
    """Take an ACME POST body apart (RFC 8555 §6.2). Raises AcmeProblem: malformed,
    badSignatureAlgorithm, badNonce (no nonce) or badPublicKey (jwk refused)."""
    if len(body) > MAX_BODY_BYTES:
        raise malformed(f"request body exceeds {MAX_BODY_BYTES} bytes")
    if _COMPACT.fullmatch(body):
        raise malformed("request body is a JWS in the compact serialization; RFC 8555 §6.2 "
                         "needs the flattened JSON serialization (Content-Type "
                         "application/jose+json)")
    decoded = _decode_flattened(load_json(body, "request body"), "request body")
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
        shown = quote(alg) if isinstance(alg, str) else "missing"
        raise malformed(f"{what} must be MACed with one of {', '.join(EAB_ALGORITHMS)} "
                         f"(RFC 8555 §7.3.4); its alg is {shown}")
    _forbid_nonce(header, what, "§7.3.4")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise malformed(f"{what} needs kid, the key identifier the CA gave you")
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
        raise unauthorized(f"{what}: unknown key id {quote(kid)}")
    if len(secret) < MIN_MAC_KEY_BYTES:
        raise ValueError(f"the MAC key of EAB key id {kid!r} is shorter than "
                         f"{MIN_MAC_KEY_BYTES} bytes")
    _verify_signature(decoded.segments, OctKey.import_key(secret), _EAB_REGISTRY, f"{what} "
                      f"({alg})", f"the MAC key of key id {quote(kid)}: MAC with the "
                      "base64url-decoded key the CA gave you")
    payload = load_json(decoded.payload, f"{what} payload")
    if not same_key(payload, account_jwk, f"{what} payload"):
        raise unauthorized(f"{what} binds another key than the one that signs this "
                            "newAccount request: its payload must be the account's jwk")
    return kid


# --- account key rollover (RFC 8555 §7.3.5) ------------------------------------------------

def _key_change_payload(payload: bytes, account_url: str, old_jwk: Mapping[str, object],
                        what: str) -> None:
    """§7.3.5 steps 5, 7 and 8: {"account": the account URL, "oldKey": the current key}."""
    change = load_json(payload, f"{what} payload")
    if not isinstance(change, dict) or not isinstance(change.get("account"), str) \
            or "oldKey" not in change:
        raise malformed(f"{what} payload must be an object with account (the account URL) "
                         "and oldKey (the current account key)")
    if change["account"] != account_url:
        raise unauthorized(f"{what} names account {quote(change['account'])}, but the "
                            "request is signed for another account")
    if not same_key(change["oldKey"], old_jwk, f"{what} oldKey"):
        raise unauthorized(f"{what}: oldKey is not the current key of this account")


def verify_key_change(inner: object, outer: SignedRequest, account_url: str,
                      old_jwk: Mapping[str, object]) -> dict[str, str]:
    """Check a keyChange request's inner JWS (RFC 8555 §7.3.5) and return the new public
    JWK (canonical). `inner` is the outer payload's parsed JSON; `outer` must already be
    verified with `old_jwk`, the account's current key. Whether another account holds the
    new key (step 9, 409 Conflict) is the caller's check."""
    what = "keyChange inner JWS"
    if outer.kid is None:
        raise malformed("keyChange must be signed with the account key, identified by kid")
    decoded = _decode_flattened(inner, what)
    header = decoded.header
    _check_extensions(header, what)
    alg = _alg(header, what)
    _forbid_nonce(header, what, "§7.3.5")
    if "kid" in header or "jwk" not in header:
        raise malformed(f"{what} must carry the new key as jwk, and no kid (RFC 8555 §7.3.5)")
    new_key = import_jwk(header["jwk"], f"{what} jwk")
    check_key_fits(alg, new_key.jwk, what)
    _same_url(header, outer.url, what)
    _check_registered(header, _ACCOUNT_REGISTRY, what)
    _verify_signature(decoded.segments, new_key.key, _ACCOUNT_REGISTRY, what,
                      "its jwk: it must be signed with the new key")
    _key_change_payload(decoded.payload, account_url, old_jwk, what)
    if new_key.jwk == import_jwk(old_jwk, "the account key").jwk:
        raise malformed(f"{what}: the new key is the current account key")
    return new_key.jwk
