"""EST wire codec: base64 bodies, media types, certs-only and the serverkeygen multipart.

Independent checks where it matters: certs-only DER is read back by `openssl pkcs7`, and the
serverkeygen body is parsed by Python's `email` package, which shares no code with ours.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import email
import email.policy
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from fleetpki.core.errors import BadInput
from fleetpki.protocols.est import codec
from fleetpki.protocols.est.codec import (
    CT_CERTS_ONLY,
    CT_CSRATTRS,
    CT_PKCS7,
    CT_PKCS8,
    CT_PKCS10,
    MAX_BODY_BYTES,
    certs_only,
    decode_base64_body,
    decode_serverkeygen,
    encode_base64_body,
    encode_serverkeygen,
    load_certs_only,
    media_type,
)
from support.csrs import make_csr
from support.lint import require_tool

NOW = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
BOUNDARY = "est-0123456789abcdef0123456789abcdef"


def self_signed(cn: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))


@pytest.fixture(scope="module")
def csr_der() -> bytes:
    csr, _ = make_csr("sensor-0001")
    return csr.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def pkcs8_der() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


def wrapped(der: bytes, width: int, newline: bytes) -> bytes:
    text = base64.b64encode(der)
    return newline.join(text[i:i + width] for i in range(0, len(text), width)) + newline


def test_public_names_are_pinned() -> None:
    assert sorted(codec.__all__) == sorted([
        "CT_CERTS_ONLY", "CT_CSRATTRS", "CT_PKCS7", "CT_PKCS8", "CT_PKCS10", "MAX_BODY_BYTES",
        "CT_SERVER_GENERATED_KEY",
        "certs_only", "decode_base64_body", "decode_serverkeygen", "encode_base64_body",
        "encode_serverkeygen", "load_certs_only", "media_type"])
    assert MAX_BODY_BYTES == 65536


# --- base64 bodies (RFC 7030 §4, RFC 8951 §3) ---------------------------------------------

def test_encoded_body_is_one_line_without_newline_for_strongswan(csr_der: bytes) -> None:
    body = encode_base64_body(csr_der)
    assert b"\n" not in body and b"\r" not in body
    assert body == base64.b64encode(csr_der)


def test_single_line_body_without_newline_decodes(csr_der: bytes) -> None:
    assert decode_base64_body(encode_base64_body(csr_der)) == csr_der


@pytest.mark.parametrize("width", [64, 76])
@pytest.mark.parametrize("newline", [b"\r\n", b"\n"], ids=["crlf", "lf"])
def test_wrapped_body_decodes(csr_der: bytes, width: int, newline: bytes) -> None:
    body = wrapped(csr_der, width, newline)
    assert body.count(newline) > 1
    assert decode_base64_body(body) == csr_der


def test_surrounding_whitespace_and_trailing_newline_are_ignored(csr_der: bytes) -> None:
    assert decode_base64_body(b" \t\r\n" + base64.b64encode(csr_der) + b"\r\n\r\n") == csr_der


def test_line_break_anywhere_is_ignored_even_inside_padding() -> None:
    assert decode_base64_body(b"QU\r\nJD\nRA=\r\n=") == b"ABCD"


@pytest.mark.parametrize("body", [b"", b"   ", b"\r\n\r\n"], ids=["empty", "spaces", "newlines"])
def test_empty_body_is_refused(body: bytes) -> None:
    with pytest.raises(BadInput, match="the body is empty"):
        decode_base64_body(body)


def test_garbage_is_refused_with_rfc_clause_and_offset() -> None:
    with pytest.raises(BadInput) as info:
        decode_base64_body(b"  MIIB!xyz")
    assert str(info.value) == ("the body is not base64 (RFC 7030 §4: EST bodies are "
                               "base64-encoded DER): invalid character '!' (0x21) at offset 6")


def test_binary_der_sent_without_base64_is_refused(csr_der: bytes) -> None:
    with pytest.raises(BadInput, match=r"invalid character .*at offset 1\b"):
        decode_base64_body(csr_der)  # 0x30 '0' is base64; the length byte after it is not


@pytest.mark.parametrize(("body", "problem"), [
    (b"QUJD RA==", r"invalid character \(0x20\) at offset 4"),
    (b"QUJD\tRA==", r"invalid character \(0x09\) at offset 4"),
    (b"QUJDRA==QUJD", "data after '=' padding at offset 8"),
    (b"QUJDR===", "more than two '=' padding characters at offset 7"),
    (b"QUJDRA", "6 base64 characters is not a multiple of 4"),
    (b"QUJDR", "5 base64 characters is not a multiple of 4"),
    (b"QUJD-_==", r"invalid character '-' \(0x2d\) at offset 4"),  # base64url is not EST
], ids=["space-inside", "tab-inside", "after-padding", "three-pads", "unpadded", "truncated",
        "base64url"])
def test_malformed_base64_is_refused_with_the_reason(body: bytes, problem: str) -> None:
    with pytest.raises(BadInput, match=problem):
        decode_base64_body(body)


@pytest.mark.parametrize("label", [b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST"])
def test_pem_csr_is_accepted_as_a_courtesy(csr_der: bytes, label: bytes) -> None:
    pem = (b"-----BEGIN " + label + b"-----\n" + wrapped(csr_der, 64, b"\n")
           + b"-----END " + label + b"-----\n")
    assert decode_base64_body(pem) == csr_der


def test_pem_from_cryptography_is_accepted(csr_der: bytes) -> None:
    csr = x509.load_der_x509_csr(csr_der)
    assert decode_base64_body(csr.public_bytes(serialization.Encoding.PEM)) == csr_der


@pytest.mark.parametrize(("pem", "problem"), [
    (b"-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n",
     "PEM 'CERTIFICATE' block; .* accepted only for a certificate request"),
    (b"-----BEGIN CERTIFICATE REQUEST-----\nQUJD\n-----END NEW CERTIFICATE REQUEST-----",
     "BEGIN and END labels differ"),
    (b"-----BEGIN CERTIFICATE REQUEST-----\nQUJD\n", "not one complete"),
    (b"-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----", "is empty"),
    (b"-----BEGIN CERTIFICATE REQUEST-----\nQU*D\n-----END CERTIFICATE REQUEST-----",
     r"invalid character '\*' \(0x2a\) at offset 38"),
], ids=["other-label", "label-mismatch", "no-end", "empty", "garbage-inside"])
def test_other_or_broken_pem_is_refused(pem: bytes, problem: str) -> None:
    with pytest.raises(BadInput, match=problem):
        decode_base64_body(pem)


@given(st.binary(max_size=300))
def test_decoding_arbitrary_bytes_raises_nothing_but_bad_input(body: bytes) -> None:
    with contextlib.suppress(BadInput):
        decode_base64_body(body)


@given(st.binary(min_size=1, max_size=300), st.integers(min_value=1, max_value=80),
       st.sampled_from([b"\r\n", b"\n"]))
def test_base64_round_trips_at_any_wrapping(der: bytes, width: int, newline: bytes) -> None:
    assert decode_base64_body(encode_base64_body(der)) == der
    assert decode_base64_body(wrapped(der, width, newline)) == der


# --- media types (RFC 7030 §3.2.4) ----------------------------------------------------------

@pytest.mark.parametrize(("header", "expected"), [
    (None, ""),
    ("", ""),
    ("application/pkcs10", "application/pkcs10"),
    ("Application/PKCS10 ; charset=binary", "application/pkcs10"),
    (CT_CERTS_ONLY, "application/pkcs7-mime"),
    (CT_PKCS7, "application/pkcs7-mime"),
    (" application/csrattrs", "application/csrattrs"),
])
def test_media_type_drops_parameters_and_case(header: str | None, expected: str) -> None:
    assert media_type(header) == expected


def test_content_types_are_the_rfc_7030_ones() -> None:
    assert (CT_PKCS10, CT_PKCS7, CT_CSRATTRS, CT_PKCS8) == (
        "application/pkcs10", "application/pkcs7-mime", "application/csrattrs",
        "application/pkcs8")
    assert CT_CERTS_ONLY == "application/pkcs7-mime; smime-type=certs-only"


# --- certs-only (RFC 7030 §4.1.3, §4.2.3) ---------------------------------------------------

def test_certs_only_is_read_by_openssl(tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    der_file = tmp_path / "certs.p7b"
    der_file.write_bytes(certs_only([self_signed("device-1"), self_signed("issuing-ca")]))
    result = subprocess.run([openssl, "pkcs7", "-inform", "DER", "-in", str(der_file),
                             "-print_certs", "-noout"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    subjects = [line for line in result.stdout.splitlines() if line.startswith("subject=")]
    assert subjects == ["subject=CN = device-1", "subject=CN = issuing-ca"]


def test_certs_only_round_trips_in_order() -> None:
    certs = [self_signed("device-1"), self_signed("issuing-ca")]
    assert load_certs_only(certs_only(certs)) == certs


def test_certs_only_of_nothing_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="at least one certificate"):
        certs_only([])


@pytest.mark.parametrize("der", [b"", b"\x30\x00", b"garbage"], ids=["empty", "seq", "junk"])
def test_load_certs_only_refuses_what_is_not_pkcs7(der: bytes) -> None:
    with pytest.raises(BadInput, match=r"not a PKCS#7 certs-only message \(RFC 7030 §4.1.3\)"):
        load_certs_only(der)


@pytest.mark.parametrize(("find", "replace"), [
    (b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x3f"),  # certificate version 64: InvalidVersion
    (bytes.fromhex("06092a864886f70d010701"), bytes.fromhex("06091b864886f70d010701")),
], ids=["bad-cert-version", "not-id-data-so-cryptography-retries-as-ber"])
def test_load_certs_only_reports_deeper_damage_as_bad_input(find: bytes, replace: bytes) -> None:
    der = certs_only([self_signed("device-1")])
    assert der.count(find) == 1
    with pytest.raises(BadInput, match="not a PKCS#7 certs-only message"):
        load_certs_only(der.replace(find, replace))


@given(st.binary(max_size=200))
def test_load_certs_only_raises_nothing_but_bad_input(der: bytes) -> None:
    with contextlib.suppress(BadInput):
        load_certs_only(der)


# --- server-side key generation (RFC 7030 §4.4.2) -----------------------------------------

def test_serverkeygen_round_trips(pkcs8_der: bytes) -> None:
    certs = [self_signed("device-1"), self_signed("issuing-ca")]
    content_type, body = encode_serverkeygen(pkcs8_der, certs, BOUNDARY)
    assert content_type == f"multipart/mixed; boundary={BOUNDARY}"
    assert decode_serverkeygen(content_type, body) == (pkcs8_der, certs)


def test_serverkeygen_is_read_by_the_email_package(pkcs8_der: bytes) -> None:
    cert = self_signed("device-1")
    content_type, body = encode_serverkeygen(pkcs8_der, [cert], BOUNDARY)
    message = email.message_from_bytes(
        b"MIME-Version: 1.0\r\nContent-Type: " + content_type.encode() + b"\r\n\r\n" + body,
        policy=email.policy.HTTP)
    assert message.is_multipart() and not message.defects
    key_part, cert_part = message.iter_parts()  # type: ignore[attr-defined]
    assert key_part.get_content_type() == "application/pkcs8"
    assert cert_part.get_content_type() == "application/pkcs7-mime"
    assert cert_part.get_param("smime-type") == "certs-only"
    assert key_part["Content-Transfer-Encoding"] == "base64"
    assert key_part.get_payload(decode=True) == pkcs8_der
    assert load_certs_only(cert_part.get_payload(decode=True)) == [cert]


def test_an_encrypted_key_part_is_typed_server_generated_key(pkcs8_der: bytes) -> None:
    """RFC 7030 §4.4.2: the encrypted key travels as application/pkcs7-mime with
    smime-type=server-generated-key; fleetpki's own agent asks for the plain form only."""
    enveloped = b"\x30\x03\x06\x01\x00"  # the codec carries the CMS bytes as they are
    content_type, body = encode_serverkeygen(enveloped, [self_signed("device-1")], BOUNDARY,
                                             encrypted=True)
    message = email.message_from_bytes(
        b"MIME-Version: 1.0\r\nContent-Type: " + content_type.encode() + b"\r\n\r\n" + body,
        policy=email.policy.HTTP)
    key_part, _ = message.iter_parts()  # type: ignore[attr-defined]
    assert key_part.get_content_type() == "application/pkcs7-mime"
    assert key_part.get_param("smime-type") == "server-generated-key"
    assert key_part.get_payload(decode=True) == enveloped
    with pytest.raises(BadInput, match="encrypted private key"):
        decode_serverkeygen(content_type, body)


