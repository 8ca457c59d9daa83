"""ACME JWS checks (RFC 8555 §6.2-6.5, §7.3.4, §7.3.5): real JWS made with joserfc, hostile
ones made by hand, interop with certbot's own signer (acme + josepy), and fuzzing.

Vector provenance: the thumbprint example is RFC 7638 §3.1's RSA key and its published
thumbprint. Every other key is generated per test run.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import hashlib
import hmac
import json
import os
import subprocess
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jws as joserfc_jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey
from joserfc.registry import HeaderParameter

from fleetpki.core.acme_problems import AcmeProblem
from fleetpki.protocols.acme.account_keys import MAX_JWK_BYTES, jwk_of, public_key_of, thumbprint
from fleetpki.protocols.acme.jws import (
    ACCOUNT_ALGORITHMS,
    EAB_ALGORITHMS,
    BadSignatureAlgorithm,
    SignedRequest,
    parse_jws,
    verify_external_account_binding,
    verify_key_change,
)

NEW_ACCOUNT = "https://acme.test/acme/new-account"
KEY_CHANGE = "https://acme.test/acme/key-change"
ACCOUNT = "https://acme.test/acme/acct/1"
NONCE = "bm9uY2Utbm9uY2Utbm9uY2U"
EAB_KID = "gateway-7"
EAB_MAC = b"m" * 32


# --- keys and signing helpers --------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Signer:
    alg: str
    private: Any  # a cryptography private key

    @property
    def jose_key(self) -> ECKey | RSAKey | OKPKey:
        if isinstance(self.private, rsa.RSAPrivateKey):
            return RSAKey.import_key(self.private)
        if isinstance(self.private, ec.EllipticCurvePrivateKey):
            return ECKey.import_key(self.private)
        return OKPKey.import_key(self.private)

    @property
    def jwk(self) -> dict[str, Any]:
        return dict(self.jose_key.as_dict(private=False))


@functools.cache
def signer(alg: str, variant: int = 0) -> Signer:
    """One key per (alg, variant), made once per run: RSA-4096 takes a moment."""
    if alg.startswith("ES"):
        curve = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}[alg]
        return Signer(alg, ec.generate_private_key(curve()))
    if alg == "EdDSA":
        return Signer(alg, ed25519.Ed25519PrivateKey.generate())
    bits = 4096 if variant == 4096 else 2048
    return Signer(alg, rsa.generate_private_key(public_exponent=65537, key_size=bits))


_SIGNING = joserfc_jws.JWSRegistry(
    header_registry={"nonce": HeaderParameter("nonce", "str"),
                     "url": HeaderParameter("url", "str")},
    algorithms=[*ACCOUNT_ALGORITHMS, *EAB_ALGORITHMS])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(key: Any, protected: dict[str, Any], payload: bytes = b"{}") -> dict[str, Any]:
    """A flattened JWS, made by joserfc (which warns on "EdDSA": RFC 9864)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return dict(joserfc_jws.serialize_json({"protected": protected}, payload, key,
                                               registry=_SIGNING))


def raw_signature(alg: str, key: Any, data: bytes) -> bytes:
    """Signing by hand with cryptography, for headers joserfc would refuse to sign."""
    if alg == "none":
        return b""
    if alg.startswith("HS"):
        return hmac.new(key, data, getattr(hashlib, f"sha{alg[2:]}")).digest()
    if alg == "ES256":
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if alg == "RS256":
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    assert alg == "EdDSA"
    return key.sign(data)


def hand_signed(alg: str, key: Any, protected: str | dict[str, Any],
                payload: bytes = b"{}") -> dict[str, Any]:
    text = protected if isinstance(protected, str) else json.dumps(protected)
    segments = b64(text.encode()), b64(payload)
    signing_input = ".".join(segments).encode()
    return {"protected": segments[0], "payload": segments[1],
            "signature": b64(raw_signature(alg, key, signing_input))}


def header(s: Signer, *, url: str = NEW_ACCOUNT, **extra: Any) -> dict[str, Any]:
    """A newAccount-style protected header: alg, nonce, url, jwk, then `extra` (a None
    value removes that member)."""
    members: dict[str, Any] = {"alg": s.alg, "nonce": NONCE, "url": url, "jwk": s.jwk}
    members.update(extra)
    return {name: value for name, value in members.items() if value is not None}


