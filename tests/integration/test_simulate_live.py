"""`fleetpki simulate --live`: real agents over HTTPS against a running `fleetpki serve`.

A profile with two-minute certificates that renew after half their life, so that every
device enrolls and renews at least once in a run of a little more than a minute.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleetpki.cli.main import cli
from support.est_home import prepare_est_home
from support.fleet_server import fleet_server

pytestmark = pytest.mark.slow

PROFILE = """
[profiles.live]
issuer = "issuing"
device_id_from = "CN"
keys.allowed = ["ec-p256"]
validity = { default = "120s", maximum = "120s", backdate = "0s" }
subject.attributes.CN = { required = true, pattern = "^live-[0-9]{5}$" }
extensions = { key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }
renewal = { window_fraction = 0.6, info_interval = "1m" }
"""


def test_live_agents_enroll_and_renew_against_a_real_server(
        initialised_home_template: Path, tmp_path: Path) -> None:
    home = prepare_est_home(initialised_home_template, tmp_path / "home")
    with (home.path / "profiles.toml").open("a") as profiles:
        profiles.write(PROFILE)
    credential = home.credential("live", uses=12)
    roots = tmp_path / "root.pem"
    roots.write_text(home.cli("ca", "export-chain", "root"))
    with fleet_server(home.path) as server:
        out = tmp_path / "report"
        result = CliRunner().invoke(cli, [
            "simulate", "--live", f"https://127.0.0.1:{server.port}",
            "--roots", str(roots), "--bootstrap",
            f"{credential.id}:{credential.secret}", "--label", "live", "--devices", "12",
            "--minutes", "1.4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "live.json").read_text())
    assert report["devices"] == 12
    assert report["with_valid_certificate"] == 12 and report["dark"] == 0
    assert report["outcomes"]["enrolled"] == 12
    # Renewal opens 48 s into a 120 s certificate: every device renewed at least once.
    assert report["outcomes"].get("renewed", 0) >= 12
    assert report["certificates_issued"] >= 24
    issued = [line for line in home.cli("certs", "list", "--json", "--limit", "1000",
                                        "--profile", "live").splitlines() if line.strip()]
    assert len(issued) == report["certificates_issued"]


def test_live_mode_says_what_it_needs(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["simulate", "--live", "https://127.0.0.1:9",
                                      "--devices", "2", "--out", str(tmp_path / "r")])
    assert result.exit_code != 0
    assert "--roots" in result.output and "--bootstrap" in result.output


def test_live_mode_refuses_unusable_roots_and_an_unreachable_server_at_once(
        tmp_path: Path) -> None:
    garbage = tmp_path / "roots.pem"
    garbage.write_bytes(b"\x00\x01 not a certificate")
    common = ["--bootstrap", "bt-x:secret", "--devices", "1", "--minutes", "5",
              "--out", str(tmp_path / "r")]
    started = time.monotonic()
    bad_roots = CliRunner().invoke(cli, ["simulate", "--live", "https://127.0.0.1:9",
                                         "--roots", str(garbage), *common])
    assert bad_roots.exit_code == 2 and "not a PEM bundle" in bad_roots.output
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Root")])
    root = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
            .not_valid_after(dt.datetime(2036, 1, 1, tzinfo=dt.UTC)).sign(key, hashes.SHA256()))
    usable = tmp_path / "root.pem"
    usable.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    down = CliRunner().invoke(cli, ["simulate", "--live", f"https://127.0.0.1:{port}",
                                    "--roots", str(usable), *common])
    assert down.exit_code == 2 and "cannot reach" in down.output, down.output
    assert time.monotonic() - started < 30  # not after --minutes of refused sessions
    assert not (tmp_path / "r").exists()