def test_serverkeygen_uses_crlf_and_mime_line_lengths(pkcs8_der: bytes) -> None:
    _, body = encode_serverkeygen(pkcs8_der, [self_signed("device-1")], BOUNDARY)
    assert body.count(b"\n") == body.count(b"\r\n")
    assert body.startswith(f"--{BOUNDARY}\r\nContent-Type: application/pkcs8\r\n".encode())
    assert body.endswith(f"\r\n--{BOUNDARY}--\r\n".encode())
    assert max(len(line) for line in body.split(b"\r\n")) <= 76


def test_serverkeygen_tolerates_lf_preamble_and_swapped_parts(pkcs8_der: bytes) -> None:
    cert = self_signed("device-1")
    body = (f"preamble\n--b\nContent-Type: {CT_CERTS_ONLY}\n\n").encode() \
        + encode_base64_body(certs_only([cert])) \
        + b"\n--b  \ncontent-type: application/PKCS8\nX-Other: 1\n\n" \
        + encode_base64_body(pkcs8_der) + b"\n--b--\nepilogue"
    assert decode_serverkeygen('multipart/mixed; boundary="b"', body) == (pkcs8_der, [cert])


@pytest.mark.parametrize("boundary", ["", "has space", "a;b", "x" * 71, "ünï"])
def test_serverkeygen_refuses_an_unsafe_boundary(pkcs8_der: bytes, boundary: str) -> None:
    with pytest.raises(ValueError, match="MIME boundary"):
        encode_serverkeygen(pkcs8_der, [self_signed("device-1")], boundary)