def body(jws: dict[str, Any]) -> bytes:
    return json.dumps(jws).encode()


def refused(kind: str, call: Callable[[], object]) -> AcmeProblem:
    with pytest.raises(AcmeProblem) as info:
        call()
    assert info.value.kind == kind, info.value.detail
    return info.value


# --- parse_jws and verify: accepted --------------------------------------------------------

@pytest.mark.parametrize("alg", ACCOUNT_ALGORITHMS)
def test_new_account_signed_with_its_jwk_is_accepted_for_every_allowed_alg(alg: str) -> None:
    s = signer(alg)
    request = parse_jws(body(sign(s.jose_key, header(s), b'{"termsOfServiceAgreed":true}')))
    assert (request.alg, request.nonce, request.url, request.kid) == (alg, NONCE, NEW_ACCOUNT,
                                                                      None)
    assert request.jwk == s.jwk
    assert request.payload == b'{"termsOfServiceAgreed":true}'
    assert request.jwk is not None
    request.verify(request.jwk)


def test_rsa_4096_jwk_header_beyond_joserfcs_512_bytes_is_accepted() -> None:
    s = signer("RS256", 4096)
    jws = sign(s.jose_key, header(s))
    assert len(jws["protected"]) > 512
    request = parse_jws(body(jws))
    assert request.jwk is not None
    request.verify(request.jwk)


def test_kid_request_verifies_with_the_stored_account_key() -> None:
    s = signer("ES256")
    request = parse_jws(body(sign(s.jose_key, header(s, jwk=None, kid=ACCOUNT), b"")))
    assert request.kid == ACCOUNT and request.jwk is None
    request.verify(s.jwk)


def test_post_as_get_is_an_exactly_empty_payload() -> None:
    s = signer("ES256")
    as_get = parse_jws(body(sign(s.jose_key, header(s, jwk=None, kid=ACCOUNT), b"")))
    empty_object = parse_jws(body(sign(s.jose_key, header(s, jwk=None, kid=ACCOUNT), b"{}")))
    assert as_get.is_post_as_get and not empty_object.is_post_as_get


def test_jwk_is_exposed_as_public_members_only() -> None:
    s = signer("ES256")
    decorated = {**s.jwk, "use": "sig", "kid": "mine", "alg": "ES256"}
    request = parse_jws(body(sign(s.jose_key, header(s, jwk=decorated))))
    assert request.jwk == {name: s.jwk[name] for name in ("kty", "crv", "x", "y")}


def test_unknown_non_critical_header_is_ignored_and_known_crit_accepted() -> None:
    s = signer("ES256")
    jws = hand_signed("ES256", s.private, header(s, typ="jose+json", crit=["nonce"],
                                                  extension="ignored"))
    parse_jws(body(jws)).verify(s.jwk)


# --- parse_jws: refused --------------------------------------------------------------------

def test_compact_serialization_is_refused_as_malformed() -> None:
    s = signer("ES256")
    compact = joserfc_jws.serialize_compact(header(s), b"{}", s.jose_key, registry=_SIGNING)
    assert "flattened" in refused("malformed", lambda: parse_jws(compact.encode())).detail


def test_general_serialization_is_refused_as_malformed() -> None:
    s = signer("ES256")
    jws = sign(s.jose_key, header(s))
    general = {"payload": jws["payload"],
               "signatures": [{"protected": jws["protected"], "signature": jws["signature"]}]}
    assert "general" in refused("malformed", lambda: parse_jws(body(general))).detail


def test_unprotected_header_is_refused_as_malformed() -> None:
    s = signer("ES256")
    jws = {**sign(s.jose_key, header(s)), "header": {"kid": ACCOUNT}}
    assert "unprotected" in refused("malformed", lambda: parse_jws(body(jws))).detail


