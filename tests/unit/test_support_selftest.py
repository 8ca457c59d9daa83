"""Self-test of tests/support: prove the helpers really work before other tests rely on them.

Why: a PostgreSQL fixture that silently connects to the wrong server, or a linter wrapper
that never reports anything, would make every test built on them meaningless. These tests
start a real server and feed pkilint/openssl both good and deliberately broken input.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from support.lint import lint_certificate, lint_crl, openssl_verify, require_tool
from support.postgres import PostgresServer, process_alive

_NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@dataclass(frozen=True)
class _Issued:
    """A certificate with its key, so a root can sign further certificates."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _serial() -> int:
    """Positive serial of at most 127 bits, as RFC 5280 (20 octets, positive) requires."""
    return int.from_bytes(secrets.token_bytes(16), "big") >> 1


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fleetpki selftest"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _make_root(*, key_cert_sign: bool = True) -> _Issued:
    """Self-signed P-256 root; ``key_cert_sign=False`` builds a deliberately broken CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name("fleetpki selftest root")
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(_NOW - dt.timedelta(minutes=5))
        .not_valid_after(_NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not key_cert_sign,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_cert_sign,
                crl_sign=key_cert_sign,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return _Issued(cert, key)


def _make_leaf(
    issuer: _Issued,
    *,
    subject: x509.Name | None = None,
    san_uri: str = "https://fleet.example.com/devices/0001",
) -> _Issued:
    """Client-auth device certificate signed by ``issuer`` (non-critical SAN with one URI)."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("device-0001") if subject is None else subject)
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(_NOW - dt.timedelta(minutes=5))
        .not_valid_after(_NOW + dt.timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(san_uri)]),
            critical=False,
        )
    )
    return _Issued(builder.sign(issuer.key, hashes.SHA256()), key)


def _der(issued: _Issued) -> bytes:
    return issued.cert.public_bytes(serialization.Encoding.DER)


def _write_pem(path: Path, issued: _Issued) -> Path:
    path.write_bytes(issued.cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.postgres
def test_postgres_server_starts_serves_and_stops() -> None:
    server = PostgresServer()
    try:
        url = server.start()
        assert url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
        pid = server.pid
        assert process_alive(pid)

        engine = sqlalchemy.create_engine(url)
        try:
            with engine.connect() as conn:
                assert conn.execute(sqlalchemy.text("select 1")).scalar_one() == 1
        finally:
            engine.dispose()

        second_url = server.create_database("selftest_second")
        assert second_url.endswith(f":{server.port}/selftest_second")
        engine = sqlalchemy.create_engine(second_url)
        try:
            with engine.connect() as conn:
                assert conn.execute(sqlalchemy.text("select current_database()")).scalar_one() == (
                    "selftest_second"
                )
        finally:
            engine.dispose()
    finally:
        server.stop()

    assert not server.running
    assert not process_alive(pid)
    server.stop()  # idempotent


@pytest.mark.postgres
def test_postgres_server_context_manager() -> None:
    with PostgresServer() as server:
        pid = server.pid
        engine = sqlalchemy.create_engine(server.url)
        try:
            with engine.connect() as conn:
                assert conn.execute(sqlalchemy.text("select 1")).scalar_one() == 1
        finally:
            engine.dispose()
    assert not process_alive(pid)


def test_good_root_and_leaf_pass_pkilint_and_openssl(tmp_path: Path) -> None:
    root = _make_root()
    leaf = _make_leaf(root)

    assert lint_certificate(_der(root)) == []
    assert lint_certificate(_der(leaf)) == []

    openssl_verify(
        _write_pem(tmp_path / "leaf.pem", leaf), [], _write_pem(tmp_path / "root.pem", root)
    )


def test_openssl_verify_rejects_leaf_from_another_root(tmp_path: Path) -> None:
    leaf = _make_leaf(_make_root())
    other_root = _write_pem(tmp_path / "other-root.pem", _make_root())
    with pytest.raises(AssertionError, match="openssl verify rejected"):
        openssl_verify(_write_pem(tmp_path / "leaf.pem", leaf), [], other_root)


def test_pkilint_flags_ca_without_key_cert_sign() -> None:
    findings = lint_certificate(_der(_make_root(key_cert_sign=False)))
    assert any("pkix.ca_certificate_keycertsign_keyusage_not_set" in f for f in findings), findings


def test_pkilint_flags_empty_subject_with_non_critical_san() -> None:
    # RFC 5280 4.2.1.6: with an empty subject the SAN extension MUST be critical.
    # (An empty subject with no SAN at all is NOT flagged by pkilint's RFC 5280 linter.)
    leaf = _make_leaf(_make_root(), subject=x509.Name([]))
    findings = lint_certificate(_der(leaf))
    assert any("pkix.san_extension_not_critical_empty_subject" in f for f in findings), findings


def test_pkilint_uri_false_positive_can_be_ignored() -> None:
    # pkilint 0.13 accepts only a few URI schemes; urn: SANs are valid RFC 5280 but flagged.
    leaf = _der(_make_leaf(_make_root(), san_uri="urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"))
    assert any("pkix.invalid_uri_syntax" in f for f in lint_certificate(leaf))
    assert lint_certificate(leaf, ignore_codes={"pkix.invalid_uri_syntax"}) == []


def _make_crl(issuer: _Issued, *, with_crl_number: bool = True) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(_NOW - dt.timedelta(minutes=5))
        .next_update(_NOW + dt.timedelta(days=1))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(_serial())
            .revocation_date(_NOW - dt.timedelta(minutes=1))
            .build()
        )
    )
    if with_crl_number:
        builder = builder.add_extension(x509.CRLNumber(1), critical=False)
    return builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_lint_crl_accepts_good_crl_and_flags_missing_crl_number() -> None:
    root = _make_root()
    assert lint_crl(_make_crl(root)) == []
    findings = lint_crl(_make_crl(root, with_crl_number=False))
    assert any("pkix.crl_number_missing" in f for f in findings), findings


def test_lint_certificate_reports_garbage_as_fatal() -> None:
    findings = lint_certificate(b"\x30\x03\x02\x01\x01")
    assert findings
    assert "FATAL" in findings[0]


def test_require_tool_finds_openssl_and_pg_ctl() -> None:
    assert Path(require_tool("openssl")).name == "openssl"
    assert Path(require_tool("pg_ctl")).name == "pg_ctl"


def test_postgres_server_missing_binaries_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import support.postgres

    monkeypatch.setattr(support.postgres, "find_postgres_bindir", lambda: None)
    with pytest.raises(RuntimeError) as excinfo:
        PostgresServer().start()
    assert str(excinfo.value) == (
        "PostgreSQL server binaries not found: run ./check (it installs the Debian package "
        "postgresql) or apt-get install postgresql"
    )
