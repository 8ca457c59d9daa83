"""CSR Attributes (RFC 7030 §4.5.2): derived from profiles, encoded, read back by OpenSSL.

Test vector provenance:
- RFC7030_EXAMPLE: the base64 CsrAttrs of RFC 7030 §4.5.2 (challengePassword, an EC P-384
  key, a macAddress extension request, ecdsa-with-SHA384), checked with `openssl asn1parse`.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import re
import subprocess
from importlib import resources
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurveOID
from cryptography.x509.oid import (
    AttributeOID,
    NameOID,
    ObjectIdentifier,
    PublicKeyAlgorithmOID,
    SignatureAlgorithmOID,
)
from hypothesis import given
from hypothesis import strategies as st

from fleetpki.core.errors import BadInput
from fleetpki.core.keys import KeyPolicy, signature_hash
from fleetpki.core.names import AttributeRule, SanPolicy, SubjectPolicy
from fleetpki.core.profile import Profile, Validity
from fleetpki.profiles_loader import load_profiles
from fleetpki.protocols.est import csrattrs
from fleetpki.protocols.est.csrattrs import (
    CsrAttributes,
    csr_attributes_for,
    decode_csr_attributes,
    encode_csr_attributes,
)
from support.lint import require_tool

RFC7030_EXAMPLE = base64.b64decode(
    "MEEGCSqGSIb3DQEJBzASBgcqhkjOPQIBMQcGBSuBBAAiMBYGCSqGSIb3DQEJDjEJ"
    "BgcrBgEBAQEWBggqhkjOPQQDAw==")
EC = PublicKeyAlgorithmOID.EC_PUBLIC_KEY
RSA = PublicKeyAlgorithmOID.RSAES_PKCS1_v1_5
ED25519 = PublicKeyAlgorithmOID.ED25519


def profile(allowed: set[str], *, rsa_min_bits: int = 2048, rules: tuple[str, ...] = ("CN",),
            required: tuple[str, ...] = ("CN",)) -> Profile:
    return Profile(
        name="p", issuer="issuing",
        keys=KeyPolicy(allowed=frozenset(allowed), rsa_min_bits=rsa_min_bits),
        validity=Validity(default=dt.timedelta(days=365), maximum=dt.timedelta(days=398)),
        subject=SubjectPolicy(rules=tuple(
            (name, AttributeRule(required=name in required)) for name in rules)),
        san=SanPolicy(), key_usage=frozenset({"digitalSignature"}), extended_key_usage=())


def asn1parse(der: bytes, tmp_path: Path) -> str:
    openssl = require_tool("openssl")
    path = tmp_path / "csrattrs.der"
    path.write_bytes(der)
    result = subprocess.run([openssl, "asn1parse", "-inform", "DER", "-in", str(path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def objects(asn1parse_output: str) -> list[str]:
    """The OBJECT and INTEGER values, in order, as openssl names them."""
    return re.findall(r"(?:OBJECT|INTEGER) +:(\S.*?)\s*$", asn1parse_output, re.MULTILINE)


def test_public_names_are_pinned() -> None:
    assert sorted(csrattrs.__all__) == ["CsrAttributes", "csr_attributes_for",
                                        "decode_csr_attributes", "encode_csr_attributes"]


def test_rfc_7030_example_decodes_and_its_extension_request_is_ignored() -> None:
    assert decode_csr_attributes(RFC7030_EXAMPLE) == CsrAttributes(
        key_algorithm=EC, key_parameter=EllipticCurveOID.SECP384R1,
        signature_algorithm=SignatureAlgorithmOID.ECDSA_WITH_SHA384,
        requested_oids=(AttributeOID.CHALLENGE_PASSWORD,))


def test_encoding_matches_the_rfc_7030_example_layout() -> None:
    attrs = decode_csr_attributes(RFC7030_EXAMPLE)
    # The example minus its extensionRequest attribute, which CsrAttributes does not model.
    content = RFC7030_EXAMPLE[2:33] + RFC7030_EXAMPLE[57:]
    assert encode_csr_attributes(attrs) == tlv(0x30, content)


@pytest.mark.parametrize(("allowed", "rsa_min_bits", "expected"), [
    ({"ec-p256", "ec-p384"}, 2048,
     CsrAttributes(EC, EllipticCurveOID.SECP256R1, SignatureAlgorithmOID.ECDSA_WITH_SHA256)),
    ({"ec-p384"}, 2048,
     CsrAttributes(EC, EllipticCurveOID.SECP384R1, SignatureAlgorithmOID.ECDSA_WITH_SHA384)),
    ({"ec-p521"}, 2048,
     CsrAttributes(EC, EllipticCurveOID.SECP521R1, SignatureAlgorithmOID.ECDSA_WITH_SHA512)),
    ({"rsa"}, 3072, CsrAttributes(RSA, 3072, SignatureAlgorithmOID.RSA_WITH_SHA256)),
    ({"ed25519", "rsa"}, 2048, CsrAttributes(ED25519, None, SignatureAlgorithmOID.ED25519)),
], ids=["ec-p256-preferred", "ec-p384", "ec-p521", "rsa-3072", "ed25519-before-rsa"])
def test_key_and_signature_come_from_the_profile(
    allowed: set[str], rsa_min_bits: int, expected: CsrAttributes,
) -> None:
    attrs = csr_attributes_for(profile(allowed, rsa_min_bits=rsa_min_bits, required=()))
    assert attrs == expected
    assert decode_csr_attributes(encode_csr_attributes(attrs)) == attrs


@pytest.mark.parametrize(("allowed", "names"), [
    ({"ec-p256"}, ["serialNumber", "id-ecPublicKey", "prime256v1", "ecdsa-with-SHA256"]),
    ({"ec-p384"}, ["serialNumber", "id-ecPublicKey", "secp384r1", "ecdsa-with-SHA384"]),
    ({"rsa"}, ["serialNumber", "rsaEncryption", "0C00", "sha256WithRSAEncryption"]),
    ({"ed25519"}, ["serialNumber", "ED25519"]),
], ids=["ec-p256", "ec-p384", "rsa-3072", "ed25519"])
def test_openssl_reads_the_encoding(allowed: set[str], names: list[str], tmp_path: Path) -> None:
    attrs = csr_attributes_for(profile(allowed, rsa_min_bits=3072, rules=("CN", "serialNumber"),
                                       required=("serialNumber",)))
    assert objects(asn1parse(encode_csr_attributes(attrs), tmp_path)) == names


def test_openssl_sees_the_key_parameter_inside_a_set(tmp_path: Path) -> None:
    output = asn1parse(encode_csr_attributes(csr_attributes_for(profile({"ec-p256"}))), tmp_path)
    tree = [f"{depth} {kind}{value}" for depth, kind, value in
            re.findall(r"d=(\d+) .*?(?:cons|prim): (\S+) *(:\S+)?", output)]
    assert tree == ["0 SEQUENCE", "1 OBJECT:commonName", "1 SEQUENCE", "2 OBJECT:id-ecPublicKey",
                    "2 SET", "3 OBJECT:prime256v1", "1 OBJECT:ecdsa-with-SHA256"]


def test_required_subject_attributes_are_requested_and_optional_ones_are_not() -> None:
    attrs = csr_attributes_for(profile({"ec-p256"}, rules=("CN", "O", "serialNumber"),
                                       required=("CN", "serialNumber")))
    assert attrs.requested_oids == (NameOID.COMMON_NAME, NameOID.SERIAL_NUMBER)


def test_challenge_password_is_requested_only_when_asked() -> None:
    prof = profile({"ec-p256"}, required=())
    assert csr_attributes_for(prof).requested_oids == ()
    assert csr_attributes_for(prof, challenge_password=True).requested_oids == (
        AttributeOID.CHALLENGE_PASSWORD,)


def test_rsa_is_never_requested_below_the_floor() -> None:
    prof = profile({"rsa"})
    prof = Profile(**{**{f: getattr(prof, f) for f in prof.__dataclass_fields__},
                      "keys": KeyPolicy(allowed=frozenset({"rsa"}), rsa_min_bits=1024)})
    assert csr_attributes_for(prof).key_parameter == 2048


def test_shipped_profiles_give_ec_p256_and_their_required_names(tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(resources.files("fleetpki.defaults").joinpath("profiles.toml").read_text())
    for prof in load_profiles(path).values():
        attrs = csr_attributes_for(prof)
        assert (attrs.key_algorithm, attrs.key_parameter) == (EC, EllipticCurveOID.SECP256R1)
        # sensor and gateway require a CN; edge (ACME) leaves the subject optional.
        required = dict(prof.subject.rules)["CN"].required
        assert attrs.requested_oids == ((NameOID.COMMON_NAME,) if required else ())
        assert decode_csr_attributes(encode_csr_attributes(attrs)) == attrs


def test_signature_choice_agrees_with_core_signature_hash() -> None:
    expected = {
        "ec-p256": (ec.generate_private_key(ec.SECP256R1()), "ecdsa-with-SHA256"),
        "ec-p384": (ec.generate_private_key(ec.SECP384R1()), "ecdsa-with-SHA384"),
        "ec-p521": (ec.generate_private_key(ec.SECP521R1()), "ecdsa-with-SHA512"),
        "rsa": (rsa.generate_private_key(public_exponent=65537, key_size=2048),
                "sha256WithRSAEncryption"),
    }
    for allowed, (key, name) in expected.items():
        signature = csr_attributes_for(profile({allowed})).signature_algorithm
        assert signature is not None and signature._name == name
        hash_algorithm = signature_hash(key)
        assert hash_algorithm is not None and hash_algorithm.name.upper() in name.upper()
    assert signature_hash(ed25519.Ed25519PrivateKey.generate()) is None
    assert csr_attributes_for(profile({"ed25519"})).signature_algorithm == ED25519


def test_profile_without_a_requestable_key_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="allows no key type"):
        csr_attributes_for(profile({"dsa"}))


def test_empty_attributes_encode_as_an_empty_sequence() -> None:
    assert encode_csr_attributes(CsrAttributes()) == bytes.fromhex("3000")
    assert decode_csr_attributes(bytes.fromhex("3000")) == CsrAttributes()


def test_bare_key_algorithm_oids_are_understood() -> None:
    der = encode_csr_attributes(CsrAttributes(requested_oids=(RSA,)))
    assert decode_csr_attributes(der) == CsrAttributes(key_algorithm=RSA)


def test_unknown_attributes_and_oids_are_tolerated() -> None:
    vendor = ObjectIdentifier("1.3.6.1.4.1.55555.1")
    # SEQUENCE { OID vendor, SEQUENCE { OID vendor, SET { UTF8String "x" } } }
    oid = bytes.fromhex("06092b0601040183b20301")
    der = tlv(0x30, oid, tlv(0x30, oid, tlv(0x31, tlv(0x0C, b"x"))))
    assert decode_csr_attributes(der) == CsrAttributes(requested_oids=(vendor,))


def tlv(tag: int, *content: bytes) -> bytes:
    """A short-form DER TLV, written by hand so the malformed cases do not depend on pyasn1."""
    body = b"".join(content)
    assert len(body) < 128
    return bytes([tag, len(body)]) + body


RSA_OID = bytes.fromhex("06092a864886f70d010101")
EC_OID = bytes.fromhex("06072a8648ce3d0201")


@pytest.mark.parametrize(("der", "problem"), [
    (b"", "not DER of CsrAttrs"),
    (tlv(0x05), "not DER of CsrAttrs"),
    (tlv(0x30) + b"\xff", "1 bytes follow the CsrAttrs SEQUENCE"),
    (tlv(0x30, tlv(0x02, b"\x05")), "not DER of CsrAttrs"),  # neither an OID nor an Attribute
    (tlv(0x30, tlv(0x06, b"\x2a"))[:-1], "not DER of CsrAttrs"),
    (tlv(0x30, tlv(0x30, RSA_OID, tlv(0x31))), r"no value \(RFC 8951 §4"),
    (tlv(0x30, tlv(0x30, EC_OID, tlv(0x31, tlv(0x01, b"\xff")))), "curve OID or a positive"),
    (tlv(0x30, tlv(0x30, RSA_OID, tlv(0x31, tlv(0x02, b"\xff")))), "curve OID or a positive"),
    (tlv(0x30, tlv(0x30, EC_OID, tlv(0x31, tlv(0x06, b"\x80\x01")))), "is not DER"),
], ids=["empty", "null", "trailing", "integer-item", "truncated", "empty-set", "boolean-value",
        "negative-size", "bad-oid-value"])
def test_malformed_csr_attributes_are_refused(der: bytes, problem: str) -> None:
    with pytest.raises(BadInput, match=problem):
        decode_csr_attributes(der)


def test_key_parameter_needs_a_key_algorithm() -> None:
    with pytest.raises(ValueError, match="needs a key algorithm"):
        CsrAttributes(key_parameter=2048)
    with pytest.raises(ValueError, match="must be positive"):
        CsrAttributes(key_algorithm=RSA, key_parameter=0)


@given(st.binary(max_size=200))
def test_decoding_arbitrary_bytes_raises_nothing_but_bad_input(der: bytes) -> None:
    with contextlib.suppress(BadInput):
        decode_csr_attributes(der)


@given(st.integers(0, len(RFC7030_EXAMPLE) - 1), st.integers(0, 255),
       st.integers(1, len(RFC7030_EXAMPLE)))
def test_mutated_rfc_example_raises_nothing_but_bad_input(index: int, value: int,
                                                          length: int) -> None:
    mutated = bytearray(RFC7030_EXAMPLE)
    mutated[index] = value
    with contextlib.suppress(BadInput):
        decode_csr_attributes(bytes(mutated[:length]))


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 39), st.integers(0, 2**70)),
                max_size=5))
def test_requested_oids_round_trip(arcs: list[tuple[int, int, int]]) -> None:
    oids = tuple(ObjectIdentifier(f"{a}.{b}.{c}") for a, b, c in arcs)
    known = {EC, RSA, ED25519, *(o for o in vars(SignatureAlgorithmOID).values()
                                 if isinstance(o, ObjectIdentifier))}
    oids = tuple(o for o in oids if o not in known)
    attrs = CsrAttributes(requested_oids=oids)
    assert decode_csr_attributes(encode_csr_attributes(attrs)) == attrs
