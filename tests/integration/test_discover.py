"""`fleetpki discover` against real TLS servers on 127.0.0.1: a gateway serving a certificate
fleetpki issued (with its chain), an appliance serving an expired, self-signed RSA-1024
certificate, and a closed port. Attribution, findings, unreachable targets, the rows in the
store and the audit entry are checked; a rescan moves last_seen and adds no rows."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import Cli
from fleetpki.core.discovery_records import DiscoveredCertificate
from fleetpki.store.sql.store import SqlStore
from support.csrs import make_csr
from support.ports import free_port
from support.tls_endpoints import TlsEndpoint, chain_pem, key_pem, make_certificate, rsa_key

PEM = serialization.Encoding.PEM


def issue_gateway_certificate(fleetpki: Cli, tmp_path: Path) -> tuple[bytes, bytes, int]:
    """A TLS server certificate from fleetpki's gateway profile: (chain PEM, key PEM, serial)."""
    csr, key = make_csr("gw-0001", sans=[x509.DNSName("gw-0001.gateways.fleet.internal")])
    (tmp_path / "gw.csr").write_bytes(csr.public_bytes(PEM))
    out = tmp_path / "gw-chain.pem"
    issued = fleetpki("issue", "--profile", "gateway", "--csr", str(tmp_path / "gw.csr"),
                      "--out", str(out), "--chain")
    assert issued.exit_code == 0, issued.output
    serial = x509.load_pem_x509_certificates(out.read_bytes())[0].serial_number
    return out.read_bytes(), key_pem(key), serial


def expired_weak_appliance() -> tuple[bytes, bytes]:
    made = make_certificate("appliance.example", key=rsa_key(1024), days=30,
                            not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=40))
    return chain_pem(made.cert), key_pem(made.key)


def discover(fleetpki: Cli, *args: str) -> Result:
    result = fleetpki("discover", "--timeout", "2", *args)
    assert result.exit_code == 0, result.output
    return result


def stored(home: Path) -> list[DiscoveredCertificate]:
    store = SqlStore(f"sqlite:///{home / 'fleetpki.db'}")
    try:
        return store.list_discovered()
    finally:
        store.close()


def audit(fleetpki: Cli) -> list[dict[str, Any]]:
    lines = fleetpki("audit", "list", "--limit", "100000").output.splitlines()
    return [json.loads(line) for line in lines if line.strip()]


Servers = tuple[TlsEndpoint, TlsEndpoint, int]


@pytest.fixture
def servers(fleetpki: Cli, tmp_path: Path) -> Iterator[Servers]:
    gateway_chain, gateway_key, serial = issue_gateway_certificate(fleetpki, tmp_path)
    with TlsEndpoint(gateway_chain, gateway_key) as gateway, \
            TlsEndpoint(*expired_weak_appliance()) as appliance:
        yield gateway, appliance, serial


def test_discover_attributes_reports_and_records(fleetpki: Cli, home: Path,
                                                 servers: Servers) -> None:
    gateway, appliance, serial = servers
    closed = f"127.0.0.1:{free_port()}"
    result = discover(fleetpki, gateway.target, appliance.target, closed, "--json")
    report = json.loads(result.stdout)
    ours, external, unreachable = report["endpoints"]

    assert (ours["endpoint"], ours["error"]) == (gateway.target, None)
    leaf, issuing = ours["certificates"]
    assert (leaf["position"], leaf["subject"], leaf["ours"]) == (0, "CN=gw-0001", "issuing")
    assert leaf["serial"] == format(serial, "x") and leaf["key"] == "ec-p256"
    assert leaf["signature_algorithm"].startswith("ecdsa-with-SHA")
    assert (issuing["position"], issuing["ours"]) == (1, "root")
    assert leaf["findings"] == [] and issuing["findings"] == []

    [appliance_cert] = external["certificates"]
    assert appliance_cert["ours"] is None and appliance_cert["key"] == "rsa-1024"
    assert appliance_cert["days_left"] < 0
    findings = {(f["kind"], f["message"].split(" (")[0]) for f in appliance_cert["findings"]}
    assert findings == {("expired", f"expired on {appliance_cert['not_after'][:10]}"),
                        ("policy", "weak key: RSA 1024 bits")}

    assert (unreachable["endpoint"], unreachable["error"]) == (closed, "refused")
    assert unreachable["certificates"] == []
    assert {k: v for k, v in report["summary"].items() if k != "scanned_at"} == {
        "endpoints": 3, "answered": 2, "recorded": 3, "expired": 1, "expiring": 0,
        "policy": 1, "warn_days": 30}

    rows = stored(home)
    assert sorted((r.endpoint, r.position, r.issued_by_us) for r in rows) == sorted([
        (gateway.target, 0, "issuing"), (gateway.target, 1, "root"),
        (appliance.target, 0, None)])
    assert all(r.first_seen == r.last_seen for r in rows)
    assert rows[0].subject == "CN=appliance.example"  # soonest to expire: the expired one

    entry = audit(fleetpki)[-1]
    assert entry["action"] == "discovery.scanned" and entry["actor"].startswith("operator:")
    assert entry["subject"] == f"{gateway.target} {appliance.target} {closed}"
    assert entry["details"] == {"targets": "3", "endpoints": "3", "answered": "2",
                                "recorded": "3"}


