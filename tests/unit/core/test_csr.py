"""Reading CSRs: every malformed input gets a BadInput naming what is wrong."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from fleetpki.core.csr import MAX_CSR_BYTES, check_proof_of_possession, load_csr
from fleetpki.core.errors import BadInput, PolicyViolation
from support.csrs import make_csr


def test_pem_and_der_both_load() -> None:
    csr, _ = make_csr()
    assert load_csr(csr.public_bytes(serialization.Encoding.PEM)).subject == csr.subject
    assert load_csr(csr.public_bytes(serialization.Encoding.DER)).subject == csr.subject


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"hello, I am not a CSR", "not a valid PKCS#10"),
    (b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
     "not a valid PKCS#10"),
    (b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "certificate, not"),
    (b"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n", "private key"),
    (b"\x30" + b"\x00" * (MAX_CSR_BYTES + 1), "limit"),
])
def test_bad_input_is_refused_with_reason(data: bytes, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        load_csr(data)


def test_damaged_der_is_described_in_words_not_in_parser_internals() -> None:
    csr, _ = make_csr()
    der = csr.public_bytes(serialization.Encoding.DER)
    for data, words in ((der[: len(der) // 2], "ends before the request does"),
                        (der + b"junk", "extra bytes after the request"),
                        (b"\x02\x01\x05", "not a PKCS#10 structure")):
        with pytest.raises(BadInput, match=words) as refused:
            load_csr(data)
        assert "ParseError" not in str(refused.value) and "{" not in str(refused.value)


def test_a_der_certificate_is_named_as_one() -> None:
    from support.tiny_pki import issue

    der = issue("device-1", issue("Root", ca=True)).cert.public_bytes(
        serialization.Encoding.DER)
    with pytest.raises(BadInput, match="this is a certificate, not a certificate request"):
        load_csr(der)


def test_tampered_csr_fails_proof_of_possession() -> None:
    csr, _ = make_csr(cn="sensor-0001")
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    index = der.find(b"sensor-0001")
    der[index + len("sensor-000")] = ord("2")  # the signature now covers another name
    tampered = load_csr(bytes(der))
    with pytest.raises(PolicyViolation, match="does not verify"):
        check_proof_of_possession(tampered)


def test_genuine_csr_passes_proof_of_possession() -> None:
    csr, _ = make_csr()
    check_proof_of_possession(load_csr(csr.public_bytes(serialization.Encoding.DER)))


def test_fast_proof_of_possession_agrees_with_cryptography_for_every_key_type() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    from support.csrs import make_key

    for kind in ("ec-p256", "ec-p384", "ed25519", "rsa-2048"):
        csr, _ = make_csr(key=make_key(kind))
        assert csr.is_signature_valid
        check_proof_of_possession(csr, csr.public_key())
    # RSA-PSS takes cryptography's own check, and a forged one is still refused.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pss-device")]))
           .sign(key, hashes.SHA256(), rsa_padding=pss))
    check_proof_of_possession(csr, csr.public_key())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[der.find(b"pss-device")] = ord("q")
    forged = load_csr(bytes(der))
    with pytest.raises(PolicyViolation):
        check_proof_of_possession(forged, forged.public_key())