def serverkeygen_with(parts: list[tuple[str, bytes]], *, close: bool = True) -> bytes:
    lines = []
    for content_type, content in parts:
        lines += [b"--b", b"Content-Type: " + content_type.encode(), b"", content]
    if close:
        lines.append(b"--b--")
    return b"\r\n".join(lines) + b"\r\n"


def test_serverkeygen_refusals_name_the_problem(pkcs8_der: bytes) -> None:
    key = encode_base64_body(pkcs8_der)
    certs = encode_base64_body(certs_only([self_signed("device-1")]))
    cases: list[tuple[str, bytes, str]] = [
        ("application/pkcs7-mime", b"", "not multipart/mixed"),
        ("multipart/mixed", b"", "no boundary parameter"),
        ("multipart/mixed; boundary=b", serverkeygen_with([(CT_PKCS8, key)]),
         "no application/pkcs7-mime; smime-type=certs-only part"),
        ("multipart/mixed; boundary=b", serverkeygen_with([(CT_CERTS_ONLY, certs)]),
         "no application/pkcs8 part"),
        ("multipart/mixed; boundary=b",
         serverkeygen_with([(CT_PKCS8, key), (CT_CERTS_ONLY, certs)], close=False),
         "no closing '--b--' line"),
        ("multipart/mixed; boundary=b",
         serverkeygen_with([(CT_PKCS8, key), (CT_PKCS8, key), (CT_CERTS_ONLY, certs)]),
         "two application/pkcs8 parts"),
        ("multipart/mixed; boundary=b",
         serverkeygen_with([(CT_PKCS8, b"QUJD!"), (CT_CERTS_ONLY, certs)]),
         r"part 1 \(application/pkcs8\): the body is not base64"),
        ("multipart/mixed; boundary=b",
         serverkeygen_with([(CT_PKCS8, b"QUJD"), (CT_CERTS_ONLY, certs)]),
         "not an unencrypted private key"),
        ("multipart/mixed; boundary=b",
         serverkeygen_with([("application/pkcs7-mime; smime-type=server-generated-key", key),
                            (CT_CERTS_ONLY, certs)]),
         "encrypted private key"),
        ("multipart/mixed; boundary=b", b"--b\r\nContent-Type: x\r\n--b--\r\n",
         "no blank line after its headers"),
    ]
    for content_type, body, problem in cases:
        with pytest.raises(BadInput, match=problem):
            decode_serverkeygen(content_type, body)