@pytest.mark.parametrize("change", [
    {"payload": None}, {"signature": None}, {"extra": "member"},
    {"protected": "eyJhbGciOiJFUzI1NiJ9=="}, {"payload": "e30="}, {"signature": 7},
])
def test_flattened_members_must_be_exactly_three_base64url_strings(change: dict[str, Any]
                                                                   ) -> None:
    s = signer("ES256")
    jws = {**sign(s.jose_key, header(s)), **change}
    refused("malformed", lambda: parse_jws(body({k: v for k, v in jws.items() if v is not None})))


def test_alg_none_is_refused_with_the_list_of_algorithms() -> None:
    s = signer("ES256")
    problem = refused("badSignatureAlgorithm",
                      lambda: parse_jws(body(hand_signed("none", None, header(s, alg="none")))))
    assert isinstance(problem, BadSignatureAlgorithm)
    assert problem.document()["algorithms"] == list(ACCOUNT_ALGORITHMS)
    assert "ES256" in problem.detail and "EdDSA" in problem.detail


def test_hs256_outside_external_account_binding_is_refused() -> None:
    s = signer("ES256")
    jws = hand_signed("HS256", EAB_MAC, header(s, alg="HS256"))
    problem = refused("badSignatureAlgorithm", lambda: parse_jws(body(jws)))
    assert "externalAccountBinding" in problem.detail


def test_unknown_alg_is_refused_as_bad_signature_algorithm() -> None:
    s = signer("ES256")
    refused("badSignatureAlgorithm",
            lambda: parse_jws(body(hand_signed("ES256", s.private, header(s, alg="ES256K")))))


def test_missing_nonce_is_bad_nonce_and_garbled_nonce_malformed() -> None:
    s = signer("ES256")
    refused("badNonce", lambda: parse_jws(body(sign(s.jose_key, header(s, nonce=None)))))
    refused("malformed", lambda: parse_jws(body(sign(s.jose_key, header(s, nonce="a+b/c=")))))


def test_missing_url_is_malformed() -> None:
    s = signer("ES256")
    refused("malformed", lambda: parse_jws(body(sign(s.jose_key, header(s, url=None)))))


def test_both_jwk_and_kid_are_refused_and_neither_too() -> None:
    s = signer("ES256")
    both = refused("malformed", lambda: parse_jws(body(sign(s.jose_key, header(s, kid=ACCOUNT)))))
    assert "exactly one of jwk and kid" in both.detail
    refused("malformed", lambda: parse_jws(body(sign(s.jose_key, header(s, jwk=None)))))


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_private_key_in_jwk_is_refused(alg: str) -> None:
    s = signer(alg)
    private_jwk = dict(s.jose_key.as_dict(private=True))
    problem = refused("badPublicKey",
                      lambda: parse_jws(body(sign(s.jose_key, header(s, jwk=private_jwk)))))
    assert "private" in problem.detail


def test_rsa_8192_jwk_is_refused_before_any_import() -> None:
    s = signer("RS256")
    n = (1 << 8191) | int.from_bytes(os.urandom(1023), "big") | 1
    big = {"kty": "RSA", "e": "AQAB", "n": b64(n.to_bytes(1024, "big"))}
    jws = hand_signed("RS256", s.private, header(s, jwk=big))
    assert "8192 bits" in refused("badPublicKey", lambda: parse_jws(body(jws))).detail


def test_padded_jwk_over_the_size_bound_is_refused() -> None:
    s = signer("ES256")
    padded = {**s.jwk, "x5u": "https://pad.test/" + "a" * MAX_JWK_BYTES}
    jws = hand_signed("ES256", s.private, header(s, jwk=padded))
    assert "bytes" in refused("badPublicKey", lambda: parse_jws(body(jws))).detail


