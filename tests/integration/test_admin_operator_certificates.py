"""Operator client certificates on the admin API of a real `fleetpki serve`, driven by curl:
admitted in a role, named in the audit log, refused when unregistered or withdrawn."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fleetpki.store.api import AuditQuery
from fleetpki.wiring import open_fleet
from support.est_home import new_csr
from support.fleet_server import RunningServer, fleet_server
from support.lint import require_tool

pytestmark = pytest.mark.slow


def _fleetpki(home: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "fleetpki.cli", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _issue(home: Path, directory: Path, name: str) -> tuple[Path, Path]:
    """A key made by openssl and a certificate fleetpki issued for it (profile sensor: it
    carries clientAuth)."""
    key, csr = new_csr(directory, name, name)
    cert = directory / f"{name}.pem"
    _fleetpki(home, "issue", "--profile", "sensor", "--csr", str(csr), "--out", str(cert))
    return key, cert


def _curl(server: RunningServer, path: str, key: Path | None, cert: Path | None,
          *extra: str) -> tuple[int, dict[str, object]]:
    identity = ["--key", str(key), "--cert", str(cert)] if key and cert else []
    done = subprocess.run(
        [require_tool("curl"), "-sS", "--max-time", "20", "--cacert", str(server.tls_chain),
         *identity, "-w", "\n%{http_code}", *extra, server.admin_base + path],
        capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body)


def test_a_registered_client_certificate_acts_in_its_role_until_withdrawn(
        home: Path, tmp_path: Path) -> None:
    key, cert = _issue(home, tmp_path, "ops-bot")
    stranger_key, stranger_cert = _issue(home, tmp_path, "stranger")
    _issue(home, tmp_path, "sensor-victim")
    added = _fleetpki(home, "admin", "operator", "add", "--cert", str(cert), "--name",
                      "ops-bot", "--role", "operator")
    fingerprint = added.split()[2]
    victim = json.loads(next(line for line in _fleetpki(home, "certs", "list", "--json")
                             .splitlines() if "sensor-victim" in line))["serial"]
    with fleet_server(home) as server:
        status, me = _curl(server, "/api/v1/whoami", key, cert)
        assert status == 200, me
        assert me["role"] == "operator" and str(me["actor"]).startswith("certificate:ops-bot/")

        status, revoked = _curl(server, f"/api/v1/certificates/{victim}/revoke", key, cert,
                                "-X", "POST", "-H", "Content-Type: application/json",
                                "--data", '{"reason": "keyCompromise"}')
        assert status == 200, revoked
        status, refused = _curl(server, "/api/v1/tokens", key, cert)
        assert status == 403 and "admin role" in str(refused["message"])

        status, refused = _curl(server, "/api/v1/whoami", stranger_key, stranger_cert)
        assert status == 401 and "not registered" in str(refused["message"])
        status, refused = _curl(server, "/api/v1/whoami", None, None)
        assert status == 401

        _fleetpki(home, "admin", "operator", "revoke", fingerprint)
        status, refused = _curl(server, "/api/v1/whoami", key, cert)
        assert status == 401 and "revoked" in str(refused["message"])
    fleet = open_fleet(home)
    try:
        entries = fleet.store.audit_page(AuditQuery(action="certificate.revoked"))
    finally:
        fleet.close()
    assert [(e.subject, e.actor.split("/")[0]) for e in entries] == [
        (victim, "certificate:ops-bot")]