@given(st.binary(max_size=400))
def test_decode_serverkeygen_raises_nothing_but_bad_input(body: bytes) -> None:
    with contextlib.suppress(BadInput):
        decode_serverkeygen("multipart/mixed; boundary=b", b"--b\r\n" + body + b"\r\n--b--")


@pytest.fixture(scope="module")
def serverkeygen_body(pkcs8_der: bytes) -> bytes:
    return encode_serverkeygen(pkcs8_der, [self_signed("device-1")], "b")[1]


@given(data=st.data())
def test_mutated_serverkeygen_raises_nothing_but_bad_input(
    serverkeygen_body: bytes, data: st.DataObject,
) -> None:
    body = bytearray(serverkeygen_body)
    for _ in range(data.draw(st.integers(1, 4))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(
            st.sampled_from(b"\r\n-=:; bAQ\x00\xff"))
    with contextlib.suppress(BadInput):
        decode_serverkeygen("multipart/mixed; boundary=b", bytes(body))


@pytest.mark.parametrize("count", [1, 2, 5])
def test_the_fast_certs_only_reader_agrees_with_the_general_loader(count: int) -> None:
    chain = [self_signed(f"device-{n}") for n in range(count)]
    der = certs_only(chain)
    general = pkcs7.load_der_pkcs7_certificates(der)
    # Both read the encoded order (DER sorts a SET OF, so it need not be the list's).
    assert codec._certificates_of_signed_data(der) == general
    assert load_certs_only(der) == general
    assert sorted(c.serial_number for c in general) == sorted(c.serial_number for c in chain)


def test_the_fast_reader_leaves_anything_unusual_to_the_general_loader() -> None:
    der = certs_only([self_signed("device-1")])
    # An indefinite length (BER) at the top, or a wrong content type: not for the walk.
    assert codec._certificates_of_signed_data(b"\x30\x80" + der[2:]) is None
    signed_data = bytes.fromhex("06092a864886f70d010702")
    assert codec._certificates_of_signed_data(
        der.replace(signed_data, bytes.fromhex("06092a864886f70d010703"))) is None
    assert codec._certificates_of_signed_data(der[:-5]) is None