def test_a_rescan_moves_last_seen_and_reports_a_revocation(fleetpki: Cli, home: Path,
                                                           servers: Servers) -> None:
    gateway, appliance, serial = servers
    discover(fleetpki, gateway.target, appliance.target)
    first = {(r.endpoint, r.fingerprint): r for r in stored(home)}
    revoked = fleetpki("certs", "revoke", format(serial, "x"), "--reason", "superseded")
    assert revoked.exit_code == 0, revoked.output

    table = discover(fleetpki, gateway.target, appliance.target).output
    second = {(r.endpoint, r.fingerprint): r for r in stored(home)}
    assert second.keys() == first.keys()
    for key, row in second.items():
        before = first[key]
        assert row.first_seen == before.first_seen
        assert row.last_seen is not None and before.last_seen is not None
        assert row.last_seen > before.last_seen
    assert "external" in table and "issuing" in table
    assert f"{gateway.target}  policy  revoked on " in table
    assert "(superseded) and still served" in table
    assert f"{appliance.target}  policy  weak key: RSA 1024 bits" in table
    assert ("2 endpoints scanned, 2 answered TLS, 3 certificates recorded, 1 expired, "
            "0 expiring within 30 days, 2 break policy") in table
    assert [e["action"] for e in audit(fleetpki)].count("discovery.scanned") == 2
    verified = fleetpki("audit", "verify")
    assert verified.exit_code == 0 and "audit log OK" in verified.output, verified.output


def test_the_table_lists_unreachable_targets_with_the_reason(fleetpki: Cli,
                                                            tmp_path: Path) -> None:
    closed = free_port()
    targets = tmp_path / "targets.txt"
    targets.write_text(f"# nothing listens here\n\n127.0.0.1:{closed}   # old gateway\n")
    result = discover(fleetpki, "--targets-file", str(targets))
    assert f"unreachable:\n  127.0.0.1:{closed}  refused" in result.output
    assert "1 endpoints scanned, 0 answered TLS, 0 certificates recorded" in result.output


@pytest.mark.parametrize(("args", "says"), [
    ([], "no targets"),
    (["10.0.0.0/15"], "131,072 addresses"),
    (["gw:https"], "the port must be a number"),
    (["--concurrency", "0", "127.0.0.1"], "--concurrency"),
    (["--targets-file", "/nonexistent/targets.txt"], "does not exist"),
])
def test_usage_errors_exit_2_and_scan_nothing(fleetpki: Cli, home: Path, args: list[str],
                                              says: str) -> None:
    before = audit(fleetpki)
    result = fleetpki("discover", *args)
    assert result.exit_code == 2 and says in result.output, result.output
    assert audit(fleetpki) == before


def test_what_an_endpoint_sends_is_printed_inert(fleetpki: Cli) -> None:
    """A subject is attacker-chosen text: a terminal escape in it is shown, not obeyed."""
    made = make_certificate("evil\x1b[2J[bold]x[/bold]")
    with TlsEndpoint(chain_pem(made.cert), key_pem(made.key)) as server:
        result = fleetpki("discover", server.target, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output
    assert "│ CN=evil\\x1b[2J[bold]x[/bold] │" in result.output
