"""`fleetpki issue`: certificates from CSRs, refusals that change nothing, actionable errors."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from support.csrs import make_csr, make_key
from support.full_disk import fill_disk_for

PEM = serialization.Encoding.PEM


def counts(home: Path) -> tuple[int, int, int]:
    """(certificates, serials ever reserved, audit entries)."""
    with sqlite3.connect(home / "fleetpki.db") as db:
        return tuple(db.execute(f"select count(*) from {t}").fetchone()[0]  # type: ignore[return-value]
                     for t in ("certificates", "serials", "audit_log"))


def write_csr(tmp_path: Path, name: str = "dev.csr", **kwargs: object) -> Path:
    csr, _ = make_csr(**kwargs)  # type: ignore[arg-type]
    path = tmp_path / name
    path.write_bytes(csr.public_bytes(PEM))
    return path


def test_issue_to_a_missing_directory_issues_nothing(fleetpki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    csr = write_csr(tmp_path)
    result = fleetpki("issue", "--profile", "sensor", "--csr", str(csr), "--out",
                      str(tmp_path / "missing-dir" / "dev.pem"))
    assert result.exit_code == 2, result.output
    assert "does not exist (nothing was issued)" in result.output
    assert "sensor-0001" not in fleetpki("certs", "list").output
    assert not (tmp_path / "missing-dir").exists()


def test_issue_to_a_full_disk_names_the_file_and_keeps_the_certificate(  # type: ignore[no-untyped-def]
        fleetpki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    csr = write_csr(tmp_path)
    out = tmp_path / "dev.pem"
    fill_disk_for(monkeypatch, "dev.pem")
    result = fleetpki("issue", "--profile", "sensor", "--csr", str(csr), "--out", str(out))
    assert result.exit_code == 11, result.output
    assert f"writing {out} failed (No space left on device)" in result.stderr
    assert "fleetpki certs export" in result.stderr and result.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev.csr", "home"]
    assert '"device_id": "sensor-0001"' in fleetpki("certs", "list", "--json").stdout


def test_issue_from_pem_csr_writes_certificate_and_records_it(fleetpki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    csr = write_csr(tmp_path, sans=[x509.UniformResourceIdentifier("urn:dev:mac:0a1b2c3d4e5f")])
    out = tmp_path / "dev.pem"
    result = fleetpki("issue", "--profile", "sensor", "--csr", str(csr), "--out", str(out),
                      "--chain")
    assert result.exit_code == 0, result.output
    certs = x509.load_pem_x509_certificates(out.read_bytes())
    assert len(certs) == 2  # leaf + issuing CA
    leaf = certs[0]
    assert leaf.subject.rfc4514_string() == "CN=sensor-0001"
    assert leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    listed = fleetpki("certs", "list", "--device", "sensor-0001", "--json")
    assert format(leaf.serial_number, "x") in listed.output
    chain = fleetpki("ca", "export-chain", "issuing").output.encode()
    root_pem = x509.load_pem_x509_certificates(chain)[-1].public_bytes(PEM)
    (tmp_path / "root.pem").write_bytes(root_pem)
    verify = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile",
                             str(tmp_path / "root.pem"), "-untrusted", str(out), str(out)],
                            capture_output=True, text=True, timeout=30, check=False)
    assert verify.returncode == 0 and ": OK" in verify.stdout, verify.stdout + verify.stderr


def test_issue_from_der_csr(fleetpki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    csr, _ = make_csr("sensor-0002")
    path = tmp_path / "dev.der"
    path.write_bytes(csr.public_bytes(serialization.Encoding.DER))
    result = fleetpki("issue", "--profile", "sensor", "--csr", str(path))
    assert result.exit_code == 0, result.output
    assert x509.load_pem_x509_certificate(result.stdout.encode()).subject == csr.subject


@pytest.mark.parametrize(("kwargs", "validity", "reason"), [
    ({"extensions": [(x509.BasicConstraints(ca=True, path_length=None), True)]}, None,
     "CA:TRUE"),
    ({"extensions": [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)]}, None,
     "codeSigning"),
    ({"sans": [x509.DNSName("evil.example.com")]}, None, "not allowed"),
    ({}, "500d", "exceeds"),
    ({"key": make_key("rsa-2048")}, None, "RSA keys are not allowed"),
    ({"cn": "x"}, None, "does not match"),
])
def test_request_beyond_profile_is_refused_and_changes_nothing(
        fleetpki, home: Path, tmp_path: Path, kwargs: dict[str, object], validity: str | None,  # type: ignore[no-untyped-def]
        reason: str) -> None:
    csr = write_csr(tmp_path, **kwargs)
    certs_before, serials_before, audit_before = counts(home)
    args = ["issue", "--profile", "sensor", "--csr", str(csr)]
    if validity:
        args += ["--validity", validity]
    result = fleetpki(*args)
    assert result.exit_code == 3
    assert reason in result.stderr
    assert result.stderr.count("\n") == 1  # one line, no traceback
    certs_after, serials_after, audit_after = counts(home)
    assert (certs_after, serials_after) == (certs_before, serials_before)
    assert audit_after == audit_before + 1  # the refusal itself is audited
    last = fleetpki("audit", "list", "--since", str(audit_after)).output
    assert "certificate.refused" in last


def test_tampered_csr_is_refused(fleetpki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    csr, _ = make_csr("sensor-0001")
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[der.find(b"sensor-0001") + 10] = ord("9")
    path = tmp_path / "tampered.der"
    path.write_bytes(bytes(der))
    result = fleetpki("issue", "--profile", "sensor", "--csr", str(path))
    assert result.exit_code == 3
    assert "does not verify" in result.stderr


@pytest.mark.parametrize(("content", "message"), [
    (b"garbage\x00\x01", "not a valid PKCS#10"),
    (b"-----BEGIN CERTIFICATE REQUEST-----\nMIIBIjAN\n", "not a valid PKCS#10"),
    (b"A" * (70 * 1024), "limit"),
])
def test_garbage_csr_gets_one_line_error(fleetpki, home: Path, tmp_path: Path, content: bytes,  # type: ignore[no-untyped-def]
                                         message: str) -> None:
    path = tmp_path / "bad.csr"
    path.write_bytes(content)
    certs, serials, audit = counts(home)
    result = fleetpki("issue", "--profile", "sensor", "--csr", str(path))
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert counts(home) == (certs, serials, audit + 1)  # refused, audited, nothing else


def test_a_csr_file_far_over_the_limit_is_refused_against_the_csr_limit(  # type: ignore[no-untyped-def]
        fleetpki, home: Path, tmp_path: Path) -> None:
    path = tmp_path / "huge.csr"
    path.write_bytes(b"A" * 2_000_000)  # not even read: the RA would refuse a tenth of it
    before = counts(home)
    result = fleetpki("issue", "--profile", "sensor", "--csr", str(path))
    assert result.exit_code == 2
    assert f"{path} is 2000000 bytes; the limit is 65536 bytes (64 KiB)" in result.stderr
    assert "Traceback" not in result.output
    assert counts(home) == before


def test_pem_with_text_above_it_is_called_pem_not_der(fleetpki, home: Path,  # type: ignore[no-untyped-def]
                                                      tmp_path: Path) -> None:
    csr = write_csr(tmp_path)
    shown = subprocess.run(["openssl", "req", "-in", str(csr), "-text"], capture_output=True,
                           timeout=30, check=True).stdout
    assert shown.startswith(b"Certificate Request:")
    path = tmp_path / "with-text.csr"
    path.write_bytes(shown)
    before = counts(home)
    result = fleetpki("issue", "--profile", "sensor", "--csr", str(path))
    assert result.exit_code == 2, result.output
    above = shown.index(b"-----BEGIN")
    assert f"this is PEM with {above} bytes of text before its '-----BEGIN CERTIFICATE " \
           "REQUEST-----' line" in result.stderr
    assert "DER" not in result.stderr and result.stderr.count("\n") == 1
    assert counts(home)[:2] == before[:2]
    key = tmp_path / "with-text.key"
    key.write_bytes(b"my key\n" + make_key().private_bytes(
        PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    refused = fleetpki("issue", "--profile", "sensor", "--csr", str(key))
    assert refused.exit_code == 2 and "this is a private key" in refused.stderr


def test_pem_certificate_instead_of_csr_is_named(fleetpki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    chain = fleetpki("ca", "export-chain", "issuing").stdout
    path = tmp_path / "not-a-csr.pem"
    path.write_text(chain)
    result = fleetpki("issue", "--profile", "sensor", "--csr", str(path))
    assert result.exit_code == 2
    assert "certificate, not a certificate request" in result.stderr


def test_unknown_profile_lists_the_known_ones(fleetpki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = fleetpki("issue", "--profile", "nope", "--csr", str(write_csr(tmp_path)))
    assert result.exit_code == 5
    assert "no profile named 'nope' (profiles: edge, gateway, sensor)" in result.stderr


def test_missing_csr_file(fleetpki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = fleetpki("issue", "--profile", "sensor", "--csr", str(tmp_path / "none.csr"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_wrong_passphrase_is_one_line(fleetpki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = fleetpki("issue", "--profile", "sensor", "--csr", str(write_csr(tmp_path)),
                      env={"FLEETPKI_KEY_PASSPHRASE": "definitely-not-the-passphrase"})
    assert result.exit_code == 8
    assert "wrong passphrase" in result.stderr
    assert result.stderr.count("\n") == 1


def test_empty_passphrase_variable_is_an_error_not_a_fallback(fleetpki, home: Path,  # type: ignore[no-untyped-def]
                                                              tmp_path: Path) -> None:
    result = fleetpki("issue", "--profile", "sensor", "--csr", str(write_csr(tmp_path)),
                      env={"FLEETPKI_KEY_PASSPHRASE": ""})
    assert result.exit_code == 8, result.output
    assert "FLEETPKI_KEY_PASSPHRASE is set but empty" in result.stderr
    assert "sensor-0001" not in fleetpki("certs", "list").output


def test_profile_typo_refuses_to_start_naming_the_field(fleetpki, home: Path,  # type: ignore[no-untyped-def]
                                                       tmp_path: Path) -> None:
    profiles = home / "profiles.toml"
    profiles.write_text(profiles.read_text().replace('maximum = "398d"', 'maximun = "398d"'))
    result = fleetpki("issue", "--profile", "sensor", "--csr", str(write_csr(tmp_path)))
    assert result.exit_code == 7
    assert f"{profiles}: profile 'sensor': field 'validity.maximun': unknown key; did you " \
           "mean 'maximum'?" in result.stderr


def test_read_only_database_is_reported_and_nothing_changes(fleetpki, home: Path,  # type: ignore[no-untyped-def]
                                                           tmp_path: Path) -> None:
    csr = write_csr(tmp_path)
    before = counts(home)
    db = home / "fleetpki.db"
    (home / "fleetpki.toml").write_text(
        f'[store]\nurl = "sqlite:///file:{db}?mode=ro&uri=true"\n')
    result = fleetpki("issue", "--profile", "sensor", "--csr", str(csr))
    assert result.exit_code == 9
    assert "read-only" in result.stderr
    assert result.stderr.count("\n") == 1
    assert counts(home) == before


def test_uninitialised_home_says_what_to_do(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from fleetpki.cli.main import cli

    result = CliRunner().invoke(cli, ["--home", str(tmp_path / "none"), "certs", "list"])
    assert result.exit_code == 7
    assert "run `fleetpki init` first" in result.stderr