def rsa_jwk(bits: int, exponent: int = 65537) -> dict[str, str]:
    """By hand: joserfc warns (SecurityWarning) when it meets a small RSA key."""
    numbers = rsa.generate_private_key(exponent, bits).public_key().public_numbers()
    return {"kty": "RSA", "e": b64(numbers.e.to_bytes(3 if exponent > 255 else 1, "big")),
            "n": b64(numbers.n.to_bytes(bits // 8, "big"))}


def test_small_rsa_key_and_odd_exponent_are_refused() -> None:
    s = signer("RS256")
    for jwk in (rsa_jwk(1024), rsa_jwk(2048, exponent=3)):
        jws = hand_signed("RS256", s.private, header(s, jwk=jwk))
        refused("badPublicKey", lambda jws=jws: parse_jws(body(jws)))


@pytest.mark.parametrize("jwk", [
    {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"},
    {"kty": "OKP", "crv": "Ed448", "x": b64(bytes(57))},
    {"kty": "OKP", "crv": "X25519", "x": b64(bytes(32))},
    {"kty": "oct", "k": b64(EAB_MAC)},
    {"kty": "DSA"},
    {"crv": "P-256"},
])
def test_unsupported_key_types_and_curves_are_bad_public_keys(jwk: dict[str, Any]) -> None:
    s = signer("ES256")
    jws = hand_signed("ES256", s.private, header(s, jwk=jwk))
    refused("badPublicKey", lambda: parse_jws(body(jws)))


def test_ec_point_off_the_curve_and_non_canonical_coordinates_are_refused() -> None:
    s = signer("ES256")
    off_curve = {**s.jwk, "y": b64(bytes(31) + b"\x01")}
    padded_x = {**s.jwk, "x": b64(b"\x00" + base64.urlsafe_b64decode(s.jwk["x"] + "=="))}
    for jwk in (off_curve, padded_x):
        jws = hand_signed("ES256", s.private, header(s, jwk=jwk))
        refused("badPublicKey", lambda jws=jws: parse_jws(body(jws)))


def test_alg_that_does_not_fit_the_key_is_a_bad_public_key() -> None:
    s = signer("ES256")
    jws = hand_signed("ES256", s.private, header(s, alg="ES384"))
    assert "P-384" in refused("badPublicKey", lambda: parse_jws(body(jws))).detail


def test_signature_by_another_key_is_unauthorized() -> None:
    s, other = signer("ES256"), signer("ES256", 1)
    request = parse_jws(body(sign(other.jose_key, header(s))))
    assert request.jwk is not None
    problem = refused("unauthorized", lambda: request.verify(request.jwk or {}))
    assert problem.status == 403


def test_tampered_payload_is_unauthorized() -> None:
    s = signer("RS256")
    jws = sign(s.jose_key, header(s, jwk=None, kid=ACCOUNT), b'{"status":"valid"}')
    tampered = {**jws, "payload": b64(b'{"status":"deactivated"}')}
    request = parse_jws(body(tampered))
    refused("unauthorized", lambda: request.verify(s.jwk))


def test_kid_request_checked_against_a_key_of_another_type_is_a_bad_public_key() -> None:
    s = signer("ES256")
    request = parse_jws(body(sign(s.jose_key, header(s, jwk=None, kid=ACCOUNT))))
    refused("badPublicKey", lambda: request.verify(signer("RS256").jwk))


@pytest.mark.parametrize("extension", [
    {"crit": ["exp"], "exp": 1}, {"crit": "nonce"}, {"crit": []}, {"crit": ["url", 1]},
    {"crit": ["nonce", "absent"]}, {"b64": False, "crit": ["b64"]}, {"b64": True},
])
def test_unknown_critical_headers_and_unencoded_payloads_are_refused(
        extension: dict[str, Any]) -> None:
    s = signer("ES256")
    jws = hand_signed("ES256", s.private, header(s, **extension))
    refused("malformed", lambda: parse_jws(body(jws)))


def test_duplicate_header_names_are_refused() -> None:
    s = signer("ES256")
    text = json.dumps(header(s))[:-1] + ', "url": "https://acme.test/elsewhere"}'
    refused("malformed", lambda: parse_jws(body(hand_signed("ES256", s.private, text))))


@pytest.mark.parametrize("raw", [
    b"", b"\xff\xfe{}", "{}".encode("utf-16"), b"[" * 30_000 + b"]" * 30_000,
    b'{"protected": NaN}', b"x" * 70_000, b'"\\ud800"', b"1" * 5000,
])
def test_garbage_bodies_are_malformed(raw: bytes) -> None:
    refused("malformed", lambda: parse_jws(raw))


# --- external account binding (RFC 8555 §7.3.4) --------------------------------------------

def eab(account_jwk: dict[str, Any], *, alg: str = "HS256", mac: bytes = EAB_MAC,
        **extra: Any) -> dict[str, Any]:
    protected = {"alg": alg, "kid": EAB_KID, "url": NEW_ACCOUNT, **extra}
    protected = {name: value for name, value in protected.items() if value is not None}
    return hand_signed(alg, mac, protected, json.dumps(account_jwk).encode())


def mac_keys(kid: str) -> bytes | None:
    return EAB_MAC if kid == EAB_KID else None


@pytest.mark.parametrize("alg", EAB_ALGORITHMS)
def test_external_account_binding_made_by_joserfc_is_accepted(alg: str) -> None:
    s = signer("ES256")
    binding = sign(OctKey.import_key(EAB_MAC),
                   {"alg": alg, "kid": EAB_KID, "url": NEW_ACCOUNT}, json.dumps(s.jwk).encode())
    assert verify_external_account_binding(binding, s.jwk, NEW_ACCOUNT, mac_keys) == EAB_KID


def test_binding_payload_is_compared_as_a_json_object_not_as_text() -> None:
    s = signer("ES256")
    reordered = {"y": s.jwk["y"], "kty": "EC", "x": s.jwk["x"], "crv": "P-256", "use": "sig"}
    assert verify_external_account_binding(eab(reordered), s.jwk, NEW_ACCOUNT,
                                           mac_keys) == EAB_KID


def test_binding_refusals() -> None:
    s, other = signer("ES256"), signer("ES256", 1)

    def check(binding: object, url: str = NEW_ACCOUNT) -> None:
        verify_external_account_binding(binding, s.jwk, url, mac_keys)

    refused("unauthorized", lambda: check(eab(s.jwk, mac=b"w" * 32)))  # wrong MAC key
    refused("unauthorized", lambda: check(eab(s.jwk, kid="stranger")))  # unknown key id
    refused("malformed", lambda: check(eab(s.jwk, nonce=NONCE)))  # §7.3.4: no nonce
    refused("unauthorized", lambda: check(eab(s.jwk), url=KEY_CHANGE))  # url mismatch
    refused("unauthorized", lambda: check(eab(other.jwk)))  # binds another key
    refused("malformed", lambda: check(eab(s.jwk, kid=None)))  # no key id
    refused("malformed", lambda: check(hand_signed("RS256", signer("RS256").private,
                                                   {"alg": "RS256", "kid": EAB_KID,
                                                    "url": NEW_ACCOUNT},
                                                   json.dumps(s.jwk).encode())))
    refused("malformed", lambda: check(eab({"kty": "EC"})))  # payload is no key
    refused("malformed", lambda: check("not a JWS"))
    refused("externalAccountRequired", lambda: check(None))


def test_short_mac_key_is_a_server_misconfiguration() -> None:
    s = signer("ES256")
    with pytest.raises(ValueError, match="shorter"):
        verify_external_account_binding(eab(s.jwk, mac=b"short"), s.jwk, NEW_ACCOUNT,
                                        lambda kid: b"short")


# --- account key rollover (RFC 8555 §7.3.5) ------------------------------------------------

def outer_request(old: Signer, inner: dict[str, Any]) -> SignedRequest:
    request = parse_jws(body(sign(old.jose_key, header(old, url=KEY_CHANGE, jwk=None,
                                                        kid=ACCOUNT), body(inner))))
    request.verify(old.jwk)
    return request


def inner_jws(new: Signer, old_jwk: dict[str, Any], *, account: str = ACCOUNT,
              signed_by: Signer | None = None, **extra: Any) -> dict[str, Any]:
    protected = {"alg": new.alg, "jwk": new.jwk, "url": KEY_CHANGE, **extra}
    protected = {name: value for name, value in protected.items() if value is not None}
    return sign((signed_by or new).jose_key, protected,
                json.dumps({"account": account, "oldKey": old_jwk}).encode())


def test_key_change_returns_the_new_key() -> None:
    old, new = signer("ES256"), signer("EdDSA")
    inner = inner_jws(new, old.jwk)
    assert verify_key_change(inner, outer_request(old, inner), ACCOUNT, old.jwk) == new.jwk


def test_key_change_refusals() -> None:
    old, new = signer("ES256"), signer("RS256")

    def check(inner: dict[str, Any]) -> None:
        verify_key_change(inner, outer_request(old, inner), ACCOUNT, old.jwk)

    refused("unauthorized", lambda: check(inner_jws(new, old.jwk, signed_by=signer("RS256", 1))))
    refused("malformed", lambda: check(inner_jws(new, old.jwk, nonce=NONCE)))
    refused("unauthorized", lambda: check(inner_jws(new, old.jwk, url=NEW_ACCOUNT)))
    refused("malformed", lambda: check(inner_jws(new, old.jwk, jwk=None, kid=ACCOUNT)))
    refused("unauthorized", lambda: check(inner_jws(new, old.jwk, account=ACCOUNT + "0")))
    refused("unauthorized", lambda: check(inner_jws(new, signer("ES256", 1).jwk)))
    refused("malformed", lambda: check(inner_jws(old, old.jwk)))  # the same key again
    refused("badSignatureAlgorithm",
            lambda: check(hand_signed("HS256", EAB_MAC, {"alg": "HS256", "jwk": new.jwk,
                                                         "url": KEY_CHANGE})))


def test_key_change_outer_must_name_the_account_by_kid() -> None:
    old, new = signer("ES256"), signer("ES384")
    inner = inner_jws(new, old.jwk)
    outer = parse_jws(body(sign(old.jose_key, header(old, url=KEY_CHANGE), body(inner))))
    refused("malformed", lambda: verify_key_change(inner, outer, ACCOUNT, old.jwk))


# --- thumbprints and key conversions -------------------------------------------------------

RFC7638_JWK = {
    "kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc"
         "_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR"
         "0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTW"
         "hAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
}


def test_thumbprint_matches_rfc_7638_section_3_1() -> None:
    assert thumbprint(RFC7638_JWK) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_thumbprint_ignores_optional_members_and_refuses_private_keys() -> None:
    s = signer("ES384")
    assert thumbprint({**s.jwk, "use": "sig"}) == thumbprint(s.jwk)
    refused("badPublicKey", lambda: thumbprint(dict(s.jose_key.as_dict(private=True))))


@pytest.mark.parametrize("alg", ["ES256", "ES512", "RS256", "EdDSA"])
def test_public_key_of_and_jwk_of_round_trip(alg: str) -> None:
    s = signer(alg)
    assert public_key_of(s.jwk) == s.private.public_key()
    assert jwk_of(s.private.public_key()) == s.jwk


def test_jwk_of_refuses_keys_outside_the_account_policy() -> None:
    for key in (ec.generate_private_key(ec.SECP256K1()).public_key(),
                rsa.generate_private_key(65537, 1024).public_key()):
        refused("badPublicKey", lambda key=key: jwk_of(key))


# --- interop: certbot's signer (python3-acme and josepy, Debian's certbot) -----------------

_JOSEPY_SCRIPT = """
import json
import josepy as jose
from acme import jws, messages
from cryptography.hazmat.primitives.asymmetric import ec, rsa

new_account, account, mac = json.loads(input())
out = []
for alg, key in (("ES256", jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))),
                 ("RS256", jose.JWKRSA(key=rsa.generate_private_key(65537, 2048)))):
    sign = getattr(jose, alg)
    public = key.public_key()
    directory = messages.Directory({"newAccount": new_account})
    binding = messages.ExternalAccountBinding.from_data(
        account_public_key=public, kid="gateway-7", hmac_key=mac, directory=directory)
    payload = json.dumps({"termsOfServiceAgreed": True,
                          "externalAccountBinding": binding}).encode()
    out.append({
        "alg": alg,
        "new_account": jws.JWS.sign(payload, key=key, alg=sign, nonce=b"n" * 16,
                                    url=new_account).json_dumps(),
        "post_as_get": jws.JWS.sign(b"", key=key, alg=sign, nonce=b"m" * 16, url=account,
                                    kid=account).json_dumps(),
        "jwk": public.to_partial_json(),
        "thumbprint": jose.b64encode(public.thumbprint()).decode(),
    })
print(json.dumps(out))
"""


def test_certbot_josepy_requests_are_accepted() -> None:
    python = "/usr/bin/python3"
    probe = subprocess.run([python, "-c", "import josepy, acme.jws"], capture_output=True,
                           check=False)
    if probe.returncode != 0:
        pytest.fail(f"{python} cannot import josepy and acme (Debian's certbot brings both): "
                    "run scripts/install-test-peers, or apt-get install certbot\n"
                    + probe.stderr.decode(errors="replace"))
    argument = json.dumps([NEW_ACCOUNT, ACCOUNT, b64(EAB_MAC)])
    run = subprocess.run([python, "-c", _JOSEPY_SCRIPT], input=argument.encode(),
                         capture_output=True, check=True, timeout=120)
    for case in json.loads(run.stdout):
        new_account = parse_jws(case["new_account"].encode())
        assert new_account.alg == case["alg"] and new_account.jwk == case["jwk"]
        new_account.verify(case["jwk"])
        assert thumbprint(case["jwk"]) == case["thumbprint"]
        binding = json.loads(new_account.payload)["externalAccountBinding"]
        assert verify_external_account_binding(binding, case["jwk"], NEW_ACCOUNT,
                                               mac_keys) == EAB_KID
        as_get = parse_jws(case["post_as_get"].encode())
        assert as_get.kid == ACCOUNT and as_get.is_post_as_get
        as_get.verify(case["jwk"])


# --- fuzzing: hostile input raises AcmeProblem and nothing else ----------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=16)
HEADER_VALUES = JSON | st.sampled_from([
    "ES256", "RS256", "EdDSA", "HS256", "none", NONCE, NEW_ACCOUNT, ["nonce"], ["b64"], False,
    {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}, {"kty": "OKP", "crv": "Ed25519"},
])
HEADERS = st.dictionaries(
    st.sampled_from(["alg", "nonce", "url", "jwk", "kid", "crit", "b64", "typ", "x5c", "x5u",
                     "jku", "cty", "zip"]) | st.text(max_size=4),
    HEADER_VALUES, max_size=7)
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def only_problems(call: Callable[[], object]) -> None:
    with contextlib.suppress(AcmeProblem):
        call()


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_arbitrary_bytes(raw: bytes) -> None:
    only_problems(lambda: parse_jws(raw))


@FUZZ
@given(JSON)
def test_fuzz_arbitrary_json(value: object) -> None:
    only_problems(lambda: parse_jws(json.dumps(value).encode()))


@FUZZ
@given(HEADERS, st.binary(max_size=40), st.binary(max_size=80),
       st.sampled_from(["ES256", "RS256", "EdDSA"]))
def test_fuzz_flattened_jws_with_arbitrary_headers(protected: dict[str, Any], payload: bytes,
                                                   signature: bytes, alg: str) -> None:
    s = signer(alg)
    jws = {"protected": b64(json.dumps(protected).encode()), "payload": b64(payload),
           "signature": b64(signature)}
    request: list[SignedRequest] = []
    only_problems(lambda: request.append(parse_jws(body(jws))))
    for parsed in request:
        only_problems(lambda parsed=parsed: parsed.verify(parsed.jwk or s.jwk))
    for key_of in (thumbprint, public_key_of):
        only_problems(lambda key_of=key_of: key_of(protected.get("jwk")))


@functools.cache
def fuzz_outer() -> SignedRequest:
    old = signer("ES256")
    return outer_request(old, inner_jws(signer("EdDSA"), old.jwk))


@FUZZ
@given(HEADERS, JSON, JSON)
def test_fuzz_bindings_and_key_changes(protected: dict[str, Any], payload: object,
                                       loose: object) -> None:
    old, outer = signer("ES256"), fuzz_outer()
    crafted = {"protected": b64(json.dumps(protected).encode()),
               "payload": b64(json.dumps(payload).encode()), "signature": b64(b"\x00" * 64)}
    for candidate in (crafted, loose):
        only_problems(lambda c=candidate: verify_external_account_binding(
            c, old.jwk, NEW_ACCOUNT, mac_keys))
        only_problems(lambda c=candidate: verify_key_change(c, outer, ACCOUNT, old.jwk))
