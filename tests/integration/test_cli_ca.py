"""CA hierarchy from the CLI: key types, several issuing CAs, offline root, imports, root CRL."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from fleetpki.ca.ceremony import ca_name
from fleetpki.cli.main import cli
from fleetpki.core.keys import KeySpec
from fleetpki.ra.authorizers import local_operator
from fleetpki.wiring import DEFAULT_PASSPHRASE_ENV, open_fleet, prepare_home
from support.csrs import make_csr
from support.full_disk import fill_disk_for
from support.lint import lint_crl, require_tool

PEM = serialization.Encoding.PEM
EXPORT = {"FLEETPKI_EXPORT_PASSPHRASE": "offline-media-passphrase"}


@pytest.mark.parametrize(("key_type", "key_class", "size"), [
    ("ec-p384", ec.EllipticCurvePublicKey, 384),
    ("ed25519", ed25519.Ed25519PublicKey, None),
    ("rsa-3072", rsa.RSAPublicKey, 3072),
])
def test_init_with_selected_key_type(tmp_path: Path, key_type: str, key_class: type,
                                     size: int | None) -> None:
    home = tmp_path / "home"
    result = CliRunner().invoke(cli, ["--home", str(home), "init", "--key-type", key_type])
    assert result.exit_code == 0, result.output
    chain = CliRunner().invoke(cli, ["--home", str(home), "ca", "export-chain", "issuing"])
    issuing, root = x509.load_pem_x509_certificates(chain.stdout.encode())
    for cert in (issuing, root):
        assert isinstance(cert.public_key(), key_class)
        if size:
            assert cert.public_key().key_size == size  # type: ignore[union-attr]
    issuing.verify_directly_issued_by(root)
    again = CliRunner().invoke(cli, ["--home", str(home), "init"])
    assert again.exit_code == 6
    assert "already holds a CA hierarchy" in again.stderr


@pytest.mark.parametrize(("args", "says"), [
    (["--root-name", "x", "--issuing-name", "x"], "must differ"),
    (["--root-name", "../a"], "CA names are letters"),
    (["--org", "o" * 5000], "cannot hold it"),
    (["--org", "  "], "must not be empty"),
])
def test_init_checks_its_options_before_writing_anything(tmp_path: Path, args: list[str],
                                                         says: str) -> None:
    home = tmp_path / "home"
    result = CliRunner().invoke(cli, ["--home", str(home), "init", *args])
    assert result.exit_code == 2, result.output
    assert says in result.stderr
    assert not home.exists()


def test_init_with_a_short_passphrase_creates_no_ca_and_can_be_run_again(tmp_path: Path
                                                                         ) -> None:
    home = tmp_path / "home"
    short = CliRunner().invoke(cli, ["--home", str(home), "init"],
                               env={DEFAULT_PASSPHRASE_ENV: "short"})
    assert short.exit_code == 8 and "at least 12 bytes" in short.stderr, short.output
    assert not list((home / "keys").iterdir())
    good = CliRunner().invoke(cli, ["--home", str(home), "init"],
                              env={DEFAULT_PASSPHRASE_ENV: "a-long-enough-passphrase"})
    assert good.exit_code == 0, good.output


def test_init_that_stopped_after_the_root_is_finished_by_running_it_again(tmp_path: Path
                                                                          ) -> None:
    home = tmp_path / "home"
    prepare_home(home)
    fleet = open_fleet(home)
    try:
        fleet.ca_admin(local_operator()).create_root(
            "root", ca_name("fleetpki Root CA", "fleetpki"), KeySpec.parse("ec-p256"))
    finally:
        fleet.close()
    result = CliRunner().invoke(cli, ["--home", str(home), "init"])
    assert result.exit_code == 0, result.output
    chain = CliRunner().invoke(cli, ["--home", str(home), "ca", "export-chain", "issuing"])
    issuing, root = x509.load_pem_x509_certificates(chain.stdout.encode())
    issuing.verify_directly_issued_by(root)


def issue(fleetpki, tmp_path: Path, cn: str) -> x509.Certificate:  # type: ignore[no-untyped-def]
    csr, _ = make_csr(cn)
    path = tmp_path / f"{cn}.csr"
    path.write_bytes(csr.public_bytes(PEM))
    result = fleetpki("issue", "--profile", "sensor", "--csr", str(path))
    assert result.exit_code == 0, result.output
    return x509.load_pem_x509_certificate(result.stdout.encode())


def test_root_key_offline_then_back_for_a_new_issuing_ca_and_root_crl(
        fleetpki, home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    media = tmp_path / "usb" / "root.key.enc"
    media.parent.mkdir()
    result = fleetpki("ca", "take-offline", "root", "--export", str(media), env=EXPORT)
    assert result.exit_code == 0, result.output
    assert not (home / "keys" / "root.key.pem").exists()
    assert oct(media.stat().st_mode & 0o777) == "0o600"
    # Day-to-day issuance keeps working without the root key...
    issue(fleetpki, tmp_path, "sensor-0001")
    # ...but nothing that needs the root does.
    refused = fleetpki("ca", "create-issuing", "issuing-2")
    assert refused.exit_code == 8
    assert "kept offline" in refused.stderr and "restore-key" in refused.stderr
    wrong = fleetpki("ca", "restore-key", "root", "--from", str(media),
                     env={"FLEETPKI_EXPORT_PASSPHRASE": "not-the-right-one"})
    assert wrong.exit_code == 8
    assert fleetpki("ca", "restore-key", "root", "--from", str(media), env=EXPORT).exit_code == 0
    again = fleetpki("ca", "restore-key", "root", "--from", str(media), env=EXPORT)
    assert again.exit_code == 6 and "already online" in again.stderr
    assert fleetpki("ca", "create-issuing", "issuing-2", "--key-type", "ec-p384").exit_code == 0
    assert fleetpki("ca", "revoke", "issuing-2", "--reason", "cessationOfOperation"
                    ).exit_code == 0
    crl_path = tmp_path / "root.crl"
    signed = fleetpki("ca", "root-crl", "root", "--out", str(crl_path))
    assert signed.exit_code == 0, signed.output
    crl = x509.load_der_x509_crl(crl_path.read_bytes())
    chain = x509.load_pem_x509_certificates(fleetpki("ca", "export-chain", "issuing-2")
                                            .stdout.encode())
    assert crl.get_revoked_certificate_by_serial_number(chain[0].serial_number) is not None
    assert crl.is_signature_valid(chain[1].public_key())  # type: ignore[arg-type]
    assert lint_crl(crl_path.read_bytes()) == []
    # Independent check: openssl accepts the CRL's signature against the root.
    root_pem = tmp_path / "root.pem"
    root_pem.write_bytes(chain[1].public_bytes(PEM))
    openssl = require_tool("openssl")
    checked = subprocess.run([openssl, "crl", "-inform", "DER", "-in", str(crl_path), "-noout",
                              "-CAfile", str(root_pem)], capture_output=True, text=True,
                             timeout=30, check=False)
    assert "verify OK" in checked.stdout + checked.stderr
    listing = fleetpki("ca", "list").stdout
    assert "issuing-2" in listing and "revoked" in listing


def test_root_crl_to_a_full_disk_names_the_file_and_leaves_none(  # type: ignore[no-untyped-def]
        fleetpki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    media = tmp_path / "media"
    media.mkdir()
    fill_disk_for(monkeypatch, "root.crl")
    result = fleetpki("ca", "root-crl", "root", "--out", str(media / "root.crl"))
    assert result.exit_code == 11, result.output
    assert f"No space left on device ({media / 'root.crl'})" in result.stderr
    assert list(media.iterdir()) == []


def test_take_offline_refuses_to_overwrite_and_without_passphrase(fleetpki, tmp_path: Path  # type: ignore[no-untyped-def]
                                                                  ) -> None:
    existing = tmp_path / "exists"
    existing.write_text("x")
    assert fleetpki("ca", "take-offline", "root", "--export", str(existing), env=EXPORT
                    ).exit_code == 2
    nopass = fleetpki("ca", "take-offline", "root", "--export", str(tmp_path / "k"))
    assert nopass.exit_code == 8
    assert "FLEETPKI_EXPORT_PASSPHRASE" in nopass.stderr


def test_take_offline_to_a_missing_directory_keeps_the_key_online(  # type: ignore[no-untyped-def]
        fleetpki, home: Path, tmp_path: Path) -> None:
    """An unmounted stick: creating its directory would leave the 'offline' root on disk."""
    media = tmp_path / "usb" / "root.key.enc"
    result = fleetpki("ca", "take-offline", "root", "--export", str(media), env=EXPORT)
    assert result.exit_code == 2, result.output
    assert "does not exist" in result.stderr and "mount" in result.stderr
    assert not media.parent.exists()
    assert (home / "keys" / "root.key.pem").exists()


def test_empty_key_files_are_called_empty_not_a_wrong_passphrase(  # type: ignore[no-untyped-def]
        fleetpki, home: Path, tmp_path: Path) -> None:
    """A key file emptied by a full disk or a botched copy: hunting for the right passphrase
    would be a waste of the operator's time."""
    stored = home / "keys" / "issuing.key.pem"
    stored.write_bytes(b"")
    csr, _ = make_csr("sensor-0001")
    (tmp_path / "dev.csr").write_bytes(csr.public_bytes(PEM))
    broken = fleetpki("issue", "--profile", "sensor", "--csr", str(tmp_path / "dev.csr"))
    assert broken.exit_code == 8, broken.output
    assert f"{stored} is empty (0 bytes)" in broken.stderr
    assert "passphrase" not in broken.stderr and broken.stderr.count("\n") == 1
    empty, blank = tmp_path / "empty.pem", tmp_path / "blank.pem"
    empty.write_bytes(b"")
    blank.write_bytes(b"\n\n")
    chain = tmp_path / "chain.pem"
    chain.write_text(fleetpki("ca", "export-chain", "root").stdout)
    for name, path in (("key", empty), ("certificate", blank)):
        args = ["--cert", str(chain), "--key", str(path)] if name == "key" else \
            ["--cert", str(path), "--key", str(chain)]
        imported = fleetpki("ca", "import", "other", *args)
        assert imported.exit_code == 2, imported.output
        assert f"{name} {path} is empty" in imported.stderr
        assert imported.stderr.count("\n") == 1
    media = tmp_path / "root.key.enc"
    assert fleetpki("ca", "take-offline", "root", "--export", str(media), env=EXPORT
                    ).exit_code == 0
    restored = fleetpki("ca", "restore-key", "root", "--from", str(blank), env=EXPORT)
    assert restored.exit_code == 8, restored.output
    assert f"{blank} is empty (2 bytes of blank space)" in restored.stderr
    assert "passphrase" not in restored.stderr


