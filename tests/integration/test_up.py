"""`fleetpki up`, the main job on the embedded default: from nothing to a verified certificate."""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7

from support.fleet_server import fleet_server


def test_up_creates_everything_then_issues_and_verifies_a_demo_certificate(tmp_path: Path
                                                                           ) -> None:
    home = tmp_path / "data"
    command = [sys.executable, "-m", "fleetpki.cli", "--home", str(home), "up", "--check-only"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "openssl verify OK" in first.stdout
    assert (home / "fleetpki.db").exists()
    assert oct((home / "keys" / "root.key.pem").stat().st_mode & 0o777) == "0o600"
    assert oct((home / "secrets" / "key-passphrase").stat().st_mode & 0o777) == "0o600"
    second = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "created" not in second.stdout  # the second run reuses the hierarchy
    demo = sorted((home / "demo").glob("demo-*.pem"))
    assert len(demo) == 2
    issuers = {x509.load_pem_x509_certificate(p.read_bytes()).issuer for p in demo}
    assert len(issuers) == 1


def test_up_then_serves_est(tmp_path: Path) -> None:
    """Without --check-only, `up` ends by serving: a device can fetch the CA certificates."""
    home = tmp_path / "data"
    with fleet_server(home, command=("up",), timeout=120) as server:
        result = subprocess.run(
            ["curl", "-sS", "--max-time", "20", "--cacert", str(server.tls_chain),
             f"{server.base}/cacerts"], capture_output=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        certs = pkcs7.load_der_pkcs7_certificates(base64.b64decode(result.stdout))
        assert len(certs) == 2  # the issuing CA and the root
        assert [c.subject == c.issuer for c in certs].count(True) == 1
        assert (home / "demo").is_dir()
        # The first run printed an admin token, once: it opens the admin API.
        token = re.search(r"first admin token .*\n\s+(fpk_\S+)", server.ready_output)
        assert token is not None, server.ready_output
        me = subprocess.run(
            ["curl", "-sS", "--max-time", "20", "--cacert", str(server.tls_chain), "-H",
             f"Authorization: Bearer {token.group(1)}", f"{server.admin_base}/api/v1/whoami"],
            capture_output=True, text=True, timeout=60, check=False)
        assert json.loads(me.stdout)["role"] == "admin", me.stdout + me.stderr


def test_serve_on_a_taken_port_says_what_to_do(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "fleetpki.cli", "--home", str(home), "serve", "--listen",
             f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 7
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "another program" in result.stderr
    assert "--listen" in result.stderr and "Traceback" not in result.stderr


def test_serve_on_an_address_of_another_machine_says_so(home: Path) -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): no interface here has it.
    result = subprocess.run(
        [sys.executable, "-m", "fleetpki.cli", "--home", str(home), "serve", "--listen",
         "192.0.2.1:8443"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 7
    assert "no network interface of this machine has that address" in result.stderr
    assert "another program" not in result.stderr and "Traceback" not in result.stderr
