"""CMP message protection and parsing, checked against messages OpenSSL's own CMP client made
(its mock server runs in-process: `openssl cmp -use_mock_srv`), and PBMAC1 against hashlib."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_der_public_key

from fleetpki.core import der
from fleetpki.protocols.cmp.asn1 import FailInfo, Malformed, named_bit
from fleetpki.protocols.cmp.codec import decode_request
from fleetpki.protocols.cmp.protection import (
    IterationBounds,
    ProtectionError,
    read_mac,
    verify_signature,
)
from fleetpki.ra.shared_secrets import SecretDeriver
from support import cmp_messages
from support.lint import require_tool

BOUNDS = IterationBounds(100, 100_000)
SECRET = "correct horse battery staple"


@pytest.fixture(scope="module")
def openssl_ir(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    work = tmp_path_factory.mktemp("openssl-cmp")
    openssl = require_tool("openssl")
    run = lambda *args: subprocess.run([openssl, *args], cwd=work, check=True,  # noqa: E731
                                       capture_output=True, timeout=60)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "srv.key", "-out", "srv.crt", "-subj", "/CN=mock", "-days", "1")
    run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "new.key")
    subprocess.run([openssl, "cmp", "-cmd", "ir", "-use_mock_srv", "-srv_ref", "k1",
                    "-srv_secret", f"pass:{SECRET}", "-srv_cert", "srv.crt", "-srv_key",
                    "srv.key", "-rsp_cert", "srv.crt", "-ref", "k1", "-secret",
                    f"pass:{SECRET}", "-newkey", "new.key", "-subject", "/CN=dev1",
                    "-reqout", "ir.der", "-certout", "out.pem", "-srvcert", "srv.crt"],
                   cwd=work, capture_output=True, timeout=60, check=False)
    return (Path(work) / "ir.der").read_bytes()


def test_openssl_password_based_mac_verifies_only_with_its_secret(openssl_ir: bytes) -> None:
    request = decode_request(openssl_ir)
    assert request.body_type == "ir" and request.header.sender_kid == b"k1"
    assert request.header.protection_algorithm is not None and request.protection is not None
    scheme = read_mac(request.header.protection_algorithm,
                      request.header.protection_parameters, BOUNDS)
    assert scheme.verify(SECRET.encode(), request.protected_part, request.protection)
    assert not scheme.verify(b"wrong", request.protected_part, request.protection)


def test_openssl_proof_of_possession_verifies(openssl_ir: bytes) -> None:
    wanted = decode_request(openssl_ir).certificate_requests[0]
    assert wanted.possession is not None and wanted.public_key is not None
    key = load_der_public_key(wanted.public_key)
    verify_signature(wanted.possession.algorithm, key, wanted.signed_part,  # type: ignore[arg-type]
                     wanted.possession.signature, what="POP")
    with pytest.raises(ProtectionError) as bad:
        verify_signature(wanted.possession.algorithm, key,  # type: ignore[arg-type]
                         wanted.signed_part + b"\x00", wanted.possession.signature, what="POP")
    assert bad.value.fail is FailInfo.bad_message_check


def test_iteration_counts_outside_the_bounds_are_bad_alg(openssl_ir: bytes) -> None:
    header = decode_request(openssl_ir).header
    assert header.protection_algorithm is not None
    with pytest.raises(ProtectionError) as refused:
        read_mac(header.protection_algorithm, header.protection_parameters,
                 IterationBounds(1000, 2000))  # OpenSSL 3.0 uses 500
    assert refused.value.fail is FailInfo.bad_alg and "500" in str(refused.value)


def test_pbmac1_matches_pbkdf2_from_hashlib() -> None:
    mac = cmp_messages.Mac("k", SECRET, pbmac1=True, iterations=2048)
    salt = os.urandom(16)
    params = der.elements(mac.algorithm(salt))[1]
    scheme = read_mac("1.2.840.113549.1.5.14", params, BOUNDS)
    key = hashlib.pbkdf2_hmac("sha256", SECRET.encode(), salt, 2048, 32)
    assert scheme.mac(SECRET.encode(), b"data") == hmac.new(key, b"data", "sha256").digest()
    fresh = scheme.fresh()
    assert fresh.salt != scheme.salt and fresh.iterations == 2048


def test_garbage_is_malformed() -> None:
    for data in (b"", b"\x30\x03\x02\x01\x02", os.urandom(64), b"\x30\x80\x00\x00"):
        with pytest.raises(Malformed):
            decode_request(data)


def test_named_bits_are_minimal_der() -> None:
    assert named_bit(1) == b"\x03\x02\x06\x40"  # badMessageCheck
    assert named_bit(21) == b"\x03\x04\x02\x00\x00\x04"  # transactionIdInUse


def test_derived_secrets_are_stable_and_distinct() -> None:
    deriver = SecretDeriver(b"k" * 32)
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert deriver.secret("a", at) == deriver.secret("a", at.replace(microsecond=5))
    assert deriver.secret("a", at) != deriver.secret("b", at)
    assert deriver.secret("a", at) != SecretDeriver(b"j" * 32).secret("a", at)
    assert len(deriver.secret("a", at)) == 32