def test_import_issuing_ca_made_by_openssl(fleetpki, home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    openssl = require_tool("openssl")
    key, cert = tmp_path / "ext.key", tmp_path / "ext.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "3650", "-subj", "/O=Legacy/CN=Legacy Issuing CA",
                    "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                   check=True, capture_output=True, timeout=60)
    result = fleetpki("ca", "import", "legacy", "--cert", str(cert), "--key", str(key))
    assert result.exit_code == 0, result.output
    stored = (home / "keys" / "legacy.key.pem").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in stored  # re-encrypted under our passphrase
    twice = fleetpki("ca", "import", "legacy-2", "--cert", str(cert), "--key", str(key))
    assert twice.exit_code == 6 and "already CA 'legacy'" in twice.stderr, twice.output
    assert not (home / "keys" / "legacy-2.key.pem").exists()
    profiles = home / "profiles.toml"
    profiles.write_text(profiles.read_text().replace(
        '[profiles.gateway]\ndescription = "Linux gateways: EC or RSA keys, client and server '
        'authentication"\nissuer = "issuing"',
        '[profiles.gateway]\ndescription = "legacy"\nissuer = "legacy"'))
    csr, _ = make_csr("gw-0001")
    path = tmp_path / "gw.csr"
    path.write_bytes(csr.public_bytes(PEM))
    issued = fleetpki("issue", "--profile", "gateway", "--csr", str(path), "--out",
                      str(tmp_path / "gw.pem"))
    assert issued.exit_code == 0, issued.output
    verify = subprocess.run([openssl, "verify", "-CAfile", str(cert), str(tmp_path / "gw.pem")],
                            capture_output=True, text=True, timeout=30, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_import_refuses_non_ca_and_mismatched_key(fleetpki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    openssl = require_tool("openssl")
    key, cert, other = tmp_path / "k.pem", tmp_path / "c.pem", tmp_path / "o.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "30", "-subj", "/CN=leaf", "-addext", "basicConstraints=CA:FALSE"],
                   check=True, capture_output=True, timeout=60)
    not_ca = fleetpki("ca", "import", "x", "--cert", str(cert), "--key", str(key))
    assert not_ca.exit_code == 2 and "not a CA" in not_ca.stderr
    subprocess.run([openssl, "genpkey", "-algorithm", "ed25519", "-out", str(other)],
                   check=True, capture_output=True, timeout=60)
    ca_cert = tmp_path / "ca.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(tmp_path / "ca.key"),
                    "-out", str(ca_cert), "-days", "30", "-subj", "/CN=Other CA",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                   check=True, capture_output=True, timeout=60)
    mismatch = fleetpki("ca", "import", "y", "--cert", str(ca_cert), "--key", str(other))
    assert mismatch.exit_code == 2 and "does not belong" in mismatch.stderr
    chain = tmp_path / "issuing.pem"
    chain.write_text(fleetpki("ca", "export-chain", "issuing").stdout)
    ours = fleetpki("ca", "import", "z", "--cert", str(chain), "--key", str(other))
    assert ours.exit_code == 6 and "already CA 'issuing'" in ours.stderr


def test_several_issuing_cas_coexist(fleetpki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert fleetpki("ca", "create-issuing", "issuing-eu").exit_code == 0
    assert fleetpki("ca", "create-issuing", "issuing-us", "--key-type", "rsa-2048").exit_code == 0
    listing = fleetpki("ca", "list").stdout
    for name in ("issuing-eu", "issuing-us", "issuing", "root"):
        assert name in listing
    duplicate = fleetpki("ca", "create-issuing", "issuing-eu")
    assert duplicate.exit_code == 6
